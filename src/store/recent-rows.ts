import type { Envelope } from "../core/index.js";
import { asBuffer, type IdRange, type OutboxRow } from "./outbox-table.js";

/**
 * Bounds of the cache: a forwarder keeping up reads far fewer rows than this behind the
 * newest; a backlog is read from SQLite anyway.
 */
const RECENT_MAX_ROWS = 8192;
const RECENT_MAX_BYTES = 8 * 1024 * 1024;

/**
 * Recently committed rows of one account's queue, kept in memory (bounded) so that a
 * forwarder keeping up with live traffic reads them from here instead of back from
 * SQLite. Ids ascend but may have gaps (other accounts' rows take ids of the same
 * sequence); the cache holds every committed row of the queue from `#from` on, ending at
 * the last committed one. Any doubt empties it, since SQLite has the truth.
 */
export class RecentRows {
  #rows: OutboxRow[] = [];
  #bytes = 0;
  /** Every committed row of the queue with an id from this one on is in `#rows`. */
  #from = Number.POSITIVE_INFINITY;

  /** Up to `limit` rows after `afterId`, or undefined when the cache does not reach back that far. */
  read(afterId: number, limit: number): OutboxRow[] | undefined {
    if (this.#rows.length === 0 || afterId + 1 < this.#from) return undefined;
    const start = this.#firstAbove(afterId);
    return this.#rows.slice(start, start + limit);
  }

  /** Keeps the rows just committed (ids from `firstId`, contiguous within one commit). */
  remember(messages: readonly Envelope[], firstId: number): void {
    const previous = this.#rows.at(-1);
    if (previous !== undefined && previous.id >= firstId) this.forget();
    if (this.#rows.length === 0) this.#from = firstId;
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i]!;
      this.#rows.push({
        id: firstId + i,
        subject: m.subject,
        payload: asBuffer(m.payload),
        headers: m.headers !== undefined && m.headers.size > 0 ? m.headers : undefined,
        receivedAtMs: m.receivedAtMs,
      });
      this.#bytes += m.payload.length;
    }
    let drop = 0;
    while (
      this.#rows.length - drop > RECENT_MAX_ROWS ||
      (this.#bytes > RECENT_MAX_BYTES && drop < this.#rows.length)
    ) {
      this.#bytes -= this.#rows[drop]!.payload.length;
      drop++;
    }
    if (drop > 0) this.#dropFirst(drop);
  }

  /** Forwarded rows were deleted: acks arrive in order, so usually a prefix goes. */
  deleted(ranges: readonly IdRange[]): void {
    for (const [from, to] of ranges) {
      const first = this.#rows[0];
      if (first === undefined) return;
      const last = this.#rows[this.#rows.length - 1]!;
      if (to < first.id || from > last.id) continue;
      if (from > first.id) {
        // A hole in the middle: drop the cache, SQLite has the truth.
        this.forget();
        return;
      }
      const drop = this.#firstAbove(to);
      for (let i = 0; i < drop; i++) this.#bytes -= this.#rows[i]!.payload.length;
      this.#dropFirst(drop);
    }
  }

  /** Rows left without being forwarded (evicted, expired, reconciled): forget all if any was cached. */
  removed(rows: readonly { readonly id: number }[]): void {
    const first = this.#rows[0];
    if (first !== undefined && rows.some((r) => r.id >= first.id)) this.forget();
  }

  forget(): void {
    this.#rows = [];
    this.#bytes = 0;
    this.#from = Number.POSITIVE_INFINITY;
  }

  /** Drops the first `n` rows; the cache still covers everything after the last of them. */
  #dropFirst(n: number): void {
    if (n === 0) return;
    this.#from = this.#rows[n - 1]!.id + 1;
    this.#rows = this.#rows.slice(n);
  }

  /** Index of the first cached row with an id above `id` (binary search: ids ascend). */
  #firstAbove(id: number): number {
    let lo = 0;
    let hi = this.#rows.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#rows[mid]!.id <= id) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
