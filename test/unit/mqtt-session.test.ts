// The server side of MQTT sessions (src/mqtt/session.ts), driven without a network as in
// mqtt-connection.test.ts: a Broker on a real Bus, fake transports whose written bytes are
// decoded by mqtt-packet (a parser we did not write) at the client's protocol version, and
// client packets made by mqtt-packet's generator. Overlapping subscriptions, No Local,
// shared subscriptions, the outbound window and its queue, acks of the wrong kind, and
// takeover / resume with DUP.
import mqtt from "mqtt-packet";
import { afterEach, describe, expect, it } from "vitest";
import { Bus, type Envelope, ManualClock, silentLogger } from "../../src/core/index.js";
import type { Connection } from "../../src/mqtt/connection.js";
import { Broker, type BrokerOptions } from "../../src/mqtt/index.js";
import { MetricsRegistry } from "../../src/observe/index.js";
import { FakeTransport } from "../helpers/fake-transport.js";

type Version = 4 | 5;

/** Lets settled commits run their continuations (acks); no timers involved. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

interface ConnectOptions {
  readonly v?: Version;
  readonly clean?: boolean;
  /** MQTT 5 Session Expiry Interval. */
  readonly expiryS?: number;
  /** MQTT 5 Receive Maximum. */
  readonly receiveMaximum?: number;
  readonly will?: mqtt.IConnectPacket["will"];
}

class Client {
  readonly t: FakeTransport;
  readonly conn: Connection;
  readonly v: Version;

  constructor(broker: Broker, v: Version) {
    this.v = v;
    this.t = new FakeTransport({ version: v });
    this.conn = broker.accept(this.t) as Connection;
  }

  send(p: mqtt.Packet): void {
    this.conn.onData(mqtt.generate(p, { protocolVersion: this.v }));
  }
  sent(): string[] {
    return this.t.sent();
  }
  /** What was written after the first `from` packets. */
  since(from: number): string[] {
    return this.t.sent().slice(from);
  }
  subscribe(
    messageId: number,
    subs: { topic: string; qos: 0 | 1 | 2; nl?: boolean }[],
    subscriptionId?: number,
  ): void {
    this.send({
      cmd: "subscribe",
      messageId,
      subscriptions: subs.map((s) => ({ ...s, nl: s.nl ?? false, rap: false, rh: 0 })),
      ...(subscriptionId !== undefined
        ? { properties: { subscriptionIdentifier: subscriptionId } }
        : {}),
    });
  }
  publish(topic: string, payload: string, qos: 0 | 1 | 2 = 0, messageId = 1): void {
    this.send({
      cmd: "publish",
      topic,
      payload: Buffer.from(payload),
      qos,
      dup: false,
      retain: false,
      ...(qos > 0 ? { messageId } : {}),
    });
  }
  ack(cmd: "puback" | "pubrec" | "pubrel" | "pubcomp", messageId: number): void {
    this.send({ cmd, messageId } as mqtt.Packet);
  }
}

const opened: Client[] = [];

function setup(options: Partial<BrokerOptions> = {}) {
  const bus = new Bus();
  const metrics = new MetricsRegistry();
  const clock = new ManualClock();
  const broker = new Broker({ bus, options, log: silentLogger, metrics, clock });

  /** Opens a connection and completes CONNECT; expects CONNACK success. */
  function connect(clientId: string, o: ConnectOptions = {}): Client {
    const v = o.v ?? 5;
    const c = new Client(broker, v);
    opened.push(c);
    const properties: Record<string, number> = {};
    if (o.expiryS !== undefined) properties.sessionExpiryInterval = o.expiryS;
    if (o.receiveMaximum !== undefined) properties.receiveMaximum = o.receiveMaximum;
    c.send({
      cmd: "connect",
      clientId,
      protocolVersion: v,
      clean: o.clean ?? true,
      keepalive: 0,
      ...(v === 5 && Object.keys(properties).length > 0 ? { properties } : {}),
      ...(o.will !== undefined ? { will: o.will } : {}),
    });
    expect(c.sent()[0]).toMatch(/^connack rc=0( sp)?$/);
    return c;
  }

  /** Publishes on the bus as a local (non-MQTT) publisher would. */
  function publish(subject: string, payload: string, qos: 0 | 1 | 2): Promise<void> {
    const message: Envelope = {
      subject,
      payload: Buffer.from(payload),
      receivedAtMs: Date.now(),
      origin: "internal",
      qos,
    };
    return bus.publish(message);
  }

  const dropped = (reason: string) =>
    metrics.value("leafgate_mqtt_messages_dropped_total", { reason });

  return { bus, broker, clock, metrics, connect, publish, dropped };
}

afterEach(() => {
  for (const c of opened.splice(0)) {
    expect(c.t.parseErrors, "the server wrote something mqtt-packet cannot parse").toEqual([]);
    c.conn.onClose();
  }
});

// -- overlapping subscriptions ------------------------------------------------------------

describe("overlapping subscriptions", () => {
  it("MQTT 5: one copy at the highest QoS, with every matching Subscription Identifier [MQTT-3.3.4-3]", async () => {
    const h = setup();
    const c = h.connect("over");
    c.subscribe(1, [{ topic: "a/+", qos: 0 }], 1);
    c.subscribe(2, [{ topic: "a/#", qos: 2 }], 2);
    c.subscribe(3, [{ topic: "a/b", qos: 1 }]);
    c.subscribe(4, [{ topic: "+/b", qos: 1 }], 268_435_455);
    expect(c.sent().slice(1)).toEqual([
      "suback 1 [0]",
      "suback 2 [2]",
      "suback 3 [1]",
      "suback 4 [1]",
    ]);

    await h.publish("a.b", "all four", 2);
    await h.publish("a.b", "at q1", 1);
    await h.publish("a.c", "two", 2);
    await h.publish("a", "parent", 2);
    await h.publish("x.b", "one", 2);
    await h.publish("a.b.c", "deep", 0);
    expect(c.since(5)).toEqual([
      "publish q2 #1 a/b all four ids=1,2,268435455",
      "publish q1 #2 a/b at q1 ids=1,2,268435455",
      "publish q2 #3 a/c two ids=1,2",
      "publish q2 #4 a parent ids=2",
      "publish q1 #5 x/b one ids=268435455",
      "publish q0 a/b/c deep ids=2",
    ]);
  });

  it("MQTT 3.1.1: one copy at the highest QoS [MQTT-3.3.5-1]", async () => {
    const h = setup();
    const c = h.connect("over4", { v: 4 });
    c.subscribe(1, [
      { topic: "a/+", qos: 0 },
      { topic: "a/#", qos: 1 },
      { topic: "#", qos: 2 },
    ]);
    await h.publish("a.b", "m", 2);
    await h.publish("z", "only #", 1);
    expect(c.since(2)).toEqual(["publish q2 #1 a/b m", "publish q1 #2 z only #"]);
  });

  it("unsubscribing one of them leaves the other's QoS and identifier", async () => {
    const h = setup();
    const c = h.connect("over-u");
    c.subscribe(1, [{ topic: "a/+", qos: 1 }], 1);
    c.subscribe(2, [{ topic: "a/#", qos: 2 }], 2);
    c.send({ cmd: "unsubscribe", messageId: 3, unsubscriptions: ["a/#"] });
    await h.publish("a.b", "m", 2);
    expect(c.since(4)).toEqual(["publish q1 #1 a/b m ids=1"]);
  });
});

// -- No Local -------------------------------------------------------------------------------

describe("No Local [MQTT-3.8.3-3]", () => {
  it("a client's own messages do not come back on a No Local subscription; others' do", async () => {
    const h = setup();
    const me = h.connect("me");
    const other = h.connect("other");
    me.subscribe(1, [{ topic: "t/#", qos: 1, nl: true }], 5);
    other.subscribe(1, [{ topic: "t/#", qos: 1 }]);
    me.publish("t/mine", "from me", 1, 10);
    await settle();
    other.publish("t/theirs", "from other", 1, 20);
    await settle();
    expect(me.since(1)).toEqual([
      "suback 1 [1]",
      "puback 10",
      "publish q1 #1 t/theirs from other ids=5",
    ]);
    expect(other.since(1)).toEqual([
      "suback 1 [1]",
      "publish q1 #1 t/mine from me",
      // Delivered as it is published; the PUBACK waits for the (empty) commit.
      "publish q1 #2 t/theirs from other",
      "puback 20",
    ]);
  });

  it("an overlapping subscription without No Local still delivers, with only its own identifier", async () => {
    const h = setup();
    const me = h.connect("me2");
    me.subscribe(1, [{ topic: "t/#", qos: 2, nl: true }], 1);
    me.subscribe(2, [{ topic: "t/x", qos: 1 }], 2);
    me.publish("t/x", "own", 0);
    me.publish("t/y", "own, no-local only", 0);
    await settle();
    await h.publish("t.y", "marker", 2);
    expect(me.since(3)).toEqual(["publish q0 t/x own ids=2", "publish q2 #1 t/y marker ids=1"]);
  });

  it("holds for the client id, across a new connection of the same session", async () => {
    const h = setup();
    const first = h.connect("me3", { clean: false, expiryS: 60 });
    first.subscribe(1, [{ topic: "t/#", qos: 1, nl: true }]);
    first.conn.onClose();
    const again = h.connect("me3", { clean: false, expiryS: 60 });
    expect(again.sent()[0]).toBe("connack rc=0 sp");
    again.publish("t/a", "own", 1, 7);
    await settle();
    await h.publish("t.b", "marker", 1);
    expect(again.since(1)).toEqual(["puback 7", "publish q1 #1 t/b marker"]);
  });
});

// -- shared subscriptions -------------------------------------------------------------------

describe("shared subscriptions", () => {
  it("each message goes to one member, round robin; a plain subscriber gets every message", async () => {
    const h = setup();
    const members = [
      h.connect("s1"),
      h.connect("s2"),
      // Members may be on different protocol versions.
      h.connect("s3", { v: 4 }),
    ];
    for (const m of members) m.subscribe(1, [{ topic: "$share/g/job/+", qos: 1 }]);
    const plain = h.connect("plain", { v: 4 });
    plain.subscribe(1, [{ topic: "job/+", qos: 1 }]);
    for (const m of members) expect(m.sent()).toEqual(["connack rc=0", "suback 1 [1]"]);

    const N = 9;
    for (let i = 0; i < N; i++) await h.publish(`job.${i}`, `m${i}`, 1);

    const got = members.map((m) => m.since(2).map((line) => line.split(" ").at(-1)!));
    // Exactly once across the group.
    expect(got.flat().sort()).toEqual(Array.from({ length: N }, (_, i) => `m${i}`).sort());
    // Round robin: three each, and message i goes where message i+3 goes.
    expect(got.map((g) => g.length)).toEqual([3, 3, 3]);
    const owner = (i: number) => got.findIndex((g) => g.includes(`m${i}`));
    for (let i = 0; i + 3 < N; i++) expect(owner(i + 3)).toBe(owner(i));
    expect(new Set([owner(0), owner(1), owner(2)]).size).toBe(3);
    // Each member's share arrives in publish order, with its own packet ids.
    for (const g of got)
      expect(g).toEqual([...g].sort((a, b) => Number(a.slice(1)) - Number(b.slice(1))));
    expect(members[0]!.since(2)[0]).toMatch(/^publish q1 #1 job\/\d m\d$/);

    expect(plain.since(2)).toEqual(
      Array.from({ length: N }, (_, i) => `publish q1 #${i + 1} job/${i} m${i}`),
    );
  });

  it("a member that leaves the group gets no more; the others share everything", async () => {
    const h = setup();
    const a = h.connect("sa");
    const b = h.connect("sb");
    a.subscribe(1, [{ topic: "$share/g/q", qos: 0 }]);
    b.subscribe(1, [{ topic: "$share/g/q", qos: 0 }]);
    a.send({ cmd: "unsubscribe", messageId: 2, unsubscriptions: ["$share/g/q"] });
    for (let i = 0; i < 4; i++) await h.publish("q", `m${i}`, 0);
    expect(a.since(3)).toEqual([]);
    expect(b.since(2)).toEqual([
      "publish q0 q m0",
      "publish q0 q m1",
      "publish q0 q m2",
      "publish q0 q m3",
    ]);
  });

  it("shares the load with other bus queue subscribers of the same group name", async () => {
    const h = setup();
    const mqttMember = h.connect("m1");
    mqttMember.subscribe(1, [{ topic: "$share/workers/jobs/#", qos: 0 }]);
    // What a local NATS queue subscriber in group "workers" is on the bus.
    const natsGot: string[] = [];
    h.bus.subscribe(
      "jobs.>",
      {
        deliver: (m) => {
          natsGot.push(Buffer.from(m.payload).toString());
          return undefined;
        },
      },
      "workers",
    );
    const N = 6;
    for (let i = 0; i < N; i++) await h.publish(`jobs.${i}`, `m${i}`, 0);
    const mqttGot = mqttMember.since(2).map((line) => line.split(" ").at(-1)!);
    expect(mqttGot.length + natsGot.length).toBe(N);
    expect([...mqttGot, ...natsGot].sort()).toEqual(
      Array.from({ length: N }, (_, i) => `m${i}`).sort(),
    );
    expect(mqttGot).toHaveLength(N / 2);
    expect(natsGot).toHaveLength(N / 2);
  });

  it("two groups on one filter each get every message once", async () => {
    const h = setup();
    const g1 = [h.connect("g1a"), h.connect("g1b")];
    const g2 = [h.connect("g2a")];
    for (const c of g1) c.subscribe(1, [{ topic: "$share/one/x/#", qos: 0 }]);
    for (const c of g2) c.subscribe(1, [{ topic: "$share/two/x/#", qos: 0 }]);
    for (let i = 0; i < 6; i++) await h.publish(`x.${i}`, `m${i}`, 0);
    const count = (cs: Client[]) => cs.reduce((n, c) => n + c.since(2).length, 0);
    expect(count(g1)).toBe(6);
    expect(count(g2)).toBe(6);
  });
});

// -- the outbound window ---------------------------------------------------------------------

describe("outbound window and queue", () => {
  it("the client's smaller Receive Maximum is the window; the queue keeps order; maxQueued drops the newest", async () => {
    const h = setup({ maxInflight: 5, maxQueued: 2 });
    const c = h.connect("win", { receiveMaximum: 2 });
    c.subscribe(1, [{ topic: "w/+", qos: 1 }]);
    for (let i = 1; i <= 5; i++) await h.publish(`w.${i}`, `m${i}`, 1);
    expect(c.since(2)).toEqual(["publish q1 #1 w/1 m1", "publish q1 #2 w/2 m2"]);
    expect(h.dropped("queue-full")).toBe(1);
    expect(h.broker.sessions.get("$G", "win")!.owed.queuedCount).toBe(2);

    // QoS 0 is not held by the window.
    await h.publish("w.0", "q0", 0);
    expect(c.since(4)).toEqual(["publish q0 w/0 q0"]);

    c.ack("puback", 2);
    expect(c.since(5)).toEqual(["publish q1 #3 w/3 m3"]);
    c.ack("puback", 1);
    expect(c.since(6)).toEqual(["publish q1 #4 w/4 m4"]);
    c.ack("puback", 3);
    c.ack("puback", 4);
    // m5 was the one dropped; the queue is empty and new messages go straight out.
    await h.publish("w.6", "m6", 1);
    expect(c.since(7)).toEqual(["publish q1 #5 w/6 m6"]);
    expect(h.dropped("queue-full")).toBe(1);
  });

  it("maxSessionQueuedBytes bounds the queue by subject + payload bytes; what goes out at once is not queued", async () => {
    // Each message: subject "w.n" (3 bytes) + 7 bytes of payload = 10 bytes.
    const h = setup({ maxInflight: 1, maxSessionQueuedBytes: 25 });
    const c = h.connect("qb", { v: 4 });
    c.subscribe(1, [{ topic: "w/+", qos: 1 }]);
    for (let i = 1; i <= 5; i++) await h.publish(`w.${i}`, `message`, 1);
    // One in flight, two queued (20 bytes), the fourth and fifth would make 30.
    expect(c.since(2)).toEqual(["publish q1 #1 w/1 message"]);
    expect(h.dropped("queue-full")).toBe(2);
    expect(h.broker.sessions.get("$G", "qb")!.owed.queuedBytes).toBe(20);
    c.ack("puback", 1);
    expect(h.broker.sessions.get("$G", "qb")!.owed.queuedBytes).toBe(10);
    await h.publish("w.6", "message", 1);
    expect(h.broker.sessions.get("$G", "qb")!.owed.queuedBytes).toBe(20);
    c.ack("puback", 2);
    c.ack("puback", 3);
    c.ack("puback", 4);
    expect(c.since(2).map((l) => l.split(" ")[3])).toEqual(["w/1", "w/2", "w/3", "w/6"]);
    expect(h.broker.sessions.get("$G", "qb")!.owed.queuedBytes).toBe(0);
    expect(h.dropped("queue-full")).toBe(2);
  });

  it("maxInflight is the window when it is smaller than the client's Receive Maximum", async () => {
    const h = setup({ maxInflight: 1, maxQueued: 10 });
    const c = h.connect("win2", { receiveMaximum: 100 });
    c.subscribe(1, [{ topic: "w", qos: 1 }]);
    for (let i = 1; i <= 3; i++) await h.publish("w", `m${i}`, 1);
    expect(c.since(2)).toEqual(["publish q1 #1 w m1"]);
    c.ack("puback", 1);
    c.ack("puback", 2);
    expect(c.since(2)).toEqual(["publish q1 #1 w m1", "publish q1 #2 w m2", "publish q1 #3 w m3"]);
  });

  it("QoS 2 holds its place in the window until PUBCOMP, not PUBREC [MQTT-4.9.0-2]", async () => {
    const h = setup({ maxInflight: 1 });
    const c = h.connect("win3", { v: 4 });
    c.subscribe(1, [{ topic: "w", qos: 2 }]);
    await h.publish("w", "m1", 2);
    await h.publish("w", "m2", 2);
    expect(c.since(2)).toEqual(["publish q2 #1 w m1"]);
    c.ack("pubrec", 1);
    expect(c.since(3)).toEqual(["pubrel 1"]);
    c.ack("pubcomp", 1);
    expect(c.since(4)).toEqual(["publish q2 #2 w m2"]);
  });

  it("a PUBREC with an error code ends a QoS 2 exchange and frees its place", async () => {
    const h = setup({ maxInflight: 1 });
    const c = h.connect("win4");
    c.subscribe(1, [{ topic: "w", qos: 2 }]);
    await h.publish("w", "m1", 2);
    await h.publish("w", "m2", 2);
    c.send({ cmd: "pubrec", messageId: 1, reasonCode: 0x80 });
    // No PUBREL for a refused message; the next one goes.
    expect(c.since(3)).toEqual(["publish q2 #2 w m2"]);
  });

  it("while offline, QoS 1/2 are queued up to maxQueued and QoS 0 is not queued", async () => {
    const h = setup({ maxQueued: 2 });
    const c = h.connect("off", { v: 4, clean: false });
    c.subscribe(1, [{ topic: "o", qos: 2 }]);
    c.conn.onClose();
    await h.publish("o", "q0", 0);
    await h.publish("o", "a", 1);
    await h.publish("o", "b", 2);
    await h.publish("o", "c", 1);
    expect(h.dropped("queue-full")).toBe(1);
    const back = h.connect("off", { v: 4, clean: false });
    expect(back.sent()).toEqual(["connack rc=0 sp", "publish q1 #1 o a", "publish q2 #2 o b"]);
  });
});

// -- acknowledgements -----------------------------------------------------------------------

describe("acknowledgements of the wrong kind are ignored", () => {
  /** A client with window 1 and a message queued behind the one in flight. */
  async function inflight(qos: 1 | 2, v: Version = 5) {
    const h = setup({ maxInflight: 1 });
    const c = h.connect(`ack-${qos}-${v}`, { v });
    c.subscribe(1, [{ topic: "k", qos }]);
    await h.publish("k", "first", qos);
    await h.publish("k", "second", qos);
    expect(c.since(2)).toEqual([`publish q${qos} #1 k first`]);
    return { h, c };
  }

  it.each([4, 5] as const)("v%i: PUBCOMP for a QoS 1 message: still in flight", async (v) => {
    const { c } = await inflight(1, v);
    c.ack("pubcomp", 1);
    expect(c.since(3)).toEqual([]);
    c.ack("puback", 1);
    expect(c.since(3)).toEqual(["publish q1 #2 k second"]);
  });

  it.each([4, 5] as const)(
    "v%i: PUBREC for a QoS 1 message: no PUBREL, still in flight",
    async (v) => {
      const { c } = await inflight(1, v);
      c.ack("pubrec", 1);
      expect(c.since(3)).toEqual([]);
      c.ack("puback", 1);
      expect(c.since(3)).toEqual(["publish q1 #2 k second"]);
    },
  );

  it.each([4, 5] as const)("v%i: PUBACK for a QoS 2 message: still in flight", async (v) => {
    const { c } = await inflight(2, v);
    c.ack("puback", 1);
    expect(c.since(3)).toEqual([]);
    c.ack("pubrec", 1);
    c.ack("pubcomp", 1);
    expect(c.since(3)).toEqual(["pubrel 1", "publish q2 #2 k second"]);
  });

  it.each([4, 5] as const)(
    "v%i: PUBCOMP for a QoS 2 message before its PUBREC: still unacknowledged [MQTT-4.3.3-2]",
    async (v) => {
      const { c } = await inflight(2, v);
      c.ack("pubcomp", 1);
      // The PUBLISH stays unacknowledged until PUBREC; no PUBREL was sent to complete.
      expect(c.since(3)).toEqual([]);
      c.ack("pubrec", 1);
      expect(c.since(3)).toEqual(["pubrel 1"]);
      c.ack("pubcomp", 1);
      expect(c.since(3)).toEqual(["pubrel 1", "publish q2 #2 k second"]);
    },
  );

  it("acks for unknown packet ids change nothing; a repeated PUBREC gets PUBREL again", async () => {
    const { c } = await inflight(2);
    for (const cmd of ["puback", "pubrec", "pubcomp"] as const) c.ack(cmd, 999);
    expect(c.since(3)).toEqual([]);
    c.ack("pubrec", 1);
    c.ack("pubrec", 1);
    expect(c.since(3)).toEqual(["pubrel 1", "pubrel 1"]);
    c.ack("pubcomp", 1);
    c.ack("pubcomp", 1); // a second one: nothing more
    expect(c.since(3)).toEqual(["pubrel 1", "pubrel 1", "publish q2 #2 k second"]);
    expect(c.t.ended).toBe(false);
  });
});

// -- takeover and resume ---------------------------------------------------------------------

describe("takeover and resume", () => {
  describe.each([
    ["3.1.1 clean session 0", { v: 4, clean: false }],
    ["5.0 clean start 0, expiry 60 s", { v: 5, clean: false, expiryS: 60 }],
  ] as const)("%s", (_name, opts) => {
    it("a second connection takes over; unacked messages are resent first with DUP and their ids, PUBREL where PUBREC came [MQTT-4.4.0-1]", async () => {
      const h = setup({ maxInflight: 3 });
      const first = h.connect("dev", opts);
      first.subscribe(1, [{ topic: "d/+", qos: 2 }]);
      await h.publish("d.1", "m1", 1);
      await h.publish("d.2", "m2", 2);
      await h.publish("d.3", "m3", 1);
      await h.publish("d.4", "m4", 1); // queued: the window is 3
      first.ack("pubrec", 2);
      expect(first.since(2)).toEqual([
        "publish q1 #1 d/1 m1",
        "publish q2 #2 d/2 m2",
        "publish q1 #3 d/3 m3",
        "pubrel 2",
      ]);

      const second = h.connect("dev", opts);
      // The old connection is closed; MQTT 5 tells it why [MQTT-3.1.4-3].
      expect(first.t.ended).toBe(true);
      expect(first.since(6)).toEqual(opts.v === 5 ? ["disconnect 0x8e"] : []);
      expect(second.sent()).toEqual([
        "connack rc=0 sp",
        "publish q1 #1 dup d/1 m1",
        "pubrel 2",
        "publish q1 #3 dup d/3 m3",
      ]);
      // The old socket's close comes later and must not detach the new connection.
      first.conn.onClose();
      await h.publish("d.5", "m5", 1);

      second.ack("puback", 1);
      expect(second.since(4)).toEqual(["publish q1 #4 d/4 m4"]);
      second.ack("pubcomp", 2);
      expect(second.since(5)).toEqual(["publish q1 #5 d/5 m5"]);
      second.ack("puback", 3);
      second.ack("puback", 4);
      second.ack("puback", 5);
      expect(h.broker.sessions.get("$G", "dev")!.owed.inflight.size).toBe(0);
    });

    it("with clean start the old session ends: no resend, no old subscriptions", async () => {
      const h = setup();
      const first = h.connect("dev2", opts);
      first.subscribe(1, [{ topic: "e", qos: 1 }]);
      await h.publish("e", "m1", 1);
      const subs = h.bus.subscriptionCount;
      const second = h.connect("dev2", { ...opts, clean: true });
      expect(second.sent()).toEqual(["connack rc=0"]);
      expect(h.bus.subscriptionCount).toBe(subs - 1);
      await h.publish("e", "m2", 1);
      expect(second.sent()).toEqual(["connack rc=0"]);
    });
  });

  it("QoS 2 not yet PUBREC'd is resent as PUBLISH with DUP, same id", async () => {
    const h = setup();
    const first = h.connect("dev3", { v: 4, clean: false });
    first.subscribe(1, [{ topic: "f", qos: 2 }]);
    await h.publish("f", "m", 2);
    first.conn.onClose();
    const second = h.connect("dev3", { v: 4, clean: false });
    expect(second.sent()).toEqual(["connack rc=0 sp", "publish q2 #1 dup f m"]);
    second.ack("pubrec", 1);
    expect(second.since(2)).toEqual(["pubrel 1"]);
  });

  it("resume respects the new connection's smaller Receive Maximum [MQTT-3.3.4-9]", async () => {
    const h = setup({ maxInflight: 10 });
    const first = h.connect("dev4", { clean: false, expiryS: 60, receiveMaximum: 3 });
    first.subscribe(1, [{ topic: "g", qos: 1 }]);
    for (let i = 1; i <= 3; i++) await h.publish("g", `m${i}`, 1);
    expect(first.since(2)).toHaveLength(3);
    const second = h.connect("dev4", { clean: false, expiryS: 60, receiveMaximum: 1 });
    // At most one unacknowledged PUBLISH towards this client at any time.
    expect(second.sent()).toEqual(["connack rc=0 sp", "publish q1 #1 dup g m1"]);
    second.ack("puback", 1);
    expect(second.since(2)).toEqual(["publish q1 #2 dup g m2"]);
    second.ack("puback", 2);
    expect(second.since(3)).toEqual(["publish q1 #3 dup g m3"]);
  });

  it("MQTT 5 takeover publishes the old connection's will (no delay)", async () => {
    const h = setup();
    const watcher = h.connect("watcher");
    watcher.subscribe(1, [{ topic: "wills/#", qos: 1 }]);
    h.connect("dev5", {
      clean: false,
      expiryS: 60,
      will: { topic: "wills/dev5", payload: Buffer.from("gone"), qos: 1, retain: false },
    });
    h.connect("dev5", { clean: false, expiryS: 60 });
    await settle();
    expect(watcher.since(2)).toEqual(["publish q1 #1 wills/dev5 gone"]);
  });
});
