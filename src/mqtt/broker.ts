import type { Bus, Counter, Envelope, Gauge, Logger, Metrics } from "../core/index.js";
import { errorMessage } from "../core/index.js";
import type { RetainedStore, SessionStore } from "../store/index.js";
import { Authenticator } from "./auth.js";
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
  /** Longest an offline session is kept (3.1.1 persistent sessions, capped MQTT 5 ones). */
  readonly maxSessionExpiryMs: number;
  /** Topic aliases an MQTT 5 client may set (CONNACK Topic Alias Maximum). */
  readonly topicAliasMaximum: number;
  /** Connected clients at most; 0 = no limit. */
  readonly maxConnections: number;
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
}

export const DEFAULT_BROKER_OPTIONS: BrokerOptions = {
  maxKeepaliveS: 60,
  connectTimeoutMs: 10_000,
  maxPacketSize: 1024 * 1024,
  allowAnonymous: true,
  maxInflight: 1000,
  maxQueued: 1000,
  maxSessionExpiryMs: 7 * 24 * 3600 * 1000,
  topicAliasMaximum: 64,
  maxConnections: 1000,
  maxOutboundBytes: 8 * 1024 * 1024,
  receiveMaximum: 100,
  maxPendingCommits: 4096,
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
  readonly denied: Counter;
  readonly sessions: Gauge;
  readonly slowConsumers: Counter;
}

/** At most this many lines of one kind per window; the rest are counted, then summarised. */
const LOG_BURST = 10;
const LOG_WINDOW_MS = 10_000;

/** Warnings a flood of bad clients could repeat: a burst per window, then a summary. */
class LimitedWarnings {
  readonly #log: Logger;
  readonly #summary: string;
  #windowStartMs = 0;
  #loggedInWindow = 0;
  #suppressed = 0;

  constructor(log: Logger, summary: string) {
    this.#log = log;
    this.#summary = summary;
  }

  warn(fields: Record<string, unknown>, msg: string): void {
    const now = Date.now();
    if (now - this.#windowStartMs >= LOG_WINDOW_MS) {
      if (this.#suppressed > 0) this.#log.warn({ suppressed: this.#suppressed }, this.#summary);
      this.#windowStartMs = now;
      this.#loggedInWindow = 0;
      this.#suppressed = 0;
    }
    if (this.#loggedInWindow++ < LOG_BURST) this.#log.warn(fields, msg);
    else this.#suppressed++;
  }
}

/** Shared state of every MQTT connection: the bus, options and the client-id table. */
export class Broker {
  readonly bus: Bus;
  readonly options: BrokerOptions;
  readonly log: Logger;
  readonly metrics: BrokerMetrics;
  readonly #connections = new Set<Connection>();
  readonly #sessions = new Map<string, Session>();
  #nextAnonymousId = 1;
  readonly #protocolErrorLog: LimitedWarnings;
  readonly #slowConsumerLog: LimitedWarnings;

  /** Retained messages; absent, the retain flag is ignored (unit tests without a store). */
  readonly retained: RetainedStore | undefined;
  /** Persistent sessions; absent, sessions last only while the process does. */
  readonly sessionStore: SessionStore | undefined;
  readonly auth: Authenticator;

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
    this.#protocolErrorLog = new LimitedWarnings(log, "more mqtt protocol errors were not logged");
    this.#slowConsumerLog = new LimitedWarnings(log, "more mqtt slow consumers were not logged");
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
        "CONNECTs refused, by CONNACK return code",
      ),
      denied: metrics.counter(
        "leafgate_mqtt_denied_total",
        "PUBLISH and SUBSCRIBE refused by permissions, by kind",
      ),
      sessions: metrics.gauge("leafgate_mqtt_sessions", "MQTT sessions, connected or not"),
      slowConsumers: metrics.counter(
        "leafgate_mqtt_slow_consumers_total",
        "MQTT connections cut because the client did not read what was sent to it",
      ),
    };
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
    for (const stored of store.loadAll()) {
      const since = stored.disconnectedAtMs ?? nowMs;
      if (since + stored.expiryMs <= nowMs) {
        if (stored.will !== undefined) {
          const { dueAtMs: _, ...will } = stored.will;
          wills.push([stored.clientId, { ...will, delayMs: 0 }]);
        }
        store.deleteSession(stored.clientId);
        expired++;
        continue;
      }
      this.#sessions.set(stored.clientId, Session.restore(this, stored, nowMs));
    }
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

  /** Starts the MQTT protocol on a freshly accepted transport. */
  accept(transport: Transport): TransportHandler {
    const connection = new Connection(this, transport);
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
    session.setExpiry(expiryMs);
    return { session, present };
  }

  /** Ends a session: gone from memory and from the store. */
  endSession(session: Session): void {
    if (this.#sessions.get(session.clientId) === session) {
      this.#sessions.delete(session.clientId);
      this.metrics.sessions.set(this.#sessions.size);
    }
    session.end();
    if (session.persistent) this.sessionStore?.deleteSession(session.clientId);
  }

  /** Publishes a will (now due) as if its client had published it. */
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
    if (message.retain === true) {
      try {
        this.retained?.set(message.subject, message.payload, message.qos, message.receivedAtMs);
      } catch (err) {
        this.log.warn(
          { subject: message.subject, err: errorMessage(err) },
          "retained will not stored",
        );
      }
    }
    this.metrics.wills.inc();
    this.bus.publish(message).catch((err) => {
      this.metrics.dropped.inc({ reason: "will-not-stored" });
      this.log.warn({ client: clientId, err: errorMessage(err) }, "will not stored");
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
