// One outbox queue per account (issue 13) against real SQLite files: each account reads
// only its own rows, in order, whatever the interleaving; one account filling its buffer
// (drop_oldest and reject) or expiring never evicts, expires or refuses another's rows;
// metrics carry the account (none for $G); a database from before accounts keeps its rows
// in $G. The recent-row cache of each queue, whose ids have gaps, always reads what SQLite
// holds (fast-check).
import { join } from "node:path";
import Database from "better-sqlite3";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type Envelope, silentLogger } from "../../src/core/index.js";
import { MetricsRegistry } from "../../src/observe/index.js";
import {
  type BufferLimits,
  closeDatabase,
  DATABASE_FILE,
  type OnFull,
  Outboxes,
  pragma,
  type StoreError,
} from "../../src/store/index.js";
import { migrate } from "../../src/store/schema.js";
import { tempDatabases } from "../helpers/temp-db.js";

const T0 = 1_700_000_000_000;
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const G = "$G";
const B = "tenant-b";
const DROPPED = "leafgate_buffer_dropped_total";

const { newDir, open } = tempDatabases("accounts");

function limits(opts: Partial<BufferLimits> = {}): BufferLimits {
  return {
    maxBytes: 1e9,
    maxMessages: 10_000_000,
    maxAgeMs: 7 * 24 * HOUR,
    onFull: "drop_oldest" as OnFull,
    classes: [],
    ...opts,
  };
}

function outboxes(
  db: Database.Database,
  g: BufferLimits = limits(),
  b: BufferLimits = limits(),
): { queues: Outboxes; metrics: MetricsRegistry } {
  const metrics = new MetricsRegistry();
  const queues = new Outboxes(db, {
    commitIntervalMs: 0,
    commitMaxRows: 100_000,
    log: silentLogger,
    metrics,
    accounts: [
      { name: G, limits: g },
      { name: B, limits: b },
    ],
  });
  return { queues, metrics };
}

function msg(subject: string, receivedAtMs = T0): Envelope {
  return { subject, payload: Buffer.from(subject), receivedAtMs, origin: "mqtt", qos: 1 };
}

function names(prefix: string, n: number, from = 0): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}.${from + i}`);
}

/** Every subject of `account`'s queue, in id order, read through the queue. */
function subjects(queues: Outboxes, account: string): string[] {
  return queues
    .of(account)
    .readAfter(0, 1_000_000)
    .map((r) => r.subject);
}

/** The same from SQLite itself. */
function stored(db: Database.Database, account: string): string[] {
  return (
    db.prepare("SELECT subject FROM outbox WHERE account = ? ORDER BY id").all(account) as {
      subject: string;
    }[]
  ).map((r) => r.subject);
}

describe("one outbox queue per account", () => {
  it("keeps each account's rows in its own ordered queue, however appends interleave", async () => {
    const dir = newDir();
    const db = open(dir);
    const { queues } = outboxes(db);
    const g = names("g", 300);
    const b = names("b", 200);
    // Interleaved within commits and across them: g, b, g, b, ... then the rest of g.
    for (let turn = 0; turn < 4; turn++) {
      const appends: Promise<void>[] = [];
      for (let i = turn * 50; i < (turn + 1) * 50; i++) {
        appends.push(queues.append(msg(g[i]!), G), queues.append(msg(b[i]!), B));
      }
      await Promise.all(appends);
    }
    await Promise.all(g.slice(200).map((s) => queues.append(msg(s), G)));

    // From the in-memory cache of recent rows, and from SQLite.
    expect(subjects(queues, G)).toEqual(g);
    expect(subjects(queues, B)).toEqual(b);
    expect(stored(db, G)).toEqual(g);
    expect(stored(db, B)).toEqual(b);
    expect(queues.of(G).size).toBe(300);
    expect(queues.of(B).size).toBe(200);
    expect(queues.size).toBe(500);
    // Ids are shared: each queue's last id is the last it committed.
    expect(queues.of(G).lastId).toBe(500);
    expect(queues.of(B).lastId).toBe(400);

    // Paging with gaps in the ids: 7 at a time reads exactly the queue, in order.
    const paged: string[] = [];
    let after = 0;
    for (;;) {
      const rows = queues.of(B).readAfter(after, 7);
      if (rows.length === 0) break;
      paged.push(...rows.map((r) => r.subject));
      after = rows.at(-1)!.id;
    }
    expect(paged).toEqual(b);

    // Forwarding $G's first 100 deletes only those.
    queues.of(G).delete(
      queues
        .of(G)
        .readAfter(0, 100)
        .map((r) => r.id),
    );
    expect(subjects(queues, G)).toEqual(g.slice(100));
    expect(subjects(queues, B)).toEqual(b);

    // A reopen finds the same queues, with their numbers.
    queues.close();
    closeDatabase(db);
    const again = outboxes(open(dir)).queues;
    expect(subjects(again, G)).toEqual(g.slice(100));
    expect(subjects(again, B)).toEqual(b);
    expect(again.of(G).size).toBe(200);
    expect(again.of(B).size).toBe(200);
    again.close();
  });

  it("drop_oldest: one account's flood evicts only its own oldest rows", async () => {
    const db = open();
    const { queues, metrics } = outboxes(db, limits(), limits({ maxMessages: 100 }));
    const g = names("g", 50);
    await Promise.all(g.map((s) => queues.append(msg(s), G)));
    const b = names("b", 1000);
    // One commit of 1000 against a limit of 100: 900 over plus 1% headroom (1) go.
    await Promise.all(b.map((s) => queues.append(msg(s), B)));

    expect(subjects(queues, B)).toEqual(b.slice(901));
    expect(subjects(queues, G)).toEqual(g);
    expect(metrics.value(DROPPED, { class: "default", reason: "evicted", account: B })).toBe(901);
    expect(metrics.value(DROPPED, { class: "default", reason: "evicted" })).toBe(0);
    expect(metrics.value("leafgate_buffer_messages", { class: "default", account: B })).toBe(99);
    expect(metrics.value("leafgate_buffer_messages", { class: "default" })).toBe(50);

    // $G's own limit is not B's: 2000 more fit in $G without evicting anything.
    const more = names("g", 2000, 50);
    await Promise.all(more.map((s) => queues.append(msg(s), G)));
    expect(subjects(queues, G)).toEqual([...g, ...more]);
    expect(subjects(queues, B)).toEqual(b.slice(901));
    queues.close();
  });

  it("reject: a full account refuses its new rows and nobody else's", async () => {
    const db = open();
    const { queues, metrics } = outboxes(
      db,
      limits({ maxMessages: 10, onFull: "reject" }),
      limits({ maxMessages: 20, onFull: "reject" }),
    );
    const outcomes = await Promise.allSettled(
      names("x", 40).flatMap((s) => [
        queues.append(msg(`g.${s}`), G),
        queues.append(msg(`b.${s}`), B),
      ]),
    );
    const refused = (prefix: string) =>
      outcomes
        .map((o, i) => ({
          o,
          subject: `${prefix}.x.${i >> 1}`,
          mine: (i % 2 === 0) === (prefix === "g"),
        }))
        .filter(({ o, mine }) => mine && o.status === "rejected")
        .map(({ o, subject }) => {
          expect((o as PromiseRejectedResult).reason as StoreError).toMatchObject({
            code: "LG_ERR_BUFFER_FULL",
          });
          return subject;
        });
    expect(refused("g")).toEqual(names("g.x", 30, 10));
    expect(refused("b")).toEqual(names("b.x", 20, 20));
    expect(subjects(queues, G)).toEqual(names("g.x", 10));
    expect(subjects(queues, B)).toEqual(names("b.x", 20));
    expect(metrics.value(DROPPED, { class: "default", reason: "rejected" })).toBe(30);
    expect(metrics.value(DROPPED, { class: "default", reason: "rejected", account: B })).toBe(20);

    // $G full does not stop B once B has room again: B's queue drains, B takes more.
    queues.of(B).delete(
      queues
        .of(B)
        .readAfter(0, 5)
        .map((r) => r.id),
    );
    await queues.append(msg("b.after"), B);
    await expect(queues.append(msg("g.after"), G)).rejects.toMatchObject({
      code: "LG_ERR_BUFFER_FULL",
    });
    expect(subjects(queues, B)).toEqual([...names("b.x", 15, 5), "b.after"]);
    queues.close();
  });

  it("expires each account's rows by its own max_age", async () => {
    const db = open();
    const { queues, metrics } = outboxes(
      db,
      limits({ maxAgeMs: HOUR }),
      limits({ maxAgeMs: MINUTE }),
    );
    await Promise.all([
      ...names("g", 5).map((s) => queues.append(msg(s), G)),
      ...names("b", 7).map((s) => queues.append(msg(s), B)),
    ]);
    for (const q of queues.queues()) q.maintain(T0 + 2 * MINUTE);
    expect(subjects(queues, G)).toEqual(names("g", 5));
    expect(subjects(queues, B)).toEqual([]);
    expect(metrics.value(DROPPED, { class: "default", reason: "expired", account: B })).toBe(7);
    expect(metrics.value(DROPPED, { class: "default", reason: "expired" })).toBe(0);
    queues.close();
  });

  it("refuses an account it has no queue for, saying which it has", async () => {
    const { queues } = outboxes(open());
    await expect(queues.append(msg("t"), "nobody")).rejects.toMatchObject({
      code: "LG_ERR_UNKNOWN_ACCOUNT",
      message: 'no outbox queue for account "nobody"; the accounts are $G, tenant-b',
    });
    queues.close();
  });

  it("a database from before accounts (schema v6) keeps its rows in $G", async () => {
    const dir = newDir();
    // A v6 file, its rows written as v6 wrote them.
    const db = new Database(join(dir, DATABASE_FILE));
    migrate(db, 6);
    const insert = db.prepare(
      "INSERT INTO outbox (subject, payload, received_at_ms, class, size) VALUES (?, ?, 1, 'default', ?)",
    );
    for (const s of names("old", 3)) insert.run(s, Buffer.from("p"), s.length + 1);
    db.close();

    const upgraded = open(dir);
    expect(pragma(upgraded, "user_version", true)).toBe(7);
    const after = outboxes(upgraded).queues;
    expect(subjects(after, G)).toEqual(names("old", 3));
    expect(subjects(after, B)).toEqual([]);
    await after.append(msg("new"), B);
    expect(stored(upgraded, B)).toEqual(["new"]);
    after.close();
  });
});

describe("each queue's recent-row cache, ids with gaps", () => {
  it("readAfter from memory always equals what SQLite holds, for both queues", () => {
    const db = open();
    const { queues } = outboxes(db);
    const fromDisk = db.prepare(
      "SELECT id, subject FROM outbox WHERE account = ? AND id > ? ORDER BY id LIMIT ?",
    );
    const account = fc.constantFrom(G, B);
    const op = fc.oneof(
      fc.record({
        kind: fc.constant("append" as const),
        // Appends to both in one turn, interleaved as the flags say, then both commit.
        to: fc.array(account, { minLength: 1, maxLength: 40 }),
      }),
      fc.record({
        kind: fc.constant("ackPrefix" as const),
        account,
        n: fc.integer({ min: 1, max: 60 }),
      }),
      fc.record({ kind: fc.constant("ackRandom" as const), account, seed: fc.nat() }),
      fc.record({
        kind: fc.constant("read" as const),
        account,
        back: fc.nat({ max: 200 }),
        limit: fc.integer({ min: 1, max: 50 }),
      }),
    );
    const pendingIds = (a: string) =>
      queues
        .of(a)
        .readAfter(0, 1_000_000)
        .map((r) => r.id);
    let seq = 0;
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        for (const o of ops) {
          if (o.kind === "append") {
            for (const a of o.to) void queues.append(msg(`${a}.${seq++}`), a);
            // One queue first, then the other: their ids interleave across commits too.
            queues.flush();
          } else if (o.kind === "ackPrefix") {
            queues.of(o.account).delete(pendingIds(o.account).slice(0, o.n));
          } else if (o.kind === "ackRandom") {
            const pending = pendingIds(o.account);
            if (pending.length > 0)
              queues.of(o.account).delete([pending[o.seed % pending.length]!]);
          } else {
            const q = queues.of(o.account);
            const afterId = Math.max(0, q.lastId - o.back);
            const cached = q.readAfter(afterId, o.limit).map((r) => [r.id, r.subject]);
            const disk = (
              fromDisk.all(o.account, afterId, o.limit) as { id: number; subject: string }[]
            ).map((r) => [r.id, r.subject]);
            expect(cached).toEqual(disk);
          }
        }
        for (const a of [G, B]) {
          expect(queues.of(a).size).toBe(stored(db, a).length);
          expect(stored(db, a).every((s) => s.startsWith(`${a}.`))).toBe(true);
        }
      }),
      { numRuns: 100 },
    );
    queues.close();
  });
});
