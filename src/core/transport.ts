/**
 * What a connection (MQTT or NATS) needs from its byte stream. Listeners adapt sockets (TCP, later
 * TLS and WebSocket) to this; tests can drive a connection without a network.
 */
export interface Transport {
  /** Queues bytes; false when the peer is not keeping up (bytes are still queued). */
  write(bytes: Uint8Array): boolean;
  /**
   * Flushes queued bytes, then closes (destroyed after a deadline if the peer does not
   * take them). `readOn`: go on reading, and discarding, so that the peer's close is seen;
   * false for a peer that is not reading us: it must not push its backlog in meanwhile.
   */
  end(readOn?: boolean): void;
  /** Closes at once, discarding queued bytes. */
  destroy(): void;
  pause(): void;
  resume(): void;
  /**
   * Bytes queued and not yet taken by the peer's TCP stack: what a client that does not
   * read costs us in memory. Bounded by the connection (`mqtt.max_outbound_bytes`, NATS its outbound cap).
   */
  readonly writableLength: number;
  /** `host:port` of the peer, for logs. */
  readonly remote: string;
}

/** What a transport tells its connection. */
export interface TransportHandler {
  onData(chunk: Buffer): void;
  /** Every queued byte was taken by the peer (after `write` returned false). */
  onDrain(): void;
  onClose(error?: Error): void;
}
