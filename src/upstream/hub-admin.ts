/**
 * The hub side as `leafgate hub check` judges it and `leafgate hub create-stream` plans it
 * (docs/hub.md): pure rules on plain facts about a stream, so they are tested without a hub.
 */
import type { StreamInfo } from "@nats-io/jetstream";
import { formatDuration } from "../config/index.js";
import { uncoveredBy, windowMs } from "./stream-check.js";
import type { UpstreamConfig } from "./upstream-config.js";

/** What `hub check` reads from a stream's info (JetStream's -1 / 0 for "no limit" kept). */
export interface StreamFacts {
  readonly name: string;
  readonly subjects: readonly string[];
  readonly storage: string;
  readonly replicas: number;
  readonly duplicateWindowMs: number;
  readonly maxMsgs: number;
  readonly maxBytes: number;
  readonly maxAgeMs: number;
  readonly discard: string;
  readonly messages: number;
  readonly bytes: number;
}

const NANOS_PER_MS = 1e6;

export function streamFacts(info: StreamInfo): StreamFacts {
  const c = info.config;
  return {
    name: c.name,
    subjects: c.subjects ?? [],
    storage: String(c.storage),
    replicas: c.num_replicas ?? 1,
    duplicateWindowMs: windowMs(info),
    maxMsgs: c.max_msgs ?? -1,
    maxBytes: c.max_bytes ?? -1,
    maxAgeMs: Math.floor((c.max_age ?? 0) / NANOS_PER_MS),
    discard: String(c.discard ?? "old"),
    messages: info.state.messages,
    bytes: info.state.bytes,
  };
}

export type Verdict = "ok" | "warn" | "fail";

export interface Finding {
  readonly verdict: Verdict;
  readonly text: string;
  /** How to fix it (warn and fail). */
  readonly fix?: string;
}

/** What the checks compare a stream with: one account's hub link and outbox limits. */
export interface GatewaySide {
  readonly upstream: Pick<UpstreamConfig, "prefix" | "export" | "ack_timeout">;
  readonly buffer: { readonly max_bytes: number; readonly max_messages: number };
}

/** The subjects the gateway publishes to the hub: each exported pattern under the prefix. */
export function exportedSubjects(u: Pick<UpstreamConfig, "prefix" | "export">): string[] {
  return u.export.map((p) => `${u.prefix}.${p}`);
}

/**
 * The duplicate window the gateway needs, the rule it applies itself at each connect
 * (Upstream#checkWindow): a row resent after `upstream.ack_timeout` must still be within
 * the window, so the window must be longer than the ack timeout.
 */
export function windowLongEnough(duplicateWindowMs: number, ackTimeoutMs: number): boolean {
  return duplicateWindowMs > ackTimeoutMs;
}

/** JetStream's own default, and `create-stream`'s unless the ack timeout needs more. */
export const DEFAULT_CREATE_WINDOW_MS = 120_000;

/** `create-stream`'s window: 2 minutes, or twice `upstream.ack_timeout` when that is longer. */
export function createWindowMs(ackTimeoutMs: number): number {
  return Math.max(DEFAULT_CREATE_WINDOW_MS, 2 * ackTimeoutMs);
}

/** JetStream's "no limit" is -1 (0 for max_age). */
export const limitText = (n: number, unit: (n: number) => string = String): string =>
  n <= 0 ? "unlimited" : unit(n);

/**
 * The checks on a stream for one account, each with its verdict and fix:
 * - it captures `<prefix>.>` and every exported subject (fail);
 * - its duplicate window is longer than `upstream.ack_timeout` (fail: a resent row would be
 *   stored twice);
 * - discard `new` (warn: once full the hub refuses the gateway's rows, which stay in the
 *   outbox and are retried);
 * - max_bytes / max_msgs below the buffer's (warn: a backlog drained after an outage may
 *   not fit; with discard old the stream's oldest are removed);
 * - memory storage (warn: lost when the hub restarts).
 */
export function streamFindings(s: StreamFacts, gw: GatewaySide): Finding[] {
  const out: Finding[] = [];
  const prefixAll = `${gw.upstream.prefix}.>`;
  const wanted = [...new Set([prefixAll, ...exportedSubjects(gw.upstream)])];
  const missing = uncoveredBy(s.subjects, wanted);
  if (missing.length === 0) {
    out.push({ verdict: "ok", text: `captures ${wanted.join(", ")}` });
  } else {
    out.push({
      verdict: "fail",
      text: `does not capture ${missing.join(", ")} (its subjects: ${s.subjects.join(", ") || "none"})`,
      fix: `add ${prefixAll} to stream ${s.name}'s subjects, or name a stream that captures it in upstream.stream`,
    });
  }
  const window = formatDuration(s.duplicateWindowMs);
  const ack = formatDuration(gw.upstream.ack_timeout);
  if (windowLongEnough(s.duplicateWindowMs, gw.upstream.ack_timeout)) {
    out.push({
      verdict: "ok",
      text: `duplicate window ${window} is longer than upstream.ack_timeout ${ack}`,
    });
  } else {
    out.push({
      verdict: "fail",
      text: `duplicate window ${window} is not longer than upstream.ack_timeout ${ack}: a row resent after an ack timeout may be stored twice`,
      fix: `lengthen the stream's duplicate_window to ${formatDuration(createWindowMs(gw.upstream.ack_timeout))} or shorten upstream.ack_timeout`,
    });
  }
  if (s.discard === "new") {
    out.push({
      verdict: "warn",
      text: "discard new: once the stream is full the hub refuses the gateway's messages, which stay in the outbox and are retried",
      fix: "use discard old, or raise the stream's limits",
    });
  } else {
    out.push({ verdict: "ok", text: `discard ${s.discard}` });
  }
  if (s.maxBytes > 0 && s.maxBytes < gw.buffer.max_bytes) {
    out.push({
      verdict: "warn",
      text: `max_bytes ${s.maxBytes} is below the gateway's buffer.max_bytes ${gw.buffer.max_bytes}: a backlog drained after an outage may not fit`,
      fix: "raise the stream's max_bytes, or accept that its oldest messages go",
    });
  }
  if (s.maxMsgs > 0 && s.maxMsgs < gw.buffer.max_messages) {
    out.push({
      verdict: "warn",
      text: `max_msgs ${s.maxMsgs} is below the gateway's buffer.max_messages ${gw.buffer.max_messages}: a backlog drained after an outage may not fit`,
      fix: "raise the stream's max_msgs, or accept that its oldest messages go",
    });
  }
  if (s.storage === "memory") {
    out.push({
      verdict: "warn",
      text: "memory storage: the stream's messages are lost when the hub restarts",
      fix: "use a stream with file storage",
    });
  }
  return out;
}

/** The worst verdict of `findings` (ok when there are none). */
export function worst(findings: readonly Finding[]): Verdict {
  if (findings.some((f) => f.verdict === "fail")) return "fail";
  return findings.some((f) => f.verdict === "warn") ? "warn" : "ok";
}

/** Characters a JetStream stream name may not hold (nats-server: no `.`, `*`, `>`, spaces, path separators). */
const NOT_IN_STREAM_NAME = /[.*>\s/\\]/g;

/**
 * The stream `create-stream` creates when neither `--name` nor `upstream.stream` names one:
 * `EDGE_<GATEWAY>`, with `_<ACCOUNT>` for an account besides the global one, upper-cased,
 * each character a stream name may not hold turned into `_`.
 */
export function defaultStreamName(gatewayId: string, account: string | undefined): string {
  const parts = ["EDGE", gatewayId, ...(account === undefined ? [] : [account])];
  return parts.join("_").toUpperCase().replace(NOT_IN_STREAM_NAME, "_");
}

export interface StreamPlan {
  readonly name: string;
  readonly subjects: readonly string[];
  readonly replicas: number;
  readonly duplicateWindowMs: number;
  /** 0: no limit. */
  readonly maxAgeMs: number;
  /** -1: no limit. */
  readonly maxBytes: number;
}

/** The plan as `create-stream` prints it before creating anything. */
export function describePlan(p: StreamPlan): string[] {
  return [
    `stream    ${p.name}`,
    `subjects  ${p.subjects.join(", ")}`,
    `storage   file, replicas ${p.replicas}`,
    `duplicate window ${formatDuration(p.duplicateWindowMs)}`,
    "discard   old",
    `limits    max_msgs unlimited, max_bytes ${limitText(p.maxBytes)}, max_age ${limitText(p.maxAgeMs, formatDuration)}`,
  ];
}
