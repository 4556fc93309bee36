import { join } from "node:path";
import Database from "better-sqlite3";
import type { Logger } from "../core/index.js";
import { StoreError } from "./errors.js";
import { DATABASE_FILE, makePrivateDir, makePrivateFiles } from "./file-modes.js";
import { migrate } from "./schema.js";
import { pinStatements, pragma } from "./statements.js";

/** Kept for the outbox, which imports it from here. */
export { pragma } from "./statements.js";

export type Durability = "normal" | "fsync";

/** The page cache, in KiB (`cache_size` takes a negative number for KiB). */
const CACHE_KIB = 2000;

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
    // SQLite's own default (2 MB), not better-sqlite3's 16 MB: the outbox appends at its end
    // and drains from its start, so a larger cache holds pages read once, as RSS.
    pragma(db, `cache_size = -${CACHE_KIB}`);
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
 * exceed it, whatever a transaction does: the database gets a little less than half, the
 * rest is the worst-case WAL (why: docs/sessions-store.md, "The file cap").
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

/**
 * SQLite's version, from the native addon: loading it proves the addon was built for this
 * Node and machine (`leafgate version`, run by the installer before it switches releases).
 */
export function sqliteVersion(): string {
  const db = new Database(":memory:");
  try {
    return db.prepare("select sqlite_version()").pluck().get() as string;
  } finally {
    db.close();
  }
}
