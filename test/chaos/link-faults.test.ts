// Chaos on the hub link: a fault proxy between leafgate and a real nats-server cuts,
// flaps, blackholes, throttles and resets the connection while mosquitto_pub publishes.
// Whatever happens on the wire, the stream must end up with every message exactly once,
// in order per subject, and the outbox empty (README "Guarantees").
import type { NatsConnection } from "@nats-io/transport-node";
import { afterEach, describe, expect, it } from "vitest";
import { type FaultProxy, startFaultProxy } from "../helpers/fault-proxy.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { mosquittoPubLines } from "../helpers/mqtt.js";
import {
  closeClients,
  connectClient,
  createStream,
  type NatsServer,
  type StreamMessage,
  startNatsServer,
  streamInfo,
  streamMessages,
} from "../helpers/nats-server.js";
import { waitFor } from "../helpers/wait.js";

const STREAM = "EDGE";
/** Message counts: CI default, or the long run with LEAFGATE_CHAOS_FULL=1. */
const FULL = process.env.LEAFGATE_CHAOS_FULL === "1";
const BIG_N = FULL ? 100_000 : 20_000;
const THROTTLED_N = 5_000;
/** Detect a silent link within a few pings; leafgate resends after 2 s without a PubAck. */
const UPSTREAM = "  ping_interval: 500ms\n  ack_timeout: 2s\n";
/** Flapping: the link is cut, then restored, every FLAP_PERIOD_MS (half down, half up). */
const FLAP_PERIOD_MS = 500;
/** Flapping stops at this deadline even if the stream is incomplete (the checks then fail). */
const FLAP_DEADLINE_MS = FULL ? 240_000 : 60_000;
/** Waiting for the whole stream: generous, the full run pushes 100,000 through faults. */
const DELIVERY_TIMEOUT_MS = FULL ? 240_000 : 60_000;
const TEST_TIMEOUT_MS = FULL ? 600_000 : 90_000;

/**
 * Lines per mosquitto_pub run. mosquitto_pub -l queues every line it has read, and
 * libmosquitto walks that queue on each PUBACK: past ~20,000 queued messages it burns a
 * core and the publish goes quadratic (100,000 took 15-80 s here, with leafgate idle).
 */
const MOSQUITTO_PUB_CHUNK = 20_000;

const decoder = new TextDecoder();

/**
 * Publishes `sent` in order at QoS 1, one mosquitto_pub run per chunk; each run ends after
 * its last PUBACK, so order per topic holds across runs.
 */
async function publish(port: number, topic: string, sent: readonly string[]): Promise<void> {
  for (let i = 0; i < sent.length; i += MOSQUITTO_PUB_CHUNK) {
    await mosquittoPubLines(port, topic, sent.slice(i, i + MOSQUITTO_PUB_CHUNK), {
      timeoutMs: DELIVERY_TIMEOUT_MS,
    });
  }
}

const lines = (n: number, tag: string): string[] =>
  Array.from({ length: n }, (_, i) => `${tag}-${String(i).padStart(6, "0")}`);

describe("hub link faults", () => {
  let hub: NatsServer | undefined;
  let proxy: FaultProxy | undefined;
  let gw: TestGateway | undefined;
  let nc: NatsConnection;

  afterEach(async () => {
    // Each step runs even if an earlier one fails, so nothing outlives the test.
    const steps: (() => Promise<void> | undefined)[] = [
      () => gw?.dispose(),
      () => proxy?.close(),
      () => closeClients(),
      () => hub?.stop(),
    ];
    const errors: unknown[] = [];
    for (const step of steps) {
      try {
        await step();
      } catch (err) {
        errors.push(err);
      }
    }
    gw = undefined;
    proxy = undefined;
    hub = undefined;
    if (errors.length > 0) throw new AggregateError(errors, "link-faults cleanup failed");
  });

  /** A hub with stream EDGE on edge.>, a proxy in front of it, a gateway behind the proxy. */
  async function setup(upstream = UPSTREAM): Promise<{ gw: TestGateway; proxy: FaultProxy }> {
    hub = await startNatsServer();
    nc = await connectClient(hub.url);
    await createStream(nc, STREAM, ["edge.>"]);
    proxy = await startFaultProxy(hub.port);
    gw = await startGateway({ hub: proxy.url, stream: STREAM, upstream });
    return { gw, proxy };
  }

  const connected = (g: TestGateway): number =>
    g.gateway.metrics.value("leafgate_upstream_connected");
  const pending = (g: TestGateway): number =>
    (g.gateway.status().outbox as { pending: number }).pending;
  const counter = (g: TestGateway, name: string): number =>
    g.gateway.metrics.value(`leafgate_upstream_${name}_total`);
  const stored = async (): Promise<number> => (await streamInfo(nc, STREAM)).state.messages;

  async function waitForForwarding(g: TestGateway): Promise<void> {
    await waitFor(() => (g.gateway.status().upstream as { state: string }).state === "forwarding", {
      message: "gateway never started forwarding",
    });
  }

  /** Waits until the stream holds `count` messages and the outbox is empty. */
  async function waitForDelivery(g: TestGateway, count: number): Promise<void> {
    await waitFor(async () => (await stored()) >= count && pending(g) === 0, {
      timeoutMs: DELIVERY_TIMEOUT_MS,
      intervalMs: 100,
      message: () =>
        `delivery incomplete: outbox pending ${pending(g)}, ` +
        `status ${JSON.stringify(g.gateway.status())}`,
    });
  }

  /** Exactly the sent lines, once each, in order per subject; no foreign subjects. */
  async function expectExactlyOnceInOrder(bySubject: Record<string, readonly string[]>) {
    const messages: StreamMessage[] = await streamMessages(nc, STREAM);
    const total = Object.values(bySubject).reduce((n, l) => n + l.length, 0);
    expect(messages.length).toBe(total);
    const ids = new Set(messages.map((m) => m.headers["Nats-Msg-Id"]?.[0]));
    expect(ids.has(undefined)).toBe(false);
    expect(ids.size).toBe(total);
    const received: Record<string, string[]> = {};
    for (const m of messages) {
      received[m.subject] ??= [];
      received[m.subject]!.push(decoder.decode(m.data));
    }
    expect(Object.keys(received).sort()).toEqual(Object.keys(bySubject).sort());
    for (const [subject, sent] of Object.entries(bySubject)) {
      // Compared as a whole only when it differs, so a failure names the first bad index.
      const got = received[subject]!;
      const firstBad = sent.findIndex((line, i) => got[i] !== line);
      expect({ subject, firstBad, got: got[firstBad] }).toEqual({
        subject,
        firstBad: -1,
        got: undefined,
      });
    }
  }

  it(
    `buffers ${BIG_N} QoS 1 messages while the link is cut and delivers them after restore`,
    async () => {
      const { gw, proxy } = await setup();
      await waitForForwarding(gw);
      proxy.cut();
      await waitFor(() => connected(gw) === 0, { message: "gateway did not notice the cut" });

      const sent = lines(BIG_N, "cut");
      await publish(gw.mqttPort, "sensors/barn/humidity", sent);
      // mosquitto_pub exits after its last PUBACK: everything is committed locally, and
      // nothing got through the cut link.
      expect(pending(gw)).toBe(BIG_N);
      expect(await stored()).toBe(0);

      proxy.restore();
      await waitForDelivery(gw, BIG_N);
      expect(connected(gw)).toBe(1);
      await expectExactlyOnceInOrder({ "edge.gw1.sensors.barn.humidity": sent });
    },
    TEST_TIMEOUT_MS,
  );

  it(
    `delivers ${BIG_N} messages on two subjects exactly once while the link flaps`,
    async () => {
      const { gw, proxy } = await setup();
      await waitForForwarding(gw);
      const a = lines(BIG_N / 2, "flap-a");
      const b = lines(BIG_N / 2, "flap-b");
      let published = false;
      const publishing = Promise.all([
        publish(gw.mqttPort, "line/a", a),
        publish(gw.mqttPort, "line/b", b),
      ]).finally(() => {
        published = true;
      });

      // Every half period the link changes state: cut, restored, cut, ... Flapping goes on
      // for at least a few cycles, until the publish is over and the stream complete (or
      // the deadline), and always ends with the link restored.
      let cuts = 0;
      let complete = false;
      const flapDeadline = Date.now() + FLAP_DEADLINE_MS;
      const flapping = new Promise<void>((resolve) => {
        const timer = setInterval(() => {
          const done = (published && complete && cuts >= 4) || Date.now() > flapDeadline;
          if (proxy.mode === "cut" || done) {
            proxy.restore();
          } else {
            proxy.cut();
            cuts++;
          }
          if (done) {
            clearInterval(timer);
            resolve();
          }
        }, FLAP_PERIOD_MS / 2);
      });
      const poll = setInterval(() => {
        if (published) {
          stored().then(
            (n) => {
              complete = n >= BIG_N && pending(gw) === 0;
            },
            () => {},
          );
        }
      }, 200);
      try {
        await publishing;
        await flapping;
      } finally {
        clearInterval(poll);
      }
      expect(cuts).toBeGreaterThanOrEqual(4);

      await waitForDelivery(gw, BIG_N);
      await expectExactlyOnceInOrder({ "edge.gw1.line.a": a, "edge.gw1.line.b": b });
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "notices a blackholed link by its pings, reconnects after restore, loses nothing",
    async () => {
      const { gw, proxy } = await setup();
      await waitForForwarding(gw);
      const sent = lines(BIG_N, "hole");
      const publishing = publish(gw.mqttPort, "plant/2/flow", sent);
      // Mid-publish: some messages are on the hub, more are coming.
      await waitFor(async () => (await stored()) >= 1_000, { intervalMs: 5 });
      proxy.blackhole();
      // No RST, no FIN: only unanswered pings (ping_interval 500 ms, 2 out) reveal it.
      await waitFor(() => connected(gw) === 0, {
        message: "gateway did not notice the blackhole",
      });
      const storedDuringHole = await stored();
      await publishing;
      // Still down, still buffering: nothing crossed the hole.
      expect(await stored()).toBe(storedDuringHole);
      expect(pending(gw)).toBeGreaterThan(0);

      proxy.restore();
      await waitFor(() => connected(gw) === 1, { message: "gateway did not reconnect" });
      await waitForDelivery(gw, BIG_N);
      await expectExactlyOnceInOrder({ "edge.gw1.plant.2.flow": sent });
    },
    TEST_TIMEOUT_MS,
  );

  it(
    `delivers ${THROTTLED_N} messages exactly once over a slow (200 KB/s, 50 ms) link`,
    async () => {
      const { gw, proxy } = await setup();
      await waitForForwarding(gw);
      proxy.throttle(200 * 1024);
      proxy.delay(50);
      const sent = lines(THROTTLED_N, "slow");
      await publish(gw.mqttPort, "meter/7/power", sent);
      // Acks slower than ack_timeout cause resends; the stream drops them as duplicates.
      await waitForDelivery(gw, THROTTLED_N);
      await expectExactlyOnceInOrder({ "edge.gw1.meter.7.power": sent });
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "survives a connection reset in the middle of a frame",
    async () => {
      const { gw, proxy } = await setup();
      await waitForForwarding(gw);
      const sent = lines(BIG_N, "rst");
      const publishing = publish(gw.mqttPort, "door/3/events", sent);
      await waitFor(async () => (await stored()) >= 1_000, { intervalMs: 5 });
      proxy.resetMidFrame();
      await waitFor(() => proxy.midFrameResets === 1, {
        message: "no chunk crossed the link after resetMidFrame()",
      });
      await publishing;
      await waitForDelivery(gw, BIG_N);
      expect(connected(gw)).toBe(1);
      await expectExactlyOnceInOrder({ "edge.gw1.door.3.events": sent });
    },
    TEST_TIMEOUT_MS,
  );
  it(
    "resends after ack_timeout on a slow link that stays up, still exactly once",
    async () => {
      // Pings every 10 s: the link is never declared dead, so only ack_timeout (2 s) can
      // trigger resends — the full in-flight window takes longer than that to cross.
      const { gw, proxy } = await setup("  ping_interval: 10s\n  ack_timeout: 2s\n");
      await waitForForwarding(gw);
      proxy.throttle(100 * 1024);
      proxy.delay(50);
      const sent = lines(THROTTLED_N, "late");
      await publish(gw.mqttPort, "meter/8/power", sent);
      await waitForDelivery(gw, THROTTLED_N);
      expect(connected(gw)).toBe(1);
      expect(counter(gw, "resent")).toBeGreaterThan(0);
      await expectExactlyOnceInOrder({ "edge.gw1.meter.8.power": sent });
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "counts rows resent after a reconnect in leafgate_upstream_resent_total",
    async () => {
      const { gw, proxy } = await setup();
      await waitForForwarding(gw);
      proxy.blackhole();
      // The gateway does not know yet: it publishes every row into the hole.
      const sent = lines(2_000, "lost");
      await mosquittoPubLines(gw.mqttPort, "tank/1/level", sent);
      await waitFor(() => connected(gw) === 0, {
        message: "gateway did not notice the blackhole",
      });
      // Far more than a few 6-byte PINGs: the publishes went into the hole.
      expect(proxy.blackholedBytes().toTarget).toBeGreaterThan(sent.length * 20);
      expect(await stored()).toBe(0);

      proxy.restore();
      await waitForDelivery(gw, sent.length);
      await expectExactlyOnceInOrder({ "edge.gw1.tank.1.level": sent });
      // Rows sent on the dead connection were sent again on the new one: resends, which
      // the metric's help ("after an error, an ack timeout or a reconnect") promises to count.
      expect(counter(gw, "resent")).toBeGreaterThan(0);
      expect(counter(gw, "resent")).toBeGreaterThanOrEqual(counter(gw, "duplicates"));
    },
    TEST_TIMEOUT_MS,
  );
});
