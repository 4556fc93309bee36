import type Database from "better-sqlite3";
import { afterEach } from "vitest";
import { silentLogger } from "../../src/core/index.js";
import { MetricsRegistry } from "../../src/observe/index.js";
import { closeDatabase, Outbox, openDatabase } from "../../src/store/index.js";
import { type TempDir, tempDir } from "./wait.js";

/**
 * For a describe block: a factory of outboxes, each on its own SQLite file in a temp dir
 * (commit on the next turn, at most 100 rows a batch), closed and removed after each test.
 */
export function tempOutboxes(prefix: string): () => Outbox {
  const opened: { dir: TempDir; close: () => void }[] = [];
  afterEach(async () => {
    for (const { dir, close } of opened.splice(0)) {
      close();
      await dir.cleanup();
    }
  });
  return () => {
    const dir = tempDir(prefix);
    const db = openDatabase(dir.path, "normal");
    opened.push({ dir, close: () => closeDatabase(db) });
    return testOutbox(db);
  };
}

/** An outbox on `db` as tests use it: commit on the next turn, at most 100 rows a batch. */
export function testOutbox(db: Database.Database, metrics = new MetricsRegistry()): Outbox {
  return new Outbox(db, { commitIntervalMs: 0, commitMaxRows: 100, log: silentLogger, metrics });
}
