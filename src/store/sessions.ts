import type Database from "better-sqlite3";
import type { Guard, Metrics } from "../core/index.js";
import { DEFAULT_ACCOUNT } from "../core/index.js";
import {
  decodeSubscription,
  decodeWill,
  encodeSubscriptionOptions,
  encodeWill,
} from "./session-codec.js";
import { type AddedMessage, QueuedMessages } from "./session-messages.js";
import {
  INBOUND_ROW_SQL,
  inboundRowBytes,
  SESSION_ROW_SQL,
  SessionStoreUsage,
  SUBSCRIPTION_ROW_SQL,
  subRowBytes,
} from "./session-quota.js";
import type {
  NewStoredMessage,
  StoredMessage,
  StoredSession,
  StoredSessionWithMessages,
  StoredSubscription,
  StoredWill,
} from "./session-types.js";

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

/** The columns that name a session in every session table. */
interface StoredKey {
  readonly account: string;
  readonly client_id: string;
}

/** A session's key while loading: account names have no spaces, so it is unambiguous. */
function keyOf(row: StoredKey): string {
  return `${row.account} ${row.client_id}`;
}

/** A loaded session while its rows are gathered. */
type Loading = StoredSession & { queued: number; queuedBytes: number; inflight: number };

/**
 * Persistent MQTT sessions (section 4.1): subscriptions, queued and unacknowledged QoS 1
 * and 2 messages, and inbound QoS 2 ids, so that a restart loses none of them. This class
 * keeps the session rows; the messages are `QueuedMessages`' (batched, payloads stored
 * once) and the bytes `SessionStoreUsage`'s. How it fits together: docs/sessions-store.md.
 *
 * Sessions belong to an account (issue 13): a client id names a session within its
 * account only. This object is the global account's (`$G`); `forAccount(name)` gives
 * another account's, sharing the database, the batches and the quota.
 */
export class SessionStore {
  /** The account whose sessions the methods taking a client id read and write. */
  readonly account: string;
  readonly #views: Map<string, SessionStore>;
  readonly #db: Database.Database;
  readonly #onError: (err: unknown, what: string) => void;
  readonly #usage: SessionStoreUsage;
  readonly #messages: QueuedMessages;
  readonly #stmt: {
    upsertSession: Database.Statement;
    saveOwner: Database.Statement;
    saveWill: Database.Statement;
    deleteSession: Database.Statement[];
    sessionRestUsage: Database.Statement;
    sessionRowBytes: Database.Statement;
    hasSub: Database.Statement;
    upsertSub: Database.Statement;
    deleteSub: Database.Statement;
    addInbound: Database.Statement;
    deleteInbound: Database.Statement;
  };

  /**
   * `onError` hears of a write that failed (disk full, I/O error): the session goes on
   * in memory, and only what it would keep across a restart is at stake. `guard` runs the
   * deferred flush, which clients' packets schedule.
   */
  constructor(
    db: Database.Database,
    options: SessionStoreOptions = {},
    /** Internal (see forAccount): another account's view of `of`. */
    view?: { readonly of: SessionStore; readonly account: string },
  ) {
    if (view !== undefined) {
      const { of } = view;
      this.account = view.account;
      this.#views = of.#views;
      this.#db = of.#db;
      this.#onError = of.#onError;
      this.#usage = of.#usage;
      this.#messages = of.#messages;
      this.#stmt = of.#stmt;
      return;
    }
    this.account = DEFAULT_ACCOUNT;
    this.#views = new Map([[DEFAULT_ACCOUNT, this]]);
    this.#onError =
      options.onError ??
      ((err) => {
        throw err;
      });
    this.#db = db;
    this.#usage = new SessionStoreUsage(
      options.maxBytes ?? Number.POSITIVE_INFINITY,
      options.metrics,
    );
    this.#messages = new QueuedMessages(db, this.#usage, options.guard);
    this.#stmt = {
      upsertSession: db.prepare(
        "INSERT INTO mqtt_session (account, client_id, expiry_ms, disconnected_at_ms) VALUES (?, ?, ?, ?) " +
          "ON CONFLICT (account, client_id) DO UPDATE SET expiry_ms = excluded.expiry_ms, disconnected_at_ms = excluded.disconnected_at_ms",
      ),
      saveOwner: db.prepare(
        "INSERT INTO mqtt_session (account, client_id, expiry_ms, owner) VALUES (?, ?, ?, ?) " +
          "ON CONFLICT (account, client_id) DO UPDATE SET owner = excluded.owner",
      ),
      saveWill: db.prepare("UPDATE mqtt_session SET will = ? WHERE account = ? AND client_id = ?"),
      deleteSession: [
        db.prepare("DELETE FROM mqtt_session WHERE account = ? AND client_id = ?"),
        db.prepare("DELETE FROM mqtt_subscription WHERE account = ? AND client_id = ?"),
        db.prepare("DELETE FROM mqtt_inbound WHERE account = ? AND client_id = ?"),
      ],
      sessionRestUsage: db.prepare(
        `SELECT (SELECT coalesce(sum(${SUBSCRIPTION_ROW_SQL}), 0) FROM mqtt_subscription WHERE account = ? AND client_id = ?) + ` +
          `(SELECT coalesce(sum(${INBOUND_ROW_SQL}), 0) FROM mqtt_inbound WHERE account = ? AND client_id = ?) AS bytes`,
      ),
      sessionRowBytes: db.prepare(
        `SELECT ${SESSION_ROW_SQL} AS bytes FROM mqtt_session WHERE account = ? AND client_id = ?`,
      ),
      hasSub: db.prepare(
        "SELECT 1 FROM mqtt_subscription WHERE account = ? AND client_id = ? AND filter = ?",
      ),
      upsertSub: db.prepare(
        "INSERT INTO mqtt_subscription (account, client_id, filter, qos, options, subscription_id) VALUES (?, ?, ?, ?, ?, ?) " +
          "ON CONFLICT (account, client_id, filter) DO UPDATE SET qos = excluded.qos, options = excluded.options, subscription_id = excluded.subscription_id",
      ),
      deleteSub: db.prepare(
        "DELETE FROM mqtt_subscription WHERE account = ? AND client_id = ? AND filter = ?",
      ),
      addInbound: db.prepare(
        "INSERT OR IGNORE INTO mqtt_inbound (account, client_id, packet_id) VALUES (?, ?, ?)",
      ),
      deleteInbound: db.prepare(
        "DELETE FROM mqtt_inbound WHERE account = ? AND client_id = ? AND packet_id = ?",
      ),
    };
    this.#usage.recount(db);
  }

  /** The sessions of `account`: the same database, batches and quota. */
  forAccount(account: string): SessionStore {
    let view = this.#views.get(account);
    if (view === undefined) {
      view = new SessionStore(this.#db, {}, { of: this, account });
      this.#views.set(account, view);
    }
    return view;
  }

  /**
   * Bytes held: queued messages (payloads once, a row per session), sessions, their
   * subscriptions and inbound ids; what the quota is measured on.
   */
  get bytes(): number {
    return this.#usage.bytes;
  }

  /** Message rows held (one per session and message). */
  get messages(): number {
    return this.#usage.messages;
  }

  get maxBytes(): number {
    return this.#usage.maxBytes;
  }

  /**
   * Every stored session of every account, with its subscriptions, inbound ids and will,
   * and how many messages it is owed; not the messages themselves (see `loadInflight`,
   * `loadQueued`, on the session's account's store).
   */
  loadSessions(): StoredSession[] {
    this.flush();
    const sessions = new Map<string, Loading>();
    for (const row of this.#db
      .prepare(
        "SELECT account, client_id, expiry_ms, disconnected_at_ms, will, owner FROM mqtt_session",
      )
      .all() as {
      account: string;
      client_id: string;
      expiry_ms: number;
      disconnected_at_ms: number | null;
      will: string | null;
      owner: string | null;
    }[]) {
      sessions.set(keyOf(row), {
        account: row.account,
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
        "SELECT account, client_id, filter, qos, options, subscription_id FROM mqtt_subscription ORDER BY rowid",
      )
      .all() as (Parameters<typeof decodeSubscription>[0] & StoredKey)[]) {
      sessions.get(keyOf(row))?.subscriptions.push(decodeSubscription(row));
    }
    this.#countMessages(sessions);
    for (const row of this.#db
      .prepare("SELECT account, client_id, packet_id FROM mqtt_inbound")
      .all() as (StoredKey & { packet_id: number })[]) {
      sessions.get(keyOf(row))?.awaitingRelease.push(row.packet_id);
    }
    return [...sessions.values()];
  }

  /** Counts each session's messages from the rows' own columns: no payload is read. */
  #countMessages(sessions: Map<string, Loading>): void {
    for (const row of this.#db
      .prepare(
        "SELECT account, client_id, packet_id IS NOT NULL AS sent, count(*) AS n, sum(bytes) AS bytes " +
          "FROM mqtt_message GROUP BY account, client_id, sent",
      )
      .all() as (StoredKey & { sent: number; n: number; bytes: number })[]) {
      const s = sessions.get(keyOf(row));
      if (s === undefined) continue;
      if (row.sent === 1) s.inflight = row.n;
      else {
        s.queued = row.n;
        s.queuedBytes = row.bytes;
      }
    }
  }

  /** Every stored session with all its messages in order (for tests and tools). */
  loadAll(): StoredSessionWithMessages[] {
    return this.loadSessions().map((s) => {
      const store = this.forAccount(s.account);
      return {
        ...s,
        messages: [
          ...store.loadInflight(s.clientId),
          ...store.loadQueued(s.clientId, 0, Number.MAX_SAFE_INTEGER),
        ].sort((a, b) => a.id - b.id),
      };
    });
  }

  /** The session's messages sent and not acknowledged, in the order they were first sent. */
  loadInflight(clientId: string): StoredMessage[] {
    return this.#messages.loadInflight(this.account, clientId);
  }

  /** At most `limit` of the session's unsent messages after row `afterId`, in order. */
  loadQueued(clientId: string, afterId: number, limit: number): StoredMessage[] {
    return this.#messages.loadQueued(this.account, clientId, afterId, limit);
  }

  saveSession(clientId: string, expiryMs: number, disconnectedAtMs: number | undefined): void {
    this.#sessionWrite("save session", clientId, () =>
      this.#stmt.upsertSession.run(this.account, clientId, expiryMs, disconnectedAtMs ?? null),
    );
  }

  /**
   * Records whose session it is (a user name, '' for anonymous); creates the session's
   * row if it has none yet, so a stored session never lacks its owner.
   */
  saveOwner(clientId: string, owner: string, expiryMs: number): void {
    this.#sessionWrite("save session owner", clientId, () =>
      this.#stmt.saveOwner.run(this.account, clientId, expiryMs, owner),
    );
  }

  /** Records (or, with undefined, clears) the session's delayed will. */
  saveWill(clientId: string, will: StoredWill | undefined): void {
    this.#sessionWrite("save will", clientId, () =>
      this.#stmt.saveWill.run(will === undefined ? null : encodeWill(will), this.account, clientId),
    );
  }

  /** Deletes the session with everything it holds; payloads no other session names go too. */
  deleteSession(clientId: string): void {
    this.flush();
    this.#guard("delete session", () => {
      const freed = this.#db.transaction((): { bytes: number; n: number } => {
        const { account } = this;
        const rest = this.#stmt.sessionRestUsage.get(account, clientId, account, clientId) as {
          bytes: number;
        };
        const row = this.#sessionRowBytes(clientId) ?? 0;
        const messages = this.#messages.deleteSession(account, clientId);
        for (const s of this.#stmt.deleteSession) s.run(account, clientId);
        return { bytes: messages.bytes + rest.bytes + row, n: messages.n };
      })();
      this.#usage.add(-freed.bytes, -freed.n);
    });
  }

  #guard(what: string, write: () => unknown): void {
    try {
      write();
    } catch (err) {
      this.#onError(err, what);
    }
  }

  /** A session row's bytes (undefined: no row), before and after a write to it. */
  #sessionRowBytes(clientId: string): number | undefined {
    const row = this.#stmt.sessionRowBytes.get(this.account, clientId) as
      | { bytes: number }
      | undefined;
    return row?.bytes;
  }

  /** Runs a write to the session's row, counting how its bytes changed. */
  #sessionWrite(what: string, clientId: string, write: () => void): void {
    this.#guard(what, () => this.#measured(() => this.#sessionRowBytes(clientId), write));
  }

  /** Runs a write to a session or subscription row, counting how its bytes changed. */
  #measured(measure: () => number | undefined, write: () => void): void {
    const before = measure() ?? 0;
    write();
    this.#usage.add((measure() ?? 0) - before);
  }

  saveSubscription(clientId: string, s: StoredSubscription): void {
    const options = encodeSubscriptionOptions(s);
    this.#guard("save subscription", () =>
      this.#measured(
        () =>
          this.#stmt.hasSub.get(this.account, clientId, s.filter) === undefined
            ? 0
            : subRowBytes(clientId, s.filter),
        () =>
          this.#stmt.upsertSub.run(
            this.account,
            clientId,
            s.filter,
            s.qos,
            options,
            s.subscriptionId ?? null,
          ),
      ),
    );
  }

  deleteSubscription(clientId: string, filter: string): void {
    this.#guard("delete subscription", () => {
      if (this.#stmt.deleteSub.run(this.account, clientId, filter).changes > 0) {
        this.#usage.add(-subRowBytes(clientId, filter));
      }
    });
  }

  /**
   * Stores a message for a session; `committed` settles with the batch's transaction.
   * Messages added in one batch from the same `source` (the Envelope a publish fanned
   * out) share one stored payload.
   */
  add(clientId: string, m: NewStoredMessage, source?: object): AddedMessage {
    return this.#messages.add(this.account, clientId, m, source, false)!;
  }

  /** As `add`, unless the message would take the store past `maxBytes`: then undefined. */
  addIfRoom(clientId: string, m: NewStoredMessage, source?: object): AddedMessage | undefined {
    return this.#messages.add(this.account, clientId, m, source, true);
  }

  /** Records the packet id a stored message went out with, and whether PUBREC came back. */
  markSent(id: number, packetId: number, released: boolean): void {
    this.#messages.markSent(id, packetId, released);
  }

  remove(id: number): void {
    this.#messages.remove(id);
  }

  addAwaitingRelease(clientId: string, packetId: number): void {
    this.#guard("save inbound QoS 2 id", () => {
      if (this.#stmt.addInbound.run(this.account, clientId, packetId).changes > 0) {
        this.#usage.add(inboundRowBytes(clientId));
      }
    });
  }

  deleteAwaitingRelease(clientId: string, packetId: number): void {
    this.#guard("delete inbound QoS 2 id", () => {
      if (this.#stmt.deleteInbound.run(this.account, clientId, packetId).changes > 0) {
        this.#usage.add(-inboundRowBytes(clientId));
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
    this.#messages.afterCommit(fn);
  }

  /** Commits every pending write now. */
  flush(): void {
    this.#messages.flush();
  }
}
