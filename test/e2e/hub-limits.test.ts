// A message the hub can never take must not block the ones behind it.
import { describe, expect } from "vitest";
import { createEdgeStream, it } from "../helpers/fixtures.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { connectClient, streamInfo, streamMessages } from "../helpers/nats-server.js";
import { waitFor } from "../helpers/wait.js";

describe("hub limits", () => {
  it("drops a message larger than the hub's max_payload, counts it, and forwards the rest in order", async ({
    startHub,
    gateway,
  }) => {
    const hub = await startHub({ config: "max_payload: 4096\n" });
    const nc = await connectClient(hub.url);
    const stream = await createEdgeStream(nc);
    const gw = await gateway.start({ upstream: { servers: [hub.url], stream } });
    const client = await connectMqttJs(gw.mqttPort);
    await client.publishAsync("s/a", "first", { qos: 1 });
    await client.publishAsync("s/a", Buffer.alloc(10_000, 0x61), { qos: 1 });
    await client.publishAsync("s/a", "third", { qos: 1 });
    await client.endAsync();

    await waitFor(async () => (await streamInfo(nc, "EDGE")).state.messages >= 2);
    await waitFor(() => gw.gateway.status().outbox.pending === 0, {
      message: "the oversized row was never removed from the outbox",
    });
    const messages = await streamMessages(nc, "EDGE");
    expect(messages.map((m) => new TextDecoder().decode(m.data))).toEqual(["first", "third"]);
    expect(messages.map((m) => m.headers["Nats-Msg-Id"])).toEqual([["gw1-1"], ["gw1-3"]]);
    expect(gw.gateway.metrics.value("leafgate_upstream_dropped_too_large_total")).toBe(1);
    expect(gw.gateway.metrics.value("leafgate_upstream_connected")).toBe(1);
  });

  it("drops a message whose subject the hub's control line cannot carry, counts it, and forwards the rest", async ({
    hub,
    nc,
    stream,
    gateway,
  }) => {
    // A topic bound raised past its default: the gateway takes what the hub cannot.
    const gw = await gateway.start({
      mqtt: { max_topic_length: "8KiB" },
      upstream: { servers: [hub.url], stream },
    });
    const client = await connectMqttJs(gw.mqttPort);
    // Within that bound, but with the hub prefix and the reply subject the publish line is
    // longer than nats-server's max_control_line (4 KiB).
    const long = `a/${"x".repeat(4090)}`;
    await client.publishAsync("s/a", "first", { qos: 1 });
    await client.publishAsync(long, "long", { qos: 1 });
    await client.publishAsync("s/a", "third", { qos: 1 });
    await client.endAsync();

    await waitFor(() => gw.gateway.status().outbox.pending === 0, {
      message: "the row with the long subject was never removed from the outbox",
    });
    const messages = await streamMessages(nc, "EDGE");
    expect(messages.map((m) => new TextDecoder().decode(m.data))).toEqual(["first", "third"]);
    expect(messages.map((m) => m.headers["Nats-Msg-Id"])).toEqual([["gw1-1"], ["gw1-3"]]);
    expect(gw.gateway.metrics.value("leafgate_upstream_dropped_too_large_total")).toBe(1);
    expect(gw.gateway.metrics.value("leafgate_upstream_resent_total")).toBe(0);
  });

  it("finds the stream through the hub's JetStream domain", async ({ startHub, gateway }) => {
    const hub = await startHub({ config: "jetstream { domain: hub }\n" });
    const nc = await connectClient(hub.url);
    const stream = await createEdgeStream(nc);
    const gw = await gateway.start({ upstream: { servers: [hub.url], stream, domain: "hub" } });
    await waitFor(() => gw.gateway.status().upstream?.state === "forwarding");
    const client = await connectMqttJs(gw.mqttPort);
    await client.publishAsync("s/d", "via domain", { qos: 1 });
    await client.endAsync();
    await waitFor(async () => (await streamInfo(nc, "EDGE")).state.messages === 1);
    const [m] = await streamMessages(nc, "EDGE");
    expect([m!.subject, new TextDecoder().decode(m!.data)]).toEqual(["edge.gw1.s.d", "via domain"]);
  });
});
