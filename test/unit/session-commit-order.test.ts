// What a persistent session sends never runs ahead of what is on disk: the session store's
// afterCommit (src/store/sessions.ts) on a real SQLite file, and a Broker with that store
// (src/mqtt/session.ts) driven through fake transports whose bytes mqtt-packet decodes. A
// PUBLISH goes out after the batch that records its packet id, a PUBREL after the one that
// records the PUBREC, and later writes of the session (QoS 0 too) keep their order behind
// them; a session that is not stored writes at once. e2e/mqtt-kill9.test.ts shows the same
// with kill -9 on the bundle.
import type Database from "better-sqlite3";
import mqtt from "mqtt-packet";
import { afterEach, describe, expect, it } from "vitest";
import { Bus, type Envelope, silentLogger } from "../../src/core/index.js";
import type { Connection } from "../../src/mqtt/connection.js";
import { Broker, type BrokerOptions } from "../../src/mqtt/index.js";
import { MetricsRegistry } from "../../src/observe/index.js";
import {
  closeDatabase,
  type NewStoredMessage,
  openDatabase,
  SessionStore,
} from "../../src/store/index.js";
import { FakeTransport } from "../helpers/fake-transport.js";
import { type TempDir, tempDir } from "../helpers/wait.js";

let temps: TempDir[] = [];
let dbs: Database.Database[] = [];

afterEach(async () => {
  for (const db of dbs) if (db.open) closeDatabase(db);
  dbs = [];
  await Promise.all(temps.map((t) => t.cleanup()));
  temps = [];
});

function newStore(): { db: Database.Database; store: SessionStore } {
  const dir = tempDir("commit-order");
  temps.push(dir);
  const db = openDatabase(dir.path, "normal");
  dbs.push(db);
  return { db, store: new SessionStore(db) };
}

const message: NewStoredMessage = {
  subject: "a.b",
  payload: Buffer.from("x"),
  qos: 1,
  retain: false,
  receivedAtMs: 1,
  expiresAtMs: undefined,
  publisher: undefined,
  properties: undefined,
  headers: undefined,
  subscriptionIds: undefined,
};

describe("SessionStore.afterCommit", () => {
  it("runs at once with nothing pending, else after the batch commits, in order", () => {
    const { db, store } = newStore();
    const events: string[] = [];
    store.afterCommit(() => events.push("idle"));
    store.saveSession("c", 1000, undefined);
    store.add("c", message);
    store.afterCommit(() => {
      const n = db.prepare("SELECT count(*) AS n FROM mqtt_message").get() as { n: number };
      events.push(`first, rows ${n.n}`);
      // Nothing pending while the batch's callbacks run: behind the rest of them.
      store.afterCommit(() => events.push("added while running"));
    });
    store.afterCommit(() => events.push("second"));
    expect(events).toEqual(["idle"]);
    store.flush();
    expect(events).toEqual(["idle", "first, rows 1", "second", "added while running"]);
  });

  it("a callback that writes waits for the next batch", () => {
    const { store } = newStore();
    const events: string[] = [];
    store.saveSession("c", 1000, undefined);
    const { id } = store.add("c", message);
    store.afterCommit(() => {
      store.markSent(id, 1, false);
      store.afterCommit(() => events.push("after its own commit"));
      events.push("first");
    });
    store.flush();
    expect(events).toEqual(["first"]);
    store.flush();
    expect(events).toEqual(["first", "after its own commit"]);
  });

  it("still runs when the commit fails: the session carries on in memory", async () => {
    const { db, store } = newStore();
    store.saveSession("c", 1000, undefined);
    const row = store.add("c", message);
    const events: string[] = [];
    store.afterCommit(() => events.push("ran"));
    db.close();
    store.flush();
    expect(events).toEqual(["ran"]);
    await expect(row.committed).rejects.toThrow();
  });
});

describe("a persistent session's writes wait for the session store", () => {
  function setup(options: Partial<BrokerOptions> = {}) {
    const { store } = newStore();
    const bus = new Bus();
    const broker = new Broker({
      bus,
      options,
      log: silentLogger,
      metrics: new MetricsRegistry(),
      sessionStore: store,
    });
    const connect = (clientId: string, expiryS: number) => {
      const t = new FakeTransport({ version: 5 });
      const conn = broker.accept(t) as Connection;
      const send = (p: mqtt.Packet) => conn.onData(mqtt.generate(p, { protocolVersion: 5 }));
      send({
        cmd: "connect",
        clientId,
        protocolVersion: 5,
        clean: true,
        keepalive: 0,
        ...(expiryS > 0 ? { properties: { sessionExpiryInterval: expiryS } } : {}),
      });
      send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "a/#", qos: 2 }] });
      t.clear();
      return { t, send };
    };
    const publish = (payload: string, qos: 0 | 1 | 2) => {
      const m: Envelope = {
        subject: "a.b",
        payload: Buffer.from(payload),
        receivedAtMs: Date.now(),
        origin: "internal",
        qos,
      };
      void bus.publish(m).catch(() => {});
    };
    return { store, connect, publish };
  }

  it("PUBLISH after its packet id is committed; a QoS 0 behind it does not overtake it", () => {
    const { store, connect, publish } = setup();
    const stored = connect("stored", 300);
    const plain = connect("plain", 0);
    publish("m1", 1);
    publish("m2", 0);
    expect(stored.t.sent()).toEqual([]);
    expect(plain.t.sent()).toEqual(["publish q1 #1 a/b m1", "publish q0 a/b m2"]);
    store.flush();
    expect(stored.t.sent()).toEqual(["publish q1 #1 a/b m1", "publish q0 a/b m2"]);
    // Nothing held any more: a QoS 0 goes at once.
    publish("m3", 0);
    expect(stored.t.sent().at(-1)).toBe("publish q0 a/b m3");
  });

  it("PUBREL after the PUBREC is committed", () => {
    const { store, connect, publish } = setup();
    const s = connect("stored", 300);
    publish("m", 2);
    store.flush();
    expect(s.t.sent()).toEqual(["publish q2 #1 a/b m"]);
    s.send({ cmd: "pubrec", messageId: 1 });
    expect(s.t.sent()).toEqual(["publish q2 #1 a/b m"]);
    store.flush();
    expect(s.t.sent()).toEqual(["publish q2 #1 a/b m", "pubrel 1"]);
  });

  it("deliveries waiting for the commit count as unsent: past the soft mark the rest wait, then follow", () => {
    // max_outbound_bytes 800: the soft mark is 100 bytes; each delivery is about 43.
    const { store, connect, publish } = setup({ maxOutboundBytes: 800 });
    const s = connect("stored", 300);
    const payloads = ["1", "2", "3", "4", "5"].map((d) => d.repeat(40));
    for (const p of payloads) publish(p, 1);
    store.flush();
    // Three were decided on before 100 bytes were reserved; each written one makes room.
    expect(s.t.sent()).toEqual(payloads.slice(0, 3).map((p, i) => `publish q1 #${i + 1} a/b ${p}`));
    store.flush();
    expect(s.t.sent()).toEqual(payloads.map((p, i) => `publish q1 #${i + 1} a/b ${p}`));
  });
});
