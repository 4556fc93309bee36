import {
  chmodSync,
  closeSync,
  fchmodSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  type Stats,
  statSync,
} from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import type { Logger } from "../core/index.js";
import { StoreError } from "./errors.js";

export type Durability = "normal" | "fsync";

export const DATABASE_FILE = "leafgate.db";

/**
 * The data dir holds the buffered messages (payloads, MQTT sessions, retained messages):
 * only the gateway's own user may enter it or read its files, whatever the umask.
 */
export const DATA_DIR_MODE = 0o700;
export const DATA_FILE_MODE = 0o600;

/** Group and other permission bits: none of them belongs on the data dir or its files. */
const GROUP_OTHER_BITS = 0o077;
/** The sticky bit marks a shared directory (/tmp): never ours to tighten. */
const STICKY_BIT = 0o1000;

/**
 * Files the gateway keeps in its data dir (the database, the files SQLite may make beside
 * it, the disk reserve of disk-guard.ts). A data dir holding anything else is shared, and
 * its mode is left to its owner.
 */
const DATA_FILE_SUFFIXES = ["", "-wal", "-shm", "-journal"];
const GATEWAY_FILES = new Set([
  ...DATA_FILE_SUFFIXES.map((suffix) => `${DATABASE_FILE}${suffix}`),
  "leafgate.reserve",
  "leafgate.reserve.partial",
]);

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

const modeText = (mode: number): string => `0${(mode & 0o7777).toString(8).padStart(3, "0")}`;

function statOrUndefined(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

/**
 * Makes the data dir private: created 0700 (set explicitly, so the umask does not
 * matter); an existing one that group or others may enter is tightened to 0700 when it
 * holds nothing but the gateway's files, and otherwise left as it is (a shared directory
 * is its owner's to change) with a warning that says what to do.
 */
function makePrivateDir(dataDir: string, log: Logger | undefined): void {
  const before = statOrUndefined(dataDir);
  try {
    mkdirSync(dataDir, { recursive: true, mode: DATA_DIR_MODE });
    if (before === undefined) chmodSync(dataDir, DATA_DIR_MODE);
  } catch (err) {
    throw new StoreError(
      "LG_ERR_STORE_OPEN",
      `cannot create data dir ${dataDir} (check gateway.data_dir and its permissions)`,
      err,
    );
  }
  if (before === undefined || (before.mode & GROUP_OTHER_BITS) === 0) return;
  const was = modeText(before.mode);
  const others = (() => {
    try {
      return readdirSync(dataDir).filter((name) => !GATEWAY_FILES.has(name));
    } catch {
      return ["(unreadable)"];
    }
  })();
  if ((before.mode & STICKY_BIT) !== 0 || others.length > 0) {
    log?.warn(
      { dataDir, mode: was, otherFiles: others.slice(0, 5) },
      `data dir ${dataDir} is ${was} and holds other files, so leafgate leaves its mode alone: give gateway.data_dir a directory of its own, or chmod 700 it`,
    );
    return;
  }
  try {
    chmodSync(dataDir, DATA_DIR_MODE);
    log?.warn(
      { dataDir, mode: was },
      `data dir ${dataDir} was ${was}: set to 0700, as the buffered messages are for the gateway's user alone`,
    );
  } catch (err) {
    log?.warn(
      { dataDir, mode: was, err: (err as Error).message },
      `data dir ${dataDir} is ${was} and cannot be set to 0700: chmod 700 it as its owner`,
    );
  }
}

/**
 * The database file is made 0600 before SQLite opens it: SQLite creates a database file
 * 0644 whatever the umask, and creates its WAL with the database file's mode, so this one
 * file decides both. Files left wider by an older leafgate (or a copy) are tightened.
 */
function makePrivateFiles(dataDir: string, log: Logger | undefined): void {
  const file = join(dataDir, DATABASE_FILE);
  try {
    // "wx": only if it does not exist; an existing database is checked below.
    const fd = openSync(file, "wx", DATA_FILE_MODE);
    try {
      fchmodSync(fd, DATA_FILE_MODE);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") {
      throw new StoreError("LG_ERR_STORE_OPEN", `cannot create ${file}`, err);
    }
  }
  for (const suffix of DATA_FILE_SUFFIXES) tightenFile(`${file}${suffix}`, log);
}

/**
 * Sets an existing gateway file to 0600 if it is wider, and says so. Only a regular file:
 * chmod follows symbolic links, and a link planted in a shared data dir must not make the
 * gateway change the mode of whatever it points at.
 */
export function tightenFile(file: string, log: Logger | undefined): void {
  let stats: Stats;
  try {
    stats = lstatSync(file);
  } catch {
    return;
  }
  if (!stats.isFile() || (stats.mode & GROUP_OTHER_BITS) === 0) return;
  const was = modeText(stats.mode);
  try {
    chmodSync(file, DATA_FILE_MODE);
    log?.warn({ file, mode: was }, `${file} was ${was}: set to 0600`);
  } catch (err) {
    log?.warn(
      { file, mode: was, err: (err as Error).message },
      `${file} is ${was} and cannot be set to 0600: chmod 600 it as its owner`,
    );
  }
}

/**
 * Opens (creating if needed) the gateway's database in `dataDir`, in WAL mode with an
 * exclusive lock so that a second gateway on the same data dir fails at start instead
 * of forwarding the same rows twice. The data dir is made 0700 and its files 0600; `log`
 * hears of any that were wider.
 */
export function openDatabase(
  dataDir: string,
  durability: Durability,
  options: { readonly log?: Logger } = {},
): Database.Database {
  makePrivateDir(dataDir, options.log);
  makePrivateFiles(dataDir, options.log);
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

/** Bytes of the WAL file's header, and of each frame's header before its page. */
const WAL_HEADER_BYTES = 32;
const WAL_FRAME_HEADER_BYTES = 24;
/** SQLite's own default checkpoint interval (pages), kept for large caps. */
const DEFAULT_CHECKPOINT_FRAMES = 1000;
/** A checkpoint every few frames at least, or every commit would checkpoint. */
const MIN_CHECKPOINT_FRAMES = 4;
/** The checkpoint interval takes at most this share of the cap. */
const CHECKPOINT_SHARE = 16;

/** How `buffer.max_file_size` is shared between the database file and its WAL. */
export interface FileCap {
  readonly maxFileBytes: number;
  readonly pageSize: number;
  /** max_page_count: the database file never holds more pages. */
  readonly databasePages: number;
  /** wal_autocheckpoint: a commit that leaves this many frames in the WAL checkpoints it. */
  readonly checkpointFrames: number;
  /** The WAL at its largest: see `fileCap`. */
  readonly walBytes: number;
}

/**
 * Shares `maxFileBytes` between the database file and its WAL so that together they never
 * exceed it, whatever a transaction does. A transaction writes one WAL frame per page it
 * changes (a page written twice in one transaction reuses its frame), and one may change
 * every page of the database: a delete of many small rows rewrites each page they were
 * on (measured: deleting 5,000 rows of 100 bytes wrote 220 frames for their 220 pages).
 * The WAL is checkpointed after a commit that leaves `checkpointFrames` in it, and the
 * next transaction starts it again from the beginning, so at its largest it holds
 * `checkpointFrames - 1` frames of earlier commits and one frame for every page of the
 * database. The database therefore gets a little less than half of the cap; the rest is
 * that worst-case WAL, which is otherwise mostly unused (the file is cut back to
 * `checkpointFrames` frames each time the WAL starts again, journal_size_limit).
 */
export function fileCap(maxFileBytes: number, pageSize: number): FileCap {
  const frameBytes = pageSize + WAL_FRAME_HEADER_BYTES;
  const checkpointFrames = Math.min(
    DEFAULT_CHECKPOINT_FRAMES,
    Math.max(MIN_CHECKPOINT_FRAMES, Math.floor(maxFileBytes / frameBytes / CHECKPOINT_SHARE)),
  );
  const carried = checkpointFrames - 1;
  // pages × pageSize (database) + (carried + pages) × frameBytes + header (WAL) ≤ max
  const databasePages = Math.max(
    1,
    Math.floor((maxFileBytes - WAL_HEADER_BYTES - carried * frameBytes) / (pageSize + frameBytes)),
  );
  return {
    maxFileBytes,
    pageSize,
    databasePages,
    checkpointFrames,
    walBytes: WAL_HEADER_BYTES + (carried + databasePages) * frameBytes,
  };
}

/**
 * Caps the database file and its WAL together at `bytes` (see `fileCap`): past it, writes
 * fail with SQLITE_FULL exactly as on a full disk, and the outbox treats that as a full
 * buffer. Deleted rows free pages for reuse, so the cap recovers as the hub drains. A WAL
 * left larger by an earlier run is checkpointed and truncated now (not possible on a full
 * disk: then the disk guard takes over). Returns the shares, and whether the database was
 * already larger than its share (it is never cut, so it keeps its size until the hub drains
 * it; the pages it frees are reused, not given back).
 */
export function capDatabaseFile(
  db: Database.Database,
  bytes: number,
): FileCap & { readonly oversizedPages: number } {
  const pageSize = pragma(db, "page_size", true) as number;
  const cap = fileCap(bytes, pageSize);
  const current = pragma(db, "page_count", true) as number;
  // Never below what the file already holds, or nothing could ever be written again.
  pragma(db, `max_page_count = ${Math.max(current, cap.databasePages)}`);
  pragma(db, `wal_autocheckpoint = ${cap.checkpointFrames}`);
  pragma(
    db,
    `journal_size_limit = ${WAL_HEADER_BYTES + cap.checkpointFrames * (pageSize + WAL_FRAME_HEADER_BYTES)}`,
  );
  try {
    pragma(db, "wal_checkpoint(TRUNCATE)");
  } catch {
    // A full disk: the disk guard deals with it once the outbox starts.
  }
  return { ...cap, oversizedPages: Math.max(0, current - cap.databasePages) };
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
