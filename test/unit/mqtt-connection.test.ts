// MQTT connections driven without a network: a Broker on a real Bus and MetricsRegistry, a
// fake Transport that records what the server writes (decoded back with mqtt-packet, a
// parser we did not write) and what it asks of the socket, and client packets made by
// mqtt-packet's generator, fed whole, byte by byte and in random chunks.
import fc from "fast-check";
import mqtt from "mqtt-packet";
import { afterEach, describe, expect, it } from "vitest";
import { Bus, type Envelope, ManualClock, silentLogger } from "../../src/core/index.js";
import type { Connection } from "../../src/mqtt/connection.js";
import { VIOLATIONS, type Violation } from "../../src/mqtt/errors.js";
import { Broker, type BrokerOptions } from "../../src/mqtt/index.js";
import { MetricsRegistry } from "../../src/observe/index.js";
import { FakeTransport } from "../helpers/fake-transport.js";

// -- client packets -------------------------------------------------------------------

const gen = (p: mqtt.Packet): Buffer => mqtt.generate(p, { protocolVersion: 4 });

const client = {
  connect: (clientId = "c1", extra: Partial<mqtt.IConnectPacket> = {}) =>
    gen({ cmd: "connect", clientId, protocolVersion: 4, clean: true, keepalive: 0, ...extra }),
  publish: (topic: string, payload: string, qos: 0 | 1 | 2 = 0, messageId?: number, dup = false) =>
    gen({
      cmd: "publish",
      topic,
      payload: Buffer.from(payload),
      qos,
      dup,
      retain: false,
      ...(qos > 0 ? { messageId: messageId ?? 1 } : {}),
    }),
  subscribe: (messageId: number, subs: ReadonlyArray<readonly [string, 0 | 1 | 2]>) =>
    gen({
      cmd: "subscribe",
      messageId,
      subscriptions: subs.map(([topic, qos]) => ({ topic, qos })),
    }),
  unsubscribe: (messageId: number, filters: string[]) =>
    gen({ cmd: "unsubscribe", messageId, unsubscriptions: filters }),
  puback: (messageId: number) => gen({ cmd: "puback", messageId }),
  pubrel: (messageId: number) => gen({ cmd: "pubrel", messageId }),
  pubrec: (messageId: number) => gen({ cmd: "pubrec", messageId }),
  pubcomp: (messageId: number) => gen({ cmd: "pubcomp", messageId }),
  pingreq: () => gen({ cmd: "pingreq" }),
  disconnect: () => gen({ cmd: "disconnect" }),
};

/**
 * CONNECT with an empty client id and clean session 0, made by hand: mqtt-packet's generator
 * refuses to make it. MQTT, level 4, flags 0, keepalive 10, client id "".
 */
const CONNECT_EMPTY_ID_NOT_CLEAN = Buffer.from([
  0x10, 0x0c, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x00, 0x00, 0x0a, 0x00, 0x00,
]);

/** A valid CONNECT with its protocol level byte replaced. */
function connectWithLevel(level: number): Buffer {
  const bytes = Buffer.from(client.connect("lvl"));
  // 0x10, remaining length (1 byte), 0x00 0x04 "MQTT", level
  if (bytes.subarray(2, 8).toString("latin1") !== "\u0000\u0004MQTT") {
    throw new Error(`unexpected CONNECT layout: ${bytes.toString("hex")}`);
  }
  bytes[8] = level;
  return bytes;
}

// -- harness --------------------------------------------------------------------------

type FeedMode = "whole" | "byte by byte" | number[];

/** Feeds `bytes` to the connection whole, one byte at a time, or cut at the given offsets. */
function feed(conn: Connection, bytes: Buffer, mode: FeedMode = "whole"): void {
  if (mode === "whole") {
    conn.onData(bytes);
  } else if (mode === "byte by byte") {
    for (let i = 0; i < bytes.length; i++) conn.onData(bytes.subarray(i, i + 1));
  } else {
    let from = 0;
    for (const cut of [...mode, bytes.length]) {
      if (cut > from) conn.onData(bytes.subarray(from, cut));
      from = Math.max(from, cut);
    }
  }
}

/** Lets settled commits run their continuations (acks, resumes); no timers involved. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

interface Pending {
  readonly message: Envelope;
  resolve(): void;
  reject(err: Error): void;
}

const opened: Connection[] = [];

function setup(options: Partial<BrokerOptions> = {}) {
  const bus = new Bus();
  const metrics = new MetricsRegistry();
  const clock = new ManualClock();
  const broker = new Broker({ bus, options, log: silentLogger, metrics, clock });

  function open(): { t: FakeTransport; conn: Connection } {
    const t = new FakeTransport();
    const conn = broker.accept(t) as Connection;
    opened.push(conn);
    return { t, conn };
  }

  /** Opens a connection and completes CONNECT/CONNACK. */
  function connected(clientId = "c1", extra: Partial<mqtt.IConnectPacket> = {}) {
    const c = open();
    feed(c.conn, client.connect(clientId, extra));
    expect(c.t.sent()).toEqual(["connack rc=0"]);
    return c;
  }

  /** A durable subscriber (like the outbox) whose commits the test settles by hand. */
  function durable(pattern = ">"): Pending[] {
    const pending: Pending[] = [];
    bus.subscribe(pattern, {
      deliver: (message) =>
        new Promise<void>((resolve, reject) => pending.push({ message, resolve, reject })),
    });
    return pending;
  }

  /** A durable subscriber that commits at once. */
  function instantDurable(pattern = ">"): Envelope[] {
    const seen: Envelope[] = [];
    bus.subscribe(pattern, {
      deliver: (message) => {
        seen.push(message);
        return Promise.resolve();
      },
    });
    return seen;
  }

  const value = (name: string, labels?: Record<string, string>) => metrics.value(name, labels);
  const protocolErrors = (violation: Violation) =>
    value("leafgate_mqtt_protocol_errors_total", { violation });
  const allProtocolErrors = () =>
    (Object.keys(VIOLATIONS) as Violation[]).reduce((sum, v) => sum + protocolErrors(v), 0);
  const closed = (reason: string) => value("leafgate_mqtt_connections_closed_total", { reason });
  const dropped = (reason: string) => value("leafgate_mqtt_messages_dropped_total", { reason });

  return {
    clock,
    bus,
    metrics,
    broker,
    open,
    connected,
    durable,
    instantDurable,
    value,
    protocolErrors,
    allProtocolErrors,
    closed,
    dropped,
  };
}

function envelope(subject: string, payload: string, qos: 0 | 1 | 2): Envelope {
  return { subject, payload: Buffer.from(payload), receivedAtMs: 0, origin: "internal", qos };
}

const text = (m: Envelope | undefined): string => Buffer.from(m?.payload ?? []).toString();

afterEach(() => {
  // A real socket's "close" arrives eventually; here it is simulated for every connection.
  for (const conn of opened.splice(0)) conn.onClose();
});

// -- CONNECT --------------------------------------------------------------------------

describe("CONNECT", () => {
  describe.each<[string, FeedMode]>([
    ["whole", "whole"],
    ["byte by byte", "byte by byte"],
    ["in 3-byte chunks", [3, 6, 9, 12, 15, 18, 21, 24, 27, 30]],
  ])("fed %s", (_name, mode) => {
    it("answers CONNACK 0 (20 02 00 00) and stays open", () => {
      const h = setup();
      const { t, conn } = h.open();
      feed(conn, client.connect("sensor-1", { keepalive: 30 }), mode);
      expect(t.bytes()).toEqual([0x20, 0x02, 0x00, 0x00]);
      expect(t.events).toEqual(["> connack rc=0"]);
      expect(conn.state.kind).toBe("connected");
      expect(conn.clientId).toBe("sensor-1");
      expect(h.value("leafgate_mqtt_connections_accepted_total")).toBe(1);
      expect(h.value("leafgate_mqtt_connections")).toBe(1);
      expect(t.parseErrors).toEqual([]);
    });

    it("acknowledges a QoS 1 PUBLISH that follows in the same bytes", async () => {
      const h = setup();
      const stored = h.instantDurable();
      const { t, conn } = h.open();
      feed(
        conn,
        Buffer.concat([client.connect("c1"), client.publish("a/b", "hello", 1, 300)]),
        mode,
      );
      await settle();
      expect(t.sent()).toEqual(["connack rc=0", "puback 300"]);
      expect(stored.map((m) => [m.subject, text(m), m.qos])).toEqual([["a.b", "hello", 1]]);
    });
  });

  it("accepts MQTT 3.1 (MQIsdp, level 3)", () => {
    const h = setup();
    const { t, conn } = h.open();
    feed(conn, gen({ cmd: "connect", clientId: "old", protocolId: "MQIsdp", protocolVersion: 3 }));
    expect(t.bytes()).toEqual([0x20, 0x02, 0x00, 0x00]);
    expect(conn.protocolVersion).toBe(3);
  });

  it("refuses an empty client id without clean session: CONNACK 2, then close [MQTT-3.1.3-8]", () => {
    const h = setup();
    const { t, conn } = h.open();
    feed(conn, CONNECT_EMPTY_ID_NOT_CLEAN);
    expect(t.bytes()).toEqual([0x20, 0x02, 0x00, 0x02]);
    expect(t.events).toEqual(["> connack rc=2", "pause", "end"]);
    expect(conn.state.kind).toBe("closing");
    expect(h.closed("identifier-rejected")).toBe(1);
    expect(h.allProtocolErrors()).toBe(0);
  });

  it("assigns an id to an empty client id with clean session [MQTT-3.1.3-6]", () => {
    const h = setup();
    const a = h.connected("");
    const b = h.connected("");
    expect(a.conn.clientId).toMatch(/^leafgate-\d+-\d+$/);
    expect(b.conn.clientId).toMatch(/^leafgate-\d+-\d+$/);
    expect(a.conn.clientId).not.toBe(b.conn.clientId);
    expect(a.t.ended).toBe(false);
  });

  it("a second connection with the same client id takes over: the first is closed [MQTT-3.1.4-2]", () => {
    const h = setup();
    const first = h.connected("dup");
    const second = h.connected("dup");
    expect(first.t.events).toEqual(["> connack rc=0", "pause", "end"]);
    expect(first.conn.state.kind).toBe("closing");
    expect(second.t.events).toEqual(["> connack rc=0"]);
    expect(h.closed("taken-over")).toBe(1);

    // The first socket's close must not release the id the second now holds.
    first.conn.onClose();
    expect(h.broker.connectionCount).toBe(1);
    const third = h.connected("dup");
    expect(second.t.events).toEqual(["> connack rc=0", "pause", "end"]);
    expect(third.t.ended).toBe(false);
    expect(h.closed("taken-over")).toBe(2);
  });

  it("closes a socket that sends no CONNECT within connectTimeoutMs", async () => {
    const h = setup({ connectTimeoutMs: 10_000 });
    const { t, conn } = h.open();
    h.clock.advance(9_999);
    expect(t.events).toEqual([]);
    h.clock.advance(1);
    expect(t.events).toEqual(["pause", "end"]);
    expect(conn.state.kind).toBe("closing");
    expect(h.closed("connect-timeout")).toBe(1);
    expect(h.allProtocolErrors()).toBe(0);
  });

  it("a CONNECT in time cancels the connect timeout", async () => {
    const h = setup({ connectTimeoutMs: 10_000 });
    const { t, conn } = h.open();
    h.clock.advance(9_000);
    feed(conn, client.connect("c1", { keepalive: 0 }));
    h.clock.advance(3_600_000);
    expect(t.events).toEqual(["> connack rc=0"]);
    expect(h.closed("connect-timeout")).toBe(0);
  });
});

// -- keepalive ------------------------------------------------------------------------

describe("keepalive", () => {
  it("closes a silent client after 1.5 × its keepalive [MQTT-3.1.2-24]", async () => {
    const h = setup();
    const { t, conn } = h.connected("k", { keepalive: 10 });
    h.clock.advance(14_999);
    expect(t.ended).toBe(false);
    h.clock.advance(1);
    expect(t.events).toEqual(["> connack rc=0", "pause", "end"]);
    expect(conn.state.kind).toBe("closing");
    expect(h.closed("keepalive-timeout")).toBe(1);
  });

  it("any packet restarts the 1.5 × keepalive window", async () => {
    const h = setup();
    const { t, conn } = h.connected("k", { keepalive: 10 });
    h.clock.advance(10_000);
    feed(conn, client.pingreq());
    expect(t.sent()).toEqual(["connack rc=0", "pingresp"]);
    // Last activity at 10 s: the deadline is 10 s + 15 s.
    h.clock.advance(14_999);
    expect(t.ended).toBe(false);
    h.clock.advance(1);
    expect(t.ended).toBe(true);
    expect(h.closed("keepalive-timeout")).toBe(1);
  });

  it("keepalive 0 turns supervision off", async () => {
    const h = setup();
    const { t } = h.connected("k", { keepalive: 0 });
    h.clock.advance(24 * 3_600_000);
    expect(t.ended).toBe(false);
  });
});

// -- PUBLISH from the client -----------------------------------------------------------

describe("PUBLISH from the client", () => {
  it("QoS 0: delivered on the mapped subject, nothing written back", async () => {
    const h = setup();
    const stored = h.instantDurable();
    const { t, conn } = h.connected();
    feed(conn, client.publish("sensors/kitchen/temp", "21.5", 0));
    await settle();
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({ subject: "sensors.kitchen.temp", qos: 0, origin: "mqtt" });
    expect(text(stored[0])).toBe("21.5");
    expect(t.sent()).toEqual(["connack rc=0"]);
    expect(h.value("leafgate_mqtt_messages_received_total", { qos: "0" })).toBe(1);
  });

  it("maps topic levels to subject tokens as nats-server does", async () => {
    const h = setup();
    const stored = h.instantDurable();
    const { conn } = h.connected();
    for (const topic of ["a//b", "/a", "a/", "a.b/c", "$app/x"])
      feed(conn, client.publish(topic, "x"));
    await settle();
    expect(stored.map((m) => m.subject)).toEqual(["a./.b", "/.a", "a./", "a//b.c", "$app.x"]);
  });

  it("QoS 1: PUBACK only once the durable subscriber has committed", async () => {
    const h = setup();
    const pending = h.durable();
    const { t, conn } = h.connected();
    feed(conn, client.publish("sensors/kitchen/temp", "21.5", 1, 7));
    await settle();
    expect(pending).toHaveLength(1);
    expect(pending[0]!.message).toMatchObject({
      subject: "sensors.kitchen.temp",
      qos: 1,
      origin: "mqtt",
      retain: false,
    });
    expect(text(pending[0]!.message)).toBe("21.5");
    expect(t.sent()).toEqual(["connack rc=0"]);

    pending[0]!.resolve();
    await settle();
    expect(t.sent()).toEqual(["connack rc=0", "puback 7"]);
    expect(t.bytes().slice(-4)).toEqual([0x40, 0x02, 0x00, 0x07]);
    expect(h.value("leafgate_mqtt_messages_received_total", { qos: "1" })).toBe(1);
  });

  it("QoS 1: acks in commit order, each only after its own commit", async () => {
    const h = setup();
    const pending = h.durable();
    const { t, conn } = h.connected();
    feed(conn, Buffer.concat([1, 2, 3].map((id) => client.publish("t", `m${id}`, 1, id))));
    pending[1]!.resolve();
    await settle();
    expect(t.sent()).toEqual(["connack rc=0", "puback 2"]);
    pending[0]!.resolve();
    pending[2]!.resolve();
    await settle();
    expect(t.sent()).toEqual(["connack rc=0", "puback 2", "puback 1", "puback 3"]);
  });

  it("QoS 1: a failed commit sends no PUBACK, closes the connection and counts store-failed", async () => {
    const h = setup();
    const pending = h.durable();
    const { t, conn } = h.connected();
    feed(conn, client.publish("t", "lost", 1, 5));
    pending[0]!.reject(new Error("disk full"));
    await settle();
    expect(t.events).toEqual(["> connack rc=0", "pause", "end"]);
    expect(conn.state.kind).toBe("closing");
    expect(h.dropped("store-failed")).toBe(1);
    expect(h.closed("store-failed")).toBe(1);
    expect(h.allProtocolErrors()).toBe(0);
    // Nothing more is read from a closing connection.
    feed(conn, client.publish("t", "after", 1, 6));
    await settle();
    expect(pending).toHaveLength(1);
  });

  it("QoS 2: PUBREC after the commit, PUBREL → PUBCOMP, then the id is free again", async () => {
    const h = setup();
    const pending = h.durable();
    const { t, conn } = h.connected();
    feed(conn, client.publish("q2/t", "once", 2, 9));
    await settle();
    expect(t.sent()).toEqual(["connack rc=0"]);
    pending[0]!.resolve();
    await settle();
    expect(t.sent()).toEqual(["connack rc=0", "pubrec 9"]);
    expect(t.bytes().slice(-4)).toEqual([0x50, 0x02, 0x00, 0x09]);

    feed(conn, client.pubrel(9));
    expect(t.sent()).toEqual(["connack rc=0", "pubrec 9", "pubcomp 9"]);
    expect(t.bytes().slice(-4)).toEqual([0x70, 0x02, 0x00, 0x09]);
    expect(conn.session!.awaitingRelease.size).toBe(0);

    // Released: the same packet id now starts a new message.
    feed(conn, client.publish("q2/t", "twice", 2, 9));
    pending[1]!.resolve();
    await settle();
    expect(pending.map((p) => text(p.message))).toEqual(["once", "twice"]);
    expect(t.sent()).toEqual(["connack rc=0", "pubrec 9", "pubcomp 9", "pubrec 9"]);
    expect(h.value("leafgate_mqtt_messages_received_total", { qos: "2" })).toBe(2);
  });

  it("QoS 2: a duplicate PUBLISH while the first copy commits is not delivered twice [MQTT-4.3.3-2]", async () => {
    const h = setup();
    const pending = h.durable();
    const { t, conn } = h.connected();
    feed(conn, client.publish("q2/t", "once", 2, 9));
    feed(conn, client.publish("q2/t", "once", 2, 9, true));
    await settle();
    expect(pending).toHaveLength(1);
    pending[0]!.resolve();
    await settle();
    expect(pending).toHaveLength(1);
    expect(t.sent()).toEqual(["connack rc=0", "pubrec 9"]);
  });

  it("QoS 2: a duplicate PUBLISH after PUBREC is acknowledged again but not delivered [MQTT-4.3.3-2]", async () => {
    // "Until it has received the corresponding PUBREL packet, the Receiver MUST acknowledge
    // any subsequent PUBLISH packet with the same Packet Identifier by sending a PUBREC."
    const h = setup();
    const pending = h.durable();
    const { t, conn } = h.connected();
    feed(conn, client.publish("q2/t", "once", 2, 9));
    pending[0]!.resolve();
    await settle();
    expect(t.sent()).toEqual(["connack rc=0", "pubrec 9"]);

    // Our PUBREC was lost; the client resends with DUP set.
    feed(conn, client.publish("q2/t", "once", 2, 9, true));
    await settle();
    expect(pending).toHaveLength(1);
    expect(t.sent()).toEqual(["connack rc=0", "pubrec 9", "pubrec 9"]);
  });

  it("a PUBLISH larger than maxPacketSize is refused as soon as its length is known", () => {
    const h = setup({ maxPacketSize: 100 });
    const stored = h.instantDurable();
    const { t, conn } = h.connected();
    const big = client.publish("t", "x".repeat(300), 1, 1);
    // Fixed header (1 byte), then the first of two remaining-length bytes: not known yet.
    feed(conn, big.subarray(0, 2));
    expect(t.ended).toBe(false);
    feed(conn, big.subarray(2, 3));
    expect(t.events).toEqual(["> connack rc=0", "pause", "end"]);
    expect(h.protocolErrors("packetTooLarge")).toBe(1);
    expect(h.allProtocolErrors()).toBe(1);
    expect(stored).toHaveLength(0);
  });

  it("a PUBLISH larger than maxPacketSize is refused when it arrives in one chunk", async () => {
    const h = setup({ maxPacketSize: 100 });
    const stored = h.instantDurable();
    const { t, conn } = h.connected();
    feed(conn, client.publish("t", "x".repeat(300), 1, 1));
    await settle();
    expect(stored).toHaveLength(0);
    expect(t.events).toEqual(["> connack rc=0", "pause", "end"]);
    expect(h.protocolErrors("packetTooLarge")).toBe(1);
  });
});

// -- backpressure ------------------------------------------------------------------------

describe("backpressure on durable commits", () => {
  it("pauses the transport at maxPendingCommits and resumes once half have settled", async () => {
    const h = setup({ maxPendingCommits: 4 });
    const pending = h.durable();
    const { t, conn } = h.connected();
    for (const id of [1, 2, 3]) feed(conn, client.publish("bp", `m${id}`, 1, id));
    await settle();
    expect(t.events).toEqual(["> connack rc=0"]);

    feed(conn, client.publish("bp", "m4", 1, 4));
    await settle();
    expect(t.events).toEqual(["> connack rc=0", "pause"]);

    pending[0]!.resolve();
    await settle();
    expect(t.events).toEqual(["> connack rc=0", "pause", "> puback 1"]);

    // Two pending left (= maxPendingCommits / 2): the ack goes out, then reading resumes.
    pending[1]!.resolve();
    await settle();
    expect(t.events).toEqual(["> connack rc=0", "pause", "> puback 1", "> puback 2", "resume"]);

    pending[2]!.resolve();
    pending[3]!.resolve();
    await settle();
    expect(t.events).toEqual([
      "> connack rc=0",
      "pause",
      "> puback 1",
      "> puback 2",
      "resume",
      "> puback 3",
      "> puback 4",
    ]);
  });

  it("pauses once however many publishes arrive while paused", async () => {
    const h = setup({ maxPendingCommits: 2 });
    const pending = h.durable();
    const { t, conn } = h.connected();
    feed(conn, Buffer.concat([1, 2, 3, 4, 5].map((id) => client.publish("bp", "m", 1, id))));
    expect(t.events).toEqual(["> connack rc=0", "pause"]);
    expect(pending).toHaveLength(5);
    // Five pending: reading resumes only once no more than one is left.
    for (const p of pending.slice(0, 3)) p.resolve();
    await settle();
    expect(t.events).toEqual(["> connack rc=0", "pause", "> puback 1", "> puback 2", "> puback 3"]);
    pending[3]!.resolve();
    await settle();
    expect(t.events.slice(-2)).toEqual(["> puback 4", "resume"]);
  });
});

// -- SUBSCRIBE and delivery to the client ------------------------------------------------

describe("SUBSCRIBE and delivery", () => {
  it("overlapping filters deliver a message once, at the highest granted QoS [MQTT-3.3.5-1]", async () => {
    const h = setup();
    const { t, conn } = h.connected();
    feed(
      conn,
      client.subscribe(1, [
        ["a/#", 0],
        ["a/+", 1],
      ]),
    );
    expect(t.sent()).toEqual(["connack rc=0", "suback 1 [0,1]"]);
    expect(t.bytes().slice(-6)).toEqual([0x90, 0x04, 0x00, 0x01, 0x00, 0x01]);

    await h.bus.publish(envelope("a.b", "both", 1));
    await h.bus.publish(envelope("a.b", "both-q0", 0));
    await h.bus.publish(envelope("a", "parent", 1));
    await h.bus.publish(envelope("a.b.c", "deep", 1));
    expect(t.sent()).toEqual([
      "connack rc=0",
      "suback 1 [0,1]",
      "publish q1 #1 a/b both",
      "publish q0 a/b both-q0",
      "publish q0 a parent",
      "publish q0 a/b/c deep",
    ]);
    expect(h.value("leafgate_mqtt_messages_sent_total")).toBe(4);
  });

  it("refuses an invalid filter with 0x80 and grants the valid ones in the same packet", async () => {
    const h = setup();
    const { t, conn } = h.connected();
    feed(
      conn,
      client.subscribe(3, [
        ["a/#/b", 0],
        ["ok/+", 1],
        ["x+", 0],
        ["ok/#", 0],
      ]),
    );
    expect(t.sent()).toEqual(["connack rc=0", "suback 3 [128,1,128,0]"]);
    expect(t.bytes().slice(-8)).toEqual([0x90, 0x06, 0x00, 0x03, 0x80, 0x01, 0x80, 0x00]);
    expect(t.ended).toBe(false);
    expect(h.value("leafgate_mqtt_subscriptions_refused_total", { reason: "invalid-filter" })).toBe(
      2,
    );
    expect(h.dropped("invalid-filter")).toBe(0);
    expect(h.allProtocolErrors()).toBe(0);
    expect([...conn.session!.subscriptions.keys()]).toEqual(["ok/+", "ok/#"]);

    await h.bus.publish(envelope("ok.z", "hi", 1));
    expect(t.sent().at(-1)).toBe("publish q1 #1 ok/z hi");
  });

  it("grants QoS 2 and runs PUBLISH, PUBREC, PUBREL, PUBCOMP outbound [MQTT-4.3.3]", async () => {
    const h = setup({ maxInflight: 1 });
    const { t, conn } = h.connected();
    feed(conn, client.subscribe(4, [["q2/topic", 2]]));
    expect(t.sent()).toEqual(["connack rc=0", "suback 4 [2]"]);
    await h.bus.publish(envelope("q2.topic", "m", 2));
    await h.bus.publish(envelope("q2.topic", "n", 2));
    // One in flight: the second waits for the first exchange to complete.
    expect(t.sent().slice(2)).toEqual(["publish q2 #1 q2/topic m"]);
    // A PUBACK does not end a QoS 2 exchange.
    feed(conn, client.puback(1));
    expect(t.sent().slice(3)).toEqual([]);
    feed(conn, client.pubrec(1));
    expect(t.sent().slice(3)).toEqual(["pubrel 1"]);
    // A repeated PUBREC gets PUBREL again.
    feed(conn, client.pubrec(1));
    expect(t.sent().slice(4)).toEqual(["pubrel 1"]);
    feed(conn, client.pubcomp(1));
    expect(t.sent().slice(5)).toEqual(["publish q2 #2 q2/topic n"]);
    // A QoS 1 message to a QoS 2 subscription goes at QoS 1.
    feed(conn, client.pubrec(2));
    feed(conn, client.pubcomp(2));
    await h.bus.publish(envelope("q2.topic", "o", 1));
    expect(t.sent().slice(-1)).toEqual(["publish q1 #3 q2/topic o"]);
  });

  it("subscribing to the same filter again replaces the subscription [MQTT-3.8.4-3]", async () => {
    const h = setup();
    const { t, conn } = h.connected();
    feed(conn, client.subscribe(1, [["r/x", 0]]));
    const subs = h.bus.subscriptionCount;
    feed(conn, client.subscribe(2, [["r/x", 1]]));
    expect(h.bus.subscriptionCount).toBe(subs);
    await h.bus.publish(envelope("r.x", "m", 1));
    expect(t.sent()).toEqual([
      "connack rc=0",
      "suback 1 [0]",
      "suback 2 [1]",
      "publish q1 #1 r/x m",
    ]);
  });

  it("maps subjects back to topics on the way out", async () => {
    const h = setup();
    const { t, conn } = h.connected();
    feed(conn, client.subscribe(1, [["a/#", 0]]));
    await h.bus.publish(envelope("a./.b", "1", 0));
    await h.bus.publish(envelope("a.b//c", "2", 0));
    expect(t.sent().slice(2)).toEqual(["publish q0 a//b 1", "publish q0 a/b.c 2"]);
  });

  it("drops a message whose subject has no topic form, and keeps the connection", async () => {
    const h = setup();
    const { t, conn } = h.connected();
    feed(conn, client.subscribe(1, [["#", 0]]));
    await h.bus.publish(envelope("a.+", "x", 0));
    await h.bus.publish(envelope("a.ok", "y", 0));
    expect(t.sent()).toEqual(["connack rc=0", "suback 1 [0]", "publish q0 a/ok y"]);
    expect(h.dropped("untranslatable-subject")).toBe(1);
    expect(t.ended).toBe(false);
  });

  it("filters starting with a wildcard do not match topics starting with $ [MQTT-4.7.2-1]", async () => {
    const h = setup();
    const { t, conn } = h.connected();
    feed(
      conn,
      client.subscribe(1, [
        ["#", 0],
        ["+/x", 0],
      ]),
    );
    const other = h.connected("c2");
    feed(other.conn, client.subscribe(1, [["$SYS/#", 0]]));
    await h.bus.publish(envelope("$SYS.x", "internal", 0));
    // The explicit $SYS/# subscriber gets it; the wildcard-first one must not.
    expect(other.t.sent()).toEqual(["connack rc=0", "suback 1 [0]", "publish q0 $SYS/x internal"]);
    expect(t.sent()).toEqual(["connack rc=0", "suback 1 [0,0]"]);
  });

  it("UNSUBSCRIBE stops delivery and removes the bus subscriptions", async () => {
    const h = setup();
    const { t, conn } = h.connected();
    const before = h.bus.subscriptionCount;
    feed(conn, client.subscribe(1, [["u/#", 1]]));
    expect(h.bus.subscriptionCount).toBe(before + 2); // "u" and "u.>"
    await h.bus.publish(envelope("u.v", "before", 1));
    feed(conn, client.unsubscribe(5, ["u/#", "never/subscribed"]));
    await h.bus.publish(envelope("u.v", "after", 1));
    expect(t.sent()).toEqual([
      "connack rc=0",
      "suback 1 [1]",
      "publish q1 #1 u/v before",
      "unsuback 5",
    ]);
    expect(t.bytes().slice(-4)).toEqual([0xb0, 0x02, 0x00, 0x05]);
    expect(h.bus.subscriptionCount).toBe(before);
    expect(conn.session!.subscriptions.size).toBe(0);
  });

  it("holds at most maxInflight unacknowledged QoS 1 messages, queues maxQueued, drops the rest", async () => {
    const h = setup({ maxInflight: 2, maxQueued: 1 });
    const { t, conn } = h.connected();
    feed(conn, client.subscribe(1, [["o/+", 1]]));
    for (const n of [1, 2, 3, 4]) await h.bus.publish(envelope(`o.${n}`, `m${n}`, 1));
    expect(t.sent().slice(2)).toEqual(["publish q1 #1 o/1 m1", "publish q1 #2 o/2 m2"]);
    expect(h.dropped("queue-full")).toBe(1);

    feed(conn, client.puback(99)); // unknown id: ignored
    expect(t.sent()).toHaveLength(4);
    feed(conn, client.puback(1));
    expect(t.sent().slice(4)).toEqual(["publish q1 #3 o/3 m3"]);
    feed(conn, Buffer.concat([client.puback(2), client.puback(3)]));
    await h.bus.publish(envelope("o.5", "m5", 1));
    expect(t.sent().slice(5)).toEqual(["publish q1 #4 o/5 m5"]);
  });

  it("drops QoS 0 and holds QoS 1 for a client that is behind on reading", async () => {
    // Soft mark: an eighth of max_outbound_bytes = 10 bytes unsent.
    const h = setup({ maxOutboundBytes: 80 });
    const { t, conn } = h.connected();
    feed(conn, client.subscribe(1, [["s", 1]]));
    t.writableLength = 11;
    await h.bus.publish(envelope("s", "q0", 0));
    await h.bus.publish(envelope("s", "q1", 1));
    expect(t.sent().slice(2)).toEqual([]);
    expect(h.dropped("slow-consumer")).toBe(1);
    t.writableLength = 0;
    conn.onDrain();
    expect(t.sent().slice(2)).toEqual(["publish q1 #1 s q1"]);
  });

  it("a closed connection's subscriptions are removed from the bus", () => {
    const h = setup();
    const before = h.bus.subscriptionCount;
    const { conn } = h.connected();
    feed(
      conn,
      client.subscribe(1, [
        ["z/+", 0],
        ["y", 1],
      ]),
    );
    expect(h.bus.subscriptionCount).toBe(before + 2);
    conn.onClose();
    expect(h.bus.subscriptionCount).toBe(before);
    expect(h.broker.connectionCount).toBe(0);
    expect(h.value("leafgate_mqtt_connections")).toBe(0);
    expect(h.closed("peer-closed")).toBe(1);
  });
});

// -- a client that does not read ----------------------------------------------------------

describe("a client behind on reading (unsent bytes, mqtt.max_outbound_bytes)", () => {
  /** max_outbound_bytes 800: the soft mark is 100 bytes, room for one PUBLISH 600. */
  const OPTIONS = { maxOutboundBytes: 800 };

  it("is not read from past the soft mark; deliveries wait; drain resumes both", async () => {
    const h = setup(OPTIONS);
    const { t, conn } = h.connected();
    feed(conn, client.subscribe(1, [["s", 1]]));
    t.writableLength = 100;
    feed(conn, client.pingreq());
    expect(t.events.slice(2)).toEqual(["> pingresp", "pause"]);
    // A second answer while paused does not pause again.
    feed(conn, client.pingreq());
    await h.bus.publish(envelope("s", "a", 1));
    await h.bus.publish(envelope("s", "b", 1));
    await h.bus.publish(envelope("s", "z", 0));
    expect(t.events.slice(2)).toEqual(["> pingresp", "pause", "> pingresp"]);
    expect(h.dropped("slow-consumer")).toBe(1);
    // A drain that leaves it behind changes nothing.
    conn.onDrain();
    expect(t.events).toHaveLength(5);
    t.writableLength = 0;
    conn.onDrain();
    expect(t.events.slice(5)).toEqual(["resume", "> publish q1 #1 s a", "> publish q1 #2 s b"]);
    expect(h.value("leafgate_mqtt_slow_consumers_total")).toBe(0);
    expect(conn.state.kind).toBe("connected");
  });

  it("a drain does not resume reading that pending commits paused", async () => {
    const h = setup({ ...OPTIONS, maxPendingCommits: 1 });
    const pending = h.durable();
    const { t, conn } = h.connected();
    feed(conn, client.publish("p", "m", 1, 7));
    expect(t.events.slice(1)).toEqual(["pause"]);
    t.writableLength = 100;
    feed(conn, client.pingreq());
    t.writableLength = 0;
    conn.onDrain();
    expect(t.events.slice(1)).toEqual(["pause", "> pingresp"]);
    pending[0]!.resolve();
    await settle();
    expect(t.events.slice(1)).toEqual(["pause", "> pingresp", "> puback 7", "resume"]);
  });

  it("the commits' resume waits while the client is behind", async () => {
    const h = setup({ ...OPTIONS, maxPendingCommits: 1 });
    const pending = h.durable();
    const { t, conn } = h.connected();
    feed(conn, client.publish("p", "m", 1, 7));
    t.writableLength = 100;
    feed(conn, client.pingreq());
    pending[0]!.resolve();
    await settle();
    expect(t.events.slice(1)).toEqual(["pause", "> pingresp", "> puback 7"]);
    t.writableLength = 0;
    conn.onDrain();
    expect(t.events.slice(1)).toEqual(["pause", "> pingresp", "> puback 7", "resume"]);
  });

  it("past max_outbound_bytes it is cut as a slow consumer, counted once", () => {
    const h = setup(OPTIONS);
    const { t, conn } = h.connected("slow");
    t.writableLength = 801;
    feed(conn, Buffer.concat([client.pingreq(), client.pingreq()]));
    expect(t.events).toEqual(["> connack rc=0", "> pingresp", "pause", "end"]);
    expect(conn.state.kind).toBe("closing");
    expect(h.value("leafgate_mqtt_slow_consumers_total")).toBe(1);
    expect(h.closed("slow-consumer")).toBe(1);
    expect(h.allProtocolErrors()).toBe(0);
  });

  it("an MQTT 5 client is told DISCONNECT 0x97 (Quota exceeded) last", () => {
    const h = setup(OPTIONS);
    const { t, conn } = h.open();
    conn.onData(
      mqtt.generate(
        { cmd: "connect", clientId: "v5", protocolVersion: 5, clean: true, keepalive: 0 },
        { protocolVersion: 5 },
      ),
    );
    t.writableLength = 801;
    conn.onData(mqtt.generate({ cmd: "pingreq" }, { protocolVersion: 5 }));
    const last = t.chunks.at(-1)!;
    // DISCONNECT (e0), remaining length, reason 0x97, then its Reason String.
    expect([last[0], last[2]]).toEqual([0xe0, 0x97]);
    expect(t.chunks.at(-2)).toEqual(Buffer.from([0xd0, 0x00]));
    expect(t.ended).toBe(true);
  });

  it("one that stays behind for 1.5 x its keepalive is cut as a slow consumer", async () => {
    const h = setup(OPTIONS);
    const { t, conn } = h.connected("k", { keepalive: 10 });
    t.writableLength = 100;
    feed(conn, client.pingreq());
    h.clock.advance(15_000);
    expect(conn.state.kind).toBe("closing");
    expect(h.closed("slow-consumer")).toBe(1);
    expect(h.closed("keepalive-timeout")).toBe(0);
    expect(h.value("leafgate_mqtt_slow_consumers_total")).toBe(1);
  });

  it("a PUBLISH larger than the room above the soft mark is not sent (too-large-for-client)", async () => {
    const h = setup(OPTIONS);
    const { t, conn } = h.connected();
    feed(conn, client.subscribe(1, [["big", 1]]));
    await h.bus.publish(envelope("big", "x".repeat(700), 1));
    await h.bus.publish(envelope("big", "y".repeat(500), 1));
    expect(t.sent().slice(2)).toEqual([`publish q1 #2 big ${"y".repeat(500)}`]);
    expect(h.dropped("too-large-for-client")).toBe(1);
    expect(h.value("leafgate_mqtt_slow_consumers_total")).toBe(0);
  });
});

// -- PINGREQ, DISCONNECT -------------------------------------------------------------------

describe("PINGREQ and DISCONNECT", () => {
  it("PINGREQ → PINGRESP (d0 00)", () => {
    const h = setup();
    const { t, conn } = h.connected();
    feed(conn, client.pingreq());
    expect(t.bytes()).toEqual([0x20, 0x02, 0x00, 0x00, 0xd0, 0x00]);
  });

  it("DISCONNECT closes, and nothing after it in the same bytes is processed", async () => {
    const h = setup();
    const stored = h.instantDurable();
    const { t, conn } = h.connected();
    feed(conn, Buffer.concat([client.disconnect(), client.publish("late", "x", 1, 1)]));
    await settle();
    expect(t.events).toEqual(["> connack rc=0", "pause", "end"]);
    expect(conn.state.kind).toBe("closing");
    expect(stored).toHaveLength(0);
    expect(h.closed("client-disconnect")).toBe(1);
    expect(h.allProtocolErrors()).toBe(0);
    conn.onClose();
    expect(conn.state.kind).toBe("closed");
    expect(h.broker.connectionCount).toBe(0);
    // A close the connection asked for is counted once, not again as peer-closed.
    expect(h.closed("peer-closed")).toBe(0);
  });

  it("DISCONNECT with a commit pending: the PUBACK is written before the socket is ended", async () => {
    const h = setup();
    const pending = h.durable();
    const { t, conn } = h.connected();
    feed(conn, Buffer.concat([client.publish("t", "m", 1, 1), client.disconnect()]));
    await settle();
    expect(t.events).toEqual(["> connack rc=0", "pause"]);
    pending[0]!.resolve();
    await settle();
    expect(t.events).toEqual(["> connack rc=0", "pause", "> puback 1", "end"]);
  });
});

// -- protocol violations -----------------------------------------------------------------

describe("protocol violations close the connection, counted once by violation", () => {
  const CONNECT = client.connect("v");
  const CASES: ReadonlyArray<readonly [string, Buffer, Violation, number[]]> = [
    ["garbage (ff ff ff ff)", Buffer.from([0xff, 0xff, 0xff, 0xff]), "malformed", []],
    [
      "a remaining length of 5 bytes",
      Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x7f]),
      "malformed",
      [],
    ],
    ["PUBLISH before CONNECT", client.publish("a/b", "x"), "firstPacketNotConnect", []],
    [
      "a second CONNECT",
      Buffer.concat([CONNECT, CONNECT]),
      "secondConnect",
      [0x20, 0x02, 0x00, 0x00],
    ],
    [
      "CONNACK from a client",
      Buffer.concat([CONNECT, gen({ cmd: "connack", returnCode: 0, sessionPresent: false })]),
      "serverOnlyPacket",
      [0x20, 0x02, 0x00, 0x00],
    ],
    [
      "SUBSCRIBE with reserved flags 0000 [MQTT-3.8.1-1]",
      Buffer.concat([CONNECT, Buffer.from([0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 0x61, 0x00])]),
      "malformed",
      [0x20, 0x02, 0x00, 0x00],
    ],
    [
      "PUBLISH to a/+",
      Buffer.concat([CONNECT, client.publish("a/+", "x", 1, 1)]),
      "wildcardInTopicName",
      [0x20, 0x02, 0x00, 0x00],
    ],
    [
      "PUBLISH to a/#",
      Buffer.concat([CONNECT, client.publish("a/#", "x", 1, 1)]),
      "wildcardInTopicName",
      [0x20, 0x02, 0x00, 0x00],
    ],
    [
      "PUBLISH to an empty topic",
      Buffer.concat([CONNECT, client.publish("", "x", 1, 1)]),
      "invalidTopicName",
      [0x20, 0x02, 0x00, 0x00],
    ],
    [
      "CONNECT with protocol level 6",
      connectWithLevel(6),
      "unsupportedProtocol",
      [0x20, 0x02, 0x00, 0x01],
    ],
    [
      "PUBLISH QoS 0 with DUP [MQTT-3.3.1-2]",
      Buffer.concat([CONNECT, Buffer.from([0x38, 0x05, 0x00, 0x01, 0x61, 0x78, 0x79])]),
      "malformed",
      [0x20, 0x02, 0x00, 0x00],
    ],
    [
      "PUBLISH QoS 1 with packet id 0 [MQTT-2.3.1-1]",
      Buffer.concat([CONNECT, Buffer.from([0x32, 0x05, 0x00, 0x01, 0x61, 0x00, 0x00])]),
      "malformed",
      [0x20, 0x02, 0x00, 0x00],
    ],
    [
      "SUBSCRIBE without a topic filter [MQTT-3.8.3-2]",
      Buffer.concat([CONNECT, Buffer.from([0x82, 0x02, 0x00, 0x01])]),
      "protocolError",
      [0x20, 0x02, 0x00, 0x00],
    ],
    [
      "UNSUBSCRIBE without a topic filter [MQTT-3.10.3-2]",
      Buffer.concat([CONNECT, Buffer.from([0xa2, 0x02, 0x00, 0x01])]),
      "protocolError",
      [0x20, 0x02, 0x00, 0x00],
    ],
    [
      "PINGREQ with a body",
      Buffer.concat([CONNECT, Buffer.from([0xc0, 0x01, 0x00])]),
      "malformed",
      [0x20, 0x02, 0x00, 0x00],
    ],
    [
      "CONNECT with will QoS 3 [MQTT-3.1.2-14]",
      (() => {
        const c = gen({
          cmd: "connect",
          clientId: "w",
          keepalive: 0,
          will: { topic: "a", payload: Buffer.from("p"), qos: 1, retain: false },
        });
        c[9] = c[9]! | 0x18;
        return c;
      })(),
      "malformed",
      [],
    ],
  ];

  for (const mode of ["whole", "byte by byte"] as const) {
    it.each(CASES)(`${mode}: %s`, async (_name, bytes, violation, answer) => {
      const h = setup();
      const stored = h.instantDurable();
      const { t, conn } = h.open();
      feed(conn, bytes, mode);
      await settle();
      expect(t.bytes()).toEqual(answer);
      expect(t.events.slice(-2)).toEqual(["pause", "end"]);
      expect(conn.state.kind).toBe("closing");
      expect(h.protocolErrors(violation)).toBe(1);
      expect(h.allProtocolErrors()).toBe(1);
      expect(h.closed("protocol-error")).toBe(1);
      expect(stored).toHaveLength(0);
      // Further bytes are ignored and count nothing more.
      feed(conn, Buffer.from([0xff, 0xff]));
      expect(h.allProtocolErrors()).toBe(1);
    });
  }
});

// -- random chunking -----------------------------------------------------------------------

describe("framing is independent of how the bytes are chunked", () => {
  const session = Buffer.concat([
    client.connect("chunky"),
    client.subscribe(1, [["s/#", 1]]),
    client.publish("s/x", "p1", 1, 10),
    client.publish("s/y", "p2", 0),
    client.pingreq(),
    client.unsubscribe(2, ["s/#"]),
    client.publish("s/z", "p3", 1, 11),
    client.publish("q2/a", "p4", 2, 12),
  ]);
  const EXPECTED = [
    "connack rc=0",
    "suback 1 [1]",
    "publish q1 #1 s/x p1",
    "publish q0 s/y p2",
    "pingresp",
    "unsuback 2",
    "puback 10",
    "puback 11",
    "pubrec 12",
  ];

  async function run(mode: FeedMode): Promise<{ sent: string[]; stored: string[] }> {
    const h = setup();
    const stored = h.instantDurable("s.>");
    h.instantDurable("q2.>");
    const { t, conn } = h.open();
    feed(conn, session, mode);
    await settle();
    expect(t.parseErrors).toEqual([]);
    expect(t.ended).toBe(false);
    conn.onClose();
    return { sent: t.sent(), stored: stored.map((m) => `${m.subject} ${text(m)}`) };
  }

  it("whole", async () => {
    const { sent, stored } = await run("whole");
    expect(sent).toEqual(EXPECTED);
    expect(stored).toEqual(["s.x p1", "s.y p2", "s.z p3"]);
  });

  it("byte by byte", async () => {
    expect((await run("byte by byte")).sent).toEqual(EXPECTED);
  });

  it("random cut points (fast-check)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.integer({ min: 1, max: session.length - 1 }), { maxLength: 40 }),
        async (cuts) => {
          const { sent, stored } = await run(cuts.sort((a, b) => a - b));
          expect(sent).toEqual(EXPECTED);
          expect(stored).toEqual(["s.x p1", "s.y p2", "s.z p3"]);
        },
      ),
      { numRuns: 200 },
    );
  });
});
