// Databases on real files in temp dirs, for unit tests of the store: each test file gets
// its own set, closed and removed after every test.
import type Database from "better-sqlite3";
import { afterEach } from "vitest";
import { closeDatabase, openDatabase } from "../../src/store/index.js";
import { type TempDir, tempDir } from "./wait.js";

export interface TempDatabases {
  /** A fresh temp dir, removed after the test. */
  newDir(): string;
  /** openDatabase on `dir` (default: a fresh one), closed after the test if still open. */
  open(dir?: string): Database.Database;
}

/**
 * Call at the top of a test file: registers the afterEach that closes every database the
 * test opened (closeDatabase skips one the test closed itself) and removes its dirs.
 */
export function tempDatabases(prefix: string): TempDatabases {
  const temps: TempDir[] = [];
  const dbs: Database.Database[] = [];
  afterEach(async () => {
    for (const db of dbs.splice(0)) closeDatabase(db);
    await Promise.all(temps.splice(0).map((t) => t.cleanup()));
  });
  const newDir = (): string => {
    const t = tempDir(prefix);
    temps.push(t);
    return t.path;
  };
  return {
    newDir,
    open(dir = newDir()) {
      const db = openDatabase(dir, "normal");
      dbs.push(db);
      return db;
    },
  };
}
