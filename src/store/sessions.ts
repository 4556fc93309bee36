import type Database from "better-sqlite3";
import type { Guard, MessageProperties } from "../core/index.js";
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
  readonly messages: StoredMessage[];
  /** Inbound QoS 2 packet ids received and not yet released by PUBREL. */
  readonly awaitingRelease: number[];
  readonly will: StoredWill | undefined;
}

export type NewStoredMessage = Omit<StoredMessage, "id" | "packetId" | "released">;

type Op =
  | { kind: "insert"; id: number; clientId: string; m: NewStoredMessage }
  | { kind: "sent"; id: number; packetId: number; released: boolean }
  | { kind: "delete"; id: number };

interface MessageRow {
  id: number;
  client_id: string;
  subject: string;
  payload: Buffer;
  qos: 1 | 2;
  meta: string;
  packet_id: number | null;
  released: number;
}

/** The parts of a message that are rarely set, as one JSON column. */
interface Meta {
  r?: 1;
  t: number;
  x?: number;
  p?: string;
  s?: number[];
  h?: [string, string[]][];
  m?: PropertiesJson;
}

/**
 * Persistent MQTT sessions (section 4.1): subscriptions, queued and unacknowledged QoS 1
 * and 2 messages, and inbound QoS 2 ids, so that a restart loses none of them. Message
 * writes are batched into one transaction per turn of the event loop; `add` returns a
 * promise that settles when the row is committed, so a publisher's PUBACK can wait on it,
 * and `afterCommit` runs what must not go out before the batch is on disk.
 */
export class SessionStore {
  readonly #db: Database.Database;
  readonly #onError: (err: unknown, what: string) => void;
  readonly #ops: Op[] = [];
  #waiters: { resolve: () => void; reject: (err: unknown) => void }[] = [];
  #afterCommit: (() => void)[] = [];
  /** The callbacks of the batch just committed, while they run. */
  #draining: (() => void)[] | undefined;
  #immediate: NodeJS.Immediate | undefined;
  /** The deferred flush, under the guard when one is given (see `#schedule`). */
  readonly #flushLater: () => void;
  #nextId: number;
  readonly #stmt: {
    upsertSession: Database.Statement;
    saveOwner: Database.Statement;
    saveWill: Database.Statement;
    deleteSession: Database.Statement[];
    upsertSub: Database.Statement;
    deleteSub: Database.Statement;
    insertMessage: Database.Statement;
    sentMessage: Database.Statement;
    deleteMessage: Database.Statement;
    addInbound: Database.Statement;
    deleteInbound: Database.Statement;
  };
  readonly #apply: (ops: readonly Op[]) => void;

  /**
   * `onError` hears of a write that failed (disk full, I/O error): the session goes on
   * in memory, and only what it would keep across a restart is at stake. `guard` runs the
   * deferred flush, which clients' packets schedule.
   */
  constructor(
    db: Database.Database,
    options: { onError?: (err: unknown, what: string) => void; guard?: Guard } = {},
  ) {
    const flush = (): void => this.flush();
    this.#flushLater = options.guard?.wrap("mqtt.session-store-flush", flush) ?? flush;
    this.#onError =
      options.onError ??
      ((err) => {
        throw err;
      });
    this.#db = db;
    const max = db.prepare("SELECT max(id) AS id FROM mqtt_message").get() as { id: number | null };
    this.#nextId = (max.id ?? 0) + 1;
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
      upsertSub: db.prepare(
        "INSERT INTO mqtt_subscription (client_id, filter, qos, options, subscription_id) VALUES (?, ?, ?, ?, ?) " +
          "ON CONFLICT (client_id, filter) DO UPDATE SET qos = excluded.qos, options = excluded.options, subscription_id = excluded.subscription_id",
      ),
      deleteSub: db.prepare("DELETE FROM mqtt_subscription WHERE client_id = ? AND filter = ?"),
      insertMessage: db.prepare(
        "INSERT INTO mqtt_message (id, client_id, subject, payload, qos, meta) VALUES (?, ?, ?, ?, ?, ?)",
      ),
      sentMessage: db.prepare("UPDATE mqtt_message SET packet_id = ?, released = ? WHERE id = ?"),
      deleteMessage: db.prepare("DELETE FROM mqtt_message WHERE id = ?"),
      addInbound: db.prepare(
        "INSERT OR IGNORE INTO mqtt_inbound (client_id, packet_id) VALUES (?, ?)",
      ),
      deleteInbound: db.prepare("DELETE FROM mqtt_inbound WHERE client_id = ? AND packet_id = ?"),
    };
    this.#apply = db.transaction((ops: readonly Op[]) => {
      for (const op of ops) {
        if (op.kind === "insert") {
          this.#stmt.insertMessage.run(
            op.id,
            op.clientId,
            op.m.subject,
            op.m.payload,
            op.m.qos,
            encodeMeta(op.m),
          );
        } else if (op.kind === "sent") {
          this.#stmt.sentMessage.run(op.packetId, op.released ? 1 : 0, op.id);
        } else {
          this.#stmt.deleteMessage.run(op.id);
        }
      }
    });
  }

  /** Every stored session, with its subscriptions and messages in order. */
  loadAll(): StoredSession[] {
    this.flush();
    const sessions = new Map<string, StoredSession>();
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
        messages: [],
        awaitingRelease: [],
        will: row.will === null ? undefined : decodeWill(row.will),
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
    for (const row of this.#db
      .prepare(
        "SELECT id, client_id, subject, payload, qos, meta, packet_id, released FROM mqtt_message ORDER BY id",
      )
      .all() as MessageRow[]) {
      sessions.get(row.client_id)?.messages.push(decodeMessage(row));
    }
    for (const row of this.#db.prepare("SELECT client_id, packet_id FROM mqtt_inbound").all() as {
      client_id: string;
      packet_id: number;
    }[]) {
      sessions.get(row.client_id)?.awaitingRelease.push(row.packet_id);
    }
    return [...sessions.values()];
  }

  saveSession(clientId: string, expiryMs: number, disconnectedAtMs: number | undefined): void {
    this.#guard("save session", () => {
      this.#stmt.upsertSession.run(clientId, expiryMs, disconnectedAtMs ?? null);
    });
  }

  /**
   * Records whose session it is (a user name, '' for anonymous); creates the session's
   * row if it has none yet, so a stored session never lacks its owner.
   */
  saveOwner(clientId: string, owner: string, expiryMs: number): void {
    this.#guard("save session owner", () => {
      this.#stmt.saveOwner.run(clientId, expiryMs, owner);
    });
  }

  /** Records (or, with undefined, clears) the session's delayed will. */
  saveWill(clientId: string, will: StoredWill | undefined): void {
    this.#guard("save will", () => {
      this.#stmt.saveWill.run(will === undefined ? null : encodeWill(will), clientId);
    });
  }

  deleteSession(clientId: string): void {
    this.flush();
    this.#guard("delete session", () =>
      this.#db.transaction(() => {
        for (const s of this.#stmt.deleteSession) s.run(clientId);
      })(),
    );
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
      this.#stmt.upsertSub.run(clientId, s.filter, s.qos, options, s.subscriptionId ?? null),
    );
  }

  deleteSubscription(clientId: string, filter: string): void {
    this.#guard("delete subscription", () => {
      this.#stmt.deleteSub.run(clientId, filter);
    });
  }

  /** Stores a message for a session; `committed` settles with the batch's transaction. */
  add(clientId: string, m: NewStoredMessage): { id: number; committed: Promise<void> } {
    const id = this.#nextId++;
    this.#ops.push({ kind: "insert", id, clientId, m });
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
      this.#stmt.addInbound.run(clientId, packetId);
    });
  }

  deleteAwaitingRelease(clientId: string, packetId: number): void {
    this.#guard("delete inbound QoS 2 id", () => {
      this.#stmt.deleteInbound.run(clientId, packetId);
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
    const waiters = this.#waiters;
    this.#waiters = [];
    const after = this.#afterCommit;
    this.#afterCommit = [];
    let failure: { err: unknown } | undefined;
    try {
      this.#apply(ops);
    } catch (err) {
      failure = { err };
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

function encodeMeta(m: NewStoredMessage): string {
  const meta: Meta = { t: m.receivedAtMs };
  if (m.retain) meta.r = 1;
  if (m.expiresAtMs !== undefined) meta.x = m.expiresAtMs;
  if (m.publisher !== undefined) meta.p = m.publisher;
  if (m.subscriptionIds !== undefined) meta.s = [...m.subscriptionIds];
  if (m.headers !== undefined) meta.h = [...m.headers].map(([k, v]) => [k, [...v]]);
  if (m.properties !== undefined) meta.m = propertiesToJson(m.properties);
  return JSON.stringify(meta);
}

function decodeMessage(row: MessageRow): StoredMessage {
  const meta = JSON.parse(row.meta) as Meta;
  const properties = meta.m === undefined ? undefined : propertiesFromJson(meta.m);
  return {
    id: row.id,
    subject: row.subject,
    payload: row.payload,
    qos: row.qos,
    retain: meta.r === 1,
    receivedAtMs: meta.t,
    expiresAtMs: meta.x,
    publisher: meta.p,
    properties,
    headers: meta.h !== undefined ? new Map(meta.h) : undefined,
    subscriptionIds: meta.s,
    packetId: row.packet_id ?? undefined,
    released: row.released === 1,
  };
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
