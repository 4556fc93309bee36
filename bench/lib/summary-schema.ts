// What a bench writes with `--json <file>`, and the rows `npm run bench` (bench/summary.ts)
// expects, in the order of issue 14's table. A bench's row is found by its `id` (or, without
// one, by its `scenario` or the pattern given here); docs/bench.md "summary" lists them.

/** One row of a bench: leafgate's median beside its peer's, measured in the same run. */
export interface BenchRow {
  /** Stable key the summary matches on: one of EXPECTED_ROWS' ids. */
  readonly id?: string;
  readonly scenario: string;
  /** "msgs/s", "MiB", "ms", ... */
  readonly unit: string;
  /** leafgate's median; null when it could not be measured. */
  readonly leafgate: number | null;
  /** The peer's name ("mosquitto", "bare Node"); null when the row has none. */
  readonly peer: string | null;
  readonly peerValue: number | null;
  /** leafgate / peer. */
  readonly ratio: number | null;
  /** The target, bounding `targetOf`; null for none. */
  readonly target: number | null;
  /**
   * What the target bounds: the ratio (the default for rates, e.g. >= 1.2 x mosquitto) or
   * leafgate's own figure (the default for sizes and times, e.g. <= 45 MiB).
   */
  readonly targetOf?: "ratio" | "leafgate";
  /** Which way is better: "higher" (the default for rates) or "lower" (sizes, times). */
  readonly better?: "higher" | "lower";
  /** Every round's figure, for the medians. */
  readonly rounds: { readonly leafgate: readonly number[]; readonly peer: readonly number[] };
  /**
   * The guarantees the bench checked (exactlyOnce, inOrder, ...): one false fails the row.
   * Values other than booleans are figures kept beside them (QoS 0 losses per round).
   */
  readonly checks: Readonly<Record<string, unknown>>;
  /** More peers of the same row (idle RSS: bare Node and mosquitto). */
  readonly others?: readonly OtherPeer[];
  /** A word on how it was measured, printed under the table. */
  readonly note?: string;
}

export interface OtherPeer {
  readonly peer: string;
  readonly peerValue: number | null;
  readonly ratio: number | null;
  readonly rounds: readonly number[];
}

export interface BenchResult {
  readonly bench: string;
  readonly quick?: boolean;
  readonly rows: readonly BenchRow[];
  /** CPU figures as the bench has them (µs per message, shares of a core). */
  readonly cpu?: Readonly<Record<string, unknown>>;
}

/** A row of issue 14's table: which bench measures it. */
export interface ExpectedRow {
  readonly id: string;
  readonly scenario: string;
  readonly bench: string;
  /** For a bench's rows without ids: the scenarios that stand for this row... */
  readonly match?: RegExp;
  /** ...and which of them, in order of appearance (default the first). */
  readonly nth?: number;
}

/** Issue 14's table, in its order. */
export const EXPECTED_ROWS: readonly ExpectedRow[] = [
  { id: "fanin-qos1", scenario: "QoS 1 fan-in", bench: "mqtt-fan-in", match: /^QoS 1 fan-in/i },
  {
    id: "fanin-qos0-raw",
    scenario: "QoS 0 fan-in (raw)",
    bench: "mqtt-fan-in",
    match: /^QoS 0 fan-in.*\braw/i,
  },
  {
    id: "fanin-qos0-mqttjs",
    scenario: "QoS 0 fan-in (mqtt.js)",
    bench: "mqtt-fan-in",
    match: /^QoS 0 fan-in.*mqtt\.js/i,
  },
  // bench/drain.ts names them by size, smaller first (smaller still with --quick).
  { id: "drain-300k", scenario: "drain 300k", bench: "drain", match: /backlog drain/i, nth: 0 },
  { id: "drain-1m", scenario: "drain 1M", bench: "drain", match: /backlog drain/i, nth: 1 },
  {
    id: "live-mqtt-hub",
    scenario: "live MQTT -> hub",
    bench: "drain",
    match: /^live MQTT (->|→) hub/i,
  },
  { id: "idle-rss", scenario: "idle RSS", bench: "footprint" },
  { id: "rss-load", scenario: "RSS 1000 clients + 1M drain", bench: "footprint" },
  { id: "spawn-listening", scenario: "spawn -> MQTT listening", bench: "footprint" },
];

/** Rates are better higher and bound by their ratio; sizes and times lower, bound themselves. */
const RATE_UNIT = /\/s$/;

export function betterOf(row: BenchRow): "higher" | "lower" {
  return row.better ?? (RATE_UNIT.test(row.unit) ? "higher" : "lower");
}

export function targetOf(row: BenchRow): "ratio" | "leafgate" {
  return row.targetOf ?? (RATE_UNIT.test(row.unit) ? "ratio" : "leafgate");
}

/** Whether the row meets its target; undefined when it has none or lacks the figure. */
export function targetMet(row: BenchRow): boolean | undefined {
  if (row.target === null || row.target === undefined) return undefined;
  const value = targetOf(row) === "ratio" ? row.ratio : row.leafgate;
  if (value === null || value === undefined || Number.isNaN(value)) return undefined;
  return betterOf(row) === "higher" ? value >= row.target : value <= row.target;
}
