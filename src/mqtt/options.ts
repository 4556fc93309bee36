/** The MQTT part's limits, from the `mqtt:` section of the config (see gateway.ts). */
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
