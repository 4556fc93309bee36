// Topic and filter bounds (mqtt.max_topic_length in UTF-8 bytes, mqtt.max_topic_levels)
// against a live in-process gateway, with raw clients so that every reason code shows:
// a PUBLISH or will topic past them closes the connection (MQTT 5: DISCONNECT 0x90 Topic
// Name invalid), a SUBSCRIBE or UNSUBSCRIBE filter past them is refused alone (0x80 in
// 3.1.1, 0x8F in MQTT 5) while the rest of the packet and the connection carry on.
// Small bounds (16 bytes, 4 levels) make each edge exact; the defaults are checked apart.
import { afterEach, describe, expect, it } from "vitest";
import { type GatewayConfigInput, startGateway, type TestGateway } from "../helpers/gateway.js";
import { closeRawClients, RawMqtt } from "../helpers/raw-mqtt.js";
import { waitFor } from "../helpers/wait.js";

const SMALL_BOUNDS: GatewayConfigInput["mqtt"] = { max_topic_length: 16, max_topic_levels: 4 };

let gw: TestGateway | undefined;

afterEach(async () => {
  await closeRawClients();
  await gw?.dispose();
  gw = undefined;
});

async function start(mqtt = SMALL_BOUNDS): Promise<TestGateway> {
  gw = await startGateway({ mqtt });
  return gw;
}

const metric = (name: string, labels?: Record<string, string>): number =>
  gw!.gateway.metrics.value(name, labels);
const refused = (reason: string) => metric("leafgate_mqtt_subscriptions_refused_total", { reason });
const violations = (violation: string) =>
  metric("leafgate_mqtt_protocol_errors_total", { violation });

async function connect(clientId: string, version: 4 | 5 = 5): Promise<RawMqtt> {
  const { client, connack } = await RawMqtt.connect(gw!.mqttPort, { clientId }, version);
  expect(version === 5 ? connack.reasonCode : connack.returnCode).toBe(0);
  return client;
}

/** Publishes QoS 1 and returns the PUBACK's reason code. */
async function publishAcked(client: RawMqtt, topic: string, messageId: number): Promise<number> {
  client.send({
    cmd: "publish",
    topic,
    payload: Buffer.from("x"),
    qos: 1,
    dup: false,
    retain: false,
    messageId,
  });
  const ack = await client.next("puback", (p) => p.messageId === messageId);
  return ack.reasonCode ?? 0;
}

describe("PUBLISH topics past the bounds close the connection", () => {
  it.each([
    ["16 bytes, 4 levels", "aaaa/bbbb/cccc/d", undefined],
    ["8 × ü: 16 bytes in 8 characters", "üüüüüüüü", undefined],
    ["17 bytes", "aaaa/bbbb/cccc/dd", "topicTooLong"],
    ["9 × ü: 18 bytes in 9 characters", "üüüüüüüüü", "topicTooLong"],
    ["5 levels in 9 bytes", "a/b/c/d/e", "topicTooManyLevels"],
    ["5 empty levels", "////", "topicTooManyLevels"],
  ])("MQTT 5, %s", async (_name, topic, violation) => {
    await start();
    const client = await connect("pub");
    if (violation === undefined) {
      expect(await publishAcked(client, topic, 1)).toBe(0);
      expect(metric("leafgate_mqtt_protocol_errors_total")).toBe(0);
      return;
    }
    client.send({
      cmd: "publish",
      topic,
      payload: Buffer.from("x"),
      qos: 1,
      dup: false,
      retain: false,
      messageId: 1,
    });
    const disconnect = await client.next("disconnect");
    expect(disconnect.reasonCode).toBe(0x90);
    await client.closedByServer();
    expect(client.all("puback")).toEqual([]);
    expect(violations(violation)).toBe(1);
    expect(metric("leafgate_outbox_appended_total")).toBe(0);
  });

  it("3.1.1: closed without an answer, counted", async () => {
    await start();
    const client = await connect("pub311", 4);
    client.send({
      cmd: "publish",
      topic: "a/b/c/d/e",
      payload: Buffer.from("x"),
      qos: 0,
      dup: false,
      retain: false,
    });
    await client.closedByServer();
    expect(client.packets.map((p) => p.cmd)).toEqual(["connack"]);
    expect(violations("topicTooManyLevels")).toBe(1);
  });

  it("a topic alias stands for a topic already held to the bounds", async () => {
    await start();
    const client = await connect("alias");
    const publish = (topic: string, messageId: number): void =>
      client.send({
        cmd: "publish",
        topic,
        payload: Buffer.from("x"),
        qos: 1,
        dup: false,
        retain: false,
        messageId,
        properties: { topicAlias: 1 },
      });
    publish("a/b/c/d", 1);
    publish("", 2);
    expect((await client.next("puback", (p) => p.messageId === 2)).reasonCode ?? 0).toBe(0);
    expect(metric("leafgate_mqtt_messages_received_total", { qos: "1" })).toBe(2);
  });

  it("a will topic past the bounds refuses the CONNECT: closed, counted, no will later", async () => {
    await start();
    const client = await RawMqtt.open(gw!.mqttPort, 5);
    client.send({
      cmd: "connect",
      protocolId: "MQTT",
      protocolVersion: 5,
      clientId: "will",
      clean: true,
      keepalive: 30,
      will: { topic: "w/i/l/l/s", payload: Buffer.from("gone"), qos: 0, retain: false },
    });
    await client.closedByServer();
    expect(client.packets).toEqual([]);
    expect(violations("topicTooManyLevels")).toBe(1);
    expect(metric("leafgate_mqtt_wills_published_total")).toBe(0);
  });
});

describe("SUBSCRIBE and UNSUBSCRIBE filters past the bounds are refused one by one", () => {
  it("MQTT 5: 0x8F for each filter past them (the $share group held apart), the rest granted", async () => {
    await start();
    const client = await connect("sub");
    const suback = await client.subscribe(1, [
      { topic: "a/+/c/#", qos: 1 }, // 4 levels, 7 bytes
      { topic: "a/+/c/d/#", qos: 1 }, // 5 levels
      { topic: "aaaa/bbbb/cccc/dd", qos: 1 }, // 17 bytes
      { topic: "$share/g/a/b/c/d", qos: 1 }, // the filter part: 4 levels, 7 bytes
      { topic: `$share/${"g".repeat(17)}/a`, qos: 1 }, // a 17-byte group
      { topic: `$share/${"g".repeat(16)}/x`, qos: 0 }, // a 16-byte group
      { topic: "$share/g/a/b/c/d/e", qos: 1 }, // 5 levels after the group
      { topic: "a/#/b", qos: 1 }, // invalid, as before
    ]);
    expect(suback.granted).toEqual([1, 0x8f, 0x8f, 1, 0x8f, 0, 0x8f, 0x8f]);
    expect([refused("too-many-levels"), refused("too-long"), refused("invalid-filter")]).toEqual([
      2, 2, 1,
    ]);
    expect(metric("leafgate_mqtt_protocol_errors_total")).toBe(0);

    // Still open, and the granted filters work.
    const publisher = await connect("pub");
    expect(await publishAcked(publisher, "a/b/c/d", 7)).toBe(0);
    const delivered = await client.next("publish");
    expect(delivered.topic).toBe("a/b/c/d");
    await waitFor(() => client.all("publish").length === 2);
    expect(client.all("publish").map((p) => p.topic)).toEqual(["a/b/c/d", "a/b/c/d"]);

    client.send({
      cmd: "unsubscribe",
      messageId: 2,
      unsubscriptions: ["a/+/c/#", "a/+/c/d/#", `$share/${"g".repeat(17)}/a`, "never/subscribed"],
    });
    const unsuback = await client.next("unsuback");
    expect(unsuback.granted).toEqual([0x00, 0x8f, 0x8f, 0x11]);
    expect([refused("too-many-levels"), refused("too-long")]).toEqual([3, 3]);
    expect(client.isClosed).toBe(false);
  });

  it("3.1.1: SUBACK 0x80 for the filter past them, the other granted", async () => {
    await start();
    const client = await connect("sub311", 4);
    const suback = await client.subscribe(1, [
      { topic: "a/b/c/d/e", qos: 1 },
      { topic: "a/b", qos: 1 },
    ]);
    expect(suback.granted).toEqual([0x80, 1]);
    expect(refused("too-many-levels")).toBe(1);
  });
});

describe("the default bounds: 1024 bytes and 64 levels", () => {
  it("takes a topic of 64 levels and 1024 bytes, refuses 65 levels and 1025 bytes", async () => {
    await start({});
    const client = await connect("defaults");
    const levels = (n: number) => Array.from({ length: n }, () => "l").join("/");
    const bytes = (n: number) => `b/${"x".repeat(n - 2)}`;
    const suback = await client.subscribe(1, [
      { topic: levels(64), qos: 0 },
      { topic: levels(65), qos: 0 },
      { topic: bytes(1024), qos: 0 },
      { topic: bytes(1025), qos: 0 },
    ]);
    expect(suback.granted).toEqual([0, 0x8f, 0, 0x8f]);
    expect(await publishAcked(client, levels(64), 1)).toBe(0);
    expect(await publishAcked(client, bytes(1024), 2)).toBe(0);
    client.send({
      cmd: "publish",
      topic: bytes(1025),
      payload: Buffer.from("x"),
      qos: 1,
      dup: false,
      retain: false,
      messageId: 3,
    });
    expect((await client.next("disconnect")).reasonCode).toBe(0x90);
    await client.closedByServer();
    expect(violations("topicTooLong")).toBe(1);
  });
});
