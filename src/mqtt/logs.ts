import { type Clock, type LogFields, type Logger, RateLimitedLog } from "../core/index.js";

/**
 * Lines of one kind that clients can cause, per window: a flood of bad clients must not
 * flood the log. The rest are counted in metrics and said as `suppressed` on the next line.
 */
const CLIENT_LINES_PER_WINDOW = 10;
const CLIENT_WINDOW_MS = 10_000;
/**
 * A bound that refuses (max sessions, a full session store...) logs one line per window:
 * an attacker hitting it thousands of times a second says nothing new after the first.
 */
const LIMIT_LINES_PER_WINDOW = 1;
const LIMIT_WINDOW_MS = 10_000;

/** The warnings clients can cause, each rate-limited apart (fixed keys). */
export type ClientLogKind = "protocol-error" | "refusal" | "lockout" | "slow-consumer";

/** The bounds whose refusals are logged rate-limited (fixed keys: the map stays small). */
export type LimitKey = "max-sessions" | "session-store-full" | "max-subscriptions-per-client";

/**
 * The MQTT part's rate-limited warnings. Refusals and lockouts are apart, so that one
 * cannot crowd the other out; the fields of `limit` lines are ours, never the client's.
 */
export class MqttLogs {
  readonly #clients: RateLimitedLog;
  readonly #limits: RateLimitedLog;

  constructor(log: Logger, clock: Clock) {
    this.#clients = new RateLimitedLog(log, {
      burst: CLIENT_LINES_PER_WINDOW,
      windowMs: CLIENT_WINDOW_MS,
      clock,
    });
    this.#limits = new RateLimitedLog(log, {
      burst: LIMIT_LINES_PER_WINDOW,
      windowMs: LIMIT_WINDOW_MS,
      clock,
    });
  }

  /** A warning of `kind` that a client caused (its text clipped by the caller). */
  client(kind: ClientLogKind, fields: LogFields, msg: string): void {
    this.#clients.log(kind, fields, msg);
  }

  /** A bound refused something: one line per bound per window. */
  limit(key: LimitKey, fields: LogFields, msg: string): void {
    this.#limits.log(key, fields, msg);
  }
}
