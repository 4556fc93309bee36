import type Database from "better-sqlite3";
import type { Envelope, Headers, Logger, Metrics } from "../core/index.js";
import { errorMessage, Guard } from "../core/index.js";
import {
  type BufferClass,
  type BufferLimits,
  BufferPolicy,
  type OnFull,
  rowSize,
  UNLIMITED,
} from "./buffer-policy.js";
import { pragma } from "./database.js";
import { DiskGuard } from "./disk-guard.js";
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
  /** Bounds and priority classes; unlimited when absent. */
  readonly limits?: BufferLimits;
  readonly log: Logger;
  readonly metrics: Metrics;
}

interface Deferred {
  readonly done: Promise<void>;
  resolve(): void;
  reject(err: Error): void;
}

interface PendingRow {
  readonly message: Envelope;
  readonly cls: BufferClass;
  readonly size: number;
}

/**
 * Rows waiting for one group commit. Rows of `reject` classes settle separately: on a
 * full disk they are refused while rows of `drop_oldest` classes make room by eviction.
 */
interface Batch {
  readonly rows: PendingRow[];
  readonly lenient: Deferred;
  readonly strict: Deferred;
}

/** Why rows left the buffer without reaching the hub. */
type DropReason = "evicted" | "expired" | "rejected" | "disk_full";

/** One log line per class and reason at most this often; counters count everything. */
const DROP_LOG_INTERVAL_MS = 10_000;
/** Eviction goes this far below a limit, so a full class does not evict on every commit. */
const EVICT_HEADROOM = 0.01;
/** Rows examined per step while evicting or expiring. */
const EVICT_CHUNK_ROWS = 512;

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

function newBatch(): Batch {
  return { rows: [], lenient: deferred(), strict: deferred() };
}

/**
 * Whether a failed write means "no space". On Linux SQLite turns ENOSPC from write() into
 * SQLITE_FULL (measured on tmpfs and ext4: WAL appends, and checkpoints that must grow the
 * database file), as it does when `max_page_count` is reached; other write errors, such
 * as a quota (EDQUOT), are SQLITE_IOERR_WRITE. Errors from fsync or truncate
 * (SQLITE_IOERR_FSYNC, _TRUNCATE) are not a full disk and are not retried.
 */
function isDiskFull(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === "SQLITE_FULL" || code === "SQLITE_IOERR_WRITE";
}

/** Deletes that failed are retried later; beyond this many ranges the oldest are forgotten. */
const UNDELETED_MAX_RANGES = 4096;

interface EvictedRow {
  id: number;
  class: string;
  size: number;
  received_at_ms: number;
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
 *
 * Bounds (`buffer.max_*` and per-class limits) are enforced here: a `reject` class
 * refuses an append that does not fit; a `drop_oldest` class evicts its own oldest rows
 * in the same transaction that goes over. A full disk behaves like a full buffer: the
 * DiskGuard (started with upkeep) turns a real one into a database held at its size.
 */
export class Outbox {
  readonly #db: Database.Database;
  readonly #options: OutboxOptions;
  readonly #policy: BufferPolicy;
  readonly #insert: Database.Statement;
  readonly #readAfter: Database.Statement;
  readonly #deleteRange: Database.Statement;
  readonly #oldestOfClass: Database.Statement;
  readonly #deleteClassUpTo: Database.Statement;
  readonly #commitTx: (rows: readonly PendingRow[]) => EvictedRow[];
  readonly #deleteTx: (
    ranges: readonly (readonly [number, number])[],
  ) => { class: string; size: number }[];
  readonly #evictTx: (cls: BufferClass, rows: number, bytes: number) => EvictedRow[];
  #batch: Batch | undefined;
  #timeout: NodeJS.Timeout | undefined;
  #immediate: NodeJS.Immediate | undefined;
  #maintenance: NodeJS.Timeout | undefined;
  #lastId: number;
  readonly #waiters = new Set<() => void>();
  readonly #commitListeners = new Set<() => void>();
  /** Committed rows with contiguous ascending ids, ending at #lastId. */
  #recent: OutboxRow[] = [];
  #recentBytes = 0;
  readonly #appended;
  readonly #commitFailures;
  readonly #dropped;
  readonly #classMessages;
  readonly #classBytes;
  /** Per class and reason: drops not yet logged, the oldest among them, last log time. */
  readonly #dropLog = new Map<string, { count: number; oldestMs: number; loggedAtMs: number }>();
  readonly #disk: DiskGuard;
  /** Forwarded rows whose delete failed (a full disk): deleted with the next ones. */
  #undeleted: (readonly [number, number])[] = [];
  #closed = false;
  /** Group commits and upkeep run from timers that client input schedules: guarded. */
  readonly #guard: Guard;
  readonly #flushLater: () => void;

  constructor(db: Database.Database, options: OutboxOptions) {
    this.#db = db;
    this.#options = options;
    this.#guard = new Guard(options.log, options.metrics);
    this.#flushLater = this.#guard.wrap("store.group-commit", () => this.flush());
    this.#policy = new BufferPolicy(options.limits ?? UNLIMITED);
    this.#insert = db.prepare(
      "INSERT INTO outbox (subject, payload, headers, received_at_ms, class, size) VALUES (?, ?, ?, ?, ?, ?)",
    );
    this.#readAfter = db.prepare(
      "SELECT id, subject, payload, headers, received_at_ms FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
    );
    this.#deleteRange = db.prepare(
      "DELETE FROM outbox WHERE id BETWEEN ? AND ? RETURNING class, size",
    );
    this.#oldestOfClass = db.prepare(
      "SELECT id, class, size, received_at_ms FROM outbox WHERE class = ? AND id > ? ORDER BY id LIMIT ?",
    );
    this.#deleteClassUpTo = db.prepare("DELETE FROM outbox WHERE class = ? AND id <= ?");
    this.#commitTx = db.transaction((rows: readonly PendingRow[]) => {
      let last = 0;
      for (const { message: m, cls, size } of rows) {
        last = Number(
          this.#insert.run(
            m.subject,
            asBuffer(m.payload),
            encodeHeaders(m.headers),
            m.receivedAtMs,
            cls.name,
            size,
          ).lastInsertRowid,
        );
      }
      if (rows.length > 0) this.#lastId = last;
      return this.#evictOverLimits(rows);
    });
    this.#deleteTx = db.transaction((ranges: readonly (readonly [number, number])[]) => {
      const gone: { class: string; size: number }[] = [];
      for (const [from, to] of ranges) {
        for (const row of this.#deleteRange.all(from, to) as { class: string; size: number }[]) {
          gone.push(row);
        }
      }
      return gone;
    });
    this.#evictTx = db.transaction((cls: BufferClass, rows: number, bytes: number) =>
      this.#evictOldest(cls, rows, bytes),
    );
    this.#resync();
    const seq = db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").get() as
      | { seq: number }
      | undefined;
    const last = db.prepare("SELECT max(id) AS last FROM outbox").get() as { last: number | null };
    this.#lastId = seq?.seq ?? last.last ?? 0;
    const { metrics } = options;
    this.#appended = metrics.counter(
      "leafgate_outbox_appended_total",
      "Messages committed to the outbox",
    );
    this.#commitFailures = metrics.counter(
      "leafgate_outbox_commit_failures_total",
      "Messages lost because their outbox transaction failed, by SQLite code",
    );
    this.#dropped = metrics.counter(
      "leafgate_buffer_dropped_total",
      "Messages that left the buffer without reaching the hub, by class and reason",
    );
    this.#disk = new DiskGuard(
      db,
      options.log,
      metrics.gauge(
        "leafgate_buffer_disk_full",
        "1 while the disk is full and the buffer is held at its current size",
      ),
    );
    this.#classMessages = metrics.gauge("leafgate_buffer_messages", "Buffered messages by class");
    this.#classBytes = metrics.gauge("leafgate_buffer_bytes", "Buffered bytes by class");
    for (const cls of this.#policy.classes) this.#publishGauges(cls);
  }

  /**
   * Queues `message` for the next group commit; resolves once it is committed. Rejects
   * at once with LG_ERR_BUFFER_FULL when its class refuses new messages when full.
   */
  append(message: Envelope): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new StoreError("LG_ERR_STORE_CLOSED", "the outbox is closed"));
    }
    const cls = this.#policy.classify(message.subject);
    const size = rowSize(message.subject, message.payload.length);
    if (cls.onFull === "reject" && !this.#policy.fits(cls, size)) {
      this.#drop(cls, "rejected", 1, message.receivedAtMs);
      return Promise.reject(
        new StoreError(
          "LG_ERR_BUFFER_FULL",
          `buffer class ${cls.name} is full (${cls.count} messages, ${cls.bytes} bytes); new messages are refused until the hub takes some`,
        ),
      );
    }
    let batch = this.#batch;
    if (batch === undefined) {
      batch = newBatch();
      this.#batch = batch;
      const { commitIntervalMs } = this.#options;
      if (commitIntervalMs > 0) this.#timeout = setTimeout(this.#flushLater, commitIntervalMs);
      else this.#immediate = setImmediate(this.#flushLater);
    }
    cls.pendingCount++;
    cls.pendingBytes += size;
    batch.rows.push({ message, cls, size });
    const done = cls.onFull === "reject" ? batch.strict.done : batch.lenient.done;
    if (batch.rows.length >= this.#options.commitMaxRows) this.flush();
    return done;
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
    const err = this.#commit(batch);
    if (err === undefined) return;
    if (isDiskFull(err)) this.#diskFull(batch, err);
    else this.#fail(batch, err);
  }

  /** A batch that failed for another reason than space: refused, counted and logged. */
  #fail(batch: Batch, err: unknown): void {
    this.#failed(batch.rows, err);
    const error = this.#commitError(batch.rows.length, err);
    this.#options.log.error(
      { err: error, messages: batch.rows.length },
      "outbox commit failed; the messages were not accepted",
    );
    batch.strict.reject(error);
    batch.lenient.reject(error);
  }

  /**
   * Commits `batch` and settles it. On failure nothing of it is visible (the id and the
   * class accounting are restored) and the batch stays unsettled: returns the error.
   */
  #commit(batch: Batch): unknown {
    const firstId = this.#lastId + 1;
    let evicted: EvictedRow[];
    try {
      evicted = this.#commitTx(batch.rows);
    } catch (err) {
      this.#lastId = firstId - 1;
      this.#resync();
      return err;
    }
    this.#committed(batch.rows, firstId, evicted);
    batch.strict.resolve();
    batch.lenient.resolve();
    return undefined;
  }

  /**
   * Reloads each class's committed count and bytes from the table: at start, and after a
   * rolled-back transaction whose evictions had already been counted.
   */
  #resync(): void {
    for (const cls of this.#policy.classes) {
      cls.count = 0;
      cls.bytes = 0;
    }
    for (const row of this.#db
      .prepare(
        "SELECT class, count(*) AS n, coalesce(sum(size), 0) AS bytes FROM outbox GROUP BY class",
      )
      .all() as { class: string; n: number; bytes: number }[]) {
      const cls = this.#policy.byName(row.class);
      cls.count += row.n;
      cls.bytes += row.bytes;
    }
  }

  /** Accounting, metrics, the recent-row tail and wake-ups after a successful commit. */
  #committed(rows: readonly PendingRow[], firstId: number, evicted: readonly EvictedRow[]): void {
    const touched = new Set<BufferClass>();
    for (const { cls, size } of rows) {
      cls.pendingCount--;
      cls.pendingBytes -= size;
      cls.count++;
      cls.bytes += size;
      touched.add(cls);
    }
    this.#remember(rows, firstId);
    if (evicted.length > 0) this.#evicted(evicted, "evicted", touched);
    for (const cls of touched) this.#publishGauges(cls);
    this.#appended.inc(undefined, rows.length);
    for (const wake of [...this.#waiters]) wake();
    for (const listener of this.#commitListeners) listener();
  }

  /** Pending rows that will never be committed. */
  #failed(rows: readonly PendingRow[], err: unknown): void {
    const code = (err as { code?: string }).code ?? "unknown";
    for (const { cls, size } of rows) {
      cls.pendingCount--;
      cls.pendingBytes -= size;
    }
    this.#commitFailures.inc({ code }, rows.length);
  }

  #commitError(rows: number, err: unknown): StoreError {
    return new StoreError(
      "LG_ERR_STORE_WRITE",
      `cannot commit ${rows} messages to the outbox`,
      err,
    );
  }

  /**
   * The disk is full: like a full buffer. The guard first makes a real full disk workable
   * (DiskGuard.onFull); if the disk has room again, the batch is retried as it is.
   * Otherwise rows of `drop_oldest` classes give way — those of the classes in this batch
   * first — and the batch is retried once; if they hold less than the batch needs, or
   * eviction could not be written ("stuck"), or the retry fails too, `reject` rows are
   * refused (LG_ERR_BUFFER_FULL) and the others fail as a failed commit
   * (LG_ERR_STORE_WRITE). Every refused row is a `disk_full` drop, logged as drops are
   * (at most every 10 s per class, not once per batch).
   */
  #diskFull(batch: Batch, err: unknown): void {
    let cause = err;
    const disk = this.#disk.onFull();
    if (disk === "space-returned") {
      cause = this.#commit(batch);
      if (cause === undefined) return;
    }
    if (disk !== "stuck" && isDiskFull(cause) && this.#makeRoom(batch)) {
      cause = this.#commit(batch);
      if (cause === undefined) return;
    }
    if (!isDiskFull(cause)) {
      this.#fail(batch, cause);
      return;
    }
    this.#failed(batch.rows, cause);
    for (const r of batch.rows) this.#drop(r.cls, "disk_full", 1, r.message.receivedAtMs);
    batch.strict.reject(
      new StoreError("LG_ERR_BUFFER_FULL", "the disk is full; the message was refused", cause),
    );
    batch.lenient.reject(this.#commitError(batch.rows.length, cause));
  }

  /**
   * Evicts the oldest rows of `drop_oldest` classes, those of the classes in `batch` first:
   * twice the batch's rows and bytes (pages freed by small rows may not fit larger ones),
   * or all they have. False when they hold less than the batch needs (evicting would lose
   * rows and still not fit it) or eviction itself failed.
   */
  #makeRoom(batch: Batch): boolean {
    let needBytes = 0;
    for (const r of batch.rows) needBytes += r.size;
    const wantRows = batch.rows.length * 2;
    const wantBytes = needBytes * 2;
    const order: BufferClass[] = [];
    for (const r of batch.rows) {
      if (r.cls.onFull === "drop_oldest" && !order.includes(r.cls)) order.push(r.cls);
    }
    for (const cls of this.#policy.classes) {
      if (cls.onFull === "drop_oldest" && !order.includes(cls)) order.push(cls);
    }
    const evictable = order.reduce((n, c) => n + c.bytes, 0);
    if (evictable < needBytes) return false;
    const evicted: EvictedRow[] = [];
    let rows = 0;
    let bytes = 0;
    try {
      for (const cls of order) {
        if (rows >= wantRows && bytes >= wantBytes) break;
        const gone = this.#evictTx(cls, wantRows - rows, wantBytes - bytes);
        for (const g of gone) bytes += g.size;
        rows += gone.length;
        evicted.push(...gone);
      }
    } catch (err) {
      // Each class evicts in its own transaction: those before this one stand.
      this.#resync();
      this.#options.log.warn({ err: errorMessage(err) }, "evicting on a full disk failed");
      if (evicted.length > 0) this.#evicted(evicted, "evicted", new Set(order));
      return false;
    }
    this.#evicted(evicted, "evicted", new Set(order));
    return true;
  }

  /** Inside the commit transaction: brings every drop_oldest class back under its limits. */
  #evictOverLimits(rows: readonly PendingRow[]): EvictedRow[] {
    const evicted: EvictedRow[] = [];
    const seen = new Set<BufferClass>();
    for (const { cls } of rows) {
      if (seen.has(cls) || cls.onFull !== "drop_oldest") continue;
      seen.add(cls);
      const own = cls.excess();
      if (own.messages > 0 || own.bytes > 0) {
        // Headroom only on the limit that is over: the other may be huge (or unlimited).
        evicted.push(
          ...this.#evictOldest(
            cls,
            own.messages > 0 ? own.messages + Math.floor(cls.maxMessages * EVICT_HEADROOM) : 0,
            own.bytes > 0 ? own.bytes + Math.floor(cls.maxBytes * EVICT_HEADROOM) : 0,
          ),
        );
      }
    }
    // Over the whole buffer: classes that drop make room in their own rows, those of this
    // batch first. Rows of reject classes are never evicted.
    const order = [...seen];
    for (const cls of this.#policy.classes) {
      if (cls.onFull === "drop_oldest" && !seen.has(cls)) order.push(cls);
    }
    for (const cls of order) {
      const global = this.#policy.globalExcess();
      if (global.messages === 0 && global.bytes === 0) break;
      const { maxMessages, maxBytes } = this.#policy.limits;
      evicted.push(
        ...this.#evictOldest(
          cls,
          global.messages > 0 ? global.messages + Math.floor(maxMessages * EVICT_HEADROOM) : 0,
          global.bytes > 0 ? global.bytes + Math.floor(maxBytes * EVICT_HEADROOM) : 0,
        ),
      );
    }
    return evicted;
  }

  /**
   * Deletes the oldest rows of `cls` until at least `rows` rows and `bytes` bytes are
   * gone (or the class is empty). Updates the class's committed accounting as it goes,
   * which the caller's transaction makes final.
   */
  #evictOldest(cls: BufferClass, rows: number, bytes: number): EvictedRow[] {
    const gone: EvictedRow[] = [];
    let goneBytes = 0;
    let after = 0;
    while (gone.length < rows || goneBytes < bytes) {
      const chunk = this.#oldestOfClass.all(cls.name, after, EVICT_CHUNK_ROWS) as EvictedRow[];
      if (chunk.length === 0) break;
      let upTo = after;
      for (const row of chunk) {
        if (gone.length >= rows && goneBytes >= bytes) break;
        gone.push(row);
        goneBytes += row.size;
        upTo = row.id;
      }
      this.#deleteClassUpTo.run(cls.name, upTo);
      after = upTo;
    }
    cls.count -= gone.length;
    cls.bytes -= goneBytes;
    return gone;
  }

  /** Counts and logs rows that left the buffer, and keeps the recent-row tail honest. */
  #evicted(rows: readonly EvictedRow[], reason: DropReason, touched: Set<BufferClass>): void {
    const first = this.#recent[0];
    let oldest = Number.POSITIVE_INFINITY;
    const byClass = new Map<BufferClass, number>();
    for (const row of rows) {
      const cls = this.#policy.byName(row.class);
      byClass.set(cls, (byClass.get(cls) ?? 0) + 1);
      oldest = Math.min(oldest, row.received_at_ms);
      if (first !== undefined && row.id >= first.id) this.#forgetRecent();
    }
    for (const [cls, n] of byClass) {
      touched.add(cls);
      this.#drop(cls, reason, n, oldest);
      this.#publishGauges(cls);
    }
  }

  #drop(cls: BufferClass, reason: DropReason, count: number, oldestMs: number): void {
    this.#dropped.inc({ class: cls.name, reason }, count);
    const key = `${cls.name}/${reason}`;
    const now = Date.now();
    const entry = this.#dropLog.get(key) ?? { count: 0, oldestMs, loggedAtMs: 0 };
    entry.count += count;
    entry.oldestMs = Math.min(entry.oldestMs, oldestMs);
    this.#dropLog.set(key, entry);
    if (now - entry.loggedAtMs < DROP_LOG_INTERVAL_MS) return;
    const what: Record<DropReason, string> = {
      evicted: "buffer full: evicted the oldest messages",
      expired: "messages older than max_age expired",
      rejected: "buffer full: new messages refused",
      disk_full: "disk full: messages refused",
    };
    this.#options.log.warn(
      {
        class: cls.name,
        messages: entry.count,
        oldestAgeS: Math.round((now - entry.oldestMs) / 1000),
        onFull: cls.onFull satisfies OnFull,
      },
      what[reason],
    );
    entry.count = 0;
    entry.oldestMs = Number.POSITIVE_INFINITY;
    entry.loggedAtMs = now;
  }

  #publishGauges(cls: BufferClass): void {
    this.#classMessages.set(cls.count, { class: cls.name });
    this.#classBytes.set(cls.bytes, { class: cls.name });
  }

  /** Keeps the rows just committed (ids from `firstId`, contiguous: one writer). */
  #remember(rows: readonly PendingRow[], firstId: number): void {
    const previous = this.#recent.at(-1);
    if (previous !== undefined && previous.id !== firstId - 1) this.#forgetRecent();
    for (let i = 0; i < rows.length; i++) {
      const m = rows[i]!.message;
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
    this.#deleteRanges(ranges);
  }

  /**
   * Deletes `ranges` and any earlier ones whose delete failed. A delete needs space too
   * (the WAL), so on a full disk the guard gets its chance first; if it still fails, the
   * ranges are kept for the next delete or upkeep (bounded: beyond that, the rows stay
   * until a resend after a reconnect or restart, which the hub deduplicates).
   */
  #deleteRanges(ranges: readonly (readonly [number, number])[]): void {
    const todo = this.#undeleted.length > 0 ? [...this.#undeleted, ...ranges] : ranges;
    let gone: { class: string; size: number }[];
    try {
      gone = this.#deleteTx(todo);
    } catch (err) {
      try {
        if (!isDiskFull(err)) throw err;
        this.#disk.onFull();
        gone = this.#deleteTx(todo);
      } catch (again) {
        this.#undeleted = todo.slice(-UNDELETED_MAX_RANGES);
        this.#options.log.warn(
          { err: errorMessage(again), ranges: this.#undeleted.length },
          "cannot delete forwarded rows; will retry",
        );
        return;
      }
    }
    this.#undeleted = [];
    const touched = new Set<BufferClass>();
    for (const row of gone) {
      const cls = this.#policy.byName(row.class);
      cls.count--;
      cls.bytes -= row.size;
      touched.add(cls);
    }
    for (const cls of touched) this.#publishGauges(cls);
  }

  /**
   * Deletes rows the hub is known to hold already: ids up to `maxId` that were received
   * before `receivedBeforeMs`. Returns how many went.
   */
  deleteStored(maxId: number, receivedBeforeMs: number): number {
    const statement = this.#db.prepare(
      "DELETE FROM outbox WHERE id <= ? AND received_at_ms < ? RETURNING id, class, size, received_at_ms",
    );
    let gone: EvictedRow[];
    try {
      gone = statement.all(maxId, receivedBeforeMs) as EvictedRow[];
    } catch (err) {
      // A delete is a WAL append: on a full disk the guard gets its chance, then once more.
      if (!isDiskFull(err)) throw err;
      this.#disk.onFull();
      gone = statement.all(maxId, receivedBeforeMs) as EvictedRow[];
    }
    const touched = new Set<BufferClass>();
    const first = this.#recent[0];
    for (const row of gone) {
      const cls = this.#policy.byName(row.class);
      cls.count--;
      cls.bytes -= row.size;
      touched.add(cls);
      if (first !== undefined && row.id >= first.id) this.#forgetRecent();
    }
    for (const cls of touched) this.#publishGauges(cls);
    return gone.length;
  }

  /**
   * Starts periodic upkeep: expiring rows older than their class's max_age, a passive WAL
   * checkpoint, and guarding the disk (DiskGuard: a reserve file beside the database, so
   * that a full disk is a full buffer). `intervalMs` defaults to a tenth of the shortest
   * max_age, 1 s to 60 s.
   */
  startMaintenance(intervalMs?: number): void {
    if (this.#maintenance !== undefined) return;
    this.#disk.start();
    const shortest = Math.min(...this.#policy.classes.map((c) => c.maxAgeMs));
    const every = intervalMs ?? Math.min(60_000, Math.max(1_000, shortest / 10));
    this.#maintenance = setInterval(
      this.#guard.wrap("store.maintenance", () => this.maintain()),
      every,
    );
    this.#maintenance.unref();
  }

  /** One round of upkeep (also called by tests). */
  maintain(now = Date.now()): void {
    this.#disk.poll();
    if (this.#undeleted.length > 0) this.#deleteRanges([]);
    for (const cls of this.#policy.classes) {
      if (!Number.isFinite(cls.maxAgeMs)) continue;
      const cutoff = now - cls.maxAgeMs;
      try {
        const expired = this.#db.transaction(() => this.#expire(cls, cutoff))();
        if (expired.length > 0) this.#evicted(expired, "expired", new Set([cls]));
        this.#publishGauges(cls);
      } catch (err) {
        this.#resync();
        this.#options.log.warn({ err: errorMessage(err), class: cls.name }, "expiring rows failed");
      }
    }
    try {
      pragma(this.#db, "wal_checkpoint(PASSIVE)");
    } catch (err) {
      this.#options.log.warn({ err: errorMessage(err) }, "WAL checkpoint failed");
    }
  }

  /** Deletes rows of `cls` received before `cutoffMs`, oldest first (ids follow arrival). */
  #expire(cls: BufferClass, cutoffMs: number): EvictedRow[] {
    const gone: EvictedRow[] = [];
    let after = 0;
    for (;;) {
      const chunk = this.#oldestOfClass.all(cls.name, after, EVICT_CHUNK_ROWS) as EvictedRow[];
      let upTo = after;
      for (const row of chunk) {
        if (row.received_at_ms >= cutoffMs) break;
        gone.push(row);
        upTo = row.id;
      }
      if (upTo > after) this.#deleteClassUpTo.run(cls.name, upTo);
      if (upTo === after || chunk.length < EVICT_CHUNK_ROWS || chunk.at(-1)!.id !== upTo) break;
      after = upTo;
    }
    cls.count -= gone.length;
    for (const row of gone) cls.bytes -= row.size;
    return gone;
  }

  /** Calls `listener` after every successful commit; returns the unsubscribe. */
  onCommit(listener: () => void): () => void {
    this.#commitListeners.add(listener);
    return () => this.#commitListeners.delete(listener);
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

  /** Highest committed row id (0 when none was ever committed). */
  get lastId(): number {
    return this.#lastId;
  }

  /** Rows waiting to be forwarded. */
  get size(): number {
    let n = 0;
    for (const cls of this.#policy.classes) n += cls.count;
    return n;
  }

  /** Per class: buffered messages and bytes, for status pages. */
  classes(): { name: string; messages: number; bytes: number; onFull: OnFull }[] {
    return this.#policy.classes.map((c) => ({
      name: c.name,
      messages: c.count,
      bytes: c.bytes,
      onFull: c.onFull,
    }));
  }

  /** Commits pending rows and refuses further appends. */
  close(): void {
    this.flush();
    this.#closed = true;
    if (this.#maintenance !== undefined) clearInterval(this.#maintenance);
    this.#maintenance = undefined;
    for (const wake of [...this.#waiters]) wake();
  }
}
