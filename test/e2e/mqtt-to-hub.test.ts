// The walking skeleton's path: MQTT client -> leafgate (SQLite outbox) -> JetStream on a
// real nats-server, with the hub up, down and restarted.
import type { NatsConnection } from "@nats-io/transport-node";
import { describe, expect } from "vitest";
import { it } from "../helpers/fixtures.js";
import { connectMqttJs, mosquittoPubLines } from "../helpers/mqtt.js";
import {
  connectClient,
  type StreamMessage,
  streamInfo,
  streamMessages,
} from "../helpers/nats-server.js";
import { waitFor } from "../helpers/wait.js";

const decoder = new TextDecoder();

describe("MQTT to JetStream through the outbox", () => {
  // One hub for the file; each test gets a fresh stream, so counts start at zero.
  it.override("hub", ({ sharedHub }) => sharedHub);

  async function waitForStreamCount(
    nc: NatsConnection,
    count: number,
    timeoutMs = 60_000,
  ): Promise<void> {
    await waitFor(async () => (await streamInfo(nc, "EDGE")).state.messages >= count, {
      timeoutMs,
      message: () => `stream did not reach ${count} messages`,
    });
  }

  function expectExactlyInOrder(
    messages: StreamMessage[],
    lines: readonly string[],
    subject: string,
  ) {
    expect(messages.length).toBe(lines.length);
    const ids = new Set(messages.map((m) => m.headers["Nats-Msg-Id"]?.[0]));
    expect(ids.size).toBe(lines.length);
    const payloads = messages.map((m) => decoder.decode(m.data));
    expect(payloads).toEqual(lines);
    for (const m of messages) expect(m.subject).toBe(subject);
  }

  const lines = (n: number, tag: string): string[] =>
    Array.from({ length: n }, (_, i) => `${tag}-${String(i).padStart(5, "0")}`);

  it("forwards 10,000 QoS 1 messages from mosquitto_pub exactly once, in order", async ({
    nc,
    stream,
    edgeGateway,
  }) => {
    const gw = await edgeGateway();
    const sent = lines(10_000, "up");
    await mosquittoPubLines(gw.mqttPort, "sensors/kitchen/temp", sent);
    await waitForStreamCount(nc, sent.length);
    const messages = await streamMessages(nc, stream);
    expectExactlyInOrder(messages, sent, "edge.gw1.sensors.kitchen.temp");
    expect(messages[0]!.headers["Nats-Msg-Id"]).toEqual(["gw1-1"]);
    // Every acknowledged row is deleted from the outbox.
    await waitFor(() => gw.gateway.status().outbox.pending === 0);
  });

  it("buffers 10,000 QoS 1 messages while the hub is down and delivers them once it is back", async ({
    hub,
    nc,
    stream,
    edgeGateway,
  }) => {
    const gw = await edgeGateway();
    await waitFor(() => gw.gateway.metrics.value("leafgate_upstream_connected") === 1);
    await nc.close();
    await hub.kill();
    await waitFor(() => gw.gateway.metrics.value("leafgate_upstream_connected") === 0);

    const sent = lines(10_000, "down");
    await mosquittoPubLines(gw.mqttPort, "sensors/barn/humidity", sent);
    // mosquitto_pub exits after its last PUBACK: everything is committed locally.
    expect(gw.gateway.status().outbox.pending).toBe(10_000);

    await hub.restart();
    const ncAgain = await connectClient(hub.url);
    await waitForStreamCount(ncAgain, sent.length);
    await waitFor(() => gw.gateway.status().outbox.pending === 0);
    const messages = await streamMessages(ncAgain, stream);
    expectExactlyInOrder(messages, sent, "edge.gw1.sensors.barn.humidity");
  });

  it("survives a hub crash in the middle of forwarding: exactly once, in order", async ({
    hub,
    nc,
    stream,
    edgeGateway,
  }) => {
    const gw = await edgeGateway();
    const sent = lines(10_000, "mid");
    const publishing = mosquittoPubLines(gw.mqttPort, "line/1/counter", sent);
    await waitForStreamCount(nc, 2_000);
    await nc.close();
    await hub.kill();
    await publishing;
    await hub.restart();
    const ncAgain = await connectClient(hub.url);
    await waitForStreamCount(ncAgain, sent.length);
    await waitFor(() => gw.gateway.status().outbox.pending === 0);
    const messages = await streamMessages(ncAgain, stream);
    expectExactlyInOrder(messages, sent, "edge.gw1.line.1.counter");
  });

  it("maps MQTT topics onto subjects as nats-server does", async ({ nc, stream, edgeGateway }) => {
    const gw = await edgeGateway();
    const client = await connectMqttJs(gw.mqttPort);
    const topics = ["a/b", "a/b.c/d", "/lead", "trail/", "a//b", "$dev/x", "ünï/cødé"];
    try {
      for (const [i, topic] of topics.entries()) {
        await client.publishAsync(topic, `m${i}`, { qos: 1 });
      }
    } finally {
      await client.endAsync();
    }
    await waitForStreamCount(nc, topics.length);
    const messages = await streamMessages(nc, stream);
    expect(messages.map((m) => [m.subject, decoder.decode(m.data)])).toEqual([
      ["edge.gw1.a.b", "m0"],
      ["edge.gw1.a.b//c.d", "m1"],
      ["edge.gw1./.lead", "m2"],
      ["edge.gw1.trail./", "m3"],
      ["edge.gw1.a./.b", "m4"],
      ["edge.gw1.$dev.x", "m5"],
      ["edge.gw1.ünï.cødé", "m6"],
    ]);
  });

  it("delivers to local MQTT subscribers and imports commands from the hub", async ({
    nc,
    stream,
    edgeGateway,
  }) => {
    const gw = await edgeGateway();
    await waitFor(() => gw.gateway.status().upstream?.state === "forwarding");
    const subscriber = await connectMqttJs(gw.mqttPort);
    const received: [string, string, number][] = [];
    subscriber.on("message", (topic, payload, packet) =>
      received.push([topic, payload.toString(), packet.qos]),
    );
    const granted = await subscriber.subscribeAsync({
      "sensors/#": { qos: 1 },
      "cmd/gw1/+/set": { qos: 1 },
      "unused/+/x": { qos: 2 },
    });
    expect(granted.map((g) => g.qos)).toEqual([1, 1, 2]);

    const publisher = await connectMqttJs(gw.mqttPort);
    await publisher.publishAsync("sensors/a", "one", { qos: 1 });
    await publisher.publishAsync("sensors", "parent", { qos: 0 });
    await publisher.publishAsync("other/a", "not-me", { qos: 1 });
    await publisher.publishAsync("sensors/b/c", "two", { qos: 0 });
    await waitFor(() => received.length >= 3);
    nc.publish("cmd.gw1.valve.set", "open");
    await nc.flush();

    await waitFor(() => received.length >= 4);
    await publisher.endAsync();
    await subscriber.endAsync();
    expect(received.slice(0, 3)).toEqual([
      ["sensors/a", "one", 1],
      ["sensors", "parent", 0],
      ["sensors/b/c", "two", 0],
    ]);
    expect(received[3]).toEqual(["cmd/gw1/valve/set", "open", 1]);
    expect(received.length).toBe(4);
    // Imported commands are not exported back to the hub.
    await waitForStreamCount(nc, 4);
    const subjects = (await streamMessages(nc, stream)).map((m) => m.subject);
    expect(subjects).toEqual([
      "edge.gw1.sensors.a",
      "edge.gw1.sensors",
      "edge.gw1.other.a",
      "edge.gw1.sensors.b.c",
    ]);
  });
});
