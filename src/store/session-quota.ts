import type Database from "better-sqlite3";
import type { Gauge, Metrics } from "../core/index.js";

/**
 * The share of a capped database file (`buffer.max_file_size`, the database's part of it)
 * the session store may hold at most: a quarter, counted as the store counts (content;
 * pages and indexes take more), so the outbox always keeps most of the file for device
 * ingest.
 */
const SESSION_STORE_FILE_SHARE = 4;

/**
 * The session store's quota: `session_store_max_bytes`, within its share of the database
 * file when that is capped (`databaseBytes`: what `buffer.max_file_size` leaves the file
 * beside its WAL).
 */
export function sessionStoreQuota(maxBytes: number, databaseBytes: number | null): number {
  return databaseBytes === null
    ? maxBytes
    : Math.min(maxBytes, Math.floor(databaseBytes / SESSION_STORE_FILE_SHARE));
}

/**
 * What a session, subscription and inbound QoS 2 id row count for besides their text
 * columns (integers, the primary-key index entry), as SESSION_MESSAGE_ROW_BYTES does
 * for messages. The quota counts everything the store holds; only messages are refused
 * past it (sessions and subscriptions have their own bounds).
 */
export const SESSION_ROW_BYTES = 48;
export const SUBSCRIPTION_ROW_BYTES = 40;
export const INBOUND_ROW_BYTES = 24;

/** SQL of a session row's bytes, of a subscription row's and of an inbound id row's. */
export const SESSION_ROW_SQL = `${SESSION_ROW_BYTES} + length(CAST(client_id AS BLOB)) + coalesce(length(CAST(will AS BLOB)), 0) + coalesce(length(CAST(owner AS BLOB)), 0)`;
export const SUBSCRIPTION_ROW_SQL = `${SUBSCRIPTION_ROW_BYTES} + length(CAST(client_id AS BLOB)) + length(CAST(filter AS BLOB))`;
export const INBOUND_ROW_SQL = `${INBOUND_ROW_BYTES} + length(CAST(client_id AS BLOB))`;

/** SQL sums of what the store holds, by the same rules as its counters. */
const USAGE_SQL = {
  sessions: `SELECT coalesce(sum(${SESSION_ROW_SQL}), 0) AS bytes FROM mqtt_session`,
  subscriptions: `SELECT coalesce(sum(${SUBSCRIPTION_ROW_SQL}), 0) AS bytes FROM mqtt_subscription`,
  inbound: `SELECT coalesce(sum(${INBOUND_ROW_SQL}), 0) AS bytes FROM mqtt_inbound`,
  payloads: "SELECT coalesce(sum(size), 0) AS bytes FROM mqtt_payload",
  messages: "SELECT coalesce(sum(size), 0) AS bytes FROM mqtt_message",
} as const;

/** Bytes the session store holds, summed from its rows (what `SessionStore.bytes` equals). */
export function sessionStoreUsage(db: Database.Database): number {
  let bytes = 0;
  for (const sql of Object.values(USAGE_SQL))
    bytes += (db.prepare(sql).get() as { bytes: number }).bytes;
  return bytes;
}

/** Bytes of a message as `max_session_queued_bytes` counts them. */
export function queuedBytesOf(m: {
  readonly subject: string;
  readonly payload: Uint8Array;
}): number {
  return Buffer.byteLength(m.subject) + m.payload.length;
}

export function subRowBytes(clientId: string, filter: string): number {
  return SUBSCRIPTION_ROW_BYTES + Buffer.byteLength(clientId) + Buffer.byteLength(filter);
}

export function inboundRowBytes(clientId: string): number {
  return INBOUND_ROW_BYTES + Buffer.byteLength(clientId);
}

/**
 * What the session store holds, counted as it changes (committed and pending), so the
 * quota never needs the file's size; reported as leafgate_mqtt_session_store_{bytes,messages}.
 */
export class SessionStoreUsage {
  readonly maxBytes: number;
  #bytes = 0;
  #messages = 0;
  readonly #gauges: { bytes: Gauge; messages: Gauge } | undefined;

  constructor(maxBytes: number, metrics: Metrics | undefined) {
    this.maxBytes = maxBytes;
    if (metrics !== undefined) {
      this.#gauges = {
        bytes: metrics.gauge(
          "leafgate_mqtt_session_store_bytes",
          "Bytes of queued messages the persistent-session store holds (payloads once, plus a row per session)",
        ),
        messages: metrics.gauge(
          "leafgate_mqtt_session_store_messages",
          "Messages owed to persistent sessions (a row per session and message)",
        ),
      };
    }
  }

  /** Bytes held: payloads once, message rows, sessions, subscriptions and inbound ids. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Message rows held (one per session and message). */
  get messages(): number {
    return this.#messages;
  }

  /** Whether `bytes` more stay within the quota. */
  fits(bytes: number): boolean {
    return this.#bytes + bytes <= this.maxBytes;
  }

  /** Counts a change (negative: freed). */
  add(bytes: number, messages = 0): void {
    this.#bytes += bytes;
    this.#messages += messages;
    this.#report();
  }

  /** Counts what the store holds from its rows (at start, and after a failed batch). */
  recount(db: Database.Database): void {
    this.#bytes = sessionStoreUsage(db);
    this.#messages = (
      db.prepare("SELECT count(*) AS n FROM mqtt_message").get() as { n: number }
    ).n;
    this.#report();
  }

  #report(): void {
    this.#gauges?.bytes.set(this.#bytes);
    this.#gauges?.messages.set(this.#messages);
  }
}
