// The walking-skeleton path, mosquitto_pub QoS 1 -> broker -> JetStream: leafgate beside
// nats-server's MQTT listener and mosquitto. What each peer does and how to read the figures:
// docs/bench.md.
import { mkdtempSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { type JetStreamManager, jetstreamManager } from "@nats-io/jetstream";
import { connectClient, createStream } from "../test/helpers/nats-server.js";
import { runToCompletion } from "../test/helpers/procs.js";
import { waitFor } from "../test/helpers/wait.js";
import { GatewayBundle } from "./lib/gateway.js";
import { BUNDLE, benchWorkDir, buildBundle } from "./lib/harness.js";
import { median, RssPeak, rssMiB } from "./lib/measure.js";
import { MosquittoProcess } from "./lib/mosquitto.js";
import { NatsProcess } from "./lib/nats.js";
import { fmt, printTable, ratio } from "./lib/table.js";

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 50_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const PAYLOAD = "x".repeat(90); // 100-byte lines with the counter prefix
const SEQ_DIGITS = 8;
const RSS_SAMPLE_MS = 50;
/** Before the idle RSS is read: the gateway's start-up garbage collected. */
const IDLE_SETTLE_MS = 1000;
const STREAM_TIMEOUT_MS = 120_000;
const PUBLISH_TIMEOUT_MS = 600_000;
const POLL_MS = 10;
const STARTUP_MS = /"startupMs":(\d+)/;

const work = benchWorkDir("bench");

function lines(tag: string): string {
  let s = "";
  for (let i = 0; i < MESSAGES; i++)
    s += `${tag}${String(i).padStart(SEQ_DIGITS, "0")}${PAYLOAD}\n`;
  return s;
}

/** mosquitto_pub -l -q 1; resolves with the wall time until it exited (every PUBACK in). */
async function publish(port: number, topic: string, input: string): Promise<number> {
  const t0 = performance.now();
  const args = ["-h", "127.0.0.1", "-p", String(port), "-q", "1", "-t", topic, "-l"];
  const r = await runToCompletion("mosquitto_pub", args, { input, timeoutMs: PUBLISH_TIMEOUT_MS });
  if (r.code !== 0) throw new Error(`mosquitto_pub ${r.code}: ${r.stderr}`);
  return performance.now() - t0;
}

/** Publishes one line until the broker takes it (its MQTT side may come up after its port). */
const warmUp = (port: number, topic: string) =>
  waitFor(() => publish(port, topic, "w\n").catch(() => 0), { timeoutMs: 10_000 });

const streamCount = async (jsm: JetStreamManager, name: string) =>
  (await jsm.streams.info(name)).state.messages;

interface Runs {
  ingest: number[];
  endToEnd: number[];
  peakRss: number;
}

/**
 * RUNS times MESSAGES lines through mosquitto_pub on `port`, each run timed until it exited
 * (ingest) and, with a `stream`, until the stream held them all (end to end).
 */
async function runs(port: number, topic: string, pid: number, stream?: [JetStreamManager, string]) {
  const r: Runs = { ingest: [], endToEnd: [], peakRss: 0 };
  for (let run = 0; run < RUNS; run++) {
    const before = stream ? await streamCount(...stream) : 0;
    const input = lines(`r${run}-`);
    const t = performance.now();
    const rss = new RssPeak(() => pid, RSS_SAMPLE_MS);
    r.ingest.push(await publish(port, topic, input));
    if (stream) {
      await waitFor(async () => (await streamCount(...stream)) >= before + MESSAGES, {
        timeoutMs: STREAM_TIMEOUT_MS,
        intervalMs: POLL_MS,
        message: "stream",
      });
      r.endToEnd.push(performance.now() - t);
    }
    r.peakRss = Math.max(r.peakRss, rss.stop());
  }
  return r;
}

async function benchLeafgate() {
  const hub = await new NatsProcess({ serverName: "hub", storeDir: join(work, "hub-js") }).start();
  const nc = await connectClient(hub.url);
  const jsm = await jetstreamManager(nc);
  await createStream(nc, "EDGE", ["edge.>"]);
  const t0 = performance.now();
  // BENCH_SEMI_SPACE=16 is Node's default.
  const semiSpaceMiB =
    process.env.BENCH_SEMI_SPACE === undefined ? undefined : Number(process.env.BENCH_SEMI_SPACE);
  const gw = new GatewayBundle(
    mkdtempSync(join(work, "gw-")),
    { upstream: { servers: [hub.url], stream: "EDGE" } },
    { semiSpaceMiB },
  );
  await gw.start();
  const listenMs = performance.now() - t0;
  const startupMs = Number(STARTUP_MS.exec(await gw.line('"startupMs":'))![1]);
  await gw.line('"msg":"hub stream found"');
  await delay(IDLE_SETTLE_MS);
  const idleRss = rssMiB(gw.pid);
  const r = await runs(gw.mqttPort, "bench/leafgate", gw.pid, [jsm, "EDGE"]);
  const total = await streamCount(jsm, "EDGE");
  await gw.stop();
  await nc.close();
  await hub.stop();
  return { ...r, listenMs, startupMs, idleRss, total };
}

async function benchNatsMqtt() {
  const hub = new NatsProcess({ serverName: "hub", storeDir: join(work, "mqtt-js"), mqtt: true });
  await hub.start();
  const nc = await connectClient(hub.url);
  await createStream(nc, "MQTTIN", ["bench.>"]);
  await warmUp(hub.mqttPort, "bench/warmup");
  const r = await runs(hub.mqttPort, "bench/nats", hub.server.pid, [
    await jetstreamManager(nc),
    "MQTTIN",
  ]);
  await nc.close();
  await hub.stop();
  return r;
}

async function benchMosquitto() {
  const broker = new MosquittoProcess((port) => {
    const conf = join(work, "mosquitto.conf");
    writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\n`);
    return conf;
  });
  await broker.start();
  await warmUp(broker.port, "warmup");
  const r = await runs(broker.port, "bench/mosquitto", broker.pid);
  await broker.stop();
  return r;
}

const rate = (ms: number) => Math.round((MESSAGES / ms) * 1000);

buildBundle();
const bundleKiB = Math.round(statSync(BUNDLE).size / 1024);
console.log(
  `\nworkload: ${RUNS} runs x ${MESSAGES} QoS 1 messages of 100 bytes, mosquitto_pub -l\n`,
);

const lg = await benchLeafgate();
if (lg.total !== RUNS * MESSAGES) {
  throw new Error(`leafgate stream holds ${lg.total}, expected ${RUNS * MESSAGES}`);
}
const nm = await benchNatsMqtt();
const mq = await benchMosquitto();

const peers: [string, Runs][] = [
  ["leafgate (SQLite outbox -> JetStream)", lg],
  ["nats-server MQTT (-> JetStream stream)", nm],
  ["mosquitto (in memory, no forwarding)", mq],
];
printTable(
  [
    { title: "peer", left: true },
    { title: "ingest msg/s" },
    { title: "into stream msg/s" },
    { title: "peak RSS MiB" },
  ],
  peers.map(([name, r]) => [
    name,
    rate(median(r.ingest)),
    r.endToEnd.length ? rate(median(r.endToEnd)) : "-",
    fmt(r.peakRss, 1),
  ]),
);
console.log(`
ratios (median ingest): leafgate / nats-server MQTT = ${ratio(median(nm.ingest), median(lg.ingest))}, leafgate / mosquitto = ${ratio(median(mq.ingest), median(lg.ingest))}
ratios (into stream):   leafgate / nats-server MQTT = ${ratio(median(nm.endToEnd), median(lg.endToEnd))}
leafgate: runs ingest ${lg.ingest.map(rate).join(", ")} msg/s; into stream ${lg.endToEnd.map(rate).join(", ")} msg/s
leafgate: spawn to MQTT listening ${fmt(lg.listenMs)} ms (start() itself ${lg.startupMs} ms), idle RSS ${fmt(lg.idleRss, 1)} MiB, bundle ${bundleKiB} KiB`);
process.exit(0);
