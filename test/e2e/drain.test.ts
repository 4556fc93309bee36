// Drain policy and rate cap against a real hub.
//
// The rate cap is measured where it matters, on the hub: the time JetStream stored each
// message. In any one-second window the gateway may send the limit plus its burst (the
// token bucket holds one second's worth, src/upstream/token-bucket.ts), and in steady
// state close to the limit.
import { jetstreamManager } from "@nats-io/jetstream";
import { describe, expect } from "vitest";
import type { GatewayConfigInput } from "../helpers/config.js";
import type { FaultProxy } from "../helpers/fault-proxy.js";
import { type Fixtures, it } from "../helpers/fixtures.js";
import type { TestGateway } from "../helpers/gateway.js";
import { mosquittoPubLines } from "../helpers/mqtt.js";
import { connectClient, streamInfo, streamMessages } from "../helpers/nats-server.js";
import { waitFor } from "../helpers/wait.js";

const decoder = new TextDecoder();
const lines = (n: number, tag: string) => Array.from({ length: n }, (_, i) => `${tag}-${i}`);

/**
 * Small limits, so that the upper bound stays exact on the hub's clock: a window of stored
 * times holds what the gateway let go within one second, unless the delay between the
 * bucket's decision and the hub's store varies by more than one token's interval (here
 * 200 ms: a message, or 1,000 bytes). A faster cap would make a loaded machine's pauses
 * look like a broken cap.
 */
const MESSAGES_PER_SECOND = 5;
const BYTES_PER_SECOND = 5_000;
/** The token bucket starts full and holds one second's worth: the burst is the limit. */
const BURST_MESSAGES = MESSAGES_PER_SECOND;
const BURST_BYTES = BYTES_PER_SECOND;
/** Backlog beyond the burst, in seconds at the limit: at least two full windows. */
const DRAIN_SECONDS = 3;
/**
 * Every full second of a drain carries at least this share of the limit. A second falls
 * short only by what a stall at its end holds back (the bucket refills meanwhile and the
 * next second catches up), so one half tolerates the gateway or the hub losing half a
 * second to a loaded 2-core machine; a cap that refilled at a third of its rate would
 * fall well below it (tried: 2 messages, 1,680 bytes).
 */
const LOWEST_SHARE = 0.5;
const SECOND_MS = 1000;
/** Link drops during one drain: each new connection would bring a full bucket if it refilled. */
const RECONNECTS = 3;

/** The largest sum of `weights` stored within any one-second window (times ascending). */
function busiestSecond(times: readonly number[], weights: readonly number[]): number {
  let best = 0;
  let sum = 0;
  let end = 0;
  for (let start = 0; start < times.length; start++) {
    while (end < times.length && times[end]! < times[start]! + SECOND_MS) sum += weights[end++]!;
    best = Math.max(best, sum);
    sum -= weights[start]!;
  }
  return best;
}

/** Sums of `weights` per whole second from the first message on; the last, partial, left out. */
function fullSeconds(times: readonly number[], weights: readonly number[]): number[] {
  const first = times[0]!;
  const last = times.at(-1)!;
  const sums: number[] = [];
  for (let from = first; from + SECOND_MS <= last; from += SECOND_MS) {
    let sum = 0;
    times.forEach((t, i) => {
      if (t >= from && t < from + SECOND_MS) sum += weights[i]!;
    });
    sums.push(sum);
  }
  return sums;
}

describe("draining the outbox", () => {
  let gw: TestGateway | undefined;

  const pending = () => gw!.gateway.status().outbox.pending;
  const connected = () => gw!.gateway.metrics.value("leafgate_upstream_connected") === 1;

  it("fresh_first sends live messages ahead of the backlog, each in its own order", async ({
    hub,
    nc: first,
    stream,
    gateway,
  }) => {
    gw = await gateway.start({
      upstream: {
        servers: [hub.url],
        stream,
        drain: "fresh_first",
        rate_limit: { messages_per_second: 200 },
      },
    });
    await waitFor(connected);
    await first.close();
    await hub.kill();
    await waitFor(() => !connected());

    const backlog = lines(600, "old");
    await mosquittoPubLines(gw.mqttPort, "backlog", backlog);
    expect(pending()).toBe(600);
    await hub.restart();
    await waitFor(connected);
    const live = lines(20, "new");
    await mosquittoPubLines(gw.mqttPort, "live", live);

    const nc = await connectClient(hub.url);
    await waitFor(async () => (await streamInfo(nc, "EDGE")).state.messages === 620, {
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

  /**
   * Publishes `payloads` while the hub is unreachable (a proxy refuses the gateway), so
   * that the whole backlog waits when the link comes back and only the cap limits the
   * drain. Returns each message as stored, with the time the hub stored it.
   */
  async function drainBacklog(
    { nc, stream, hubProxy, gateway }: Pick<Fixtures, "nc" | "stream" | "hubProxy" | "gateway">,
    rateLimit: NonNullable<GatewayConfigInput["upstream"]>["rate_limit"],
    payloads: readonly string[],
    whileDraining?: (link: FaultProxy) => Promise<void>,
  ): Promise<{ payload: string; atMs: number }[]> {
    const proxy = await hubProxy();
    proxy.cut();
    gw = await gateway.start({
      upstream: {
        servers: [proxy.url],
        stream,
        rate_limit: rateLimit,
        reconnect_delay_max: "200ms",
      },
    });
    await mosquittoPubLines(gw.mqttPort, "capped", payloads);
    expect(pending()).toBe(payloads.length);
    proxy.restore();
    await whileDraining?.(proxy);
    await waitFor(() => pending() === 0, { timeoutMs: 30_000 });
    const jsm = await jetstreamManager(nc);
    const stored: { payload: string; atMs: number }[] = [];
    for (let seq = 1; seq <= payloads.length; seq++) {
      const m = await jsm.streams.getMessage("EDGE", { seq });
      stored.push({ payload: decoder.decode(m!.data), atMs: m!.time.getTime() });
    }
    expect((await streamInfo(nc, "EDGE")).state.messages).toBe(payloads.length);
    return stored;
  }

  it("rate_limit.messages_per_second: per second, at most the limit plus the burst, and not far below", async ({
    nc,
    stream,
    hubProxy,
    gateway,
  }) => {
    const sent = lines(MESSAGES_PER_SECOND * DRAIN_SECONDS + BURST_MESSAGES, "m");
    const stored = await drainBacklog(
      { nc, stream, hubProxy, gateway },
      { messages_per_second: MESSAGES_PER_SECOND },
      sent,
    );
    expect(stored.map((m) => m.payload)).toEqual(sent);
    const times = stored.map((m) => m.atMs);
    const ones = stored.map(() => 1);
    expect(busiestSecond(times, ones)).toBeLessThanOrEqual(MESSAGES_PER_SECOND + BURST_MESSAGES);
    const seconds = fullSeconds(times, ones);
    expect(seconds.length).toBeGreaterThanOrEqual(DRAIN_SECONDS - 1);
    for (const n of seconds) expect(n).toBeGreaterThanOrEqual(MESSAGES_PER_SECOND * LOWEST_SHARE);
  });

  it("rate_limit.bytes_per_second: per second, at most the limit plus the burst, and not far below", async ({
    nc,
    stream,
    hubProxy,
    gateway,
  }) => {
    // Sizes vary (500 to 1,500 bytes), so the byte budget, not a message count, decides.
    const sizes: number[] = [];
    for (let total = 0; total < BYTES_PER_SECOND * DRAIN_SECONDS + BURST_BYTES; ) {
      sizes.push(500 + ((sizes.length * 379) % 1001));
      total += sizes.at(-1)!;
    }
    const sent = sizes.map((size, i) => `b-${i + 1}-`.padEnd(size, "x"));
    const stored = await drainBacklog(
      { nc, stream, hubProxy, gateway },
      { bytes_per_second: BYTES_PER_SECOND },
      sent,
    );
    expect(stored.map((m) => m.payload)).toEqual(sent);
    const times = stored.map((m) => m.atMs);
    const bytes = stored.map((m) => Buffer.byteLength(m.payload));
    expect(busiestSecond(times, bytes)).toBeLessThanOrEqual(BYTES_PER_SECOND + BURST_BYTES);
    const seconds = fullSeconds(times, bytes);
    expect(seconds.length).toBeGreaterThanOrEqual(DRAIN_SECONDS - 1);
    for (const n of seconds) expect(n).toBeGreaterThanOrEqual(BYTES_PER_SECOND * LOWEST_SHARE);
  });

  it("rate_limit holds across reconnects: a new hub connection does not refill the bucket", async ({
    nc,
    stream,
    hubProxy,
    gateway,
  }) => {
    const sent = lines(MESSAGES_PER_SECOND * DRAIN_SECONDS + BURST_MESSAGES, "r");
    // Each time two more messages have gone, the link drops and comes back at once.
    const flap = async (link: FaultProxy): Promise<void> => {
      for (let i = 0; i < RECONNECTS; i++) {
        const before = pending();
        await waitFor(() => pending() <= before - 2, { timeoutMs: 10_000 });
        link.cut();
        await waitFor(() => !connected());
        link.restore();
        await waitFor(connected);
      }
    };
    const stored = await drainBacklog(
      { nc, stream, hubProxy, gateway },
      { messages_per_second: MESSAGES_PER_SECOND },
      sent,
      flap,
    );
    expect(stored.map((m) => m.payload)).toEqual(sent);
    const times = stored.map((m) => m.atMs);
    expect(
      busiestSecond(
        times,
        times.map(() => 1),
      ),
    ).toBeLessThanOrEqual(MESSAGES_PER_SECOND + BURST_MESSAGES);
  });
});
