// Fault 7: the disk fills up (buffer.max_file_size caps the database file) and recovers.
// The database file's cap makes SQLite refuse new pages (SQLITE_FULL) exactly as a full disk
// would; test/chaos/disk-full-real.test.ts fills a real one. Counts are exact: what was
// evicted is read from the metrics and must be exactly the oldest telemetry, what the
// buffer kept from /status, and together they account for every message PUBACKed.
import { describe, expect } from "vitest";
import { it } from "../helpers/fixtures.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { connectClient, streamInfo, streamMessages } from "../helpers/nats-server.js";
import { waitFor } from "../helpers/wait.js";

const PAYLOAD = Buffer.alloc(8 * 1024, 0x61);
const MAX_FILE_BYTES = 1024 * 1024;
const TELEMETRY = 400;
const decoder = new TextDecoder();

interface ClassStatus {
  name: string;
  messages: number;
  bytes: number;
}

describe("disk full", () => {
  it("telemetry gives way to alarms, alarms are refused only when alone, then it recovers", async ({
    hub,
    nc,
    edgeGateway,
  }) => {
    const gw = await edgeGateway({
      buffer: {
        max_file_size: MAX_FILE_BYTES,
        classes: [{ name: "alarms", subjects: ["alarms.>"], on_full: "reject" }],
      },
    });
    const metric = (name: string, labels?: Record<string, string>) =>
      gw.gateway.metrics.value(name, labels);
    const classStatus = (name: string): ClassStatus =>
      (gw.gateway.status().outbox as { classes: ClassStatus[] }).classes.find(
        (c) => c.name === name,
      )!;
    await waitFor(() => metric("leafgate_upstream_connected") === 1);
    await nc.close();
    await hub.kill();
    await waitFor(() => metric("leafgate_upstream_connected") === 0);

    // Telemetry: 3 MB into a 1 MB file. Every message is acknowledged; the oldest go.
    const telemetry = await connectMqttJs(gw.mqttPort);
    for (let i = 0; i < TELEMETRY; i++) {
      await telemetry.publishAsync("sensors/t", Buffer.concat([Buffer.from(`${i}:`), PAYLOAD]), {
        qos: 1,
      });
    }
    await telemetry.endAsync();
    const evicted = metric("leafgate_buffer_dropped_total", {
      class: "default",
      reason: "evicted",
    });
    let kept = classStatus("default");
    expect(kept.messages + evicted).toBe(TELEMETRY);
    // What is kept fits the file; 400 messages do not, so some were evicted.
    expect(kept.bytes).toBeLessThanOrEqual(MAX_FILE_BYTES);
    expect(metric("leafgate_buffer_dropped_total", { class: "default", reason: "disk_full" })).toBe(
      0,
    );
    expect(gw.gateway.status().healthy).toBe(true);
    // An odd number of telemetry rows: each alarm that needs room evicts two (twice its
    // size), so the last telemetry row is left alone, and must still give way — it holds
    // what an alarm needs. One more telemetry message flips the parity (it adds a row, or
    // evicts two to add one).
    let sent = TELEMETRY;
    if (kept.messages % 2 === 0) {
      const more = await connectMqttJs(gw.mqttPort);
      await more.publishAsync("sensors/t", Buffer.concat([Buffer.from(`${sent}:`), PAYLOAD]), {
        qos: 1,
      });
      await more.endAsync();
      sent++;
      kept = classStatus("default");
    }
    expect(kept.messages % 2).toBe(1);

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
    // Refused only once telemetry held less than the alarm needs: evicting it could not
    // have made room. Every acked alarm is buffered, none evicted.
    const left = classStatus("default");
    expect(left.bytes).toBeLessThan(PAYLOAD.length + "alarms.a0".length);
    expect(classStatus("alarms").messages).toBe(acked.length);
    expect(acked).toEqual(Array.from({ length: acked.length }, (_, i) => i));
    expect(metric("leafgate_buffer_dropped_total", { class: "alarms", reason: "disk_full" })).toBe(
      1,
    );
    expect(metric("leafgate_buffer_dropped_total", { class: "alarms", reason: "evicted" })).toBe(0);
    expect(gw.gateway.status().healthy).toBe(true);
    const evictedTotal = metric("leafgate_buffer_dropped_total", {
      class: "default",
      reason: "evicted",
    });
    expect(left.messages + evictedTotal).toBe(sent);

    // The hub comes back: everything kept drains, pages are reused, alarms fit again.
    await hub.restart();
    const ncAgain = await connectClient(hub.url);
    await waitFor(() => gw.gateway.status().outbox.pending === 0, {
      timeoutMs: 20_000,
    });
    const again = await connectMqttJs(gw.mqttPort);
    await again.publishAsync("alarms/after", "recovered", { qos: 1 });
    await again.endAsync();
    await waitFor(async () => {
      const last = (await streamMessages(ncAgain, "EDGE")).at(-1);
      return last?.subject === "edge.gw1.alarms.after";
    });
    const messages = await streamMessages(ncAgain, "EDGE");
    const alarmSubjects = messages
      .filter((m) => m.subject.startsWith("edge.gw1.alarms."))
      .map((m) => m.subject);
    // Every acknowledged alarm arrived, once, in order, and the one after recovery too.
    expect(alarmSubjects).toEqual([
      ...acked.map((i) => `edge.gw1.alarms.a${i}`),
      "edge.gw1.alarms.after",
    ]);
    // Exactly the newest telemetry survived, in order: the evicted ones were the oldest.
    const telemetrySeen = messages
      .filter((m) => m.subject === "edge.gw1.sensors.t")
      .map((m) => Number(decoder.decode(m.data.subarray(0, 8)).split(":")[0]));
    expect(telemetrySeen).toEqual(
      Array.from({ length: sent - evictedTotal }, (_, i) => evictedTotal + i),
    );
    expect((await streamInfo(ncAgain, "EDGE")).state.messages).toBe(messages.length);
  });
});
