// MQTT 5 against an in-process gateway: CONNACK properties, reason codes, topic aliases,
// flow control, subscription options, message expiry, will delay and WebSocket listeners.
// mqtt.js 5 is the real client; a raw mqtt-packet client shows what mqtt.js hides
// (reason codes, packet ids, aliases, the server's DISCONNECT).
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import type { IPublishPacket } from "mqtt-packet";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { silentLogger } from "../../src/core/index.js";
import { Gateway } from "../../src/gateway.js";
import { hashPassword } from "../../src/mqtt/index.js";
import { type GatewayConfigInput, startGateway, type TestGateway } from "../helpers/gateway.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { closeRawClients, RawMqtt, subscriptionIds } from "../helpers/raw-mqtt.js";
import { once, waitFor } from "../helpers/wait.js";
import { willsPublished } from "../helpers/wills.js";

interface Got {
  topic: string;
  payload: string;
  retain: boolean;
  qos: number;
  properties: IPublishPacket["properties"];
}

let gw: TestGateway | undefined;
const clients: MqttClient[] = [];
const sockets: WebSocket[] = [];

afterEach(async () => {
  await closeRawClients();
  for (const s of sockets.splice(0)) s.terminate();
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true).catch(() => {})));
  await gw?.dispose();
  gw = undefined;
});

async function start(options: GatewayConfigInput = {}): Promise<TestGateway> {
  gw = await startGateway(options);
  return gw;
}

async function v5(port: number, options: IClientOptions = {}): Promise<MqttClient> {
  const c = await connectMqttJs(port, { protocolVersion: 5, ...options });
  clients.push(c);
  return c;
}

function collect(client: MqttClient): Got[] {
  const got: Got[] = [];
  client.on("message", (topic, payload, packet) =>
    got.push({
      topic,
      payload: payload.toString(),
      retain: packet.retain,
      qos: packet.qos,
      properties: packet.properties,
    }),
  );
  return got;
}

/** A QoS 1 PUBLISH from a raw client. */
function publish1(
  topic: string,
  payload: string | Buffer,
  messageId: number,
  properties?: IPublishPacket["properties"],
): IPublishPacket {
  return {
    cmd: "publish",
    topic,
    payload: typeof payload === "string" ? Buffer.from(payload) : payload,
    qos: 1,
    messageId,
    dup: false,
    retain: false,
    ...(properties ? { properties } : {}),
  };
}

const metric = (name: string, labels?: Record<string, string>) =>
  gw!.gateway.metrics.value(name, labels);

/** A message expiry short enough to wait for, and one the test never reaches. */
const SHORT_EXPIRY_S = 1;
const LONG_EXPIRY_S = 60;

/**
 * The retained messages a new subscription to `filter` gets. A PINGREQ after the SUBACK
 * fences them: the gateway writes retained messages right after the SUBACK, so they are
 * on the wire before the PINGRESP.
 */
async function retainedFor(g: TestGateway, filter: string): Promise<IPublishPacket[]> {
  const { client } = await RawMqtt.connect(g.mqttPort, { clientId: "" });
  await client.subscribe(1, [{ topic: filter, qos: 0 }]);
  client.send({ cmd: "pingreq" });
  await client.next("pingresp");
  const retained = client.all("publish");
  await client.end();
  return retained;
}

describe("MQTT 5 CONNACK", () => {
  it("announces the server's limits and tells the client what it changed", async () => {
    const g = await start({
      mqtt: {
        topic_alias_maximum: 10,
        max_packet_size: 65_536,
        max_keepalive: 30,
        max_session_expiry: "1h",
      },
    });
    // Empty id, keepalive 0, an expiry above the maximum.
    const a = await RawMqtt.connect(g.mqttPort, {
      clientId: "",
      keepalive: 0,
      properties: { sessionExpiryInterval: 7200 },
    });
    expect(a.connack.reasonCode).toBe(0);
    expect(a.connack.sessionPresent).toBe(false);
    const p = a.connack.properties ?? {};
    expect(p.topicAliasMaximum).toBe(10);
    expect(p.maximumPacketSize).toBe(65536);
    // [MQTT-3.2.2-16] an assigned id is returned in CONNACK: the gateway's own scheme,
    // `leafgate-<pid>-<n>` (this gateway runs in the test process; a is its first).
    expect(p.assignedClientIdentifier).toBe(`leafgate-${process.pid}-1`);
    // keepalive 0 (off) is not allowed beyond max_keepalive: the server says 30 [MQTT-3.2.2-21].
    expect(p.serverKeepAlive).toBe(30);
    // 7200 s asked, 3600 s (1h) kept: the server tells its value (§3.2.2.3.2).
    expect(p.sessionExpiryInterval).toBe(3600);

    // Two clients with empty ids get different ids: the next one.
    const b = await RawMqtt.connect(g.mqttPort, { clientId: "", keepalive: 100 });
    expect(b.connack.properties?.assignedClientIdentifier).toBe(`leafgate-${process.pid}-2`);
    expect(b.connack.properties?.serverKeepAlive).toBe(30);

    // Within the limits nothing is changed: either absent or the client's own value.
    const c = await RawMqtt.connect(g.mqttPort, {
      clientId: "within",
      keepalive: 20,
      properties: { sessionExpiryInterval: 60 },
    });
    expect(c.connack.reasonCode).toBe(0);
    expect(c.connack.properties?.serverKeepAlive ?? 20).toBe(20);
    expect(c.connack.properties?.sessionExpiryInterval ?? 60).toBe(60);
    expect(c.connack.properties?.assignedClientIdentifier).toBeUndefined();
  });

  it("sets session present only when a session existed [MQTT-3.2.2-2] [MQTT-3.2.2-3]", async () => {
    const g = await start();
    const connect = async (clean: boolean) => {
      const { client, connack } = await RawMqtt.connect(g.mqttPort, {
        clientId: "sp-1",
        clean,
        properties: { sessionExpiryInterval: 300 },
      });
      client.send({ cmd: "disconnect", reasonCode: 0 });
      await client.closed;
      return connack.sessionPresent;
    };
    expect(await connect(false)).toBe(false);
    expect(await connect(false)).toBe(true);
    expect(await connect(true)).toBe(false);
    expect(await connect(false)).toBe(true);
  });

  it("refuses with v5 reason codes 0x86, 0x87, 0x8C and closes [MQTT-3.2.2-7]", async () => {
    const hash = await hashPassword("pw-1");
    const g = await start({
      mqtt: { allow_anonymous: false },
      authorization: { users: [{ user: "u1", password: hash }] },
    });
    const bad = await RawMqtt.connect(g.mqttPort, {
      clientId: "c86",
      username: "u1",
      password: Buffer.from("wrong"),
    });
    expect(bad.connack.reasonCode).toBe(0x86);
    await bad.client.closedByServer();

    const anon = await RawMqtt.connect(g.mqttPort, { clientId: "c87" });
    expect(anon.connack.reasonCode).toBe(0x87);
    await anon.client.closedByServer();

    // Enhanced authentication (AUTH) is not supported [MQTT-4.12.0-1].
    const auth = await RawMqtt.connect(g.mqttPort, {
      clientId: "c8c",
      username: "u1",
      password: Buffer.from("pw-1"),
      properties: { authenticationMethod: "SCRAM-SHA-1" },
    });
    expect(auth.connack.reasonCode).toBe(0x8c);
    await auth.client.closedByServer();

    const ok = await RawMqtt.connect(g.mqttPort, {
      clientId: "c00",
      username: "u1",
      password: Buffer.from("pw-1"),
    });
    expect(ok.connack.reasonCode).toBe(0);

    // The same refusals to a 3.1.1 client use its return codes.
    const old = await RawMqtt.connect(g.mqttPort, { clientId: "c5", protocolVersion: 4 }, 4);
    expect(old.connack.returnCode).toBe(5);
    await old.client.closedByServer();
  });

  it("refuses with 0x97 over max_connections and 3 to a 3.1.1 client", async () => {
    const g = await start({ mqtt: { max_connections: 2 } });
    const a = await RawMqtt.connect(g.mqttPort, { clientId: "mc-a" });
    const b = await v5(g.mqttPort, { clientId: "mc-b" });
    expect(a.connack.reasonCode).toBe(0);
    const third = await RawMqtt.connect(g.mqttPort, { clientId: "mc-c" });
    expect(third.connack.reasonCode).toBe(0x97);
    await third.client.closedByServer();
    const old = await RawMqtt.connect(g.mqttPort, { clientId: "mc-d", protocolVersion: 4 }, 4);
    expect(old.connack.returnCode).toBe(3);
    await old.client.closedByServer();
    // The first two are unaffected; once one leaves, a newcomer gets in.
    await b.publishAsync("mc/t", "x", { qos: 1 });
    a.client.send({ cmd: "disconnect", reasonCode: 0 });
    await a.client.closed;
    await waitFor(() => metric("leafgate_mqtt_connections") === 1);
    const later = await RawMqtt.connect(g.mqttPort, { clientId: "mc-e" });
    expect(later.connack.reasonCode).toBe(0);
  });
});

describe("MQTT 5 reason codes", () => {
  const permissions: GatewayConfigInput["authorization"] = {
    default_permissions: { publish: { deny: ["secret.>"] }, subscribe: { deny: ["admin.>"] } },
  };

  it("SUBACK: granted QoS, 0x87 denied, 0x8F invalid filter; UNSUBACK 0x00 and 0x11", async () => {
    const g = await start({ authorization: permissions });
    const { client } = await RawMqtt.connect(g.mqttPort, { clientId: "rc-sub" });
    const suback = await client.subscribe(1, [
      { topic: "q0/#", qos: 0 },
      { topic: "q1/#", qos: 1 },
      { topic: "q2/#", qos: 2 },
      { topic: "admin/#", qos: 1 },
      { topic: "bad/#/x", qos: 1 },
      { topic: "a+/b", qos: 0 },
    ]);
    // [MQTT-3.9.3-1] one reason code per filter, in order.
    expect(suback.granted).toEqual([0, 1, 2, 0x87, 0x8f, 0x8f]);
    expect(metric("leafgate_mqtt_denied_total", { kind: "subscribe" })).toBe(1);
    client.send({ cmd: "unsubscribe", messageId: 2, unsubscriptions: ["q1/#", "never/#"] });
    const unsuback = await client.next("unsuback", (p) => p.messageId === 2);
    expect(unsuback.granted).toEqual([0x00, 0x11]);
    // q1/# is gone, q2/# still there.
    const pub = await v5(g.mqttPort);
    await pub.publishAsync("q1/a", "not now", { qos: 1 });
    await pub.publishAsync("q2/a", "marker", { qos: 1 });
    const marker = await client.next("publish");
    expect([marker.topic, marker.payload.toString()]).toEqual(["q2/a", "marker"]);
    expect(client.take("publish")).toEqual([]);
  });

  it("PUBACK 0x87 for a denied publish, 0x99 for invalid UTF-8 with Payload Format Indicator 1", async () => {
    const g = await start({ authorization: permissions });
    const sub = await v5(g.mqttPort);
    const got = collect(sub);
    await sub.subscribeAsync({ "#": { qos: 1 } });
    const { client } = await RawMqtt.connect(g.mqttPort, { clientId: "rc-pub" });
    client.send(publish1("secret/x", "s", 1));
    expect((await client.next("puback", (p) => p.messageId === 1)).reasonCode).toBe(0x87);
    client.send(publish1("plain/x", Buffer.from([0xff, 0xfe, 0x41]), 2));
    expect((await client.next("puback", (p) => p.messageId === 2)).reasonCode).toBe(0);
    client.send(
      publish1("utf/x", Buffer.from([0xff, 0xfe, 0x41]), 3, { payloadFormatIndicator: true }),
    );
    expect((await client.next("puback", (p) => p.messageId === 3)).reasonCode).toBe(0x99);
    client.send(publish1("utf/ok", "héllo", 4, { payloadFormatIndicator: true }));
    expect((await client.next("puback", (p) => p.messageId === 4)).reasonCode).toBe(0);
    // The connection is still usable and only the accepted messages were delivered.
    await waitFor(() => got.some((m) => m.topic === "utf/ok"));
    expect(got.map((m) => m.topic)).toEqual(["plain/x", "utf/ok"]);
    expect(got[1]!.payload).toBe("héllo");
    expect(got[1]!.properties?.payloadFormatIndicator).toBe(true);
    expect(client.isClosed).toBe(false);
  });

  it("PUBCOMP 0x92 for a PUBREL of an unknown packet id", async () => {
    const g = await start();
    const { client } = await RawMqtt.connect(g.mqttPort, { clientId: "rc-rel" });
    client.send({ cmd: "pubrel", messageId: 42, reasonCode: 0 });
    const pubcomp = await client.next("pubcomp");
    expect(pubcomp.messageId).toBe(42);
    expect(pubcomp.reasonCode).toBe(0x92);
    // A normal QoS 2 flow afterwards completes with 0x00.
    client.send({ ...publish1("q2/x", "x", 43), qos: 2 });
    const pubrec = await client.next("pubrec");
    expect([pubrec.messageId, pubrec.reasonCode]).toEqual([43, 0]);
    client.send({ cmd: "pubrel", messageId: 43, reasonCode: 0 });
    const done = await client.next("pubcomp");
    expect([done.messageId, done.reasonCode]).toEqual([43, 0]);
  });
});

describe("MQTT 5 topic aliases", () => {
  const config = { mqtt: { topic_alias_maximum: 10 } };

  it("maps inbound aliases: set with a topic, use with an empty topic, remap", async () => {
    const g = await start(config);
    const { client: sub } = await RawMqtt.connect(g.mqttPort, { clientId: "ta-sub" });
    await sub.subscribe(1, [{ topic: "ta/#", qos: 1 }]);
    const { client: pub, connack } = await RawMqtt.connect(g.mqttPort, { clientId: "ta-pub" });
    expect(connack.properties?.topicAliasMaximum).toBe(10);
    const sent: [string, string, number][] = [
      ["ta/one", "a", 1],
      ["", "b", 1],
      ["ta/two", "c", 10],
      ["", "d", 10],
      ["ta/three", "e", 1], // remaps alias 1
      ["", "f", 1],
      ["", "g", 10],
    ];
    for (const [i, [topic, payload, alias]] of sent.entries()) {
      pub.send(publish1(topic, payload, i + 1, { topicAlias: alias }));
      expect((await pub.next("puback", (p) => p.messageId === i + 1)).reasonCode).toBe(0);
    }
    const got: string[][] = [];
    for (let i = 0; i < sent.length; i++) {
      const p = await sub.next("publish");
      got.push([p.topic, p.payload.toString()]);
      // The subscriber announced no Topic Alias Maximum: it gets none [MQTT-3.3.2-11].
      expect(p.properties?.topicAlias).toBeUndefined();
    }
    expect(got).toEqual([
      ["ta/one", "a"],
      ["ta/one", "b"],
      ["ta/two", "c"],
      ["ta/two", "d"],
      ["ta/three", "e"],
      ["ta/three", "f"],
      ["ta/two", "g"],
    ]);
  });

  it.each([
    ["alias 0", 0, "ta/x", 0x94],
    ["an alias above topic_alias_maximum", 11, "ta/x", 0x94],
    ["an unknown alias with an empty topic", 5, "", 0x82],
  ])("disconnects a client using %s", async (_name, alias, topic, reasonCode) => {
    const g = await start(config);
    const good = await v5(g.mqttPort, { clientId: "ta-good" });
    const got = collect(good);
    await good.subscribeAsync({ "ta/#": { qos: 1 } });
    const { client } = await RawMqtt.connect(g.mqttPort, { clientId: "ta-bad" });
    client.send(publish1(topic, "bad", 1, { topicAlias: alias }));
    const disconnect = await client.next("disconnect");
    expect(disconnect.reasonCode).toBe(reasonCode);
    await client.closedByServer();
    expect(client.all("puback")).toEqual([]);
    // Nothing was published and the other client carries on.
    await good.publishAsync("ta/marker", "m", { qos: 1 });
    await waitFor(() => got.length === 1);
    expect(got.map((m) => m.topic)).toEqual(["ta/marker"]);
  });

  it("sends outbound aliases only within the client's Topic Alias Maximum", async () => {
    const g = await start(config);
    const { client: sub } = await RawMqtt.connect(g.mqttPort, {
      clientId: "oa-sub",
      properties: { topicAliasMaximum: 2 },
    });
    await sub.subscribe(1, [{ topic: "oa/#", qos: 1 }]);
    const pub = await v5(g.mqttPort);
    const topics = ["oa/1", "oa/2", "oa/3", "oa/1", "oa/2", "oa/1", "oa/3", "oa/3"];
    for (const [i, t] of topics.entries()) await pub.publishAsync(t, `m${i}`, { qos: 1 });
    const wire: [string, number | undefined, string][] = [];
    for (let i = 0; i < topics.length; i++) {
      const p = await sub.next("publish");
      wire.push([p.topic, p.properties?.topicAlias, p.payload.toString()]);
    }
    // The gateway gives aliases to the first topics, as many as the client allows (never
    // above its maximum [MQTT-3.3.2-11], never 0 [MQTT-3.3.2-8]); a topic first goes with
    // its name to set the alias, then with an empty name; a topic without an alias always
    // carries its name.
    expect(wire).toEqual([
      ["oa/1", 1, "m0"],
      ["oa/2", 2, "m1"],
      ["oa/3", undefined, "m2"],
      ["", 1, "m3"],
      ["", 2, "m4"],
      ["", 1, "m5"],
      ["oa/3", undefined, "m6"],
      ["oa/3", undefined, "m7"],
    ]);
  });

  it("mqtt.js with topicAliasMaximum receives the right topics", async () => {
    const g = await start(config);
    const sub = await v5(g.mqttPort, { properties: { topicAliasMaximum: 3 } });
    const got = collect(sub);
    await sub.subscribeAsync({ "mj/#": { qos: 1 } });
    const pub = await v5(g.mqttPort);
    const topics = ["mj/a", "mj/b", "mj/a", "mj/c", "mj/d", "mj/a", "mj/e", "mj/b"];
    for (const [i, t] of topics.entries()) await pub.publishAsync(t, `m${i}`, { qos: 1 });
    await waitFor(() => got.length === topics.length);
    expect(got.map((m) => [m.topic, m.payload])).toEqual(topics.map((t, i) => [t, `m${i}`]));
  });
});

describe("MQTT 5 flow control", () => {
  /** A raw subscriber that never acks by itself, and a publisher of `n` QoS 1 messages. */
  async function scene(g: TestGateway, receiveMaximum?: number) {
    const { client: sub } = await RawMqtt.connect(g.mqttPort, {
      clientId: "rm-sub",
      ...(receiveMaximum ? { properties: { receiveMaximum } } : {}),
    });
    await sub.subscribe(1, [
      { topic: "rm/#", qos: 1 },
      { topic: "mark/#", qos: 0 },
    ]);
    const pub = await v5(g.mqttPort);
    let markers = 0;
    /**
     * QoS 0 is outside the send quota (§4.9): a QoS 0 marker on another topic passes the
     * full window, so once it arrived the window's QoS 1 deliveries have been decided.
     */
    const settle = async () => {
      const n = ++markers;
      await pub.publishAsync("mark/x", `k${n}`, { qos: 0 });
      await sub.next("publish", (p) => p.topic === "mark/x" && p.payload.toString() === `k${n}`);
    };
    const qos1 = () => sub.all("publish").filter((p) => p.qos === 1);
    return { sub, pub, settle, qos1 };
  }

  it("sends no more unacknowledged QoS 1 messages than the client's Receive Maximum [MQTT-3.3.4-9]", async () => {
    const g = await start();
    const { sub, pub, settle, qos1 } = await scene(g, 2);
    for (let i = 0; i < 5; i++) await pub.publishAsync("rm/t", `m${i}`, { qos: 1 });
    await waitFor(() => qos1().length >= 2);
    await settle();
    expect(qos1().map((p) => p.payload.toString())).toEqual(["m0", "m1"]);
    sub.send({ cmd: "puback", messageId: qos1()[0]!.messageId!, reasonCode: 0 });
    await waitFor(() => qos1().length >= 3);
    await settle();
    expect(qos1().map((p) => p.payload.toString())).toEqual(["m0", "m1", "m2"]);
    for (const p of qos1().slice(1))
      sub.send({ cmd: "puback", messageId: p.messageId!, reasonCode: 0 });
    await waitFor(() => qos1().length === 5);
    for (const p of qos1().slice(3))
      sub.send({ cmd: "puback", messageId: p.messageId!, reasonCode: 0 });
    await settle();
    expect(qos1().map((p) => p.payload.toString())).toEqual(["m0", "m1", "m2", "m3", "m4"]);
    expect(qos1().every((p) => !p.dup)).toBe(true);
  });

  it("caps unacknowledged deliveries at max_inflight when the client allows more", async () => {
    const g = await start({ mqtt: { max_inflight: 3 } });
    const { sub, pub, settle, qos1 } = await scene(g);
    for (let i = 0; i < 6; i++) await pub.publishAsync("rm/t", `m${i}`, { qos: 1 });
    await waitFor(() => qos1().length >= 3);
    await settle();
    expect(qos1().map((p) => p.payload.toString())).toEqual(["m0", "m1", "m2"]);
    sub.send({ cmd: "puback", messageId: qos1()[1]!.messageId!, reasonCode: 0 });
    await waitFor(() => qos1().length >= 4);
    await settle();
    expect(qos1().map((p) => p.payload.toString())).toEqual(["m0", "m1", "m2", "m3"]);
  });
});

describe("MQTT 5 subscription options", () => {
  it("No Local: a client's own messages are not sent back to it [MQTT-3.8.3-3]", async () => {
    const g = await start();
    const a = await v5(g.mqttPort, { clientId: "nl-a" });
    const got = collect(a);
    await a.subscribeAsync({ "nl/#": { qos: 1, nl: true } });
    const b = await v5(g.mqttPort, { clientId: "nl-b" });
    await a.publishAsync("nl/own", "own", { qos: 1 });
    await b.publishAsync("nl/other", "other", { qos: 1 });
    // nl/own, had it been sent back, would have come first: one subscription, in order.
    await waitFor(() => got.some((m) => m.topic === "nl/other"));
    expect(got.map((m) => m.topic)).toEqual(["nl/other"]);
  });

  it("Retain As Published keeps the retain flag on live deliveries [MQTT-3.3.1-12] [MQTT-3.3.1-13]", async () => {
    const g = await start();
    const { client } = await RawMqtt.connect(g.mqttPort, { clientId: "rap" });
    await client.subscribe(1, [{ topic: "rap/a/#", qos: 1, rap: true }]);
    await client.subscribe(2, [{ topic: "rap/b/#", qos: 1, rap: false }]);
    const pub = await v5(g.mqttPort);
    await pub.publishAsync("rap/a/x", "1", { qos: 1, retain: true });
    await pub.publishAsync("rap/b/x", "2", { qos: 1, retain: true });
    const a = await client.next("publish", (p) => p.topic === "rap/a/x");
    const b = await client.next("publish", (p) => p.topic === "rap/b/x");
    expect(a.retain).toBe(true);
    expect(b.retain).toBe(false);
  });

  it("Retain Handling 0, 1, 2 [MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11]", async () => {
    const g = await start();
    const pub = await v5(g.mqttPort);
    await pub.publishAsync("rh/x", "kept", { qos: 1, retain: true });
    const { client } = await RawMqtt.connect(g.mqttPort, { clientId: "rh" });
    await client.subscribe(1, [{ topic: "mark", qos: 1 }]);
    let n = 0;
    /** Subscribes, then waits for a marker published after the SUBACK; returns what came before. */
    const subscribeAndSettle = async (rh: number): Promise<string[]> => {
      const id = 10 + n;
      await client.subscribe(id, [{ topic: "rh/#", qos: 1, rh }]);
      const mark = `m${n++}`;
      await pub.publishAsync("mark", mark, { qos: 1 });
      await client.next("publish", (p) => p.topic === "mark" && p.payload.toString() === mark);
      return client
        .take("publish")
        .filter((p) => p.topic !== "mark")
        .map((p) => `${p.topic}=${p.payload.toString()} retain=${p.retain}`);
    };
    // 0: on every subscribe, also a repeated one.
    expect(await subscribeAndSettle(0)).toEqual(["rh/x=kept retain=true"]);
    expect(await subscribeAndSettle(0)).toEqual(["rh/x=kept retain=true"]);
    client.send({ cmd: "unsubscribe", messageId: 50, unsubscriptions: ["rh/#"] });
    await client.next("unsuback");
    // 1: only when the subscription did not exist.
    expect(await subscribeAndSettle(1)).toEqual(["rh/x=kept retain=true"]);
    expect(await subscribeAndSettle(1)).toEqual([]);
    client.send({ cmd: "unsubscribe", messageId: 51, unsubscriptions: ["rh/#"] });
    await client.next("unsuback");
    // 2: never.
    expect(await subscribeAndSettle(2)).toEqual([]);
    // The subscription works for live messages.
    await pub.publishAsync("rh/x", "live", { qos: 1 });
    const live = await client.next("publish", (p) => p.topic === "rh/x");
    expect([live.payload.toString(), live.retain]).toEqual(["live", false]);
  });

  it("one delivery carries every matching Subscription Identifier", async () => {
    const g = await start();
    const { client } = await RawMqtt.connect(g.mqttPort, { clientId: "sid" });
    await client.subscribe(1, [{ topic: "si/#", qos: 1 }], { subscriptionIdentifier: 1 });
    await client.subscribe(2, [{ topic: "si/+/x", qos: 1 }], { subscriptionIdentifier: 2 });
    await client.subscribe(3, [{ topic: "si/none", qos: 1 }]);
    const pub = await v5(g.mqttPort);
    await pub.publishAsync("si/a/x", "both", { qos: 1 });
    await pub.publishAsync("si/b", "one", { qos: 1 });
    await pub.publishAsync("si/none", "unnumbered", { qos: 1 });
    const p3 = await client.next("publish", (p) => p.topic === "si/none");
    const got = client
      .all("publish")
      .map((p) => [p.topic, p.payload.toString(), subscriptionIds(p)]);
    // §3.3.4: the Subscription Identifiers of every matching subscription, in one copy.
    expect(got).toEqual([
      ["si/a/x", "both", [1, 2]],
      ["si/b", "one", [1]],
      ["si/none", "unnumbered", [1]],
    ]);
    expect(p3.topic).toBe("si/none");
  });

  it("a shared subscription with No Local is a protocol error [MQTT-3.8.3-4]", async () => {
    const g = await start();
    const { client } = await RawMqtt.connect(g.mqttPort, { clientId: "sh-nl" });
    client.send({
      cmd: "subscribe",
      messageId: 1,
      subscriptions: [{ topic: "$share/g/sh/#", qos: 1, nl: true }],
    });
    const d = await client.next("disconnect");
    expect(d.reasonCode).toBe(0x82);
    await client.closedByServer();
  });

  it("does not send retained messages to a shared subscription", async () => {
    const g = await start();
    const pub = await v5(g.mqttPort);
    await pub.publishAsync("shr/x", "retained", { qos: 1, retain: true });
    const { client } = await RawMqtt.connect(g.mqttPort, { clientId: "shr" });
    const suback = await client.subscribe(1, [{ topic: "$share/g/shr/#", qos: 1 }]);
    expect(suback.granted).toEqual([1]);
    await pub.publishAsync("shr/marker", "m", { qos: 1 });
    const first = await client.next("publish");
    expect([first.topic, first.payload.toString()]).toEqual(["shr/marker", "m"]);
    expect(client.all("publish")).toHaveLength(1);
  });
});

describe("MQTT 5 message expiry", () => {
  it("drops a queued message once it expired and reduces the interval of the others [MQTT-3.3.2-5] [MQTT-3.3.2-6]", async () => {
    const g = await start();
    const session = { clientId: "exp-1", properties: { sessionExpiryInterval: 300 } };
    const first = await RawMqtt.connect(g.mqttPort, { ...session, clean: true });
    await first.client.subscribe(1, [{ topic: "exp/#", qos: 1 }]);
    first.client.send({ cmd: "disconnect", reasonCode: 0 });
    await first.client.closed;
    const pub = await v5(g.mqttPort);
    await pub.publishAsync("exp/short", "1s", {
      qos: 1,
      properties: { messageExpiryInterval: SHORT_EXPIRY_S },
    });
    // The gateway stamps a message between the PUBLISH being sent and its PUBACK.
    const longSentAt = Date.now();
    await pub.publishAsync("exp/long", "60s", {
      qos: 1,
      properties: { messageExpiryInterval: LONG_EXPIRY_S },
    });
    const longAckedAt = Date.now();
    await pub.publishAsync("exp/none", "forever", { qos: 1 });
    // Time itself is under test, and the gateway tells when enough of it has passed: a
    // retained probe with the same expiry, published after exp/short and exp/long, is
    // gone for new subscribers once the gateway's clock has passed its expiry, and so
    // exp/short's; by then exp/long has waited at least SHORT_EXPIRY_S too.
    await pub.publishAsync("probe/exp", "probe", {
      qos: 1,
      retain: true,
      properties: { messageExpiryInterval: SHORT_EXPIRY_S },
    });
    await waitFor(async () => (await retainedFor(g, "probe/#")).length === 0, {
      timeoutMs: SHORT_EXPIRY_S * 1000 + 5_000,
      intervalMs: 50,
      message: "the retained probe never expired",
    });

    const reconnectAt = Date.now();
    const again = await RawMqtt.connect(g.mqttPort, { ...session, clean: false });
    expect(again.connack.sessionPresent).toBe(true);
    const last = await again.client.next("publish", (p) => p.topic === "exp/none");
    const receivedAt = Date.now();
    const got = again.client.all("publish");
    expect(got.map((p) => [p.topic, p.payload.toString()])).toEqual([
      ["exp/long", "60s"],
      ["exp/none", "forever"],
    ]);
    expect(metric("leafgate_mqtt_messages_dropped_total", { reason: "expired" })).toBe(1);
    // The interval left is the whole seconds still to go, rounded up: between what the
    // earliest stamp and latest send and the latest stamp and earliest send give, and
    // below the 60 s sent, as at least SHORT_EXPIRY_S went by.
    const interval = got[0]!.properties?.messageExpiryInterval;
    const left = (stampedAt: number, sentAt: number) =>
      Math.ceil((stampedAt + LONG_EXPIRY_S * 1000 - sentAt) / 1000);
    expect(interval).toBeGreaterThanOrEqual(left(longSentAt, receivedAt));
    expect(interval).toBeLessThanOrEqual(
      Math.min(left(longAckedAt, reconnectAt), LONG_EXPIRY_S - SHORT_EXPIRY_S),
    );
    expect(last.properties?.messageExpiryInterval).toBeUndefined();
  });
});

describe("MQTT 5 wills", () => {
  /** Will Delay Intervals; the session outlives them (sessionExpiryInterval 300). */
  const DELAY_S = 1;
  // Longer: the first gateway must stop before it falls due.
  const RESTART_DELAY_S = 3;
  const RESUME_DELAY_S = 2;
  /** A session that ends (expires) long before its will's delay. */
  const SHORT_SESSION_S = 1;
  const LONG_DELAY_S = 60;

  async function watcher(
    port: number,
    clientId = "watcher",
  ): Promise<{ got: Got[]; mark(n: string): Promise<void> }> {
    const w = await v5(port, { clientId });
    const got = collect(w);
    await w.subscribeAsync({ "will/#": { qos: 1 } });
    return {
      got,
      // After the marker arrived, whatever the gateway published before it has too.
      mark: async (n) => {
        await w.publishAsync("will/marker", n, { qos: 1 });
        await waitFor(() => got.some((m) => m.topic === "will/marker" && m.payload === n));
      },
    };
  }
  const connections = () => metric("leafgate_mqtt_connections");
  const withDelayedWill = (clientId: string, delayS: number, expiryS = 300) => ({
    clientId,
    properties: { sessionExpiryInterval: expiryS },
    will: {
      topic: `will/${clientId}`,
      payload: Buffer.from("gone"),
      qos: 1 as const,
      retain: false,
      properties: { willDelayInterval: delayS },
    },
  });

  it("publishes a delayed will after the Will Delay Interval, not before", async () => {
    const g = await start();
    const w = await watcher(g.mqttPort);
    const { client } = await RawMqtt.connect(g.mqttPort, withDelayedWill("wd-1", DELAY_S));
    const before = connections();
    // The gateway can learn of the loss only after this.
    const lostAt = Date.now();
    await client.destroy();
    await waitFor(() => connections() === before - 1);
    await willsPublished(g.gateway, 1, { notBeforeMs: lostAt + DELAY_S * 1000 });
    await w.mark("k1");
    expect(w.got.map((m) => [m.topic, m.payload])).toEqual([
      ["will/wd-1", "gone"],
      ["will/marker", "k1"],
    ]);
  });

  it("keeps a delayed will across a gateway restart and publishes it when due", async () => {
    const g = await start();
    // A persistent watcher session: it gets the will even if it is back only after the
    // will was published (a slow restart), and it is subscribed before the restart.
    const watcherSession = { clientId: "watcher-2", properties: { sessionExpiryInterval: 300 } };
    const first = await RawMqtt.connect(g.mqttPort, { ...watcherSession, clean: true });
    await first.client.subscribe(1, [{ topic: "will/#", qos: 1 }]);
    first.client.send({ cmd: "disconnect", reasonCode: 0 });
    await first.client.closed;

    const { client } = await RawMqtt.connect(g.mqttPort, {
      ...withDelayedWill("wd-restart", RESTART_DELAY_S),
      will: {
        ...withDelayedWill("wd-restart", RESTART_DELAY_S).will,
        properties: {
          willDelayInterval: RESTART_DELAY_S,
          contentType: "text/plain",
          userProperties: { a: "1" },
        },
      },
    });
    const before = connections();
    const lostAt = Date.now();
    await client.destroy();
    await waitFor(() => connections() === before - 1);
    await g.stop();
    expect(g.gateway.metrics.value("leafgate_mqtt_wills_published_total")).toBe(0);

    const again = new Gateway({ config: g.gateway.config, log: silentLogger });
    try {
      await again.start();
      await willsPublished(again, 1, {
        notBeforeMs: lostAt + RESTART_DELAY_S * 1000,
        timeoutMs: RESTART_DELAY_S * 1000 + 5_000,
      });
      const port = again.addresses().mqtt[0]!.port;
      const back = await RawMqtt.connect(port, { ...watcherSession, clean: false });
      expect(back.connack.sessionPresent).toBe(true);
      const will = await back.client.next("publish");
      expect([will.topic, will.payload.toString(), will.qos]).toEqual([
        "will/wd-restart",
        "gone",
        1,
      ]);
      expect(will.properties?.contentType).toBe("text/plain");
      expect(will.properties?.userProperties).toEqual({ a: "1" });
      // Nothing else: a marker from a fresh client comes next.
      const pub = await RawMqtt.connect(port, { clientId: "marker-2" });
      pub.client.send(publish1("will/marker", "k1", 1));
      await pub.client.next("puback");
      const marker = await back.client.next("publish");
      expect([marker.topic, marker.payload.toString()]).toEqual(["will/marker", "k1"]);
      expect(back.client.all("publish")).toHaveLength(2);
    } finally {
      await closeRawClients();
      await again.stop();
    }
  });

  it("publishes the will when the session ends, if that is before the delay", async () => {
    const g = await start();
    const w = await watcher(g.mqttPort);
    const { client } = await RawMqtt.connect(
      g.mqttPort,
      withDelayedWill("wd-2", LONG_DELAY_S, SHORT_SESSION_S),
    );
    const before = connections();
    const lostAt = Date.now();
    await client.destroy();
    await waitFor(() => connections() === before - 1);
    // Due when the session ends, SHORT_SESSION_S after the connection went.
    await willsPublished(g.gateway, 1, { notBeforeMs: lostAt + SHORT_SESSION_S * 1000 });
    await w.mark("k1");
    expect(w.got.map((m) => [m.topic, m.payload])).toEqual([
      ["will/wd-2", "gone"],
      ["will/marker", "k1"],
    ]);
  });

  it("does not publish the will when the client resumes its session before the delay [MQTT-3.1.3-9]", async () => {
    const g = await start();
    const w = await watcher(g.mqttPort);
    const resumer = withDelayedWill("wd-3", RESUME_DELAY_S);
    const { client } = await RawMqtt.connect(g.mqttPort, resumer);
    // A reference client with the same Will Delay Interval, which does not come back.
    const reference = await RawMqtt.connect(g.mqttPort, withDelayedWill("wd-ref", RESUME_DELAY_S));
    const before = connections();
    await client.destroy();
    await waitFor(() => connections() === before - 1);
    const again = await RawMqtt.connect(g.mqttPort, {
      clientId: resumer.clientId,
      properties: resumer.properties,
      clean: false,
    });
    expect(again.connack.sessionPresent).toBe(true);
    // Time is what is under test, and the gateway itself tells when wd-3's will would
    // have been due: it arms equal delays in order, so the reference's will, lost after
    // wd-3's, falls due after it. Once the reference's will is out (and a marker after
    // it), wd-3's would be too.
    await reference.client.destroy();
    await willsPublished(g.gateway, 1, { timeoutMs: RESUME_DELAY_S * 1000 + 5_000 });
    await w.mark("k1");
    expect(w.got.map((m) => m.topic)).toEqual(["will/wd-ref", "will/marker"]);
    expect(again.client.isClosed).toBe(false);
  });

  it("DISCONNECT 0x04 publishes the will, 0x00 does not", async () => {
    const g = await start();
    const w = await watcher(g.mqttPort);
    const withWill = (clientId: string) => ({
      clientId,
      will: {
        topic: `will/${clientId}`,
        payload: Buffer.from("bye"),
        qos: 1 as const,
        retain: false,
      },
    });
    const a = await RawMqtt.connect(g.mqttPort, withWill("dw-0"));
    a.client.send({ cmd: "disconnect", reasonCode: 0x00 });
    await a.client.closed;
    const b = await RawMqtt.connect(g.mqttPort, withWill("dw-4"));
    b.client.send({ cmd: "disconnect", reasonCode: 0x04 });
    await b.client.closed;
    await willsPublished(g.gateway, 1);
    await w.mark("k1");
    // dw-0's will, had it been published, would have come first.
    expect(w.got.map((m) => [m.topic, m.payload])).toEqual([
      ["will/dw-4", "bye"],
      ["will/marker", "k1"],
    ]);
  });
});

describe("MQTT 5 packet size", () => {
  it("announces max_packet_size and disconnects with 0x95 above it; respects the client's maximum", async () => {
    const g = await start({ mqtt: { max_packet_size: 1024 } });
    const { client: small, connack } = await RawMqtt.connect(g.mqttPort, {
      clientId: "ps-small",
      properties: { maximumPacketSize: 200 },
    });
    expect(connack.properties?.maximumPacketSize).toBe(1024);
    await small.subscribe(1, [{ topic: "ps/#", qos: 1 }]);
    const pub = await v5(g.mqttPort);
    // Larger than the client's 200 bytes: discarded, not sent [MQTT-3.1.2-24] [MQTT-3.1.2-25].
    await pub.publishAsync("ps/big", "x".repeat(500), { qos: 1 });
    await pub.publishAsync("ps/small", "ok", { qos: 1 });
    const p = await small.next("publish");
    expect([p.topic, p.payload.toString()]).toEqual(["ps/small", "ok"]);
    expect(small.all("publish")).toHaveLength(1);

    const { client: big } = await RawMqtt.connect(g.mqttPort, { clientId: "ps-big" });
    big.send(publish1("ps/huge", "y".repeat(2_000), 1));
    const d = await big.next("disconnect");
    expect(d.reasonCode).toBe(0x95);
    await big.closedByServer();
    expect(big.all("puback")).toEqual([]);
    expect(small.isClosed).toBe(false);
  });
});

describe("MQTT over WebSocket", () => {
  const mqttConfig: GatewayConfigInput["mqtt"] = {
    listeners: [
      { host: "127.0.0.1", port: 0 },
      { host: "127.0.0.1", port: 0, websocket: true },
    ],
  };

  async function wsClient(port: number, options: IClientOptions): Promise<MqttClient> {
    const c = mqtt.connect(`ws://127.0.0.1:${port}/mqtt`, {
      reconnectPeriod: 0,
      connectTimeout: 5_000,
      ...options,
    });
    clients.push(c);
    await new Promise<void>((resolve, reject) => {
      c.once("connect", () => resolve());
      c.once("error", reject);
      c.once("close", () => reject(new Error("ws: closed before CONNACK")));
    });
    return c;
  }

  it.each([4, 5] as const)(
    "carries MQTT level %i both ways with a TCP client",
    async (protocolVersion) => {
      const g = await start({ mqtt: mqttConfig });
      const addresses = g.gateway.addresses().mqtt;
      expect(addresses).toHaveLength(2);
      const wsPort = addresses[1]!.port;
      const ws = await wsClient(wsPort, { protocolVersion, clientId: `ws-${protocolVersion}` });
      const tcp = await connectMqttJs(g.mqttPort, {
        protocolVersion,
        clientId: `tcp-${protocolVersion}`,
      });
      clients.push(tcp);
      const wsGot = collect(ws);
      const tcpGot = collect(tcp);
      await ws.subscribeAsync({ "to-ws/#": { qos: 1 } });
      await tcp.subscribeAsync({ "to-tcp/#": { qos: 1 } });
      for (let i = 0; i < 3; i++) {
        await tcp.publishAsync("to-ws/t", `a${i}`, { qos: 1 });
        await ws.publishAsync("to-tcp/t", `b${i}`, { qos: i % 2 === 0 ? 1 : 0 });
      }
      await waitFor(() => wsGot.length === 3 && tcpGot.length === 3);
      expect(wsGot.map((m) => m.payload)).toEqual(["a0", "a1", "a2"]);
      expect(tcpGot.map((m) => m.payload)).toEqual(["b0", "b1", "b2"]);
    },
  );

  it("selects the mqtt subprotocol [MQTT-6.0.0-4]; without it, works or refuses cleanly", async () => {
    const g = await start({ mqtt: mqttConfig });
    const wsPort = g.gateway.addresses().mqtt[1]!.port;
    const url = `ws://127.0.0.1:${wsPort}/mqtt`;
    const withProto = new WebSocket(url, ["mqtt"]);
    sockets.push(withProto);
    await once(withProto, "open");
    expect(withProto.protocol).toBe("mqtt");

    const bare = new WebSocket(url);
    sockets.push(bare);
    const outcome = await new Promise<string>((resolve) => {
      bare.once("open", () => resolve("open"));
      bare.once("unexpected-response", (_req, res) => resolve(`http ${res.statusCode}`));
      bare.once("error", (err) => resolve(`error ${err.message}`));
    });
    if (outcome === "open") {
      // Accepted: it must then speak MQTT.
      bare.send(Buffer.from([0x10, 0x0d, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 2, 0, 30, 0, 1, 0x62]));
      const [data] = await once(bare, "message");
      expect([...(data as Buffer)]).toEqual([0x20, 2, 0, 0]);
    } else {
      // Refused in the handshake with an HTTP error status, not a hang or a reset.
      expect(outcome).toMatch(/^http 4\d\d$/);
    }
  });

  it("closes only the connection that sent a garbage or text frame [MQTT-6.0.0-1]", async () => {
    const g = await start({ mqtt: mqttConfig });
    const wsPort = g.gateway.addresses().mqtt[1]!.port;
    const good = await wsClient(wsPort, { protocolVersion: 5, clientId: "ws-good" });
    const got = collect(good);
    await good.subscribeAsync({ "g/#": { qos: 1 } });
    for (const frame of [Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), "hello"]) {
      const bad = new WebSocket(`ws://127.0.0.1:${wsPort}/mqtt`, ["mqtt"]);
      sockets.push(bad);
      await once(bad, "open");
      const closed = once(bad, "close");
      bad.send(frame);
      await closed;
    }
    await good.publishAsync("g/after", "still here", { qos: 1 });
    await waitFor(() => got.length === 1);
    expect(got.map((m) => m.payload)).toEqual(["still here"]);
    expect(good.connected).toBe(true);
  });
});
