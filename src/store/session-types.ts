import type { MessageProperties } from "../core/index.js";

/** A stored subscription of a persistent MQTT session. */
export interface StoredSubscription {
  readonly filter: string;
  readonly qos: 0 | 1 | 2;
  readonly noLocal: boolean;
  readonly retainAsPublished: boolean;
  readonly retainHandling: 0 | 1 | 2;
  readonly subscriptionId: number | undefined;
}

/** A QoS 1/2 message owed to a persistent session: queued, or sent and not yet acked. */
export interface StoredMessage {
  readonly id: number;
  readonly subject: string;
  readonly payload: Buffer;
  readonly qos: 1 | 2;
  readonly retain: boolean;
  readonly receivedAtMs: number;
  readonly expiresAtMs: number | undefined;
  readonly publisher: string | undefined;
  readonly properties: MessageProperties | undefined;
  readonly headers: ReadonlyMap<string, readonly string[]> | undefined;
  readonly subscriptionIds: readonly number[] | undefined;
  /** Set once sent: resent with this id and DUP on reconnect [MQTT-4.4.0-1]. */
  readonly packetId: number | undefined;
  /** PUBREC came back: PUBREL is what is owed. */
  readonly released: boolean;
}

/** A will waiting for its MQTT 5 Will Delay Interval (part of the session's state). */
export interface StoredWill {
  readonly subject: string;
  readonly payload: Buffer;
  readonly qos: 0 | 1 | 2;
  readonly retain: boolean;
  readonly properties: MessageProperties | undefined;
  readonly messageExpiryS: number | undefined;
  /**
   * Whose will it is (a user name, '' for anonymous): it is published with that user's
   * permissions. Undefined in wills stored before owners were recorded.
   */
  readonly owner?: string | undefined;
  /** When it is to be published. */
  readonly dueAtMs: number;
}

export interface StoredSession {
  /** The account the session belongs to (`$G` for sessions stored before accounts). */
  readonly account: string;
  readonly clientId: string;
  /** Its user's name, '' for anonymous; undefined if stored before owners were recorded. */
  readonly owner: string | undefined;
  readonly expiryMs: number;
  /** When its connection went; undefined if it was connected when the gateway stopped. */
  readonly disconnectedAtMs: number | undefined;
  readonly subscriptions: StoredSubscription[];
  /** Inbound QoS 2 ids received and not yet released by PUBREL. */
  readonly awaitingRelease: number[];
  readonly will: StoredWill | undefined;
  /** Messages owed and not yet sent (they stay on disk until the session asks). */
  readonly queued: number;
  /** Their bytes as `max_session_queued_bytes` counts them (subject + payload). */
  readonly queuedBytes: number;
  /** Messages sent and not yet acknowledged (resent at the next connection). */
  readonly inflight: number;
}

/** A stored session with every message it is owed (tests and tools; the gateway loads lazily). */
export type StoredSessionWithMessages = StoredSession & { readonly messages: StoredMessage[] };

export type NewStoredMessage = Omit<StoredMessage, "id" | "packetId" | "released">;
