// Persistent MQTT sessions in SQLite (src/store/sessions.ts), on real database files in temp
// dirs: sessions, subscriptions with every option, messages with every field, batched
// writes (one transaction per turn, applied in order, `committed` after the commit),
// deleteSession leaving no orphan rows, inbound QoS 2 ids, and all of it across a close and
// reopen of the database.
import { copyFileSync } from "node:fs";
import { join } from "node:path";
import type Database from "better-sqlite3";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  closeDatabase,
  DATABASE_FILE,
  type NewStoredMessage,
  queuedBytesOf,
  RetainedStore,
  SESSION_MESSAGE_ROW_BYTES,
  SessionStore,
  type StoredSubscription,
  sessionStoreUsage,
} from "../../src/store/index.js";
import { tempDatabases } from "../helpers/temp-db.js";

const { newDir, open } = tempDatabases("sessions");

/** Closes as the gateway does at shutdown: pending writes flushed, then the file closed. */
function reopen(dir: string, db: Database.Database, store: SessionStore) {
  store.flush();
  closeDatabase(db);
  const db2 = open(dir);
  return { db: db2, store: new SessionStore(db2) };
}

/**
 * The database with its transactions observed: every transaction the store runs is logged
 * as `commit <ops in the batch>` (or `commit -` for one without a batch) once it returned.
 */
function observed(db: Database.Database): { db: Database.Database; events: string[] } {
  const events: string[] = [];
  const proxy = new Proxy(db, {
    get(target, prop) {
      if (prop === "transaction") {
        return (fn: (...args: unknown[]) => unknown) => {
          const tx = target.transaction(fn);
          return (...args: unknown[]) => {
            const result = tx(...args);
            events.push(`commit ${Array.isArray(args[0]) ? args[0].length : "-"}`);
            return result;
          };
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { db: proxy, events };
}

/** Rows of `table` for `clientId`, counted with plain SQL (orphans included). */
function rows(db: Database.Database, table: string, clientId: string): number {
  return (
    db.prepare(`SELECT count(*) AS n FROM ${table} WHERE client_id = ?`).get(clientId) as {
      n: number;
    }
  ).n;
}

const TABLES = ["mqtt_session", "mqtt_subscription", "mqtt_message", "mqtt_inbound"];

/** What loadAll gives for a session with nothing in it. */
const EMPTY = {
  account: "$G",
  owner: undefined,
  subscriptions: [],
  messages: [],
  awaitingRelease: [],
  will: undefined,
  queued: 0,
  queuedBytes: 0,
  inflight: 0,
};

/** A message with every field set, binary where it can be. */
function fullMessage(n = 1): NewStoredMessage {
  return {
    subject: `sensors.kitchen.t${n}`,
    payload: Buffer.from([0x00, 0xff, 0x80, n & 0xff, 0x0a]),
    qos: 2,
    retain: true,
    receivedAtMs: 1_700_000_000_123 + n,
    expiresAtMs: 1_700_000_060_000 + n,
    publisher: "pub-ü",
    properties: {
      payloadFormat: 1,
      contentType: "application/json",
      responseTopic: "reply/to/ü",
      correlationData: Buffer.from([0x00, 0xc3, 0x28, 0xff, 0xfe]),
      userProperties: [
        ["a", "1"],
        ["b", "2"],
        ["a", "3"],
        ["", ""],
      ],
    },
    headers: new Map([
      ["site", ["north", "south"]],
      ["MQTT-Content-Type", ["application/json"]],
    ]),
    subscriptionIds: [7, 268_435_455, 1],
  };
}

/** A message with only what every message has. */
function bareMessage(subject = "a.b"): NewStoredMessage {
  return {
    subject,
    payload: Buffer.from("x"),
    qos: 1,
    retain: false,
    receivedAtMs: 5,
    expiresAtMs: undefined,
    publisher: undefined,
    properties: undefined,
    headers: undefined,
    subscriptionIds: undefined,
  };
}

const SUBS: StoredSubscription[] = [
  {
    filter: "a/+",
    qos: 0,
    noLocal: false,
    retainAsPublished: false,
    retainHandling: 0,
    subscriptionId: undefined,
  },
  {
    filter: "b/#",
    qos: 1,
    noLocal: true,
    retainAsPublished: false,
    retainHandling: 1,
    subscriptionId: 1,
  },
  {
    filter: "$share/g/c",
    qos: 2,
    noLocal: false,
    retainAsPublished: true,
    retainHandling: 2,
    subscriptionId: 268_435_455,
  },
  {
    filter: "d",
    qos: 2,
    noLocal: true,
    retainAsPublished: true,
    retainHandling: 2,
    subscriptionId: 42,
  },
];

describe("SessionStore: owners (issue 10: a session belongs to its user)", () => {
  it("keeps the owner from the session's first row, across updates and a reopen; wills carry theirs", () => {
    const dir = newDir();
    const db = open(dir);
    const store = new SessionStore(db);
    // saveOwner makes the row: no stored session is ever without its owner.
    store.saveOwner("c-user", "alice", 60_000);
    store.saveOwner("c-anon", "", 60_000);
    store.saveSession("c-user", 120_000, 5);
    store.saveWill("c-user", {
      subject: "status.c-user",
      payload: Buffer.from("gone"),
      qos: 1,
      retain: true,
      properties: undefined,
      messageExpiryS: undefined,
      owner: "alice",
      dueAtMs: 10,
    });
    const again = reopen(dir, db, store).store;
    const all = again.loadAll().sort((a, b) => a.clientId.localeCompare(b.clientId));
    expect(all.map((s) => [s.clientId, s.owner, s.expiryMs, s.will?.owner])).toEqual([
      ["c-anon", "", 60_000, undefined],
      ["c-user", "alice", 120_000, "alice"],
    ]);
  });

  it("a session stored before owners (schema 4) loads without one", () => {
    // A version-4 file, written by the version-4 code: no owner column at all.
    const dir = newDir();
    copyFileSync(new URL("../fixtures/v4-sessions.db", import.meta.url), join(dir, DATABASE_FILE));
    const migrated = new SessionStore(open(dir));
    const sessions = migrated.loadAll().sort((a, b) => a.clientId.localeCompare(b.clientId));
    expect(sessions.map((s) => [s.clientId, s.owner])).toEqual([
      ["dev-1", undefined],
      ["dev-2", undefined],
    ]);
  });
});

describe("SessionStore: sessions and subscriptions", () => {
  it("saves, updates and loads sessions", () => {
    const db = open(newDir());
    const store = new SessionStore(db);
    expect(store.loadAll()).toEqual([]);
    store.saveSession("c1", 60_000, undefined);
    store.saveSession("c2", 1000, 1_700_000_000_000);
    store.saveSession("c1", 120_000, 99);
    const all = store.loadAll().sort((a, b) => a.clientId.localeCompare(b.clientId));
    expect(all).toEqual([
      { ...EMPTY, clientId: "c1", expiryMs: 120_000, disconnectedAtMs: 99 },
      { ...EMPTY, clientId: "c2", expiryMs: 1000, disconnectedAtMs: 1_700_000_000_000 },
    ]);
    store.saveSession("c2", 1000, undefined);
    expect(store.loadAll().find((s) => s.clientId === "c2")?.disconnectedAtMs).toBeUndefined();
  });

  it("subscriptions keep every option, in the order first subscribed; a resubscribe replaces", () => {
    const dir = newDir();
    let db = open(dir);
    let store = new SessionStore(db);
    store.saveSession("c", 1000, undefined);
    for (const s of SUBS) store.saveSubscription("c", s);
    expect(store.loadAll()[0]!.subscriptions).toEqual(SUBS);

    // Same filter again: options replaced [MQTT-3.8.4-3], no second row.
    const replaced: StoredSubscription = {
      filter: "b/#",
      qos: 2,
      noLocal: false,
      retainAsPublished: true,
      retainHandling: 0,
      subscriptionId: undefined,
    };
    store.saveSubscription("c", replaced);
    store.deleteSubscription("c", "a/+");
    store.deleteSubscription("c", "never-there");
    ({ db, store } = reopen(dir, db, store));
    expect(store.loadAll()[0]!.subscriptions).toEqual([replaced, SUBS[2], SUBS[3]]);
    expect(rows(db, "mqtt_subscription", "c")).toBe(3);
  });

  it("every combination of options survives (noLocal × rap × retain handling × qos)", () => {
    const db = open(newDir());
    const store = new SessionStore(db);
    store.saveSession("c", 1000, undefined);
    const all: StoredSubscription[] = [];
    for (const qos of [0, 1, 2] as const)
      for (const noLocal of [false, true])
        for (const retainAsPublished of [false, true])
          for (const retainHandling of [0, 1, 2] as const) {
            const s = {
              filter: `f/${qos}/${noLocal}/${retainAsPublished}/${retainHandling}`,
              qos,
              noLocal,
              retainAsPublished,
              retainHandling,
              subscriptionId: all.length % 2 === 0 ? undefined : all.length,
            };
            all.push(s);
            store.saveSubscription("c", s);
          }
    expect(store.loadAll()[0]!.subscriptions).toEqual(all);
  });

  it("awaiting-release ids: add (twice is once), delete, survive a reopen", () => {
    const dir = newDir();
    let db = open(dir);
    let store = new SessionStore(db);
    store.saveSession("c", 1000, undefined);
    store.addAwaitingRelease("c", 1);
    store.addAwaitingRelease("c", 65_535);
    store.addAwaitingRelease("c", 1);
    store.addAwaitingRelease("c", 300);
    store.deleteAwaitingRelease("c", 300);
    store.deleteAwaitingRelease("c", 12); // not there
    ({ db, store } = reopen(dir, db, store));
    expect([...store.loadAll()[0]!.awaitingRelease].sort((a, b) => a - b)).toEqual([1, 65_535]);
  });
});

describe("SessionStore: messages", () => {
  it("a message with every field comes back as it went in", async () => {
    const dir = newDir();
    let db = open(dir);
    let store = new SessionStore(db);
    store.saveSession("c", 1000, undefined);
    const m = fullMessage();
    const { id, committed } = store.add("c", m);
    await committed;
    ({ db, store } = reopen(dir, db, store));
    const [msg] = store.loadAll()[0]!.messages;
    expect(msg).toEqual({ ...m, id, packetId: undefined, released: false });
    expect(Buffer.isBuffer(msg!.payload)).toBe(true);
    expect([...msg!.properties!.correlationData!]).toEqual([0x00, 0xc3, 0x28, 0xff, 0xfe]);
    // Interleaved names keep their order [MQTT-3.3.2-18].
    expect(msg!.properties!.userProperties).toEqual([
      ["a", "1"],
      ["b", "2"],
      ["a", "3"],
      ["", ""],
    ]);
    expect([...msg!.headers!]).toEqual([
      ["site", ["north", "south"]],
      ["MQTT-Content-Type", ["application/json"]],
    ]);
  });

  it("a bare message comes back with its optional fields undefined (not null)", async () => {
    const db = open(newDir());
    const store = new SessionStore(db);
    store.saveSession("c", 1000, undefined);
    const { id, committed } = store.add("c", bareMessage());
    await committed;
    const [msg] = store.loadAll()[0]!.messages;
    // Every key present, the optional ones undefined: toStrictEqual tells them from missing.
    expect(msg).toStrictEqual({ id, ...bareMessage(), packetId: undefined, released: false });
  });

  it("an empty payload comes back as an empty Buffer", async () => {
    const db = open(newDir());
    const store = new SessionStore(db);
    store.saveSession("c", 1000, undefined);
    await store.add("c", { ...bareMessage(), payload: Buffer.alloc(0) }).committed;
    const [msg] = store.loadAll()[0]!.messages;
    expect(Buffer.isBuffer(msg!.payload)).toBe(true);
    expect(msg!.payload).toHaveLength(0);
  });

  it("payload format 0 and empty strings are kept, not dropped as falsy", async () => {
    const db = open(newDir());
    const store = new SessionStore(db);
    store.saveSession("c", 1000, undefined);
    const m: NewStoredMessage = {
      ...bareMessage(),
      publisher: "",
      expiresAtMs: 0,
      subscriptionIds: [],
      properties: { payloadFormat: 0, contentType: "", correlationData: Buffer.alloc(0) },
    };
    await store.add("c", m).committed;
    const [msg] = store.loadAll()[0]!.messages;
    expect(msg).toMatchObject({ publisher: "", expiresAtMs: 0, subscriptionIds: [] });
    expect(msg!.properties).toEqual({
      payloadFormat: 0,
      contentType: "",
      correlationData: Buffer.alloc(0),
    });
  });

  it("markSent records the packet id and the release; messages load in id order per session", async () => {
    const dir = newDir();
    let db = open(dir);
    let store = new SessionStore(db);
    store.saveSession("a", 1000, undefined);
    store.saveSession("b", 1000, undefined);
    const a1 = store.add("a", bareMessage("a.1"));
    const b1 = store.add("b", bareMessage("b.1"));
    const a2 = store.add("a", { ...bareMessage("a.2"), qos: 2 });
    const a3 = store.add("a", bareMessage("a.3"));
    await Promise.all([a1.committed, b1.committed, a2.committed, a3.committed]);
    store.markSent(a1.id, 10, false);
    store.markSent(a2.id, 11, false);
    store.markSent(a2.id, 11, true);
    ({ db, store } = reopen(dir, db, store));
    const byId = new Map(store.loadAll().map((s) => [s.clientId, s]));
    expect(byId.get("a")!.messages.map((m) => [m.id, m.subject, m.packetId, m.released])).toEqual([
      [a1.id, "a.1", 10, false],
      [a2.id, "a.2", 11, true],
      [a3.id, "a.3", undefined, false],
    ]);
    expect(byId.get("b")!.messages.map((m) => [m.id, m.subject])).toEqual([[b1.id, "b.1"]]);
  });

  it("round trip of arbitrary messages (fast-check), across a reopen", async () => {
    const str = fc.string({ unit: "grapheme", maxLength: 10 });
    const message: fc.Arbitrary<NewStoredMessage> = fc.record({
      subject: fc.stringMatching(/^[a-z]{1,5}(\.[a-z0-9]{1,5}){0,3}$/),
      payload: fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
      qos: fc.constantFrom<1 | 2>(1, 2),
      retain: fc.boolean(),
      receivedAtMs: fc.integer({ min: 0, max: 2 ** 47 }),
      expiresAtMs: fc.option(fc.integer({ min: 0, max: 2 ** 47 }), { nil: undefined }),
      publisher: fc.option(str, { nil: undefined }),
      properties: fc.option(
        fc.record(
          {
            payloadFormat: fc.constantFrom<0 | 1>(0, 1),
            contentType: str,
            responseTopic: str,
            correlationData: fc.uint8Array({ maxLength: 16 }).map((a) => Buffer.from(a)),
            userProperties: fc.array(fc.tuple(str, str), { maxLength: 5 }),
          },
          { requiredKeys: [] },
        ),
        { nil: undefined },
      ),
      headers: fc.option(
        fc
          .uniqueArray(fc.tuple(str, fc.array(str, { minLength: 1, maxLength: 3 })), {
            selector: ([k]) => k,
            maxLength: 4,
          })
          .map((entries) => new Map(entries)),
        { nil: undefined },
      ),
      subscriptionIds: fc.option(
        fc.array(fc.integer({ min: 1, max: 268_435_455 }), { maxLength: 3 }),
        {
          nil: undefined,
        },
      ),
    });
    const dir = newDir();
    let db = open(dir);
    let store = new SessionStore(db);
    const expected = new Map<string, unknown[]>();
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(message, { minLength: 1, maxLength: 5 }), async (messages) => {
        const clientId = `c${n++}`;
        store.saveSession(clientId, 1000, undefined);
        const added = messages.map((m) => store.add(clientId, m));
        await Promise.all(added.map((a) => a.committed));
        const want = messages.map((m, i) => ({
          ...m,
          id: added[i]!.id,
          packetId: undefined,
          released: false,
        }));
        expected.set(clientId, want);
        const got = store.loadAll().find((s) => s.clientId === clientId)!.messages;
        expect(got).toEqual(want);
      }),
      { numRuns: 60 },
    );
    ({ db, store } = reopen(dir, db, store));
    const after = new Map(store.loadAll().map((s) => [s.clientId, s.messages]));
    expect(after.size).toBe(expected.size);
    for (const [clientId, want] of expected) expect(after.get(clientId)).toEqual(want);
  });
});

describe("SessionStore: batched writes", () => {
  it("writes of one turn land in one transaction; `committed` resolves after it", async () => {
    const raw = open(newDir());
    const { db, events } = observed(raw);
    const store = new SessionStore(db);
    store.saveSession("c", 1000, undefined);
    const a = store.add("c", bareMessage("m.1"));
    const b = store.add("c", bareMessage("m.2"));
    store.markSent(a.id, 1, false);
    const c = store.add("c", bareMessage("m.3"));
    store.remove(b.id);
    for (const x of [a, b, c]) void x.committed.then(() => events.push(`resolved ${x.id}`));
    // Nothing written yet within this turn.
    expect(events).toEqual([]);
    expect(rows(raw, "mqtt_message", "c")).toBe(0);
    await Promise.all([a.committed, b.committed, c.committed]);
    // Each add without a shared source brings its own payload row: 3 + 3, then 2.
    expect(events).toEqual([
      "commit 8",
      `resolved ${a.id}`,
      `resolved ${b.id}`,
      `resolved ${c.id}`,
    ]);
    expect(rows(raw, "mqtt_message", "c")).toBe(2);

    // The next turn is the next transaction.
    const d = store.add("c", bareMessage("m.4"));
    await d.committed;
    expect(events.slice(4)).toEqual(["commit 2"]);
  });

  it("ops apply in order: insert, markSent, remove in one batch leave nothing", async () => {
    const db = open(newDir());
    const store = new SessionStore(db);
    store.saveSession("c", 1000, undefined);
    const a = store.add("c", bareMessage());
    store.markSent(a.id, 5, false);
    store.markSent(a.id, 5, true);
    store.remove(a.id);
    const b = store.add("c", bareMessage("kept"));
    store.markSent(b.id, 6, false);
    store.markSent(b.id, 6, true);
    await Promise.all([a.committed, b.committed]);
    expect(rows(db, "mqtt_message", "c")).toBe(1);
    expect(store.loadAll()[0]!.messages.map((m) => [m.subject, m.packetId, m.released])).toEqual([
      ["kept", 6, true],
    ]);
  });

  it("flush() commits pending writes at once; loadAll() sees writes of the current turn", async () => {
    const db = open(newDir());
    const store = new SessionStore(db);
    store.saveSession("c", 1000, undefined);
    const a = store.add("c", bareMessage());
    expect(store.loadAll()[0]!.messages.map((m) => m.id)).toEqual([a.id]);
    const b = store.add("c", bareMessage());
    store.flush();
    expect(rows(db, "mqtt_message", "c")).toBe(2);
    await Promise.all([a.committed, b.committed]);
  });

  it("a batch that cannot commit rejects `committed` (it never hangs)", async () => {
    const db = open(newDir());
    const store = new SessionStore(db);
    store.saveSession("c", 1000, undefined);
    const a = store.add("c", bareMessage());
    const settled = a.committed.then(
      () => "resolved",
      () => "rejected",
    );
    db.close();
    expect(await settled).toBe("rejected");
  });

  it("a failed direct write goes to onError with what it was; nothing throws", () => {
    const db = open(newDir());
    const errors: string[] = [];
    const store = new SessionStore(db, { onError: (_err, what) => errors.push(what) });
    store.saveSession("c", 1000, undefined);
    db.close();
    store.saveSession("c", 1000, 5);
    store.saveSubscription("c", {
      filter: "a/#",
      qos: 1,
      noLocal: false,
      retainAsPublished: false,
      retainHandling: 0,
      subscriptionId: undefined,
    });
    store.deleteSubscription("c", "a/#");
    store.addAwaitingRelease("c", 1);
    store.deleteAwaitingRelease("c", 1);
    store.saveWill("c", undefined);
    store.deleteSession("c");
    expect(errors).toEqual([
      "save session",
      "save subscription",
      "delete subscription",
      "save inbound QoS 2 id",
      "delete inbound QoS 2 id",
      "save will",
      "delete session",
    ]);
  });
});

describe("SessionStore: deleteSession", () => {
  it("removes subscriptions, messages and inbound ids; other sessions stay", async () => {
    const db = open(newDir());
    const store = new SessionStore(db);
    for (const c of ["gone", "kept"]) {
      store.saveSession(c, 1000, undefined);
      store.saveSubscription(c, SUBS[1]!);
      store.addAwaitingRelease(c, 9);
      await store.add(c, fullMessage()).committed;
    }
    store.deleteSession("gone");
    for (const t of TABLES) {
      expect(rows(db, t, "gone"), t).toBe(0);
      expect(rows(db, t, "kept"), t).toBe(1);
    }
    expect(store.loadAll().map((s) => s.clientId)).toEqual(["kept"]);
  });

  it("flushes pending writes first: a message added in the same turn leaves no orphan row", async () => {
    const { db: proxy, events } = observed(open(newDir()));
    const store = new SessionStore(proxy);
    store.saveSession("c", 1000, undefined);
    const a = store.add("c", bareMessage());
    const b = store.add("c", bareMessage());
    store.markSent(b.id, 3, false);
    store.deleteSession("c");
    await Promise.all([a.committed, b.committed]);
    // Give a stray scheduled flush its turn.
    await new Promise((resolve) => setImmediate(resolve));
    expect(events).toEqual(["commit 5", "commit -"]);
    for (const t of TABLES) expect(rows(proxy, t, "c"), t).toBe(0);
  });

  it("a session saved again after its deletion starts empty", async () => {
    const dir = newDir();
    let db = open(dir);
    let store = new SessionStore(db);
    store.saveSession("c", 1000, undefined);
    store.saveSubscription("c", SUBS[0]!);
    store.addAwaitingRelease("c", 4);
    await store.add("c", bareMessage()).committed;
    store.deleteSession("c");
    store.saveSession("c", 2000, undefined);
    ({ db, store } = reopen(dir, db, store));
    expect(store.loadAll()).toEqual([
      { ...EMPTY, clientId: "c", expiryMs: 2000, disconnectedAtMs: undefined },
    ]);
  });
});

describe("SessionStore: across a reopen", () => {
  it("everything survives closing and reopening the database", async () => {
    const dir = newDir();
    let db = open(dir);
    let store = new SessionStore(db);
    store.saveSession("c", 86_400_000, 1_700_000_000_000);
    for (const s of SUBS) store.saveSubscription("c", s);
    store.addAwaitingRelease("c", 77);
    const m1 = store.add("c", fullMessage(1));
    const m2 = store.add("c", fullMessage(2));
    await Promise.all([m1.committed, m2.committed]);
    store.markSent(m1.id, 100, true);
    ({ db, store } = reopen(dir, db, store));
    expect(store.loadAll()).toEqual([
      {
        account: "$G",
        clientId: "c",
        expiryMs: 86_400_000,
        disconnectedAtMs: 1_700_000_000_000,
        owner: undefined,
        queued: 1,
        queuedBytes: queuedBytesOf(fullMessage(2)),
        inflight: 1,
        subscriptions: SUBS,
        messages: [
          { ...fullMessage(1), id: m1.id, packetId: 100, released: true },
          { ...fullMessage(2), id: m2.id, packetId: undefined, released: false },
        ],
        awaitingRelease: [77],
      },
    ]);
  });

  it("ids continue after a reopen: a new message never takes the id of a live one", async () => {
    const dir = newDir();
    let db = open(dir);
    let store = new SessionStore(db);
    store.saveSession("c", 1000, undefined);
    const first = [1, 2, 3, 4].map((i) => store.add("c", bareMessage(`m.${i}`)));
    await Promise.all(first.map((a) => a.committed));
    const ids = first.map((a) => a.id);
    expect(new Set(ids).size).toBe(4);
    store.remove(ids[0]!);
    store.remove(ids[2]!);
    ({ db, store } = reopen(dir, db, store));
    const live = store.loadAll()[0]!.messages.map((m) => m.id);
    expect(live).toEqual([ids[1], ids[3]]);
    const next = store.add("c", bareMessage("m.5"));
    await next.committed;
    expect(next.id).toBeGreaterThan(Math.max(...live));
    expect(store.loadAll()[0]!.messages.map((m) => [m.id, m.subject])).toEqual([
      [ids[1], "m.2"],
      [ids[3], "m.4"],
      [next.id, "m.5"],
    ]);
  });

  it("ids are unique across sessions", async () => {
    const db = open(newDir());
    const store = new SessionStore(db);
    const added = ["a", "b", "a", "c", "b"].map((c) => {
      store.saveSession(c, 1000, undefined);
      return store.add(c, bareMessage());
    });
    await Promise.all(added.map((a) => a.committed));
    expect(new Set(added.map((a) => a.id)).size).toBe(5);
  });
});

/** Bytes and rows the store holds, summed by plain SQL (what its counters must equal). */
function held(db: Database.Database): { bytes: number; messages: number; payloads: number } {
  const count = (table: string) =>
    (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
  return {
    bytes: sessionStoreUsage(db),
    messages: count("mqtt_message"),
    payloads: count("mqtt_payload"),
  };
}

describe("SessionStore: a payload stored once", () => {
  it("one source fanned out to 100 sessions is one payload row; it goes with its last reference", async () => {
    const dir = newDir();
    let db = open(dir);
    let store = new SessionStore(db);
    const source = {};
    const m = { ...bareMessage("big"), payload: Buffer.alloc(80 * 1024, 1) };
    const ids: number[] = [];
    for (let i = 0; i < 100; i++) {
      store.saveSession(`c${i}`, 1000, undefined);
      ids.push(store.add(`c${i}`, m, source).id);
    }
    store.flush();
    expect(held(db)).toMatchObject({ messages: 100, payloads: 1 });
    expect(store.bytes).toBe(held(db).bytes);
    // 80 KiB once, and about 50 bytes a session for the message, 50 for the session.
    expect(store.bytes).toBeLessThan(80 * 1024 + 100 * 2 * 64);
    expect((db.prepare("SELECT refs FROM mqtt_payload").get() as { refs: number }).refs).toBe(100);

    for (const id of ids.slice(0, 60)) store.remove(id);
    for (let i = 60; i < 80; i++) store.deleteSession(`c${i}`);
    ({ db, store } = reopen(dir, db, store));
    expect(held(db)).toMatchObject({ messages: 20, payloads: 1 });
    expect(store.bytes).toBe(held(db).bytes);
    expect(store.messages).toBe(20);
    expect(store.loadAll().find((s) => s.clientId === "c99")!.messages[0]!.payload).toEqual(
      m.payload,
    );

    for (let i = 80; i < 99; i++) store.deleteSession(`c${i}`);
    store.remove(ids[99]!);
    store.flush();
    for (const c of ["c99", ...Array.from({ length: 60 }, (_, i) => `c${i}`)]) {
      store.deleteSession(c);
    }
    expect(held(db)).toEqual({ bytes: 0, messages: 0, payloads: 0 });
    expect([store.bytes, store.messages]).toEqual([0, 0]);
  });

  it("per-session parts stay per session: QoS, retain flag, subscription ids", async () => {
    const db = open(newDir());
    const store = new SessionStore(db);
    const source = {};
    const m = fullMessage();
    store.saveSession("a", 1000, undefined);
    store.saveSession("b", 1000, undefined);
    const a = store.add("a", { ...m, qos: 1, retain: false, subscriptionIds: undefined }, source);
    const b = store.add("b", { ...m, qos: 2, retain: true, subscriptionIds: [9] }, source);
    await Promise.all([a.committed, b.committed]);
    expect(held(db).payloads).toBe(1);
    const byId = new Map(store.loadAll().map((s) => [s.clientId, s.messages[0]!]));
    expect(byId.get("a")).toEqual({
      ...m,
      qos: 1,
      retain: false,
      subscriptionIds: undefined,
      id: a.id,
      packetId: undefined,
      released: false,
    });
    expect(byId.get("b")).toEqual({
      ...m,
      qos: 2,
      retain: true,
      subscriptionIds: [9],
      id: b.id,
      packetId: undefined,
      released: false,
    });
  });

  it("counters equal what SQL sums after any mix of adds, sends, removes and deletions (fast-check)", async () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant("add" as const), session: fc.nat(4), share: fc.nat(3) }),
      fc.record({ kind: fc.constant("remove" as const), pick: fc.nat(1000) }),
      fc.record({ kind: fc.constant("sent" as const), pick: fc.nat(1000) }),
      fc.record({ kind: fc.constant("delete" as const), session: fc.nat(4) }),
      fc.record({ kind: fc.constant("flush" as const) }),
      fc.record({
        kind: fc.constant("sub" as const),
        session: fc.nat(4),
        filter: fc.constantFrom("a/#", "b/+/c", "ü/x"),
        drop: fc.boolean(),
      }),
      fc.record({
        kind: fc.constant("inbound" as const),
        session: fc.nat(4),
        id: fc.integer({ min: 1, max: 4 }),
        drop: fc.boolean(),
      }),
      fc.record({ kind: fc.constant("will" as const), session: fc.nat(4), set: fc.boolean() }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 60 }), async (ops) => {
        const db = open(newDir());
        const store = new SessionStore(db);
        const sources = [{}, {}, {}, {}];
        const live: { id: number; session: number }[] = [];
        for (let i = 0; i < 5; i++) store.saveSession(`s${i}`, 1000, undefined);
        for (const o of ops) {
          if (o.kind === "add") {
            const m = { ...bareMessage(`t.${o.share}`), payload: Buffer.alloc(10 + o.share) };
            live.push({
              id: store.add(`s${o.session}`, m, sources[o.share]).id,
              session: o.session,
            });
          } else if (o.kind === "remove" && live.length > 0) {
            store.remove(live.splice(o.pick % live.length, 1)[0]!.id);
          } else if (o.kind === "sent" && live.length > 0) {
            store.markSent(live[o.pick % live.length]!.id, 1, false);
          } else if (o.kind === "delete") {
            store.deleteSession(`s${o.session}`);
            store.saveSession(`s${o.session}`, 1000, undefined);
            for (let i = live.length - 1; i >= 0; i--) {
              if (live[i]!.session === o.session) live.splice(i, 1);
            }
          } else if (o.kind === "flush") store.flush();
          else if (o.kind === "sub" && o.drop) store.deleteSubscription(`s${o.session}`, o.filter);
          else if (o.kind === "sub")
            store.saveSubscription(`s${o.session}`, { ...SUBS[1]!, filter: o.filter });
          else if (o.kind === "inbound" && o.drop)
            store.deleteAwaitingRelease(`s${o.session}`, o.id);
          else if (o.kind === "inbound") store.addAwaitingRelease(`s${o.session}`, o.id);
          else if (o.kind === "will") {
            store.saveWill(
              `s${o.session}`,
              o.set
                ? {
                    subject: "w",
                    payload: Buffer.alloc(o.session * 10),
                    qos: 1,
                    retain: false,
                    properties: undefined,
                    messageExpiryS: undefined,
                    dueAtMs: 5,
                  }
                : undefined,
            );
          }
        }
        store.flush();
        const sql = held(db);
        expect([store.bytes, store.messages]).toEqual([sql.bytes, sql.messages]);
        expect(sql.messages).toBe(live.length);
        // No payload without a row naming it, refs equal to the rows that do.
        const wrong = db
          .prepare(
            "SELECT count(*) AS n FROM mqtt_payload p WHERE refs != (SELECT count(*) FROM mqtt_message m WHERE m.payload_id = p.id) OR refs <= 0",
          )
          .get() as { n: number };
        expect(wrong.n).toBe(0);
        closeDatabase(db);
      }),
      { numRuns: 40 },
    );
  });

  it("addIfRoom refuses past maxBytes, counting a shared payload once", async () => {
    const db = open(newDir());
    const m = { ...bareMessage("q"), payload: Buffer.alloc(1000) };
    // What one message costs with its payload, measured by a first store.
    const probe = new SessionStore(db);
    for (let i = 0; i < 6; i++) probe.saveSession(`s${i}`, 1000, undefined);
    const base = probe.bytes;
    const one = probe.add("s0", m);
    probe.flush();
    const payloadAndRow = probe.bytes - base;
    probe.remove(one.id);
    probe.flush();
    expect(probe.bytes).toBe(base);

    // Room for the payload once and three more rows (client ids of 2 bytes).
    const row = SESSION_MESSAGE_ROW_BYTES + 2;
    const store = new SessionStore(db, { maxBytes: base + payloadAndRow + 3 * row });
    const source = {};
    const results = [];
    for (let i = 0; i < 6; i++) results.push(store.addIfRoom(`s${i}`, m, source) !== undefined);
    expect(results).toEqual([true, true, true, true, false, false]);
    // A new payload (another source) does not fit at all.
    expect(store.addIfRoom("s0", m, {})).toBeUndefined();
    // add (not bounded) still stores: messages that go out at once.
    expect(store.add("s0", m, {}).id).toBeGreaterThan(0);
    store.flush();
    expect(store.bytes).toBe(held(db).bytes);
  });
});

describe("SessionStore: lazy loading", () => {
  it("loadSessions counts each session's queued and in-flight messages without reading them", async () => {
    const dir = newDir();
    let db = open(dir);
    let store = new SessionStore(db);
    store.saveSession("a", 1000, undefined);
    store.saveSession("b", 1000, undefined);
    const added = [1, 2, 3, 4].map((i) => store.add("a", bareMessage(`a.${i}`)));
    store.add("b", { ...bareMessage("bb"), payload: Buffer.alloc(100) });
    store.markSent(added[0]!.id, 1, false);
    ({ db, store } = reopen(dir, db, store));
    const byId = new Map(store.loadSessions().map((s) => [s.clientId, s]));
    expect(byId.get("a")).toMatchObject({ queued: 3, queuedBytes: 3 * 4, inflight: 1 });
    expect(byId.get("b")).toMatchObject({ queued: 1, queuedBytes: 2 + 100, inflight: 0 });
    expect("messages" in byId.get("a")!).toBe(false);
  });

  it("loadQueued reads windows in order after a cursor, unsent only; loadInflight the sent ones", async () => {
    const db = open(newDir());
    const store = new SessionStore(db);
    store.saveSession("c", 1000, undefined);
    const ids = Array.from({ length: 10 }, (_, i) => store.add("c", bareMessage(`m.${i}`)).id);
    store.add("other", bareMessage("x"));
    store.markSent(ids[0]!, 7, false);
    store.markSent(ids[1]!, 8, true);
    // Pending writes are seen (loads flush first).
    expect(store.loadInflight("c").map((m) => [m.subject, m.packetId, m.released])).toEqual([
      ["m.0", 7, false],
      ["m.1", 8, true],
    ]);
    const first = store.loadQueued("c", 0, 3);
    expect(first.map((m) => m.subject)).toEqual(["m.2", "m.3", "m.4"]);
    const next = store.loadQueued("c", first[2]!.id, 100);
    expect(next.map((m) => m.subject)).toEqual(["m.5", "m.6", "m.7", "m.8", "m.9"]);
    expect(store.loadQueued("c", next[4]!.id, 100)).toEqual([]);
  });
});

describe("schema v4 -> v5 migration", () => {
  it("a v4 file written by the v4 code upgrades in place: sessions, messages, wills, retained, outbox", () => {
    const dir = newDir();
    copyFileSync(new URL("../fixtures/v4-sessions.db", import.meta.url), join(dir, DATABASE_FILE));
    const db = open(dir);
    expect(db.pragma("user_version", { simple: true })).toBe(7);
    const store = new SessionStore(db);
    const all = new Map(store.loadAll().map((s) => [s.clientId, s]));
    const base = {
      retain: false,
      receivedAtMs: 1_700_000_000_000,
      expiresAtMs: undefined,
      publisher: "pub-1",
      properties: undefined,
      headers: undefined,
      subscriptionIds: undefined,
      packetId: undefined,
      released: false,
    };
    expect(all.get("dev-1")).toEqual({
      account: "$G",
      clientId: "dev-1",
      expiryMs: 3_600_000,
      disconnectedAtMs: 1_700_000_000_000,
      owner: undefined,
      will: undefined,
      subscriptions: [
        {
          filter: "cmd/dev-1/#",
          qos: 1,
          noLocal: false,
          retainAsPublished: false,
          retainHandling: 0,
          subscriptionId: undefined,
        },
        {
          filter: "$share/g/alarms/+",
          qos: 2,
          noLocal: false,
          retainAsPublished: true,
          retainHandling: 2,
          subscriptionId: 7,
        },
      ],
      awaitingRelease: [42],
      queued: 1,
      queuedBytes: "cmd.dev-1.set".length + 5,
      inflight: 2,
      messages: [
        {
          ...base,
          id: 1,
          subject: "cmd.dev-1.reboot",
          payload: Buffer.from("now"),
          qos: 1,
          packetId: 5,
        },
        {
          ...base,
          id: 2,
          subject: "cmd.dev-1.set",
          payload: Buffer.from([0, 1, 2, 255]),
          qos: 2,
          retain: true,
          expiresAtMs: 1_900_000_000_000,
          subscriptionIds: [7],
          properties: { userProperties: [["k", "v"]] },
          headers: new Map([["k", ["v"]]]),
          packetId: 6,
          released: true,
        },
        { ...base, id: 3, subject: "cmd.dev-1.set", payload: Buffer.from("third"), qos: 1 },
      ],
    });
    expect(all.get("dev-2")).toMatchObject({
      expiryMs: 86_400_000,
      disconnectedAtMs: undefined,
      will: {
        subject: "status.dev-2",
        payload: Buffer.from("gone"),
        qos: 1,
        retain: true,
        properties: { contentType: "text/plain" },
        messageExpiryS: 60,
        dueAtMs: 1_700_000_100_000,
      },
      messages: [
        {
          ...base,
          id: 4,
          subject: "sensors.t",
          payload: Buffer.from("21.5"),
          subscriptionIds: [3],
        },
        { ...base, id: 5, subject: "sensors.t", payload: Buffer.from("21.6"), qos: 2 },
      ],
    });
    // Counted from the migrated rows; new ids after the old ones.
    expect([store.bytes, store.messages]).toEqual([held(db).bytes, 5]);
    expect(store.add("dev-2", bareMessage()).id).toBe(6);
    store.flush();
    const retained = new RetainedStore(db);
    expect(retained.match([">"]).map((r) => [r.subject, r.payload.toString()])).toEqual([
      ["status.dev-1", "online"],
      ["status.dev-3", "gone"],
    ]);
    expect(db.prepare("SELECT subject FROM outbox").all() as { subject: string }[]).toEqual([
      { subject: "sensors.x" },
    ]);
  });
});
