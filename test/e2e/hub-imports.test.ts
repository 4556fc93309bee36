// Imports from the hub into a running gateway (docs/upstream.md, "Imports"), with a real
// nats-server (JetStream) as the hub, its own nats.js client, and mqtt.js on the edge:
// - a durable import delivers commands queued on the hub while the gateway was stopped to
//   a persistent MQTT session, each once and in order, and a later restart delivers none
//   again; a redelivery of a command already delivered is acked only;
// - a plain import is subscribed again after the hub restarts;
// - a hub request is answered by a local MQTT 5 responder, directly and through a `local`
//   mapping, by a local NATS service and by a simulated serial device; one nobody local
//   serves gets "no responders" at once;
// - a durable import takes a command queued while the gateway was stopped down to a
//   serial device.
import { join } from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection, RequestError } from "@nats-io/transport-node";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { describe, expect } from "vitest";
import { envSensor, Simulator } from "../../firmware-sim/index.js";
import { loadConfig } from "../../src/config/index.js";
import { silentLogger } from "../../src/core/index.js";
import { Gateway } from "../../src/gateway.js";
import { closeDatabase, ImportCursors, openDatabase } from "../../src/store/index.js";
import type { UpstreamInput } from "../helpers/config.js";
import { type Defer, it } from "../helpers/fixtures.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { createStream } from "../helpers/nats-server.js";
import { tempDir, waitFor } from "../helpers/wait.js";

const CMDS = "CMDS";
const DURABLE = "cmds-gw1";
const COMMANDS = 20;

/** Starts a gateway on `file` (again: the same data dir), stopped after the test. */
async function runGateway(file: string, defer: Defer): Promise<Gateway> {
  const config = loadConfig({ file, env: {}, hostname: "test-host" });
  const gateway = new Gateway({ config, log: silentLogger });
  defer(() => gateway.stop());
  await gateway.start();
  return gateway;
}

const mqttPort = (gw: Gateway): number => gw.addresses().mqtt[0]!.port;

/** A persistent session's client: every message it is given, as `topic payload`. */
function sessionClient(port: number, received: string[], options: IClientOptions = {}) {
  const client = mqtt.connect({
    host: "127.0.0.1",
    port,
    clientId: "commands",
    clean: false,
    protocolVersion: 4,
    reconnectPeriod: 0,
    ...options,
  });
  client.on("message", (topic, payload) => received.push(`${topic} ${payload.toString()}`));
  return client;
}

async function connected(client: MqttClient): Promise<MqttClient> {
  if (client.connected) return client;
  await new Promise<void>((resolve, reject) => {
    client.once("connect", () => resolve());
    client.once("error", reject);
  });
  return client;
}

async function consumerInfo(nc: NatsConnection) {
  return (await jetstreamManager(nc)).consumers.info(CMDS, DURABLE);
}

/** Publishes commands `from`..`to` into the stream (acked by JetStream). */
async function queueCommands(nc: NatsConnection, from: number, to: number): Promise<string[]> {
  const js = jetstream(nc);
  const expected: string[] = [];
  for (let i = from; i <= to; i++) {
    await js.publish(`cmd.gw1.dev-${i % 3}.set`, `command-${i}`);
    expected.push(`cmd/gw1/dev-${i % 3}/set command-${i}`);
  }
  return expected;
}

/**
 * Runs the gateway once, which makes the consumer, and makes the subscriber's persistent
 * session (QoS 1 on cmd/gw1/#) then; returns the stopped gateway.
 */
async function firstRun(
  file: string,
  nc: NatsConnection,
  received: string[],
  defer: Defer,
): Promise<Gateway> {
  const first = await runGateway(file, defer);
  await waitFor(() => consumerInfo(nc));
  const subscriber = await connected(sessionClient(mqttPort(first), received));
  await subscriber.subscribeAsync("cmd/gw1/#", { qos: 1 });
  await subscriber.endAsync();
  await first.stop();
  return first;
}

/** A link to the hub with the durable import cmds-<gateway> of CMDS. */
const durableUpstream = (hubUrl: string, stream: string): UpstreamInput => ({
  servers: [hubUrl],
  stream,
  reconnect_delay_max: "200ms",
  import: [{ subject: "cmd.{gateway}.>", durable: "cmds-{gateway}", stream: CMDS }],
});

describe("durable imports", () => {
  it("deliver commands queued while the gateway was stopped to a persistent session, once each, in order, across restarts", async ({
    hub,
    nc,
    stream,
    gateway,
    defer,
  }) => {
    await createStream(nc, CMDS, ["cmd.>"]);
    const { file } = gateway.writeConfig({ upstream: durableUpstream(hub.url, stream) });
    const received: string[] = [];
    await firstRun(file, nc, received, defer);

    const expected = await queueCommands(nc, 1, COMMANDS);
    const second = await runGateway(file, defer);
    // Every command was delivered into the offline session and acked, one after another.
    await waitFor(async () => {
      const info = await consumerInfo(nc);
      return info.ack_floor.stream_seq === COMMANDS && info.num_ack_pending === 0;
    });
    expect((await consumerInfo(nc)).ack_floor.stream_seq).toBe(COMMANDS);
    const { metrics } = second;
    expect(metrics.value("leafgate_upstream_imported_total", { kind: "durable" })).toBe(COMMANDS);
    expect(metrics.value("leafgate_upstream_import_redelivered_total")).toBe(0);

    const back = sessionClient(mqttPort(second), received);
    defer(() => back.endAsync());
    await waitFor(() => received.length >= COMMANDS);
    await back.endAsync();
    expect(received).toEqual(expected);
    await second.stop();

    // Started again: nothing is delivered twice; a command queued now comes, once.
    const third = await runGateway(file, defer);
    const again = sessionClient(mqttPort(third), received);
    defer(() => again.endAsync());
    await connected(again);
    expected.push(...(await queueCommands(nc, COMMANDS + 1, COMMANDS + 1)));
    await waitFor(() => received.length >= COMMANDS + 1);
    await waitFor(async () => (await consumerInfo(nc)).ack_floor.stream_seq === COMMANDS + 1);
    expect(received).toEqual(expected);
    expect(third.metrics.value("leafgate_upstream_imported_total", { kind: "durable" })).toBe(1);
    expect(third.metrics.value("leafgate_upstream_import_redelivered_total")).toBe(0);
  });

  it("ack a redelivered command the gateway recorded as delivered without delivering it again", async ({
    hub,
    nc,
    stream,
    gateway,
    defer,
  }) => {
    const info = await createStream(nc, CMDS, ["cmd.>"]);
    const { file } = gateway.writeConfig({ upstream: durableUpstream(hub.url, stream) });
    const received: string[] = [];
    const first = await firstRun(file, nc, received, defer);

    // Five queued; the first three delivered and recorded by a gateway that then died
    // before its acks reached the hub: the consumer delivers them again.
    const expected = await queueCommands(nc, 1, 5);
    const db = openDatabase(first.config.gateway.data_dir, "normal");
    new ImportCursors(db).record(DURABLE, { stream: CMDS, created: info.created }, 3);
    closeDatabase(db);

    const second = await runGateway(file, defer);
    await waitFor(async () => (await consumerInfo(nc)).ack_floor.stream_seq === 5);
    const { metrics } = second;
    expect(metrics.value("leafgate_upstream_import_redelivered_total")).toBe(3);
    expect(metrics.value("leafgate_upstream_imported_total", { kind: "durable" })).toBe(2);
    const back = sessionClient(mqttPort(second), received);
    defer(() => back.endAsync());
    await waitFor(() => received.length >= 2);
    await back.endAsync();
    expect(received).toEqual(expected.slice(3));
  });
});

describe("durable imports across kill -9", () => {
  it("lose no command and deliver none twice but the one caught between its local commit and its record", async ({
    hub,
    nc,
    stream,
    gateway,
  }) => {
    await createStream(nc, CMDS, ["cmd.>"]);
    const first = await gateway.spawn({ upstream: durableUpstream(hub.url, stream) });
    await waitFor(() => consumerInfo(nc));
    const received: string[] = [];
    const subscriber = await connected(sessionClient(first.mqttPort, received));
    await subscriber.subscribeAsync("cmd/gw1/#", { qos: 1 });
    await subscriber.endAsync();

    // Killed while it delivers the backlog into the offline session.
    const total = 500;
    const expected = await queueCommands(nc, 1, total);
    await waitFor(async () => (await consumerInfo(nc)).ack_floor.stream_seq >= 20, {
      intervalMs: 5,
    });
    first.proc.child.kill("SIGKILL");
    expect(await first.proc.exited).toEqual({ code: null, signal: "SIGKILL" });
    const killedAt = (await consumerInfo(nc)).ack_floor.stream_seq;
    expect(killedAt).toBeLessThan(total);

    const second = await gateway.spawnFile(first.file);
    await waitFor(async () => (await consumerInfo(nc)).ack_floor.stream_seq === total, {
      timeoutMs: 60_000,
    });
    // One more, so that everything before it has been handed over when it comes.
    expected.push(...(await queueCommands(nc, total + 1, total + 1)));
    const back = sessionClient(second.mqttPort, received);
    await waitFor(() => received.at(-1) === expected.at(-1), { timeoutMs: 60_000 });
    await back.endAsync();
    const once = received.filter((r, i) => r !== received[i - 1]);
    expect(once).toEqual(expected);
    expect(received.length - once.length).toBeLessThanOrEqual(1);
  });
});

/** The env-sensor simulator on a fresh pty pair, closed after the test. */
async function envSensorSim(defer: Defer): Promise<Simulator> {
  const dir = tempDir("hub-imports-serial");
  defer(() => dir.cleanup());
  const sim = new Simulator(envSensor, join(dir.path, "tty-dev"), join(dir.path, "tty-sim"));
  await sim.open();
  defer(() => sim.close());
  return sim;
}

/** Devices' command subjects, addressed from the hub under cmd.<gateway>.devices. */
const DEVICE_COMMANDS = { subject: "cmd.{gateway}.devices.>", local: "devices.>" };

describe("commands from the hub to a serial device", () => {
  it("a durable import takes one queued while the gateway was stopped to the device", async ({
    hub,
    nc,
    stream,
    gateway,
    defer,
  }) => {
    await createStream(nc, CMDS, ["cmd.>"]);
    const sim = await envSensorSim(defer);
    const { file } = gateway.writeConfig({
      upstream: {
        servers: [hub.url],
        stream,
        import: [{ ...DEVICE_COMMANDS, durable: "cmds-{gateway}", stream: CMDS }],
      },
      serial: { ports: [{ path: sim.devicePath, profile: "env-sensor", device: "env-1" }] },
    });
    const first = await runGateway(file, defer);
    await waitFor(() => consumerInfo(nc));
    await first.stop();

    await jetstream(nc).publish("cmd.gw1.devices.env-1.cmd.interval", "9");
    const second = await runGateway(file, defer);
    await waitFor(() => sim.requests.length > 0);
    await waitFor(async () => (await consumerInfo(nc)).ack_floor.stream_seq === 1);
    expect(sim.requests.map((r) => r.request)).toEqual(["INTERVAL 9"]);
    expect(second.metrics.value("leafgate_upstream_imported_total", { kind: "durable" })).toBe(1);
  });

  it("a hub request is answered by the device", async ({ nc, edgeGateway, defer }) => {
    const sim = await envSensorSim(defer);
    await edgeGateway({
      upstream: { import: [DEVICE_COMMANDS] },
      serial: { ports: [{ path: sim.devicePath, profile: "env-sensor", device: "env-1" }] },
    });
    const answer = await waitFor(
      () => nc.request("cmd.gw1.devices.env-1.cmd.interval", "5", { timeout: 5_000 }),
      { timeoutMs: 20_000 },
    );
    expect(answer.json()).toEqual({ text: "OK INTERVAL 5" });
    expect(sim.requests.map((r) => r.request)).toEqual(["INTERVAL 5"]);
  });
});

describe("plain imports", () => {
  it("are subscribed again after the hub restarts", async ({ hub, nc, edgeGateway }) => {
    // The default import: the pattern string "cmd.{gateway}.>".
    const gw = await edgeGateway({ upstream: { reconnect_delay_max: "200ms" } });
    const received: string[] = [];
    const client = await connectMqttJs(gw.mqttPort);
    client.on("message", (topic, payload) => received.push(`${topic} ${payload.toString()}`));
    await client.subscribeAsync("cmd/gw1/#", { qos: 1 });

    // Probes until one arrives: the gateway's subscription is in place on the hub.
    const probe = async (tag: string) => {
      let n = 0;
      await waitFor(
        async () => {
          nc.publish(`cmd.gw1.probe.${tag}`, String(n++));
          await nc.flush();
          return received.some((r) => r.startsWith(`cmd/gw1/probe/${tag} `));
        },
        { intervalMs: 100, timeoutMs: 20_000 },
      );
    };
    await probe("before");
    nc.publish("cmd.gw1.lamp", "on");
    await waitFor(() => received.includes("cmd/gw1/lamp on"));

    await hub.restart();
    await probe("after");
    nc.publish("cmd.gw1.lamp", "off");
    await nc.flush();
    await waitFor(() => received.includes("cmd/gw1/lamp off"));
    expect(received.filter((r) => r.startsWith("cmd/gw1/lamp "))).toEqual([
      "cmd/gw1/lamp on",
      "cmd/gw1/lamp off",
    ]);
    expect(gw.gateway.metrics.value("leafgate_upstream_imported_total", { kind: "core" })).toBe(
      received.length,
    );
    await client.endAsync();
  });
});

describe("hub requests", () => {
  /** A hub request, retried until the gateway's subscription is in place on the hub. */
  const request = (nc: NatsConnection, subject: string, data: string) =>
    waitFor(() => nc.request(subject, data, { timeout: 5_000 }), { timeoutMs: 20_000 });

  /** An MQTT 5 client that answers each request on its response topic. */
  async function responder(port: number, filter: string): Promise<MqttClient> {
    const client = await connectMqttJs(port, { protocolVersion: 5 });
    client.on("message", (topic, payload, packet) => {
      const responseTopic = packet.properties?.responseTopic;
      if (responseTopic === undefined) return;
      client.publish(responseTopic, `${topic}: ${payload.toString()} done`, {
        qos: 1,
        properties: { userProperties: { answered: "mqtt5" } },
      });
    });
    await client.subscribeAsync(filter, { qos: 1 });
    return client;
  }

  it("are answered by a local MQTT 5 responder on the response topic it is given", async ({
    nc,
    edgeGateway,
  }) => {
    const gw = await edgeGateway();
    const client = await responder(gw.mqttPort, "cmd/gw1/+/read");
    const answer = await request(nc, "cmd.gw1.air-1.read", "pm25");
    expect(answer.string()).toBe("cmd/gw1/air-1/read: pm25 done");
    expect(answer.headers?.get("answered")).toBe("mqtt5");
    expect(gw.gateway.metrics.value("leafgate_upstream_replies_total", { result: "sent" })).toBe(1);
    await client.endAsync();
  });

  it("are answered by a local responder through a local mapping", async ({ nc, edgeGateway }) => {
    const gw = await edgeGateway({
      upstream: { import: [{ subject: "cmd.{gateway}.devices.>", local: "devices.>" }] },
    });
    const client = await responder(gw.mqttPort, "devices/+/cmd/read");
    const answer = await request(nc, "cmd.gw1.devices.air-1.cmd.read", "pm25");
    expect(answer.string()).toBe("devices/air-1/cmd/read: pm25 done");
    await client.endAsync();
  });

  it("are answered by a local NATS service", async ({ nc, edgeGateway }) => {
    const gw = await edgeGateway();
    const local = await connect({ servers: `127.0.0.1:${gw.natsPort}` });
    local.subscribe("cmd.gw1.*.status", {
      callback: (_err, m) => {
        m.respond(`${m.subject}: ${m.string()} ok`);
      },
    });
    await local.flush();
    const answer = await request(nc, "cmd.gw1.pump-2.status", "how");
    expect(answer.string()).toBe("cmd.gw1.pump-2.status: how ok");
    expect(gw.gateway.metrics.value("leafgate_upstream_replies_total", { result: "sent" })).toBe(1);
    await local.close();
  });

  it("nobody local serves get no responders at once", async ({ nc, edgeGateway }) => {
    const gw = await edgeGateway();
    const { metrics } = gw.gateway;
    // Until the gateway's subscription is on the hub, the hub itself says no responders:
    // wait for the gateway's own answer.
    await waitFor(
      async () => {
        await nc.request("cmd.gw1.nobody.home", "x", { timeout: 5_000 }).catch(() => {});
        return metrics.value("leafgate_upstream_replies_total", { result: "no_responders" }) > 0;
      },
      { timeoutMs: 20_000 },
    );
    const before = metrics.value("leafgate_upstream_replies_total", { result: "no_responders" });
    const err = await nc.request("cmd.gw1.nobody.home", "x", { timeout: 5_000 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RequestError);
    expect((err as RequestError).isNoResponders()).toBe(true);
    expect(metrics.value("leafgate_upstream_replies_total", { result: "no_responders" })).toBe(
      before + 1,
    );
    expect(metrics.value("leafgate_upstream_imported_total", { kind: "core" })).toBe(0);
  });
});
