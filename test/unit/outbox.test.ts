// The SQLite outbox and the database it lives in, against real files in temp dirs: open and
// lock, group commit, never-reused ids, round-trips, disk full, close, and a kill -9.
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import Database from "better-sqlite3";
import fc from "fast-check";
import { afterEach, describe, expect, it, vi } from "vitest";
import { type Envelope, type Headers, silentLogger } from "../../src/core/index.js";
import { MetricsRegistry } from "../../src/observe/index.js";
import {
  closeDatabase,
  DATABASE_FILE,
  type Durability,
  Outbox,
  type OutboxOptions,
  openDatabase,
  pragma,
  StoreError,
} from "../../src/store/index.js";
import {
  runToCompletion,
  spawnTracked,
  stopAll,
  stopProcess,
  waitForLine,
} from "../helpers/procs.js";
import { type TempDir, tempDir } from "../helpers/wait.js";

const APPENDED = "leafgate_outbox_appended_total";
const FAILURES = "leafgate_outbox_commit_failures_total";
const BETTER_SQLITE3_URL = pathToFileURL(
  createRequire(import.meta.url).resolve("better-sqlite3"),
).href;

let temps: TempDir[] = [];
let dbs: Database.Database[] = [];
let metrics: MetricsRegistry;

afterEach(async () => {
  vi.useRealTimers();
  await stopAll({ graceMs: 0 });
  for (const db of dbs) closeDatabase(db);
  dbs = [];
  await Promise.all(temps.map((t) => t.cleanup()));
  temps = [];
});

function newDir(): string {
  const t = tempDir("outbox");
  temps.push(t);
  return t.path;
}

/** Closes `outbox` and its database, and opens both again from `dir`. */
function reopen(dir: string, outbox: Outbox, db: Database.Database): [Outbox, Database.Database] {
  outbox.close();
  closeDatabase(db);
  const again = open(dir);
  return [newOutbox(again), again];
}

/** openDatabase, remembered so afterEach closes it. */
function open(dir: string, durability: Durability = "normal"): Database.Database {
  const db = openDatabase(dir, durability);
  dbs.push(db);
  return db;
}

function newOutbox(db: Database.Database, opts: Partial<OutboxOptions> = {}): Outbox {
  metrics = new MetricsRegistry();
  return new Outbox(db, {
    commitIntervalMs: 0,
    commitMaxRows: 1000,
    log: silentLogger,
    metrics,
    ...opts,
  });
}

function msg(
  subject: string,
  payload: Uint8Array = Buffer.from(subject),
  headers?: Headers,
  receivedAtMs = 1_700_000_000_000,
): Envelope {
  return { subject, payload, headers, receivedAtMs, origin: "mqtt", qos: 1 };
}

/** The error `fn` throws (fails the test if it returns). */
function thrown(fn: () => unknown): StoreError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(StoreError);
    return err as StoreError;
  }
  throw new Error("expected a StoreError, nothing was thrown");
}

function ids(outbox: Outbox, afterId = 0, limit = 10_000): number[] {
  return outbox.readAfter(afterId, limit).map((r) => r.id);
}

function subjects(outbox: Outbox): string[] {
  return outbox.readAfter(0, 10_000).map((r) => r.subject);
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/** Resolves after the immediates queued so far (and everything before them) have run. */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Writes an ESM script for a child node process that uses better-sqlite3 directly. */
function childScript(dir: string, name: string, body: string): string {
  const file = join(dir, name);
  writeFileSync(file, `import Database from ${JSON.stringify(BETTER_SQLITE3_URL)};\n${body}\n`);
  return file;
}

// The same pragmas as openDatabase, so the child behaves like another gateway process.
const CHILD_OPEN = `
const db = new Database(process.argv[2], { timeout: 0 });
db.pragma("locking_mode = EXCLUSIVE");
db.pragma("journal_mode = WAL");
db.pragma("synchronous = NORMAL");
db.exec("BEGIN IMMEDIATE; COMMIT;");
`;

describe("openDatabase", () => {
  it("prepares each SQL text once and keeps it (Node 24 aborts on a collected statement)", () => {
    const db = open(newDir());
    const a = db.prepare("SELECT 1 AS one");
    expect(db.prepare("SELECT 1 AS one")).toBe(a);
    expect(db.prepare("SELECT 2 AS two")).not.toBe(a);
    // PRAGMAs go through kept statements too, readers and writers alike.
    expect(pragma(db, "user_version", true)).toBe(7);
    expect(pragma(db, "user_version", true)).toBe(7);
    expect(pragma(db, "journal_mode")).toEqual([{ journal_mode: "wal" }]);
    expect(pragma(db, "cache_size = -4000")).toEqual([]);
    expect(pragma(db, "cache_size", true)).toBe(-4000);
  });

  it("creates a nested data dir and leafgate.db, at schema version 6", () => {
    const dir = join(newDir(), "a", "b", "c");
    const db = open(dir);
    expect(DATABASE_FILE).toBe("leafgate.db");
    expect(statSync(dir).isDirectory()).toBe(true);
    expect(statSync(join(dir, "leafgate.db")).isFile()).toBe(true);
    expect(db.name).toBe(join(dir, "leafgate.db"));
    expect(db.pragma("user_version", { simple: true })).toBe(7);
    const tables = db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
      .all() as { name: string }[];
    expect(tables.map((t) => t.name)).toEqual([
      "import_cursor",
      "meta",
      "mqtt_inbound",
      "mqtt_message",
      "mqtt_payload",
      "mqtt_session",
      "mqtt_subscription",
      "outbox",
      "retained",
      "sqlite_sequence",
    ]);
  });

  it("uses WAL with an exclusive lock, synchronous NORMAL for durability normal", () => {
    const db = open(newDir(), "normal");
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(db.pragma("locking_mode", { simple: true })).toBe("exclusive");
    expect(db.pragma("synchronous", { simple: true })).toBe(1);
  });

  it("uses synchronous FULL for durability fsync", () => {
    const db = open(newDir(), "fsync");
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(db.pragma("synchronous", { simple: true })).toBe(2);
  });

  it("refuses a second open of the same data dir while the first is open, then allows it", () => {
    const dir = newDir();
    const first = open(dir);
    const err = thrown(() => open(dir));
    expect(err.code).toBe("LG_ERR_STORE_LOCKED");
    expect(err.sqliteCode).toBe("SQLITE_BUSY");
    expect(err.message).toContain(`gateway.data_dir ${dir}`);
    // Still refused on a retry: the failed attempt changed nothing.
    expect(thrown(() => open(dir)).code).toBe("LG_ERR_STORE_LOCKED");

    closeDatabase(first);
    const second = open(dir);
    expect(second.pragma("journal_mode", { simple: true })).toBe("wal");
  });

  it("holds the lock against another process, and is refused while another process holds it", async () => {
    const dir = newDir();
    const file = join(dir, DATABASE_FILE);
    const tryOpen = childScript(
      newDir(),
      "try-open.mjs",
      `try {${CHILD_OPEN} console.log("opened"); db.close(); } catch (err) { console.log("error " + err.code); }`,
    );

    // We hold it: another process cannot open it.
    const db = open(dir);
    const refused = await runToCompletion(process.execPath, [tryOpen, file]);
    expect({ code: refused.code, stdout: refused.stdout }).toEqual({
      code: 0,
      stdout: "error SQLITE_BUSY\n",
    });
    closeDatabase(db);
    const allowed = await runToCompletion(process.execPath, [tryOpen, file]);
    expect({ code: allowed.code, stdout: allowed.stdout }).toEqual({ code: 0, stdout: "opened\n" });

    // Another process holds it: we cannot open it until that process is gone.
    const hold = childScript(
      newDir(),
      "hold.mjs",
      `${CHILD_OPEN} console.log("holding");
setInterval(() => {}, 1000);`,
    );
    const holder = await spawnTracked(process.execPath, [hold, file]);
    await waitForLine(holder, (line) => line === "holding");
    const err = thrown(() => open(dir));
    expect(err.code).toBe("LG_ERR_STORE_LOCKED");
    expect(err.message).toContain(dir);
    await stopProcess(holder, { signal: "SIGKILL" });
    expect(open(dir).pragma("user_version", { simple: true })).toBe(7);
  });

  it("closeDatabase checkpoints the WAL into the main file and may be called twice", () => {
    const dir = newDir();
    const db = open(dir);
    const outbox = newOutbox(db);
    for (let i = 0; i < 10; i++) outbox.append(msg(`w.${i}`));
    outbox.flush();
    const wal = join(dir, `${DATABASE_FILE}-wal`);
    expect(statSync(wal).size).toBeGreaterThan(0);
    closeDatabase(db);
    expect(db.open).toBe(false);
    expect(existsSync(wal) ? statSync(wal).size : 0).toBe(0);
    closeDatabase(db);

    // The rows are in the main file alone: a plain read-only connection sees them.
    const ro = new Database(join(dir, DATABASE_FILE), { readonly: true });
    try {
      expect(ro.prepare("SELECT count(*) AS n FROM outbox").get()).toEqual({ n: 10 });
    } finally {
      ro.close();
    }
  });

  it("fails with LG_ERR_STORE_OPEN when the data dir cannot be created", () => {
    const base = newDir();
    writeFileSync(join(base, "file"), "not a directory");
    const dir = join(base, "file", "data");
    const err = thrown(() => open(dir));
    expect(err.code).toBe("LG_ERR_STORE_OPEN");
    expect(err.message).toContain(`cannot create data dir ${dir}`);
    expect(err.message).toContain("ENOTDIR");
  });

  it("fails with LG_ERR_STORE_OPEN when leafgate.db is not a database, and leaves it alone", () => {
    const dir = newDir();
    const garbage = Buffer.alloc(8192, 0x5a);
    writeFileSync(join(dir, DATABASE_FILE), garbage);
    const err = thrown(() => open(dir));
    expect(err.code).toBe("LG_ERR_STORE_OPEN");
    expect(err.sqliteCode).toBe("SQLITE_NOTADB");
    expect(err.message).toContain(join(dir, DATABASE_FILE));
    expect(readFileSync(join(dir, DATABASE_FILE)).equals(garbage)).toBe(true);
  });

  it("refuses a database written by a newer leafgate, telling to upgrade, and releases the lock", () => {
    const dir = newDir();
    const db = open(dir);
    db.pragma("user_version = 99");
    closeDatabase(db);

    const err = thrown(() => open(dir));
    expect(err.code).toBe("LG_ERR_STORE_OPEN");
    expect(err.message).toContain(
      "database schema version 99 is newer than this leafgate understands (7); upgrade leafgate",
    );
    // The refused open neither migrated the file nor kept it locked.
    const plain = new Database(join(dir, DATABASE_FILE), { timeout: 0 });
    try {
      expect(plain.pragma("user_version", { simple: true })).toBe(99);
      plain.pragma("user_version = 7");
    } finally {
      plain.close();
    }
    expect(open(dir).pragma("user_version", { simple: true })).toBe(7);
  });
});

describe("Outbox group commit", () => {
  it("commits many appends of one tick in one transaction, resolving them only after it", async () => {
    const db = open(newDir());
    const outbox = newOutbox(db, { commitIntervalMs: 0, commitMaxRows: 1000 });
    const promises = range(1, 50).map((i) => outbox.append(msg(`g.${i}`)));
    // One batch, one promise.
    expect(new Set(promises).size).toBe(1);
    const atResolution: { i: number; size: number; rows: number; lastId: number }[] = [];
    promises.forEach((p, i) => {
      void p.then(() =>
        atResolution.push({
          i,
          size: outbox.size,
          rows: ids(outbox).length,
          lastId: outbox.lastId,
        }),
      );
    });
    expect(outbox.size).toBe(0);
    expect(outbox.lastId).toBe(0);
    expect(ids(outbox)).toEqual([]);
    expect(metrics.value(APPENDED)).toBe(0);

    await Promise.all(promises);
    expect(atResolution).toEqual(range(0, 49).map((i) => ({ i, size: 50, rows: 50, lastId: 50 })));
    expect(metrics.value(APPENDED)).toBe(50);
    expect(subjects(outbox)).toEqual(range(1, 50).map((i) => `g.${i}`));
  });

  it("a batch is atomic: one bad row rolls back and rejects every append in it", async () => {
    const db = open(newDir());
    const outbox = newOutbox(db);
    db.exec(`CREATE TEMP TRIGGER poison BEFORE INSERT ON main.outbox WHEN NEW.subject = 'poison'
             BEGIN SELECT RAISE(ABORT, 'poisoned row'); END`);
    const batch = [
      outbox.append(msg("ok.1")),
      outbox.append(msg("ok.2")),
      outbox.append(msg("poison")),
    ];
    const results = await Promise.allSettled(batch);
    for (const r of results) {
      expect(r.status).toBe("rejected");
      const reason = (r as PromiseRejectedResult).reason as StoreError;
      expect(reason).toBeInstanceOf(StoreError);
      expect(reason.code).toBe("LG_ERR_STORE_WRITE");
      expect(reason.sqliteCode).toBe("SQLITE_CONSTRAINT_TRIGGER");
      expect(reason.message).toContain("cannot commit 3 messages to the outbox");
    }
    expect(outbox.size).toBe(0);
    expect(outbox.lastId).toBe(0);
    expect(ids(outbox)).toEqual([]);
    expect(metrics.value(APPENDED)).toBe(0);
    expect(metrics.value(FAILURES, { code: "SQLITE_CONSTRAINT_TRIGGER" })).toBe(3);

    db.exec("DROP TRIGGER temp.poison");
    await outbox.append(msg("ok.3"));
    // The rolled-back rows consumed no ids.
    expect(ids(outbox)).toEqual([1]);
    expect(outbox.lastId).toBe(1);
  });

  it("with commitIntervalMs 0 commits on the next event-loop turn", async () => {
    const db = open(newDir());
    const outbox = newOutbox(db, { commitIntervalMs: 0, commitMaxRows: 1000 });
    let resolved = false;
    void outbox.append(msg("n.1"));
    void outbox.append(msg("n.2")).then(() => {
      resolved = true;
    });
    await Promise.resolve();
    await Promise.resolve();
    expect(outbox.size).toBe(0);
    expect(resolved).toBe(false);
    await nextTurn();
    expect(outbox.size).toBe(2);
    expect(ids(outbox)).toEqual([1, 2]);
    expect(resolved).toBe(true);
  });

  it("with commitMaxRows 3 the 3rd append commits synchronously and cancels the timer", async () => {
    vi.useFakeTimers();
    const db = open(newDir());
    const outbox = newOutbox(db, { commitIntervalMs: 1000, commitMaxRows: 3 });
    const a = outbox.append(msg("m.1"));
    const b = outbox.append(msg("m.2"));
    expect(outbox.size).toBe(0);
    expect(vi.getTimerCount()).toBe(1);
    const c = outbox.append(msg("m.3"));
    expect(outbox.size).toBe(3);
    expect(outbox.lastId).toBe(3);
    expect(metrics.value(APPENDED)).toBe(3);
    expect(vi.getTimerCount()).toBe(0);
    expect(a).toBe(c);
    expect(b).toBe(c);
    await c;

    // The 4th starts a new batch with its own timer.
    const d = outbox.append(msg("m.4"));
    expect(d).not.toBe(c);
    expect(outbox.size).toBe(3);
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(1000);
    expect(outbox.size).toBe(4);
    await d;
    expect(ids(outbox)).toEqual([1, 2, 3, 4]);
  });

  it("with commitIntervalMs > 0 commits that long after the first append of a batch", async () => {
    vi.useFakeTimers();
    const db = open(newDir());
    const outbox = newOutbox(db, { commitIntervalMs: 50, commitMaxRows: 1000 });
    const first = outbox.append(msg("i.1"));
    vi.advanceTimersByTime(30);
    // A later append joins the batch and does not push the deadline back.
    const second = outbox.append(msg("i.2"));
    expect(second).toBe(first);
    vi.advanceTimersByTime(19);
    expect(outbox.size).toBe(0);
    expect(metrics.value(APPENDED)).toBe(0);
    vi.advanceTimersByTime(1);
    expect(outbox.size).toBe(2);
    expect(metrics.value(APPENDED)).toBe(2);
    await first;
    expect(vi.getTimerCount()).toBe(0);

    // flush() commits at once and cancels the timer.
    const third = outbox.append(msg("i.3"));
    expect(vi.getTimerCount()).toBe(1);
    outbox.flush();
    expect(outbox.size).toBe(3);
    expect(vi.getTimerCount()).toBe(0);
    await third;
    // flush() with nothing pending does nothing.
    outbox.flush();
    expect(metrics.value(APPENDED)).toBe(3);
  });

  it("an early commit cancels a pending next-turn commit with the matching clear (fake timers)", async () => {
    // Fake timers (as used for keepalive tests) are strict: an Immediate must be cleared with
    // clearImmediate. commitIntervalMs 0 schedules an Immediate; commitMaxRows, flush() and
    // close() must still commit when they cut the wait short.
    vi.useFakeTimers();
    const db = open(newDir());
    const outbox = newOutbox(db, { commitIntervalMs: 0, commitMaxRows: 2 });
    const first = outbox.append(msg("e.1"));
    expect(vi.getTimerCount()).toBe(1);
    expect(() => outbox.append(msg("e.2"))).not.toThrow();
    expect(outbox.size).toBe(2);
    expect(vi.getTimerCount()).toBe(0);
    await first;

    const third = outbox.append(msg("e.3"));
    expect(() => outbox.close()).not.toThrow();
    expect(outbox.size).toBe(3);
    await third;
    expect(ids(outbox)).toEqual([1, 2, 3]);
  });
});

describe("Outbox rows", () => {
  it("gives ascending, gap-free ids across batches, and readAfter pages in order", async () => {
    const db = open(newDir());
    const outbox = newOutbox(db, { commitIntervalMs: 0, commitMaxRows: 4 });
    const promises = range(1, 10).map((i) => outbox.append(msg(`p.${i}`)));
    // 1-4 and 5-8 committed synchronously, 9-10 on the next turn.
    expect(outbox.lastId).toBe(8);
    await Promise.all(promises);
    await outbox.append(msg("p.11"));
    expect(outbox.lastId).toBe(11);
    expect(outbox.size).toBe(11);

    expect(ids(outbox, 0, 4)).toEqual([1, 2, 3, 4]);
    expect(ids(outbox, 4, 4)).toEqual([5, 6, 7, 8]);
    expect(ids(outbox, 8, 4)).toEqual([9, 10, 11]);
    expect(ids(outbox, 11, 4)).toEqual([]);
    expect(ids(outbox, 5, 2)).toEqual([6, 7]);
    expect(subjects(outbox)).toEqual(range(1, 11).map((i) => `p.${i}`));
  });

  it("round-trips payload bytes, headers and receivedAtMs exactly", async () => {
    const db = open(newDir());
    const outbox = newOutbox(db);
    const zeros = Buffer.from([0, 0, 0, 1, 0, 255, 0, 0]);
    const big = randomBytes(1024 * 1024);
    const backing = new Uint8Array([9, 9, 1, 2, 3, 9, 9]);
    const view = backing.subarray(2, 5); // a view at an offset into a larger buffer
    const headers: Headers = new Map([
      ["Content-Type", ["application/json"]],
      ["X-Multi", ["one", "two", "two", ""]],
      ["X-Ünïcode", ['ñ ✓ \u0000 "quoted"']],
    ]);
    const sent = [
      msg("r.zeros", zeros, undefined, 1_700_000_000_123),
      msg("r.big", big, headers, 1),
      msg("r.view", view, new Map([["k", ["v"]]]), 0),
      msg("r.empty", Buffer.alloc(0), undefined, 1_712_345_678_901),
      msg("r.ünïcode/😀", new TextEncoder().encode("plain Uint8Array"), undefined, 42),
    ];
    await Promise.all(sent.map((m) => outbox.append(m)));

    const rows = outbox.readAfter(0, 100);
    expect(rows.map((r) => r.id)).toEqual([1, 2, 3, 4, 5]);
    rows.forEach((row, i) => {
      const m = sent[i]!;
      expect(row.subject).toBe(m.subject);
      expect(Buffer.isBuffer(row.payload)).toBe(true);
      expect(row.payload.length).toBe(m.payload.length);
      expect(row.payload.equals(Buffer.from(m.payload))).toBe(true);
      expect(row.headers).toEqual(m.headers);
      expect(row.receivedAtMs).toBe(m.receivedAtMs);
    });
    expect([...rows[2]!.payload]).toEqual([1, 2, 3]);
    expect([...rows[1]!.headers!.entries()]).toEqual([...headers.entries()]);
    // No headers and an empty header map both come back as "no headers".
    await outbox.append(msg("r.nohdr", Buffer.from("x"), new Map()));
    expect(outbox.readAfter(5, 1)[0]!.headers).toBeUndefined();
  });

  it("never reuses ids: they continue after the table was emptied and the file reopened", async () => {
    const dir = newDir();
    let db = open(dir);
    let outbox = newOutbox(db);
    await Promise.all(range(1, 5).map((i) => outbox.append(msg(`u.${i}`))));
    expect(ids(outbox)).toEqual([1, 2, 3, 4, 5]);
    outbox.delete([1, 2, 3, 4, 5]);
    expect(outbox.size).toBe(0);
    expect(outbox.lastId).toBe(5);
    [outbox, db] = reopen(dir, outbox, db);
    expect(outbox.size).toBe(0);
    expect(outbox.lastId).toBe(5);
    expect(ids(outbox)).toEqual([]);
    expect(db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").get()).toEqual({
      seq: 5,
    });
    await outbox.append(msg("u.6"));
    await outbox.append(msg("u.7"));
    expect(ids(outbox)).toEqual([6, 7]);
    expect(outbox.lastId).toBe(7);
  });

  it("delete removes exactly the given ids, unsorted, non-contiguous or repeated", async () => {
    const dir = newDir();
    let db = open(dir);
    let outbox = newOutbox(db);
    await Promise.all(range(1, 12).map((i) => outbox.append(msg(`d.${i}`))));
    expect(outbox.size).toBe(12);

    outbox.delete([7, 3, 3, 4, 9, 1, 4, 7]);
    expect(ids(outbox)).toEqual([2, 5, 6, 8, 10, 11, 12]);
    expect(outbox.size).toBe(7);
    expect(subjects(outbox)).toEqual(["d.2", "d.5", "d.6", "d.8", "d.10", "d.11", "d.12"]);

    // Ids already gone, or never given out, do not count.
    outbox.delete([3, 8, 999, 0, -1]);
    expect(ids(outbox)).toEqual([2, 5, 6, 10, 11, 12]);
    expect(outbox.size).toBe(6);
    outbox.delete([]);
    expect(outbox.size).toBe(6);

    outbox.delete([12, 10, 11]);
    expect(ids(outbox)).toEqual([2, 5, 6]);
    expect(outbox.size).toBe(3);

    await outbox.append(msg("d.13"));
    expect(outbox.size).toBe(4);
    [outbox, db] = reopen(dir, outbox, db);
    expect(outbox.size).toBe(4);
    expect(outbox.lastId).toBe(13);
    expect(ids(outbox)).toEqual([2, 5, 6, 13]);
  });
});

describe("Outbox.onCommit (the forwarder's one wake-up)", () => {
  /** Subscribes a listener that records, at each call, what a forwarder would read. */
  function listen(outbox: Outbox): {
    calls: { lastId: number; ids: number[] }[];
    stop: () => void;
  } {
    const calls: { lastId: number; ids: number[] }[] = [];
    const stop = outbox.onCommit(() => calls.push({ lastId: outbox.lastId, ids: ids(outbox) }));
    return { calls, stop };
  }

  it("is called once per commit, after its rows are readable, not while they are queued", async () => {
    const db = open(newDir());
    const outbox = newOutbox(db);
    const { calls } = listen(outbox);
    const appended = [outbox.append(msg("w.1")), outbox.append(msg("w.2"))];
    await Promise.resolve();
    expect(calls).toEqual([]); // queued, not committed yet
    await Promise.all(appended);
    expect(calls).toEqual([{ lastId: 2, ids: [1, 2] }]);
    await outbox.append(msg("w.3"));
    expect(calls).toEqual([
      { lastId: 2, ids: [1, 2] },
      { lastId: 3, ids: [1, 2, 3] },
    ]);
  });

  it("is called for each of several listeners, until each unsubscribes", async () => {
    const db = open(newDir());
    const outbox = newOutbox(db);
    const first = listen(outbox);
    const second = listen(outbox);
    await outbox.append(msg("w.1"));
    first.stop();
    await outbox.append(msg("w.2"));
    expect(first.calls).toEqual([{ lastId: 1, ids: [1] }]);
    expect(second.calls).toEqual([
      { lastId: 1, ids: [1] },
      { lastId: 2, ids: [1, 2] },
    ]);
    second.stop();
    await outbox.append(msg("w.3"));
    expect(second.calls.length).toBe(2);
  });

  it("is not called for a commit that failed", async () => {
    const db = open(newDir());
    const outbox = newOutbox(db);
    db.exec(`CREATE TEMP TRIGGER poison BEFORE INSERT ON main.outbox
             BEGIN SELECT RAISE(ABORT, 'poisoned row'); END`);
    const { calls } = listen(outbox);
    await expect(outbox.append(msg("w.bad"))).rejects.toThrow(StoreError);
    await nextTurn();
    expect(calls).toEqual([]);
    expect(outbox.lastId).toBe(0);
  });

  it("is not called for deletes, evictions or expiry: only rows added wake a forwarder", async () => {
    const db = open(newDir());
    const outbox = newOutbox(db);
    await Promise.all([outbox.append(msg("w.1")), outbox.append(msg("w.2"))]);
    const { calls } = listen(outbox);
    outbox.delete([1]);
    outbox.deleteStored(2, Number.MAX_SAFE_INTEGER);
    outbox.maintain();
    expect(calls).toEqual([]);
    expect(outbox.size).toBe(0);
  });

  it("close() calls listeners once more, so a waiting forwarder looks again", async () => {
    const db = open(newDir());
    const outbox = newOutbox(db);
    const { calls } = listen(outbox);
    outbox.close();
    expect(calls).toEqual([{ lastId: 0, ids: [] }]);
  });
});

describe("Outbox commit failure (disk full)", () => {
  it("rejects the batch with SQLITE_FULL, counts the lost messages, keeps earlier rows, recovers", async () => {
    const db = open(newDir());
    const outbox = newOutbox(db);
    const early = range(1, 3).map((i) => msg(`f.${i}`, Buffer.from(`early ${i}`)));
    await Promise.all(early.map((m) => outbox.append(m)));
    expect(outbox.lastId).toBe(3);

    const pages = db.pragma("page_count", { simple: true }) as number;
    expect(db.pragma(`max_page_count = ${pages + 2}`, { simple: true })).toBe(pages + 2);
    const big = Buffer.alloc(64 * 1024, 0xab);
    const lost = [outbox.append(msg("f.big1", big)), outbox.append(msg("f.big2", big))];
    expect(lost[0]).toBe(lost[1]);
    const err = await lost[0]!.then(
      () => {
        throw new Error("the commit should have failed");
      },
      (e: unknown) => e as StoreError,
    );
    expect(err).toBeInstanceOf(StoreError);
    expect(err.code).toBe("LG_ERR_STORE_WRITE");
    expect(err.sqliteCode).toBe("SQLITE_FULL");
    expect(err.message).toContain("cannot commit 2 messages to the outbox");
    expect(metrics.value(FAILURES, { code: "SQLITE_FULL" })).toBe(2);
    expect(metrics.value(APPENDED)).toBe(3);

    // Nothing of the failed batch is visible; what was committed before is intact.
    expect(outbox.size).toBe(3);
    expect(outbox.lastId).toBe(3);
    const rows = outbox.readAfter(0, 100);
    expect(rows.map((r) => [r.id, r.subject, r.payload.toString()])).toEqual([
      [1, "f.1", "early 1"],
      [2, "f.2", "early 2"],
      [3, "f.3", "early 3"],
    ]);

    // Still full: the next batch fails too, and is counted too.
    await expect(outbox.append(msg("f.big3", big))).rejects.toMatchObject({
      code: "LG_ERR_STORE_WRITE",
      sqliteCode: "SQLITE_FULL",
    });
    expect(metrics.value(FAILURES, { code: "SQLITE_FULL" })).toBe(3);

    // Space again: appends succeed and ids continue where the committed ones stopped.
    db.pragma("max_page_count = 1073741823");
    await Promise.all([outbox.append(msg("f.4", big)), outbox.append(msg("f.5"))]);
    expect(ids(outbox)).toEqual([1, 2, 3, 4, 5]);
    expect(outbox.size).toBe(5);
    expect(outbox.lastId).toBe(5);
    expect(outbox.readAfter(3, 1)[0]!.payload.equals(big)).toBe(true);
    expect(metrics.value(APPENDED)).toBe(5);
    expect(metrics.value(FAILURES, { code: "SQLITE_FULL" })).toBe(3);
  });
});

describe("Outbox.close", () => {
  it("commits pending rows, then refuses appends with LG_ERR_STORE_CLOSED", async () => {
    const dir = newDir();
    let db = open(dir);
    let outbox = newOutbox(db, { commitIntervalMs: 60_000, commitMaxRows: 1000 });
    const pending = range(1, 4).map((i) => outbox.append(msg(`c.${i}`)));
    expect(outbox.size).toBe(0);
    outbox.close();
    expect(outbox.size).toBe(4);
    await Promise.all(pending);

    const refused = outbox.append(msg("c.late"));
    await expect(refused).rejects.toBeInstanceOf(StoreError);
    await expect(refused).rejects.toMatchObject({ code: "LG_ERR_STORE_CLOSED" });
    expect(outbox.size).toBe(4);
    closeDatabase(db);

    db = open(dir);
    outbox = newOutbox(db);
    expect(outbox.size).toBe(4);
    expect(subjects(outbox)).toEqual(["c.1", "c.2", "c.3", "c.4"]);
  });
});

describe("crash safety", () => {
  it("keeps every committed row, and none uncommitted, when the process is SIGKILLed", async () => {
    const dir = newDir();
    closeDatabase(open(dir)); // create the schema the way the gateway does
    const N = 25;
    const script = childScript(
      newDir(),
      "crash.mjs",
      `${CHILD_OPEN}
const insert = db.prepare(
  "INSERT INTO outbox (subject, payload, headers, received_at_ms) VALUES (?, ?, ?, ?)",
);
const n = Number(process.argv[3]);
db.transaction(() => {
  for (let i = 1; i <= n; i++) insert.run("crash." + i, Buffer.from([0, i]), null, 1000 + i);
})();
console.log("committed " + db.prepare("SELECT count(*) AS n FROM outbox").get().n);
// An open transaction that never commits: its rows must not survive.
db.exec("BEGIN");
for (let i = 1; i <= 5; i++) insert.run("uncommitted." + i, Buffer.from([i]), null, 0);
console.log("pending");
setInterval(() => {}, 1000);`,
    );
    const child = await spawnTracked(process.execPath, [script, join(dir, DATABASE_FILE), `${N}`]);
    await waitForLine(child, (line) => line === "pending");
    expect(child.stdout()).toBe(`committed ${N}\npending\n`);
    // The committed rows live only in the WAL: reopening must recover them from it.
    expect(statSync(join(dir, `${DATABASE_FILE}-wal`)).size).toBeGreaterThan(0);
    const exit = await stopProcess(child, { signal: "SIGKILL" });
    expect(exit).toEqual({ code: null, signal: "SIGKILL" });

    const db = open(dir);
    const outbox = newOutbox(db);
    expect(outbox.size).toBe(N);
    expect(outbox.lastId).toBe(N);
    const rows = outbox.readAfter(0, 100);
    expect(rows.map((r) => [r.id, r.subject, [...r.payload], r.receivedAtMs])).toEqual(
      range(1, N).map((i) => [i, `crash.${i}`, [0, i], 1000 + i]),
    );
    await outbox.append(msg("after.crash"));
    expect(outbox.lastId).toBe(N + 1);
  });
});

describe("Outbox recent-row cache", () => {
  it("readAfter from memory always equals what SQLite holds", () => {
    const dir = newDir();
    const db = open(dir);
    const outbox = newOutbox(db, { commitMaxRows: 1_000_000 });
    // Ground truth read straight from the table, bypassing the cache.
    const fromDisk = db.prepare("SELECT id, subject FROM outbox WHERE id > ? ORDER BY id LIMIT ?");
    const op = fc.oneof(
      fc.record({ kind: fc.constant("append" as const), n: fc.integer({ min: 1, max: 40 }) }),
      fc.record({ kind: fc.constant("ackPrefix" as const), n: fc.integer({ min: 1, max: 60 }) }),
      fc.record({ kind: fc.constant("ackRandom" as const), seed: fc.nat() }),
      fc.record({
        kind: fc.constant("read" as const),
        back: fc.nat({ max: 200 }),
        limit: fc.integer({ min: 1, max: 50 }),
      }),
    );
    let seq = 0;
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        for (const o of ops) {
          const pending = ids(outbox);
          if (o.kind === "append") {
            for (let i = 0; i < o.n; i++) outbox.append(msg(`s.${seq++}`));
            outbox.flush();
          } else if (o.kind === "ackPrefix") {
            outbox.delete(pending.slice(0, o.n));
          } else if (o.kind === "ackRandom" && pending.length > 0) {
            outbox.delete([pending[o.seed % pending.length]!]);
          } else if (o.kind === "read") {
            const afterId = Math.max(0, outbox.lastId - o.back);
            const cached = outbox.readAfter(afterId, o.limit).map((r) => [r.id, r.subject]);
            const disk = (fromDisk.all(afterId, o.limit) as { id: number; subject: string }[]).map(
              (r) => [r.id, r.subject],
            );
            expect(cached).toEqual(disk);
          }
        }
        expect(outbox.size).toBe(ids(outbox).length);
      }),
      { numRuns: 100 },
    );
  });
});
