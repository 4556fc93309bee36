// A client that never reads cannot grow the gateway (issue 10, finding 4). The bundle runs
// as a child process; its RSS and its unsent bytes (`mqtt.unsentBytes`) are read from
// /status while a raw client, frozen at kernel level (`_handle.readStop()`, as aedes'
// drain-timeout test does), floods it.
//
// What the README promises: while a client has more than an eighth of
// `mqtt.max_outbound_bytes` unsent, the gateway stops reading from it (so it cannot make
// the gateway write more PINGRESPs or acks: TCP pushes back on it), its QoS 1/2 deliveries
// wait in its session queue (`mqtt.max_queued_messages`), QoS 0 is dropped; a client that
// stays behind for its keepalive (x1.5), or whose unsent bytes exceed the cap, is cut as a
// slow consumer: `leafgate_mqtt_slow_consumers_total`, `..._connections_closed_total
// {reason="slow-consumer"}`. Other clients do not notice.
//
// 1. Millions of PINGREQs from a client that never reads: unsent bytes stay under the cap
//    and RSS bounded, the client is cut, normal clients are served meanwhile and after.
// 2. A QoS 1 flood to a subscriber that never reads, against the same flood without it:
//    unsent bytes under the cap, RSS about the same, the subscriber is cut, another one
//    gets every message in order; every message of the frozen one is accounted for.
import type { Socket } from "node:net";
import type { MqttClient } from "mqtt";
import { afterEach, describe, expect, it } from "vitest";
import {
  type ChildGateway,
  type GatewayConfigInput,
  startGatewayProcess,
  writeConfig,
} from "../helpers/gateway.js";
import { gatewayMetrics } from "../helpers/gateway-http.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { stopAll } from "../helpers/procs.js";
import { closeRawClients, RawMqtt } from "../helpers/raw-mqtt.js";
import { type TempDir, waitFor } from "../helpers/wait.js";

/** Keepalive of the frozen clients (s): cut 1.5 x this after the gateway stops reading them. */
const FROZEN_KEEPALIVE_S = 2;
/** A PINGREQ is 2 bytes: one write of this many is 64 KiB. */
const PINGREQS_PER_WRITE = 32 * 1024;
/**
 * At most this many PINGREQs (64 MiB): far more than the kernel buffers of both ends hold
 * (a few MiB here), so the flooder is blocked by TCP long before it gets there, unless the
 * gateway reads everything (the fault this file is about).
 */
const MAX_PINGREQS = 32 * 1024 * 1024;
/**
 * Growth of the gateway's RSS allowed over its baseline while millions of PINGREQs are
 * parsed: garbage the GC and malloc have not returned yet (60-75 MiB here, whatever the
 * count). Reading everything a frozen client sends grows without end (8 M: 460 MB).
 */
const PING_RSS_GROWTH_LIMIT_MIB = 150;
/**
 * The QoS 1 flood: this many messages of FLOOD_PAYLOAD_BYTES (125 MiB), with a window
 * (`max_inflight`) that would take all of them: only the outbound bound holds them back.
 */
const FLOOD_MESSAGES = 2000;
const FLOOD_PAYLOAD_BYTES = 64 * 1024;
const MAX_INFLIGHT = 65_535;
/**
 * A flood's payloads pass through the gateway (stored, sent to the reader) and are
 * returned by the GC and malloc only later: RSS grows by most of the flood either way
 * (70-75 MiB here). So the frozen subscriber's cost is measured against the same flood
 * without it: at most this much more at peak (25-55 MiB seen: its 1 MiB unsent, its queue,
 * what it has in flight, and noise), where writing the flood into its socket would add all
 * 125 MiB. The exact bound is on the unsent bytes, which /status reports.
 */
const FROZEN_RSS_MARGIN_MIB = 100;
/** Past this growth the flood stops: a broken gateway must not eat the machine. */
const FLOOD_ABORT_RSS_GROWTH_MIB = 400;
/** The frozen subscriber's session queue: small, so the socket is what is measured. */
const MAX_QUEUED = 10;
/** Publishes in flight from the flood's publisher. */
const FLOOD_IN_FLIGHT = 32;
/** README: `mqtt.max_outbound_bytes` defaults to 8 MiB: no client ever has more unsent. */
const MAX_OUTBOUND_BYTES = 8 * 1024 * 1024;

interface Status {
  memory: { rss: number };
  mqtt: { unsentBytes: number };
}

async function status(gw: ChildGateway): Promise<Status> {
  const res = await fetch(`http://127.0.0.1:${gw.httpPort}/status`);
  return (await res.json()) as Status;
}

interface Peaks {
  baselineRss: number;
  peakRss: number;
  peakUnsent: number;
}

/**
 * Samples the gateway's RSS and unsent bytes until stopped; past `limitMiB` of RSS above
 * the first sample it calls `over` once (the test then stops its flood: a broken gateway
 * must not eat the machine).
 */
function sampler(gw: ChildGateway, limitMiB: number, over: () => void) {
  let stopped = false;
  let exceeded = false;
  const peaks: Peaks = { baselineRss: 0, peakRss: 0, peakUnsent: 0 };
  const done = (async () => {
    try {
      peaks.baselineRss = (await status(gw)).memory.rss;
      while (!stopped) {
        const s = await status(gw);
        peaks.peakRss = Math.max(peaks.peakRss, s.memory.rss);
        peaks.peakUnsent = Math.max(peaks.peakUnsent, s.mqtt.unsentBytes);
        if (!exceeded && s.memory.rss - peaks.baselineRss > limitMiB) {
          exceeded = true;
          over();
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    } catch {
      // The gateway went away (a failed test stops it): the test reports that, not this.
      if (!stopped) over();
    }
  })();
  const handle = {
    async stop(): Promise<Peaks> {
      stopped = true;
      await done;
      return peaks;
    },
  };
  samplers.add(handle);
  return handle;
}

/** Samplers still running (a failed test leaves one): stopped after each test. */
const samplers = new Set<{ stop(): Promise<unknown> }>();

/** Stops the kernel-level reading of a socket: the peer's bytes pile up in the kernel. */
function freeze(socket: Socket): void {
  (socket as unknown as { _handle: { readStop(): void } })._handle.readStop();
}

describe("a client that never reads", () => {
  let dir: TempDir | undefined;
  const clients: MqttClient[] = [];

  afterEach(async () => {
    for (const s of samplers) await s.stop();
    samplers.clear();
    for (const c of clients.splice(0)) await c.endAsync(true);
    await closeRawClients();
    await stopAll();
    await dir?.cleanup();
    dir = undefined;
  });

  async function start(mqtt: GatewayConfigInput["mqtt"] = {}): Promise<ChildGateway> {
    const config = writeConfig({ mqtt });
    dir = config.dir;
    return startGatewayProcess(config.file);
  }

  async function mqttJs(port: number, clientId: string): Promise<MqttClient> {
    const c = await connectMqttJs(port, { clientId });
    clients.push(c);
    return c;
  }

  /** Publishes `count` QoS 1 messages from `pub` and waits until `sub` has them all, in order. */
  async function roundTrip(pub: MqttClient, sub: MqttClient, topic: string, count: number) {
    const got: string[] = [];
    const onMessage = (t: string, payload: Buffer) => {
      if (t === topic) got.push(payload.toString());
    };
    sub.on("message", onMessage);
    await sub.subscribeAsync(topic, { qos: 1 });
    const sent = Array.from({ length: count }, (_, i) => `${topic} ${i}`);
    await Promise.all(sent.map((p) => pub.publishAsync(topic, p, { qos: 1 })));
    await waitFor(() => got.length >= count, { message: () => `got ${got.length} of ${count}` });
    sub.off("message", onMessage);
    expect(got).toEqual(sent);
  }

  it("millions of PINGREQs: RSS stays bounded, the client is cut as a slow consumer", async () => {
    const gw = await start();
    const flooder = await RawMqtt.open(gw.mqttPort, 4);
    await flooder.sendConnect({ clientId: "pinger", keepalive: FROZEN_KEEPALIVE_S });
    freeze(flooder.socket);
    let abort = false;
    const sampling = sampler(gw, PING_RSS_GROWTH_LIMIT_MIB, () => {
      abort = true;
      flooder.socket.destroy();
    });

    const chunk = Buffer.alloc(PINGREQS_PER_WRITE * 2);
    for (let i = 0; i < chunk.length; i += 2) chunk[i] = 0xc0; // PINGREQ: c0 00
    let sent = 0;
    let blocked = false;
    const flood = (async () => {
      while (sent < MAX_PINGREQS && !flooder.isClosed) {
        sent += PINGREQS_PER_WRITE;
        if (flooder.socket.write(chunk)) continue;
        blocked = true;
        // TCP pushes back: go on only when the gateway reads again, or it cut us.
        await Promise.race([new Promise((r) => flooder.socket.once("drain", r)), flooder.closed]);
      }
    })();

    // The gateway stopped reading the flooder (its writes are held by TCP); meanwhile
    // another client is served as usual.
    await waitFor(() => blocked || flooder.isClosed, { timeoutMs: 30_000 });
    const pub = await mqttJs(gw.mqttPort, "pub");
    const sub = await mqttJs(gw.mqttPort, "sub");
    await roundTrip(pub, sub, "during/flood", 200);

    await flooder.closedByServer(30_000);
    await flood;
    const peaks = await sampling.stop();
    expect(abort, `RSS grew from ${peaks.baselineRss} to ${peaks.peakRss} MiB`).toBe(false);
    expect(peaks.peakUnsent).toBeGreaterThan(0);
    expect(peaks.peakUnsent).toBeLessThanOrEqual(MAX_OUTBOUND_BYTES);
    // TCP held the flooder long before it sent them all.
    expect(sent).toBeGreaterThan(PINGREQS_PER_WRITE);
    expect(sent).toBeLessThan(MAX_PINGREQS);

    const metrics = await gatewayMetrics(gw);
    expect(metrics.get("leafgate_mqtt_slow_consumers_total")).toBe(1);
    expect(metrics.get('leafgate_mqtt_connections_closed_total{reason="slow-consumer"}')).toBe(1);
    expect(metrics.get('leafgate_mqtt_connections_closed_total{reason="keepalive-timeout"}')).toBe(
      undefined,
    );
    // The normal clients are still served after the cut.
    await roundTrip(pub, sub, "after/flood", 50);
    expect((await status(gw)).mqtt.unsentBytes).toBeLessThan(MAX_OUTBOUND_BYTES);
  });

  it("a QoS 1 flood to a subscriber that never reads: RSS bounded, cut, the other subscriber gets every message", async () => {
    const gw = await start({ max_queued_messages: MAX_QUEUED, max_inflight: MAX_INFLIGHT });
    const sub = await mqttJs(gw.mqttPort, "reader");
    const got: number[] = [];
    sub.on("message", (_t, payload: Buffer) => got.push(payload.readUInt32BE(0)));
    await sub.subscribeAsync("flood/#", { qos: 1 });
    const pub = await mqttJs(gw.mqttPort, "publisher");
    let abort = false;

    /** FLOOD_MESSAGES from `first` on, all received by the reader, in order. */
    async function flood(first: number): Promise<void> {
      let next = first;
      const end = first + FLOOD_MESSAGES;
      await Promise.all(
        Array.from({ length: FLOOD_IN_FLIGHT }, async () => {
          while (next < end && !abort) {
            const i = next++;
            const payload = Buffer.alloc(FLOOD_PAYLOAD_BYTES, i & 0xff);
            payload.writeUInt32BE(i, 0);
            await pub.publishAsync(`flood/${i % 8}`, payload, { qos: 1 });
          }
        }),
      );
      expect(abort).toBe(false);
      await waitFor(() => got.length >= end, {
        timeoutMs: 30_000,
        message: () => `the reader got ${got.length} of ${end}`,
      });
      expect(got).toEqual(Array.from({ length: end }, (_, i) => i));
    }

    // The control: the same flood with every subscriber reading.
    const control = sampler(gw, FLOOD_ABORT_RSS_GROWTH_MIB, () => {
      abort = true;
    });
    await flood(0);
    const reading = await control.stop();

    // Now with a subscriber that never reads. It keeps pinging, as a live client does:
    // only the gateway's not reading it (once it is behind) lets its keepalive run out.
    // Its session outlives the cut, so every message of the flood is accounted for in it,
    // whenever the cut comes.
    const frozen = await RawMqtt.open(gw.mqttPort, 5);
    await frozen.sendConnect({
      clientId: "frozen",
      keepalive: FROZEN_KEEPALIVE_S,
      properties: { sessionExpiryInterval: 300 },
    });
    await frozen.subscribe(1, [{ topic: "flood/#", qos: 1 }]);
    freeze(frozen.socket);
    const pinger = setInterval(() => {
      if (!frozen.isClosed) frozen.send({ cmd: "pingreq" });
    }, 200);
    const sampling = sampler(gw, FLOOD_ABORT_RSS_GROWTH_MIB, () => {
      abort = true;
    });
    try {
      await flood(FLOOD_MESSAGES);
      await frozen.closedByServer(30_000);
    } finally {
      clearInterval(pinger);
    }
    const peaks = await sampling.stop();
    const rss =
      `RSS ${reading.baselineRss} MiB at start, ${reading.peakRss} MiB at peak with every ` +
      `subscriber reading, ${peaks.peakRss} MiB at peak with one never reading`;
    console.info(
      `QoS 1 flood of ${FLOOD_MESSAGES} x ${FLOOD_PAYLOAD_BYTES} B: gateway ${rss}; ` +
        `at most ${peaks.peakUnsent} bytes unsent`,
    );
    expect(abort, rss).toBe(false);
    expect(peaks.peakRss - reading.peakRss, rss).toBeLessThan(FROZEN_RSS_MARGIN_MIB);
    expect(peaks.peakUnsent).toBeGreaterThan(0);
    expect(peaks.peakUnsent).toBeLessThanOrEqual(MAX_OUTBOUND_BYTES);

    const metrics = await gatewayMetrics(gw);
    expect(metrics.get("leafgate_mqtt_slow_consumers_total")).toBe(1);
    expect(metrics.get('leafgate_mqtt_connections_closed_total{reason="slow-consumer"}')).toBe(1);
    // Every message reached the reader. Of the frozen subscriber's: some went out on its
    // socket (each written once: no resend to a client that did not ack), MAX_QUEUED wait
    // in its session queue, and the rest were dropped as queue-full.
    const sent = metrics.get("leafgate_mqtt_messages_sent_total") ?? 0;
    const toFrozen = sent - 2 * FLOOD_MESSAGES;
    expect(toFrozen).toBeGreaterThan(0);
    expect(toFrozen).toBeLessThan(FLOOD_MESSAGES - MAX_QUEUED);
    expect(metrics.get('leafgate_mqtt_messages_dropped_total{reason="queue-full"}')).toBe(
      FLOOD_MESSAGES - toFrozen - MAX_QUEUED,
    );
    expect(metrics.get('leafgate_mqtt_messages_dropped_total{reason="slow-consumer"}')).toBe(
      undefined,
    );
    expect(metrics.get("leafgate_outbox_pending")).toBe(2 * FLOOD_MESSAGES);
  });
});
