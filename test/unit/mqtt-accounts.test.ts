// The MQTT broker with accounts (issue 13): a connection lives in its login's account, and
// publishes, subscriptions, sessions, retained messages and wills stay there. Driven
// without a network as mqtt-session.test.ts: a Broker on a real AccountSpace, fake
// transports decoded by mqtt-packet, a real Authenticator (scrypt) and a real SQLite store.
import type Database from "better-sqlite3";
import mqtt from "mqtt-packet";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  AccountSpace,
  Authenticator,
  hashPassword,
  ManualClock,
  type PermissionsConfig,
  silentLogger,
  type UserConfig,
} from "../../src/core/index.js";
import type { Connection } from "../../src/mqtt/connection.js";
import { Broker } from "../../src/mqtt/index.js";
import { MetricsRegistry } from "../../src/observe/index.js";
import { RetainedStore, SessionStore } from "../../src/store/index.js";
import { FakeTransport } from "../helpers/fake-transport.js";
import { tempDatabases } from "../helpers/temp-db.js";
import { waitFor } from "../helpers/wait.js";

const OPEN: PermissionsConfig = {
  publish: { allow: [">"], deny: [] },
  subscribe: { allow: [">"], deny: [] },
};

const { newDir, open } = tempDatabases("mqtt-accounts");

let users: UserConfig[];
beforeAll(async () => {
  const hash = await hashPassword("pw");
  users = [
    { user: "g1", password: hash, permissions: null },
    { user: "a1", password: hash, permissions: null, account: "a" },
    { user: "a2", password: hash, permissions: null, account: "a" },
    { user: "b1", password: hash, permissions: null, account: "b" },
  ];
});

/** Lets settled commits run their continuations; no timers involved. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

class Client {
  readonly t = new FakeTransport({ version: 5 });
  readonly conn: Connection;
  constructor(broker: Broker) {
    this.conn = broker.accept(this.t) as Connection;
  }
  send(p: mqtt.Packet): void {
    this.conn.onData(mqtt.generate(p, { protocolVersion: 5 }));
  }
  sent(): string[] {
    return this.t.sent();
  }
  subscribe(messageId: number, topic: string): void {
    this.send({
      cmd: "subscribe",
      messageId,
      subscriptions: [{ topic, qos: 1, nl: false, rap: false, rh: 0 }],
    });
  }
  publish(topic: string, payload: string, retain = false, qos: 0 | 1 = 0): void {
    this.send({
      cmd: "publish",
      topic,
      payload: Buffer.from(payload),
      qos,
      dup: false,
      retain,
      ...(qos === 1 ? { messageId: 1 } : {}),
    });
  }
  /** What was written besides CONNACK and SUBACKs: the deliveries. */
  deliveries(): string[] {
    return this.sent().filter((s) => s.startsWith("publish"));
  }
}

const opened: Client[] = [];
afterEach(() => {
  for (const c of opened.splice(0)) {
    expect(c.t.parseErrors).toEqual([]);
    c.conn.onClose();
  }
});

/**
 * A broker serving $G, a and b (b imports a's `energy.>` under `shared`), on `db`; with
 * `onlyA`, b is no longer configured (neither the account nor its user).
 */
function setup(db: Database.Database, onlyA = false) {
  const space = new AccountSpace({
    accounts: [
      { name: "a", exports: [{ stream: "energy.>" }] },
      ...(onlyA
        ? []
        : [{ name: "b", imports: [{ stream: "energy.>", account: "a", prefix: "shared" }] }]),
    ],
  });
  const auth = new Authenticator({
    users: onlyA ? users.filter((u) => u.account !== "b") : users,
    defaultPermissions: OPEN,
    allowAnonymous: true,
  });
  const metrics = new MetricsRegistry();
  const retained = new RetainedStore(db);
  const sessionStore = new SessionStore(db);
  const broker = new Broker({
    bus: space.account("$G").bus,
    accounts: space,
    auth,
    retained,
    sessionStore,
    log: silentLogger,
    metrics,
    clock: new ManualClock(),
  });

  /** CONNECTs as `user` (undefined: anonymous), waits for CONNACK, expects success. */
  async function connect(
    clientId: string,
    user: string | undefined,
    o: { expiryS?: number; clean?: boolean; will?: mqtt.IConnectPacket["will"] } = {},
  ): Promise<Client> {
    const c = new Client(broker);
    opened.push(c);
    c.send({
      cmd: "connect",
      clientId,
      protocolVersion: 5,
      clean: o.clean ?? true,
      keepalive: 0,
      ...(user !== undefined ? { username: user, password: Buffer.from("pw") } : {}),
      ...(o.expiryS !== undefined ? { properties: { sessionExpiryInterval: o.expiryS } } : {}),
      ...(o.will !== undefined ? { will: o.will } : {}),
    });
    const connack = await waitFor(() => c.sent()[0]);
    expect(connack).toMatch(/^connack rc=0( sp)?$/);
    return c;
  }
  return { broker, space, retained, sessionStore, metrics, connect };
}

describe("MQTT with accounts: isolation", () => {
  it("a publish reaches only its account's subscribers, `#` included; an import crosses with its prefix", async () => {
    const h = setup(open());
    const inA = await h.connect("sub-a", "a2");
    const inB = await h.connect("sub-b", "b1");
    const inG = await h.connect("sub-g", undefined);
    const named = await h.connect("sub-g1", "g1");
    for (const c of [inA, inB, inG, named]) c.subscribe(1, "#");
    const pubA = await h.connect("pub", "a1");
    const pubB = await h.connect("pub", "b1");
    const pubG = await h.connect("pub", undefined);
    pubA.publish("t/1", "from a");
    pubB.publish("t/1", "from b");
    pubG.publish("t/1", "from g");
    pubA.publish("energy/m1", "kwh");
    pubB.publish("energy/m2", "not exported by b");
    await settle();
    expect(inA.deliveries()).toEqual(["publish q0 t/1 from a", "publish q0 energy/m1 kwh"]);
    expect(inB.deliveries()).toEqual([
      "publish q0 t/1 from b",
      "publish q0 shared/energy/m1 kwh",
      "publish q0 energy/m2 not exported by b",
    ]);
    expect(inG.deliveries()).toEqual(["publish q0 t/1 from g"]);
    expect(named.deliveries()).toEqual(["publish q0 t/1 from g"]);
    // Three connections with client id "pub", one per account: none took another over.
    for (const c of [pubA, pubB, pubG]) expect(c.conn.session?.connection).toBe(c.conn);
    expect(h.broker.sessions.get("a", "pub")!.owner).toBe("a1");
    expect(h.broker.sessions.get("b", "pub")!.owner).toBe("b1");
    expect(h.broker.sessions.get("$G", "pub")!.owner).toBe("");
    expect(h.broker.sessions.size).toBe(7);
  });

  it("retained messages are the account's: kept per account, delivered on subscribe in it only", async () => {
    const h = setup(open());
    const pubA = await h.connect("pub-a", "a1");
    const pubG = await h.connect("pub-g", "g1");
    pubA.publish("status/x", "a's", true);
    pubG.publish("status/x", "g's", true);
    await settle();
    expect(h.retained.size).toBe(2);
    expect(
      h.retained
        .forAccount("a")
        .match([">"])
        .map((m) => m.payload.toString()),
    ).toEqual(["a's"]);
    expect(h.retained.match([">"]).map((m) => m.payload.toString())).toEqual(["g's"]);
    expect(h.retained.forAccount("b").match([">"])).toEqual([]);

    const inA = await h.connect("sub-a", "a2");
    const inB = await h.connect("sub-b", "b1");
    const inG = await h.connect("sub-g", undefined);
    for (const c of [inA, inB, inG]) c.subscribe(1, "#");
    await settle();
    expect(inA.deliveries()).toEqual(["publish q0 retain status/x a's"]);
    expect(inB.deliveries()).toEqual([]);
    expect(inG.deliveries()).toEqual(["publish q0 retain status/x g's"]);
  });

  it("a will is published in its owner's account only", async () => {
    const h = setup(open());
    const inA = await h.connect("sub-a", "a2");
    const inB = await h.connect("sub-b", "b1");
    const inG = await h.connect("sub-g", undefined);
    for (const c of [inA, inB, inG]) c.subscribe(1, "#");
    const dying = await h.connect("dev", "a1", {
      will: { topic: "dev/gone", payload: Buffer.from("bye"), qos: 0, retain: true },
    });
    dying.conn.onClose();
    await settle();
    expect(inA.deliveries()).toEqual(["publish q0 dev/gone bye"]);
    expect(inB.deliveries()).toEqual([]);
    expect(inG.deliveries()).toEqual([]);
    expect(h.metrics.value("leafgate_mqtt_wills_published_total")).toBe(1);
    // Retained as the will asked, in a.
    expect(h.retained.forAccount("a").match(["dev.gone"])).toHaveLength(1);
    expect(h.retained.match(["dev.gone"])).toEqual([]);
  });
});

describe("MQTT with accounts: sessions", () => {
  it("the same client id in two accounts is two sessions: neither takes over nor resumes the other", async () => {
    const h = setup(open());
    const inA = await h.connect("dev", "a1", { expiryS: 3600, clean: false });
    inA.subscribe(1, "a/cmd");
    const inB = await h.connect("dev", "b1", { expiryS: 3600, clean: false });
    expect(inB.sent()[0]).toBe("connack rc=0");
    expect(inA.t.ended).toBe(false);
    const a = h.broker.sessions.get("a", "dev")!;
    const b = h.broker.sessions.get("b", "dev")!;
    expect(a).not.toBe(b);
    expect([...a.subscriptions.keys()]).toEqual(["a/cmd"]);
    expect([...b.subscriptions.keys()]).toEqual([]);
    // Within an account the session is still its user's.
    const c = new Client(h.broker);
    opened.push(c);
    c.send({
      cmd: "connect",
      clientId: "dev",
      protocolVersion: 5,
      clean: false,
      keepalive: 0,
      username: "a2",
      password: Buffer.from("pw"),
    });
    expect(await waitFor(() => c.sent()[0])).toBe("connack rc=135");
    expect(inA.t.ended).toBe(false);
  });

  it("persistent sessions are stored with their account and restored into it", async () => {
    const dir = newDir();
    const db = open(dir);
    const first = setup(db);
    const inA = await first.connect("dev", "a1", { expiryS: 3600, clean: false });
    inA.subscribe(1, "a/only");
    const inB = await first.connect("dev", "b1", { expiryS: 3600, clean: false });
    inB.subscribe(1, "b/only");
    await settle();
    inA.conn.onClose();
    inB.conn.onClose();
    first.sessionStore.flush();
    expect(
      first.sessionStore
        .loadSessions()
        .map((s) => [s.account, s.clientId, s.owner, s.subscriptions.map((x) => x.filter)]),
    ).toEqual([
      ["a", "dev", "a1", ["a/only"]],
      ["b", "dev", "b1", ["b/only"]],
    ]);

    // A second broker on the same database (a restart).
    const second = setup(db);
    second.broker.restoreSessions();
    expect(second.broker.sessions.size).toBe(2);
    const pubA = await second.connect("p", "a2");
    const pubB = await second.connect("p", "b1");
    pubA.publish("b/only", "a's b/only", false, 1);
    pubA.publish("a/only", "for a", false, 1);
    pubB.publish("a/only", "b's a/only", false, 1);
    pubB.publish("b/only", "for b", false, 1);
    await settle();
    const backA = await second.connect("dev", "a1", { expiryS: 3600, clean: false });
    const backB = await second.connect("dev", "b1", { expiryS: 3600, clean: false });
    await settle();
    expect(backA.sent()[0]).toBe("connack rc=0 sp");
    expect(backB.sent()[0]).toBe("connack rc=0 sp");
    expect(backA.deliveries()).toEqual(["publish q1 #1 a/only for a"]);
    expect(backB.deliveries()).toEqual(["publish q1 #1 b/only for b"]);
  });

  it("sessions of an account no longer configured stay in the store, not restored", async () => {
    const db = open(newDir());
    const first = setup(db);
    for (const user of ["a1", "b1"]) {
      const c = await first.connect("dev", user, { expiryS: 3600, clean: false });
      c.conn.onClose();
    }
    first.sessionStore.flush();
    const second = setup(db, true);
    second.broker.restoreSessions();
    expect(second.broker.sessions.size).toBe(1);
    expect(second.broker.sessions.get("a", "dev")).toBeDefined();
    expect(second.sessionStore.loadSessions().map((s) => [s.account, s.clientId])).toEqual([
      ["a", "dev"],
      ["b", "dev"],
    ]);
  });

  it("a will whose owner is no longer configured is not published, and is counted", async () => {
    const db = open(newDir());
    const first = setup(db);
    const c = await first.connect("dev", "b1", {
      expiryS: 3600,
      clean: false,
      will: {
        topic: "dev/gone",
        payload: Buffer.from("bye"),
        qos: 0,
        retain: false,
        properties: { willDelayInterval: 600 },
      },
    });
    c.conn.onClose();
    first.sessionStore.flush();
    // Next run: b is gone; its session is not restored, so its will stays on disk.
    const second = setup(db, true);
    second.broker.restoreSessions();
    const kept = second.sessionStore.loadSessions().find((s) => s.account === "b")!;
    expect(kept.will?.subject).toBe("dev.gone");
    // Were it published (the account back without the user, say), it would go nowhere.
    second.broker.publishWill("b", "dev", {
      subject: "dev.gone",
      payload: Buffer.from("bye"),
      qos: 0,
      retain: false,
      properties: undefined,
      messageExpiryS: undefined,
      owner: "b1",
      delayMs: 0,
    });
    expect(second.metrics.value("leafgate_mqtt_denied_total", { kind: "will" })).toBe(1);
    expect(second.metrics.value("leafgate_mqtt_wills_published_total")).toBe(0);
  });
});
