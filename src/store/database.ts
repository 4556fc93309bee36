import { mkdirSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { StoreError } from "./errors.js";

export type Durability = "normal" | "fsync";

export const DATABASE_FILE = "leafgate.db";

/** Bumped whenever the schema changes; `migrate` brings older files forward. */
const SCHEMA_VERSION = 5;

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
 * v5: a queued message's payload is stored once, however many sessions it is queued for.
 * `mqtt_payload` holds the message (subject, payload, and what the publisher gave it) with
 * the number of session rows that reference it; `mqtt_message` keeps per session only
 * what differs between sessions (QoS, retain flag, subscription ids, packet id). `size`
 * is the bytes each row holds, summed for the session store's quota; a message row's
 * `bytes` is its message's subject + payload, summed per session for
 * `max_session_queued_bytes` without reading the payloads at start. Each v4 row becomes
 * one payload (refs 1) and one message row with the same id. Sessions get an owner: the
 * user name of who made it, '' for anonymous; NULL for sessions stored before owners were
 * recorded.
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

/** Schema steps by the version they produce. */
const MIGRATIONS: readonly string[] = [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5];

/**
 * Every statement ever prepared, held for the life of the process. better-sqlite3 12 on
 * Node 24 aborts the process (`Assertion failed: (env) != nullptr` in
 * RemoveEnvironmentCleanupHook) when V8 collects a Statement during a microtask
 * checkpoint, so no statement is left to the garbage collector. Each SQL text is
 * prepared once per database (see `pinStatements`), which keeps this set small.
 */
const PINNED = new Set<Database.Statement>();

/** Makes `db.prepare` return one kept statement per SQL text. */
function pinStatements(db: Database.Database): void {
  const cache = new Map<string, Database.Statement>();
  const prepare = db.prepare.bind(db);
  db.prepare = ((sql: string) => {
    let statement = cache.get(sql);
    if (statement === undefined) {
      statement = prepare(sql);
      cache.set(sql, statement);
      PINNED.add(statement);
    }
    return statement;
  }) as typeof db.prepare;
}

/**
 * `PRAGMA source` through a kept statement (better-sqlite3's own `pragma()` prepares a
 * new one each call); `simple` returns the first column of the first row.
 */
export function pragma(db: Database.Database, source: string, simple = false): unknown {
  const statement = db.prepare(`PRAGMA ${source}`);
  if (!statement.reader) {
    statement.run();
    return simple ? undefined : [];
  }
  return simple ? statement.pluck(true).get() : statement.pluck(false).all();
}

/**
 * Opens (creating if needed) the gateway's database in `dataDir`, in WAL mode with an
 * exclusive lock so that a second gateway on the same data dir fails at start instead
 * of forwarding the same rows twice.
 */
export function openDatabase(dataDir: string, durability: Durability): Database.Database {
  try {
    mkdirSync(dataDir, { recursive: true });
  } catch (err) {
    throw new StoreError(
      "LG_ERR_STORE_OPEN",
      `cannot create data dir ${dataDir} (check gateway.data_dir and its permissions)`,
      err,
    );
  }
  const file = join(dataDir, DATABASE_FILE);
  let db: Database.Database;
  try {
    db = new Database(file, { timeout: 0 });
    pinStatements(db);
  } catch (err) {
    throw new StoreError("LG_ERR_STORE_OPEN", `cannot open ${file}`, err);
  }
  try {
    pragma(db, "locking_mode = EXCLUSIVE");
    pragma(db, "journal_mode = WAL");
    pragma(db, `synchronous = ${durability === "fsync" ? "FULL" : "NORMAL"}`);
    // Take the write lock now, so a second process fails here and not on first publish.
    db.exec("BEGIN IMMEDIATE; COMMIT;");
    migrate(db);
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code === "SQLITE_BUSY") {
      throw new StoreError(
        "LG_ERR_STORE_LOCKED",
        `${file} is in use by another process (is another leafgate running on gateway.data_dir ${dataDir}?)`,
        err,
      );
    }
    throw new StoreError("LG_ERR_STORE_OPEN", `cannot initialise ${file}`, err);
  }
  return db;
}

function migrate(db: Database.Database): void {
  const version = pragma(db, "user_version", true) as number;
  if (version > SCHEMA_VERSION) {
    throw new Error(
      `database schema version ${version} is newer than this leafgate understands (${SCHEMA_VERSION}); upgrade leafgate`,
    );
  }
  if (version < SCHEMA_VERSION) {
    db.transaction(() => {
      for (let v = version; v < SCHEMA_VERSION; v++) db.exec(MIGRATIONS[v]!);
      pragma(db, `user_version = ${SCHEMA_VERSION}`);
    })();
  }
}

/**
 * Caps the database file at about `bytes` (SQLite's max_page_count): past it, writes
 * fail with SQLITE_FULL exactly as on a full disk, and the outbox treats that as a full
 * buffer. Deleted rows free pages for reuse, so the cap recovers as the hub drains.
 */
export function capDatabaseFile(db: Database.Database, bytes: number): void {
  const pageSize = pragma(db, "page_size", true) as number;
  const current = pragma(db, "page_count", true) as number;
  // Never below what the file already holds, or nothing could ever be written again.
  pragma(db, `max_page_count = ${Math.max(current + 1, Math.ceil(bytes / pageSize))}`);
}

/** Moves the WAL into the main file and closes; the next start reads one file. */
export function closeDatabase(db: Database.Database): void {
  if (!db.open) return;
  try {
    pragma(db, "wal_checkpoint(TRUNCATE)");
  } finally {
    db.close();
  }
}
