import type { Counter, Gauge, Metrics } from "../core/index.js";

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

/** Registers the MQTT part's counters and gauges. */
export function brokerMetrics(metrics: Metrics): BrokerMetrics {
  return {
    connections: metrics.gauge("leafgate_mqtt_connections", "Open MQTT connections"),
    accepted: metrics.counter("leafgate_mqtt_connections_accepted_total", "MQTT sockets accepted"),
    closed: metrics.counter(
      "leafgate_mqtt_connections_closed_total",
      "MQTT connections closed, by reason",
    ),
    protocolErrors: metrics.counter(
      "leafgate_mqtt_protocol_errors_total",
      "Connections closed for breaking the MQTT protocol, by violation",
    ),
    received: metrics.counter("leafgate_mqtt_messages_received_total", "PUBLISH received, by QoS"),
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
}
