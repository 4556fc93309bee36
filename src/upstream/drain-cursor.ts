import type { OutboxReader, OutboxRow } from "../store/index.js";

export type DrainPolicy = "fifo" | "fresh_first";

/** What the cursor reads of the outbox. */
type Rows = Pick<OutboxReader, "lastId" | "readAfter">;

/** Rows sent on a connection, as `sentSoFar()` describes them: every id up to `upTo`, and `from`…`to`. */
export interface SentRows {
  readonly upTo: number;
  readonly from: number;
  readonly to: number;
}

const SENT_FORMAT = /^\.\.(\d+),(\d+)\.\.(\d+)$/;

/** Reads `sentSoFar()`'s text; undefined if it is not that. */
export function parseSentRows(text: string): SentRows | undefined {
  const m = SENT_FORMAT.exec(text);
  if (m === null) return undefined;
  const [upTo, from, to] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (![upTo, from, to].every(Number.isSafeInteger) || upTo >= from || from > to) return undefined;
  return { upTo, from, to };
}

/**
 * Where forwarding has got to in the outbox. `fifo`: one cursor, oldest row first.
 * `fresh_first`: rows committed since the connection began (live) go before the backlog
 * that was waiting when it began, so a dashboard sees current values at once; the
 * backlog drains behind them. Per-subject order across the two is then not kept.
 */
export class DrainCursor {
  readonly #outbox: Rows;
  /** Rows at or below this id are backlog (0 under fifo: everything is live). */
  readonly #boundary: number;
  #live: number;
  #backlog: number;

  constructor(outbox: Rows, policy: DrainPolicy) {
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

  /**
   * Which rows have been sent, when that is not simply every row up to the last one sent:
   * after live rows went ahead of a backlog that is not through yet. As text,
   * `..<b>,<from>..<to>`: every row up to b (backlog), and from..to (live); the backlog rows
   * between b and from were not sent. Carried by each message sent out of id order, so
   * that the last one the stream holds tells reconciliation which rows it holds (a message
   * stored means all sent before it on its connection reached the hub first).
   */
  sentSoFar(): string | undefined {
    if (this.#backlog >= this.#boundary || this.#live <= this.#boundary) return undefined;
    return `..${this.#backlog},${this.#boundary + 1}..${this.#live}`;
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
