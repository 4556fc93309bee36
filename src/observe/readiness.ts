/**
 * Readiness: whether the gateway does its whole job now, and if not, why, in words a
 * person acts on. Pure: decided from the `/status` snapshot alone (docs/status.md).
 */

import { formatDuration } from "./duration.js";

/** A hub link as `/status` shows it. */
export interface UpstreamView {
  readonly state: string;
  readonly server?: string | undefined;
  readonly stream?: string | undefined;
  readonly lastError?: string | undefined;
  /** The configured servers as dialed (credentials masked). */
  readonly servers?: readonly string[];
}

/** A serial device as `/status` shows it. */
export interface SerialView {
  readonly device: string;
  readonly path: string;
  readonly state: string;
  readonly reason?: string;
  /** When the port opened (while `open`). */
  readonly since?: number;
  readonly lastFrameAt?: number | null;
  /** Silence longer than this means the device stopped answering; null: no expectation. */
  readonly silentAfterMs?: number | null;
}

/** An outbox class as `/status` shows it. */
export interface ClassView {
  readonly name: string;
  readonly messages: number;
  readonly bytes: number;
  readonly onFull: string;
  readonly maxBytes?: number | null;
  readonly maxMessages?: number | null;
  readonly maxAgeMs?: number | null;
  readonly oldestAgeMs?: number | null;
}

/** An account as `/status` shows it. */
export interface AccountView {
  readonly upstream: UpstreamView;
  readonly outbox?: { readonly classes: readonly ClassView[] };
}

/** The parts of `/status` readiness is decided from. */
export interface ReadinessInput {
  readonly healthy: boolean;
  /** The gateway's lifecycle state; `healthy` alone decides when absent. */
  readonly state?: string;
  /** The gateway's clock when the snapshot was taken; silence is measured to it. */
  readonly time?: number;
  readonly upstream?: UpstreamView | undefined;
  /** Per account, `$G` first; when present it supersedes `upstream`. */
  readonly accounts?: Readonly<Record<string, AccountView>>;
  readonly serial?: readonly SerialView[];
  readonly disk?: { readonly state: string; readonly resumeAtFreeBytes: number };
}

export type Readiness =
  | { readonly ready: true }
  | { readonly ready: false; readonly reasons: readonly string[] };

const GLOBAL = "$G";

/**
 * A class this full (of its max_bytes or max_messages) is not ready: a reject class refuses
 * the next messages and a drop_oldest class is about to lose its oldest; a healthy box,
 * whose hub takes what comes, is nowhere near.
 */
export const FULL_FRACTION = 0.95;
/**
 * A class whose oldest message has waited this share of its max_age is not ready: the
 * backlog does not drain, and at max_age messages expire (are lost).
 */
export const OLD_FRACTION = 0.5;

/**
 * Ready when the gateway is running, every account's hub link forwards, no buffer class is
 * nearly full or holds messages near their max_age, the disk guard lets the buffer grow,
 * every serial port is open and no polled device is silent. Each failed rule gives one
 * reason, worded to stay the same while the condition lasts (an alert can key on it).
 */
export function readiness(status: ReadinessInput): Readiness {
  const reasons: string[] = [];
  if (status.state !== undefined ? status.state !== "running" : !status.healthy) {
    reasons.push(`gateway is ${status.state ?? "not healthy"}, not running`);
  }
  const accounts: [string, AccountView][] =
    status.accounts !== undefined
      ? Object.entries(status.accounts)
      : status.upstream !== undefined
        ? [[GLOBAL, { upstream: status.upstream }]]
        : [];
  for (const [account, a] of accounts) {
    const own = (reason: string): string =>
      account === GLOBAL ? reason : `account ${account}: ${reason}`;
    const reason = upstreamReason(a.upstream);
    if (reason !== undefined) reasons.push(own(reason));
    for (const c of a.outbox?.classes ?? []) {
      for (const r of classReasons(c)) reasons.push(own(r));
    }
  }
  if (status.disk?.state === "full") {
    reasons.push(
      "the disk is full: the buffer is held at its current size (drop_oldest classes evict, " +
        `reject classes refuse) until ${formatMiB(status.disk.resumeAtFreeBytes)} are free in the data dir`,
    );
  }
  for (const d of status.serial ?? []) {
    if (d.state !== "open") {
      const why = d.reason ?? (d.state === "opening" ? "opening" : d.state);
      reasons.push(`serial port ${d.path} (device ${d.device}) not open: ${why}`);
      continue;
    }
    // Silence counts from the last frame, or from the port's (re)opening when that came
    // after it: a device just plugged back in gets its whole limit.
    const silentAfter = d.silentAfterMs ?? null;
    const opened = d.since ?? Number.NEGATIVE_INFINITY;
    const last = d.lastFrameAt ?? Number.NEGATIVE_INFINITY;
    const heard = Math.max(opened, last);
    if (silentAfter === null || status.time === undefined || heard === Number.NEGATIVE_INFINITY) {
      continue;
    }
    if (status.time - heard > silentAfter) {
      reasons.push(
        `serial device ${d.device} on ${d.path} is silent: no good frame for over ` +
          `${formatDuration(silentAfter)}${last < opened ? " (none since the port opened)" : ""}`,
      );
    }
  }
  return reasons.length === 0 ? { ready: true } : { ready: false, reasons };
}

function formatMiB(bytes: number): string {
  return `${Math.round(bytes / 1024 / 1024)} MiB`;
}

function classReasons(c: ClassView): string[] {
  const reasons: string[] = [];
  const over = (n: number, max: number | null | undefined): max is number =>
    max !== null && max !== undefined && n >= max * FULL_FRACTION;
  const limits = [
    over(c.bytes, c.maxBytes) ? `max_bytes ${c.maxBytes}` : undefined,
    over(c.messages, c.maxMessages) ? `max_messages ${c.maxMessages}` : undefined,
  ].filter((l) => l !== undefined);
  if (limits.length > 0) {
    const then =
      c.onFull === "reject" ? "new messages are refused" : "the oldest messages are dropped";
    reasons.push(
      `buffer class ${c.name} is over ${FULL_FRACTION * 100}% full (${limits.join(", ")}): ${then} when it is full`,
    );
  }
  const maxAge = c.maxAgeMs ?? null;
  if (maxAge !== null && (c.oldestAgeMs ?? 0) >= maxAge * OLD_FRACTION) {
    reasons.push(
      `buffer class ${c.name}: the oldest message has waited over half its max_age ` +
        `(${formatDuration(maxAge)}); at max_age messages expire`,
    );
  }
  return reasons;
}

function upstreamReason(link: UpstreamView): string | undefined {
  switch (link.state) {
    case "forwarding":
      return undefined;
    case "waiting-for-stream":
      return (
        `hub ${link.server ?? "?"} answers but forwarding waits for its stream: ` +
        `${link.lastError ?? "stream not checked yet"}; messages are buffered`
      );
    case "stopping":
    case "stopped":
      return `hub link is ${link.state}; messages are buffered`;
    default: {
      const where =
        link.server !== undefined
          ? ` (last server ${link.server})`
          : link.servers !== undefined && link.servers.length > 0
            ? ` (dialing ${link.servers.join(", ")})`
            : "";
      const why = link.lastError !== undefined ? `: ${link.lastError}` : ": not connected yet";
      return `hub unreachable${where}${why}; messages are buffered`;
    }
  }
}
