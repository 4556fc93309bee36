// What someone looking after many boxes reads in `/status`, `/metrics`, `/readyz` and
// `leafgate status`, against the shipped bundle as a child process, a real hub and a
// simulated serial device on a socat pty:
// - the hub link's connects and since-when across a hub outage and restart (1, then 2),
//   and the age of the oldest buffered message while the hub is away: exactly the
//   snapshot's time less when that message was received, within the publish's bracket;
//   0 messages and no age once the restarted hub took them;
// - a serial device's good frames, its bad frames after exactly 4 garbage lines, its
//   last-frame time; a device with no expected interval keeps the box READY;
// - per account (in process, the hub unreachable): each queue's oldest message exactly as
//   received, its limits, its servers; /metrics labels the tenant's series;
// - a polled (Modbus) meter that stops answering: NOT READY with "silent" once its derived
//   limit (3 cycles of 1 s poll + 200 ms x 3 attempts = 4.8 s) has passed, READY again
//   once it answers; a streaming sensor given `silent_after: 3s` likewise once it stops
//   talking, READY again at its next reading.
import { describe, expect } from "vitest";
import type { Envelope } from "../../src/core/index.js";
import type { GatewayStatus } from "../../src/gateway.js";
import { it, type SpawnedGateway } from "../helpers/fixtures.js";
import { BUNDLE, childEnv } from "../helpers/gateway.js";
import { gatewayMetrics } from "../helpers/gateway-http.js";
import { mosquittoPubLines } from "../helpers/mqtt.js";
import { closedPort } from "../helpers/net.js";
import { runToCompletion, stopProcess } from "../helpers/procs.js";
import { spawnWithSensor } from "../helpers/sensor-gateway.js";
import { openModbusSlave } from "../helpers/serial-gateway.js";
import { waitFor } from "../helpers/wait.js";

/** How long the gateway may take to see the hub go or come back (backoff max 2 s, a busy machine). */
const SEEN_MS = 30_000;
/** How long the oldest message waits before the test reads its age: long enough to be seen growing. */
const AGED_MS = 2_000;

async function status(gw: SpawnedGateway): Promise<GatewayStatus> {
  return (await (await fetch(`http://127.0.0.1:${gw.httpPort}/status`)).json()) as GatewayStatus;
}

/** Polls /status until `check` holds; returns that snapshot. */
async function statusWhen(
  gw: SpawnedGateway,
  check: (s: GatewayStatus) => boolean,
): Promise<GatewayStatus> {
  let last: GatewayStatus | undefined;
  return waitFor(
    async () => {
      last = await status(gw);
      return check(last) ? last : undefined;
    },
    { timeoutMs: SEEN_MS, intervalMs: 100, message: () => `/status is ${JSON.stringify(last)}` },
  );
}

type Readyz = { ready: boolean; reasons?: string[] };

async function readyz(gw: SpawnedGateway): Promise<Readyz> {
  return (await (await fetch(`http://127.0.0.1:${gw.httpPort}/readyz`)).json()) as Readyz;
}

/** Polls /readyz until it says `ready`; returns that answer. */
function readyzWhen(gw: SpawnedGateway, ready: boolean): Promise<Readyz> {
  return waitFor(
    async () => {
      const r = await readyz(gw);
      return r.ready === ready ? r : undefined;
    },
    { timeoutMs: SEEN_MS, intervalMs: 100 },
  );
}

const link = (s: GatewayStatus) => s.accounts.$G!.upstream;
const defaultClass = (s: GatewayStatus) =>
  s.accounts.$G!.outbox.classes.find((c) => c.name === "default")!;

describe("status for a fleet", () => {
  it("counts the hub link's connects, says since when it is up or down, and ages the backlog", async ({
    hub,
    stream,
    gateway,
  }) => {
    const started = Date.now();
    const gw = await gateway.spawn({ upstream: { servers: [hub.url], stream } });
    const up = await statusWhen(gw, (s) => link(s).state === "forwarding");
    expect(link(up)).toMatchObject({
      state: "forwarding",
      servers: [hub.url],
      connects: 1,
    });
    expect(link(up).since).toBeGreaterThanOrEqual(started);
    expect(link(up).since).toBeLessThanOrEqual(up.time);
    expect(defaultClass(up)).toMatchObject({ messages: 0, oldestAt: null, oldestAgeMs: null });
    expect((await gatewayMetrics(gw)).get("leafgate_upstream_connects_total")).toBe(1);

    const stopping = Date.now();
    await stopProcess(hub.proc);
    const down = await statusWhen(gw, (s) => link(s).state === "connecting");
    expect(link(down).connects).toBe(1);
    expect(link(down).since).toBeGreaterThanOrEqual(stopping);
    expect(link(down).since).toBeLessThanOrEqual(down.time);

    const before = Date.now();
    await mosquittoPubLines(gw.mqttPort, "sensors/a", ["m1", "m2", "m3"], { qos: 1 });
    const after = Date.now();
    const aged = await statusWhen(gw, (s) => (defaultClass(s).oldestAgeMs ?? 0) >= AGED_MS);
    const cls = defaultClass(aged);
    expect(cls.messages).toBe(3);
    expect(cls.oldestAt).toBeGreaterThanOrEqual(before);
    expect(cls.oldestAt).toBeLessThanOrEqual(after);
    expect(cls.oldestAgeMs).toBe(aged.time - cls.oldestAt!);
    // /metrics measures at its own instant: between this snapshot's age and now's.
    const metrics = await gatewayMetrics(gw);
    const ageSeconds = metrics.get('leafgate_outbox_oldest_age_seconds{class="default"}')!;
    expect(ageSeconds).toBeGreaterThanOrEqual(cls.oldestAgeMs! / 1000);
    expect(ageSeconds).toBeLessThanOrEqual((Date.now() - cls.oldestAt!) / 1000);
    expect(metrics.get('leafgate_buffer_max_bytes{class="default"}')).toBe(cls.maxBytes);

    const notReady = await readyz(gw);
    expect(notReady.ready).toBe(false);
    expect(notReady.reasons).toHaveLength(1);
    expect(notReady.reasons![0]).toMatch(
      new RegExp(
        `^hub unreachable \\(last server 127\\.0\\.0\\.1:${hub.port}\\): .+; messages are buffered$`,
      ),
    );

    const restarting = Date.now();
    await hub.restart();
    const back = await statusWhen(
      gw,
      (s) => link(s).state === "forwarding" && s.accounts.$G!.outbox.pending === 0,
    );
    expect(link(back).connects).toBe(2);
    expect(link(back).since).toBeGreaterThanOrEqual(restarting);
    expect(defaultClass(back)).toMatchObject({ messages: 0, oldestAt: null, oldestAgeMs: null });
    const later = await gatewayMetrics(gw);
    expect(later.get("leafgate_upstream_connects_total")).toBe(2);
    expect(later.get('leafgate_outbox_oldest_age_seconds{class="default"}')).toBe(0);
  });

  it("shows a device's good and bad frames and when it was last heard; no interval, no silence rule", async ({
    hub,
    stream,
    gateway,
    defer,
  }) => {
    const { gw, sim } = await spawnWithSensor({ hub, stream, gateway, defer });
    await statusWhen(gw, (s) => s.serial[0]?.state === "open" && link(s).state === "forwarding");

    const before = Date.now();
    for (let i = 0; i < 3; i++) sim.sendGood();
    const heard = await statusWhen(gw, (s) => s.serial[0]!.frames === 3);
    const after = Date.now();
    for (let i = 0; i < 4; i++) sim.pty.write(Buffer.from(`garbage line ${i}\n`));
    const s = await statusWhen(gw, (x) => x.serial[0]!.badFrames === 4);
    const device = s.serial[0]!;
    expect(device).toMatchObject({
      device: "env-1",
      path: sim.devicePath,
      state: "open",
      frames: 3,
      badFrames: 4,
      silentAfterMs: null,
      lastFrameAt: heard.serial[0]!.lastFrameAt,
    });
    expect(device.lastFrameAt).toBeGreaterThanOrEqual(before);
    expect(device.lastFrameAt).toBeLessThanOrEqual(after);

    const metrics = await gatewayMetrics(gw);
    const labels = `{device="env-1",port="${sim.devicePath}"}`;
    expect(metrics.get(`leafgate_serial_last_frame_timestamp_seconds${labels}`)).toBe(
      device.lastFrameAt! / 1000,
    );

    // Heard long ago or not, a device that sends when it likes keeps the box READY.
    const url = `http://127.0.0.1:${gw.httpPort}`;
    const r = await runToCompletion(process.execPath, [BUNDLE, "status", "--url", url], {
      env: childEnv({}),
      timeoutMs: 15_000,
    });
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    const line = r.stdout.split("\n").find((l) => l.startsWith("serial:"));
    expect(line).toMatch(
      new RegExp(
        `^serial:   env-1 ${sim.devicePath} open since \\S+Z, 3 frames, 4 bad, last frame ${new Date(device.lastFrameAt!).toISOString()} \\(\\d+ s ago\\)$`,
      ),
    );
  });

  it("a polled meter that stops answering makes the box not ready; answering again, ready", async ({
    hub,
    stream,
    gateway,
    defer,
  }) => {
    const slave = await openModbusSlave(defer);
    const gw = await gateway.spawn({
      upstream: { servers: [hub.url], stream },
      serial: { ports: [{ path: slave.devicePath, profile: "energy-meter", device: "meter-1" }] },
    });
    const answering = await statusWhen(
      gw,
      (s) => link(s).state === "forwarding" && (s.serial[0]?.frames ?? 0) > 0,
    );
    // energy-meter.yaml: one read of registers 0-9, poll_interval 1 s, timeout 200 ms, 2 retries.
    expect(answering.serial[0]!.silentAfterMs).toBe(3 * (1000 + 3 * 200));
    expect(await readyz(gw)).toEqual({ ready: true });

    slave.fault("no_answer");
    expect(await readyzWhen(gw, false)).toEqual({
      ready: false,
      reasons: [
        `serial device meter-1 on ${slave.devicePath} is silent: no good frame for over 4 s`,
      ],
    });
    const quiet = await status(gw);
    expect(quiet.time - quiet.serial[0]!.lastFrameAt!).toBeGreaterThan(4800);
    expect(quiet.serial[0]!.state).toBe("open");

    slave.fault("none");
    expect(await readyzWhen(gw, true)).toEqual({ ready: true });
  });

  it("a streaming device given silent_after that stops talking makes the box not ready; talking again, ready", async ({
    hub,
    stream,
    gateway,
    defer,
  }) => {
    const { gw, sim } = await spawnWithSensor({
      hub,
      stream,
      gateway,
      defer,
      port: { silent_after: "3s" },
    });
    // The device talks (a reading every 200 ms) until the gateway has heard it.
    const talking = setInterval(() => sim.sendGood(), 200);
    try {
      const heard = await statusWhen(
        gw,
        (s) => link(s).state === "forwarding" && (s.serial[0]?.frames ?? 0) > 0,
      );
      expect(heard.serial[0]!.silentAfterMs).toBe(3000);
      expect(await readyzWhen(gw, true)).toEqual({ ready: true });
    } finally {
      clearInterval(talking);
    }

    expect(await readyzWhen(gw, false)).toEqual({
      ready: false,
      reasons: [`serial device env-1 on ${sim.devicePath} is silent: no good frame for over 3 s`],
    });
    const quiet = await status(gw);
    expect(quiet.time - quiet.serial[0]!.lastFrameAt!).toBeGreaterThan(3000);

    sim.sendGood();
    expect(await readyzWhen(gw, true)).toEqual({ ready: true });
  });

  it("per account: each queue's oldest message and limits, each link's servers; metrics labelled", async ({
    gateway,
  }) => {
    const port = await closedPort();
    const gw = await gateway.start({
      upstream: { servers: [`nats://127.0.0.1:${port}`], stream: "EDGE" },
      accounts: {
        tenant: {
          upstream: { servers: [`nats://t:pw@LOCALHOST:${port}`], stream: "EDGE_T" },
          buffer: {
            max_messages: 500,
            classes: [{ name: "alarms", subjects: ["alarms.>"], on_full: "reject" }],
          },
        },
      },
    });
    const g = gw.gateway;
    const publish = (account: string, subject: string, receivedAtMs: number) => {
      const m: Envelope = {
        subject,
        payload: Buffer.from("x"),
        receivedAtMs,
        origin: "nats",
        qos: 1,
      };
      return g.accountBus(account)!.publish(m);
    };
    const t0 = Date.now() - 60_000;
    await Promise.all([
      publish("tenant", "alarms.door", t0 + 10),
      publish("tenant", "sensors.a", t0 + 20),
      publish("$G", "sensors.b", t0 + 30),
      publish("tenant", "alarms.door", t0 + 40),
    ]);
    const s = g.status();
    const classes = (a: string) =>
      s.accounts[a]!.outbox.classes.map((c) => [
        c.name,
        c.messages,
        c.oldestAt,
        c.oldestAgeMs,
        c.maxMessages,
        c.onFull,
      ]);
    expect(classes("$G")).toEqual([
      ["default", 1, t0 + 30, s.time - t0 - 30, 10_000_000, "drop_oldest"],
    ]);
    expect(classes("tenant")).toEqual([
      ["alarms", 2, t0 + 10, s.time - t0 - 10, 500, "reject"],
      ["default", 1, t0 + 20, s.time - t0 - 20, 500, "drop_oldest"],
    ]);
    expect(s.accounts.$G!.upstream.servers).toEqual([`nats://127.0.0.1:${port}`]);
    expect(s.accounts.tenant!.upstream.servers).toEqual([`nats://t:***@localhost:${port}`]);
    expect(s.disk.state).toBe("ok");

    const text = await (await fetch(`http://127.0.0.1:${g.addresses().http!.port}/metrics`)).text();
    const age = (labels: string) => {
      const line = text
        .split("\n")
        .find((l) => l.startsWith(`leafgate_outbox_oldest_age_seconds${labels} `));
      return Number(line?.split(" ")[1]);
    };
    // /metrics measures after the snapshot: at least its age, at most the age now.
    for (const [labels, at] of [
      ['{class="default"}', t0 + 30],
      ['{account="tenant",class="alarms"}', t0 + 10],
      ['{account="tenant",class="default"}', t0 + 20],
    ] as const) {
      expect(age(labels)).toBeGreaterThanOrEqual((s.time - at) / 1000);
      expect(age(labels)).toBeLessThanOrEqual((Date.now() - at) / 1000);
    }
    expect(text).toContain('\nleafgate_upstream_connects_total{account="tenant"} 0\n');
    expect(text).toContain("\nleafgate_upstream_connects_total 0\n");
  });
});
