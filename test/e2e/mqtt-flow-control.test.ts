// MQTT 5 flow control (section 4.9) with raw packets, as the Paho MQTT 5 interop suite's
// test_flow_control1 and test_flow_control2 exercise it: the gateway announces its Receive
// Maximum (`mqtt.receive_maximum`) in CONNACK, and a client with more QoS 1/2 PUBLISHes
// unanswered than that (no PUBACK, or no PUBCOMP yet) is disconnected with 0x93 Receive
// Maximum exceeded [MQTT-3.3.4-7]; the client's own Receive Maximum bounds what the gateway
// sends it [MQTT-3.3.4-9]. MQTT 3.1.1 has no Receive Maximum: its clients are not cut.
import mqtt from "mqtt-packet";
import { afterEach, describe, expect, it } from "vitest";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { closeRawClients, RawMqtt } from "../helpers/raw-mqtt.js";
import { waitFor } from "../helpers/wait.js";

/** The default of `mqtt.receive_maximum`. */
const RECEIVE_MAXIMUM = 100;
/** MQTT 5 reason code Receive Maximum exceeded (section 2.4). */
const RECEIVE_MAXIMUM_EXCEEDED = 0x93;

const publish = (topic: string, payload: string, qos: 1 | 2, messageId: number): mqtt.Packet => ({
  cmd: "publish",
  topic,
  payload: Buffer.from(payload),
  qos,
  messageId,
  dup: false,
  retain: false,
});

/** Every packet of `packets` encoded into one write: the gateway reads them at once. */
function sendAll(client: RawMqtt, packets: readonly mqtt.Packet[]): void {
  client.write(
    Buffer.concat(packets.map((p) => mqtt.generate(p, { protocolVersion: client.version }))),
  );
}

describe("MQTT 5 flow control", () => {
  let gw: TestGateway | undefined;

  afterEach(async () => {
    await closeRawClients();
    await gw?.dispose();
    gw = undefined;
  });

  const protocolErrors = (violation: string) =>
    gw!.gateway.metrics.value("leafgate_mqtt_protocol_errors_total", { violation });
  const stored = () => gw!.gateway.status().outbox.pending;

  it("CONNACK announces mqtt.receive_maximum; 3.1.1 CONNACK has no properties", async () => {
    gw = await startGateway();
    const { connack } = await RawMqtt.connect(gw.mqttPort, { clientId: "rm5" });
    expect(connack.reasonCode).toBe(0);
    expect(connack.properties?.receiveMaximum).toBe(RECEIVE_MAXIMUM);
    const v4 = await RawMqtt.connect(gw.mqttPort, { clientId: "rm4" }, 4);
    expect(v4.connack.returnCode).toBe(0);
    expect(v4.connack.properties).toBeUndefined();
  });

  it("a configured receive_maximum is announced", async () => {
    gw = await startGateway({ mqtt: { receive_maximum: 7 } });
    const { connack } = await RawMqtt.connect(gw.mqttPort, { clientId: "rm7" });
    expect(connack.properties?.receiveMaximum).toBe(7);
  });

  // test_flow_control2: Receive Maximum + 1 QoS 2 PUBLISHes and no PUBREL; the last one is
  // over the quota, since none of the exchanges reached PUBCOMP.
  it("Receive Maximum + 1 QoS 2 PUBLISHes without PUBREL: DISCONNECT 0x93", async () => {
    gw = await startGateway();
    const { client, connack } = await RawMqtt.connect(gw.mqttPort, { clientId: "fc2" });
    const max = connack.properties?.receiveMaximum ?? 0xffff;
    expect(max).toBe(RECEIVE_MAXIMUM);
    const packets = [];
    for (let i = 1; i <= max + 1; i++) packets.push(publish("fc2/t", `message ${i}`, 2, i));
    sendAll(client, packets);
    const disconnect = await client.next("disconnect");
    expect(disconnect.reasonCode).toBe(RECEIVE_MAXIMUM_EXCEEDED);
    // Said in words, in at most 100 bytes: with 125 the property section needs a two-byte
    // length, which the Paho interop suite's parser misreads (it then fails this test).
    const words = disconnect.properties?.reasonString ?? "";
    expect(words).toMatch(/^more QoS 1\/2 PUBLISHes unacknowledged than the Receive Maximum/);
    expect(Buffer.byteLength(words)).toBeLessThanOrEqual(100);
    await client.closedByServer();
    // The first Receive Maximum were taken: each has its PUBREC, before the DISCONNECT.
    const pubrecs = client.all("pubrec");
    expect(pubrecs.map((p) => p.messageId)).toEqual(Array.from({ length: max }, (_, i) => i + 1));
    expect(pubrecs.every((p) => (p.reasonCode ?? 0) === 0)).toBe(true);
    expect(client.packets.at(-1)?.cmd).toBe("disconnect");
    expect(stored()).toBe(max);
    expect(protocolErrors("receiveMaxExceeded")).toBe(1);
  });

  it("Receive Maximum + 1 QoS 1 PUBLISHes in one write: DISCONNECT 0x93", async () => {
    gw = await startGateway({ mqtt: { receive_maximum: 10 } });
    const { client } = await RawMqtt.connect(gw.mqttPort, { clientId: "fc1" });
    const packets = [];
    for (let i = 1; i <= 11; i++) packets.push(publish("fc1/t", `m${i}`, 1, i));
    sendAll(client, packets);
    const disconnect = await client.next("disconnect");
    expect(disconnect.reasonCode).toBe(RECEIVE_MAXIMUM_EXCEEDED);
    await client.closedByServer();
    expect(client.all("puback").map((p) => p.messageId)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(stored()).toBe(10);
    expect(protocolErrors("receiveMaxExceeded")).toBe(1);
  });

  it("the quota comes back with PUBACK, PUBCOMP and a PUBREC error: a compliant client is never cut", async () => {
    gw = await startGateway({
      mqtt: { receive_maximum: 4 },
      authorization: { default_permissions: { publish: { allow: ["ok.>"] } } },
    });
    const { client } = await RawMqtt.connect(gw.mqttPort, { clientId: "fcok" });
    for (let round = 0; round < 3; round++) {
      // Four QoS 2 exchanges open at once, then completed.
      const ids = [1, 2, 3, 4].map((i) => round * 10 + i);
      sendAll(
        client,
        ids.map((id) => publish("ok/q2", `r${round} ${id}`, 2, id)),
      );
      for (const id of ids) await client.next("pubrec", (p) => p.messageId === id);
      sendAll(
        client,
        ids.map((id) => ({ cmd: "pubrel", messageId: id }) as mqtt.Packet),
      );
      for (const id of ids) await client.next("pubcomp", (p) => p.messageId === id);
      // Four QoS 1 at once, acknowledged.
      const ids1 = ids.map((id) => id + 100);
      sendAll(
        client,
        ids1.map((id) => publish("ok/q1", `r${round} ${id}`, 1, id)),
      );
      for (const id of ids1) await client.next("puback", (p) => p.messageId === id);
      // Four refused by permissions: PUBREC 0x87 ends each exchange (section 4.3.3).
      const ids2 = ids.map((id) => id + 200);
      sendAll(
        client,
        ids2.map((id) => publish("denied/q2", `r${round} ${id}`, 2, id)),
      );
      for (const id of ids2) {
        const rec = await client.next("pubrec", (p) => p.messageId === id);
        expect(rec.reasonCode).toBe(0x87);
      }
    }
    client.send({ cmd: "pingreq" });
    await client.next("pingresp");
    expect(client.isClosed).toBe(false);
    expect(client.all("disconnect")).toEqual([]);
    await waitFor(() => stored() === 24);
    expect(protocolErrors("receiveMaxExceeded")).toBe(0);
  });

  it("MQTT 3.1.1 has no Receive Maximum: 2 x receive_maximum QoS 2 exchanges open are fine", async () => {
    gw = await startGateway({ mqtt: { receive_maximum: 5 } });
    const { client } = await RawMqtt.connect(gw.mqttPort, { clientId: "fc311" }, 4);
    const ids = Array.from({ length: 10 }, (_, i) => i + 1);
    sendAll(
      client,
      ids.map((id) => publish("v4/q2", `m${id}`, 2, id)),
    );
    for (const id of ids) await client.next("pubrec", (p) => p.messageId === id);
    sendAll(
      client,
      ids.map((id) => ({ cmd: "pubrel", messageId: id }) as mqtt.Packet),
    );
    for (const id of ids) await client.next("pubcomp", (p) => p.messageId === id);
    expect(client.isClosed).toBe(false);
    expect(stored()).toBe(10);
    expect(protocolErrors("receiveMaxExceeded")).toBe(0);
  });

  // test_flow_control1: the client's Receive Maximum 2 bounds what the gateway sends it.
  it("a client announcing Receive Maximum 2 gets two QoS 1 PUBLISHes, the third after a PUBACK", async () => {
    gw = await startGateway();
    const { client } = await RawMqtt.connect(gw.mqttPort, {
      clientId: "fc1c",
      properties: { receiveMaximum: 2 },
    });
    await client.subscribe(1, [{ topic: "fc1c/t", qos: 2 }]);
    sendAll(
      client,
      [1, 2, 3].map((i) => publish("fc1c/t", `message ${i}`, 1, i)),
    );
    for (const id of [1, 2, 3]) await client.next("puback", (p) => p.messageId === id);
    const first = await client.next("publish");
    const second = await client.next("publish");
    expect([first.payload.toString(), second.payload.toString()]).toEqual([
      "message 1",
      "message 2",
    ]);
    // A PINGREQ behind the three PUBLISHes: its PINGRESP proves nothing more was sent.
    client.send({ cmd: "pingreq" });
    await client.next("pingresp");
    expect(client.all("publish")).toHaveLength(2);
    client.send({ cmd: "puback", messageId: first.messageId! });
    const third = await client.next("publish");
    expect(third.payload.toString()).toBe("message 3");
    client.send({ cmd: "puback", messageId: second.messageId! });
    client.send({ cmd: "puback", messageId: third.messageId! });
    client.send({ cmd: "pingreq" });
    await client.next("pingresp");
    expect(client.all("publish")).toHaveLength(3);
  });
});
