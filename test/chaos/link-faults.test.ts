// Chaos on the hub link: a fault proxy between leafgate and a real nats-server cuts,
// flaps, blackholes, throttles and resets the connection while mosquitto_pub publishes.
// Whatever happens on the wire, the stream must end up with every message exactly once,
// in order per subject, and the outbox empty (README "Guarantees").
//
// Faults land by construction: on a count of messages the hub has stored (drawn from a
// seeded generator, printed with every run; LEAFGATE_CHAOS_SEED=<seed> replays it), and
// while part of the messages is still to be published.
import { jetstreamManager, type StreamConfig } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { describe, expect } from "vitest";
import type { UpstreamInput } from "../helpers/config.js";
import type { FaultProxy } from "../helpers/fault-proxy.js";
import { createEdgeStream, type Fixtures, it } from "../helpers/fixtures.js";
import type { TestGateway } from "../helpers/gateway.js";
import { mosquittoPubLines, startMosquittoPub } from "../helpers/mqtt.js";
import { type StreamMessage, streamInfo, streamMessages } from "../helpers/nats-server.js";
import { chaosSeed, rng } from "../helpers/seed.js";
import { waitFor } from "../helpers/wait.js";

/** Message counts: CI default, or the long run with LEAFGATE_CHAOS_FULL=1. */
const FULL = process.env.LEAFGATE_CHAOS_FULL === "1";
const BIG_N = FULL ? 100_000 : 20_000;
const THROTTLED_N = 5_000;
/** Rows of the resend tests: all in flight at once (max_in_flight is 4096). */
const SLOW_LINK_N = 2_000;
const LOST_N = 2_000;
/**
 * Latency each way of the slow-link test: a round trip longer than ack_timeout (2 s) plus
 * the forwarder's ack check interval (1 s).
 */
const SLOW_LINK_ONE_WAY_MS = 2_000;
/** Detect a silent link within a few pings; leafgate resends after 2 s without a PubAck. */
const UPSTREAM: UpstreamInput = { ping_interval: "500ms", ack_timeout: "2s" };
/** Link cuts while two subjects are published and drained. */
const FLAP_CUTS = FULL ? 20 : 5;
/** Quick reconnects, so that several cuts fit in a short test. */
const FLAP_UPSTREAM: UpstreamInput = { ...UPSTREAM, reconnect_delay_max: "250ms" };
/**
 * The blackhole and reset tests publish this many messages, cause the fault once the hub
 * has stored a seeded number of them (at least FAULT_AFTER_MIN_STORED), then publish the
 * rest.
 */
const PUBLISHED_BEFORE_FAULT = 5_000;
const FAULT_AFTER_MIN_STORED = 500;
/** Waiting for the whole stream: generous, the full run pushes 100,000 through faults. */
const DELIVERY_TIMEOUT_MS = FULL ? 240_000 : 60_000;
const TEST_TIMEOUT_MS = FULL ? 600_000 : 90_000;

/**
 * Lines per mosquitto_pub run. mosquitto_pub -l queues every line it has read, and
 * libmosquitto walks that queue on each PUBACK: past ~20,000 queued messages it burns a
 * core and the publish goes quadratic (100,000 took 15-80 s here, with leafgate idle).
 */
const MOSQUITTO_PUB_CHUNK = 20_000;

/**
 * The seed of this file's fault points: LEAFGATE_CHAOS_SEED replays a run (the gateway
 * runs in this process with its own environment, so the variable does not reach it).
 */
const SEED = chaosSeed();

/** An integer in [lo, hi). */
const between = (random: () => number, lo: number, hi: number): number =>
  lo + Math.floor(random() * (hi - lo));

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

/**
 * Publishes `sent` in order at QoS 1, with `fault` in the middle: the first `splitAt`
 * lines are handed to mosquitto_pub, then `fault` runs (while they are published and
 * forwarded), and only after it resolves does mosquitto_pub get the rest.
 */
async function publishAround(
  port: number,
  topic: string,
  sent: readonly string[],
  splitAt: number,
  fault: () => Promise<void>,
): Promise<void> {
  const pub = await startMosquittoPub(port, topic);
  pub.write(sent.slice(0, splitAt));
  await fault();
  pub.write(sent.slice(splitAt, MOSQUITTO_PUB_CHUNK));
  await pub.end(DELIVERY_TIMEOUT_MS);
  await publish(port, topic, sent.slice(MOSQUITTO_PUB_CHUNK));
}

const lines = (n: number, tag: string): string[] =>
  Array.from({ length: n }, (_, i) => `${tag}-${String(i).padStart(6, "0")}`);

describe("hub link faults", () => {
  let nc: NatsConnection;

  type Setup = Pick<Fixtures, "nc" | "hubProxy" | "gateway">;
  /** Stream EDGE on edge.> on the test's hub, a proxy in front of it, a gateway behind it. */
  async function setup(
    fixtures: Setup,
    upstream = UPSTREAM,
    streamConfig: Partial<StreamConfig> = {},
  ): Promise<{ gw: TestGateway; proxy: FaultProxy }> {
    nc = fixtures.nc;
    const stream = await createEdgeStream(nc, streamConfig);
    const proxy = await fixtures.hubProxy();
    const gw = await fixtures.gateway.start({
      upstream: { servers: [proxy.url], stream, ...upstream },
    });
    return { gw, proxy };
  }

  const connected = (g: TestGateway): number =>
    g.gateway.metrics.value("leafgate_upstream_connected");
  const pending = (g: TestGateway): number => g.gateway.status().outbox.pending;
  const counter = (g: TestGateway, name: string): number =>
    g.gateway.metrics.value(`leafgate_upstream_${name}_total`);
  const stored = async (): Promise<number> => (await streamInfo(nc, "EDGE")).state.messages;

  /**
   * This test's fault points come from SEED: printed now (so a hung run shows it too) and
   * again, with what they were, if the test fails.
   */
  function seeded(
    name: string,
    onTestFailed: (fn: () => void) => void,
    points: () => string,
  ): () => number {
    console.log(`link-faults: ${name}: seed ${SEED}`);
    onTestFailed(() =>
      console.error(
        `link-faults: ${name}: seed ${SEED} (rerun with LEAFGATE_CHAOS_SEED=${SEED}): ${points()}`,
      ),
    );
    return rng(SEED);
  }

  async function waitForForwarding(g: TestGateway): Promise<void> {
    await waitFor(() => g.gateway.status().upstream?.state === "forwarding", {
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
    const messages: StreamMessage[] = await streamMessages(nc, "EDGE");
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
    async ({ nc, hubProxy, gateway }) => {
      const { gw, proxy } = await setup({ nc, hubProxy, gateway });
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
    `delivers ${BIG_N} messages on two subjects exactly once while the link is cut ${FLAP_CUTS} times`,
    async ({ onTestFailed, nc, hubProxy, gateway }) => {
      const cutPoints: number[] = [];
      const random = seeded("flap", onTestFailed, () => `cut at ${cutPoints.join(", ")} stored`);
      // Distinct counts of stored messages, below 90% of the total: each cut lands while
      // messages are still to be forwarded (and, early on, to be published).
      const points = new Set<number>();
      while (points.size < FLAP_CUTS) points.add(between(random, 1, Math.floor(BIG_N * 0.9)));
      cutPoints.push(...[...points].sort((x, y) => x - y));

      const { gw, proxy } = await setup({ nc, hubProxy, gateway }, FLAP_UPSTREAM);
      await waitForForwarding(gw);
      const a = lines(BIG_N / 2, "flap-a");
      const b = lines(BIG_N / 2, "flap-b");
      const publishing = Promise.all([
        publish(gw.mqttPort, "line/a", a),
        publish(gw.mqttPort, "line/b", b),
      ]);
      // Awaited below; until then a failure must not be an unhandled rejection.
      publishing.catch(() => {});
      for (const [i, point] of cutPoints.entries()) {
        await waitFor(async () => (await stored()) >= point, {
          timeoutMs: DELIVERY_TIMEOUT_MS,
          intervalMs: 10,
          message: `cut ${i + 1}: the hub never stored ${point} messages`,
        });
        proxy.cut();
        await waitFor(() => connected(gw) === 0, { message: `cut ${i + 1} not noticed` });
        proxy.restore();
        await waitFor(() => connected(gw) === 1, {
          message: `no reconnect after cut ${i + 1}`,
        });
      }
      await publishing;
      await waitForDelivery(gw, BIG_N);
      await expectExactlyOnceInOrder({ "edge.gw1.line.a": a, "edge.gw1.line.b": b });
      console.log(
        `link-faults: flap: cut at ${cutPoints.join(", ")} stored; resent ${counter(gw, "resent")}`,
      );
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "notices a blackholed link by its pings, reconnects after restore, loses nothing",
    async ({ onTestFailed, nc, hubProxy, gateway }) => {
      let holeAt = 0;
      const random = seeded("blackhole", onTestFailed, () => `blackhole at ${holeAt} stored`);
      holeAt = between(random, FAULT_AFTER_MIN_STORED, PUBLISHED_BEFORE_FAULT);
      const { gw, proxy } = await setup({ nc, hubProxy, gateway });
      await waitForForwarding(gw);
      const sent = lines(BIG_N, "hole");
      let storedDuringHole = 0;
      await publishAround(gw.mqttPort, "plant/2/flow", sent, PUBLISHED_BEFORE_FAULT, async () => {
        await waitFor(async () => (await stored()) >= holeAt, { intervalMs: 5 });
        proxy.blackhole();
        // No RST, no FIN: only unanswered pings (ping_interval 500 ms, 2 out) reveal it.
        await waitFor(() => connected(gw) === 0, {
          message: "gateway did not notice the blackhole",
        });
        storedDuringHole = await stored();
      });
      // Still down, still buffering: nothing crossed the hole, though the rest of the
      // messages came after it. Every row the hub did not acknowledge before the hole
      // (PubAcks lost in it included) is still in the outbox.
      expect(await stored()).toBe(storedDuringHole);
      const acked = counter(gw, "forwarded");
      expect(acked).toBeLessThanOrEqual(storedDuringHole);
      expect(pending(gw)).toBe(BIG_N - acked);

      proxy.restore();
      await waitFor(() => connected(gw) === 1, { message: "gateway did not reconnect" });
      await waitForDelivery(gw, BIG_N);
      await expectExactlyOnceInOrder({ "edge.gw1.plant.2.flow": sent });
      console.log(
        `link-faults: blackhole at ${holeAt} stored (${storedDuringHole} when noticed, ` +
          `${acked} acknowledged); resent ${counter(gw, "resent")}`,
      );
    },
    TEST_TIMEOUT_MS,
  );

  it(
    `delivers ${THROTTLED_N} messages exactly once over a slow (200 KB/s, 50 ms) link`,
    async ({ nc, hubProxy, gateway }) => {
      const { gw, proxy } = await setup({ nc, hubProxy, gateway });
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
    async ({ onTestFailed, nc, hubProxy, gateway }) => {
      let resetAt = 0;
      const random = seeded("reset", onTestFailed, () => `reset armed at ${resetAt} stored`);
      resetAt = between(random, FAULT_AFTER_MIN_STORED, PUBLISHED_BEFORE_FAULT);
      const { gw, proxy } = await setup({ nc, hubProxy, gateway });
      await waitForForwarding(gw);
      const sent = lines(BIG_N, "rst");
      // Armed mid-stream; the next chunk either way is cut in half, then both sockets
      // reset. The rest of the messages come after.
      await publishAround(gw.mqttPort, "door/3/events", sent, PUBLISHED_BEFORE_FAULT, async () => {
        await waitFor(async () => (await stored()) >= resetAt, { intervalMs: 5 });
        proxy.resetMidFrame();
      });
      await waitFor(() => proxy.midFrameResets === 1, {
        message: "no chunk crossed the link after resetMidFrame()",
      });
      await waitForDelivery(gw, BIG_N);
      expect(connected(gw)).toBe(1);
      await expectExactlyOnceInOrder({ "edge.gw1.door.3.events": sent });
    },
    TEST_TIMEOUT_MS,
  );
  it(
    "resends after ack_timeout on a slow link that stays up, still exactly once",
    async ({ nc, hubProxy, gateway }) => {
      // Pings every 10 s: the link is never declared dead, so only ack_timeout (2 s) can
      // trigger resends.
      const { gw, proxy } = await setup(
        { nc, hubProxy, gateway },
        { ping_interval: "10s", ack_timeout: "2s" },
      );
      await waitForForwarding(gw);
      // No PubAck can come back within ack_timeout plus the forwarder's 1 s check: every
      // row is still in flight, unacknowledged, at a check after its ack_timeout.
      proxy.delay(SLOW_LINK_ONE_WAY_MS);
      const sent = lines(SLOW_LINK_N, "late");
      await mosquittoPubLines(gw.mqttPort, "meter/8/power", sent);
      await waitForDelivery(gw, SLOW_LINK_N);
      expect(connected(gw)).toBe(1);
      // So every row was sent again, at least once (how often depends on where the checks
      // fell). The link keeps order, so each row's first PubAck is the original's: each
      // counted forwarded once, none a duplicate, and the stream dropped the resends.
      expect(counter(gw, "resent")).toBeGreaterThanOrEqual(SLOW_LINK_N);
      expect(counter(gw, "forwarded")).toBe(SLOW_LINK_N);
      expect(counter(gw, "duplicates")).toBe(0);
      await expectExactlyOnceInOrder({ "edge.gw1.meter.8.power": sent });
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "counts rows resent after a reconnect in leafgate_upstream_resent_total, exactly",
    async ({ nc, hubProxy, gateway }) => {
      // ack_timeout far beyond the test: only the reconnect can make the gateway resend.
      // The stream stores without acknowledging (no_ack) until told otherwise.
      const { gw, proxy } = await setup(
        { nc, hubProxy, gateway },
        { ping_interval: "500ms", ack_timeout: "10m" },
        { no_ack: true },
      );
      await waitForForwarding(gw);
      const sent = lines(LOST_N, "lost");
      await mosquittoPubLines(gw.mqttPort, "tank/1/level", sent);
      // Once the stream holds every row, every row was sent, and none acknowledged: all
      // are in flight.
      await waitFor(async () => (await stored()) === LOST_N, {
        message: "the stream did not store every row",
      });
      expect(pending(gw)).toBe(LOST_N);
      expect(counter(gw, "forwarded")).toBe(0);

      proxy.blackhole();
      await waitFor(() => connected(gw) === 0, {
        message: "gateway did not notice the blackhole",
      });
      // The stream acknowledges again before the link comes back.
      const jsm = await jetstreamManager(nc);
      const { config } = await jsm.streams.info("EDGE");
      await jsm.streams.update("EDGE", { ...config, no_ack: false });
      proxy.restore();
      await waitForDelivery(gw, LOST_N);
      await expectExactlyOnceInOrder({ "edge.gw1.tank.1.level": sent });
      // Rows sent on the dead connection were sent again on the new one: resends, which
      // the metric's help ("after an error, an ack timeout or a reconnect") promises to
      // count — every row, once. The stream had them all: each resend a duplicate.
      expect(counter(gw, "resent")).toBe(LOST_N);
      expect(counter(gw, "duplicates")).toBe(LOST_N);
      expect(counter(gw, "forwarded")).toBe(LOST_N);
    },
    TEST_TIMEOUT_MS,
  );
});
