// Backlog drain and live forwarding into JetStream, each beside the ceiling of this machine
// in the same run: a bare nats.js publisher (no SQLite) pipelining publishes with
// Nats-Msg-Id to a fresh stream of the same config. Rows, method and findings:
// docs/performance-store.md.
//
//   node bench/run.mjs drain [--quick] [--json <file>]
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { generate } from "mqtt-packet";
import { connectClient, createStream } from "../test/helpers/nats-server.js";
import { spawnTracked, waitForLine } from "../test/helpers/procs.js";
import { waitFor } from "../test/helpers/wait.js";
import { publishWindowed, say } from "./lib/client.js";
import { GatewayBundle } from "./lib/gateway.js";
import { benchWorkDir, buildBundle } from "./lib/harness.js";
import {
  type CeilingResult,
  checkStream,
  payload,
  runCeiling,
  type StreamCheck,
} from "./lib/hub-ceiling.js";
import { cpuSeconds, median, RssPeak, rssMiB } from "./lib/measure.js";
import { NatsProcess } from "./lib/nats.js";
import { fmt, printTable } from "./lib/table.js";

const args = process.argv.slice(2);
const QUICK = args.includes("--quick");
const JSON_FILE = args.includes("--json") ? args[args.indexOf("--json") + 1] : undefined;
const env = (name: string, full: number, quick: number): number =>
  Number(process.env[name] ?? (QUICK ? quick : full));

/** The two backlog rows: the 300k and 1M (smaller with --quick). */
const SMALL = env("BENCH_DRAIN_SMALL", 300_000, 50_000);
const LARGE = env("BENCH_DRAIN_LARGE", 1_000_000, 200_000);
const ROUNDS = env("BENCH_DRAIN_ROUNDS", 3, 1);
const LARGE_ROUNDS = env("BENCH_DRAIN_LARGE_ROUNDS", 1, 1);
const LIVE = env("BENCH_LIVE_MESSAGES", 200_000, 50_000);
const LIVE_ROUNDS = env("BENCH_LIVE_ROUNDS", 3, 1);
/** The gateway's young generation in MiB: 1 as shipped; 16 is Node's default. */
const SEMI_SPACE_MIB =
  process.env.BENCH_SEMI_SPACE === undefined ? undefined : Number(process.env.BENCH_SEMI_SPACE);
/** Extra Node options for the gateway alone (e.g. `--cpu-prof --cpu-prof-dir=/tmp/x`). */
const GATEWAY_NODE_OPTIONS = process.env.BENCH_GATEWAY_NODE_OPTIONS;
/** upstream.max_in_flight of the gateway; unset: the default (4096). */
const MAX_IN_FLIGHT = process.env.BENCH_DRAIN_MAX_IN_FLIGHT;
/** Publishers in the backlog fill and the ceiling (subjects, each with its own order). */
const PUBLISHERS = 4;
/** Fill: the NATS publisher flushes every this many messages (lib/client.ts). */
const FILL_WINDOW = 5_000;
/** Live: raw MQTT QoS 1 clients and the PUBLISHes each keeps unacknowledged. */
const MQTT_CLIENTS = 4;
const MQTT_WINDOW = 500;
const TARGET_DRAIN = 0.8;
const TARGET_LIVE = 0.6;
const TIMEOUT_MS = 600_000;
const POLL_MS = 100;
const RSS_SAMPLE_MS = 100;
const ROLE = "--role";
const RESULT = "result ";
const DRAIN_STREAM = "EDGE";
const CEILING_STREAM = "CEIL";
const MQTT_STREAM = "MQTTIN";

// --- client processes -----------------------------------------------------------------------

/**
 * Backlog fill: `count` NATS publishes to the gateway's NATS listener, PUBLISHERS windowed
 * publishers (lib/client.ts) on `drain.<p>` sharing one connection.
 */
async function fillRole(port: number, count: number): Promise<void> {
  const nc = await connect({ servers: `127.0.0.1:${port}`, noEcho: true });
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const per = Math.ceil(count / PUBLISHERS);
  await Promise.all(
    Array.from({ length: PUBLISHERS }, (_, p) =>
      publishWindowed(nc, `drain.${p}`, Math.min(per, count - p * per), FILL_WINDOW, (seq) =>
        payload(`d${p}`, seq),
      ),
    ),
  );
  const cpu = process.cpuUsage(cpu0);
  say(
    `${RESULT}${JSON.stringify({ ms: performance.now() - t0, cpuS: (cpu.user + cpu.system) / 1e6 })}`,
  );
  await nc.close();
}

async function ceilingRole(url: string, subject: string, count: number): Promise<void> {
  say(`${RESULT}${JSON.stringify(await runCeiling(url, subject, count, PUBLISHERS))}`);
}

/** MQTT 3.1.1 CONNECT, clean session, keep-alive 0. */
const mqttConnect = (clientId: string): Buffer =>
  generate({
    cmd: "connect",
    protocolId: "MQTT",
    protocolVersion: 4,
    clean: true,
    clientId,
    keepalive: 0,
  });

/** A QoS 1 PUBLISH of a 100-byte payload (remaining length < 16,384: two bytes at most). */
function mqttPublish(topic: Buffer, packetId: number, data: Buffer): Buffer {
  const len = 2 + topic.length + 2 + data.length;
  const head = len < 128 ? [0x32, len] : [0x32, (len & 0x7f) | 0x80, len >> 7];
  return Buffer.concat([
    Buffer.from(head),
    Buffer.from([topic.length >> 8, topic.length & 0xff]),
    topic,
    Buffer.from([packetId >> 8, packetId & 0xff]),
    data,
  ]);
}

/**
 * Live load: MQTT_CLIENTS raw-socket QoS 1 publishers (no client library: the lightest
 * generator), each on `live/<c>` with at most MQTT_WINDOW PUBLISHes unacknowledged; the
 * next ones go out in one write per batch of PUBACKs read.
 */
async function mqttRole(port: number, count: number): Promise<void> {
  const per = Math.ceil(count / MQTT_CLIENTS);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: MQTT_CLIENTS }, (_, c) => {
      const total = Math.min(per, count - c * per);
      const topic = Buffer.from(`live/${c}`);
      return new Promise<void>((resolve, reject) => {
        const sock = createConnection({ port, host: "127.0.0.1", noDelay: true });
        let sent = 0;
        let acked = 0;
        let connected = false;
        let pending: Buffer = Buffer.alloc(0);
        const sendMore = (): void => {
          const out: Buffer[] = [];
          while (sent < total && sent - acked < MQTT_WINDOW) {
            out.push(mqttPublish(topic, (sent % 65_535) + 1, payload(`m${c}`, sent)));
            sent++;
          }
          if (out.length > 0) sock.write(Buffer.concat(out));
        };
        sock.on("error", reject);
        sock.on("connect", () => sock.write(mqttConnect(`bench-live-${c}-${process.pid}`)));
        sock.on("data", (chunk: Buffer) => {
          pending = pending.length > 0 ? Buffer.concat([pending, chunk]) : chunk;
          let at = 0;
          // CONNACK (0x20) and PUBACK (0x40) are both 4 bytes.
          while (pending.length - at >= 4) {
            const type = pending[at]! >> 4;
            if (type === 2) {
              if (pending[at + 3] !== 0) reject(new Error(`CONNACK ${pending[at + 3]}`));
              connected = true;
            } else if (type === 4) acked++;
            else reject(new Error(`unexpected packet type ${type}`));
            at += 4;
          }
          pending = pending.subarray(at);
          if (!connected) return;
          if (acked === total) {
            sock.end();
            resolve();
          } else sendMore();
        });
      });
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  say(
    `${RESULT}${JSON.stringify({ ms: performance.now() - t0, cpuS: (cpu.user + cpu.system) / 1e6 })}`,
  );
}

// --- the bench -------------------------------------------------------------------------------

/** Runs this bench as `role` in a child process; resolves with the JSON of its result line. */
async function child<T>(role: string, ...rest: (string | number)[]): Promise<T> {
  const proc = await spawnTracked(process.execPath, [
    process.argv[1]!,
    ROLE,
    role,
    ...rest.map(String),
  ]);
  const line = await waitForLine(proc, (l) => l.startsWith(RESULT), TIMEOUT_MS);
  await proc.exited;
  return JSON.parse(line.slice(RESULT.length)) as T;
}

interface ClientResult {
  readonly ms: number;
  readonly cpuS: number;
}

/** Messages per second from a stream's stored times (first to last message). */
const streamRate = (c: StreamCheck): number =>
  ((c.messages - 1) * 1000) / Math.max(1, c.lastMs - c.firstMs);

/**
 * The ratio CPU allows: what one message costs the ceiling (its publisher and the hub)
 * over what it costs leafgate (the gateway and the hub). When both stages share the
 * machine's cores, rates go as the inverse of that sum; unlike two rates measured one
 * after the other, it does not swing with what else the machine runs meanwhile.
 */
const cpuRatio = (r: DrainRound): number =>
  (r.ceilingCpuUsPerMsg + r.ceilingHubCpuUsPerMsg) / (r.gatewayCpuUsPerMsg + r.hubCpuUsPerMsg);

const exact = (c: StreamCheck, n: number): boolean =>
  c.messages === n && c.duplicates === 0 && c.outOfOrder === 0;

interface DrainRound {
  readonly n: number;
  readonly leafgate: number;
  readonly ceiling: number;
  readonly gatewayCpuUsPerMsg: number;
  readonly hubCpuUsPerMsg: number;
  readonly ceilingCpuUsPerMsg: number;
  readonly ceilingHubCpuUsPerMsg: number;
  readonly fromHubStartS: number;
  readonly peakRssMiB: number;
  /** RSS with the backlog buffered, before the hub came back. */
  readonly filledRssMiB: number;
  readonly fillRate: number;
  readonly exactlyOnce: boolean;
  readonly inOrder: boolean;
}

function upstreamConfig(url: string) {
  const upstream = { servers: [url], stream: DRAIN_STREAM };
  return MAX_IN_FLIGHT === undefined
    ? upstream
    : { ...upstream, max_in_flight: Number(MAX_IN_FLIGHT) };
}

function gatewayOptions() {
  return SEMI_SPACE_MIB === undefined ? {} : { semiSpaceMiB: SEMI_SPACE_MIB };
}

/** Starts the gateway, with BENCH_GATEWAY_NODE_OPTIONS for it alone. */
async function startGateway(gw: GatewayBundle): Promise<void> {
  const saved = process.env.NODE_OPTIONS;
  if (GATEWAY_NODE_OPTIONS !== undefined) process.env.NODE_OPTIONS = GATEWAY_NODE_OPTIONS;
  try {
    await gw.start();
  } finally {
    if (saved === undefined) delete process.env.NODE_OPTIONS;
    else process.env.NODE_OPTIONS = saved;
  }
}

async function ceilingOn(hub: NatsProcess, stream: string, subject: string, n: number) {
  const nc = await connectClient(hub.url);
  await createStream(nc, stream, [`${subject}.>`]);
  const hubCpu0 = cpuSeconds(hub.server.pid);
  const r = await child<CeilingResult>("ceiling", hub.url, subject, n);
  const hubCpu = cpuSeconds(hub.server.pid) - hubCpu0;
  const check = await checkStream(nc, stream);
  await nc.close();
  if (r.errors > 0 || r.duplicates > 0) throw new Error(`ceiling: ${JSON.stringify(r)}`);
  return { r, check, hubCpu };
}

/**
 * One drain round: the hub had the stream and went away; the gateway buffers `n` messages
 * (NATS publishes on exported subjects), then the hub comes back and the outbox drains. The
 * ceiling runs on the same hub just before the hub goes away and again just after the drain
 * (each to a fresh stream); its figures are the mean of the two, so that a change in what
 * else the machine runs weighs on both sides alike.
 */
async function drainRound(n: number, round: number): Promise<DrainRound> {
  const dir = mkdtempSync(join(workDir, `drain-${n}-${round}-`));
  const hub = new NatsProcess({ serverName: "hub", storeDir: join(dir, "hub-js") });
  await hub.start();
  const admin = await connectClient(hub.url);
  await createStream(admin, DRAIN_STREAM, ["edge.>"]);
  await admin.close();
  const before = await ceilingOn(hub, CEILING_STREAM, "ceil", n);
  await hub.kill();
  const gw = new GatewayBundle(
    dir,
    {
      upstream: upstreamConfig(hub.url),
      http: true,
      buffer: { max_messages: 10_000_000, max_bytes: "4GB" },
    },
    gatewayOptions(),
  );
  try {
    await startGateway(gw);
    const fill = await child<ClientResult>("fill", gw.natsPort, n);
    await waitFor(async () => (await gw.status()).outbox.pending === n, {
      timeoutMs: TIMEOUT_MS,
      intervalMs: POLL_MS,
      message: `outbox to hold ${n}`,
    });
    const filledRssMiB = rssMiB(gw.pid);
    const peak = new RssPeak(() => gw.pid, RSS_SAMPLE_MS);
    const gwCpu0 = cpuSeconds(gw.pid);
    const t0 = performance.now();
    await hub.start();
    const hubCpu0 = cpuSeconds(hub.server.pid);
    const nc = await connectClient(hub.url);
    const jsm = await jetstreamManager(nc);
    await waitFor(async () => (await jsm.streams.info(DRAIN_STREAM)).state.messages >= n, {
      timeoutMs: TIMEOUT_MS,
      intervalMs: POLL_MS,
      message: `stream to hold ${n}`,
    });
    const fromHubStartS = (performance.now() - t0) / 1000;
    await waitFor(async () => (await gw.status()).outbox.pending === 0, {
      timeoutMs: 30_000,
      intervalMs: POLL_MS,
      message: "outbox empty",
    });
    const gwCpu = cpuSeconds(gw.pid) - gwCpu0;
    const hubCpu = cpuSeconds(hub.server.pid) - hubCpu0;
    const peakRssMiB = peak.stop();
    const check = await checkStream(nc, DRAIN_STREAM);
    await nc.close();
    await gw.stop();
    const after = await ceilingOn(hub, `${CEILING_STREAM}2`, "ceil2", n);
    const both = [before, after];
    const mean = (f: (c: typeof before) => number) => (f(before) + f(after)) / both.length;
    return {
      n,
      leafgate: streamRate(check),
      ceiling: mean((c) => streamRate(c.check)),
      gatewayCpuUsPerMsg: (gwCpu * 1e6) / n,
      hubCpuUsPerMsg: (hubCpu * 1e6) / n,
      ceilingCpuUsPerMsg: mean((c) => (c.r.cpuS * 1e6) / n),
      ceilingHubCpuUsPerMsg: mean((c) => (c.hubCpu * 1e6) / n),
      fromHubStartS,
      peakRssMiB,
      filledRssMiB,
      fillRate: (n * 1000) / fill.ms,
      exactlyOnce: exact(check, n) && both.every((c) => exact(c.check, n)),
      inOrder: check.outOfOrder === 0 && both.every((c) => c.check.outOfOrder === 0),
    };
  } finally {
    await gw.kill();
    await hub.kill();
    await hub.stop();
  }
}

interface LiveRound {
  readonly leafgate: number;
  readonly natsMqtt: number;
  readonly ceiling: number;
  readonly generatorShare: number;
  readonly natsGeneratorShare: number;
  readonly gatewayCpuUsPerMsg: number;
  readonly cpuRatio: number;
  readonly peakRssMiB: number;
  readonly exactlyOnce: boolean;
  readonly inOrder: boolean;
}

/**
 * One live round on one hub (JetStream and an MQTT listener): the raw MQTT generator into
 * leafgate (forwarding to stream EDGE), the same generator into nats-server's own MQTT
 * listener (stream MQTTIN captures its subjects), and the ceiling.
 */
async function liveRound(round: number): Promise<LiveRound> {
  const dir = mkdtempSync(join(workDir, `live-${round}-`));
  mkdirSync(dir, { recursive: true });
  const hub = new NatsProcess({ serverName: "hub", storeDir: join(dir, "hub-js"), mqtt: true });
  await hub.start();
  const nc = await connectClient(hub.url);
  await createStream(nc, DRAIN_STREAM, ["edge.>"]);
  await createStream(nc, MQTT_STREAM, ["live.>"]);
  const gw = new GatewayBundle(
    dir,
    { upstream: upstreamConfig(hub.url), http: true },
    gatewayOptions(),
  );
  try {
    await startGateway(gw);
    await gw.line('"msg":"hub stream found"');
    const peak = new RssPeak(() => gw.pid, RSS_SAMPLE_MS);
    const gwCpu0 = cpuSeconds(gw.pid);
    const hubCpu0 = cpuSeconds(hub.server.pid);
    const gen = await child<ClientResult>("mqtt", gw.mqttPort, LIVE);
    const jsm = await jetstreamManager(nc);
    await waitFor(async () => (await jsm.streams.info(DRAIN_STREAM)).state.messages >= LIVE, {
      timeoutMs: TIMEOUT_MS,
      intervalMs: POLL_MS,
      message: `stream to hold ${LIVE}`,
    });
    const gwCpu = cpuSeconds(gw.pid) - gwCpu0;
    const hubCpu = cpuSeconds(hub.server.pid) - hubCpu0;
    const peakRssMiB = peak.stop();
    const lg = await checkStream(nc, DRAIN_STREAM);
    await gw.stop();
    const natsGen = await child<ClientResult>("mqtt", hub.mqttPort, LIVE);
    await waitFor(async () => (await jsm.streams.info(MQTT_STREAM)).state.messages >= LIVE, {
      timeoutMs: TIMEOUT_MS,
      intervalMs: POLL_MS,
      message: `stream ${MQTT_STREAM} to hold ${LIVE}`,
    });
    const nm = await checkStream(nc, MQTT_STREAM);
    const ceiling = await ceilingOn(hub, CEILING_STREAM, "ceil", LIVE);
    const lgRate = streamRate(lg);
    const nmRate = streamRate(nm);
    return {
      leafgate: lgRate,
      natsMqtt: nmRate,
      ceiling: streamRate(ceiling.check),
      // The generator's CPU over the time the messages took to reach the stream.
      generatorShare: gen.cpuS / (LIVE / lgRate),
      natsGeneratorShare: natsGen.cpuS / (LIVE / nmRate),
      gatewayCpuUsPerMsg: (gwCpu * 1e6) / LIVE,
      // As cpuRatio: the ceiling's publisher and hub over the gateway and hub (not the generator).
      cpuRatio:
        ((ceiling.r.cpuS + ceiling.hubCpu) * 1e6) / LIVE / (((gwCpu + hubCpu) * 1e6) / LIVE),
      peakRssMiB,
      exactlyOnce: exact(lg, LIVE) && nm.messages === LIVE && nm.duplicates === 0,
      inOrder: lg.outOfOrder === 0 && nm.outOfOrder === 0,
    };
  } finally {
    await nc.close();
    await gw.kill();
    await hub.kill();
    await hub.stop();
  }
}

interface JsonRow {
  scenario: string;
  unit: string;
  leafgate: number;
  peer: string;
  peerValue: number;
  ratio: number;
  target: number | null;
  rounds: { leafgate: number[]; peer: number[] };
  checks: { exactlyOnce: boolean; inOrder: boolean };
}

const CEILING_NAME = "bare nats.js publisher, Nats-Msg-Id, 8,000 in flight (ceiling)";

function drainRow(name: string, rounds: readonly DrainRound[]): JsonRow {
  const lg = rounds.map((r) => r.leafgate);
  const ceil = rounds.map((r) => r.ceiling);
  return {
    scenario: name,
    unit: "msgs/s",
    leafgate: Math.round(median(lg)),
    peer: CEILING_NAME,
    peerValue: Math.round(median(ceil)),
    ratio: median(rounds.map((r) => r.leafgate / r.ceiling)),
    target: TARGET_DRAIN,
    rounds: { leafgate: lg.map(Math.round), peer: ceil.map(Math.round) },
    checks: {
      exactlyOnce: rounds.every((r) => r.exactlyOnce),
      inOrder: rounds.every((r) => r.inOrder),
    },
  };
}

async function main(): Promise<void> {
  if (process.env.BENCH_SKIP_BUILD !== "1") buildBundle();
  const rows: JsonRow[] = [];
  const cpu: Record<string, unknown> = {};
  const drainRows: [string, number, number][] = [
    [`backlog drain into JetStream, exactly once, ${SMALL} buffered`, SMALL, ROUNDS],
    [`backlog drain into JetStream, exactly once, ${LARGE} buffered`, LARGE, LARGE_ROUNDS],
  ];
  console.log(
    `\ndrain: ${PUBLISHERS} NATS publishers fill the outbox while the hub is away, then the hub starts;` +
      ` ceiling: ${CEILING_NAME}, same hub, fresh stream. msgs/s from the stream's stored times.\n`,
  );
  for (const [name, n, rounds] of drainRows) {
    if (n <= 0 || rounds <= 0) continue;
    const results: DrainRound[] = [];
    for (let round = 0; round < rounds; round++) {
      const r = await drainRound(n, round);
      results.push(r);
      console.log(
        `  ${n}: leafgate ${Math.round(r.leafgate)} msgs/s, ceiling ${Math.round(r.ceiling)} (${fmt(r.leafgate / r.ceiling, 2)}; by CPU ${fmt(cpuRatio(r), 2)});` +
          ` gateway ${fmt(r.gatewayCpuUsPerMsg, 2)} µs/msg, hub ${fmt(r.hubCpuUsPerMsg, 2)}; ceiling publisher ${fmt(r.ceilingCpuUsPerMsg, 2)}, hub ${fmt(r.ceilingHubCpuUsPerMsg, 2)};` +
          ` ${fmt(r.fromHubStartS, 1)} s from hub start; peak RSS ${fmt(r.peakRssMiB, 1)} MiB (${fmt(r.filledRssMiB, 1)} before); fill ${Math.round(r.fillRate)} msgs/s;` +
          ` exactly once ${r.exactlyOnce}, in order ${r.inOrder}`,
      );
    }
    rows.push(drainRow(name, results));
    cpu[`drain ${n}`] = {
      gatewayUsPerMsg: median(results.map((r) => r.gatewayCpuUsPerMsg)),
      hubUsPerMsg: median(results.map((r) => r.hubCpuUsPerMsg)),
      ceilingPublisherUsPerMsg: median(results.map((r) => r.ceilingCpuUsPerMsg)),
      ceilingHubUsPerMsg: median(results.map((r) => r.ceilingHubCpuUsPerMsg)),
      cpuRatio: median(results.map(cpuRatio)),
      gatewayPeakRssMiB: Math.max(...results.map((r) => r.peakRssMiB)),
    };
  }
  if (LIVE > 0 && LIVE_ROUNDS > 0) {
    console.log(
      `\nlive: ${MQTT_CLIENTS} raw-socket MQTT QoS 1 clients, ${MQTT_WINDOW} in flight each, ${LIVE} messages -> hub stream\n`,
    );
    const live: LiveRound[] = [];
    for (let round = 0; round < LIVE_ROUNDS; round++) {
      const r = await liveRound(round);
      live.push(r);
      console.log(
        `  leafgate ${Math.round(r.leafgate)} msgs/s (generator ${fmt(100 * r.generatorShare)}% of a core), nats-server MQTT ${Math.round(r.natsMqtt)} (generator ${fmt(100 * r.natsGeneratorShare)}%),` +
          ` ceiling ${Math.round(r.ceiling)} (by CPU ${fmt(r.cpuRatio, 2)}); gateway ${fmt(r.gatewayCpuUsPerMsg, 2)} µs/msg, peak RSS ${fmt(r.peakRssMiB, 1)} MiB; exactly once ${r.exactlyOnce}, in order ${r.inOrder}`,
      );
    }
    const lg = live.map((r) => r.leafgate);
    const checks = {
      exactlyOnce: live.every((r) => r.exactlyOnce),
      inOrder: live.every((r) => r.inOrder),
    };
    for (const [peer, values, target] of [
      [CEILING_NAME, live.map((r) => r.ceiling), TARGET_LIVE],
      ["nats-server's own MQTT -> stream", live.map((r) => r.natsMqtt), null],
    ] as const) {
      rows.push({
        scenario: "live MQTT -> hub stream, exactly once",
        unit: "msgs/s",
        leafgate: Math.round(median(lg)),
        peer,
        peerValue: Math.round(median(values)),
        ratio: median(live.map((r, i) => r.leafgate / values[i]!)),
        target,
        rounds: { leafgate: lg.map(Math.round), peer: values.map(Math.round) },
        checks,
      });
    }
    cpu.live = {
      gatewayUsPerMsg: median(live.map((r) => r.gatewayCpuUsPerMsg)),
      cpuRatio: median(live.map((r) => r.cpuRatio)),
      generatorShareOfCore: median(live.map((r) => r.generatorShare)),
      natsGeneratorShareOfCore: median(live.map((r) => r.natsGeneratorShare)),
      gatewayPeakRssMiB: Math.max(...live.map((r) => r.peakRssMiB)),
    };
  }
  console.log();
  printTable(
    [
      { title: "scenario", left: true },
      { title: "leafgate" },
      { title: "peer", left: true },
      { title: "peer msgs/s" },
      { title: "ratio" },
      { title: "target" },
      { title: "exactly once" },
      { title: "in order" },
    ],
    rows.map((r) => [
      r.scenario,
      r.leafgate,
      r.peer,
      r.peerValue,
      fmt(r.ratio, 2),
      r.target === null ? "-" : `>= ${r.target}`,
      String(r.checks.exactlyOnce),
      String(r.checks.inOrder),
    ]),
  );
  if (JSON_FILE !== undefined) {
    writeFileSync(JSON_FILE, `${JSON.stringify({ bench: "drain", rows, cpu }, null, 2)}\n`);
  }
  const broken = rows.filter((r) => !r.checks.exactlyOnce || !r.checks.inOrder);
  if (broken.length > 0) {
    console.log("\n!!! a stream does not hold every message exactly once and in order");
    process.exit(1);
  }
  process.exit(0);
}

let workDir = "";
if (process.argv[2] === ROLE) {
  const [role, ...rest] = process.argv.slice(3);
  if (role === "fill") await fillRole(Number(rest[0]), Number(rest[1]));
  else if (role === "ceiling") await ceilingRole(rest[0]!, rest[1]!, Number(rest[2]));
  else if (role === "mqtt") await mqttRole(Number(rest[0]), Number(rest[1]));
  else throw new Error(`unknown role ${role}`);
  process.exit(0);
} else {
  workDir = benchWorkDir("drain");
  await main();
}
