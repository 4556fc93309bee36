// Core mode end to end (README: "Core mode (`mode: core`, a hub without JetStream) is
// weaker: a batch is deleted after the hub has read it (a PING/PONG round trip), nothing
// on the hub stores it"): mosquitto_pub -> leafgate -> a nats-server without JetStream, and
// a core subscriber there. It gets exactly the published messages, in order; while the hub
// is unreachable they are kept, and they are delivered once it is back.
//
// "Unreachable" is a proxy that refuses the gateway's connections, not a stopped hub: in
// core mode nothing waits for a subscriber, so the subscriber must stay connected to the
// hub while the gateway's link is down, and be there when it comes back.
import { describe, expect } from "vitest";
import { it } from "../helpers/fixtures.js";
import { mosquittoPubLines } from "../helpers/mqtt.js";
import { waitFor } from "../helpers/wait.js";

const decoder = new TextDecoder();
const lines = (n: number, tag: string) => Array.from({ length: n }, (_, i) => `${tag}-${i + 1}`);

describe("core mode (a hub without JetStream)", () => {
  it.override({ hubOptions: { jetstream: false } });

  it("delivers exactly the published messages in order, also those kept while the hub was away", async ({
    nc,
    hubProxy,
    gateway,
  }) => {
    const got: string[] = [];
    const ids: string[] = [];
    nc.subscribe("edge.gw1.>", {
      callback: (_err, m) => {
        got.push(`${m.subject} ${decoder.decode(m.data)}`);
        ids.push(m.headers?.get("Nats-Msg-Id") ?? "");
      },
    });
    await nc.flush();

    const proxy = await hubProxy();
    const gw = await gateway.start({
      upstream: { servers: [proxy.url], mode: "core", reconnect_delay_max: "200ms" },
    });
    const { metrics } = gw.gateway;
    const connected = () => metrics.value("leafgate_upstream_connected") === 1;
    const pending = () => gw.gateway.status().outbox.pending;
    await waitFor(connected);

    // Publishes one after another: their acceptance order is the order to keep. A marker
    // last: once it is in, anything sent before it is too (one connection keeps order).
    const expected: string[] = [];
    const publish = async (topic: string, payloads: string[]) => {
      await mosquittoPubLines(gw.mqttPort, topic, payloads);
      expected.push(...payloads.map((p) => `edge.gw1.${topic.replaceAll("/", ".")} ${p}`));
    };
    const markerArrived = (marker: string) => () =>
      got.includes(`edge.gw1.sensors.marker ${marker}`);

    await publish("sensors/a", lines(50, "a"));
    await publish("sensors/b", lines(50, "b"));
    await publish("sensors/marker", ["m-1"]);
    await waitFor(markerArrived("m-1"));
    expect(got).toEqual(expected);

    // The hub is unreachable: messages are acknowledged and kept.
    proxy.cut();
    await waitFor(() => !connected());
    await publish("sensors/a", lines(40, "away-a"));
    await publish("sensors/b", lines(40, "away-b"));
    await publish("sensors/marker", ["m-2"]);
    expect(pending()).toBe(81);
    expect(got).toHaveLength(101);

    // Back: delivered, once, in order, behind what came before.
    proxy.restore();
    await waitFor(markerArrived("m-2"));
    await waitFor(() => pending() === 0);
    expect(got).toEqual(expected);
    expect(ids).toEqual(Array.from({ length: 182 }, (_, i) => `gw1-${i + 1}`));
    expect(metrics.value("leafgate_upstream_forwarded_total")).toBe(182);
  });
});
