import type Database from "better-sqlite3";
import type { Clock, ClockTimer, Guard, Logger } from "../core/index.js";
import { errorMessage } from "../core/index.js";
import type { BufferClass } from "./buffer-policy.js";
import { pragma } from "./database.js";

/**
 * Upkeep runs at a tenth of the shortest max_age (so a row outlives its max_age by at most
 * a tenth), but not more often than every second nor less than every minute.
 */
const MAX_AGE_SHARE = 10;
const MIN_INTERVAL_MS = 1_000;
const MAX_INTERVAL_MS = 60_000;

/** What one round of upkeep does besides the checkpoint; the outbox provides it. */
export interface MaintenanceTasks {
  readonly classes: readonly BufferClass[];
  /** Starts guarding the disk (DiskGuard.start). */
  startDiskGuard(): void;
  /** Checks the disk (DiskGuard.poll). */
  pollDisk(): void;
  /** Retries deletes that failed. */
  retryDeletes(): void;
  /** Deletes the rows of `cls` received before `cutoffMs`. */
  expire(cls: BufferClass, cutoffMs: number): void;
}

/**
 * Periodic upkeep of the outbox: guarding the disk (DiskGuard: a reserve file beside the
 * database, so that a full disk is a full buffer), retrying failed deletes, expiring rows
 * older than their class's max_age, and a passive WAL checkpoint. Timed by the clock.
 */
export class OutboxMaintenance {
  readonly #db: Database.Database;
  readonly #tasks: MaintenanceTasks;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #tick: () => void;
  #everyMs = 0;
  #timer: ClockTimer | undefined;

  constructor(
    db: Database.Database,
    tasks: MaintenanceTasks,
    options: { log: Logger; guard: Guard; clock: Clock },
  ) {
    this.#db = db;
    this.#tasks = tasks;
    this.#log = options.log;
    this.#clock = options.clock;
    // Re-armed first, so that a round that throws (the guard reports it) stops nothing.
    this.#tick = options.guard.wrap("store.maintenance", () => {
      this.#arm();
      this.run(this.#clock.now());
    });
  }

  /**
   * Starts the rounds, every `intervalMs` (default: from the shortest max_age), until
   * `stop` or an abort of `signal`.
   */
  start(intervalMs?: number, signal?: AbortSignal): void {
    if (this.#timer !== undefined || signal?.aborted) return;
    signal?.addEventListener("abort", () => this.stop(), { once: true });
    this.#tasks.startDiskGuard();
    const shortest = Math.min(...this.#tasks.classes.map((c) => c.maxAgeMs));
    this.#everyMs =
      intervalMs ?? Math.min(MAX_INTERVAL_MS, Math.max(MIN_INTERVAL_MS, shortest / MAX_AGE_SHARE));
    this.#arm();
  }

  stop(): void {
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** One round of upkeep, as of `now`. */
  run(now: number): void {
    this.#tasks.pollDisk();
    this.#tasks.retryDeletes();
    for (const cls of this.#tasks.classes) {
      if (Number.isFinite(cls.maxAgeMs)) this.#tasks.expire(cls, now - cls.maxAgeMs);
    }
    try {
      pragma(this.#db, "wal_checkpoint(PASSIVE)");
    } catch (err) {
      this.#log.warn({ err: errorMessage(err) }, "WAL checkpoint failed");
    }
  }

  #arm(): void {
    this.#timer = this.#clock.setTimeout(this.#tick, this.#everyMs);
    this.#timer.unref?.();
  }
}
