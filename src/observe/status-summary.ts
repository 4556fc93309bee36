/**
 * `leafgate status`: the human summary of a running gateway's `/status` and `/readyz`.
 * Pure: it formats what the gateway answered and nothing else (docs/status.md).
 */
import type { GatewayStatus, OutboxClassStatus } from "../gateway.js";
import type { DiskStatus } from "../store/index.js";
import type { UpstreamStatus } from "../upstream/index.js";
import { formatDuration } from "./duration.js";
import type { Readiness } from "./readiness.js";

/** The parts of `/status` the summary shows; anything else is ignored. */
export type StatusView = Pick<
  GatewayStatus,
  "time" | "state" | "gateway" | "accounts" | "mqtt" | "nats" | "serial" | "disk"
>;

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
function uplinkLine(link: UpstreamStatus, time: number): string {
  const server = link.server ?? `never connected; servers ${link.servers.join(", ")}`;
  const stream = link.stream !== undefined ? `, stream ${link.stream}` : "";
  const up = link.state === "forwarding" || link.state === "waiting-for-stream";
  const since = `${up ? "up" : "down"} since ${iso(link.since)} (${formatDuration(time - link.since)})`;
  return `${link.state} (${server}${stream}), ${since}, ${plural(link.connects, "connect")}`;
}

/** A class's limits as configured: bytes, messages, age; what it does when full. */
function limitsOf(c: OutboxClassStatus): string {
  const limits = [
    c.maxBytes !== null ? formatBytes(c.maxBytes) : undefined,
    c.maxMessages !== null ? plural(c.maxMessages, "message") : undefined,
    c.maxAgeMs !== null ? formatDuration(c.maxAgeMs) : undefined,
  ].filter((l) => l !== undefined);
  return `${limits.length === 0 ? "unlimited" : `max ${limits.join(", ")}`}, ${c.onFull}`;
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
      const oldest = c.oldestAgeMs !== null ? `, oldest ${formatDuration(c.oldestAgeMs)}` : "";
      lines.push(
        `  ${c.name.padEnd(width)}  ${plural(c.messages, "message")}, ${formatBytes(c.bytes)}${oldest} (${limitsOf(c)})`,
      );
    }
    if (named) {
      lines.push(`clients${who}: MQTT ${a.mqtt.connections}, NATS ${a.nats.connections}`);
    }
  }
  lines.push(`disk:     ${diskLine(status.disk)}`);
  lines.push(`clients:  MQTT ${status.mqtt.connections}, NATS ${status.nats.connections}`);
  if (status.serial.length === 0) lines.push("serial:   no devices configured");
  for (const d of status.serial) {
    const since = "since" in d ? ` since ${iso(d.since)}` : "";
    const why = "reason" in d ? `: ${d.reason}` : "";
    const last =
      d.lastFrameAt !== null
        ? `last frame ${iso(d.lastFrameAt)} (${formatDuration(status.time - d.lastFrameAt)} ago)`
        : "no frame yet";
    lines.push(
      `serial:   ${d.device} ${d.path} ${d.state}${since}${why}, ${plural(d.frames, "frame")}, ${d.badFrames} bad, ${last}`,
    );
  }
  if (drops.length === 0) lines.push("drops:    none");
  for (const d of drops) {
    const labels = d.labels === "" ? "" : ` {${d.labels}}`;
    lines.push(`drops:    ${d.what}${labels}: ${d.count}`);
  }
  return `${lines.join("\n")}\n`;
}
