/**
 * `leafgate status`: the human summary of a running gateway's `/status` and `/readyz`.
 * Pure: it formats what the gateway answered and nothing else (docs/status.md).
 */
import type { GatewayStatus, OutboxClassStatus } from "../gateway.js";
import type { DeviceStatus } from "../serial/index.js";
import type { DiskStatus } from "../store/index.js";
import type { UpstreamStatus } from "../upstream/index.js";
import { formatDuration } from "./duration.js";
import type { Readiness } from "./readiness.js";

/** `T` (each member of a union) with the keys `K` optional. */
type Optional<T, K extends PropertyKey> = T extends unknown
  ? Omit<T, K> & Partial<Pick<T, K & keyof T>>
  : never;

type UplinkView = Optional<UpstreamStatus, "servers" | "connects" | "since">;
type ClassView = Optional<
  OutboxClassStatus,
  "maxBytes" | "maxMessages" | "maxAgeMs" | "oldestAt" | "oldestAgeMs"
>;
type DeviceView = Optional<DeviceStatus, "badFrames" | "lastFrameAt" | "silentAfterMs">;

/**
 * The parts of `/status` the summary shows; anything else is ignored. A gateway of an
 * earlier version answers without the fleet fields (`time`, `disk`, an uplink's connects
 * and since, a class's limits and oldest message, a device's bad and last frames): the
 * summary shows what is there.
 */
export interface StatusView {
  readonly time?: number;
  readonly state: GatewayStatus["state"];
  readonly gateway: string;
  readonly accounts: Readonly<
    Record<
      string,
      {
        readonly upstream: UplinkView;
        readonly outbox: { readonly pending: number; readonly classes: readonly ClassView[] };
        readonly mqtt: { readonly connections: number };
        readonly nats: { readonly connections: number };
      }
    >
  >;
  readonly mqtt: { readonly connections: number };
  readonly nats: { readonly connections: number };
  readonly serial: readonly DeviceView[];
  readonly disk?: DiskStatus;
}

const GLOBAL = "$G";

/** `1234` → `1.2 KiB`. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

const plural = (n: number, one: string): string => `${n} ${one}${n === 1 ? "" : "s"}`;

const iso = (ms: number): string => new Date(ms).toISOString();

/** The state, where, since when, and how many connections were made. */
function uplinkLine(link: UplinkView, time: number | undefined): string {
  const servers = link.servers !== undefined ? `; servers ${link.servers.join(", ")}` : "";
  const server = link.server ?? `never connected${servers}`;
  const stream = link.stream !== undefined ? `, stream ${link.stream}` : "";
  const up = link.state === "forwarding" || link.state === "waiting-for-stream";
  const since =
    link.since !== undefined
      ? `, ${up ? "up" : "down"} since ${iso(link.since)}${time !== undefined ? ` (${formatDuration(time - link.since)})` : ""}`
      : "";
  const connects = link.connects !== undefined ? `, ${plural(link.connects, "connect")}` : "";
  return `${link.state} (${server}${stream})${since}${connects}`;
}

/** The oldest message's age and the class's limits as configured, when the gateway says. */
function classDetails(c: ClassView): string {
  const oldest =
    c.oldestAgeMs !== undefined && c.oldestAgeMs !== null
      ? `, oldest ${formatDuration(c.oldestAgeMs)}`
      : "";
  if (c.maxBytes === undefined) return oldest;
  const limits = [
    c.maxBytes !== null ? formatBytes(c.maxBytes) : undefined,
    c.maxMessages != null ? plural(c.maxMessages, "message") : undefined,
    c.maxAgeMs != null ? formatDuration(c.maxAgeMs) : undefined,
  ].filter((l) => l !== undefined);
  return `${oldest} (${limits.length === 0 ? "unlimited" : `max ${limits.join(", ")}`}, ${c.onFull})`;
}

function diskLine(disk: DiskStatus): string {
  const free = disk.freeBytes !== null ? `, ${formatBytes(disk.freeBytes)} free` : "";
  switch (disk.state) {
    case "full":
      return `FULL: the buffer is held at its size until ${formatBytes(disk.resumeAtFreeBytes)} are free${free}`;
    case "ok":
      return `ok${free} (reserve ${formatBytes(disk.reserveBytes)})`;
    default:
      return "guard off (no free-space figure for the data dir)";
  }
}

/** One counter of messages lost, from `/metrics`: `leafgate_*_dropped*_total` above 0. */
export interface Drop {
  /** The metric without `leafgate_` and `_total`: `buffer_dropped`, `serial_dropped`. */
  readonly what: string;
  /** Its labels as written: `class="telemetry",reason="oldest"`. */
  readonly labels: string;
  readonly count: number;
}

const DROP_SAMPLE = /^leafgate_([a-z_]*dropped[a-z_]*)_total(?:\{(.*)\})? (\S+)$/;

/** The drop counters above zero in a Prometheus text, in the order exposed. */
export function dropsOf(metrics: string): Drop[] {
  const drops: Drop[] = [];
  for (const line of metrics.split("\n")) {
    const m = DROP_SAMPLE.exec(line);
    const count = Number(m?.[3]);
    if (m !== null && count > 0) drops.push({ what: m[1]!, labels: m[2] ?? "", count });
  }
  return drops;
}

/** The summary, one fact a line, the verdict and its reasons first. */
export function formatSummary(
  url: string,
  status: StatusView,
  ready: Readiness,
  drops: readonly Drop[] = [],
): string {
  const lines: string[] = [];
  lines.push(`leafgate ${status.gateway} at ${url}: ${ready.ready ? "READY" : "NOT READY"}`);
  if (!ready.ready) for (const r of ready.reasons) lines.push(`  - ${r}`);
  lines.push(`state:    ${status.state}`);
  const accounts = Object.entries(status.accounts);
  const named = accounts.length > 1;
  for (const [name, a] of accounts) {
    const who = named ? ` [${name === GLOBAL ? "$G (global)" : name}]` : "";
    lines.push(`uplink${who}: ${uplinkLine(a.upstream, status.time)}`);
    // An error from before the link came back is history, not news.
    if (a.upstream.lastError !== undefined && a.upstream.state !== "forwarding") {
      lines.push(`  last error: ${a.upstream.lastError}`);
    }
    const total = a.outbox.classes.reduce((n, c) => n + c.bytes, 0);
    lines.push(`backlog${who}: ${plural(a.outbox.pending, "message")}, ${formatBytes(total)}`);
    const width = Math.max(0, ...a.outbox.classes.map((c) => c.name.length));
    for (const c of a.outbox.classes) {
      lines.push(
        `  ${c.name.padEnd(width)}  ${plural(c.messages, "message")}, ${formatBytes(c.bytes)}${classDetails(c)}`,
      );
    }
    if (named) {
      lines.push(`clients${who}: MQTT ${a.mqtt.connections}, NATS ${a.nats.connections}`);
    }
  }
  if (status.disk !== undefined) lines.push(`disk:     ${diskLine(status.disk)}`);
  lines.push(`clients:  MQTT ${status.mqtt.connections}, NATS ${status.nats.connections}`);
  if (status.serial.length === 0) lines.push("serial:   no devices configured");
  for (const d of status.serial) {
    const since = "since" in d ? ` since ${iso(d.since)}` : "";
    const why = "reason" in d ? `: ${d.reason}` : "";
    const bad = d.badFrames !== undefined ? `, ${d.badFrames} bad` : "";
    const ago =
      status.time !== undefined && d.lastFrameAt != null
        ? ` (${formatDuration(status.time - d.lastFrameAt)} ago)`
        : "";
    const last =
      d.lastFrameAt === undefined
        ? ""
        : d.lastFrameAt !== null
          ? `, last frame ${iso(d.lastFrameAt)}${ago}`
          : ", no frame yet";
    lines.push(
      `serial:   ${d.device} ${d.path} ${d.state}${since}${why}, ${plural(d.frames, "frame")}${bad}${last}`,
    );
  }
  if (drops.length === 0) lines.push("drops:    none");
  for (const d of drops) {
    const labels = d.labels === "" ? "" : ` {${d.labels}}`;
    lines.push(`drops:    ${d.what}${labels}: ${d.count}`);
  }
  return `${lines.join("\n")}\n`;
}
