// The shutdown path through the bundle with real signals: what each test shows, and how a
// commit is pending at SIGTERM by construction, is told in docs/testing.md ("shutdown").
import { readFileSync } from "node:fs";
import type { NatsConnection } from "@nats-io/transport-node";
import type { IClientOptions, MqttClient } from "mqtt";
import mqttPacket from "mqtt-packet";
import { afterEach, describe, expect } from "vitest";
import { it } from "../helpers/fixtures.js";
import type { ChildGateway } from "../helpers/gateway.js";
import { connectMqttJs, mosquittoPubLines } from "../helpers/mqtt.js";
import { streamMessages } from "../helpers/nats-server.js";
import { spawnTracked, stopProcess, type TrackedProcess, waitForLine } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";

/** README: "SIGINT/SIGTERM stop gracefully within 5 s". */
const SHUTDOWN_PROMISE_MS = 5_000;
/**
 * The longest group-commit wait the config allows: a commit opened by a PUBLISH read just
 * before SIGTERM is still waiting when the shutdown closes the connections, so the
 * shutdown itself must commit it and ack it.
 */
const COMMIT_INTERVAL = "1s";
/** The DISCONNECT reason code for a server shutting down (MQTT 5, 3.14.2.1). */
const SERVER_SHUTTING_DOWN = 0x8b;
/** mosquitto's `-d` lines go through stdio, block-buffered into a pipe: line-buffer them. */
const LINE_BUFFERED = ["-oL"];
const PAHO = new URL("../helpers/paho.py", import.meta.url).pathname;
const decoder = new TextDecoder();

const mqttClients: MqttClient[] = [];

afterEach(async () => {
  for (const c of mqttClients.splice(0)) await c.endAsync(true);
});

async function mqttJs(port: number, options: IClientOptions): Promise<MqttClient> {
  const client = await connectMqttJs(port, options);
  mqttClients.push(client);
  return client;
}

/** Bytes the kernel holds, unread, in the established sockets of local TCP `port`. */
function unreadBytes(port: number): number {
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  let total = 0;
  for (const line of readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
    // sl local_address rem_address st tx_queue:rx_queue ...
    const [, local, , state, queues] = line.trim().split(/\s+/);
    if (local?.endsWith(`:${hexPort}`) && state === "01") {
      total += Number.parseInt(queues!.split(":")[1]!, 16);
    }
  }
  return total;
}

/** The size of a QoS 1/2 PUBLISH without properties, as every client here encodes it. */
function publishSize(topic: string, payload: string, qos: 1 | 2, protocolVersion: 4 | 5): number {
  return mqttPacket.generate(
    { cmd: "publish", topic, payload, qos, messageId: 1, retain: false, dup: false },
    { protocolVersion },
  ).length;
}

/** mosquitto_pub in line mode: connected (CONNACK seen), then one PUBLISH per stdin line. */
async function mosquittoPub(
  port: number,
  version: "mqttv311" | "mqttv5",
  clientId: string,
  topic: string,
): Promise<TrackedProcess> {
  const proc = await spawnTracked(
    "stdbuf",
    [
      ...LINE_BUFFERED,
      "mosquitto_pub",
      "-h",
      "127.0.0.1",
      "-p",
      String(port),
      "-V",
      version,
    ].concat(["-i", clientId, "-t", topic, "-q", "1", "-l", "-d"]),
    { stdin: "pipe" },
  );
  await waitForLine(proc, (l) => l.includes("received CONNACK (0)"));
  return proc;
}

/** The `-d` lines mosquitto_pub printed about what it received. */
const received = (proc: TrackedProcess): string[] =>
  proc
    .stdout()
    .split("\n")
    .filter((l) => /received/i.test(l))
    .map((l) => l.replace(/^Client \S+ /, ""));

/** Every packet an mqtt.js client receives, in order. */
function recordPackets(client: MqttClient): { cmd: string; code?: number; reason?: string }[] {
  const packets: { cmd: string; code?: number; reason?: string }[] = [];
  client.on("packetreceive", (p) => {
    const code = (p as { reasonCode?: number }).reasonCode;
    const reason = (p as { properties?: { reasonString?: string } }).properties?.reasonString;
    packets.push({
      cmd: p.cmd,
      ...(code !== undefined ? { code } : {}),
      ...(reason !== undefined ? { reason } : {}),
    });
  });
  return packets;
}

async function exitWithin(proc: TrackedProcess, ms: number) {
  return waitFor(() => proc.exitInfo, {
    timeoutMs: ms,
    message: () => `the gateway did not exit within ${ms} ms\n${proc.describe()}`,
  });
}

interface Status {
  outbox: { pending: number };
  upstream: { state: string };
}

async function status(gw: ChildGateway): Promise<Status> {
  return (await (await fetch(`http://127.0.0.1:${gw.httpPort}/status`)).json()) as Status;
}

/** Rows the gateway has not forwarded yet. */
async function outboxPending(gw: ChildGateway): Promise<number> {
  return (await status(gw)).outbox.pending;
}

/** The fields (beyond level, time, pid) of the gateway's log lines with message `msg`. */
function logged(proc: TrackedProcess, msg: string): Record<string, unknown>[] {
  return proc
    .stdout()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.msg === msg)
    .map(({ level: _l, time: _t, pid: _p, msg: _m, ...fields }) => fields);
}

/** Stream contents as [subject, payload], in stream order. */
async function stored(nc: NatsConnection): Promise<[string, string][]> {
  return (await streamMessages(nc, "EDGE")).map((m) => [m.subject, decoder.decode(m.data)]);
}

describe("shutdown", () => {
  it("acks every commit pending at SIGTERM, then tells MQTT 5 clients why (DISCONNECT 0x8B)", async ({
    hub,
    nc,
    stream,
    gateway,
  }) => {
    const gw = await gateway.spawn({
      upstream: { servers: [hub.url], stream },
      buffer: { commit_interval: COMMIT_INTERVAL },
    });

    // Four publishers, both protocol levels, two client libraries; all connected.
    const mosq4 = await mosquittoPub(gw.mqttPort, "mqttv311", "mosq4", "sd/mosq4");
    const mosq5 = await mosquittoPub(gw.mqttPort, "mqttv5", "mosq5", "sd/mosq5");
    const js4 = await mqttJs(gw.mqttPort, { clientId: "js4", protocolVersion: 4 });
    const js5 = await mqttJs(gw.mqttPort, { clientId: "js5", protocolVersion: 5 });
    const js4Packets = recordPackets(js4);
    const js5Packets = recordPackets(js5);
    const js4Closed = new Promise<void>((resolve) => js4.once("close", () => resolve()));
    const js5Closed = new Promise<void>((resolve) => js5.once("close", () => resolve()));

    // Frozen, the gateway reads nothing: every PUBLISH waits in its sockets.
    gw.proc.child.kill("SIGSTOP");
    try {
      mosq4.child.stdin!.write("mosq4-1\n");
      mosq5.child.stdin!.write("mosq5-1\n");
      js4.publish("sd/js4", "js4-1", { qos: 1 });
      js5.publish("sd/js5", "js5-q1", { qos: 1 });
      js5.publish("sd/js5", "js5-q2", { qos: 2 });
      const expectedBytes =
        publishSize("sd/mosq4", "mosq4-1", 1, 4) +
        publishSize("sd/mosq5", "mosq5-1", 1, 5) +
        publishSize("sd/js4", "js4-1", 1, 4) +
        publishSize("sd/js5", "js5-q1", 1, 5) +
        publishSize("sd/js5", "js5-q2", 2, 5);
      await waitFor(() => unreadBytes(gw.mqttPort) === expectedBytes, {
        message: () => `unread bytes ${unreadBytes(gw.mqttPort)}, expected ${expectedBytes}`,
      });
      gw.proc.child.kill("SIGTERM");
    } finally {
      gw.proc.child.kill("SIGCONT");
    }

    // A clean exit within the promised 5 s.
    expect(await exitWithin(gw.proc, SHUTDOWN_PROMISE_MS)).toEqual({ code: 0, signal: null });
    await Promise.all([js4Closed, js5Closed]);
    await waitForLine(mosq4, (l) => l.includes("received PUBACK"));
    await waitForLine(mosq5, (l) => l.includes("Received DISCONNECT"));

    // 3.1.1: the PUBACK, then the close (no DISCONNECT exists for a server to send).
    expect(received(mosq4)).toEqual(["received CONNACK (0)", "received PUBACK (Mid: 1, RC:0)"]);
    expect(js4Packets).toEqual([{ cmd: "puback" }]);
    // MQTT 5: the acks first, then DISCONNECT 0x8B with a Reason String, then the close.
    expect(received(mosq5)).toEqual([
      "received CONNACK (0)",
      "received PUBACK (Mid: 1, RC:0)",
      `Received DISCONNECT (${SERVER_SHUTTING_DOWN})`,
    ]);
    expect(js5Packets.map(({ cmd, code }) => ({ cmd, code }))).toEqual([
      { cmd: "puback", code: 0 },
      { cmd: "pubrec", code: 0 },
      { cmd: "disconnect", code: SERVER_SHUTTING_DOWN },
    ]);
    expect(js5Packets.at(-1)!.reason).toBe("the gateway is shutting down");

    // Every acknowledged message was committed: after a restart each reaches the hub once.
    const again = await gateway.spawnFile(gw.file);
    await waitFor(async () => (await outboxPending(again)) === 0, {
      message: () => again.proc.describe(),
    });
    const messages = await stored(nc);
    expect([...messages].sort()).toEqual([
      ["edge.gw1.sd.js4", "js4-1"],
      ["edge.gw1.sd.js5", "js5-q1"],
      ["edge.gw1.sd.js5", "js5-q2"],
      ["edge.gw1.sd.mosq4", "mosq4-1"],
      ["edge.gw1.sd.mosq5", "mosq5-1"],
    ]);
    again.proc.child.kill("SIGTERM");
    expect(await exitWithin(again.proc, SHUTDOWN_PROMISE_MS)).toEqual({ code: 0, signal: null });
  });

  it("publishes no will at a shutdown (not delivered, not retained, not in the stream)", async ({
    hub,
    nc,
    stream,
    gateway,
  }) => {
    const config = gateway.writeConfig({ upstream: { servers: [hub.url], stream } });
    let gw = await gateway.spawnFile(config.file);

    // A persistent session that would receive any will, delivered or queued.
    const watcherOptions = { clientId: "watcher", clean: false, protocolVersion: 4 } as const;
    let watcher = await mqttJs(gw.mqttPort, watcherOptions);
    let seen: [string, string, boolean][] = [];
    const watch = (c: MqttClient) =>
      c.on("message", (topic, payload, packet) =>
        seen.push([topic, payload.toString(), packet.retain]),
      );
    watch(watcher);
    await watcher.subscribeAsync("wills/#", { qos: 1 });

    // The control: a client that vanishes before the shutdown; its will is published.
    const control = await spawnTracked(
      "/usr/bin/python3",
      [
        PAHO,
        JSON.stringify({
          port: gw.mqttPort,
          protocol: 5,
          will: { topic: "wills/control", payload: "control-gone", qos: 1, retain: true },
          hold: true,
          timeout: 30,
        }),
      ],
      { stdin: "pipe" },
    );
    await waitForLine(control, (l) => l.includes('"event": "ready"'));
    control.child.kill("SIGKILL");
    await waitFor(() => seen.length === 1);
    expect(seen).toEqual([["wills/control", "control-gone", false]]);

    // Clients with wills (QoS 1, retained) still connected at the shutdown.
    const mosqWill = await spawnTracked("stdbuf", [
      ...[
        ...LINE_BUFFERED,
        "mosquitto_sub",
        "-h",
        "127.0.0.1",
        "-p",
        String(gw.mqttPort),
        "-V",
        "mqttv311",
        "-i",
        "will-mosq",
      ],
      ...["-t", "nothing/here", "-d", "--will-topic", "wills/mosq", "--will-payload", "mosq-gone"],
      ...["--will-qos", "1", "--will-retain"],
    ]);
    await waitForLine(mosqWill, (l) => l.includes("received SUBACK"));
    const paho5 = await spawnTracked(
      "/usr/bin/python3",
      [
        PAHO,
        JSON.stringify({
          port: gw.mqttPort,
          protocol: 5,
          client_id: "will-paho",
          will: { topic: "wills/paho", payload: "paho-gone", qos: 1, retain: true },
          hold: true,
          timeout: 30,
        }),
      ],
      { stdin: "pipe" },
    );
    await waitForLine(paho5, (l) => l.includes('"event": "ready"'));
    await mqttJs(gw.mqttPort, {
      clientId: "will-js5",
      protocolVersion: 5,
      will: { topic: "wills/js5", payload: Buffer.from("js5-gone"), qos: 1, retain: true },
    });

    gw.proc.child.kill("SIGINT");
    expect(await exitWithin(gw.proc, SHUTDOWN_PROMISE_MS)).toEqual({ code: 0, signal: null });
    // The MQTT 5 client was told why.
    await waitForLine(paho5, (l) => l.includes('"event": "disconnected"'));
    expect(paho5.stdout()).toContain(`"rc": ${SERVER_SHUTTING_DOWN}`);
    for (const proc of [mosqWill, paho5]) await stopProcess(proc, { signal: "SIGKILL" });

    gw = await gateway.spawnFile(config.file);
    seen = [];
    watcher = await mqttJs(gw.mqttPort, watcherOptions);
    watch(watcher);
    // Subscribing again sends what is retained; then a marker, after which nothing older
    // can still be on the way: queued messages come first, retained ones right after SUBACK.
    await watcher.subscribeAsync("wills/#", { qos: 1 });
    await watcher.publishAsync("wills/marker", "marker", { qos: 1 });
    await waitFor(() => seen.some(([topic]) => topic === "wills/marker"));
    expect(seen).toEqual([
      ["wills/control", "control-gone", true],
      ["wills/marker", "marker", false],
    ]);
    // The stream: the control will, the marker, nothing between or before.
    await waitFor(async () => (await outboxPending(gw)) === 0);
    expect(await stored(nc)).toEqual([
      ["edge.gw1.wills.control", "control-gone"],
      ["edge.gw1.wills.marker", "marker"],
    ]);
  });

  it("stops within 5 s when the hub takes no acks, keeps those rows, and a second signal exits at once", async ({
    nc,
    stream,
    hubProxy,
    gateway,
  }) => {
    const proxy = await hubProxy();
    const config = gateway.writeConfig({
      upstream: { servers: [proxy.url], stream, reconnect_delay_max: "200ms" },
    });

    /** A gateway forwarding to a hub that then goes silent, with `payloads` unacknowledged. */
    const silentHub = async (payloads: string[]): Promise<ChildGateway> => {
      proxy.restore();
      const gw = await gateway.spawnFile(config.file);
      await waitFor(async () => (await status(gw)).upstream.state === "forwarding");
      proxy.blackhole();
      await mosquittoPubLines(gw.mqttPort, "silent/hub", payloads);
      expect((await status(gw)).outbox.pending).toBeGreaterThanOrEqual(payloads.length);
      return gw;
    };

    // The shutdown waits for the PubAcks that will not come as long as it may, then exits.
    const first = await silentHub(["a-1", "a-2", "a-3"]);
    first.proc.child.kill("SIGTERM");
    expect(await exitWithin(first.proc, SHUTDOWN_PROMISE_MS)).toEqual({ code: 0, signal: null });
    expect(logged(first.proc, "stopped")).toEqual([{ pending: 3 }]);

    // A second signal does not wait: exit 1 at once, the database as the last commit left it.
    const second = await silentHub(["b-1", "b-2"]);
    second.proc.child.kill("SIGTERM");
    await waitForLine(second.proc, (l) => l.includes('"msg":"stopping"'));
    second.proc.child.kill("SIGTERM");
    expect(await exitWithin(second.proc, SHUTDOWN_PROMISE_MS)).toEqual({ code: 1, signal: null });
    expect(logged(second.proc, "second signal: exiting now")).toHaveLength(1);
    expect(logged(second.proc, "stopped")).toEqual([]);

    // Nothing acknowledged to a publisher is lost, nothing reaches the stream twice.
    proxy.restore();
    const third = await gateway.spawnFile(config.file);
    await waitFor(async () => (await status(third)).outbox.pending === 0);
    expect(await stored(nc)).toEqual(
      ["a-1", "a-2", "a-3", "b-1", "b-2"].map((p) => ["edge.gw1.silent.hub", p]),
    );
  });
});
