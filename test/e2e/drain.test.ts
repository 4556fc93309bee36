// Drain policy and rate cap against a real hub.
import type { NatsConnection } from "@nats-io/transport-node";
import { afterEach, describe, expect, it } from "vitest";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { mosquittoPubLines } from "../helpers/mqtt.js";
import {
  closeClients,
  connectClient,
  createStream,
  type NatsServer,
  startNatsServer,
  streamInfo,
  streamMessages,
} from "../helpers/nats-server.js";
import { waitFor } from "../helpers/wait.js";

const decoder = new TextDecoder();
const lines = (n: number, tag: string) => Array.from({ length: n }, (_, i) => `${tag}-${i}`);

describe("draining the outbox", () => {
  let hub: NatsServer | undefined;
  let gw: TestGateway | undefined;
  let nc: NatsConnection | undefined;

  afterEach(async () => {
    await gw?.dispose();
    gw = undefined;
    await closeClients();
    await hub?.stop();
    hub = undefined;
  });

  const pending = () => (gw!.gateway.status().outbox as { pending: number }).pending;
  const connected = () => gw!.gateway.metrics.value("leafgate_upstream_connected") === 1;

  it("fresh_first sends live messages ahead of the backlog, each in its own order", async () => {
    hub = await startNatsServer();
    nc = await connectClient(hub.url);
    await createStream(nc, "EDGE", ["edge.>"]);
    gw = await startGateway({
      hub: hub.url,
      stream: "EDGE",
      upstream: "  drain: fresh_first\n  rate_limit: { messages_per_second: 200 }\n",
    });
    await waitFor(connected);
    await nc.close();
    await hub.kill();
    await waitFor(() => !connected());

    const backlog = lines(600, "old");
    await mosquittoPubLines(gw.mqttPort, "backlog", backlog);
    expect(pending()).toBe(600);
    await hub.restart();
    await waitFor(connected);
    const live = lines(20, "new");
    await mosquittoPubLines(gw.mqttPort, "live", live);

    nc = await connectClient(hub.url);
    await waitFor(async () => (await streamInfo(nc!, "EDGE")).state.messages === 620, {
      timeoutMs: 20_000,
    });
    await waitFor(() => pending() === 0);
    const messages = await streamMessages(nc, "EDGE");
    const bySubject = (s: string) =>
      messages.filter((m) => m.subject === `edge.gw1.${s}`).map((m) => decoder.decode(m.data));
    expect(bySubject("backlog")).toEqual(backlog);
    expect(bySubject("live")).toEqual(live);
    // The whole live burst is stored before the backlog's last message.
    const lastLive = messages.findLast((m) => m.subject === "edge.gw1.live")!.seq;
    const lastBacklog = messages.findLast((m) => m.subject === "edge.gw1.backlog")!.seq;
    expect(lastLive).toBeLessThan(lastBacklog);
    expect(new Set(messages.map((m) => m.headers["Nats-Msg-Id"]![0])).size).toBe(620);
  });

  it("never forwards faster than upstream.rate_limit", async () => {
    hub = await startNatsServer();
    nc = await connectClient(hub.url);
    await createStream(nc, "EDGE", ["edge.>"]);
    gw = await startGateway({
      hub: hub.url,
      stream: "EDGE",
      upstream: "  rate_limit: { messages_per_second: 100 }\n",
    });
    await waitFor(connected);
    const sent = lines(300, "m");
    const started = performance.now();
    await mosquittoPubLines(gw.mqttPort, "capped", sent);
    await waitFor(async () => (await streamInfo(nc!, "EDGE")).state.messages === 300, {
      timeoutMs: 20_000,
    });
    // A full bucket (100) goes at once; the other 200 need two seconds at 100/s. A slow
    // machine only makes this longer, so the lower bound is safe.
    expect(performance.now() - started).toBeGreaterThanOrEqual(1_900);
    const messages = await streamMessages(nc, "EDGE");
    expect(messages.map((m) => decoder.decode(m.data))).toEqual(sent);
  });
});
