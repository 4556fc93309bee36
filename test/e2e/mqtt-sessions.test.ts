// Persistent sessions, both protocol levels: session present, expiry, takeover, redelivery
// with DUP and the original packet ids, QoS 2 state across reconnects, a gateway restart,
// and the queue limit. Raw mqtt-packet clients show packet ids and flags; mqtt.js publishes.
import type { MqttClient } from "mqtt";
import type { IConnectPacket, IPublishPacket } from "mqtt-packet";
import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/core/index.js";
import { Gateway } from "../../src/gateway.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { closeRawClients, type ProtocolLevel, RawMqtt } from "../helpers/raw-mqtt.js";
import { waitFor } from "../helpers/wait.js";

let gw: TestGateway | undefined;
const restarted: Gateway[] = [];
const clients: MqttClient[] = [];

afterEach(async () => {
  await closeRawClients();
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true).catch(() => {})));
  for (const g of restarted.splice(0)) await g.stop();
  await gw?.dispose();
  gw = undefined;
});

async function publisher(port: number): Promise<MqttClient> {
  const c = await connectMqttJs(port, { protocolVersion: 4 });
  clients.push(c);
  return c;
}

/** CONNECT fields for a persistent session at either level. */
function persistent(
  clientId: string,
  version: ProtocolLevel,
  clean = false,
): Partial<IConnectPacket> {
  return version === 5
    ? { clientId, protocolVersion: 5, clean, properties: { sessionExpiryInterval: 300 } }
    : { clientId, protocolVersion: 4, clean };
}

/**
 * A new persistent session: v5 Clean Start with an expiry; 3.1.1 clean=0, since a clean
 * 3.1.1 session is discarded when it ends [MQTT-3.1.2-6] (each test uses a new client id).
 */
function fresh(clientId: string, version: ProtocolLevel): Partial<IConnectPacket> {
  return persistent(clientId, version, version === 5);
}

async function disconnect(client: RawMqtt): Promise<void> {
  client.send(client.version === 5 ? { cmd: "disconnect", reasonCode: 0 } : { cmd: "disconnect" });
  await client.closed;
}

const text = (p: IPublishPacket) => p.payload.toString();

describe("session present and expiry", () => {
  it.each([4, 5] as const)(
    "level %i: a kept session resumes its subscriptions; clean start discards it [MQTT-3.2.2-2] [MQTT-3.2.2-3]",
    async (version) => {
      gw = await startGateway();
      const port = gw.mqttPort;
      const pub = await publisher(port);
      const a = await RawMqtt.connect(port, persistent(`sp-${version}`, version), version);
      expect(a.connack.sessionPresent).toBe(false);
      await a.client.subscribe(1, [
        { topic: "sp/#", qos: 1 },
        { topic: "mark", qos: 1 },
      ]);
      await disconnect(a.client);

      const b = await RawMqtt.connect(port, persistent(`sp-${version}`, version), version);
      expect(b.connack.sessionPresent).toBe(true);
      await pub.publishAsync("sp/a", "kept", { qos: 1 });
      expect(text(await b.client.next("publish"))).toBe("kept");
      b.client.take("publish");
      await disconnect(b.client);

      // Clean start: no session, no subscriptions [MQTT-3.1.2-4] / [MQTT-3.1.2-6].
      const c = await RawMqtt.connect(port, persistent(`sp-${version}`, version, true), version);
      expect(c.connack.sessionPresent).toBe(false);
      await c.client.subscribe(2, [{ topic: "mark", qos: 1 }]);
      await pub.publishAsync("sp/a", "gone", { qos: 1 });
      await pub.publishAsync("mark", "m", { qos: 1 });
      const m = await c.client.next("publish");
      expect([m.topic, text(m)]).toEqual(["mark", "m"]);
      expect(c.client.all("publish")).toHaveLength(1);
    },
  );

  it("3.1.1: a clean session is discarded when it ends [MQTT-3.1.2-6]", async () => {
    gw = await startGateway();
    const a = await RawMqtt.connect(gw.mqttPort, persistent("cs-4", 4, true), 4);
    expect(a.connack.sessionPresent).toBe(false);
    await disconnect(a.client);
    const b = await RawMqtt.connect(gw.mqttPort, persistent("cs-4", 4), 4);
    expect(b.connack.sessionPresent).toBe(false);
  });

  it("v5: Session Expiry Interval 0 ends the session with the connection; DISCONNECT can change it", async () => {
    gw = await startGateway();
    const port = gw.mqttPort;
    const connect = (clientId: string, clean: boolean, sessionExpiryInterval?: number) =>
      RawMqtt.connect(port, {
        clientId,
        clean,
        ...(sessionExpiryInterval === undefined ? {} : { properties: { sessionExpiryInterval } }),
      });

    // Absent = 0: nothing is kept [MQTT-3.1.2-23].
    const a = await connect("se-0", false);
    await a.client.subscribe(1, [{ topic: "se/#", qos: 1 }]);
    await disconnect(a.client);
    expect((await connect("se-0", false, 300)).connack.sessionPresent).toBe(false);

    // 300 at CONNECT, 0 at DISCONNECT: ended.
    const b = await connect("se-1", true, 300);
    b.client.send({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 0 } });
    await b.client.closed;
    expect((await connect("se-1", false, 300)).connack.sessionPresent).toBe(false);

    // 300 at CONNECT, 600 at DISCONNECT: kept.
    const c = await connect("se-2", true, 300);
    c.client.send({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 600 } });
    await c.client.closed;
    expect((await connect("se-2", false, 300)).connack.sessionPresent).toBe(true);
  });

  it("v5: DISCONNECT raising a zero Session Expiry Interval is a protocol error [MQTT-3.14.2-2]", async () => {
    gw = await startGateway();
    const watcher = await publisher(gw.mqttPort);
    const got: string[] = [];
    watcher.on("message", (topic) => got.push(topic));
    await watcher.subscribeAsync({ "will/#": { qos: 1 } });
    const { client } = await RawMqtt.connect(gw.mqttPort, {
      clientId: "se-err",
      will: { topic: "will/se-err", payload: Buffer.from("x"), qos: 1, retain: false },
    });
    client.send({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 300 } });
    await client.closed;
    // A protocol error: the will goes out and the session is not kept.
    await waitFor(() => got.includes("will/se-err"));
    const again = await RawMqtt.connect(gw.mqttPort, {
      clientId: "se-err",
      clean: false,
      properties: { sessionExpiryInterval: 300 },
    });
    expect(again.connack.sessionPresent).toBe(false);
  });
});

describe("takeover", () => {
  it("v5: the old connection gets DISCONNECT 0x8E; the new one carries on the session [MQTT-3.1.4-3]", async () => {
    gw = await startGateway();
    const pub = await publisher(gw.mqttPort);
    const old = await RawMqtt.connect(gw.mqttPort, {
      clientId: "tk-5",
      properties: { sessionExpiryInterval: 300, receiveMaximum: 1 },
    });
    await old.client.subscribe(1, [{ topic: "tk/#", qos: 1 }]);
    for (let i = 0; i < 3; i++) await pub.publishAsync("tk/t", `m${i}`, { qos: 1 });
    // Receive Maximum 1: m0 in flight (never acked), m1 and m2 queued.
    const inflight = await old.client.next("publish");
    expect(text(inflight)).toBe("m0");

    const fresh = await RawMqtt.connect(gw.mqttPort, persistent("tk-5", 5));
    expect(fresh.connack.sessionPresent).toBe(true);
    const d = await old.client.next("disconnect");
    expect(d.reasonCode).toBe(0x8e);
    await old.client.closedByServer();
    expect(old.client.all("publish").map(text)).toEqual(["m0"]);

    const got: IPublishPacket[] = [];
    for (let i = 0; i < 3; i++) {
      const p = await fresh.client.next("publish");
      got.push(p);
      fresh.client.send({ cmd: "puback", messageId: p.messageId!, reasonCode: 0 });
    }
    expect(got.map((p) => [text(p), p.dup])).toEqual([
      ["m0", true],
      ["m1", false],
      ["m2", false],
    ]);
    expect(got[0]!.messageId).toBe(inflight.messageId);
    // The subscription came along.
    await pub.publishAsync("tk/t", "m3", { qos: 1 });
    expect(text(await fresh.client.next("publish"))).toBe("m3");
  });

  it("3.1.1 clean=0: the old connection is closed, the new one has the session [MQTT-3.1.4-2]", async () => {
    gw = await startGateway();
    const pub = await publisher(gw.mqttPort);
    const old = await RawMqtt.connect(gw.mqttPort, persistent("tk-4", 4), 4);
    await old.client.subscribe(1, [{ topic: "tk4/#", qos: 1 }]);
    const fresh = await RawMqtt.connect(gw.mqttPort, persistent("tk-4", 4), 4);
    expect(fresh.connack.sessionPresent).toBe(true);
    await old.client.closedByServer();
    await pub.publishAsync("tk4/t", "after", { qos: 1 });
    const p = await fresh.client.next("publish");
    expect([p.topic, text(p), p.qos]).toEqual(["tk4/t", "after", 1]);
    expect(old.client.all("publish")).toEqual([]);
  });
});

describe("redelivery", () => {
  it.each([4, 5] as const)(
    "level %i: unacked QoS 1 messages come first with DUP=1 and the same packet ids [MQTT-4.4.0-1] [MQTT-3.3.1-1]",
    async (version) => {
      gw = await startGateway();
      const pub = await publisher(gw.mqttPort);
      const id = `dup-${version}`;
      const a = await RawMqtt.connect(gw.mqttPort, fresh(id, version), version);
      await a.client.subscribe(1, [{ topic: "dup/#", qos: 1 }]);
      await pub.publishAsync("dup/t", "d0", { qos: 1 });
      await pub.publishAsync("dup/t", "d1", { qos: 1 });
      const first = [await a.client.next("publish"), await a.client.next("publish")];
      expect(first.map((p) => [text(p), p.dup, p.qos])).toEqual([
        ["d0", false, 1],
        ["d1", false, 1],
      ]);
      await a.client.destroy();
      // d2 must find the session offline: a message sent into the dying socket would be
      // in flight too, and rightly come back with DUP.
      await waitFor(() => gw!.gateway.metrics.value("leafgate_mqtt_connections") === 1);
      await pub.publishAsync("dup/t", "d2", { qos: 1 });

      const b = await RawMqtt.connect(gw.mqttPort, persistent(id, version), version);
      expect(b.connack.sessionPresent).toBe(true);
      const again: IPublishPacket[] = [];
      for (let i = 0; i < 3; i++) again.push(await b.client.next("publish"));
      expect(again.map((p) => [text(p), p.dup, p.messageId])).toEqual([
        ["d0", true, first[0]!.messageId],
        ["d1", true, first[1]!.messageId],
        ["d2", false, again[2]!.messageId],
      ]);
      // The new message's id is not one still in flight.
      expect(first.map((p) => p.messageId)).not.toContain(again[2]!.messageId);
    },
  );

  it.each([4, 5] as const)(
    "level %i: after PUBREC without PUBCOMP, the PUBREL is resent on reconnect, not the PUBLISH [MQTT-4.4.0-1]",
    async (version) => {
      gw = await startGateway();
      const pub = await publisher(gw.mqttPort);
      const id = `rel-${version}`;
      const a = await RawMqtt.connect(gw.mqttPort, fresh(id, version), version);
      await a.client.subscribe(1, [{ topic: "rel/#", qos: 2 }]);
      await pub.publishAsync("rel/t", "once", { qos: 2 });
      const p = await a.client.next("publish");
      expect([text(p), p.qos]).toEqual(["once", 2]);
      a.client.send({ cmd: "pubrec", messageId: p.messageId! });
      const rel = await a.client.next("pubrel");
      expect(rel.messageId).toBe(p.messageId);
      await a.client.destroy();

      const b = await RawMqtt.connect(gw.mqttPort, persistent(id, version), version);
      expect(b.connack.sessionPresent).toBe(true);
      const rel2 = await b.client.next("pubrel");
      expect(rel2.messageId).toBe(p.messageId);
      b.client.send({ cmd: "pubcomp", messageId: p.messageId! });
      await pub.publishAsync("rel/t", "marker", { qos: 1 });
      const m = await b.client.next("publish");
      expect([text(m), m.qos]).toEqual(["marker", 1]);
      // Nothing but PUBREL before the marker: the message itself is not sent again.
      expect(b.client.packets.map((x) => x.cmd)).toEqual(["connack", "pubrel", "publish"]);
    },
  );

  it.each([4, 5] as const)(
    "level %i: an inbound QoS 2 PUBLISH resent after a reconnect is delivered once [MQTT-4.3.3-10]",
    async (version) => {
      gw = await startGateway();
      const watcher = await publisher(gw.mqttPort);
      const got: string[] = [];
      watcher.on("message", (_t, payload) => got.push(payload.toString()));
      await watcher.subscribeAsync({ "in2/#": { qos: 2 } });
      const id = `in2-${version}`;
      const message = (dup: boolean): IPublishPacket => ({
        cmd: "publish",
        topic: "in2/t",
        payload: Buffer.from("exactly-once"),
        qos: 2,
        messageId: 7,
        dup,
        retain: false,
      });
      const a = await RawMqtt.connect(gw.mqttPort, fresh(id, version), version);
      a.client.send(message(false));
      expect((await a.client.next("pubrec")).messageId).toBe(7);
      await a.client.destroy();

      const b = await RawMqtt.connect(gw.mqttPort, persistent(id, version), version);
      expect(b.connack.sessionPresent).toBe(true);
      b.client.send(message(true));
      expect((await b.client.next("pubrec")).messageId).toBe(7);
      b.client.send({ cmd: "pubrel", messageId: 7 });
      const comp = await b.client.next("pubcomp");
      expect(comp.messageId).toBe(7);
      if (version === 5) expect(comp.reasonCode).toBe(0);
      await watcher.publishAsync("in2/marker", "marker", { qos: 1 });
      await waitFor(() => got.includes("marker"));
      expect(got).toEqual(["exactly-once", "marker"]);
    },
  );
});

describe("restart", () => {
  it("keeps persistent sessions' subscriptions and queued QoS 1 and 2 messages across a gateway restart", async () => {
    gw = await startGateway();
    const port = gw.mqttPort;
    for (const version of [4, 5] as const) {
      const s = await RawMqtt.connect(port, fresh(`rs-${version}`, version), version);
      await s.client.subscribe(1, [{ topic: "rs/#", qos: 2 }]);
      await disconnect(s.client);
    }
    const pub = await publisher(port);
    await pub.publishAsync("rs/a", "q1", { qos: 1 });
    await pub.publishAsync("rs/b", "q2", { qos: 2 });
    await pub.endAsync();

    await gw.stop();
    const again = new Gateway({ config: gw.gateway.config, log: silentLogger });
    restarted.push(again);
    await again.start();
    const port2 = again.addresses().mqtt[0]!.port;

    const subs: RawMqtt[] = [];
    for (const version of [4, 5] as const) {
      const s = await RawMqtt.connect(port2, persistent(`rs-${version}`, version), version);
      expect(s.connack.sessionPresent).toBe(true);
      subs.push(s.client);
      const q1 = await s.client.next("publish");
      expect([q1.topic, text(q1), q1.qos]).toEqual(["rs/a", "q1", 1]);
      s.client.send({ cmd: "puback", messageId: q1.messageId! });
      const q2 = await s.client.next("publish");
      expect([q2.topic, text(q2), q2.qos]).toEqual(["rs/b", "q2", 2]);
      s.client.send({ cmd: "pubrec", messageId: q2.messageId! });
      await s.client.next("pubrel");
      s.client.send({ cmd: "pubcomp", messageId: q2.messageId! });
    }
    // The subscriptions survived too.
    const pub2 = await publisher(port2);
    await pub2.publishAsync("rs/c", "live", { qos: 1 });
    for (const s of subs) {
      const p = await s.next("publish");
      expect([p.topic, text(p)]).toEqual(["rs/c", "live"]);
      expect(s.all("publish").map(text)).toEqual(["q1", "q2", "live"]);
    }
  });
});

describe("limits", () => {
  it.each([4, 5] as const)(
    "level %i: queues at most max_queued_messages for an offline session and counts the rest",
    async (version) => {
      gw = await startGateway({ mqtt: { max_queued_messages: 5 } });
      const s = await RawMqtt.connect(gw.mqttPort, fresh("mq", version), version);
      await s.client.subscribe(1, [{ topic: "mq/#", qos: 1 }]);
      await disconnect(s.client);
      const pub = await publisher(gw.mqttPort);
      for (let i = 0; i < 8; i++) await pub.publishAsync("mq/t", `m${i}`, { qos: 1 });
      // QoS 0 is not queued for offline sessions.
      await pub.publishAsync("mq/t", "qos0", { qos: 0 });
      const dropped = () =>
        gw!.gateway.metrics.value("leafgate_mqtt_messages_dropped_total", { reason: "queue-full" });
      await waitFor(() => dropped() === 3, { message: () => `dropped ${dropped()}` });

      const b = await RawMqtt.connect(gw.mqttPort, persistent("mq", version), version);
      expect(b.connack.sessionPresent).toBe(true);
      for (let i = 0; i < 5; i++) {
        const p = await b.client.next("publish");
        b.client.send({ cmd: "puback", messageId: p.messageId! });
      }
      await pub.publishAsync("mq/t", "marker", { qos: 1 });
      await b.client.next("publish", (p) => text(p) === "marker");
      expect(b.client.all("publish").map(text)).toEqual(["m0", "m1", "m2", "m3", "m4", "marker"]);
      expect(dropped()).toBe(3);
    },
  );

  it("3.1.1: over max_connections the next CONNECT gets return code 3 and is closed", async () => {
    gw = await startGateway({ mqtt: { max_connections: 2 } });
    const a = await RawMqtt.connect(gw.mqttPort, { clientId: "mc4-a", protocolVersion: 4 }, 4);
    const b = await RawMqtt.connect(gw.mqttPort, { clientId: "mc4-b", protocolVersion: 4 }, 4);
    expect([a.connack.returnCode, b.connack.returnCode]).toEqual([0, 0]);
    const c = await RawMqtt.connect(gw.mqttPort, { clientId: "mc4-c", protocolVersion: 4 }, 4);
    expect(c.connack.returnCode).toBe(3);
    await c.client.closedByServer();
    await disconnect(a.client);
    await waitFor(() => gw!.gateway.metrics.value("leafgate_mqtt_connections") === 1);
    const d = await RawMqtt.connect(gw.mqttPort, { clientId: "mc4-d", protocolVersion: 4 }, 4);
    expect(d.connack.returnCode).toBe(0);
    expect(b.client.isClosed).toBe(false);
  });
});
