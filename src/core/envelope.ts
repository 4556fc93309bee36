/** Where a message entered the gateway; the outbox never re-exports `upstream`. */
export type Origin = "mqtt" | "nats" | "serial" | "upstream" | "internal";

/** Message headers, NATS style: a name may carry several values. */
export type Headers = ReadonlyMap<string, readonly string[]>;

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
}
