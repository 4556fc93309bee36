import type Database from "better-sqlite3";
import type { Guard } from "../core/index.js";
import { SESSION_MESSAGE_ROW_BYTES } from "./schema.js";
import {
  decodeMessage,
  encodeDeliveryMeta,
  encodePayloadMeta,
  type MessageRow,
  SELECT_MESSAGES,
} from "./session-codec.js";
import { queuedBytesOf, type SessionStoreUsage } from "./session-quota.js";
import type { NewStoredMessage, StoredMessage } from "./session-types.js";

interface PayloadOp {
  kind: "payload";
  id: number;
  subject: string;
  payload: Buffer;
  meta: string;
  size: number;
  refs: number;
}

type Op =
  | PayloadOp
  | {
      kind: "insert";
      id: number;
      account: string;
      clientId: string;
      payloadId: number;
      qos: 1 | 2;
      meta: string | null;
      size: number;
      bytes: number;
    }
  | { kind: "sent"; id: number; packetId: number; released: boolean }
  | { kind: "delete"; id: number };

/** A message added: its row id, and a promise that settles with its batch's commit. */
export interface AddedMessage {
  readonly id: number;
  readonly committed: Promise<void>;
}

/**
 * The messages owed to persistent sessions, written in batches: one transaction per turn
 * of the event loop. A message queued for many sessions in one batch is stored once
 * (`mqtt_payload`, with the number of rows naming it) and each session keeps a small row;
 * a payload whose last row goes is deleted in the same transaction. docs/sessions-store.md
 * says why and how the bytes are counted.
 */
export class QueuedMessages {
  readonly #db: Database.Database;
  readonly #usage: SessionStoreUsage;
  readonly #ops: Op[] = [];
  /** Payloads added in the pending batch, by the object they came from (the Envelope). */
  readonly #batchPayloads = new Map<object, PayloadOp>();
  #waiters: { resolve: () => void; reject: (err: unknown) => void }[] = [];
  #afterCommit: (() => void)[] = [];
  /** The callbacks of the batch just committed, while they run. */
  #draining: (() => void)[] | undefined;
  #immediate: NodeJS.Immediate | undefined;
  /** The deferred flush, under the guard when one is given (client input schedules it). */
  readonly #flushLater: () => void;
  #nextId: number;
  #nextPayloadId: number;
  readonly #stmt: {
    insertPayload: Database.Statement;
    insertMessage: Database.Statement;
    sentMessage: Database.Statement;
    deleteMessage: Database.Statement;
    releasePayload: Database.Statement;
    deleteUnreferenced: Database.Statement;
    releaseSessionPayloads: Database.Statement;
    deleteSessionMessages: Database.Statement;
    sessionUsage: Database.Statement;
    loadInflight: Database.Statement;
    loadQueued: Database.Statement;
  };
  readonly #apply: (ops: readonly Op[]) => { bytes: number; rows: number };

  constructor(db: Database.Database, usage: SessionStoreUsage, guard: Guard | undefined) {
    this.#db = db;
    this.#usage = usage;
    const flush = (): void => this.flush();
    this.#flushLater = guard?.wrap("mqtt.session-store-flush", flush) ?? flush;
    this.#nextId = maxId(db, "mqtt_message") + 1;
    this.#nextPayloadId = maxId(db, "mqtt_payload") + 1;
    this.#stmt = {
      insertPayload: db.prepare(
        "INSERT INTO mqtt_payload (id, subject, payload, meta, refs, size) VALUES (?, ?, ?, ?, ?, ?)",
      ),
      insertMessage: db.prepare(
        "INSERT INTO mqtt_message (id, account, client_id, payload_id, qos, meta, size, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      ),
      sentMessage: db.prepare("UPDATE mqtt_message SET packet_id = ?, released = ? WHERE id = ?"),
      deleteMessage: db.prepare("DELETE FROM mqtt_message WHERE id = ? RETURNING payload_id, size"),
      releasePayload: db.prepare("UPDATE mqtt_payload SET refs = refs - 1 WHERE id = ?"),
      deleteUnreferenced: db.prepare("DELETE FROM mqtt_payload WHERE refs <= 0 RETURNING size"),
      releaseSessionPayloads: db.prepare(
        "UPDATE mqtt_payload SET refs = refs - c.n FROM " +
          "(SELECT payload_id, count(*) AS n FROM mqtt_message WHERE account = ? AND client_id = ? GROUP BY payload_id) AS c " +
          "WHERE mqtt_payload.id = c.payload_id",
      ),
      deleteSessionMessages: db.prepare(
        "DELETE FROM mqtt_message WHERE account = ? AND client_id = ?",
      ),
      sessionUsage: db.prepare(
        "SELECT count(*) AS n, coalesce(sum(size), 0) AS bytes FROM mqtt_message WHERE account = ? AND client_id = ?",
      ),
      loadInflight: db.prepare(
        `${SELECT_MESSAGES}WHERE m.account = ? AND m.client_id = ? AND m.packet_id IS NOT NULL ORDER BY m.id`,
      ),
      loadQueued: db.prepare(
        `${SELECT_MESSAGES}WHERE m.account = ? AND m.client_id = ? AND m.packet_id IS NULL AND m.id > ? ORDER BY m.id LIMIT ?`,
      ),
    };
    this.#apply = db.transaction((ops: readonly Op[]) => this.#applyOps(ops));
  }

  /** Applies a batch (inside its transaction); returns the bytes and message rows it freed. */
  #applyOps(ops: readonly Op[]): { bytes: number; rows: number } {
    let freed = 0;
    let rows = 0;
    let released = false;
    for (const op of ops) {
      if (op.kind === "payload") {
        this.#stmt.insertPayload.run(op.id, op.subject, op.payload, op.meta, op.refs, op.size);
      } else if (op.kind === "insert") {
        const { id, account, clientId, payloadId, qos, meta, size, bytes } = op;
        this.#stmt.insertMessage.run(id, account, clientId, payloadId, qos, meta, size, bytes);
      } else if (op.kind === "sent") {
        this.#stmt.sentMessage.run(op.packetId, op.released ? 1 : 0, op.id);
      } else {
        const row = this.#stmt.deleteMessage.get(op.id) as
          | { payload_id: number; size: number }
          | undefined;
        if (row === undefined) continue;
        freed += row.size;
        rows++;
        this.#stmt.releasePayload.run(row.payload_id);
        released = true;
      }
    }
    if (released) freed += this.#sweep();
    return { bytes: freed, rows };
  }

  /** Deletes payloads no row names any more; returns their bytes. Inside a transaction. */
  #sweep(): number {
    let freed = 0;
    for (const row of this.#stmt.deleteUnreferenced.all() as { size: number }[]) freed += row.size;
    return freed;
  }

  /**
   * Deletes every message row of the session, and the payloads no other session names;
   * returns the bytes and rows freed. Inside the caller's transaction, after a flush.
   */
  deleteSession(account: string, clientId: string): { bytes: number; n: number } {
    const usage = this.#stmt.sessionUsage.get(account, clientId) as { n: number; bytes: number };
    if (usage.n === 0) return usage;
    this.#stmt.releaseSessionPayloads.run(account, clientId);
    this.#stmt.deleteSessionMessages.run(account, clientId);
    return { bytes: usage.bytes + this.#sweep(), n: usage.n };
  }

  /** The session's messages sent and not acknowledged, in the order they were first sent. */
  loadInflight(account: string, clientId: string): StoredMessage[] {
    this.flush();
    return (this.#stmt.loadInflight.all(account, clientId) as MessageRow[]).map(decodeMessage);
  }

  /** At most `limit` of the session's unsent messages after row `afterId`, in order. */
  loadQueued(account: string, clientId: string, afterId: number, limit: number): StoredMessage[] {
    this.flush();
    return (this.#stmt.loadQueued.all(account, clientId, afterId, limit) as MessageRow[]).map(
      decodeMessage,
    );
  }

  /**
   * Queues a message for a session; with `quota`, not past the store's quota (undefined).
   * Messages added in one batch from the same `source` share one stored payload.
   */
  add(
    account: string,
    clientId: string,
    m: NewStoredMessage,
    source: object | undefined,
    quota: boolean,
  ): AddedMessage | undefined {
    let payload = source === undefined ? undefined : this.#batchPayloads.get(source);
    const meta = encodeDeliveryMeta(m);
    const rowSize =
      SESSION_MESSAGE_ROW_BYTES + Buffer.byteLength(clientId) + (meta === null ? 0 : meta.length);
    let newPayload: PayloadOp | undefined;
    if (payload === undefined) {
      const payloadMeta = encodePayloadMeta(m);
      newPayload = {
        kind: "payload",
        id: this.#nextPayloadId,
        subject: m.subject,
        payload: m.payload,
        meta: payloadMeta,
        size: queuedBytesOf(m) + Buffer.byteLength(payloadMeta),
        refs: 0,
      };
    }
    const cost = rowSize + (newPayload?.size ?? 0);
    if (quota && !this.#usage.fits(cost)) return undefined;
    if (newPayload !== undefined) {
      this.#nextPayloadId++;
      payload = newPayload;
      this.#ops.push(newPayload);
      if (source !== undefined) this.#batchPayloads.set(source, newPayload);
    }
    payload!.refs++;
    const id = this.#nextId++;
    this.#ops.push({
      kind: "insert",
      id,
      account,
      clientId,
      payloadId: payload!.id,
      qos: m.qos,
      meta,
      size: rowSize,
      bytes: queuedBytesOf(m),
    });
    this.#usage.add(cost, 1);
    this.#schedule();
    const committed = new Promise<void>((resolve, reject) =>
      this.#waiters.push({ resolve, reject }),
    );
    return { id, committed };
  }

  /** Records the packet id a stored message went out with, and whether PUBREC came back. */
  markSent(id: number, packetId: number, released: boolean): void {
    this.#ops.push({ kind: "sent", id, packetId, released });
    this.#schedule();
  }

  remove(id: number): void {
    this.#ops.push({ kind: "delete", id });
    this.#schedule();
  }

  /** See `SessionStore.afterCommit`. */
  afterCommit(fn: () => void): void {
    if (this.#ops.length > 0) this.#afterCommit.push(fn);
    else if (this.#draining !== undefined) this.#draining.push(fn);
    else fn();
  }

  #schedule(): void {
    this.#immediate ??= setImmediate(this.#flushLater);
  }

  /** Commits every pending write now. */
  flush(): void {
    if (this.#immediate !== undefined) clearImmediate(this.#immediate);
    this.#immediate = undefined;
    if (this.#ops.length === 0) return;
    const ops = this.#ops.splice(0);
    this.#batchPayloads.clear();
    const waiters = this.#waiters;
    this.#waiters = [];
    const after = this.#afterCommit;
    this.#afterCommit = [];
    let failure: { err: unknown } | undefined;
    try {
      const freed = this.#apply(ops);
      this.#usage.add(-freed.bytes, -freed.rows);
    } catch (err) {
      failure = { err };
      // What the failed batch would have added or freed: count again from the rows.
      try {
        this.#usage.recount(this.#db);
      } catch {}
    }
    for (const w of waiters) {
      if (failure === undefined) w.resolve();
      else w.reject(failure.err);
    }
    // Writes these callbacks make go to the next batch; callbacks they add with nothing
    // pending run after the rest of these.
    this.#draining = after;
    try {
      for (let i = 0; i < after.length; i++) after[i]!();
    } finally {
      this.#draining = undefined;
    }
  }
}

/** The largest id in `table`, 0 when it is empty: ids go on from there. */
function maxId(db: Database.Database, table: "mqtt_message" | "mqtt_payload"): number {
  const row = db.prepare(`SELECT max(id) AS id FROM ${table}`).get() as { id: number | null };
  return row.id ?? 0;
}
