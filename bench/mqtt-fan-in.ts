// Fan-in: 50 MQTT 3.1.1 publishers -> 1 subscriber, 100-byte messages, QoS 0 and 1; leafgate
// (with and without its outbox) beside mosquitto and aedes, a fresh broker each run. The
// brokers' settings, the clients' pacing and what each figure means: docs/bench.md.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { Socket } from "node:net";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { setImmediate as yieldLoop } from "node:timers/promises";
import { type MqttClient, connect as mqttConnect } from "mqtt";
import {
  spawnTracked,
  stopProcess,
  type TrackedProcess,
  waitForLine,
} from "../test/helpers/procs.js";
import { waitFor } from "../test/helpers/wait.js";
import { CLOSED_HUB, GatewayBundle } from "./lib/gateway.js";
import { benchScript, benchWorkDir, buildBundle } from "./lib/harness.js";
import { cpuSeconds, median, rssMiB, selfCpuSeconds } from "./lib/measure.js";
import { MosquittoProcess } from "./lib/mosquitto.js";
import { type Column, fmt, printTable, ratio, streamTable } from "./lib/table.js";

const PUBLISHERS = 50;
const PER_PUBLISHER = Math.ceil(Number(process.env.BENCH_FANIN_MESSAGES ?? 100_000) / PUBLISHERS);
const TOTAL = PER_PUBLISHER * PUBLISHERS;
const RUNS = Number(process.env.BENCH_FANIN_RUNS ?? 3);
/** Unacked QoS 1 PUBLISHes per publisher (libmosquitto's and paho's default max inflight). */
const WINDOW = Number(process.env.BENCH_FANIN_WINDOW ?? 20);
const PAYLOAD_BYTES = 100;
const QUEUE_LIMIT = TOTAL * 2; // broker-side per-session queue: never the limiting factor
/** mosquitto's outbound window, set to leafgate's default (mosquitto's own is 20). */
const MOSQUITTO_MAX_INFLIGHT = 1000;
// After the last publish, a run ends when nothing more arrives for this long: QoS 0 losses
// are then counted; at QoS 1 it is a failure (a stall or a drop), not a wait to the timeout.
const QUIET_MS = { 0: 1000, 1: 5000 } as const;
const RUN_TIMEOUT_MS = 120_000;
const START_TIMEOUT_MS = 15_000;
const CONNECT_TIMEOUT_MS = 10_000;
const POLL_MS = 10;
const PUBLISHERS_MODE = "--publishers"; // argv[2] of the publishers' child process
const LEAFGATE = "leafgate";
const LEAFGATE_LOCAL = "leafgate (local only, no outbox)";

type Qos = 0 | 1;

interface Broker {
  port: number;
  pid: number;
  stop(): Promise<void>;
  rss?(): number;
}

// --- brokers: each call starts a fresh instance ------------------------------------------

function leafgate(work: string, exportAll: boolean) {
  return async (): Promise<Broker> => {
    const dir = mkdtempSync(join(work, "gw-"));
    const gw = new GatewayBundle(dir, {
      mqtt: { max_queued_messages: QUEUE_LIMIT },
      upstream: exportAll
        ? { servers: [CLOSED_HUB] }
        : { servers: [CLOSED_HUB], export: ["nothing.>"] },
      http: true,
    });
    await gw.start();
    return {
      port: gw.mqttPort,
      pid: gw.pid,
      rss: () => rssMiB(gw.pid),
      stop: async () => {
        await gw.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  };
}

function mosquitto(work: string) {
  return async (): Promise<Broker> => {
    const broker = new MosquittoProcess((port) => {
      const conf = join(work, `mosquitto-${port}.conf`);
      writeFileSync(
        conf,
        `listener ${port} 127.0.0.1
allow_anonymous true
persistence false
max_inflight_messages ${MOSQUITTO_MAX_INFLIGHT}
max_queued_messages ${QUEUE_LIMIT}
`,
      );
      return conf;
    });
    await broker.start();
    return { port: broker.port, pid: broker.pid, stop: () => broker.stop() };
  };
}

async function aedes(): Promise<Broker> {
  const proc = await spawnTracked(process.execPath, [benchScript("aedes-server")]);
  const line = await waitForLine(proc, (l) => l.startsWith("aedes listening "), START_TIMEOUT_MS);
  return { port: Number(line.split(" ")[2]), pid: proc.pid, stop: () => stopProcess(proc).then() };
}

// --- clients ------------------------------------------------------------------------------

const clients = new Set<MqttClient>();

function connectClient(port: number, clientId: string): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const c = mqttConnect({
      host: "127.0.0.1",
      port,
      protocolVersion: 4,
      clientId,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: CONNECT_TIMEOUT_MS,
    });
    clients.add(c);
    let connected = false;
    c.once("connect", () => {
      connected = true;
      (c.stream as Socket).setNoDelay?.(true);
      resolve(c);
    });
    c.on("error", (err) => {
      if (!connected) reject(err);
      else console.error(`${clientId}: ${err.message}`); // the run then fails on its count
    });
    c.once("close", () => {
      if (!connected) reject(new Error(`${clientId}: closed before CONNACK`));
      else if (clients.has(c)) console.error(`${clientId}: connection closed by the broker`);
    });
  });
}

function close(c: MqttClient): Promise<void> {
  clients.delete(c);
  return new Promise((resolve) => c.end(false, {}, () => resolve()));
}

const TEMPLATE = Buffer.alloc(PAYLOAD_BYTES, "x");

/** hrtime at publish (CLOCK_MONOTONIC, the same in both processes), publisher, sequence. */
function payload(publisher: number, seq: number): Buffer {
  const p = Buffer.from(TEMPLATE);
  p.writeBigUInt64BE(process.hrtime.bigint(), 0);
  p.writeUInt32BE(publisher, 8);
  p.writeUInt32BE(seq, 12);
  return p;
}

/** QoS 1: a window of WINDOW unacked PUBLISHes; each PUBACK releases the next. */
function publishQos1(client: MqttClient, index: number): Promise<void> {
  const topic = `bench/fanin/${index}`;
  return new Promise((resolve, reject) => {
    let sent = 0;
    let acked = 0;
    const onAck = (err?: Error) => {
      if (err) return reject(err);
      if (++acked === PER_PUBLISHER) resolve();
      else if (sent < PER_PUBLISHER) {
        client.publish(topic, payload(index, sent++), { qos: 1 }, onAck);
      }
    };
    while (sent < Math.min(WINDOW, PER_PUBLISHER)) {
      client.publish(topic, payload(index, sent++), { qos: 1 }, onAck);
    }
  });
}

/** QoS 0: batches of WINDOW, each waiting until the socket took the batch's last message. */
async function publishQos0(client: MqttClient, index: number): Promise<void> {
  const topic = `bench/fanin/${index}`;
  for (let sent = 0; sent < PER_PUBLISHER; ) {
    const last = Math.min(sent + WINDOW, PER_PUBLISHER) - 1;
    for (; sent < last; sent++) client.publish(topic, payload(index, sent), { qos: 0 });
    await new Promise<void>((resolve, reject) =>
      client.publish(topic, payload(index, sent++), { qos: 0 }, (err) =>
        err ? reject(err) : resolve(),
      ),
    );
    await yieldLoop();
  }
}

interface Subscriber {
  client: MqttClient;
  received: number;
  duplicates: number;
  lastAt: bigint;
  lastWallMs: number;
  latencyUs: Float64Array;
  seen: Uint8Array;
}

async function subscribe(port: number, qos: Qos): Promise<Subscriber> {
  const c = await connectClient(port, "fanin-sub");
  const granted = await c.subscribeAsync("bench/fanin/+", { qos });
  if (granted[0]?.qos !== qos) throw new Error(`subscription granted QoS ${granted[0]?.qos}`);
  const s: Subscriber = {
    client: c,
    received: 0,
    duplicates: 0,
    lastAt: 0n,
    lastWallMs: 0,
    latencyUs: new Float64Array(TOTAL),
    seen: new Uint8Array(TOTAL),
  };
  c.on("message", (_topic, p) => {
    const now = process.hrtime.bigint();
    const key = p.readUInt32BE(8) * PER_PUBLISHER + p.readUInt32BE(12);
    if (s.seen[key]) {
      s.duplicates++;
      return;
    }
    s.seen[key] = 1;
    s.latencyUs[s.received++] = Number(now - p.readBigUInt64BE(0)) / 1e3;
    s.lastAt = now;
    s.lastWallMs = Date.now();
  });
  return s;
}

// --- one run ------------------------------------------------------------------------------

/**
 * The publishers' child process: connects all publishers, says `ready`, publishes on `go`,
 * says `published <hrtime of the first publish>`, and disconnects on `end`.
 */
async function publishersProcess(port: number, qos: Qos): Promise<never> {
  const commands = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  const pubs = await Promise.all(
    Array.from({ length: PUBLISHERS }, (_, i) => connectClient(port, `fanin-pub-${i}`)),
  );
  process.stdout.write("ready\n");
  await commands.next();
  const t0 = process.hrtime.bigint();
  await Promise.all(pubs.map((c, i) => (qos === 1 ? publishQos1(c, i) : publishQos0(c, i))));
  process.stdout.write(`published ${t0}\n`);
  await commands.next();
  await Promise.all(pubs.map(close));
  process.exit(0);
}

interface RunResult {
  rate: number;
  p50: number;
  p99: number;
  lost: number;
  duplicates: number;
  brokerCpu: number;
  pubCpu: number;
  subCpu: number;
  rss: number | undefined;
}

async function runOnce(startBroker: () => Promise<Broker>, qos: Qos): Promise<RunResult> {
  const broker = await startBroker();
  let pubs: TrackedProcess | undefined;
  try {
    const sub = await subscribe(broker.port, qos);
    const args = [process.argv[1]!, PUBLISHERS_MODE, String(broker.port), String(qos)];
    const proc = await spawnTracked(process.execPath, args, { stdin: "pipe" });
    pubs = proc;
    await waitForLine(proc, (l) => l === "ready", START_TIMEOUT_MS);
    const brokerCpu0 = cpuSeconds(broker.pid);
    const pubCpu0 = cpuSeconds(proc.pid);
    const subCpu0 = selfCpuSeconds();
    proc.child.stdin!.write("go\n");
    const published = await waitForLine(proc, (l) => l.startsWith("published "), RUN_TIMEOUT_MS);
    const t0 = BigInt(published.split(" ")[1]!);
    const publishedAtMs = Date.now();
    await waitFor(
      () =>
        sub.received >= TOTAL ||
        Date.now() - Math.max(sub.lastWallMs, publishedAtMs) > QUIET_MS[qos],
      {
        timeoutMs: RUN_TIMEOUT_MS,
        intervalMs: POLL_MS,
        message: () => `QoS ${qos} messages (${sub.received}/${TOTAL} so far)`,
      },
    );
    const seconds = Number(sub.lastAt - t0) / 1e9;
    const brokerCpu = (cpuSeconds(broker.pid) - brokerCpu0) / seconds;
    const pubCpu = (cpuSeconds(proc.pid) - pubCpu0) / seconds;
    const subCpu = (selfCpuSeconds() - subCpu0) / seconds;
    const rss = broker.rss?.();
    const lat = sub.latencyUs.subarray(0, sub.received).sort();
    const pct = (q: number) => lat[Math.min(lat.length - 1, Math.floor(q * lat.length))]! / 1000;
    proc.child.stdin!.write("end\n");
    await Promise.all([
      close(sub.client),
      waitFor(() => proc.exitInfo, { timeoutMs: 10_000, message: "publishers to exit" }),
    ]);
    return {
      rate: sub.received / seconds,
      p50: pct(0.5),
      p99: pct(0.99),
      lost: TOTAL - sub.received,
      duplicates: sub.duplicates,
      brokerCpu,
      pubCpu,
      subCpu,
      rss,
    };
  } finally {
    for (const c of clients) c.end(true);
    clients.clear();
    if (pubs) await stopProcess(pubs);
    await broker.stop();
  }
}

// --- main ---------------------------------------------------------------------------------

const percent = (share: number) => `${fmt(share * 100)}%`;

async function main(): Promise<never> {
  const work = benchWorkDir("fanin");
  const brokers: [string, () => Promise<Broker>][] = [
    [LEAFGATE, leafgate(work, true)],
    [LEAFGATE_LOCAL, leafgate(work, false)],
    ["mosquitto", mosquitto(work)],
    ["aedes", aedes],
  ];
  const wallStart = performance.now();
  buildBundle();
  console.log(
    `\nfan-in: ${PUBLISHERS} publishers x ${PER_PUBLISHER} messages of ${PAYLOAD_BYTES} bytes -> 1 subscriber, ` +
      `MQTT 3.1.1, window ${WINDOW}, ${RUNS} runs per broker and QoS, interleaved\n`,
  );
  const runRows = streamTable([
    { title: "run" },
    { title: "QoS" },
    { title: "broker", left: true, width: LEAFGATE_LOCAL.length },
    { title: "msgs/s", width: 9 },
    { title: "p50 ms", width: 8 },
    { title: "p99 ms", width: 8 },
    { title: "lost", width: 6 },
    { title: "dup" },
    { title: "broker CPU" },
    { title: "pubs CPU" },
    { title: "sub CPU" },
    { title: "broker RSS" },
    { title: "", left: true },
  ]);
  const results = new Map<string, RunResult[]>(); // `${qos} ${name}` -> run results
  const failures: string[] = []; // QoS 1 runs that did not deliver every message
  for (let run = 1; run <= RUNS; run++) {
    for (const qos of [0, 1] as const) {
      for (const [name, startBroker] of brokers) {
        const r = await runOnce(startBroker, qos);
        const key = `${qos} ${name}`;
        results.set(key, [...(results.get(key) ?? []), r]);
        if (qos === 1 && r.lost !== 0) {
          failures.push(
            `run ${run} QoS 1 ${name}: subscriber received ${TOTAL - r.lost} of ${TOTAL}`,
          );
        }
        runRows.row([
          run,
          qos,
          name,
          fmt(r.rate),
          fmt(r.p50, 2),
          fmt(r.p99, 2),
          r.lost,
          r.duplicates,
          percent(r.brokerCpu),
          percent(r.pubCpu),
          percent(r.subCpu),
          r.rss === undefined ? "" : `${fmt(r.rss, 1)} MiB`,
          qos === 1 && r.lost ? "FAIL: QoS 1 loss" : "",
        ]);
      }
    }
  }

  const runsOf = (qos: Qos, name: string) => results.get(`${qos} ${name}`) ?? [];
  const med = (qos: Qos, name: string, field: "rate" | "p50" | "p99") =>
    median(runsOf(qos, name).map((r) => r[field]));
  const medianColumns: Column[] = [
    { title: "medians", left: true },
    { title: "msgs/s" },
    { title: "p50 ms" },
    { title: "p99 ms" },
    { title: "lost (sum)" },
    { title: "", left: true },
  ];
  console.log();
  printTable(
    medianColumns,
    ([0, 1] as const).flatMap((qos) =>
      brokers.map(([name]) => {
        const lost = runsOf(qos, name).reduce((a, r) => a + r.lost, 0);
        return [
          `QoS ${qos} ${name}`,
          fmt(med(qos, name, "rate")),
          fmt(med(qos, name, "p50"), 2),
          fmt(med(qos, name, "p99"), 2),
          lost,
          qos === 1 && lost ? "(FAILED: QoS 1 loss)" : "",
        ];
      }),
    ),
  );
  console.log("\nratios of medians (msgs/s: higher is better for leafgate; p99: lower is better)");
  for (const qos of [0, 1] as const) {
    for (const lg of [LEAFGATE, LEAFGATE_LOCAL]) {
      for (const peer of ["mosquitto", "aedes"]) {
        const tainted =
          qos === 1 && failures.some((f) => f.includes(` ${lg}:`) || f.includes(` ${peer}:`));
        console.log(
          `QoS ${qos} ${lg} / ${peer}: msgs/s ${ratio(med(qos, lg, "rate"), med(qos, peer, "rate"))}, p99 ${ratio(med(qos, lg, "p99"), med(qos, peer, "p99"))}${tainted ? "  (from runs that lost QoS 1 messages)" : ""}`,
        );
      }
    }
  }
  console.log(`\nbench wall time ${fmt((performance.now() - wallStart) / 1000, 1)} s`);
  if (failures.length > 0) {
    console.log(`\nFAILED: QoS 1 must deliver every message\n${failures.join("\n")}`);
    process.exit(1);
  }
  process.exit(0);
}

if (process.argv[2] === PUBLISHERS_MODE) {
  await publishersProcess(Number(process.argv[3]), Number(process.argv[4]) === 1 ? 1 : 0);
} else {
  await main();
}
