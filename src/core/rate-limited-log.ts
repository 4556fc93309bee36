import { type Clock, systemClock } from "./clock.js";
import type { LogFields, Logger } from "./observe.js";

export type LimitedLevel = "info" | "warn" | "error";

export interface RateLimitOptions {
  /** Lines of one key per window; the rest are counted. */
  readonly burst: number;
  readonly windowMs: number;
  readonly level?: LimitedLevel;
  readonly clock?: Clock;
}

/** Keys a log may track at once: keys must come from a fixed set, never from a client. */
const MAX_KEYS = 1_000;

/**
 * Log lines a flood can cause (bad clients, refused writes, device garbage), at most
 * `burst` per key per window: an attacker must not be able to fill the disk with our log.
 * The first line of a key after lines were held back carries `suppressed`, how many;
 * every event is counted in metrics anyway, so nothing is lost but repetition.
 */
export class RateLimitedLog {
  readonly #log: Logger;
  readonly #burst: number;
  readonly #windowMs: number;
  readonly #level: LimitedLevel;
  readonly #clock: Clock;
  readonly #keys = new Map<string, { startMs: number; logged: number; suppressed: number }>();

  constructor(log: Logger, options: RateLimitOptions) {
    this.#log = log;
    this.#burst = options.burst;
    this.#windowMs = options.windowMs;
    this.#level = options.level ?? "warn";
    this.#clock = options.clock ?? systemClock;
  }

  /** Logs the line unless `key` has used its burst in this window; says whether it did. */
  log(key: string, fields: LogFields, msg: string): boolean {
    const now = this.#clock.now();
    let state = this.#keys.get(key);
    if (state === undefined || now - state.startMs >= this.#windowMs) {
      const suppressed = state?.suppressed ?? 0;
      if (state === undefined && this.#keys.size >= MAX_KEYS) this.#forgetQuiet(now);
      state = { startMs: now, logged: 0, suppressed };
      this.#keys.set(key, state);
    }
    if (state.logged >= this.#burst) {
      state.suppressed++;
      return false;
    }
    state.logged++;
    const line = state.suppressed > 0 ? { ...fields, suppressed: state.suppressed } : fields;
    state.suppressed = 0;
    this.#log[this.#level](line, msg);
    return true;
  }

  /** Drops keys whose window has closed with nothing held back (and, if none, the oldest). */
  #forgetQuiet(now: number): void {
    for (const [key, s] of this.#keys) {
      if (now - s.startMs >= this.#windowMs && s.suppressed === 0) this.#keys.delete(key);
    }
    if (this.#keys.size >= MAX_KEYS) {
      const oldest = this.#keys.keys().next().value;
      if (oldest !== undefined) this.#keys.delete(oldest);
    }
  }
}
