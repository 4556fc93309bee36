/** Where a message entered the gateway; the outbox never re-exports `upstream`. */
export type Origin = "mqtt" | "nats" | "serial" | "upstream" | "internal";

/** Message headers, NATS style: a name may carry several values. */
export type Headers = ReadonlyMap<string, readonly string[]>;

/**
 * Application message properties as MQTT 5 defines them (section 3.3.2.3); carried to
 * MQTT 5 subscribers unchanged and to the hub as headers.
 */
export interface MessageProperties {
  readonly payloadFormat?: 0 | 1;
  readonly contentType?: string;
  /** An MQTT topic name. */
  readonly responseTopic?: string;
  readonly correlationData?: Uint8Array;
  /** In the order they were published [MQTT-3.3.2-18]; a name may repeat. */
  readonly userProperties?: ReadonlyArray<readonly [string, string]>;
}

/** A message inside the gateway: always on a NATS-style subject. */
export interface Envelope {
  readonly subject: string;
  readonly payload: Uint8Array;
  readonly headers?: Headers;
  /** Wall-clock time the gateway accepted the message, ms since the epoch. */
  readonly receivedAtMs: number;
  readonly origin: Origin;
  /** MQTT QoS the message was published with (0 for other origins). */
  readonly qos: 0 | 1 | 2;
  readonly retain?: boolean;
  readonly properties?: MessageProperties;
  /** Past this wall-clock time (ms) the message is no longer delivered (MQTT 5 expiry). */
  readonly expiresAtMs?: number;
  /** The MQTT client id that published it, for subscriptions with No Local. */
  readonly publisher?: string;
  /**
   * A request's reply subject (a NATS PUB's reply-to, or one `Replies` minted). An MQTT 5
   * request carries `properties.responseTopic` instead: `Replies.replyTo` reads either.
   */
  readonly reply?: string;
  /**
   * Set only on a message that crossed into another account through a stream import: the
   * account it was published in. Bridges never carry such a message further, so imports
   * make no chains and no loops (see `AccountSpace`).
   */
  readonly crossedFrom?: string;
}
