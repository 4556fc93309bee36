// When the buffer refuses a message (README, Refusals: "0x97 (the buffer refused the
// message: a `reject` class is full; 3.1.1 clients are disconnected without an ack
// instead)"), with real clients: MQTT 5 publishers get PUBACK/PUBREC 0x97 Quota exceeded
// and keep their connection, whose next publish to another class is acknowledged 0x00;
// MQTT 3.1.1 publishers get no ack and lose the connection, so they still own the message.
// Every refusal is counted exactly once in leafgate_buffer_dropped_total{reason="rejected"}.
import type { EventEmitter } from "node:events";
import type { MqttClient } from "mqtt";
import { afterEach, describe, expect } from "vitest";
import type { GatewayConfigInput } from "../helpers/config.js";
import { it } from "../helpers/fixtures.js";
import type { TestGateway } from "../helpers/gateway.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { runToCompletion } from "../helpers/procs.js";
import { once } from "../helpers/wait.js";

/** Room for three alarms; telemetry (the default class) is unbounded. */
const ALARM_ROOM = 3;
const BUFFER: GatewayConfigInput["buffer"] = {
  classes: [
    { name: "alarms", subjects: ["alarms.>"], on_full: "reject", max_messages: ALARM_ROOM },
  ],
};
/** MQTT 5 reason code Quota exceeded (section 2.4). */
const QUOTA_EXCEEDED = 0x97;
const REJECTED = { class: "alarms", reason: "rejected" } as const;

interface ClassStatus {
  name: string;
  messages: number;
}

describe("the buffer refuses a message", () => {
  let gw: TestGateway | undefined;
  const clients: MqttClient[] = [];

  afterEach(async () => {
    for (const c of clients.splice(0)) await c.endAsync(true);
    gw = undefined;
  });

  async function mqttJs(protocolVersion: 4 | 5): Promise<MqttClient> {
    const c = await connectMqttJs(gw!.mqttPort, { protocolVersion });
    clients.push(c);
    return c;
  }

  const rejected = () => gw!.gateway.metrics.value("leafgate_buffer_dropped_total", REJECTED);
  const refusedPublishes = () =>
    gw!.gateway.metrics.value("leafgate_mqtt_messages_dropped_total", { reason: "buffer-full" });
  const classes = () =>
    ((gw!.gateway.status().outbox as { classes: ClassStatus[] }).classes ?? []).map(
      (c) => [c.name, c.messages] as const,
    );

  /**
   * The reason code of a publish's ack: 0, or what mqtt.js reports as the error code; or
   * "closed" if the connection closes first (mqtt.js would keep waiting for the ack).
   */
  async function ackCode(
    client: MqttClient,
    topic: string,
    qos: 1 | 2,
  ): Promise<number | "closed"> {
    const acked = client.publishAsync(topic, `${topic} ${qos}`, { qos }).then(
      (packet) => (packet as { reasonCode?: number } | undefined)?.reasonCode ?? 0,
      (err: unknown) => (err as { code?: number }).code ?? -1,
    );
    let onClose = (): void => {};
    const closed = new Promise<"closed">((resolve) => {
      onClose = () => resolve("closed");
      client.once("close", onClose);
    });
    try {
      return await Promise.race([acked, closed]);
    } finally {
      client.off("close", onClose);
    }
  }

  async function fillAlarms(): Promise<void> {
    const filler = await mqttJs(5);
    for (let i = 0; i < ALARM_ROOM; i++) {
      expect(await ackCode(filler, `alarms/fill-${i}`, 1)).toBe(0);
    }
    expect(classes()).toEqual([
      ["alarms", ALARM_ROOM],
      ["default", 0],
    ]);
  }

  it("MQTT 5: PUBACK and PUBREC 0x97, the connection stays open and takes other classes", async ({
    gateway,
  }) => {
    gw = await gateway.start({ buffer: BUFFER });
    await fillAlarms();

    const client = await mqttJs(5);
    const packets: string[] = [];
    client.on("packetreceive", (p) => {
      const code = (p as { reasonCode?: number }).reasonCode;
      packets.push(`${p.cmd}${code === undefined ? "" : ` ${code}`}`);
    });
    let closed = false;
    client.on("close", () => {
      closed = true;
    });

    expect(await ackCode(client, "alarms/fire", 1)).toBe(QUOTA_EXCEEDED);
    expect(await ackCode(client, "alarms/smoke", 2)).toBe(QUOTA_EXCEEDED);
    // The same connection, another class: accepted and acknowledged with 0x00.
    expect(await ackCode(client, "telemetry/t", 1)).toBe(0);
    expect(await ackCode(client, "telemetry/t", 2)).toBe(0);
    expect(packets).toEqual([
      `puback ${QUOTA_EXCEEDED}`,
      `pubrec ${QUOTA_EXCEEDED}`,
      "puback 0",
      "pubrec 0",
      "pubcomp 0",
    ]);
    expect(closed).toBe(false);
    expect(client.connected).toBe(true);

    // mosquitto_pub (MQTT 5) sees the same refusal, and stays connected to disconnect itself.
    const mosquitto = await runToCompletion("mosquitto_pub", [
      ...["-h", "127.0.0.1", "-p", String(gw.mqttPort), "-V", "mqttv5", "-q", "1"],
      ...["-t", "alarms/flood", "-m", "x", "-d"],
    ]);
    expect(mosquitto.stdout).toContain(`received PUBACK (Mid: 1, RC:${QUOTA_EXCEEDED})`);
    expect(mosquitto.stdout).toContain("sending DISCONNECT");
    expect(mosquitto.stderr).toContain("Publish 1 failed: Quota exceeded.");

    expect(rejected()).toBe(3);
    expect(refusedPublishes()).toBe(3);
    expect(classes()).toEqual([
      ["alarms", ALARM_ROOM],
      ["default", 2],
    ]);
  });

  it("MQTT 3.1.1: no ack, the connection is closed; QoS 1 and QoS 2", async ({ gateway }) => {
    gw = await gateway.start({ buffer: BUFFER });
    await fillAlarms();

    for (const qos of [1, 2] as const) {
      const client = await mqttJs(4);
      const packets: string[] = [];
      client.on("packetreceive", (p) => packets.push(p.cmd));
      const closed = once(client as unknown as EventEmitter, "close");
      client.publish("alarms/fire", `refused at QoS ${qos}`, { qos });
      await closed;
      expect(packets).toEqual([]);
    }
    const mosquitto = await runToCompletion("mosquitto_pub", [
      ...["-h", "127.0.0.1", "-p", String(gw.mqttPort), "-V", "mqttv311", "-q", "1"],
      ...["-t", "alarms/flood", "-m", "x", "-d"],
    ]);
    expect(mosquitto.stdout).not.toContain("received PUBACK");
    expect(mosquitto.stderr).toContain("The connection was lost.");
    expect(mosquitto.code).not.toBe(0);

    expect(rejected()).toBe(3);
    expect(refusedPublishes()).toBe(3);
    expect(classes()).toEqual([
      ["alarms", ALARM_ROOM],
      ["default", 0],
    ]);
  });
});
