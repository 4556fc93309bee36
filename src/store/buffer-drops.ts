import type { Clock, Counter, Labels, Logger, Metrics } from "../core/index.js";
import { RateLimitedLog } from "../core/index.js";
import type { BufferClass } from "./buffer-policy.js";

/** Why rows left the buffer without reaching the hub. */
export type DropReason = "evicted" | "expired" | "rejected" | "disk_full";

/**
 * One log line per class and reason per window at most (a full buffer drops on every
 * commit); the counter counts everything, and the next line carries what was held back.
 */
const DROP_LOG_WINDOW_MS = 10_000;
const DROP_LOG_BURST = 1;
const MS_PER_SECOND = 1000;

const WHAT: Record<DropReason, string> = {
  evicted: "buffer full: evicted the oldest messages",
  expired: "messages older than max_age expired",
  rejected: "buffer full: new messages refused",
  disk_full: "disk full: messages refused",
};

/** Counts and logs the messages that left the buffer without reaching the hub. */
export class BufferDrops {
  readonly #counter: Counter;
  readonly #log: RateLimitedLog;
  readonly #clock: Clock;
  /** Per class and reason: messages since the last line, and the oldest among them. */
  readonly #unlogged = new Map<string, { count: number; oldestMs: number }>();

  readonly #labels: Labels | undefined;

  /** `labels` go on every count besides class and reason (an account's queue: `account`). */
  constructor(log: Logger, metrics: Metrics, clock: Clock, labels?: Labels) {
    this.#labels = labels;
    this.#counter = metrics.counter(
      "leafgate_buffer_dropped_total",
      "Messages that left the buffer without reaching the hub, by class and reason",
    );
    this.#log = new RateLimitedLog(log, {
      burst: DROP_LOG_BURST,
      windowMs: DROP_LOG_WINDOW_MS,
      clock,
    });
    this.#clock = clock;
  }

  /** `count` messages of `cls` went for `reason`, the oldest received at `oldestMs`. */
  record(cls: BufferClass, reason: DropReason, count: number, oldestMs: number): void {
    this.#counter.inc({ class: cls.name, reason, ...this.#labels }, count);
    // Keys come from a fixed set: configured class names times the reasons.
    const key = `${cls.name}/${reason}`;
    const entry = this.#unlogged.get(key) ?? { count: 0, oldestMs };
    entry.count += count;
    entry.oldestMs = Math.min(entry.oldestMs, oldestMs);
    this.#unlogged.set(key, entry);
    const fields = {
      ...this.#labels,
      class: cls.name,
      messages: entry.count,
      oldestAgeS: Math.round((this.#clock.now() - entry.oldestMs) / MS_PER_SECOND),
      onFull: cls.onFull,
    };
    if (this.#log.log(key, fields, WHAT[reason])) this.#unlogged.delete(key);
  }

  /** Rows removed for `reason`, counted per class; the oldest is the oldest of all. */
  recordRows(
    rows: readonly { readonly received_at_ms: number; readonly class: string }[],
    reason: DropReason,
    classOf: (name: string) => BufferClass,
  ): void {
    let oldest = Number.POSITIVE_INFINITY;
    const byClass = new Map<BufferClass, number>();
    for (const row of rows) {
      const cls = classOf(row.class);
      byClass.set(cls, (byClass.get(cls) ?? 0) + 1);
      oldest = Math.min(oldest, row.received_at_ms);
    }
    for (const [cls, n] of byClass) this.record(cls, reason, n, oldest);
  }
}
