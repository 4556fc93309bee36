/**
 * What a connection needs from its byte stream. Listeners adapt sockets (TCP, later
 * TLS and WebSocket) to this; tests can drive a connection without a network.
 */
export interface Transport {
  /** Queues bytes; false when the peer is not keeping up (bytes are still queued). */
  write(bytes: Uint8Array): boolean;
  /** Flushes queued bytes, then closes. */
  end(): void;
  /** Closes at once, discarding queued bytes. */
  destroy(): void;
  pause(): void;
  resume(): void;
  /** Bytes queued and not yet taken by the peer. */
  readonly writableLength: number;
  /** `host:port` of the peer, for logs. */
  readonly remote: string;
}

/** What a transport tells its connection. */
export interface TransportHandler {
  onData(chunk: Buffer): void;
  onClose(error?: Error): void;
}
