import type Database from "better-sqlite3";
import type { Envelope, Headers, Logger, Metrics } from "../core/index.js";
import { errorMessage } from "../core/index.js";
import { StoreError } from "./errors.js";

/** One buffered message waiting to be forwarded; `id` is its never-reused row id. */
export interface OutboxRow {
  readonly id: number;
  readonly subject: string;
  readonly payload: Buffer;
  readonly headers: Headers | undefined;
  readonly receivedAtMs: number;
}

export interface OutboxOptions {
  /** Wait this long for more rows before committing; 0 = commit on the next event-loop turn. */
  readonly commitIntervalMs: number;
  /** Commit at once when this many rows are pending. */
  readonly commitMaxRows: number;
  readonly log: Logger;
  readonly metrics: Metrics;
}

interface Batch {
  readonly rows: Envelope[];
  readonly done: Promise<void>;
  resolve(): void;
  reject(err: Error): void;
}

interface RawRow {
  id: number;
  subject: string;
  payload: Buffer;
  headers: string | null;
  received_at_ms: number;
}

/**
 * Recently committed rows are kept in memory (bounded) so that a forwarder keeping up
 * with live traffic reads them from here instead of back from SQLite.
 */
const RECENT_MAX_ROWS = 8192;
const RECENT_MAX_BYTES = 8 * 1024 * 1024;

function newBatch(): Batch {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const done = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A batch nobody awaits (QoS 0 only) must not become an unhandled rejection.
  done.catch(() => {});
  return { rows: [], done, resolve, reject };
}

function encodeHeaders(headers: Headers | undefined): string | null {
  if (headers === undefined || headers.size === 0) return null;
  return JSON.stringify([...headers]);
}

function decodeHeaders(text: string | null): Headers | undefined {
  if (text === null) return undefined;
  return new Map(JSON.parse(text) as [string, string[]][]);
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}

/**
 * The durable queue between ingress and the hub. Appends are group-committed: every
 * append in one batch shares one transaction and one promise, which settles when the
 * rows are on disk (as durable as `buffer.durability` makes them).
 */
export class Outbox {
  readonly #options: OutboxOptions;
  readonly #insert: Database.Statement;
  readonly #readAfter: Database.Statement;
  readonly #deleteRange: Database.Statement;
  readonly #commitTx: (rows: readonly Envelope[]) => number;
  readonly #deleteTx: (ranges: readonly (readonly [number, number])[]) => number;
  #batch: Batch | undefined;
  #timeout: NodeJS.Timeout | undefined;
  #immediate: NodeJS.Immediate | undefined;
  #lastId: number;
  #count: number;
  readonly #waiters = new Set<() => void>();
  readonly #commitListeners = new Set<() => void>();
  /** Committed rows with contiguous ascending ids, ending at #lastId. */
  #recent: OutboxRow[] = [];
  #recentBytes = 0;
  readonly #appended;
  readonly #commitFailures;
  #closed = false;

  constructor(db: Database.Database, options: OutboxOptions) {
    this.#options = options;
    this.#insert = db.prepare(
      "INSERT INTO outbox (subject, payload, headers, received_at_ms) VALUES (?, ?, ?, ?)",
    );
    this.#readAfter = db.prepare(
      "SELECT id, subject, payload, headers, received_at_ms FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
    );
    this.#deleteRange = db.prepare("DELETE FROM outbox WHERE id BETWEEN ? AND ?");
    this.#commitTx = db.transaction((rows: readonly Envelope[]) => {
      let last = 0;
      for (const m of rows) {
        last = Number(
          this.#insert.run(m.subject, asBuffer(m.payload), encodeHeaders(m.headers), m.receivedAtMs)
            .lastInsertRowid,
        );
      }
      return last;
    });
    this.#deleteTx = db.transaction((ranges: readonly (readonly [number, number])[]) => {
      let changes = 0;
      for (const [from, to] of ranges) changes += this.#deleteRange.run(from, to).changes;
      return changes;
    });
    const stats = db.prepare("SELECT count(*) AS n, max(id) AS last FROM outbox").get() as {
      n: number;
      last: number | null;
    };
    const seq = db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").get() as
      | { seq: number }
      | undefined;
    this.#count = stats.n;
    this.#lastId = seq?.seq ?? stats.last ?? 0;
    this.#appended = options.metrics.counter(
      "leafgate_outbox_appended_total",
      "Messages committed to the outbox",
    );
    this.#commitFailures = options.metrics.counter(
      "leafgate_outbox_commit_failures_total",
      "Messages lost because their outbox transaction failed, by SQLite code",
    );
  }

  /** Queues `message` for the next group commit; resolves once it is committed. */
  append(message: Envelope): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new StoreError("LG_ERR_STORE_CLOSED", "the outbox is closed"));
    }
    let batch = this.#batch;
    if (batch === undefined) {
      batch = newBatch();
      this.#batch = batch;
      const { commitIntervalMs } = this.#options;
      if (commitIntervalMs > 0) this.#timeout = setTimeout(() => this.flush(), commitIntervalMs);
      else this.#immediate = setImmediate(() => this.flush());
    }
    batch.rows.push(message);
    if (batch.rows.length >= this.#options.commitMaxRows) this.flush();
    return batch.done;
  }

  /** Commits whatever is pending, now. */
  flush(): void {
    const batch = this.#batch;
    if (batch === undefined) return;
    if (this.#timeout !== undefined) clearTimeout(this.#timeout);
    if (this.#immediate !== undefined) clearImmediate(this.#immediate);
    this.#timeout = undefined;
    this.#immediate = undefined;
    this.#batch = undefined;
    try {
      this.#lastId = this.#commitTx(batch.rows);
      this.#remember(batch.rows);
    } catch (err) {
      const error = new StoreError(
        "LG_ERR_STORE_WRITE",
        `cannot commit ${batch.rows.length} messages to the outbox`,
        err,
      );
      this.#commitFailures.inc({ code: error.sqliteCode ?? "unknown" }, batch.rows.length);
      this.#options.log.error(
        { err: error, messages: batch.rows.length },
        "outbox commit failed; the messages were not accepted",
      );
      batch.reject(error);
      return;
    }
    this.#count += batch.rows.length;
    this.#appended.inc(undefined, batch.rows.length);
    batch.resolve();
    for (const wake of [...this.#waiters]) wake();
    for (const listener of this.#commitListeners) listener();
  }

  /** Keeps the rows just committed (ids up to #lastId, contiguous: one writer). */
  #remember(rows: readonly Envelope[]): void {
    const firstId = this.#lastId - rows.length + 1;
    const previous = this.#recent.at(-1);
    if (previous !== undefined && previous.id !== firstId - 1) this.#forgetRecent();
    for (let i = 0; i < rows.length; i++) {
      const m = rows[i]!;
      this.#recent.push({
        id: firstId + i,
        subject: m.subject,
        payload: asBuffer(m.payload),
        headers: m.headers !== undefined && m.headers.size > 0 ? m.headers : undefined,
        receivedAtMs: m.receivedAtMs,
      });
      this.#recentBytes += m.payload.length;
    }
    let drop = 0;
    while (
      this.#recent.length - drop > RECENT_MAX_ROWS ||
      (this.#recentBytes > RECENT_MAX_BYTES && drop < this.#recent.length)
    ) {
      this.#recentBytes -= this.#recent[drop]!.payload.length;
      drop++;
    }
    if (drop > 0) this.#recent = this.#recent.slice(drop);
  }

  /** Keeps #recent free of deleted rows: acks arrive in order, so usually a prefix goes. */
  #forgetDeleted(ranges: readonly (readonly [number, number])[]): void {
    for (const [from, to] of ranges) {
      const first = this.#recent[0];
      if (first === undefined) return;
      const last = this.#recent[this.#recent.length - 1]!;
      if (to < first.id || from > last.id) continue;
      if (from > first.id) {
        // A hole in the middle: drop the cache, SQLite has the truth.
        this.#forgetRecent();
        return;
      }
      const drop = Math.min(to, last.id) - first.id + 1;
      for (let i = 0; i < drop; i++) this.#recentBytes -= this.#recent[i]!.payload.length;
      this.#recent = this.#recent.slice(drop);
    }
  }

  #forgetRecent(): void {
    this.#recent = [];
    this.#recentBytes = 0;
  }

  /** Up to `limit` committed rows with id greater than `afterId`, oldest first. */
  readAfter(afterId: number, limit: number): OutboxRow[] {
    const first = this.#recent[0];
    if (first !== undefined && afterId + 1 >= first.id) {
      const start = afterId + 1 - first.id;
      return this.#recent.slice(start, start + limit);
    }
    const raw = this.#readAfter.all(afterId, limit) as RawRow[];
    return raw.map((r) => ({
      id: r.id,
      subject: r.subject,
      payload: r.payload,
      headers: decodeHeaders(r.headers),
      receivedAtMs: r.received_at_ms,
    }));
  }

  /** Removes forwarded rows. Ids need not be sorted or contiguous. */
  delete(ids: readonly number[]): void {
    if (ids.length === 0) return;
    const sorted = [...ids].sort((a, b) => a - b);
    const ranges: [number, number][] = [];
    let from = sorted[0]!;
    let to = from;
    for (let i = 1; i < sorted.length; i++) {
      const id = sorted[i]!;
      if (id === to + 1 || id === to) {
        to = id;
      } else {
        ranges.push([from, to]);
        from = id;
        to = id;
      }
    }
    ranges.push([from, to]);
    this.#forgetDeleted(ranges);
    try {
      this.#count -= this.#deleteTx(ranges);
    } catch (err) {
      // The rows stay and are sent again later; the hub deduplicates them.
      this.#options.log.warn(
        { err: errorMessage(err) },
        "cannot delete forwarded rows; will retry",
      );
    }
  }

  /** Resolves once a row with id greater than `afterId` is committed, or on abort. */
  waitForRowsAfter(afterId: number, signal: AbortSignal): Promise<void> {
    if (this.#lastId > afterId || signal.aborted || this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = (): void => {
        signal.removeEventListener("abort", wake);
        this.#waiters.delete(wake);
        resolve();
      };
      this.#waiters.add(wake);
      signal.addEventListener("abort", wake, { once: true });
    });
  }

  /** Calls `listener` after every successful commit; returns the unsubscribe. */
  onCommit(listener: () => void): () => void {
    this.#commitListeners.add(listener);
    return () => this.#commitListeners.delete(listener);
  }

  /** Highest committed row id (0 when none was ever committed). */
  get lastId(): number {
    return this.#lastId;
  }

  /** Rows waiting to be forwarded. */
  get size(): number {
    return this.#count;
  }

  /** Commits pending rows and refuses further appends. */
  close(): void {
    this.flush();
    this.#closed = true;
    for (const wake of [...this.#waiters]) wake();
  }
}
