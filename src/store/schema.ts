import type Database from "better-sqlite3";
import { pragma } from "./statements.js";

/** Bumped whenever the schema changes; `migrate` brings older files forward. */
const SCHEMA_VERSION = 7;

/**
 * What a queued-message row of the session store counts for besides its client id and
 * delivery options: its integer columns and its entry in the (client_id, id) index, about
 * as SQLite lays them out. `SessionStore` counts the same; kept here for the migration.
 */
export const SESSION_MESSAGE_ROW_BYTES = 48;

const SCHEMA_V1 = `
  CREATE TABLE IF NOT EXISTS outbox (
    -- AUTOINCREMENT: ids are never reused, even after the table empties; they are the
    -- message ids the hub deduplicates on.
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject TEXT NOT NULL,
    payload BLOB NOT NULL,
    headers TEXT,
    received_at_ms INTEGER NOT NULL
  );
  CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
`;

/** v2: priority classes. Each row records its class and the bytes it counts against limits. */
const SCHEMA_V2 = `
  ALTER TABLE outbox ADD COLUMN class TEXT NOT NULL DEFAULT 'default';
  ALTER TABLE outbox ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
  UPDATE outbox SET size = length(payload) + length(subject);
  CREATE INDEX outbox_class_id ON outbox (class, id);
`;

/** v3: MQTT retained messages, one per topic (kept as its subject). */
const SCHEMA_V3 = `
  CREATE TABLE retained (
    subject TEXT PRIMARY KEY,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL
  );
`;

/** v4: persistent MQTT sessions (subscriptions, owed messages, inbound QoS 2 ids). */
const SCHEMA_V4 = `
  CREATE TABLE mqtt_session (
    client_id TEXT PRIMARY KEY,
    expiry_ms INTEGER NOT NULL,
    disconnected_at_ms INTEGER,
    will TEXT
  );
  CREATE TABLE mqtt_subscription (
    client_id TEXT NOT NULL,
    filter TEXT NOT NULL,
    qos INTEGER NOT NULL,
    options INTEGER NOT NULL,
    subscription_id INTEGER,
    PRIMARY KEY (client_id, filter)
  );
  CREATE TABLE mqtt_message (
    id INTEGER PRIMARY KEY,
    client_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    meta TEXT NOT NULL,
    packet_id INTEGER,
    released INTEGER NOT NULL DEFAULT 0
  );
  CREATE INDEX mqtt_message_client ON mqtt_message (client_id, id);
  ALTER TABLE retained ADD COLUMN meta TEXT;
  CREATE TABLE mqtt_inbound (
    client_id TEXT NOT NULL,
    packet_id INTEGER NOT NULL,
    PRIMARY KEY (client_id, packet_id)
  );
`;

/**
 * v5: a queued message's payload stored once however many sessions it is queued for
 * (`mqtt_payload`, with its reference count), per-session rows that name it, and session
 * owners. Columns and the conversion of v4 rows: docs/sessions-store.md, "Schema v5".
 */
const SCHEMA_V5 = `
  CREATE TABLE mqtt_payload (
    id INTEGER PRIMARY KEY,
    subject TEXT NOT NULL,
    payload BLOB NOT NULL,
    meta TEXT NOT NULL,
    refs INTEGER NOT NULL,
    size INTEGER NOT NULL
  );
  CREATE TABLE mqtt_message_v5 (
    id INTEGER PRIMARY KEY,
    client_id TEXT NOT NULL,
    payload_id INTEGER NOT NULL,
    qos INTEGER NOT NULL,
    meta TEXT,
    packet_id INTEGER,
    released INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL,
    bytes INTEGER NOT NULL
  );
  INSERT INTO mqtt_payload (id, subject, payload, meta, refs, size)
    SELECT id, subject, payload, json_remove(meta, '$.r', '$.s'), 1,
      length(CAST(subject AS BLOB)) + length(payload) + length(CAST(json_remove(meta, '$.r', '$.s') AS BLOB))
    FROM mqtt_message;
  INSERT INTO mqtt_message_v5 (id, client_id, payload_id, qos, meta, packet_id, released, size, bytes)
    SELECT id, client_id, id, qos, d, packet_id, released,
      ${SESSION_MESSAGE_ROW_BYTES} + length(CAST(client_id AS BLOB)) + coalesce(length(CAST(d AS BLOB)), 0),
      length(CAST(subject AS BLOB)) + length(payload)
    FROM (
      SELECT *, CASE WHEN json_type(meta, '$.r') IS NULL AND json_type(meta, '$.s') IS NULL
        THEN NULL ELSE json_remove(meta, '$.t', '$.x', '$.p', '$.h', '$.m') END AS d
      FROM mqtt_message
    );
  DROP TABLE mqtt_message;
  ALTER TABLE mqtt_message_v5 RENAME TO mqtt_message;
  CREATE INDEX mqtt_message_client ON mqtt_message (client_id, id);
  -- Payloads no row names any more, found without a scan (deleted in the same transaction).
  CREATE INDEX mqtt_payload_unreferenced ON mqtt_payload (id) WHERE refs <= 0;
  ALTER TABLE mqtt_session ADD COLUMN owner TEXT;
`;

/**
 * v6: durable imports. Per JetStream consumer, the last stream sequence delivered onto the
 * bus, so a redelivery is acked without delivering again; it belongs to the stream as it
 * was created then (a stream deleted and made again numbers from 1 anew).
 */
const SCHEMA_V6 = `
  CREATE TABLE import_cursor (
    consumer TEXT PRIMARY KEY,
    stream TEXT NOT NULL,
    stream_created TEXT NOT NULL,
    last_seq INTEGER NOT NULL
  );
`;

/**
 * v7: accounts (issue 13). Each outbox row belongs to an account's queue, read, evicted
 * and expired by (account, id) and (account, class, id). Retained messages and MQTT
 * sessions belong to an account too: the same topic, or the same client id, in two
 * accounts is two rows. Rows written before are the global account's (`$G`). SQLite
 * cannot change a primary key in place, so the keyed tables are copied into new ones;
 * queued messages only gain the column.
 */
const SCHEMA_V7 = `
  ALTER TABLE outbox ADD COLUMN account TEXT NOT NULL DEFAULT '$G';
  DROP INDEX outbox_class_id;
  CREATE INDEX outbox_account_id ON outbox (account, id);
  CREATE INDEX outbox_account_class_id ON outbox (account, class, id);
  CREATE TABLE retained_v7 (
    account TEXT NOT NULL,
    subject TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL,
    meta TEXT,
    PRIMARY KEY (account, subject)
  );
  INSERT INTO retained_v7 (account, subject, payload, qos, received_at_ms, meta)
    SELECT '$G', subject, payload, qos, received_at_ms, meta FROM retained;
  DROP TABLE retained;
  ALTER TABLE retained_v7 RENAME TO retained;
  CREATE TABLE mqtt_session_v7 (
    account TEXT NOT NULL,
    client_id TEXT NOT NULL,
    expiry_ms INTEGER NOT NULL,
    disconnected_at_ms INTEGER,
    will TEXT,
    owner TEXT,
    PRIMARY KEY (account, client_id)
  );
  INSERT INTO mqtt_session_v7 (account, client_id, expiry_ms, disconnected_at_ms, will, owner)
    SELECT '$G', client_id, expiry_ms, disconnected_at_ms, will, owner FROM mqtt_session;
  DROP TABLE mqtt_session;
  ALTER TABLE mqtt_session_v7 RENAME TO mqtt_session;
  CREATE TABLE mqtt_subscription_v7 (
    account TEXT NOT NULL,
    client_id TEXT NOT NULL,
    filter TEXT NOT NULL,
    qos INTEGER NOT NULL,
    options INTEGER NOT NULL,
    subscription_id INTEGER,
    PRIMARY KEY (account, client_id, filter)
  );
  -- In rowid order: the order subscriptions are restored in.
  INSERT INTO mqtt_subscription_v7 (account, client_id, filter, qos, options, subscription_id)
    SELECT '$G', client_id, filter, qos, options, subscription_id FROM mqtt_subscription ORDER BY rowid;
  DROP TABLE mqtt_subscription;
  ALTER TABLE mqtt_subscription_v7 RENAME TO mqtt_subscription;
  CREATE TABLE mqtt_inbound_v7 (
    account TEXT NOT NULL,
    client_id TEXT NOT NULL,
    packet_id INTEGER NOT NULL,
    PRIMARY KEY (account, client_id, packet_id)
  );
  INSERT INTO mqtt_inbound_v7 (account, client_id, packet_id)
    SELECT '$G', client_id, packet_id FROM mqtt_inbound;
  DROP TABLE mqtt_inbound;
  ALTER TABLE mqtt_inbound_v7 RENAME TO mqtt_inbound;
  ALTER TABLE mqtt_message ADD COLUMN account TEXT NOT NULL DEFAULT '$G';
  DROP INDEX mqtt_message_client;
  CREATE INDEX mqtt_message_client ON mqtt_message (account, client_id, id);
`;

/** Schema steps by the version they produce. */
const MIGRATIONS: readonly string[] = [
  SCHEMA_V1,
  SCHEMA_V2,
  SCHEMA_V3,
  SCHEMA_V4,
  SCHEMA_V5,
  SCHEMA_V6,
  SCHEMA_V7,
];

/**
 * Brings the schema up to SCHEMA_VERSION (tests: up to `target`, to make an older file);
 * refuses a file from a newer leafgate.
 */
export function migrate(db: Database.Database, target = SCHEMA_VERSION): void {
  const version = pragma(db, "user_version", true) as number;
  if (version > SCHEMA_VERSION) {
    throw new Error(
      `database schema version ${version} is newer than this leafgate understands (${SCHEMA_VERSION}); upgrade leafgate`,
    );
  }
  if (version < target) {
    db.transaction(() => {
      for (let v = version; v < target; v++) db.exec(MIGRATIONS[v]!);
      pragma(db, `user_version = ${target}`);
    })();
  }
}
