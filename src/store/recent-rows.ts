import type { Envelope } from "../core/index.js";
import { asBuffer, type IdRange, type OutboxRow } from "./outbox-table.js";

/**
 * Bounds of the cache: a forwarder keeping up reads far fewer rows than this behind the
 * newest; a backlog is read from SQLite anyway.
 */
const RECENT_MAX_ROWS = 8192;
const RECENT_MAX_BYTES = 8 * 1024 * 1024;

/**
 * Recently committed rows, kept in memory (bounded) so that a forwarder keeping up with
 * live traffic reads them from here instead of back from SQLite. Holds committed rows with
 * contiguous ascending ids, ending at the last committed one; any doubt empties it, since
 * SQLite has the truth.
 */
export class RecentRows {
  #rows: OutboxRow[] = [];
  #bytes = 0;

  /** Up to `limit` rows after `afterId`, or undefined when the cache does not reach back that far. */
  read(afterId: number, limit: number): OutboxRow[] | undefined {
    const first = this.#rows[0];
    if (first === undefined || afterId + 1 < first.id) return undefined;
    const start = afterId + 1 - first.id;
    return this.#rows.slice(start, start + limit);
  }

  /** Keeps the rows just committed (ids from `firstId`, contiguous: one writer). */
  remember(messages: readonly Envelope[], firstId: number): void {
    const previous = this.#rows.at(-1);
    if (previous !== undefined && previous.id !== firstId - 1) this.forget();
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
    if (drop > 0) this.#rows = this.#rows.slice(drop);
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
      const drop = Math.min(to, last.id) - first.id + 1;
      for (let i = 0; i < drop; i++) this.#bytes -= this.#rows[i]!.payload.length;
      this.#rows = this.#rows.slice(drop);
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
  }
}
