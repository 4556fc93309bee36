import type Database from "better-sqlite3";
import type { Envelope, Headers } from "../core/index.js";
import { DEFAULT_ACCOUNT } from "../core/index.js";
import type { StoredRowSize } from "./buffer-policy.js";

/** One buffered message waiting to be forwarded; `id` is its never-reused row id. */
export interface OutboxRow {
  readonly id: number;
  readonly subject: string;
  readonly payload: Buffer;
  readonly headers: Headers | undefined;
  readonly receivedAtMs: number;
}

/** A row to insert: the message, its class and the bytes it counts. */
export interface NewOutboxRow {
  readonly message: Envelope;
  readonly cls: { readonly name: string };
  readonly size: number;
}

/** A row as it leaves the table without being forwarded (evicted, expired, reconciled). */
export interface RemovedRow extends StoredRowSize {
  readonly id: number;
  readonly received_at_ms: number;
}

/** An inclusive range of row ids. */
export type IdRange = readonly [number, number];

/** A row as `#readAfter` returns it (raw: an array, no object per row to map from). */
type RawRow = [
  id: number,
  subject: string,
  payload: Buffer,
  headers: string | null,
  receivedAtMs: number,
];

/** Rows and bytes of one class that left the table together. */
export interface RemovedGroup {
  readonly class: string;
  readonly n: number;
  readonly bytes: number;
}

function encodeHeaders(headers: Headers | undefined): string | null {
  if (headers === undefined || headers.size === 0) return null;
  return JSON.stringify([...headers]);
}

function decodeHeaders(text: string | null): Headers | undefined {
  if (text === null) return undefined;
  return new Map(JSON.parse(text) as [string, string[]][]);
}

/** The payload as a Buffer over the same bytes (no copy). */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}

/** `ids` (unsorted, repeated, with gaps; not empty) as ascending ranges of consecutive ids. */
export function idRanges(ids: readonly number[]): IdRange[] {
  // Acks arrive in order, so ids usually come sorted: no copy and sort then.
  let ascending = true;
  for (let i = 1; i < ids.length && ascending; i++) ascending = ids[i - 1]! <= ids[i]!;
  const sorted = ascending ? ids : [...ids].sort((a, b) => a - b);
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
  return ranges;
}

/**
 * Whether a failed write means "no space". On Linux SQLite turns ENOSPC from write() into
 * SQLITE_FULL (measured on tmpfs and ext4: WAL appends, and checkpoints that must grow the
 * database file), as it does when `max_page_count` is reached; other write errors, such
 * as a quota (EDQUOT), are SQLITE_IOERR_WRITE. Errors from fsync or truncate
 * (SQLITE_IOERR_FSYNC, _TRUNCATE) are not a full disk and are not retried.
 */
export function isDiskFull(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === "SQLITE_FULL" || code === "SQLITE_IOERR_WRITE";
}

const INSERT_SQL =
  "INSERT INTO outbox (subject, payload, headers, received_at_ms, class, size, account) VALUES";
const INSERT_VALUES = "(?, ?, ?, ?, ?, ?, ?)";
const INSERT_COLUMNS = 7;
/**
 * Rows per multi-row INSERT: one statement for 16 rows costs about half as much per row as
 * 16 statements (per-statement work in better-sqlite3 and SQLite; measured with the
 * outbox's schema: 4.3 against 8-11 µs per row; 40 rows were no better than 16).
 */
const INSERT_ROWS_PER_STATEMENT = 16;

/**
 * The `outbox` table's SQL for one account's queue, and nothing else: every statement
 * reads and writes that account's rows only (row ids are shared: one AUTOINCREMENT for
 * the table, so an account's ids ascend with gaps). The statements are prepared once, and
 * every call runs in the caller's transaction when there is one.
 */
export class OutboxTable {
  readonly db: Database.Database;
  readonly account: string;
  readonly #insert: Database.Statement;
  readonly #insertMany: Database.Statement;
  /** Bind arrays, reused by every insert (better-sqlite3 copies the values when it binds). */
  readonly #insertParams = new Array<unknown>(INSERT_ROWS_PER_STATEMENT * INSERT_COLUMNS);
  readonly #insertOneParams = new Array<unknown>(INSERT_COLUMNS);
  readonly #readAfter: Database.Statement;
  readonly #rangeSizes: Database.Statement;
  readonly #deleteRange: Database.Statement;
  readonly #oldestOfClass: Database.Statement;
  readonly #deleteClassUpTo: Database.Statement;
  readonly #oldestReceivedAt: Database.Statement;

  /**
   * `account`'s rows; `byPrimaryKey`: reads and deletes walk the table's own id order (the
   * primary key) instead of the (account, id) index; see `readAfter`.
   */
  constructor(db: Database.Database, account: string = DEFAULT_ACCOUNT, byPrimaryKey = true) {
    this.db = db;
    this.account = account;
    this.#insert = db.prepare(`${INSERT_SQL} ${INSERT_VALUES}`);
    this.#insertMany = db.prepare(
      `${INSERT_SQL} ${new Array(INSERT_ROWS_PER_STATEMENT).fill(INSERT_VALUES).join(", ")}`,
    );
    // `+account` keeps SQLite off the (account, id) index: the id range is walked in the
    // table itself and other accounts' rows are skipped. Both forms return the same rows.
    this.#readAfter = db
      .prepare(
        byPrimaryKey
          ? "SELECT id, subject, payload, headers, received_at_ms FROM outbox WHERE id > ? AND id <= ? AND +account = ? ORDER BY id LIMIT ?"
          : "SELECT id, subject, payload, headers, received_at_ms FROM outbox WHERE id > ? AND id <= ? AND account = ? ORDER BY id LIMIT ?",
      )
      .raw(true);
    this.#rangeSizes = db.prepare(
      byPrimaryKey
        ? "SELECT class, count(*) AS n, total(size) AS bytes FROM outbox WHERE id BETWEEN ? AND ? AND +account = ? GROUP BY class"
        : "SELECT class, count(*) AS n, total(size) AS bytes FROM outbox WHERE id BETWEEN ? AND ? AND account = ? GROUP BY class",
    );
    this.#deleteRange = db.prepare(
      byPrimaryKey
        ? "DELETE FROM outbox WHERE id BETWEEN ? AND ? AND +account = ?"
        : "DELETE FROM outbox WHERE id BETWEEN ? AND ? AND account = ?",
    );
    this.#oldestOfClass = db.prepare(
      "SELECT id, class, size, received_at_ms FROM outbox WHERE account = ? AND class = ? AND id > ? ORDER BY id LIMIT ?",
    );
    this.#deleteClassUpTo = db.prepare(
      "DELETE FROM outbox WHERE account = ? AND class = ? AND id <= ?",
    );
    // The first entry of the (account, class, id) index and one row lookup: O(log n).
    this.#oldestReceivedAt = db
      .prepare(
        "SELECT received_at_ms FROM outbox WHERE account = ? AND class = ? ORDER BY id LIMIT 1",
      )
      .pluck(true);
  }

  /** When the oldest row of class `className` was received (ms), or undefined when none. */
  oldestReceivedAt(className: string): number | undefined {
    return this.#oldestReceivedAt.get(this.account, className) as number | undefined;
  }

  /** The highest id ever given out (AUTOINCREMENT remembers it after the table empties). */
  lastIdEver(): number {
    const seq = this.db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").get() as
      | { seq: number }
      | undefined;
    const last = this.db.prepare("SELECT max(id) AS last FROM outbox").get() as {
      last: number | null;
    };
    return seq?.seq ?? last.last ?? 0;
  }

  /** Rows and bytes per stored class name, of this account's rows. */
  perClass(): { class: string; n: number; bytes: number }[] {
    return this.db
      .prepare(
        "SELECT class, count(*) AS n, coalesce(sum(size), 0) AS bytes FROM outbox WHERE account = ? GROUP BY class",
      )
      .all(this.account) as { class: string; n: number; bytes: number }[];
  }

  /**
   * Inserts `rows` in order; returns the id of the last (ids are consecutive: one writer,
   * and a multi-row INSERT takes them in the order of its VALUES).
   */
  insert(rows: readonly NewOutboxRow[]): number {
    let last = 0;
    let i = 0;
    const params = this.#insertParams;
    for (; i + INSERT_ROWS_PER_STATEMENT <= rows.length; i += INSERT_ROWS_PER_STATEMENT) {
      for (let j = 0; j < INSERT_ROWS_PER_STATEMENT; j++) {
        this.#bind(params, j * INSERT_COLUMNS, rows[i + j]!);
      }
      last = Number(this.#insertMany.run(params).lastInsertRowid);
    }
    const one = this.#insertOneParams;
    for (; i < rows.length; i++) {
      this.#bind(one, 0, rows[i]!);
      last = Number(this.#insert.run(one).lastInsertRowid);
    }
    return last;
  }

  /** Puts the values of `row` in `params` from `at`, in INSERT_SQL's column order. */
  #bind(params: unknown[], at: number, { message: m, cls, size }: NewOutboxRow): void {
    params[at] = m.subject;
    params[at + 1] = asBuffer(m.payload);
    params[at + 2] = encodeHeaders(m.headers);
    params[at + 3] = m.receivedAtMs;
    params[at + 4] = cls.name;
    params[at + 5] = size;
    params[at + 6] = this.account;
  }

  /**
   * Up to `limit` of the account's rows with ids in (`afterId`, `lastId`], oldest first.
   * `lastId` (the queue's last committed id) bounds the walk by primary key: it never goes
   * past the account's own last row, so other accounts' rows are skipped at most once per
   * pass over the table, whatever the interleaving.
   */
  readAfter(afterId: number, limit: number, lastId: number = Number.MAX_SAFE_INTEGER): OutboxRow[] {
    const raw = this.#readAfter.all(afterId, lastId, this.account, limit) as RawRow[];
    const rows = new Array<OutboxRow>(raw.length);
    for (let i = 0; i < raw.length; i++) {
      const [id, subject, payload, headers, receivedAtMs] = raw[i]!;
      rows[i] = { id, subject, payload, headers: decodeHeaders(headers), receivedAtMs };
    }
    return rows;
  }

  /**
   * Deletes the rows in `ranges`; returns their rows and bytes per class (counted in the
   * same transaction as the delete when the caller runs one).
   */
  deleteRanges(ranges: readonly IdRange[]): RemovedGroup[] {
    const gone: RemovedGroup[] = [];
    for (const [from, to] of ranges) {
      for (const group of this.#rangeSizes.all(from, to, this.account) as RemovedGroup[]) {
        gone.push(group);
      }
      this.#deleteRange.run(from, to, this.account);
    }
    return gone;
  }

  /** Deletes the rows with ids up to `maxId` received before `receivedBeforeMs`. */
  deleteStored(maxId: number, receivedBeforeMs: number): RemovedRow[] {
    return this.db
      .prepare(
        "DELETE FROM outbox WHERE account = ? AND id <= ? AND received_at_ms < ? RETURNING id, class, size, received_at_ms",
      )
      .all(this.account, maxId, receivedBeforeMs) as RemovedRow[];
  }

  /** Up to `limit` rows of class `className` after `afterId`, oldest first. */
  oldestOfClass(className: string, afterId: number, limit: number): RemovedRow[] {
    return this.#oldestOfClass.all(this.account, className, afterId, limit) as RemovedRow[];
  }

  /** Deletes every row of class `className` up to `id`. */
  deleteClassUpTo(className: string, id: number): void {
    this.#deleteClassUpTo.run(this.account, className, id);
  }
}
