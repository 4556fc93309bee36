import type { Bus, Counter, Envelope, Gauge, Logger, Metrics } from "../core/index.js";
import { errorMessage, Guard } from "../core/index.js";
import type { RetainedStore, SessionStore } from "../store/index.js";
import { type Admission, Admissions } from "./admission.js";
import { ANONYMOUS, Authenticator, type Permissions } from "./auth.js";
import { Connection } from "./connection.js";
import { propertiesToHeaders } from "./properties.js";
import { Session, type Will } from "./session.js";
import type { Transport, TransportHandler } from "./transport.js";

export interface BrokerOptions {
  /** Keepalive ceiling in seconds; longer requests are held to it. */
  readonly maxKeepaliveS: number;
  /** A socket that sends no CONNECT within this is closed. */
  readonly connectTimeoutMs: number;
  readonly maxPacketSize: number;
  readonly allowAnonymous: boolean;
  /** Outbound QoS 1/2 messages awaiting their ack per client. */
  readonly maxInflight: number;
  /** QoS 1/2 messages a session queues behind a full window or while offline. */
  readonly maxQueued: number;
  /** Their bytes (subject + payload) a session queues at most. */
  readonly maxSessionQueuedBytes: number;
  /** Persistent sessions kept, connected or not; a CONNECT that would make one more is refused. */
  readonly maxSessions: number;
  /** Subscriptions one session holds at most; SUBSCRIBE past it is refused per filter. */
  readonly maxSubscriptionsPerClient: number;
  /** Longest an offline session is kept (3.1.1 persistent sessions, capped MQTT 5 ones). */
  readonly maxSessionExpiryMs: number;
  /** Topic aliases an MQTT 5 client may set (CONNACK Topic Alias Maximum). */
  readonly topicAliasMaximum: number;
  /** Connected clients at most; 0 = no limit. */
  readonly maxConnections: number;
  /** Sockets that have not yet had their CONNECT accepted, at most; 0 = no limit. */
  readonly maxPendingConnections: number;
  /** The first packet (CONNECT) is refused from its fixed header above this many bytes. */
  readonly maxConnectSize: number;
  /** Sockets one source address may hold, pending or not; 0 = no limit. */
  readonly maxConnectionsPerAddress: number;
  /**
   * Unsent bytes per connection. From an eighth of it on, reading from the client pauses,
   * QoS 0 deliveries are dropped and QoS 1/2 ones wait in the session; past it the client
   * is cut as a slow consumer.
   */
  readonly maxOutboundBytes: number;
  /**
   * MQTT 5 Receive Maximum announced in CONNACK: inbound QoS 1/2 PUBLISHes a client may
   * have unanswered (no PUBACK / PUBCOMP yet) [MQTT-3.3.4-7].
   */
  readonly receiveMaximum: number;
  /**
   * Durable commits a client may have pending before its socket is paused (the bound on
   * inbound work for MQTT 3.1.1 clients, which have no Receive Maximum).
   */
  readonly maxPendingCommits: number;
  /** Longest topic or filter in UTF-8 bytes (`$share/<group>/` aside; the group too). */
  readonly maxTopicBytes: number;
  /** Most levels in a topic or filter. */
  readonly maxTopicLevels: number;
}

export const DEFAULT_BROKER_OPTIONS: BrokerOptions = {
  maxKeepaliveS: 60,
  connectTimeoutMs: 10_000,
  maxPacketSize: 1024 * 1024,
  allowAnonymous: true,
  maxInflight: 1000,
  maxQueued: 1000,
  maxSessionQueuedBytes: 16 * 1024 * 1024,
  maxSessions: 10_000,
  maxSubscriptionsPerClient: 100,
  maxSessionExpiryMs: 7 * 24 * 3600 * 1000,
  topicAliasMaximum: 64,
  maxConnections: 1000,
  maxPendingConnections: 100,
  maxConnectSize: 64 * 1024,
  maxConnectionsPerAddress: 256,
  maxOutboundBytes: 8 * 1024 * 1024,
  receiveMaximum: 100,
  maxPendingCommits: 4096,
  maxTopicBytes: 1024,
  maxTopicLevels: 64,
};

/** Counters every connection reports into. */
export interface BrokerMetrics {
  readonly connections: Gauge;
  readonly accepted: Counter;
  readonly closed: Counter;
  readonly protocolErrors: Counter;
  readonly received: Counter;
  readonly sent: Counter;
  readonly dropped: Counter;
  readonly wills: Counter;
  readonly authFailures: Counter;
  readonly authLockouts: Counter;
  readonly denied: Counter;
  readonly subscriptionsRefused: Counter;
  readonly sessions: Gauge;
  readonly pending: Gauge;
  readonly refused: Counter;
  readonly persistentSessions: Gauge;
  readonly sessionsRefused: Counter;
  readonly slowConsumers: Counter;
}

/** Who publishes: whose permissions apply, and the client id it is published under. */
export interface Publisher {
  readonly clientId: string | undefined;
  readonly permissions: Permissions;
}

/** What `Broker.publish` did: refused, or handed to the bus (settles once stored). */
export type PublishOutcome =
  | { readonly ok: false; readonly reason: "not-authorized" }
  | { readonly ok: true; readonly committed: Promise<void> };

/** The kinds of publish, as counted in leafgate_mqtt_denied_total{kind}. */
export type PublishKind = "publish" | "will";

/** At most this many lines of a kind per window; the rest are counted, then summarised. */
const LOG_BURST = 10;
const LOG_WINDOW_MS = 10_000;

/**
 * Warnings that clients can cause, rate-limited per kind: a flood of bad clients must
 * not flood the log. What was held back is said in one line when the next window opens.
 */
class RateLimitedLog {
  readonly #log: Logger;
  readonly #what: string;
  #windowStartMs = 0;
  #logged = 0;
  #suppressed = 0;

  constructor(log: Logger, what: string) {
    this.#log = log;
    this.#what = what;
  }

  warn(fields: Record<string, unknown>, msg: string): void {
    const now = Date.now();
    if (now - this.#windowStartMs >= LOG_WINDOW_MS) {
      if (this.#suppressed > 0) {
        this.#log.warn({ suppressed: this.#suppressed }, `more ${this.#what} were not logged`);
      }
      this.#windowStartMs = now;
      this.#logged = 0;
      this.#suppressed = 0;
    }
    if (this.#logged++ < LOG_BURST) this.#log.warn(fields, msg);
    else this.#suppressed++;
  }
}

/** Client-chosen text (ids, user names) is cut to this in logs. */
const MAX_LOGGED_CLIENT_TEXT = 64;

/** A client-chosen string for a log line: at most MAX_LOGGED_CLIENT_TEXT characters. */
export function clip(text: string | undefined): string | undefined {
  if (text === undefined || text.length <= MAX_LOGGED_CLIENT_TEXT) return text;
  return `${text.slice(0, MAX_LOGGED_CLIENT_TEXT)}…`;
}

/** The address part of `host:port` (`::ffff:` of IPv4-mapped addresses taken off). */
export function sourceAddress(remote: string): string {
  const at = remote.lastIndexOf(":");
  const host = at > 0 ? remote.slice(0, at) : remote;
  return host.startsWith("::ffff:") && host.includes(".") ? host.slice(7) : host;
}

/**
 * A bound that refuses (max sessions, a full session store…) logs at most one line per
 * interval, with how many were refused since the last; every refusal is counted anyway.
 * An attacker hitting a bound thousands of times a second must not fill the log.
 */
const LIMIT_LOG_INTERVAL_MS = 10_000;

/** The bounds whose refusals are logged rate-limited (fixed keys: the map stays small). */
type LimitKey = "max-sessions" | "session-store-full" | "max-subscriptions-per-client";

/** Shared state of every MQTT connection: the bus, options and the client-id table. */
export class Broker {
  readonly bus: Bus;
  readonly options: BrokerOptions;
  readonly log: Logger;
  readonly metrics: BrokerMetrics;
  readonly #connections = new Set<Connection>();
  readonly #sessions = new Map<string, Session>();
  readonly #admissions = new WeakMap<Connection, Admission>();
  /** Sockets by source address, and those still before CONNECT (see admission.ts). */
  readonly admissions: Admissions;
  #nextAnonymousId = 1;
  readonly #protocolErrorLog: RateLimitedLog;
  /** CONNECTs refused (bad password, not authorized, limits) and denied wills. */
  readonly refusalLog: RateLimitedLog;
  /** Addresses locked out after failed logins: apart, so refusals cannot crowd it out. */
  readonly lockoutLog: RateLimitedLog;
  readonly #slowConsumerLog: RateLimitedLog;
  /** Sessions in #sessions that are persistent (expiry > 0): what max_sessions bounds. */
  #persistent = 0;
  readonly #limitLogs = new Map<LimitKey, { lastMs: number; suppressed: number }>();

  /** Retained messages; absent, the retain flag is ignored (unit tests without a store). */
  readonly retained: RetainedStore | undefined;
  /** Persistent sessions; absent, sessions last only while the process does. */
  readonly sessionStore: SessionStore | undefined;
  readonly auth: Authenticator;
  /** Every timer and socket callback of the MQTT part runs under it (see Guard). */
  readonly guard: Guard;

  constructor(
    bus: Bus,
    options: BrokerOptions,
    log: Logger,
    metrics: Metrics,
    retained?: RetainedStore,
    auth?: Authenticator,
    sessionStore?: SessionStore,
  ) {
    this.bus = bus;
    this.retained = retained;
    this.sessionStore = sessionStore;
    this.auth =
      auth ??
      new Authenticator({
        users: [],
        defaultPermissions: {
          publish: { allow: [">"], deny: [] },
          subscribe: { allow: [">"], deny: [] },
        },
        allowAnonymous: options.allowAnonymous,
      });
    this.options = options;
    this.log = log;
    this.metrics = {
      connections: metrics.gauge("leafgate_mqtt_connections", "Open MQTT connections"),
      accepted: metrics.counter(
        "leafgate_mqtt_connections_accepted_total",
        "MQTT sockets accepted",
      ),
      closed: metrics.counter(
        "leafgate_mqtt_connections_closed_total",
        "MQTT connections closed, by reason",
      ),
      protocolErrors: metrics.counter(
        "leafgate_mqtt_protocol_errors_total",
        "Connections closed for breaking the MQTT protocol, by violation",
      ),
      received: metrics.counter(
        "leafgate_mqtt_messages_received_total",
        "PUBLISH received, by QoS",
      ),
      sent: metrics.counter("leafgate_mqtt_messages_sent_total", "PUBLISH sent to subscribers"),
      dropped: metrics.counter(
        "leafgate_mqtt_messages_dropped_total",
        "Messages not delivered or not accepted, by reason",
      ),
      wills: metrics.counter("leafgate_mqtt_wills_published_total", "Wills published"),
      authFailures: metrics.counter(
        "leafgate_mqtt_auth_failures_total",
        "CONNECTs refused after their credentials or authorization were checked, by CONNACK return code",
      ),
      authLockouts: metrics.counter(
        "leafgate_mqtt_auth_lockouts_total",
        "CONNECTs refused without a password check: their source address had too many failed logins",
      ),
      denied: metrics.counter(
        "leafgate_mqtt_denied_total",
        "PUBLISH and SUBSCRIBE refused by permissions, by kind",
      ),
      subscriptionsRefused: metrics.counter(
        "leafgate_mqtt_subscriptions_refused_total",
        "SUBSCRIBE and UNSUBSCRIBE filters refused while the connection carries on, by reason",
      ),
      sessions: metrics.gauge("leafgate_mqtt_sessions", "MQTT sessions, connected or not"),
      pending: metrics.gauge(
        "leafgate_mqtt_pending_connections",
        "Sockets accepted whose CONNECT has not been accepted yet",
      ),
      refused: metrics.counter(
        "leafgate_mqtt_connections_refused_total",
        "Sockets closed at accept, or while pending to make room, by reason",
      ),
      persistentSessions: metrics.gauge(
        "leafgate_mqtt_persistent_sessions",
        "Persistent MQTT sessions, connected or not (bounded by mqtt.max_sessions)",
      ),
      sessionsRefused: metrics.counter(
        "leafgate_mqtt_sessions_refused_total",
        "CONNECTs refused because they would make one more persistent session than allowed, by reason",
      ),
      slowConsumers: metrics.counter(
        "leafgate_mqtt_slow_consumers_total",
        "MQTT connections cut because the client did not read what was sent to it",
      ),
    };
    this.#protocolErrorLog = new RateLimitedLog(log, "mqtt protocol errors");
    this.refusalLog = new RateLimitedLog(log, "mqtt refusals");
    this.lockoutLog = new RateLimitedLog(log, "mqtt lockouts");
    this.#slowConsumerLog = new RateLimitedLog(log, "mqtt slow consumers");
    this.admissions = new Admissions(
      {
        maxPending: options.maxPendingConnections,
        maxPerAddress: options.maxConnectionsPerAddress,
      },
      {
        refused: (reason) => this.metrics.refused.inc({ reason }),
        pending: (count) => this.metrics.pending.set(count),
      },
    );
    this.guard = new Guard(log, metrics);
  }

  /**
   * Brings back the persistent sessions of the last run; expired ones are dropped, and a
   * will one still held is published: it was due when the session ended [MQTT-3.1.3-9].
   */
  restoreSessions(nowMs = Date.now()): void {
    const store = this.sessionStore;
    if (store === undefined) return;
    let expired = 0;
    const wills: [string, Will][] = [];
    // Metadata and subscriptions only: a session's messages are read when it connects.
    for (const stored of store.loadSessions()) {
      const since = stored.disconnectedAtMs ?? nowMs;
      if (since + stored.expiryMs <= nowMs) {
        if (stored.will !== undefined) {
          const { dueAtMs: _, ...will } = stored.will;
          wills.push([stored.clientId, { ...will, owner: will.owner ?? stored.owner, delayMs: 0 }]);
        }
        store.deleteSession(stored.clientId);
        expired++;
        continue;
      }
      this.#sessions.set(stored.clientId, Session.restore(this, stored, nowMs));
      this.#persistent++;
    }
    this.metrics.persistentSessions.set(this.#persistent);
    // Once every session is back, so that those subscribed get them.
    for (const [clientId, will] of wills) this.publishWill(clientId, will);
    this.metrics.sessions.set(this.#sessions.size);
    if (this.#sessions.size > 0 || expired > 0) {
      this.log.info(
        { sessions: this.#sessions.size, expired },
        "mqtt persistent sessions restored",
      );
    }
  }

  /**
   * Starts the MQTT protocol on a freshly accepted transport; `admission` is the place
   * its socket took when it was accepted (see `admissions`).
   */
  accept(transport: Transport, admission?: Admission): TransportHandler {
    const connection = new Connection(this, transport);
    if (admission !== undefined) this.#admissions.set(connection, admission);
    this.#connections.add(connection);
    this.metrics.accepted.inc();
    this.metrics.connections.set(this.#connections.size);
    return connection;
  }

  /**
   * Logs a protocol error, rate-limited: a flood of bad clients must not flood the log.
   * Every error is still counted in leafgate_mqtt_protocol_errors_total.
   */
  logProtocolError(fields: Record<string, unknown>, msg: string): void {
    this.#protocolErrorLog.warn(fields, msg);
  }

  /** Logs a slow consumer's cut (once per connection), rate-limited like protocol errors. */
  logSlowConsumer(fields: Record<string, unknown>, msg: string): void {
    this.#slowConsumerLog.warn(fields, msg);
  }

  /** The connection's CONNECT was accepted: its socket no longer counts as pending. */
  established(connection: Connection): void {
    this.#admissions.get(connection)?.established();
  }

  /**
   * Whether `owner` (a user name, or ANONYMOUS) may have the session of `clientId`: a
   * session belongs to the user who made it. A session stored before owners were
   * recorded belongs to whoever resumes it first.
   */
  mayTakeSession(clientId: string, owner: string): boolean {
    const held = this.#sessions.get(clientId)?.owner;
    return held === undefined || held === owner;
  }

  /**
   * Logs that a bound refused something, at most once per LIMIT_LOG_INTERVAL_MS per
   * bound, with the number refused meanwhile. The fields are ours, never the client's.
   */
  logLimit(key: LimitKey, fields: Record<string, unknown>, msg: string): void {
    const now = Date.now();
    const state = this.#limitLogs.get(key);
    if (state !== undefined && now - state.lastMs < LIMIT_LOG_INTERVAL_MS) {
      state.suppressed++;
      return;
    }
    this.log.warn({ ...fields, refusedSinceLastLine: state?.suppressed ?? 0 }, msg);
    this.#limitLogs.set(key, { lastMs: now, suppressed: 0 });
  }

  /** A message for a persistent session was not stored: the store's quota is reached. */
  logSessionStoreFull(): void {
    this.logLimit(
      "session-store-full",
      {
        bytes: this.sessionStore?.bytes,
        quota: this.sessionStore?.maxBytes,
      },
      "mqtt session store full (mqtt.session_store_max_bytes): messages for waiting sessions are dropped",
    );
  }

  /**
   * True when a CONNECT for `clientId` asking `expiryMs` would make one more persistent
   * session than mqtt.max_sessions allows; counted and logged (rate-limited). Refusing
   * the newcomer, not evicting the oldest offline session, keeps what devices already
   * have: an attacker making sessions cannot throw a real device's queued messages away.
   * Resuming or replacing a persistent session, and clean sessions, are never refused.
   */
  sessionLimitReached(clientId: string, expiryMs: number): boolean {
    if (expiryMs === 0 || this.sessionStore === undefined) return false;
    if (this.#sessions.get(clientId)?.persistent === true) return false;
    if (this.#persistent < this.options.maxSessions) return false;
    this.metrics.sessionsRefused.inc({ reason: "max-sessions" });
    this.logLimit(
      "max-sessions",
      { maxSessions: this.options.maxSessions },
      "mqtt client refused: mqtt.max_sessions persistent sessions exist",
    );
    return true;
  }

  /** A session became persistent (+1) or stopped being so (-1). */
  persistenceChanged(delta: 1 | -1): void {
    this.#persistent += delta;
    this.metrics.persistentSessions.set(this.#persistent);
  }

  get persistentSessionCount(): number {
    return this.#persistent;
  }

  /**
   * Gives `connection` the session of `clientId` [MQTT-3.1.2-4]: an older connection with
   * the id is closed first [MQTT-3.1.4-2]; with clean start the old session ends and a
   * new one begins [MQTT-3.1.2-4]. Returns the session and whether it was resumed.
   */
  takeSession(
    clientId: string,
    connection: Connection,
    cleanStart: boolean,
    expiryMs: number,
    owner: string = ANONYMOUS,
  ): { session: Session; present: boolean } {
    let session = this.#sessions.get(clientId);
    const previous = session?.connection;
    if (previous !== undefined && previous !== connection) {
      previous.close("taken-over");
      session?.detach(previous);
      session = this.#sessions.get(clientId);
    }
    if (session !== undefined && cleanStart) {
      this.endSession(session);
      session = undefined;
    }
    const present = session !== undefined;
    if (session === undefined) {
      session = new Session(this, clientId, 0);
      this.#sessions.set(clientId, session);
      this.metrics.sessions.set(this.#sessions.size);
    }
    session.owner = owner;
    // The owner is written with the session's first row, so no stored session lacks one.
    if (expiryMs > 0) this.sessionStore?.saveOwner(clientId, owner, expiryMs);
    session.setExpiry(expiryMs);
    return { session, present };
  }

  /** Ends a session: gone from memory and from the store. */
  endSession(session: Session): void {
    if (this.#sessions.get(session.clientId) === session) {
      this.#sessions.delete(session.clientId);
      this.metrics.sessions.set(this.#sessions.size);
      if (session.persistent) this.persistenceChanged(-1);
    }
    session.end();
    if (session.persistent) this.sessionStore?.deleteSession(session.clientId);
  }

  /**
   * Every message a client publishes into the bus goes through here — PUBLISH, retained
   * PUBLISH, wills — so that none skips the permission check (issue 10: wills did). A
   * denied message is counted in leafgate_mqtt_denied_total{kind} and goes nowhere: not
   * to the bus, not into the retained store. An allowed retained one is stored as the
   * topic's retained message, then published.
   */
  publish(from: Publisher, message: Envelope, kind: PublishKind = "publish"): PublishOutcome {
    if (!from.permissions.canPublish(message.subject)) {
      this.metrics.denied.inc({ kind });
      return { ok: false, reason: "not-authorized" };
    }
    if (message.retain === true && this.retained !== undefined) {
      try {
        this.retained.set(
          message.subject,
          message.payload,
          message.qos,
          message.receivedAtMs,
          message.properties,
          message.expiresAtMs,
        );
      } catch (err) {
        this.log.warn(
          { subject: message.subject, err: errorMessage(err) },
          "retained message not stored",
        );
      }
    }
    return { ok: true, committed: this.bus.publish(message) };
  }

  /**
   * Publishes a will (now due) as if its client had published it, with the permissions
   * its owner has today: the will was checked at CONNECT, but a restart may have
   * narrowed them since, or removed the user.
   */
  publishWill(clientId: string, will: Will): void {
    const now = Date.now();
    const message: Envelope = {
      subject: will.subject,
      payload: will.payload,
      receivedAtMs: now,
      origin: "mqtt",
      qos: will.qos,
      retain: will.retain,
      publisher: clientId,
      ...(will.properties !== undefined
        ? { properties: will.properties, headers: propertiesToHeaders(will.properties) }
        : {}),
      ...(will.messageExpiryS !== undefined
        ? { expiresAtMs: now + will.messageExpiryS * 1000 }
        : {}),
    };
    const permissions = this.auth.permissionsFor(will.owner, clientId);
    const outcome = this.publish({ clientId, permissions }, message, "will");
    if (!outcome.ok) {
      this.refusalLog.warn(
        { client: clip(clientId), subject: clip(will.subject) },
        "mqtt will not published: its owner may not publish there (any more)",
      );
      return;
    }
    this.metrics.wills.inc();
    outcome.committed.catch((err) => {
      this.metrics.dropped.inc({ reason: "will-not-stored" });
      this.log.warn({ client: clip(clientId), err: errorMessage(err) }, "will not stored");
    });
  }

  /** Connections that completed CONNECT and hold a session. */
  get connectedCount(): number {
    let n = 0;
    for (const s of this.#sessions.values()) if (s.connection !== undefined) n++;
    return n;
  }

  session(clientId: string): Session | undefined {
    return this.#sessions.get(clientId);
  }

  /** A unique id for a client that sent an empty one with clean session [MQTT-3.1.3-6]. */
  assignClientId(): string {
    return `leafgate-${process.pid}-${this.#nextAnonymousId++}`;
  }

  /** Called by a connection once its transport is gone. */
  forget(connection: Connection): void {
    this.#connections.delete(connection);
    connection.session?.detach(connection);
    this.metrics.connections.set(this.#connections.size);
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  /** Bytes written to clients that they have not taken yet, over every connection. */
  get unsentBytes(): number {
    let bytes = 0;
    for (const c of this.#connections) bytes += c.transport.writableLength;
    return bytes;
  }

  /**
   * Closes every connection; pending commits still settle first (see Connection.close).
   * Persistent sessions stay in the store, as offline since now.
   */
  async closeAll(reason: string): Promise<void> {
    await Promise.all([...this.#connections].map((c) => c.closeAndWait(reason)));
    for (const session of this.#sessions.values()) session.suspend();
    this.sessionStore?.flush();
  }
}
