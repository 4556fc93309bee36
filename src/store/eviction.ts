import type { Logger } from "../core/index.js";
import { errorMessage } from "../core/index.js";
import type { BufferClass, BufferPolicy, Excess } from "./buffer-policy.js";
import type { OutboxTable, RemovedRow } from "./outbox-table.js";

/** Rows examined per step while evicting or expiring: bounds memory on a large class. */
const EVICT_CHUNK_ROWS = 512;
/** Eviction goes this far below a limit, so a full class does not evict on every commit. */
const EVICT_HEADROOM = 0.01;
/**
 * On a full disk, eviction frees this many times the batch's rows and bytes: pages freed
 * by small rows may not fit larger ones.
 */
const DISK_FULL_EVICT_FACTOR = 2;

/** Whether the next-oldest `row` goes too, given what has gone so far. */
type While = (row: RemovedRow, goneRows: number, goneBytes: number) => boolean;

/** What must go to be under a limit again: the excess plus headroom. */
function target(excess: Excess, maxMessages: number, maxBytes: number): Excess {
  // Headroom only on the limit that is over: the other may be huge (or unlimited).
  return {
    messages: excess.messages > 0 ? excess.messages + Math.floor(maxMessages * EVICT_HEADROOM) : 0,
    bytes: excess.bytes > 0 ? excess.bytes + Math.floor(maxBytes * EVICT_HEADROOM) : 0,
  };
}

/**
 * Removing rows the hub never got, for want of room (evicted) or time (expired). Rows of
 * `reject` classes are never evicted; a drop_oldest class gives way in its own rows,
 * oldest first (ids follow arrival). Every removal is told to the policy.
 */
export class Eviction {
  readonly #table: OutboxTable;
  readonly #policy: BufferPolicy;
  readonly #log: Logger;
  readonly #evictTx: (cls: BufferClass, want: Excess) => RemovedRow[];
  readonly #expireTx: (cls: BufferClass, cutoffMs: number) => RemovedRow[];

  constructor(table: OutboxTable, policy: BufferPolicy, log: Logger) {
    this.#table = table;
    this.#policy = policy;
    this.#log = log;
    this.#evictTx = table.db.transaction((cls: BufferClass, want: Excess) =>
      this.#evict(cls, want),
    );
    this.#expireTx = table.db.transaction((cls: BufferClass, cutoffMs: number) =>
      this.#deleteOldestWhile(cls, (row) => row.received_at_ms < cutoffMs),
    );
  }

  /**
   * Inside the commit transaction: brings every drop_oldest class of the batch back under
   * its own limits, then the whole buffer under the global ones, the batch's classes
   * (`committing`, in order of arrival) paying first.
   */
  overLimits(committing: Iterable<BufferClass>): RemovedRow[] {
    const evicted: RemovedRow[] = [];
    const { order, batch } = this.#dropOrder(committing);
    for (const cls of order.slice(0, batch)) {
      const own = this.#policy.excess(cls);
      if (own.messages > 0 || own.bytes > 0) {
        evicted.push(...this.#evict(cls, target(own, cls.maxMessages, cls.maxBytes)));
      }
    }
    const { maxMessages, maxBytes } = this.#policy.limits;
    for (const cls of order) {
      const global = this.#policy.globalExcess();
      if (global.messages === 0 && global.bytes === 0) break;
      evicted.push(...this.#evict(cls, target(global, maxMessages, maxBytes)));
    }
    return evicted;
  }

  /**
   * On a full disk: evicts the oldest rows of drop_oldest classes, those of `committing`
   * first, DISK_FULL_EVICT_FACTOR times the batch's rows and bytes, or all they have; each
   * class in its own transaction. `made` is false when they hold less than the batch needs
   * (evicting would lose rows and still not fit it) or eviction itself failed.
   */
  makeRoom(
    committing: Iterable<BufferClass>,
    batchRows: number,
    batchBytes: number,
  ): { evicted: RemovedRow[]; made: boolean } {
    const { order } = this.#dropOrder(committing);
    const evicted: RemovedRow[] = [];
    const evictable = order.reduce((n, c) => n + this.#policy.usage(c).bytes, 0);
    if (evictable < batchBytes) return { evicted, made: false };
    const wantRows = batchRows * DISK_FULL_EVICT_FACTOR;
    const wantBytes = batchBytes * DISK_FULL_EVICT_FACTOR;
    let rows = 0;
    let bytes = 0;
    try {
      for (const cls of order) {
        if (rows >= wantRows && bytes >= wantBytes) break;
        const gone = this.#evictTx(cls, { messages: wantRows - rows, bytes: wantBytes - bytes });
        for (const g of gone) bytes += g.size;
        rows += gone.length;
        evicted.push(...gone);
      }
    } catch (err) {
      // Each class evicts in its own transaction: those before this one stand.
      this.#reload();
      this.#log.warn({ err: errorMessage(err) }, "evicting on a full disk failed");
      return { evicted, made: false };
    }
    return { evicted, made: true };
  }

  /** Deletes the rows of `cls` received before `cutoffMs`, in a transaction; [] if that fails. */
  expire(cls: BufferClass, cutoffMs: number): RemovedRow[] {
    try {
      return this.#expireTx(cls, cutoffMs);
    } catch (err) {
      this.#reload();
      this.#log.warn({ err: errorMessage(err), class: cls.name }, "expiring rows failed");
      return [];
    }
  }

  /** Deletes the oldest rows of `cls` until `want` rows and bytes are gone (or it is empty). */
  #evict(cls: BufferClass, want: Excess): RemovedRow[] {
    return this.#deleteOldestWhile(cls, (_, n, b) => n < want.messages || b < want.bytes);
  }

  /**
   * THE chunked delete: the oldest rows of `cls` go, one chunk at a time, while `more`
   * holds for the next one. Runs in the caller's transaction; a rollback must reload the
   * policy, which has been told.
   */
  #deleteOldestWhile(cls: BufferClass, more: While): RemovedRow[] {
    const gone: RemovedRow[] = [];
    let goneBytes = 0;
    let after = 0;
    for (;;) {
      const chunk = this.#table.oldestOfClass(cls.name, after, EVICT_CHUNK_ROWS);
      let upTo = after;
      for (const row of chunk) {
        if (!more(row, gone.length, goneBytes)) break;
        gone.push(row);
        goneBytes += row.size;
        upTo = row.id;
      }
      if (upTo === after) break;
      this.#table.deleteClassUpTo(cls.name, upTo);
      // Stopped inside the chunk, or the class has no more rows.
      if (chunk.length < EVICT_CHUNK_ROWS || chunk.at(-1)!.id !== upTo) break;
      after = upTo;
    }
    this.#policy.removed(gone);
    return gone;
  }

  /** Drop_oldest classes: those of `first` in their order, then the others; `batch` = how many came first. */
  #dropOrder(first: Iterable<BufferClass>): { order: BufferClass[]; batch: number } {
    const seen = new Set<BufferClass>();
    for (const cls of first) if (cls.onFull === "drop_oldest") seen.add(cls);
    const batch = seen.size;
    for (const cls of this.#policy.classes) if (cls.onFull === "drop_oldest") seen.add(cls);
    return { order: [...seen], batch };
  }

  #reload(): void {
    this.#policy.reload(this.#table.perClass());
  }
}
