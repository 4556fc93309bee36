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
import type { Logger } from "../core/index.js";
import { StoreError } from "./errors.js";

/** The database's file name in the data dir. */
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
export function makePrivateDir(dataDir: string, log: Logger | undefined): void {
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
export function makePrivateFiles(dataDir: string, log: Logger | undefined): void {
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
