import type Database from "better-sqlite3";
import type { Clock, Envelope, Labels, Logger, Metrics } from "../core/index.js";
import { DEFAULT_ACCOUNT, errorMessage, Guard, systemClock } from "../core/index.js";
import { BufferDrops } from "./buffer-drops.js";
import {
  type BufferClass,
  type BufferLimits,
  BufferPolicy,
  type OnFull,
  rowSize,
  UNLIMITED,
} from "./buffer-policy.js";
import { DiskGuard } from "./disk-guard.js";
import { StoreError } from "./errors.js";
import { Eviction } from "./eviction.js";
import { type Batch, GroupCommit } from "./group-commit.js";
import { OutboxMaintenance } from "./outbox-maintenance.js";
import {
  type IdRange,
  idRanges,
  isDiskFull,
  type OutboxRow,
  OutboxTable,
  type RemovedGroup,
  type RemovedRow,
} from "./outbox-table.js";
import { RecentRows } from "./recent-rows.js";

// How the outbox is built from its parts, and why: docs/outbox.md.

/** One priority class in `/status`: what it holds, its limits, its oldest row. */
export interface ClassStatus {
  readonly name: string;
  readonly messages: number;
  readonly bytes: number;
  readonly onFull: OnFull;
  /** The class's limits (its own, else the buffer's); null: unlimited. */
  readonly maxBytes: number | null;
  readonly maxMessages: number | null;
  readonly maxAgeMs: number | null;
  /** When the class's oldest committed row was received (ms since the epoch); null: none. */
  readonly oldestAt: number | null;
}

export interface OutboxOptions {
  /** Wait this long for more rows before committing; 0 = commit on the next event-loop turn. */
  readonly commitIntervalMs: number;
  /** Commits at once when this many rows are pending. */
  readonly commitMaxRows: number;
  /** Bounds and priority classes; unlimited when absent. */
  readonly limits?: BufferLimits;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** Times group commits, upkeep and the drop log; the system clock when absent. */
  readonly clock?: Clock;
  /** The account whose queue this is; `$G` when absent. */
  readonly account?: string;
  /**
   * The database's disk guard, when several queues share the database (Outboxes); when
   * absent the outbox makes its own.
   */
  readonly disk?: DiskGuard;
  /**
   * Other accounts' queues keep rows in the same table (Outboxes with several accounts):
   * reads and deletes go by the (account, id) index. Alone, they walk the primary key,
   * which costs about half as much per row.
   */
  readonly sharedTable?: boolean;
}

/**
 * What a forwarder needs of the outbox: committed rows in id order, removing the ones the
 * hub took, and one way to hear of new ones.
 */
export interface OutboxReader {
  /** Highest committed row id (0 when none was ever committed). */
  readonly lastId: number;
  /** Up to `limit` committed rows with id greater than `afterId`, oldest first. */
  readAfter(afterId: number, limit: number): OutboxRow[];
  /** Removes forwarded rows. Ids need not be sorted or contiguous. */
  delete(ids: readonly number[]): void;
  /**
   * Calls `listener` after every commit that added rows, and once at close (so a waiting
   * forwarder looks again); returns the unsubscribe.
   */
  onCommit(listener: () => void): () => void;
}

/**
 * The labels an account's series carry: none for `$G` (its series are what they were
 * before accounts, so dashboards and alerts keep working), `account` for the others.
 */
export function accountLabels(account: string): Labels | undefined {
  // Frozen: the registry remembers its key (counted on every commit).
  return account === DEFAULT_ACCOUNT ? undefined : Object.freeze({ account });
}

/** The database's disk guard, publishing to `leafgate_buffer_disk_full`. */
export function diskGuard(db: Database.Database, log: Logger, metrics: Metrics): DiskGuard {
  return new DiskGuard(
    db,
    log,
    metrics.gauge(
      "leafgate_buffer_disk_full",
      "1 while the disk is full and the buffer is held at its current size",
    ),
  );
}

interface PendingRow {
  readonly message: Envelope;
  readonly cls: BufferClass;
  readonly size: number;
}

/** Deletes that failed are retried later; beyond this many ranges the oldest are forgotten. */
const UNDELETED_MAX_RANGES = 4096;

/**
 * The durable queue between ingress and the hub: group-committed appends within the
 * buffer's bounds (a full disk is a full buffer), read and deleted by the forwarder.
 */
export class Outbox implements OutboxReader {
  readonly #options: OutboxOptions;
  readonly #clock: Clock;
  readonly #table: OutboxTable;
  readonly #policy: BufferPolicy;
  readonly #eviction: Eviction;
  readonly #group: GroupCommit<PendingRow>;
  readonly #recent = new RecentRows();
  readonly #drops: BufferDrops;
  readonly #disk: DiskGuard;
  readonly #maintenance: OutboxMaintenance;
  readonly #commitTx: (rows: readonly PendingRow[]) => RemovedRow[];
  readonly #deleteTx: (ranges: readonly IdRange[]) => RemovedGroup[];
  readonly #listeners = new Set<() => void>();
  readonly #appended;
  readonly #labels: Labels | undefined;
  readonly #commitFailures;
  #lastId: number;
  /** Forwarded rows whose delete failed (a full disk): deleted with the next ones. */
  #undeleted: IdRange[] = [];
  #closed = false;
  #settleClosed: (err: Error | undefined) => void = () => {};
  readonly #closedPromise = new Promise<Error | undefined>((resolve) => {
    this.#settleClosed = resolve;
  });

  constructor(db: Database.Database, options: OutboxOptions) {
    const { log, metrics } = options;
    const clock = options.clock ?? systemClock;
    this.#options = options;
    this.#clock = clock;
    const account = options.account ?? DEFAULT_ACCOUNT;
    const labels = accountLabels(account);
    this.#labels = labels;
    this.#table = new OutboxTable(db, account, options.sharedTable !== true);
    this.#policy = new BufferPolicy(options.limits ?? UNLIMITED, {
      messages: metrics.gauge("leafgate_buffer_messages", "Buffered messages by class"),
      bytes: metrics.gauge("leafgate_buffer_bytes", "Buffered bytes by class"),
      labels,
    });
    this.#eviction = new Eviction(this.#table, this.#policy, log);
    this.#drops = new BufferDrops(log, metrics, clock, labels);
    // Group commits and upkeep run from timers that client input schedules: guarded.
    const guard = new Guard(log, metrics);
    this.#group = new GroupCommit({
      intervalMs: options.commitIntervalMs,
      maxRows: options.commitMaxRows,
      clock,
      guard,
      flush: () => this.flush(),
    });
    this.#disk = options.disk ?? diskGuard(db, log, metrics);
    this.#maintenance = new OutboxMaintenance(
      db,
      {
        classes: this.#policy.classes,
        startDiskGuard: () => this.#disk.start(),
        pollDisk: () => this.#disk.poll(),
        retryDeletes: () => {
          if (this.#undeleted.length > 0) this.#deleteRanges([]);
        },
        expire: (cls, cutoffMs) => this.#removed(this.#eviction.expire(cls, cutoffMs), "expired"),
      },
      { log, guard, clock },
    );
    this.#commitTx = db.transaction((rows: readonly PendingRow[]) => {
      const last = this.#table.insert(rows);
      // Ids are consecutive within one transaction (one writer), whoever else shares the
      // table: the batch took last - n + 1 … last.
      if (rows.length > 0) this.#lastId = last;
      return this.#eviction.overLimits(rows.map((r) => r.cls));
    });
    this.#deleteTx = db.transaction((ranges: readonly IdRange[]) =>
      this.#table.deleteRanges(ranges),
    );
    this.#reload();
    this.#lastId = this.#table.lastIdEver();
    this.#appended = metrics.counter(
      "leafgate_outbox_appended_total",
      "Messages committed to the outbox",
    );
    this.#commitFailures = metrics.counter(
      "leafgate_outbox_commit_failures_total",
      "Messages lost because their outbox transaction failed, by SQLite code",
    );
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
    const strict = cls.onFull === "reject";
    if (strict && !this.#policy.fits(cls, size)) {
      this.#drops.record(cls, "rejected", 1, message.receivedAtMs);
      const { messages, bytes } = this.#policy.usage(cls);
      return Promise.reject(
        new StoreError(
          "LG_ERR_BUFFER_FULL",
          `buffer class ${cls.name} is full (${messages} messages, ${bytes} bytes); new messages are refused until the hub takes some`,
        ),
      );
    }
    this.#policy.queued(cls, size);
    return this.#group.add({ message, cls, size }, strict);
  }

  /** Commits whatever is pending, now. */
  flush(): void {
    const batch = this.#group.take();
    if (batch === undefined) return;
    const err = this.#commit(batch);
    if (err === undefined) return;
    if (isDiskFull(err)) this.#diskFull(batch, err);
    else this.#fail(batch, err);
  }

  /**
   * Commits `batch` and settles it. On failure nothing of it is visible (the id and the
   * class accounting are restored) and the batch stays unsettled: returns the error.
   */
  #commit(batch: Batch<PendingRow>): unknown {
    const previousId = this.#lastId;
    let evicted: RemovedRow[];
    try {
      evicted = this.#commitTx(batch.rows);
    } catch (err) {
      this.#lastId = previousId;
      this.#reload();
      return err;
    }
    const firstId = this.#lastId - batch.rows.length + 1;
    this.#policy.committed(batch.rows);
    this.#recent.remember(
      batch.rows.map((r) => r.message),
      firstId,
    );
    this.#removed(evicted, "evicted");
    this.#appended.inc(this.#labels, batch.rows.length);
    for (const listener of this.#listeners) listener();
    batch.strict.resolve();
    batch.lenient.resolve();
    return undefined;
  }

  /** A batch that failed for another reason than space: refused, counted and logged. */
  #fail(batch: Batch<PendingRow>, err: unknown): void {
    this.#abandon(batch.rows, err);
    const error = this.#commitError(batch.rows.length, err);
    this.#options.log.error(
      { err: error, messages: batch.rows.length },
      "outbox commit failed; the messages were not accepted",
    );
    batch.strict.reject(error);
    batch.lenient.reject(error);
  }

  /**
   * The disk is full: like a full buffer. The guard first makes a real full disk workable
   * (DiskGuard.onFull); if the disk has room again, the batch is retried as it is.
   * Otherwise rows of `drop_oldest` classes give way (Eviction.makeRoom) and the batch is
   * retried once; if that cannot be done ("stuck", or too little to evict) or the retry
   * fails too, `reject` rows are refused (LG_ERR_BUFFER_FULL) and the others fail as a
   * failed commit (LG_ERR_STORE_WRITE). Every refused row is a `disk_full` drop.
   */
  #diskFull(batch: Batch<PendingRow>, err: unknown): void {
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
    this.#abandon(batch.rows, cause);
    for (const r of batch.rows) this.#drops.record(r.cls, "disk_full", 1, r.message.receivedAtMs);
    batch.strict.reject(
      new StoreError("LG_ERR_BUFFER_FULL", "the disk is full; the message was refused", cause),
    );
    batch.lenient.reject(this.#commitError(batch.rows.length, cause));
  }

  #makeRoom(batch: Batch<PendingRow>): boolean {
    let bytes = 0;
    for (const r of batch.rows) bytes += r.size;
    const { evicted, made } = this.#eviction.makeRoom(
      batch.rows.map((r) => r.cls),
      batch.rows.length,
      bytes,
    );
    this.#removed(evicted, "evicted");
    return made;
  }

  /** Pending rows that will never be committed. */
  #abandon(rows: readonly PendingRow[], err: unknown): void {
    this.#policy.abandoned(rows);
    const code = (err as { code?: string }).code ?? "unknown";
    this.#commitFailures.inc({ code, ...this.#labels }, rows.length);
  }

  #commitError(rows: number, err: unknown): StoreError {
    return new StoreError(
      "LG_ERR_STORE_WRITE",
      `cannot commit ${rows} messages to the outbox`,
      err,
    );
  }

  /** Rows that left without reaching the hub: counted, logged, and out of the cache. */
  #removed(rows: readonly RemovedRow[], reason: "evicted" | "expired"): void {
    if (rows.length === 0) return;
    this.#recent.removed(rows);
    this.#drops.recordRows(rows, reason, (name) => this.#policy.byName(name));
  }

  /** Sets the class accounting from the table: at start, and after a rolled-back transaction. */
  #reload(): void {
    this.#policy.reload(this.#table.perClass());
  }

  readAfter(afterId: number, limit: number): OutboxRow[] {
    return this.#recent.read(afterId, limit) ?? this.#table.readAfter(afterId, limit, this.#lastId);
  }

  delete(ids: readonly number[]): void {
    if (ids.length === 0) return;
    const ranges = idRanges(ids);
    this.#recent.deleted(ranges);
    this.#deleteRanges(ranges);
  }

  /**
   * Deletes `ranges` and any earlier ones whose delete failed. A delete needs space too
   * (the WAL), so on a full disk the guard gets its chance first; if it still fails, the
   * ranges are kept for the next delete or upkeep (bounded: beyond that, the rows stay
   * until a resend after a reconnect or restart, which the hub deduplicates).
   */
  #deleteRanges(ranges: readonly IdRange[]): void {
    const todo = this.#undeleted.length > 0 ? [...this.#undeleted, ...ranges] : ranges;
    let gone: RemovedGroup[];
    try {
      gone = this.#withDiskRetry(() => this.#deleteTx(todo));
    } catch (err) {
      this.#undeleted = todo.slice(-UNDELETED_MAX_RANGES);
      this.#options.log.warn(
        { err: errorMessage(err), ranges: this.#undeleted.length },
        "cannot delete forwarded rows; will retry",
      );
      return;
    }
    this.#undeleted = [];
    this.#policy.removedGroups(gone);
  }

  /**
   * Deletes rows the hub is known to hold already: ids up to `maxId` that were received
   * before `receivedBeforeMs`. Returns how many went.
   */
  deleteStored(maxId: number, receivedBeforeMs: number): number {
    const gone = this.#withDiskRetry(() => this.#table.deleteStored(maxId, receivedBeforeMs));
    this.#policy.removed(gone);
    this.#recent.removed(gone);
    return gone.length;
  }

  /** Runs a write; on a full disk the guard gets its chance, then the write once more. */
  #withDiskRetry<T>(write: () => T): T {
    try {
      return write();
    } catch (err) {
      if (!isDiskFull(err)) throw err;
      this.#disk.onFull();
      return write();
    }
  }

  /**
   * Starts periodic upkeep (OutboxMaintenance): every `intervalMs`, by default a tenth of
   * the shortest max_age, 1 s to 60 s, until `close` or an abort of `signal`.
   */
  startMaintenance(intervalMs?: number, signal?: AbortSignal): void {
    this.#maintenance.start(intervalMs, signal);
  }

  /** One round of upkeep as of `now` (also called by tests). */
  maintain(now = this.#clock.now()): void {
    this.#maintenance.run(now);
  }

  onCommit(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * The highest id this queue committed, or given out before it started (ids are shared
   * by every queue of the table: an account's ascend with gaps).
   */
  get lastId(): number {
    return this.#lastId;
  }

  /** The account whose queue this is. */
  get account(): string {
    return this.#table.account;
  }

  /** Rows waiting to be forwarded. */
  get size(): number {
    return this.#policy.committedMessages();
  }

  /** Per class: buffered messages and bytes, for status pages. */
  classes(): { name: string; messages: number; bytes: number; onFull: OnFull }[] {
    return this.#policy.classes.map((c) => ({
      name: c.name,
      ...this.#policy.usage(c),
      onFull: c.onFull,
    }));
  }

  /**
   * Per class, for `/status`: `classes()`, the class's limits (null: none) and when its
   * oldest committed row was received (null: none). One index lookup a class.
   */
  classStatus(): ClassStatus[] {
    const limit = (n: number): number | null => (Number.isFinite(n) ? n : null);
    return this.#policy.classes.map((c) => ({
      name: c.name,
      ...this.#policy.usage(c),
      onFull: c.onFull,
      maxBytes: limit(c.maxBytes),
      maxMessages: limit(c.maxMessages),
      maxAgeMs: limit(c.maxAgeMs),
      oldestAt: this.#table.oldestReceivedAt(c.name) ?? null,
    }));
  }

  /** Commits pending rows and refuses further appends. */
  close(): void {
    this.flush();
    this.#closed = true;
    this.#maintenance.stop();
    for (const listener of [...this.#listeners]) listener();
    this.#settleClosed(undefined);
  }

  /** Resolves once `close` has run; never rejects. */
  closed(): Promise<Error | undefined> {
    return this.#closedPromise;
  }
}
