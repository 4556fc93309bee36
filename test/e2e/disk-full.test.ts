// Fault 7: the disk fills up (buffer.max_file_size caps the database file) and recovers.
import { afterEach, describe, expect, it } from "vitest";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { connectMqttJs } from "../helpers/mqtt.js";
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

const PAYLOAD = Buffer.alloc(8 * 1024, 0x61);

describe("disk full", () => {
  let hub: NatsServer | undefined;
  let gw: TestGateway | undefined;

  afterEach(async () => {
    await gw?.dispose();
    gw = undefined;
    await closeClients();
    await hub?.stop();
  });

  it("telemetry gives way to alarms, alarms are refused only when alone, then it recovers", async () => {
    hub = await startNatsServer();
    let nc = await connectClient(hub.url);
    await createStream(nc, "EDGE", ["edge.>"]);
    gw = await startGateway({
      hub: hub.url,
      stream: "EDGE",
      extra: `buffer:
  max_file_size: 1MB
  classes:
    - { name: alarms, subjects: [ "alarms.>" ], on_full: reject }
`,
    });
    const metric = (name: string, labels?: Record<string, string>) =>
      gw!.gateway.metrics.value(name, labels);
    await waitFor(() => metric("leafgate_upstream_connected") === 1);
    await nc.close();
    await hub.kill();
    await waitFor(() => metric("leafgate_upstream_connected") === 0);

    // Telemetry: 3 MB into a 1 MB file. Every message is acknowledged; the oldest go.
    const telemetry = await connectMqttJs(gw.mqttPort);
    for (let i = 0; i < 400; i++) {
      await telemetry.publishAsync("sensors/t", Buffer.concat([Buffer.from(`${i}:`), PAYLOAD]), {
        qos: 1,
      });
    }
    await telemetry.endAsync();
    const evicted = metric("leafgate_buffer_dropped_total", {
      class: "default",
      reason: "evicted",
    });
    expect(evicted).toBeGreaterThan(0);
    expect(gw.gateway.status().healthy).toBe(true);

    // Alarms: telemetry gives way to them, until alarms alone fill the file; the first
    // that does not fit gets no PUBACK and its connection is closed.
    const alarms = await connectMqttJs(gw.mqttPort);
    alarms.on("error", () => {});
    const closed = new Promise<"closed">((resolve) =>
      alarms.once("close", () => resolve("closed")),
    );
    const acked: number[] = [];
    let refused = false;
    for (let i = 0; i < 400 && !refused; i++) {
      const outcome = await Promise.race([
        alarms.publishAsync(`alarms/a${i}`, PAYLOAD, { qos: 1 }).then(() => "acked" as const),
        closed,
      ]);
      if (outcome === "acked") acked.push(i);
      else refused = true;
    }
    alarms.end(true);
    expect(refused).toBe(true);
    // 1 MB holds well over 60 of them once telemetry is gone.
    expect(acked.length).toBeGreaterThan(60);
    expect(metric("leafgate_buffer_dropped_total", { class: "alarms", reason: "disk_full" })).toBe(
      1,
    );
    expect(metric("leafgate_buffer_dropped_total", { class: "alarms", reason: "evicted" })).toBe(0);
    expect(gw.gateway.status().healthy).toBe(true);
    const evictedTotal = metric("leafgate_buffer_dropped_total", {
      class: "default",
      reason: "evicted",
    });
    expect(evictedTotal).toBeGreaterThan(evicted);

    // The hub comes back: everything kept drains, pages are reused, alarms fit again.
    await hub.restart();
    nc = await connectClient(hub.url);
    await waitFor(() => (gw!.gateway.status().outbox as { pending: number }).pending === 0, {
      timeoutMs: 20_000,
    });
    const again = await connectMqttJs(gw.mqttPort);
    await again.publishAsync("alarms/after", "recovered", { qos: 1 });
    await again.endAsync();
    await waitFor(async () => {
      const last = (await streamMessages(nc, "EDGE")).at(-1);
      return last?.subject === "edge.gw1.alarms.after";
    });
    const messages = await streamMessages(nc, "EDGE");
    const alarmSubjects = messages
      .filter((m) => m.subject.startsWith("edge.gw1.alarms."))
      .map((m) => m.subject);
    // Every acknowledged alarm arrived, once, in order, and the one after recovery too.
    expect(alarmSubjects).toEqual([
      ...acked.map((i) => `edge.gw1.alarms.a${i}`),
      "edge.gw1.alarms.after",
    ]);
    const telemetrySeen = messages.filter((m) => m.subject === "edge.gw1.sensors.t").length;
    expect(telemetrySeen).toBe(400 - evictedTotal);
    expect((await streamInfo(nc, "EDGE")).state.messages).toBe(messages.length);
  });
});
