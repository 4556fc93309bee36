// A full buffer end to end: MQTT clients -> leafgate (SQLite outbox with small limits and
// an alarms class that refuses when full) while the hub is down, then JetStream on a real
// nats-server once it is back. Backpressure for alarms (no PUBACK, connection closed),
// eviction for telemetry (every message PUBACKed, the oldest dropped and counted).
import type { EventEmitter } from "node:events";
import type { MqttClient } from "mqtt";
import { afterEach, describe, expect } from "vitest";
import type { GatewayConfigInput } from "../helpers/config.js";
import { it } from "../helpers/fixtures.js";
import type { TestGateway } from "../helpers/gateway.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { connectClient, streamInfo, streamMessages } from "../helpers/nats-server.js";
import { once, waitFor } from "../helpers/wait.js";

const decoder = new TextDecoder();
const MQTT_DROPPED = "leafgate_mqtt_messages_dropped_total";
const BUFFER_DROPPED = "leafgate_buffer_dropped_total";

const BUFFER: GatewayConfigInput["buffer"] = {
  max_messages: 50,
  classes: [{ name: "alarms", subjects: ["alarms.>"], on_full: "reject", max_messages: 10 }],
};

interface ClassStatus {
  name: string;
  messages: number;
  bytes: number;
  onFull: string;
}

describe("buffer full, end to end", () => {
  let gw: TestGateway | undefined;
  const clients: MqttClient[] = [];

  afterEach(async () => {
    for (const c of clients.splice(0)) await c.endAsync(true);
  });

  async function mqttClient(port: number): Promise<MqttClient> {
    const c = await connectMqttJs(port);
    clients.push(c);
    return c;
  }

  function outboxStatus(): { pending: number; lastId: number; classes: ClassStatus[] } {
    return gw!.gateway.status().outbox as {
      pending: number;
      lastId: number;
      classes: ClassStatus[];
    };
  }

  const rowBytes = (subject: string, payload: string) =>
    subject.length + Buffer.byteLength(payload);

  it("refuses the 11th alarm with backpressure, evicts old telemetry, forwards the survivors in order", async ({
    hub,
    nc,
    stream,
    edgeGateway,
  }) => {
    // The hub first, so the gateway's fixed hub URL points at it; then down while publishing.
    gw = await edgeGateway({ buffer: BUFFER });
    const metrics = gw.gateway.metrics;
    await waitFor(() => metrics.value("leafgate_upstream_connected") === 1);
    await nc.close();
    await hub.kill();
    await waitFor(() => metrics.value("leafgate_upstream_connected") === 0);

    // 10 alarms fit the alarms class exactly: all PUBACKed.
    const alarmClient = await mqttClient(gw.mqttPort);
    const alarms = Array.from({ length: 10 }, (_, i) => `alarm-${String(i + 1).padStart(2, "0")}`);
    await Promise.all(alarms.map((a) => alarmClient.publishAsync("alarms/fire", a, { qos: 1 })));
    expect(outboxStatus().classes.find((c) => c.name === "alarms")!.messages).toBe(10);

    // The 11th: no PUBACK, the connection is closed so that the client keeps the message.
    let eleventh: "pending" | "acked" | "failed" = "pending";
    const closed = once(alarmClient as unknown as EventEmitter, "close");
    alarmClient.publish("alarms/fire", "alarm-11", { qos: 1 }, (err) => {
      eleventh = err ? "failed" : "acked";
    });
    await closed;
    expect(eleventh).not.toBe("acked");
    expect(metrics.value(MQTT_DROPPED, { reason: "buffer-full" })).toBe(1);
    expect(metrics.value(BUFFER_DROPPED, { class: "alarms", reason: "rejected" })).toBe(1);
    expect(outboxStatus().classes.find((c) => c.name === "alarms")!.messages).toBe(10);
    expect(outboxStatus().lastId).toBe(10);

    // 200 telemetry messages (default class, drop_oldest, the buffer's max_messages 50):
    // every one PUBACKed; the whole buffer stays at 50, so the newest 40 survive.
    const telemetryClient = await mqttClient(gw.mqttPort);
    const telemetry = Array.from({ length: 200 }, (_, i) => `t-${String(i + 1).padStart(3, "0")}`);
    await Promise.all(
      telemetry.map((t) => telemetryClient.publishAsync("telemetry/line1", t, { qos: 1 })),
    );
    const survivors = telemetry.slice(160);
    const status = outboxStatus();
    // (Each class also carries its limits and oldest message: docs/status.md.)
    expect(status.classes).toMatchObject([
      {
        name: "alarms",
        messages: 10,
        bytes: alarms.reduce((n, a) => n + rowBytes("alarms.fire", a), 0),
        onFull: "reject",
      },
      {
        name: "default",
        messages: 40,
        bytes: survivors.reduce((n, t) => n + rowBytes("telemetry.line1", t), 0),
        onFull: "drop_oldest",
      },
    ]);
    expect(status.pending).toBe(50);
    expect(status.lastId).toBe(210);
    expect(metrics.value(BUFFER_DROPPED, { class: "default", reason: "evicted" })).toBe(160);
    expect(metrics.value(BUFFER_DROPPED, { class: "alarms", reason: "evicted" })).toBe(0);
    expect(metrics.value(MQTT_DROPPED, { reason: "buffer-full" })).toBe(1);
    expect(metrics.value(MQTT_DROPPED, { reason: "store-failed" })).toBe(0);

    // The hub is back: exactly the survivors arrive, in acceptance order, alarms first.
    await hub.restart();
    const ncAgain = await connectClient(hub.url);
    await waitFor(async () => (await streamInfo(ncAgain, stream)).state.messages >= 50, {
      timeoutMs: 30_000,
      message: "the stream did not receive the 50 buffered messages",
    });
    await waitFor(() => outboxStatus().pending === 0);
    const messages = await streamMessages(ncAgain, stream);
    expect(
      messages.map((m) => [m.subject, decoder.decode(m.data), m.headers["Nats-Msg-Id"]?.[0]]),
    ).toEqual([
      ...alarms.map((a, i) => ["edge.gw1.alarms.fire", a, `gw1-${i + 1}`]),
      ...survivors.map((t, i) => ["edge.gw1.telemetry.line1", t, `gw1-${171 + i}`]),
    ]);
    expect(outboxStatus().classes.map((c) => [c.name, c.messages, c.bytes])).toEqual([
      ["alarms", 0, 0],
      ["default", 0, 0],
    ]);
  });
});
