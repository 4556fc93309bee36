// Commands to a serial device from NATS clients: the official nats.js client, unmodified,
// against the local NATS endpoint (a NatsListener) on the same Bus as a device on a socat
// pty played by the firmware simulator: the parts the gateway wires, without the rest, to
// show a NATS request (an envelope with `reply`) is served exactly as an MQTT 5 one.
import { join } from "node:path";
import { connect, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { envSensor, Simulator } from "../../firmware-sim/index.js";
import { Bus, Guard, Replies, silentLogger } from "../../src/core/index.js";
import { DEFAULT_NATS_CONNECTION_OPTIONS, NatsListener } from "../../src/nats/index.js";
import { MetricsRegistry } from "../../src/observe/index.js";
import { createDevice, type Device, resolveProfile } from "../../src/serial/index.js";
import { type TempDir, tempDir, waitFor } from "../helpers/wait.js";

const decoder = new TextDecoder();

let dir: TempDir;
let sim: Simulator;
let device: Device;
let listener: NatsListener;
let replies: Replies;
let metrics: MetricsRegistry;
let servers: string;
const clients: NatsConnection[] = [];

beforeEach(async () => {
  dir = tempDir("serial-cmd-nats");
  sim = new Simulator(envSensor, join(dir.path, "tty-dev"), join(dir.path, "tty-sim"));
  await sim.open();
  const bus = new Bus();
  metrics = new MetricsRegistry();
  replies = new Replies({ bus, maxRoutes: 100, ttlMs: 30_000 });
  device = createDevice(
    { path: sim.devicePath, device: "env-1", profile: "env-sensor", baud_rate: null },
    resolveProfile("env-sensor", null),
    { bus, log: silentLogger, metrics, replies },
  );
  device.start(new AbortController().signal);
  listener = new NatsListener(bus, new Guard(silentLogger, metrics), silentLogger, {
    connection: {
      ...DEFAULT_NATS_CONNECTION_OPTIONS,
      serverId: "LEAFGATE-TEST",
      serverName: "leafgate-test",
      version: "2.10.0",
      replies,
    },
  });
  servers = `127.0.0.1:${(await listener.listen("127.0.0.1", 0)).port}`;
  await waitFor(() => device.status().state === "open");
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((nc) => (nc.isClosed() ? undefined : nc.close())));
  const stopping = listener.stopAccepting();
  listener.destroyAll();
  await stopping;
  await device.stop();
  replies.close();
  await sim.close();
  await dir.cleanup();
});

async function client(): Promise<NatsConnection> {
  const nc = await connect({ servers, reconnect: false });
  clients.push(nc);
  return nc;
}

const body = (m: Msg) => JSON.parse(decoder.decode(m.data)) as Record<string, unknown>;

describe("commands to a serial device from nats.js", () => {
  it("a request is answered by the device; an unknown command's reply carries Leafgate-Error", async () => {
    const nc = await client();
    const answer = await nc.request("devices.env-1.cmd.interval", "5", { timeout: 5_000 });
    expect(body(answer)).toEqual({ text: "OK INTERVAL 5" });
    expect(answer.headers).toBeUndefined();

    const refused = await nc.request("devices.env-1.cmd.reboot", "", { timeout: 5_000 });
    const error =
      'device env-1 has no command "reboot"; its commands are interval, info (' +
      `${resolveProfile("env-sensor", null).file})`;
    expect(body(refused)).toEqual({ error });
    expect(refused.headers?.get("Leafgate-Error")).toBe(error);
    expect(sim.requests.map((r) => r.request)).toEqual(["INTERVAL 5"]);
  });

  it("two NATS clients get turns, in this exact order", async () => {
    const a = await client();
    const b = await client();
    sim.hold();
    const asked: Promise<Msg>[] = [];
    asked.push(a.request("devices.env-1.cmd.interval", "11", { timeout: 10_000 }));
    await waitFor(() => sim.requests.length === 1);
    for (const n of [12, 13, 14]) {
      asked.push(a.request("devices.env-1.cmd.interval", String(n), { timeout: 10_000 }));
    }
    await waitFor(() => device.status().commandsQueued === 3);
    for (const n of [21, 22]) {
      asked.push(b.request("devices.env-1.cmd.interval", String(n), { timeout: 10_000 }));
    }
    await waitFor(() => device.status().commandsQueued === 5);
    sim.release();
    const answers = await Promise.all(asked);
    expect(answers.map((m) => body(m).text)).toEqual(
      [11, 12, 13, 14, 21, 22].map((n) => `OK INTERVAL ${n}`),
    );
    expect(sim.requests.map((r) => r.request)).toEqual(
      [11, 21, 12, 22, 13, 14].map((n) => `INTERVAL ${n}`),
    );
    expect(metrics.value("leafgate_serial_commands_total", { device: "env-1", result: "ok" })).toBe(
      6,
    );
  });
});
