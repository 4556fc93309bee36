// Commands down to serial devices, end to end: mqtt.js (MQTT 5: response topic and
// correlation data) -> leafgate -> a firmware simulator on a socat pty, and its answer back.
import { dirname, join } from "node:path";
import type { IPublishPacket, MqttClient } from "mqtt";
import { describe, expect } from "vitest";
import {
  type DeviceModel,
  envSensor,
  GPS_RELEASE,
  pms5003,
  Simulator,
} from "../../firmware-sim/index.js";
import { gpsNmea } from "../../firmware-sim/models-text.js";
import { type DeviceStatus, MAX_QUEUED_COMMANDS } from "../../src/serial/index.js";
import { it as base, type Defer } from "../helpers/fixtures.js";
import { BUNDLE, type TestGateway } from "../helpers/gateway.js";
import { gatewayMetrics } from "../helpers/gateway-http.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { openModbusSlave } from "../helpers/serial-gateway.js";
import { tempDir, waitFor } from "../helpers/wait.js";

/** What a requester got back on its response topic. */
interface Reply {
  readonly body: Record<string, unknown>;
  readonly correlation: string | undefined;
  readonly error: string | undefined;
}

/** An MQTT 5 requester: every reply on its own response topic, in order of arrival. */
interface Requester {
  readonly client: MqttClient;
  readonly replies: Reply[];
  /** Publishes a request; `correlation` comes back on its reply. */
  request(device: string, command: string, payload: string, correlation: string): Promise<void>;
  /** Publishes a request with no response topic (fire and forget). */
  send(device: string, command: string, payload: string): Promise<void>;
}

async function requester(port: number, clientId: string): Promise<Requester> {
  const client = await connectMqttJs(port, { protocolVersion: 5, clientId });
  const replies: Reply[] = [];
  const responseTopic = `replies/${clientId}`;
  client.on("message", (topic: string, payload: Buffer, packet: IPublishPacket) => {
    if (topic !== responseTopic) return;
    const props = packet.properties;
    const error = props?.userProperties?.["Leafgate-Error"];
    replies.push({
      body: JSON.parse(payload.toString()) as Record<string, unknown>,
      correlation: props?.correlationData?.toString(),
      error: Array.isArray(error) ? error.join() : error,
    });
  });
  await client.subscribeAsync(responseTopic, { qos: 0 });
  return {
    client,
    replies,
    request: async (device, command, payload, correlation) => {
      await client.publishAsync(`devices/${device}/cmd/${command}`, payload, {
        qos: 1,
        properties: { responseTopic, correlationData: Buffer.from(correlation) },
      });
    },
    send: async (device, command, payload) => {
      await client.publishAsync(`devices/${device}/cmd/${command}`, payload, { qos: 1 });
    },
  };
}

/** A simulator of `model` on a fresh pty pair, closed after the test. */
async function simulator(defer: Defer, model: DeviceModel): Promise<Simulator> {
  const dir = tempDir("serial-cmd");
  defer(() => dir.cleanup());
  const sim = new Simulator(model, join(dir.path, "tty-dev"), join(dir.path, "tty-sim"));
  await sim.open();
  defer(() => sim.close());
  return sim;
}

/** A simulated device on an in-process gateway, and what the tests look at. */
interface DeviceSetup {
  readonly sim: Simulator;
  readonly gw: TestGateway;
  /** The device's entry in the gateway's /status. */
  status(): DeviceStatus;
  /** An MQTT 5 requester, client id app-a. */
  readonly a: Requester;
  /** Another MQTT 5 requester, closed after the test. */
  requester(clientId: string): Promise<Requester>;
  /** leafgate_serial_commands_total for the device and `result`. */
  count(result: string): number;
}

const it = base.extend<{
  /** Opens a simulator of `model`, and a gateway with it as `device`; resolves once open. */
  deviceOnGateway: (model: DeviceModel, profile: string, device: string) => Promise<DeviceSetup>;
}>({
  deviceOnGateway: async ({ defer, gateway }, use) => {
    await use(async (model, profile, device) => {
      const sim = await simulator(defer, model);
      const gw = await gateway.start({
        serial: { ports: [{ path: sim.devicePath, profile, device }] },
      });
      const status = () => gw.gateway.status().serial[0]!;
      await waitFor(() => status().state === "open");
      const connect = async (clientId: string) => {
        const r = await requester(gw.mqttPort, clientId);
        defer(() => r.client.endAsync());
        return r;
      };
      return {
        sim,
        gw,
        status,
        a: await connect("app-a"),
        requester: connect,
        count: (result) =>
          gw.gateway.metrics.value("leafgate_serial_commands_total", { device, result }),
      };
    });
  },
});

describe("commands to serial devices", () => {
  it("the bundle: an MQTT 5 request is answered by the device, correlation data back; unknown and fire-and-forget too", async ({
    defer,
    gateway,
  }) => {
    const sim = await simulator(defer, envSensor);
    const gw = await gateway.spawn({
      serial: { ports: [{ path: sim.devicePath, profile: "env-sensor", device: "env-1" }] },
    });
    await waitFor(async () => {
      const res = await fetch(`http://127.0.0.1:${gw.httpPort}/status`);
      const status = (await res.json()) as { serial: { state: string }[] };
      return status.serial[0]?.state === "open";
    });
    const a = await requester(gw.mqttPort, "app-a");
    defer(() => a.client.endAsync());
    // The bundle reads its built-in profiles beside itself.
    const profile = join(dirname(BUNDLE), "devices", "env-sensor.yaml");
    const unknown = `device env-1 has no command "reboot"; its commands are interval, info (${profile})`;

    await a.request("env-1", "interval", "5", "c-1");
    await waitFor(() => a.replies.length === 1);
    await a.send("env-1", "interval", "7"); // no response topic: done all the same
    await a.request("env-1", "info", "", "c-2");
    await waitFor(() => a.replies.length === 2);
    await a.request("env-1", "reboot", "", "c-3");
    await waitFor(() => a.replies.length === 3);

    expect(a.replies).toEqual([
      { body: { text: "OK INTERVAL 5" }, correlation: "c-1", error: undefined },
      {
        body: { text: "INFO env-sensor-sim fw=1.0.0 interval=7" },
        correlation: "c-2",
        error: undefined,
      },
      { body: { error: unknown }, correlation: "c-3", error: unknown },
    ]);
    expect(sim.requests.map((r) => r.request)).toEqual(["INTERVAL 5", "INTERVAL 7", "INFO"]);
    const metrics = await gatewayMetrics(gw);
    expect(metrics.get(commands("env-1", "ok"))).toBe(3);
    expect(metrics.get(commands("env-1", "unknown"))).toBe(1);
  });

  it("two requesters interleaving get turns, in this exact order, each reply to its own", async ({
    deviceOnGateway,
  }) => {
    const {
      sim,
      status,
      count,
      requester: connect,
      a,
    } = await deviceOnGateway(envSensor, "env-sensor", "env-1");
    const b = await connect("app-b");

    // The device is busy with A's first command while A queues three more, then B two.
    sim.hold();
    await a.request("env-1", "interval", "11", "a1");
    await waitFor(() => sim.requests.length === 1);
    for (const n of [12, 13, 14]) await a.request("env-1", "interval", String(n), `a${n - 10}`);
    await waitFor(() => status().commandsQueued === 3);
    for (const n of [21, 22]) await b.request("env-1", "interval", String(n), `b${n - 20}`);
    await waitFor(() => status().commandsQueued === 5);
    sim.release();
    await waitFor(() => a.replies.length === 4 && b.replies.length === 2);

    expect(sim.requests.map((r) => r.request)).toEqual([
      "INTERVAL 11",
      "INTERVAL 21",
      "INTERVAL 12",
      "INTERVAL 22",
      "INTERVAL 13",
      "INTERVAL 14",
    ]);
    expect(a.replies.map((r) => [r.correlation, r.body.text])).toEqual([
      ["a1", "OK INTERVAL 11"],
      ["a2", "OK INTERVAL 12"],
      ["a3", "OK INTERVAL 13"],
      ["a4", "OK INTERVAL 14"],
    ]);
    expect(b.replies.map((r) => [r.correlation, r.body.text])).toEqual([
      ["b1", "OK INTERVAL 21"],
      ["b2", "OK INTERVAL 22"],
    ]);
    expect(count("ok")).toBe(6);
  });

  it("a device that does not answer gets a timeout reply, and the next command goes through", async ({
    deviceOnGateway,
  }) => {
    const { sim, count, a } = await deviceOnGateway(gpsNmea, "gps-nmea", "gps-1");

    sim.silence(1);
    await a.request("gps-1", "firmware", "", "t-1");
    await a.request("gps-1", "ping", "", "t-2");
    await waitFor(() => a.replies.length === 2, { timeoutMs: 10_000 });
    const timeout =
      'device gps-1 did not answer "firmware" within 2000 ms; check that it is powered, and in the mode that command needs';
    expect(a.replies).toEqual([
      { body: { error: timeout }, correlation: "t-1", error: timeout },
      { body: { text: "$PMTK001,0,3*30" }, correlation: "t-2", error: undefined },
    ]);
    await a.request("gps-1", "firmware", "", "t-3");
    await waitFor(() => a.replies.length === 3);
    expect(a.replies[2]!.body).toEqual({ text: `$PMTK705,${GPS_RELEASE},0000,,1.0*2C` });
    expect(sim.requests.map((r) => [r.request, r.outcome])).toEqual([
      ["$PMTK605*31", "silenced"],
      ["$PMTK000*32", "answered"],
      ["$PMTK605*31", "answered"],
    ]);
    expect([count("ok"), count("timeout")]).toEqual([2, 1]);
  });

  it("an unplugged device: the command on the line and every later one get an error reply at once, not a timeout", async ({
    deviceOnGateway,
  }) => {
    const { sim, status, count, a } = await deviceOnGateway(envSensor, "env-sensor", "env-1");
    const state = () => status().state;

    sim.hold(); // the device never gets to answer
    await a.request("env-1", "interval", "5", "u-1");
    await a.request("env-1", "interval", "6", "u-2");
    await waitFor(() => sim.requests.length === 1);
    await sim.unplug(); // socat ends: the device node goes away
    await waitFor(() => a.replies.length === 2);
    expect(state()).toBe("waiting");
    // Why it is lost is the port's word for it (the node went away, or an EIO/EBADF).
    const lost = a.replies[0]!.error;
    expect(lost).toMatch(/^device env-1 is not connected \(.+\); retry when it is back$/);
    expect(a.replies).toEqual([
      { body: { error: lost }, correlation: "u-1", error: lost },
      { body: { error: lost }, correlation: "u-2", error: lost },
    ]);

    // While it is away, a request is answered at once and nothing is written.
    await a.request("env-1", "info", "", "u-3");
    await waitFor(() => a.replies.length === 3);
    expect(a.replies[2]!.body.error).toMatch(
      /^device env-1 is not connected \(.+\); retry when it is back$/,
    );
    expect(count("unplugged")).toBe(3);
    expect(count("timeout")).toBe(0);

    // Back again (and no longer busy): commands work.
    sim.release();
    await sim.replug();
    await waitFor(() => state() === "open", { timeoutMs: 3_000 });
    await a.request("env-1", "info", "", "u-4");
    await waitFor(() => a.replies.length === 4);
    // It had acted on INTERVAL 5 before it was unplugged; its answer was what got lost.
    expect(a.replies[3]).toEqual({
      body: { text: "INFO env-sensor-sim fw=1.0.0 interval=5" },
      correlation: "u-4",
      error: undefined,
    });
  });

  it("pms5003: garbage between command frames breaks no command; answers are replies and readings", async ({
    deviceOnGateway,
  }) => {
    const { sim, count, a } = await deviceOnGateway(pms5003, "pms5003", "air-1");
    const readings: unknown[] = [];
    a.client.on("message", (topic: string, payload: Buffer) => {
      if (topic === "sensors/air-1/air") readings.push(JSON.parse(payload.toString()));
    });
    await a.client.subscribeAsync("sensors/air-1/air", { qos: 0 });

    await a.request("air-1", "passive_mode", "", "p-1");
    await waitFor(() => a.replies.length === 1);
    sim.sendGarbage(9, 0x42); // a run of header-like bytes between frames
    sim.garbageBeforeAnswer(Buffer.from([0x42, 0x4d, 0x00, 0x1c, 0x99, 0x42]));
    await a.request("air-1", "read_passive", "", "p-2");
    await waitFor(() => a.replies.length === 2);
    sim.sendGarbage(5, 0x00);
    await a.request("air-1", "read_passive", "", "p-3");
    await waitFor(() => a.replies.length === 3 && readings.length === 2);

    const good = sim.goodValues();
    expect(good).toHaveLength(2);
    const valuesOf = (v: Record<string, number>) => ({
      pm1_0: v.pm1_0,
      pm2_5: v.pm2_5,
      pm10: v.pm10,
      particles_0_3um: v.n0_3,
      particles_2_5um: v.n2_5,
    });
    expect(a.replies.map((r) => [r.correlation, r.error])).toEqual([
      ["p-1", undefined],
      ["p-2", undefined],
      ["p-3", undefined],
    ]);
    expect(a.replies[0]!.body).toEqual({ written: 7 });
    expect(a.replies.slice(1).map((r) => r.body.values)).toEqual(good.map(valuesOf));
    expect(a.replies.slice(1).map((r) => (r.body.hex as string).slice(0, 8))).toEqual([
      "424d001c",
      "424d001c",
    ]);
    expect(readings).toEqual(good.map(valuesOf));
    expect(sim.requests.map((r) => r.request)).toEqual([
      "424de100000170",
      "424de200000171",
      "424de200000171",
    ]);
    expect(sim.state.get("mode")).toBe(0);
    expect(count("ok")).toBe(3);
  });

  it(`past ${MAX_QUEUED_COMMANDS} waiting commands a request is refused at once (busy), counted`, async ({
    deviceOnGateway,
  }) => {
    const { sim, status, count, a } = await deviceOnGateway(envSensor, "env-sensor", "env-1");

    sim.hold();
    await a.send("env-1", "info", "");
    await waitFor(() => sim.requests.length === 1);
    for (let i = 0; i < MAX_QUEUED_COMMANDS; i++) await a.send("env-1", "info", "");
    await waitFor(() => status().commandsQueued === MAX_QUEUED_COMMANDS);
    await a.request("env-1", "info", "", "full");
    await waitFor(() => a.replies.length === 1);
    const busy = `device env-1 has ${MAX_QUEUED_COMMANDS} commands waiting already; retry when it has worked through them`;
    expect(a.replies).toEqual([{ body: { error: busy }, correlation: "full", error: busy }]);
    sim.release();
    await waitFor(() => sim.requests.length === MAX_QUEUED_COMMANDS + 1, { timeoutMs: 10_000 });
    await waitFor(() => count("ok") === MAX_QUEUED_COMMANDS + 1);
    expect(count("busy")).toBe(1);
  });

  it("energy-meter (Modbus): register reads and writes between polls, one request on the line at a time", async ({
    defer,
    gateway,
  }) => {
    const slave = await openModbusSlave(defer);
    const gw = await gateway.start({
      serial: { ports: [{ path: slave.devicePath, profile: "energy-meter", device: "meter-1" }] },
    });
    await waitFor(() => gw.gateway.status().serial[0]!.state === "open");
    const a = await requester(gw.mqttPort, "app-a");
    defer(() => a.client.endAsync());

    const ask = async (command: string, payload: string, correlation: string) => {
      await a.request("meter-1", command, payload, correlation);
      await waitFor(() => a.replies.some((r) => r.correlation === correlation));
    };
    await ask("settings", "", "m-1");
    await ask("demand_interval", "30", "m-2");
    await ask("interval_and_ct", "[60, 5]", "m-3");
    await ask("settings", "", "m-4");
    await ask("demand_interval", "70000", "m-5");
    expect(a.replies).toEqual([
      { body: { address: 100, registers: [15, 1, 3] }, correlation: "m-1", error: undefined },
      { body: { address: 100, written: [30] }, correlation: "m-2", error: undefined },
      { body: { address: 100, written: [60, 5] }, correlation: "m-3", error: undefined },
      { body: { address: 100, registers: [60, 5, 3] }, correlation: "m-4", error: undefined },
      {
        body: { error: payloadError },
        correlation: "m-5",
        error: payloadError,
      },
    ]);
    // The poller went on reading input registers around the commands, never two at once.
    await waitFor(() => slave.requests.filter((r) => r.fn === 4).length >= 2);
    expect(
      slave.requests.filter((r) => r.fn !== 4).map((r) => [r.fn, r.address, r.count, r.written]),
    ).toEqual([
      [3, 100, 3, undefined],
      [6, 100, 1, [30]],
      [16, 100, 2, [60, 5]],
      [3, 100, 3, undefined],
    ]);
    expect(slave.maxOutstanding()).toBe(1);
    expect(slave.badRequests).toBe(0);
    const count = (result: string) =>
      gw.gateway.metrics.value("leafgate_serial_commands_total", { device: "meter-1", result });
    expect([count("ok"), count("error")]).toEqual([4, 1]);
  });
});

const payloadError =
  'command "demand_interval" writes registers 100..100: its payload must be a value 0..65535 as JSON (42, or [42])';
const commands = (device: string, result: string) =>
  `leafgate_serial_commands_total{device="${device}",result="${result}"}`;
