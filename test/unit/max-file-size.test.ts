// buffer.max_file_size counts the WAL: the database file and its WAL together never
// exceed it. The outbox runs on a real database capped at 1 MiB, and the sum of the sizes
// of every file SQLite keeps in the data dir (database, WAL, and -shm/-journal should they
// appear) is measured after every single SQLite call the store makes (each statement,
// transaction, pragma and checkpoint; a file only grows inside a call, and the WAL only
// shrinks when the next write starts it again, so every peak is seen). The workload
// fills the buffer with seeded mixes of sizes and batch sizes (drop_oldest evicts), has
// a reject class refused, deletes forwarded rows in ranges as the hub's acks would,
// refills it with small rows only, and then expires them all in one transaction: the
// worst case, one transaction that rewrites every page of the database.
// Counts are exact: every message is either refused (and counted as such) or acked, and
// every acked one is evicted (the oldest, exactly as many as the counter says),
// forwarded, expired, or still buffered.
// The disk reserve (16 MiB, disk-guard.ts) is not part of the cap: it is space held for a
// real full disk, given back when the disk fills; it is checked to be exactly its size.
import { statSync } from "node:fs";
import { join } from "node:path";
import type Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { type Envelope, silentLogger } from "../../src/core/index.js";
import { MetricsRegistry } from "../../src/observe/index.js";
import { capDatabaseFile, fileCap } from "../../src/store/database.js";
import { closeDatabase, DATABASE_FILE, Outbox, openDatabase } from "../../src/store/index.js";
import { rng } from "../helpers/seed.js";
import { type TempDir, tempDir } from "../helpers/wait.js";

const MAX_FILE_BYTES = 1024 * 1024;
const RESERVE_BYTES = 16 * 1024 * 1024;
const MAX_AGE_MS = 60_000;
const T0 = 1_700_000_000_000;
/** Seeds of the workload (fixed, so a failure replays). */
const SEEDS = [1, 2, 3];

const temps: TempDir[] = [];
const dbs: Database.Database[] = [];
afterEach(async () => {
  for (const db of dbs.splice(0)) closeDatabase(db);
  for (const t of temps.splice(0)) await t.cleanup();
});

const sizeOf = (file: string): number => {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
};

interface Sampler {
  /** Samples taken, the largest sum and WAL seen, and every sum over the cap. */
  readonly samples: number;
  readonly maxSum: number;
  readonly maxWal: number;
  readonly over: number[];
}

/**
 * Wraps every way the store reaches SQLite through `db` (prepare → run/get/all, exec,
 * transaction) so that the files are measured after each call, whether it threw or not.
 */
function instrument(db: Database.Database, dir: string): Sampler {
  const file = join(dir, DATABASE_FILE);
  const state = { samples: 0, maxSum: 0, maxWal: 0, over: [] as number[] };
  const sample = (): void => {
    const wal = sizeOf(`${file}-wal`);
    const sum = sizeOf(file) + wal + sizeOf(`${file}-shm`) + sizeOf(`${file}-journal`);
    state.samples++;
    state.maxSum = Math.max(state.maxSum, sum);
    state.maxWal = Math.max(state.maxWal, wal);
    if (sum > MAX_FILE_BYTES) state.over.push(sum);
  };
  const measured =
    <A extends unknown[], R>(fn: (...args: A) => R) =>
    (...args: A): R => {
      try {
        return fn(...args);
      } finally {
        sample();
      }
    };
  const prepare = db.prepare.bind(db);
  const proxies = new WeakMap<object, unknown>();
  db.prepare = ((sql: string) => {
    const statement = prepare(sql) as unknown as Record<string, unknown>;
    let proxy = proxies.get(statement);
    if (proxy === undefined) {
      proxy = new Proxy(statement, {
        get(target, prop) {
          const value = Reflect.get(target, prop, target);
          if (typeof value !== "function") return value;
          if (prop === "run" || prop === "get" || prop === "all") {
            return measured((...args: unknown[]) => value.apply(target, args));
          }
          // Chained setters (pluck, raw, ...) return the statement: keep the proxy.
          return (...args: unknown[]) => {
            const r = value.apply(target, args);
            return r === target ? proxy : r;
          };
        },
      });
      proxies.set(statement, proxy);
    }
    return proxy;
  }) as typeof db.prepare;
  const exec = db.exec.bind(db);
  db.exec = measured((sql: string) => exec(sql)) as typeof db.exec;
  const transaction = db.transaction.bind(db);
  db.transaction = ((fn: (...args: unknown[]) => unknown) =>
    measured(transaction(fn) as (...args: unknown[]) => unknown)) as typeof db.transaction;
  return state;
}

function message(subject: string, seq: number, bytes: number, receivedAtMs: number): Envelope {
  const payload = Buffer.alloc(Math.max(bytes, 12), 0x61);
  payload.write(`${seq}:`);
  return { subject, payload, headers: undefined, receivedAtMs, origin: "mqtt", qos: 1 };
}

const seqOf = (payload: Buffer): number => Number(payload.toString("latin1").split(":")[0]);

describe("buffer.max_file_size holds the database and its WAL together", () => {
  it.each(SEEDS)("seed %i: never above the cap at any SQLite call; exact counts", async (seed) => {
    const random = rng(seed);
    const t = tempDir("max-file");
    temps.push(t);
    const db = openDatabase(t.path, "normal");
    dbs.push(db);
    const sampler = instrument(db, t.path);
    const cap = capDatabaseFile(db, MAX_FILE_BYTES);
    expect(cap).toMatchObject(fileCap(MAX_FILE_BYTES, 4096));
    const metrics = new MetricsRegistry();
    const outbox = new Outbox(db, {
      commitIntervalMs: 0,
      commitMaxRows: 2000,
      limits: {
        maxBytes: Number.MAX_SAFE_INTEGER,
        maxMessages: Number.MAX_SAFE_INTEGER,
        maxAgeMs: MAX_AGE_MS,
        onFull: "drop_oldest",
        classes: [
          {
            name: "alarms",
            subjects: ["alarms.>"],
            onFull: "reject",
            maxBytes: null,
            maxMessages: null,
            maxAgeMs: null,
          },
        ],
      },
      log: silentLogger,
      metrics,
    });
    outbox.startMaintenance(3_600_000);
    const dropped = (cls: string, reason: string): number =>
      metrics.value("leafgate_buffer_dropped_total", { class: cls, reason }) ?? 0;

    let seq = 0;
    const acked: number[] = [];
    let refused = 0;
    /** Appends `sizes` as one group commit on `subject`; resolves when all settled. */
    const publish = async (subject: string, sizes: number[], at: number): Promise<void> => {
      const results = await Promise.allSettled(
        sizes.map((bytes) => {
          const s = seq++;
          return outbox.append(message(subject, s, bytes, at)).then(() => s);
        }),
      );
      for (const r of results) {
        if (r.status === "fulfilled") acked.push(r.value);
        else refused++;
      }
    };
    const mixed = (): number[] =>
      Array.from({ length: 1 + Math.floor(random() ** 3 * 300) }, () =>
        random() < 0.05 ? 2_000 + Math.floor(random() * 20_000) : 10 + Math.floor(random() * 200),
      );

    // 1. Fill three times over with mixed sizes and batch sizes: drop_oldest evicts.
    let published = 0;
    while (published < 3 * MAX_FILE_BYTES) {
      const sizes = mixed();
      published += sizes.reduce((a, b) => a + b, 0);
      await publish("sensors.t", sizes, T0);
    }
    // A batch larger than the whole buffer cannot be made room for: refused, and counted.
    expect(refused).toBe(dropped("default", "disk_full"));
    const telemetryRefused = refused;
    const rows = () => outbox.readAfter(0, 1_000_000);
    let present = rows().map((r) => seqOf(r.payload));
    let evicted = dropped("default", "evicted");
    expect(evicted).toBeGreaterThan(0);
    // Exactly the oldest were evicted, as many as counted.
    expect(present).toStrictEqual(acked.slice(evicted));

    // 2. Alarms (reject): room is made from telemetry until none is left, then refused.
    const alarmsBefore = acked.length;
    for (let i = 0; i < 2_000 && refused === telemetryRefused; i++) {
      await publish("alarms.a", [3_000], T0);
    }
    expect(refused).toBe(telemetryRefused + 1);
    expect(dropped("alarms", "disk_full") + dropped("alarms", "rejected")).toBe(1);
    const alarmsAcked = acked.length - alarmsBefore;
    evicted = dropped("default", "evicted");
    present = rows().map((r) => seqOf(r.payload));
    expect(present).toStrictEqual(acked.slice(evicted));
    expect(outbox.classes().find((c) => c.name === "alarms")!.messages).toBe(alarmsAcked);

    // 3. The hub takes them: deletes in ranges of random length, as acks arrive.
    let forwarded = 0;
    for (let left = rows(); left.length > 0; left = rows()) {
      const n = 1 + Math.floor(random() * Math.min(left.length, 4096));
      outbox.delete(left.slice(0, n).map((r) => r.id));
      forwarded += n;
    }

    // 4. Refill with small rows only, then expire them all in one transaction.
    const refillFrom = acked.length;
    for (let i = 0; i < 1_000 && dropped("default", "evicted") === evicted; i++) {
      await publish(
        "sensors.small",
        Array.from(
          { length: 1 + Math.floor(random() * 400) },
          () => 10 + Math.floor(random() * 150),
        ),
        T0 + 1,
      );
    }
    // Full of small rows: the first eviction happened.
    const evictedSmall = dropped("default", "evicted") - evicted;
    expect(rows().map((r) => seqOf(r.payload))).toStrictEqual(
      acked.slice(refillFrom + evictedSmall),
    );
    const walBeforeExpiry = sampler.maxWal;
    outbox.maintain(T0 + 1 + MAX_AGE_MS + 1);
    expect(rows()).toStrictEqual([]);
    // The expiry rewrote the database's pages: the WAL grew far beyond a checkpoint's worth.
    expect(sampler.maxWal).toBeGreaterThan(walBeforeExpiry);
    expect(sampler.maxWal).toBeGreaterThan((cap.databasePages / 2) * (cap.pageSize + 24));

    // Every message: refused once, or acked and then evicted, forwarded or expired.
    const expired = dropped("default", "expired") + dropped("alarms", "expired");
    expect(refused + acked.length).toBe(seq);
    expect(dropped("default", "evicted") + forwarded + expired).toBe(acked.length);

    // The cap held at every one of thousands of measurements; the reserve is apart.
    expect(sampler.samples).toBeGreaterThan(1_000);
    expect(sampler.over).toStrictEqual([]);
    expect(sampler.maxSum).toBeLessThanOrEqual(MAX_FILE_BYTES);
    expect(statSync(join(t.path, "leafgate.reserve")).size).toBe(RESERVE_BYTES);
    outbox.close();
  });
});
