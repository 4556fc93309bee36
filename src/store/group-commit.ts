import type { Clock, ClockTimer, Guard } from "../core/index.js";

/** A promise with its settle functions, for a batch's appenders to wait on. */
export interface Deferred {
  readonly done: Promise<void>;
  resolve(): void;
  reject(err: Error): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const done = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A batch nobody awaits (QoS 0 only) must not become an unhandled rejection.
  done.catch(() => {});
  return { done, resolve, reject };
}

/**
 * Rows waiting for one commit. Strict rows (of `reject` classes) settle apart from the
 * lenient ones: on a full disk they are refused while the others make room by eviction.
 */
export interface Batch<Row> {
  readonly rows: Row[];
  readonly lenient: Deferred;
  readonly strict: Deferred;
}

export interface GroupCommitOptions {
  /** Wait this long for more rows before committing; 0 = commit on the next event-loop turn. */
  readonly intervalMs: number;
  /** Commit at once when this many rows are pending. */
  readonly maxRows: number;
  readonly clock: Clock;
  /** Timers that client input schedules run under the guard. */
  readonly guard: Guard;
  /** Commits the pending batch (it calls `take`); run when the batch is due. */
  readonly flush: () => void;
}

/**
 * Gathers rows into batches, so that every append in one batch shares one transaction
 * and one promise. A batch is due `intervalMs` after its first row (the next turn at 0),
 * or at once when it holds `maxRows`.
 */
export class GroupCommit<Row> {
  readonly #options: GroupCommitOptions;
  readonly #flushLater: () => void;
  #batch: Batch<Row> | undefined;
  #timer: ClockTimer | undefined;
  #immediate: NodeJS.Immediate | undefined;

  constructor(options: GroupCommitOptions) {
    this.#options = options;
    this.#flushLater = options.guard.wrap("store.group-commit", options.flush);
  }

  /** Adds `row` to the pending batch; resolves when the batch is committed. */
  add(row: Row, strict: boolean): Promise<void> {
    let batch = this.#batch;
    if (batch === undefined) {
      batch = { rows: [], lenient: deferred(), strict: deferred() };
      this.#batch = batch;
      const { intervalMs, clock } = this.#options;
      if (intervalMs > 0) this.#timer = clock.setTimeout(this.#flushLater, intervalMs);
      else this.#immediate = setImmediate(this.#flushLater);
    }
    batch.rows.push(row);
    const done = strict ? batch.strict.done : batch.lenient.done;
    if (batch.rows.length >= this.#options.maxRows) this.#options.flush();
    return done;
  }

  /** The pending batch, now no longer pending (its timer cancelled); undefined if none. */
  take(): Batch<Row> | undefined {
    const batch = this.#batch;
    if (batch === undefined) return undefined;
    // Fake timers (in tests) are strict: an Immediate must be cleared with clearImmediate.
    if (this.#timer !== undefined) this.#options.clock.clearTimeout(this.#timer);
    if (this.#immediate !== undefined) clearImmediate(this.#immediate);
    this.#timer = undefined;
    this.#immediate = undefined;
    this.#batch = undefined;
    return batch;
  }
}
