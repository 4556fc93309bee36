// The hub supervisor through its dialer and clock seams: no network, time moved by hand,
// real outbox on a temp SQLite file.
import type { ConnectionOptions, NatsConnection } from "@nats-io/transport-node";
import { afterEach, describe, expect, it } from "vitest";
import { Bus, ManualClock, Replies, silentLogger } from "../../src/core/index.js";
import { MetricsRegistry } from "../../src/observe/index.js";
import { closeDatabase, ImportCursors, openDatabase } from "../../src/store/index.js";
import {
  backoffDelayMs,
  type Dialer,
  Upstream,
  type UpstreamConfig,
} from "../../src/upstream/index.js";
import { testOutbox } from "../helpers/temp-outbox.js";
import { type TempDir, tempDir, waitFor } from "../helpers/wait.js";

/** Lets the supervisor run on to its next wait (it waits only on promises and the clock). */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

const CONFIG: UpstreamConfig = {
  servers: ["nats://hub-1:4222", "nats://hub-2:4222"],
  mode: "jetstream",
  stream: "EDGE",
  domain: null,
  prefix: "edge.gw1",
  export: [">"],
  import: [],
  max_in_flight: 16,
  ack_timeout: 10_000,
  reconnect_delay_max: 200,
  ping_interval: 10_000,
  drain: "fifo",
  rate_limit: { messages_per_second: 0, bytes_per_second: 0 },
};

describe("Upstream supervisor", () => {
  let dir: TempDir;
  const cleanups: (() => void)[] = [];

  afterEach(async () => {
    for (const c of cleanups.splice(0)) c();
    await dir?.cleanup();
  });

  function build(dial: Dialer, config: Partial<UpstreamConfig> = {}) {
    dir = tempDir("upstream");
    const db = openDatabase(dir.path, "normal");
    const metrics = new MetricsRegistry();
    const outbox = testOutbox(db, metrics);
    cleanups.push(() => closeDatabase(db));
    const clock = new ManualClock();
    const bus = new Bus();
    const upstream = new Upstream({
      config: { ...CONFIG, ...config },
      gatewayId: "gw1",
      outbox,
      bus,
      log: silentLogger,
      metrics,
      replies: new Replies({ bus, maxRoutes: 16, ttlMs: 1000, clock }),
      importCursors: new ImportCursors(db),
      dial,
      clock,
      // The middle of the jitter: backoff delays are exactly 100, 200, 400… ms.
      random: () => 0.5,
    });
    return { upstream, metrics, clock };
  }

  /** Moves the clock through each wait, checking that the next dial comes exactly then. */
  async function expectDialsAfter(clock: ManualClock, dials: () => number, waitsMs: number[]) {
    for (const waitMs of waitsMs) {
      const before = dials();
      clock.advance(waitMs - 1);
      await settle();
      expect(dials()).toBe(before);
      clock.advance(1);
      await settle();
      expect(dials()).toBe(before + 1);
    }
  }

  it("keeps dialing with backoff while the hub refuses, taking the servers in turn", async () => {
    const attempts: ConnectionOptions[] = [];
    const { upstream, clock } = build(async (options) => {
      attempts.push(options);
      throw new Error("connection refused");
    });
    upstream.start(new AbortController().signal);
    await settle();
    expect(attempts).toHaveLength(1);
    // 100, then 200 ms: reconnect_delay_max caps the doubling.
    await expectDialsAfter(clock, () => attempts.length, [100, 200, 200]);
    // Never connected: no connect counted, down since the link started, the servers named.
    expect(upstream.status()).toMatchObject({
      state: "connecting",
      lastError: "connection refused",
      servers: ["nats://hub-1:4222", "nats://hub-2:4222"],
      connects: 0,
      since: 0,
    });
    await upstream.stop(1000);
    expect(upstream.status().state).toBe("stopped");
    expect(attempts[0]).toMatchObject({ reconnect: false, name: "leafgate gw1" });
    // One server per dial, taking turns.
    const dialed = attempts.slice(0, 4).map((a) => a.servers);
    expect(dialed.every((s) => Array.isArray(s) && s.length === 1)).toBe(true);
    expect(dialed[0]).not.toEqual(dialed[1]);
    expect(dialed[0]).toEqual(dialed[2]);
    expect(new Set(dialed.flat())).toEqual(new Set(["nats://hub-1:4222", "nats://hub-2:4222"]));
    // Each attempt gets its own options object: the client may mutate what it is given.
    expect(attempts[0]).not.toBe(attempts[1]);
    expect(await upstream.closed()).toBeUndefined();
  });

  it("stops at its deadline while a dial hangs (a blackholed hub), and closes it later", async () => {
    let release!: (nc: NatsConnection) => void;
    let closedLate = false;
    const { upstream, clock } = build(
      () =>
        new Promise<NatsConnection>((resolve) => {
          release = resolve;
        }),
    );
    upstream.start(new AbortController().signal);
    await waitFor(() => release !== undefined);
    let stopped = false;
    const stopping = upstream.stop(300).then(() => {
      stopped = true;
    });
    await settle();
    expect(upstream.status().state).toBe("stopping");
    clock.advance(299);
    await settle();
    expect(stopped).toBe(false);
    clock.advance(1);
    await stopping;
    expect(upstream.status().state).toBe("stopped");
    // The dial finally succeeds after shutdown: that connection is closed at once.
    release({
      close: async () => {
        closedLate = true;
      },
    } as unknown as NatsConnection);
    await upstream.closed();
    expect(closedLate).toBe(true);
  });

  it("backs off when the hub accepts and drops the connection at once, instead of a hot loop", async () => {
    const dialedAtMs: number[] = [];
    const dropsAtOnce = {
      getServer: () => "127.0.0.1:4222",
      closed: () => Promise.resolve(undefined),
      isClosed: () => true,
      close: async () => {},
      subscribe: () => ({ unsubscribe: () => {} }),
    } as unknown as NatsConnection;
    const { upstream, clock, metrics } = build(
      async () => {
        dialedAtMs.push(clock.now());
        return dropsAtOnce;
      },
      { mode: "core", reconnect_delay_max: 400 },
    );
    upstream.start(new AbortController().signal);
    await settle();
    // A session that lasted no time does not reset the backoff: 100, 200, 400, 400 ms.
    await expectDialsAfter(clock, () => dialedAtMs.length, [100, 200, 400, 400]);
    expect(dialedAtMs).toEqual([0, 100, 300, 700, 1100]);
    // Each connection counts; the last was lost as soon as it was made.
    expect(upstream.status()).toMatchObject({ state: "connecting", connects: 5, since: 1100 });
    expect(metrics.value("leafgate_upstream_connects_total")).toBe(5);
    await upstream.stop(1_000);
  });

  it("ends when the signal it started with aborts, without a stop", async () => {
    let dials = 0;
    const { upstream } = build(async () => {
      dials++;
      throw new Error("connection refused");
    });
    const lifetime = new AbortController();
    upstream.start(lifetime.signal);
    await settle();
    lifetime.abort();
    expect(await upstream.closed()).toBeUndefined();
    await settle();
    expect(upstream.status().state).toBe("stopped");
    expect(dials).toBe(1);
  });

  it("reports a credentials file it cannot read at construction, not on every reconnect", () => {
    expect(() =>
      build(
        async () => {
          throw new Error("unused");
        },
        { credentials: "/nonexistent/gw.creds" },
      ),
    ).toThrow(/cannot read upstream.credentials \/nonexistent\/gw.creds/);
  });
});

describe("backoffDelayMs", () => {
  it("doubles from 100 ms up to the cap, within ±20% jitter", () => {
    const mid = () => 0.5;
    expect([0, 1, 2, 3, 4, 5, 10].map((a) => backoffDelayMs(a, 2000, mid))).toEqual([
      100, 200, 400, 800, 1600, 2000, 2000,
    ]);
    expect(backoffDelayMs(0, 2000, () => 0)).toBe(80);
    expect(backoffDelayMs(20, 2000, () => 1)).toBe(2400);
    expect(backoffDelayMs(10_000, 5000, mid)).toBe(5000);
  });
});
