// The rows of `npm run bench` (bench/summary.ts): each bench's results read back, the rows of
// issue 14's table found in them and judged (ok, failed, missing, not run), and the cells
// printed for them. Pure but for reading a results file and printing, so test/unit can check
// the rules. A bench prints its own rows the same way (printRows).
import { existsSync, readFileSync } from "node:fs";
import {
  type BenchResult,
  type BenchRow,
  betterOf,
  type ExpectedRow,
  targetMet,
  targetOf,
} from "./summary-schema.js";
import { type Column, fmt, printTable } from "./table.js";

export const NO_SUCH_BENCH = "no such bench";

export interface BenchRun {
  readonly bench: string;
  /** null: not run (--only); a number: its exit status. */
  readonly exitCode: number | null;
  readonly seconds: number;
  readonly result?: BenchResult | undefined;
  /** Why there are no results. */
  readonly error?: string;
}

/** A bench's results from `file`, or why there are none. */
export function readResult(file: string): { result?: BenchResult; error?: string } {
  if (!existsSync(file)) return { error: "wrote no JSON" };
  try {
    const result = JSON.parse(readFileSync(file, "utf8")) as BenchResult;
    if (!Array.isArray(result.rows)) return { error: "JSON has no rows" };
    return { result };
  } catch (err) {
    return { error: `unreadable JSON: ${(err as Error).message}` };
  }
}

export type Status = "ok" | "failed" | "missing" | "not run";

export interface SummaryRow {
  readonly expected: ExpectedRow;
  readonly status: Status;
  /** What went wrong, for the lines under the table. */
  readonly problems: readonly string[];
  readonly met: boolean | undefined;
  readonly row: BenchRow | undefined;
}

const normal = (s: string) => s.toLowerCase().replace(/→/g, "->").replace(/\s+/g, " ").trim();

/**
 * The rows of `rows` that stand for `e`: those with its id; else, among rows without an id,
 * the `e.nth` scenario (in order of appearance) named `e.scenario` or matching `e.match`,
 * with every row of that scenario (one per peer).
 */
function candidates(rows: readonly BenchRow[], e: ExpectedRow): BenchRow[] {
  const byId = rows.filter((r) => r.id === e.id);
  if (byId.length > 0) return byId;
  const matching = rows.filter(
    (r) =>
      r.id === undefined &&
      (normal(r.scenario) === normal(e.scenario) || (e.match?.test(r.scenario) ?? false)),
  );
  const scenario = [...new Set(matching.map((r) => r.scenario))][e.nth ?? 0];
  return matching.filter((r) => r.scenario === scenario);
}

/**
 * The expected row in its bench's results, else in any bench's. Of several rows (one per
 * peer), the one with a target leads and the others' peers become its `others`.
 */
export function findRow(runs: readonly BenchRun[], e: ExpectedRow): BenchRow | undefined {
  const owner = runs.find((r) => r.bench === e.bench)?.result?.rows ?? [];
  const all = runs.flatMap((r) => r.result?.rows ?? []);
  const found = candidates(owner, e);
  const rows = found.length > 0 ? found : candidates(all, e);
  const lead = rows.find((r) => r.target !== null && r.target !== undefined) ?? rows[0];
  if (!lead || rows.length === 1) return lead;
  const extra = rows
    .filter((r) => r !== lead && r.peer !== null)
    .map((r) => ({ peer: r.peer!, peerValue: r.peerValue, ratio: r.ratio, rounds: r.rounds.peer }));
  return { ...lead, others: [...(lead.others ?? []), ...extra] };
}

const isFigure = (n: number | null | undefined): n is number =>
  typeof n === "number" && !Number.isNaN(n);

/** Judges the expected row `e` in the results of `runs` (which include its bench). */
export function summarize(runs: readonly BenchRun[], e: ExpectedRow): SummaryRow {
  const run = runs.find((r) => r.bench === e.bench)!;
  const row = findRow(runs, e);
  const problems: string[] = [];
  if (run.exitCode === null && !row) {
    return { expected: e, status: "not run", problems, met: undefined, row };
  }
  if (run.exitCode !== 0 && run.exitCode !== null && run.error !== NO_SUCH_BENCH) {
    problems.push(`${run.bench} exited ${run.exitCode}`);
  }
  if (run.error && !row) problems.push(`${run.bench}: ${run.error}`);
  if (!row) {
    const failed = run.exitCode !== 0 || run.result === undefined;
    return { expected: e, status: failed ? "failed" : "missing", problems, met: undefined, row };
  }
  // Only false fails: a bench may put figures beside its checks (QoS 0 losses per round).
  const broken = Object.entries(row.checks ?? {}).filter(([, ok]) => ok === false);
  if (broken.length > 0) problems.push(`checks failed: ${broken.map(([k]) => k).join(", ")}`);
  if (!isFigure(row.leafgate)) problems.push("no leafgate figure");
  return {
    expected: e,
    status: problems.length > 0 ? "failed" : "ok",
    problems,
    met: targetMet(row),
    row,
  };
}

/** A figure in its unit: rates as whole numbers with separators, sizes and times to 0.1. */
export function figure(n: number | null | undefined, unit: string): string {
  if (!isFigure(n)) return "-";
  if (/\/s$/.test(unit)) return `${Math.round(n).toLocaleString("en-US")} ${unit}`;
  return `${fmt(n, unit === "ms" ? 0 : 1)} ${unit}`;
}

export function targetText(row: BenchRow): string {
  if (row.target === null || row.target === undefined) return "-";
  const op = betterOf(row) === "higher" ? ">=" : "<=";
  return targetOf(row) === "ratio"
    ? `ratio ${op} ${row.target}`
    : `${op} ${row.target} ${row.unit}`;
}

/** A peer's name up to its first comma ("bare nats.js publisher, Nats-Msg-Id, ..."): the JSON has it whole. */
const shortPeer = (p: string | null) => (p === null ? "-" : p.split(", ")[0]!);

const ratioText = (r: number | null | undefined) => (isFigure(r) ? fmt(r, 2) : "-");
const metText = (m: boolean | undefined) => (m === undefined ? "-" : m ? "yes" : "no");

/** The table's cells: a line per row, and one more per further peer. */
export const summaryCells = (rows: readonly SummaryRow[]): string[][] =>
  rows.flatMap((s) => {
    const r = s.row;
    if (!r || s.status === "not run") {
      return [[s.expected.scenario, s.status, "", "", "", "", ""]];
    }
    const first = [
      // A bench that names its rows by id names them well; others' scenarios may be long.
      r.id === undefined ? s.expected.scenario : r.scenario,
      s.status === "ok" ? figure(r.leafgate, r.unit) : `${s.status}: ${figure(r.leafgate, r.unit)}`,
      shortPeer(r.peer),
      figure(r.peerValue, r.unit),
      ratioText(r.ratio),
      targetText(r),
      metText(s.met),
    ];
    const others = (r.others ?? []).map((o) => [
      "",
      "",
      shortPeer(o.peer),
      figure(o.peerValue, r.unit),
      ratioText(o.ratio),
      "",
      "",
    ]);
    return [first, ...others];
  });

const COLUMNS: readonly Column[] = [
  { title: "scenario", left: true },
  { title: "leafgate" },
  { title: "peer", left: true },
  { title: "peer figure" },
  { title: "ratio" },
  { title: "target", left: true },
  { title: "met?", left: true },
];

/** Prints the table of `rows`, and the rows' notes under it. */
export function printSummary(rows: readonly SummaryRow[]): void {
  printTable(COLUMNS, summaryCells(rows));
  const notes = rows.filter((s) => s.row?.note).map((s) => `  ${s.row!.scenario}: ${s.row!.note}`);
  if (notes.length > 0) console.log(`\n${notes.join("\n")}`);
}

/** A bench's own rows, judged and printed as the summary prints them. */
export function printRows(bench: string, rows: readonly BenchRow[]): void {
  const runs: BenchRun[] = [{ bench, exitCode: 0, seconds: 0, result: { bench, rows } }];
  printSummary(
    rows.map((r) => summarize(runs, { id: r.id ?? r.scenario, scenario: r.scenario, bench })),
  );
}
