import type Database from "better-sqlite3";
import type { Gauge, Guard, MessageProperties, Metrics } from "../core/index.js";
import { SESSION_MESSAGE_ROW_BYTES } from "./database.js";
import { type PropertiesJson, propertiesFromJson, propertiesToJson } from "./properties-json.js";

/** A stored subscription of a persistent MQTT session. */
export interface StoredSubscription {
  readonly filter: string;
  readonly qos: 0 | 1 | 2;
  readonly noLocal: boolean;
  readonly retainAsPublished: boolean;
  readonly retainHandling: 0 | 1 | 2;
  readonly subscriptionId: number | undefined;
}

/** A QoS 1/2 message owed to a persistent session: queued, or sent and not yet acked. */
export interface StoredMessage {
  readonly id: number;
  readonly subject: string;
  readonly payload: Buffer;
  readonly qos: 1 | 2;
  readonly retain: boolean;
  readonly receivedAtMs: number;
  readonly expiresAtMs: number | undefined;
  readonly publisher: string | undefined;
  readonly properties: MessageProperties | undefined;
  readonly headers: ReadonlyMap<string, readonly string[]> | undefined;
  readonly subscriptionIds: readonly number[] | undefined;
  /** Set once sent: resent with this id and DUP on reconnect [MQTT-4.4.0-1]. */
  readonly packetId: number | undefined;
  /** PUBREC came back: PUBREL is what is owed. */
  readonly released: boolean;
}

/** A will waiting for its MQTT 5 Will Delay Interval (part of the session's state). */
export interface StoredWill {
  readonly subject: string;
  readonly payload: Buffer;
  readonly qos: 0 | 1 | 2;
  readonly retain: boolean;
  readonly properties: MessageProperties | undefined;
  readonly messageExpiryS: number | undefined;
  /**
   * Whose will it is (a user name, '' for anonymous): it is published with that user's
   * permissions. Undefined in wills stored before owners were recorded.
   */
  readonly owner?: string | undefined;
  /** When it is to be published. */
  readonly dueAtMs: number;
}

interface WillJson {
  s: string;
  b: string;
  q: 0 | 1 | 2;
  r?: 1;
  m?: PropertiesJson;
  x?: number;
  o?: string;
  d: number;
}

export interface StoredSession {
  readonly clientId: string;
  /** Its user's name, '' for anonymous; undefined if stored before owners were recorded. */
  readonly owner: string | undefined;
  readonly expiryMs: number;
  /** When its connection went; undefined if it was connected when the gateway stopped. */
  readonly disconnectedAtMs: number | undefined;
  readonly subscriptions: StoredSubscription[];
  /** Inbound QoS 2 ids received and not yet released by PUBREL. */
  readonly awaitingRelease: number[];
  readonly will: StoredWill | undefined;
  /** Messages owed and not yet sent (they stay on disk until the session asks). */
  readonly queued: number;
  /** Their bytes as `max_session_queued_bytes` counts them (subject + payload). */
  readonly queuedBytes: number;
  /** Messages sent and not yet acknowledged (resent at the next connection). */
  readonly inflight: number;
}

/** A stored session with every message it is owed (tests and tools; the gateway loads lazily). */
export type StoredSessionWithMessages = StoredSession & { readonly messages: StoredMessage[] };

export type NewStoredMessage = Omit<StoredMessage, "id" | "packetId" | "released">;

export interface SessionStoreOptions {
  /** Hears of a direct write that failed (disk full, I/O error); default: throw. */
  readonly onError?: (err: unknown, what: string) => void;
  /**
   * The quota of queued messages, in bytes as the store holds them: every payload once,
   * plus each session's row that names it (`add` with `quota` refuses past it).
   */
  readonly maxBytes?: number;
  /** Gauges of what the store holds: leafgate_mqtt_session_store_{bytes,messages}. */
  readonly metrics?: Metrics;
  /** Runs the deferred flush, which client input schedules, under the guard. */
  readonly guard?: Guard;
}

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
      clientId: string;
      payloadId: number;
      qos: 1 | 2;
      meta: string | null;
      size: number;
      bytes: number;
    }
  | { kind: "sent"; id: number; packetId: number; released: boolean }
  | { kind: "delete"; id: number };

interface MessageRow {
  id: number;
  subject: string;
  payload: Buffer;
  qos: 1 | 2;
  pmeta: string;
  meta: string | null;
  packet_id: number | null;
  released: number;
}

/** What the publisher gave a message, as one JSON column of its payload row. */
interface PayloadMeta {
  t: number;
  x?: number;
  p?: string;
  h?: [string, string[]][];
  m?: PropertiesJson;
}

/** What one session's copy adds: retain as published, subscription identifiers. */
interface DeliveryMeta {
  r?: 1;
  s?: number[];
}

/**
 * The share of a capped database file (`buffer.max_file_size`, the database's part of it)
 * the session store may hold at most: a quarter, counted as the store counts (content;
 * pages and indexes take more), so the outbox always keeps most of the file for device
 * ingest.
 */
const SESSION_STORE_FILE_SHARE = 4;

/**
 * The session store's quota: `session_store_max_bytes`, within its share of the database
 * file when that is capped (`databaseBytes`: what `buffer.max_file_size` leaves the file
 * beside its WAL).
 */
export function sessionStoreQuota(maxBytes: number, databaseBytes: number | null): number {
  return databaseBytes === null
    ? maxBytes
    : Math.min(maxBytes, Math.floor(databaseBytes / SESSION_STORE_FILE_SHARE));
}

/**
 * What a session, subscription and inbound QoS 2 id row count for besides their text
 * columns (integers, the primary-key index entry), as SESSION_MESSAGE_ROW_BYTES does
 * for messages. The quota counts everything the store holds; only messages are refused
 * past it (sessions and subscriptions have their own bounds).
 */
export const SESSION_ROW_BYTES = 48;
export const SUBSCRIPTION_ROW_BYTES = 40;
export const INBOUND_ROW_BYTES = 24;

/** SQL sums of what the store holds, by the same rules as its counters. */
const USAGE_SQL = {
  sessions: `SELECT coalesce(sum(${SESSION_ROW_BYTES} + length(CAST(client_id AS BLOB)) + coalesce(length(CAST(will AS BLOB)), 0) + coalesce(length(CAST(owner AS BLOB)), 0)), 0) AS bytes FROM mqtt_session`,
  subscriptions: `SELECT coalesce(sum(${SUBSCRIPTION_ROW_BYTES} + length(CAST(client_id AS BLOB)) + length(CAST(filter AS BLOB))), 0) AS bytes FROM mqtt_subscription`,
  inbound: `SELECT coalesce(sum(${INBOUND_ROW_BYTES} + length(CAST(client_id AS BLOB))), 0) AS bytes FROM mqtt_inbound`,
  payloads: "SELECT coalesce(sum(size), 0) AS bytes FROM mqtt_payload",
  messages: "SELECT coalesce(sum(size), 0) AS bytes FROM mqtt_message",
} as const;

/** Bytes the session store holds, summed from its rows (what `SessionStore.bytes` equals). */
export function sessionStoreUsage(db: Database.Database): number {
  let bytes = 0;
  for (const sql of Object.values(USAGE_SQL))
    bytes += (db.prepare(sql).get() as { bytes: number }).bytes;
  return bytes;
}

/** Bytes of a message as `max_session_queued_bytes` counts them. */
export function queuedBytesOf(m: {
  readonly subject: string;
  readonly payload: Uint8Array;
}): number {
  return Buffer.byteLength(m.subject) + m.payload.length;
}

const SELECT_MESSAGES =
  "SELECT m.id, p.subject, p.payload, m.qos, p.meta AS pmeta, m.meta, m.packet_id, m.released " +
  "FROM mqtt_message m JOIN mqtt_payload p ON p.id = m.payload_id ";

/**
 * Persistent MQTT sessions (section 4.1): subscriptions, queued and unacknowledged QoS 1
 * and 2 messages, and inbound QoS 2 ids, so that a restart loses none of them. Message
 * writes are batched into one transaction per turn of the event loop; `add` returns a
 * promise that settles when the row is committed, so a publisher's PUBACK can wait on it,
 * and `afterCommit` runs what must not go out before the batch is on disk.
 *
 * A message queued for many sessions is stored once (`mqtt_payload`, with the number of
 * session rows naming it); each session keeps a small row. Payloads whose last row goes
 * are deleted in the same transaction. What the store holds is counted as it changes
 * (`bytes`, `messages`), so the quota never needs the file's size. Sessions load without
 * their messages (`loadSessions`); a session reads its own when its client connects
 * (`loadInflight`, then `loadQueued` in windows).
 */
export class SessionStore {
  readonly #db: Database.Database;
  readonly #onError: (err: unknown, what: string) => void;
  readonly #maxBytes: number;
  readonly #ops: Op[] = [];
  /** Payloads added in the pending batch, by the object they came from (the Envelope). */
  readonly #batchPayloads = new Map<object, PayloadOp>();
  #waiters: { resolve: () => void; reject: (err: unknown) => void }[] = [];
  #afterCommit: (() => void)[] = [];
  /** The callbacks of the batch just committed, while they run. */
  #draining: (() => void)[] | undefined;
  #immediate: NodeJS.Immediate | undefined;
  /** The deferred flush, under the guard when one is given (see `#schedule`). */
  readonly #flushLater: () => void;
  #nextId: number;
  #nextPayloadId: number;
  /** Bytes held (committed and pending): payloads once, plus message rows. */
  #bytes = 0;
  #messages = 0;
  readonly #gauges: { bytes: Gauge; messages: Gauge } | undefined;
  readonly #stmt: {
    upsertSession: Database.Statement;
    saveOwner: Database.Statement;
    saveWill: Database.Statement;
    deleteSession: Database.Statement[];
    releaseSessionPayloads: Database.Statement;
    sessionUsage: Database.Statement;
    sessionRestUsage: Database.Statement;
    sessionRowBytes: Database.Statement;
    hasSub: Database.Statement;
    upsertSub: Database.Statement;
    deleteSub: Database.Statement;
    insertPayload: Database.Statement;
    insertMessage: Database.Statement;
    sentMessage: Database.Statement;
    deleteMessage: Database.Statement;
    releasePayload: Database.Statement;
    deleteUnreferenced: Database.Statement;
    addInbound: Database.Statement;
    deleteInbound: Database.Statement;
    loadInflight: Database.Statement;
    loadQueued: Database.Statement;
  };
  readonly #apply: (ops: readonly Op[]) => { bytes: number; rows: number };

  /**
   * `onError` hears of a write that failed (disk full, I/O error): the session goes on
   * in memory, and only what it would keep across a restart is at stake. `guard` runs the
   * deferred flush, which clients' packets schedule.
   */
  constructor(db: Database.Database, options: SessionStoreOptions = {}) {
    const flush = (): void => this.flush();
    this.#flushLater = options.guard?.wrap("mqtt.session-store-flush", flush) ?? flush;
    this.#onError =
      options.onError ??
      ((err) => {
        throw err;
      });
    this.#maxBytes = options.maxBytes ?? Number.POSITIVE_INFINITY;
    this.#db = db;
    if (options.metrics !== undefined) {
      this.#gauges = {
        bytes: options.metrics.gauge(
          "leafgate_mqtt_session_store_bytes",
          "Bytes of queued messages the persistent-session store holds (payloads once, plus a row per session)",
        ),
        messages: options.metrics.gauge(
          "leafgate_mqtt_session_store_messages",
          "Messages owed to persistent sessions (a row per session and message)",
        ),
      };
    }
    const max = db.prepare("SELECT max(id) AS id FROM mqtt_message").get() as { id: number | null };
    this.#nextId = (max.id ?? 0) + 1;
    const maxPayload = db.prepare("SELECT max(id) AS id FROM mqtt_payload").get() as {
      id: number | null;
    };
    this.#nextPayloadId = (maxPayload.id ?? 0) + 1;
    this.#stmt = {
      upsertSession: db.prepare(
        "INSERT INTO mqtt_session (client_id, expiry_ms, disconnected_at_ms) VALUES (?, ?, ?) " +
          "ON CONFLICT (client_id) DO UPDATE SET expiry_ms = excluded.expiry_ms, disconnected_at_ms = excluded.disconnected_at_ms",
      ),
      saveOwner: db.prepare(
        "INSERT INTO mqtt_session (client_id, expiry_ms, owner) VALUES (?, ?, ?) " +
          "ON CONFLICT (client_id) DO UPDATE SET owner = excluded.owner",
      ),
      saveWill: db.prepare("UPDATE mqtt_session SET will = ? WHERE client_id = ?"),
      deleteSession: [
        db.prepare("DELETE FROM mqtt_session WHERE client_id = ?"),
        db.prepare("DELETE FROM mqtt_subscription WHERE client_id = ?"),
        db.prepare("DELETE FROM mqtt_message WHERE client_id = ?"),
        db.prepare("DELETE FROM mqtt_inbound WHERE client_id = ?"),
      ],
      releaseSessionPayloads: db.prepare(
        "UPDATE mqtt_payload SET refs = refs - c.n FROM " +
          "(SELECT payload_id, count(*) AS n FROM mqtt_message WHERE client_id = ? GROUP BY payload_id) AS c " +
          "WHERE mqtt_payload.id = c.payload_id",
      ),
      sessionUsage: db.prepare(
        "SELECT count(*) AS n, coalesce(sum(size), 0) AS bytes FROM mqtt_message WHERE client_id = ?",
      ),
      sessionRestUsage: db.prepare(
        `SELECT (SELECT coalesce(sum(${SUBSCRIPTION_ROW_BYTES} + length(CAST(client_id AS BLOB)) + length(CAST(filter AS BLOB))), 0) FROM mqtt_subscription WHERE client_id = ?) + ` +
          `(SELECT coalesce(sum(${INBOUND_ROW_BYTES} + length(CAST(client_id AS BLOB))), 0) FROM mqtt_inbound WHERE client_id = ?) AS bytes`,
      ),
      sessionRowBytes: db.prepare(
        `SELECT ${SESSION_ROW_BYTES} + length(CAST(client_id AS BLOB)) + coalesce(length(CAST(will AS BLOB)), 0) + coalesce(length(CAST(owner AS BLOB)), 0) AS bytes FROM mqtt_session WHERE client_id = ?`,
      ),
      hasSub: db.prepare("SELECT 1 FROM mqtt_subscription WHERE client_id = ? AND filter = ?"),
      upsertSub: db.prepare(
        "INSERT INTO mqtt_subscription (client_id, filter, qos, options, subscription_id) VALUES (?, ?, ?, ?, ?) " +
          "ON CONFLICT (client_id, filter) DO UPDATE SET qos = excluded.qos, options = excluded.options, subscription_id = excluded.subscription_id",
      ),
      deleteSub: db.prepare("DELETE FROM mqtt_subscription WHERE client_id = ? AND filter = ?"),
      insertPayload: db.prepare(
        "INSERT INTO mqtt_payload (id, subject, payload, meta, refs, size) VALUES (?, ?, ?, ?, ?, ?)",
      ),
      insertMessage: db.prepare(
        "INSERT INTO mqtt_message (id, client_id, payload_id, qos, meta, size, bytes) VALUES (?, ?, ?, ?, ?, ?, ?)",
      ),
      sentMessage: db.prepare("UPDATE mqtt_message SET packet_id = ?, released = ? WHERE id = ?"),
      deleteMessage: db.prepare("DELETE FROM mqtt_message WHERE id = ? RETURNING payload_id, size"),
      releasePayload: db.prepare("UPDATE mqtt_payload SET refs = refs - 1 WHERE id = ?"),
      deleteUnreferenced: db.prepare("DELETE FROM mqtt_payload WHERE refs <= 0 RETURNING size"),
      addInbound: db.prepare(
        "INSERT OR IGNORE INTO mqtt_inbound (client_id, packet_id) VALUES (?, ?)",
      ),
      deleteInbound: db.prepare("DELETE FROM mqtt_inbound WHERE client_id = ? AND packet_id = ?"),
      loadInflight: db.prepare(
        `${SELECT_MESSAGES}WHERE m.client_id = ? AND m.packet_id IS NOT NULL ORDER BY m.id`,
      ),
      loadQueued: db.prepare(
        `${SELECT_MESSAGES}WHERE m.client_id = ? AND m.packet_id IS NULL AND m.id > ? ORDER BY m.id LIMIT ?`,
      ),
    };
    /** Applies a batch; returns the bytes and message rows it freed. */
    this.#apply = db.transaction((ops: readonly Op[]): { bytes: number; rows: number } => {
      let freed = 0;
      let rows = 0;
      let released = false;
      for (const op of ops) {
        if (op.kind === "payload") {
          this.#stmt.insertPayload.run(op.id, op.subject, op.payload, op.meta, op.refs, op.size);
        } else if (op.kind === "insert") {
          this.#stmt.insertMessage.run(
            op.id,
            op.clientId,
            op.payloadId,
            op.qos,
            op.meta,
            op.size,
            op.bytes,
          );
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
    });
    this.#recount();
  }

  /** Deletes payloads no row names any more; returns their bytes. Inside a transaction. */
  #sweep(): number {
    let freed = 0;
    for (const row of this.#stmt.deleteUnreferenced.all() as { size: number }[]) freed += row.size;
    return freed;
  }

  /** Counts what the store holds from its rows (at start, and after a failed batch). */
  #recount(): void {
    this.#bytes = sessionStoreUsage(this.#db);
    this.#messages = (
      this.#db.prepare("SELECT count(*) AS n FROM mqtt_message").get() as { n: number }
    ).n;
    this.#report();
  }

  /** A session row's bytes (undefined: no row), before and after a write to it. */
  #sessionRowBytes(clientId: string): number | undefined {
    const row = this.#stmt.sessionRowBytes.get(clientId) as { bytes: number } | undefined;
    return row?.bytes;
  }

  /** Runs a write to a session or subscription row, counting how its bytes changed. */
  #measured(measure: () => number | undefined, write: () => void): void {
    const before = measure() ?? 0;
    write();
    this.#bytes += (measure() ?? 0) - before;
    this.#report();
  }

  #report(): void {
    this.#gauges?.bytes.set(this.#bytes);
    this.#gauges?.messages.set(this.#messages);
  }

  /**
   * Bytes held: queued messages (payloads once, a row per session), sessions, their
   * subscriptions and inbound ids; what the quota is measured on.
   */
  get bytes(): number {
    return this.#bytes;
  }

  /** Message rows held (one per session and message). */
  get messages(): number {
    return this.#messages;
  }

  get maxBytes(): number {
    return this.#maxBytes;
  }

  /**
   * Every stored session, with its subscriptions, inbound ids and will, and how many
   * messages it is owed; not the messages themselves (see `loadInflight`, `loadQueued`).
   */
  loadSessions(): StoredSession[] {
    this.flush();
    const sessions = new Map<
      string,
      StoredSession & { queued: number; queuedBytes: number; inflight: number }
    >();
    for (const row of this.#db
      .prepare("SELECT client_id, expiry_ms, disconnected_at_ms, will, owner FROM mqtt_session")
      .all() as {
      client_id: string;
      expiry_ms: number;
      disconnected_at_ms: number | null;
      will: string | null;
      owner: string | null;
    }[]) {
      sessions.set(row.client_id, {
        clientId: row.client_id,
        owner: row.owner ?? undefined,
        expiryMs: row.expiry_ms,
        disconnectedAtMs: row.disconnected_at_ms ?? undefined,
        subscriptions: [],
        awaitingRelease: [],
        will: row.will === null ? undefined : decodeWill(row.will),
        queued: 0,
        queuedBytes: 0,
        inflight: 0,
      });
    }
    for (const row of this.#db
      .prepare(
        "SELECT client_id, filter, qos, options, subscription_id FROM mqtt_subscription ORDER BY rowid",
      )
      .all() as {
      client_id: string;
      filter: string;
      qos: 0 | 1 | 2;
      options: number;
      subscription_id: number | null;
    }[]) {
      sessions.get(row.client_id)?.subscriptions.push({
        filter: row.filter,
        qos: row.qos,
        noLocal: (row.options & 1) !== 0,
        retainAsPublished: (row.options & 2) !== 0,
        retainHandling: ((row.options >> 2) & 3) as 0 | 1 | 2,
        subscriptionId: row.subscription_id ?? undefined,
      });
    }
    // Counted per session from the rows' own columns: no payload is read.
    for (const row of this.#db
      .prepare(
        "SELECT client_id, packet_id IS NOT NULL AS sent, count(*) AS n, sum(bytes) AS bytes " +
          "FROM mqtt_message GROUP BY client_id, sent",
      )
      .all() as { client_id: string; sent: number; n: number; bytes: number }[]) {
      const s = sessions.get(row.client_id);
      if (s === undefined) continue;
      if (row.sent === 1) s.inflight = row.n;
      else {
        s.queued = row.n;
        s.queuedBytes = row.bytes;
      }
    }
    for (const row of this.#db.prepare("SELECT client_id, packet_id FROM mqtt_inbound").all() as {
      client_id: string;
      packet_id: number;
    }[]) {
      sessions.get(row.client_id)?.awaitingRelease.push(row.packet_id);
    }
    return [...sessions.values()];
  }

  /** Every stored session with all its messages in order (for tests and tools). */
  loadAll(): StoredSessionWithMessages[] {
    return this.loadSessions().map((s) => ({
      ...s,
      messages: [
        ...this.loadInflight(s.clientId),
        ...this.loadQueued(s.clientId, 0, Number.MAX_SAFE_INTEGER),
      ].sort((a, b) => a.id - b.id),
    }));
  }

  /** The session's messages sent and not acknowledged, in the order they were first sent. */
  loadInflight(clientId: string): StoredMessage[] {
    this.flush();
    return (this.#stmt.loadInflight.all(clientId) as MessageRow[]).map(decodeMessage);
  }

  /** At most `limit` of the session's unsent messages after row `afterId`, in order. */
  loadQueued(clientId: string, afterId: number, limit: number): StoredMessage[] {
    this.flush();
    return (this.#stmt.loadQueued.all(clientId, afterId, limit) as MessageRow[]).map(decodeMessage);
  }

  saveSession(clientId: string, expiryMs: number, disconnectedAtMs: number | undefined): void {
    this.#guard("save session", () =>
      this.#measured(
        () => this.#sessionRowBytes(clientId),
        () => this.#stmt.upsertSession.run(clientId, expiryMs, disconnectedAtMs ?? null),
      ),
    );
  }

  /**
   * Records whose session it is (a user name, '' for anonymous); creates the session's
   * row if it has none yet, so a stored session never lacks its owner.
   */
  saveOwner(clientId: string, owner: string, expiryMs: number): void {
    this.#guard("save session owner", () =>
      this.#measured(
        () => this.#sessionRowBytes(clientId),
        () => this.#stmt.saveOwner.run(clientId, expiryMs, owner),
      ),
    );
  }

  /** Records (or, with undefined, clears) the session's delayed will. */
  saveWill(clientId: string, will: StoredWill | undefined): void {
    this.#guard("save will", () =>
      this.#measured(
        () => this.#sessionRowBytes(clientId),
        () => this.#stmt.saveWill.run(will === undefined ? null : encodeWill(will), clientId),
      ),
    );
  }

  /** Deletes the session with everything it holds; payloads no other session names go too. */
  deleteSession(clientId: string): void {
    this.flush();
    this.#guard("delete session", () => {
      const freed = this.#db.transaction((): { bytes: number; n: number } => {
        const usage = this.#stmt.sessionUsage.get(clientId) as { n: number; bytes: number };
        const rest = this.#stmt.sessionRestUsage.get(clientId, clientId) as { bytes: number };
        const row = this.#sessionRowBytes(clientId) ?? 0;
        if (usage.n > 0) this.#stmt.releaseSessionPayloads.run(clientId);
        for (const s of this.#stmt.deleteSession) s.run(clientId);
        const payloads = usage.n > 0 ? this.#sweep() : 0;
        return { bytes: usage.bytes + rest.bytes + row + payloads, n: usage.n };
      })();
      this.#bytes -= freed.bytes;
      this.#messages -= freed.n;
      this.#report();
    });
  }

  #guard(what: string, write: () => unknown): void {
    try {
      write();
    } catch (err) {
      this.#onError(err, what);
    }
  }

  saveSubscription(clientId: string, s: StoredSubscription): void {
    const options =
      (s.noLocal ? 1 : 0) | (s.retainAsPublished ? 2 : 0) | ((s.retainHandling & 3) << 2);
    this.#guard("save subscription", () =>
      this.#measured(
        () =>
          this.#stmt.hasSub.get(clientId, s.filter) === undefined
            ? 0
            : subRowBytes(clientId, s.filter),
        () =>
          this.#stmt.upsertSub.run(clientId, s.filter, s.qos, options, s.subscriptionId ?? null),
      ),
    );
  }

  deleteSubscription(clientId: string, filter: string): void {
    this.#guard("delete subscription", () => {
      if (this.#stmt.deleteSub.run(clientId, filter).changes > 0) {
        this.#bytes -= subRowBytes(clientId, filter);
        this.#report();
      }
    });
  }

  /**
   * Stores a message for a session; `committed` settles with the batch's transaction.
   * Messages added in one batch from the same `source` (the Envelope a publish fanned
   * out) share one stored payload.
   */
  add(
    clientId: string,
    m: NewStoredMessage,
    source?: object,
  ): { id: number; committed: Promise<void> } {
    return this.#add(clientId, m, source, false)!;
  }

  /** As `add`, unless the message would take the store past `maxBytes`: then undefined. */
  addIfRoom(
    clientId: string,
    m: NewStoredMessage,
    source?: object,
  ): { id: number; committed: Promise<void> } | undefined {
    return this.#add(clientId, m, source, true);
  }

  #add(
    clientId: string,
    m: NewStoredMessage,
    source: object | undefined,
    quota: boolean,
  ): { id: number; committed: Promise<void> } | undefined {
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
    if (quota && this.#bytes + cost > this.#maxBytes) return undefined;
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
      clientId,
      payloadId: payload!.id,
      qos: m.qos,
      meta,
      size: rowSize,
      bytes: queuedBytesOf(m),
    });
    this.#bytes += cost;
    this.#messages++;
    this.#report();
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

  addAwaitingRelease(clientId: string, packetId: number): void {
    this.#guard("save inbound QoS 2 id", () => {
      if (this.#stmt.addInbound.run(clientId, packetId).changes > 0) {
        this.#bytes += INBOUND_ROW_BYTES + Buffer.byteLength(clientId);
        this.#report();
      }
    });
  }

  deleteAwaitingRelease(clientId: string, packetId: number): void {
    this.#guard("delete inbound QoS 2 id", () => {
      if (this.#stmt.deleteInbound.run(clientId, packetId).changes > 0) {
        this.#bytes -= INBOUND_ROW_BYTES + Buffer.byteLength(clientId);
        this.#report();
      }
    });
  }

  /**
   * Runs `fn` once every write made so far is committed, at once when none is pending;
   * in the order given. What a client is sent must not be ahead of what a restart would
   * know: a PUBLISH goes out after its packet id is on disk, a PUBREL after the PUBREC
   * it answers. A failed commit still runs `fn` (the session carries on in memory).
   */
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
      this.#bytes -= freed.bytes;
      this.#messages -= freed.rows;
    } catch (err) {
      failure = { err };
    }
    if (failure !== undefined) {
      // What the failed batch would have added or freed: count again from the rows.
      try {
        this.#recount();
      } catch {}
    }
    this.#report();
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

/** What the publisher gave the message: the same for every session it is queued for. */
function encodePayloadMeta(m: NewStoredMessage): string {
  const meta: PayloadMeta = { t: m.receivedAtMs };
  if (m.expiresAtMs !== undefined) meta.x = m.expiresAtMs;
  if (m.publisher !== undefined) meta.p = m.publisher;
  if (m.headers !== undefined) meta.h = [...m.headers].map(([k, v]) => [k, [...v]]);
  if (m.properties !== undefined) meta.m = propertiesToJson(m.properties);
  return JSON.stringify(meta);
}

/** What differs per session (retain as published, subscription ids); null when neither. */
function encodeDeliveryMeta(m: NewStoredMessage): string | null {
  if (!m.retain && m.subscriptionIds === undefined) return null;
  const meta: DeliveryMeta = {};
  if (m.retain) meta.r = 1;
  if (m.subscriptionIds !== undefined) meta.s = [...m.subscriptionIds];
  return JSON.stringify(meta);
}

function decodeMessage(row: MessageRow): StoredMessage {
  const meta = JSON.parse(row.pmeta) as PayloadMeta;
  const delivery = row.meta === null ? {} : (JSON.parse(row.meta) as DeliveryMeta);
  const properties = meta.m === undefined ? undefined : propertiesFromJson(meta.m);
  return {
    id: row.id,
    subject: row.subject,
    payload: row.payload,
    qos: row.qos,
    retain: delivery.r === 1,
    receivedAtMs: meta.t,
    expiresAtMs: meta.x,
    publisher: meta.p,
    properties,
    headers: meta.h !== undefined ? new Map(meta.h) : undefined,
    subscriptionIds: delivery.s,
    packetId: row.packet_id ?? undefined,
    released: row.released === 1,
  };
}

function subRowBytes(clientId: string, filter: string): number {
  return SUBSCRIPTION_ROW_BYTES + Buffer.byteLength(clientId) + Buffer.byteLength(filter);
}

function encodeWill(w: StoredWill): string {
  const json: WillJson = { s: w.subject, b: w.payload.toString("base64"), q: w.qos, d: w.dueAtMs };
  if (w.retain) json.r = 1;
  if (w.properties !== undefined) json.m = propertiesToJson(w.properties);
  if (w.messageExpiryS !== undefined) json.x = w.messageExpiryS;
  if (w.owner !== undefined) json.o = w.owner;
  return JSON.stringify(json);
}

function decodeWill(text: string): StoredWill {
  const w = JSON.parse(text) as WillJson;
  return {
    subject: w.s,
    payload: Buffer.from(w.b, "base64"),
    qos: w.q,
    retain: w.r === 1,
    properties: w.m === undefined ? undefined : propertiesFromJson(w.m),
    messageExpiryS: w.x,
    owner: w.o,
    dueAtMs: w.d,
  };
}
