import type { Bus, Counter, Gauge, Logger, Metrics } from "../core/index.js";
import type { RetainedStore } from "../store/index.js";
import { Authenticator } from "./auth.js";
import { Connection } from "./connection.js";
import type { Transport, TransportHandler } from "./transport.js";

export interface BrokerOptions {
  /** Keepalive ceiling in seconds; longer requests are held to it. */
  readonly maxKeepaliveS: number;
  /** A socket that sends no CONNECT within this is closed. */
  readonly connectTimeoutMs: number;
  readonly maxPacketSize: number;
  readonly allowAnonymous: boolean;
  /** Outbound QoS 1 messages awaiting PUBACK per client. */
  readonly maxInflight: number;
  /** Outbound QoS 1 messages queued behind a full inflight window per client. */
  readonly maxQueued: number;
  /** Outbound QoS 0 messages are dropped while a client has this much unsent. */
  readonly maxWriteBufferBytes: number;
  /** Durable commits a client may have pending before its socket is paused. */
  readonly maxPendingCommits: number;
}

export const DEFAULT_BROKER_OPTIONS: BrokerOptions = {
  maxKeepaliveS: 60,
  connectTimeoutMs: 10_000,
  maxPacketSize: 1024 * 1024,
  allowAnonymous: true,
  maxInflight: 100,
  maxQueued: 1000,
  maxWriteBufferBytes: 1024 * 1024,
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
}

/** At most this many protocol-error lines per window; the rest are counted, then summarised. */
const PROTOCOL_ERROR_LOG_BURST = 10;
const PROTOCOL_ERROR_LOG_WINDOW_MS = 10_000;

/** Shared state of every MQTT connection: the bus, options and the client-id table. */
export class Broker {
  readonly bus: Bus;
  readonly options: BrokerOptions;
  readonly log: Logger;
  readonly metrics: BrokerMetrics;
  readonly #connections = new Set<Connection>();
  readonly #byClientId = new Map<string, Connection>();
  #nextAnonymousId = 1;
  #logWindowStartMs = 0;
  #loggedInWindow = 0;
  #suppressed = 0;

  /** Retained messages; absent, the retain flag is ignored (unit tests without a store). */
  readonly retained: RetainedStore | undefined;
  readonly auth: Authenticator;

  constructor(
    bus: Bus,
    options: BrokerOptions,
    log: Logger,
    metrics: Metrics,
    retained?: RetainedStore,
    auth?: Authenticator,
  ) {
    this.bus = bus;
    this.retained = retained;
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
        "CONNECTs refused, by CONNACK return code",
      ),
      denied: metrics.counter(
        "leafgate_mqtt_denied_total",
        "PUBLISH and SUBSCRIBE refused by permissions, by kind",
      ),
    };
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
    const now = Date.now();
    if (now - this.#logWindowStartMs >= PROTOCOL_ERROR_LOG_WINDOW_MS) {
      if (this.#suppressed > 0) {
        this.log.warn(
          { suppressed: this.#suppressed },
          "more mqtt protocol errors were not logged",
        );
      }
      this.#logWindowStartMs = now;
      this.#loggedInWindow = 0;
      this.#suppressed = 0;
    }
    if (this.#loggedInWindow++ < PROTOCOL_ERROR_LOG_BURST) this.log.warn(fields, msg);
    else this.#suppressed++;
  }

  /** Binds `clientId` to `connection`, closing an older holder [MQTT-3.1.4-2]. */
  claimClientId(clientId: string, connection: Connection): void {
    const previous = this.#byClientId.get(clientId);
    this.#byClientId.set(clientId, connection);
    if (previous !== undefined && previous !== connection) previous.close("taken-over");
  }

  /** A unique id for a client that sent an empty one with clean session [MQTT-3.1.3-6]. */
  assignClientId(): string {
    return `leafgate-${process.pid}-${this.#nextAnonymousId++}`;
  }

  /** Called by a connection once its transport is gone. */
  forget(connection: Connection): void {
    this.#connections.delete(connection);
    const id = connection.clientId;
    if (id !== undefined && this.#byClientId.get(id) === connection) this.#byClientId.delete(id);
    this.metrics.connections.set(this.#connections.size);
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  /** Closes every connection; pending commits still settle first (see Connection.close). */
  async closeAll(reason: string): Promise<void> {
    await Promise.all([...this.#connections].map((c) => c.closeAndWait(reason)));
  }
}
