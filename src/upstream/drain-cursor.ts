import type { Outbox, OutboxRow } from "../store/index.js";

export type DrainPolicy = "fifo" | "fresh_first";

/**
 * Where forwarding has got to in the outbox. `fifo`: one cursor, oldest row first.
 * `fresh_first`: rows committed since the connection began (live) go before the backlog
 * that was waiting when it began, so a dashboard sees current values at once; the
 * backlog drains behind them. Per-subject order across the two is then not kept.
 */
export class DrainCursor {
  readonly #outbox: Outbox;
  /** Rows at or below this id are backlog (0 under fifo: everything is live). */
  readonly #boundary: number;
  #live: number;
  #backlog: number;

  constructor(outbox: Outbox, policy: DrainPolicy) {
    this.#outbox = outbox;
    this.#boundary = policy === "fresh_first" ? outbox.lastId : 0;
    this.#live = this.#boundary;
    this.#backlog = 0;
  }

  /** Nothing committed is left to send. */
  caughtUp(): boolean {
    return this.#live >= this.#outbox.lastId && this.#backlog >= this.#boundary;
  }

  /** Up to `limit` rows to send next: live rows first, then backlog. */
  read(limit: number): OutboxRow[] {
    if (this.#live < this.#outbox.lastId) {
      const rows = this.#outbox.readAfter(this.#live, limit);
      if (rows.length > 0) return rows;
      // Rows up to lastId were forwarded already (perhaps by an earlier run).
      this.#live = this.#outbox.lastId;
    }
    if (this.#backlog < this.#boundary) {
      const rows = this.#outbox.readAfter(this.#backlog, limit);
      const inBacklog = rows.filter((r) => r.id <= this.#boundary);
      if (inBacklog.length > 0) return inBacklog;
      this.#backlog = this.#boundary;
    }
    return [];
  }

  /** Marks `rowId` as sent. */
  advance(rowId: number): void {
    if (rowId > this.#boundary) this.#live = Math.max(this.#live, rowId);
    else this.#backlog = Math.max(this.#backlog, rowId);
  }

  /** Goes back so the given unacknowledged rows are sent again, in id order. */
  rewind(unacknowledged: Iterable<number>): void {
    let live = Number.POSITIVE_INFINITY;
    let backlog = Number.POSITIVE_INFINITY;
    for (const id of unacknowledged) {
      if (id > this.#boundary) live = Math.min(live, id);
      else backlog = Math.min(backlog, id);
    }
    if (Number.isFinite(live)) this.#live = Math.min(this.#live, live - 1);
    if (Number.isFinite(backlog)) this.#backlog = Math.min(this.#backlog, backlog - 1);
  }
}
