/**
 * The one place the config's snake_case keys become the parts' camelCase options. Each
 * function returns plain values (config/ imports no part); gateway.ts hands them on, and
 * the parts' own option types check them there.
 */
import { accountsOf } from "./accounts.js";
import { type BufferConfig, GLOBAL_ACCOUNT, type LeafgateConfig } from "./schema.js";

/** The outbox: group commit and buffer limits, classes with their fallbacks resolved. */
export function outboxOptions(c: LeafgateConfig) {
  return {
    commitIntervalMs: c.buffer.commit_interval,
    commitMaxRows: c.buffer.commit_max_rows,
    limits: bufferLimits(c.buffer),
  };
}

/** One queue's limits: `buffer`'s, or an account's (`accountsOf(c)[i].buffer`). */
export function bufferLimits(b: BufferConfig) {
  return {
    maxBytes: b.max_bytes,
    maxMessages: b.max_messages,
    maxAgeMs: b.max_age,
    onFull: b.on_full,
    classes: b.classes.map((cls) => ({
      name: cls.name,
      subjects: cls.subjects,
      onFull: cls.on_full,
      maxBytes: cls.max_bytes,
      maxMessages: cls.max_messages,
      maxAgeMs: cls.max_age,
    })),
  };
}

/** The MQTT broker's limits and timers. */
export function brokerLimits(c: LeafgateConfig) {
  const m = c.mqtt;
  return {
    maxKeepaliveS: m.max_keepalive,
    connectTimeoutMs: m.connect_timeout,
    maxPacketSize: m.max_packet_size,
    allowAnonymous: m.allow_anonymous,
    maxConnections: m.max_connections,
    maxPendingConnections: m.max_pending_connections,
    maxConnectSize: m.max_connect_size,
    maxConnectionsPerAddress: m.max_connections_per_address,
    maxInflight: m.max_inflight,
    maxQueued: m.max_queued_messages,
    maxSessionQueuedBytes: m.max_session_queued_bytes,
    maxSessions: m.max_sessions,
    maxSubscriptionsPerClient: m.max_subscriptions_per_client,
    maxSessionExpiryMs: m.max_session_expiry,
    topicAliasMaximum: m.topic_alias_maximum,
    maxTopicBytes: m.max_topic_length,
    maxTopicLevels: m.max_topic_levels,
    maxOutboundBytes: m.max_outbound_bytes,
    receiveMaximum: m.receive_maximum,
  };
}

/** Retained messages kept, in count and bytes. */
export function retainedLimits(c: LeafgateConfig) {
  return { maxMessages: c.mqtt.max_retained_messages, maxBytes: c.mqtt.max_retained_bytes };
}

/**
 * Who may connect, and what each may publish and subscribe to: every account's users,
 * each with its account (`authorization.users` are the global account's).
 */
export function authorizationOptions(c: LeafgateConfig) {
  const a = c.authorization;
  return {
    users: accountsOf(c).flatMap(({ name, users }) =>
      name === GLOBAL_ACCOUNT ? users : users.map((u) => ({ ...u, account: name })),
    ),
    defaultPermissions: a.default_permissions,
    allowAnonymous: c.mqtt.allow_anonymous,
    // What the hub sends us is the hub's to write (see compilePermissions): the local
    // subjects imports deliver on.
    hubOnly: c.upstream.import.map((i) => i.local),
    failedLoginsPerAddress: a.failed_logins_per_address,
    failedLoginWindowMs: a.failed_login_window,
    tokenHash: a.token,
  };
}

/** Each MQTT listener's address and transport. */
export function mqttListeners(c: LeafgateConfig) {
  return c.mqtt.listeners.map(({ host, port, tls, websocket }) => ({
    host,
    port,
    transport: {
      ...(tls !== undefined ? { tls } : {}),
      websocket,
      tcpKeepaliveMs: c.mqtt.tcp_keepalive,
    },
  }));
}

/** Each NATS connection's limits and timers (nats-server's names in the comments). */
export function natsConnectionOptions(c: LeafgateConfig) {
  const n = c.nats;
  return {
    maxPayloadBytes: n.max_payload, // max_payload
    maxControlLineBytes: n.max_control_line, // max_control_line
    maxOutboundBytes: n.max_outbound_bytes, // max_pending
    maxSubscriptions: n.max_subscriptions_per_client, // max_subscriptions
    pingIntervalMs: n.ping_interval, // ping_interval
    maxPingsOut: n.max_pings_out, // ping_max
    connectTimeoutMs: n.auth_timeout, // auth_timeout
  };
}

/** What each NATS listener admits. */
export function natsListenerLimits(c: LeafgateConfig) {
  const n = c.nats;
  return {
    maxConnections: n.max_connections,
    maxPendingConnections: n.max_pending_connections,
    maxConnectionsPerAddress: n.max_connections_per_address,
  };
}
