// Fan-in: 50 MQTT 3.1.1 publishers -> 1 subscriber, 100-byte messages, QoS 0 and 1; leafgate
// (default export: every message into the outbox) beside mosquitto and aedes, a fresh broker
// each run, with two load generators: mqtt.js clients, and raw-socket clients that build their
// packets by hand (bench/lib/raw-mqtt.ts) and cost far less CPU. The brokers' settings, the
// clients' pacing and what each figure means: docs/bench.md; findings: docs/performance-mqtt.md.
//
//   node bench/run.mjs mqtt-fan-in [--quick] [--json <file>] [--generator mqttjs|raw|both]
//       [--qos 0|1|both] [--local] [--external <port>:<pid>]
//
// `--local` adds leafgate with nothing exported (no outbox); `--external` measures a broker
// already running (a profiled gateway, say) instead of starting any.
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { Socket } from "node:net";
import { join } from "node:path";
import { setImmediate as yieldLoop } from "node:timers/promises";
import { parseArgs } from "node:util";
import { type MqttClient, connect as mqttConnect } from "mqtt";
import {
  spawnTracked,
  stopProcess,
  type TrackedProcess,
  waitForLine,
} from "../test/helpers/procs.js";
import { waitFor } from "../test/helpers/wait.js";
import { commands, say } from "./lib/client.js";
import { CLOSED_HUB, GatewayBundle } from "./lib/gateway.js";
import { benchScript, benchWorkDir, buildBundle } from "./lib/harness.js";
import { cpuSeconds, median, rssMiB, selfCpuSeconds } from "./lib/measure.js";
import { MosquittoProcess } from "./lib/mosquitto.js";
import {
  nextPacketId,
  PACKET,
  PublishTemplate,
  pubackPacket,
  RawMqttClient,
} from "./lib/raw-mqtt.js";
import { type Column, fmt, printTable, ratio, streamTable } from "./lib/table.js";

const PUBLISHERS_MODE = "--publishers"; // argv[2] of the publishers' child process
const { values: flags } = parseArgs({
  // The publishers' child takes positional arguments of its own (see publishersProcess).
  args: process.argv[2] === PUBLISHERS_MODE ? [] : process.argv.slice(2),
  options: {
    quick: { type: "boolean", default: false },
    json: { type: "string" },
    generator: { type: "string", default: "both" },
    qos: { type: "string", default: "both" },
    local: { type: "boolean", default: false },
    external: { type: "string" },
  },
});

const PUBLISHERS = 50;
/** --quick: about a minute for the whole bench (3 brokers x 2 QoS x 2 generators x 3 runs). */
const QUICK_MESSAGES = 30_000;
const PER_PUBLISHER = Math.ceil(
  Number(process.env.BENCH_FANIN_MESSAGES ?? (flags.quick ? QUICK_MESSAGES : 100_000)) / PUBLISHERS,
);
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
const LEAFGATE = "leafgate";
const LEAFGATE_LOCAL = "leafgate (local only, no outbox)";
const EXTERNAL = "external";
/** Targets of issue 14: leafgate / mosquitto, msgs/s. */
const TARGET = { 0: 1.5, 1: 1.2 } as const;
const TOPIC_PREFIX = "bench/fanin/";

type Qos = 0 | 1;
type Generator = "mqttjs" | "raw";
const GENERATOR_LABEL: Record<Generator, string> = {
  mqttjs: "mqtt.js clients",
  raw: "raw-socket clients",
};

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
    return {
      port: broker.port,
      pid: broker.pid,
      rss: () => rssMiB(broker.pid),
      stop: () => broker.stop(),
    };
  };
}

async function aedes(): Promise<Broker> {
  const proc = await spawnTracked(process.execPath, [benchScript("aedes-server")]);
  const line = await waitForLine(proc, (l) => l.startsWith("aedes listening "), START_TIMEOUT_MS);
  return {
    port: Number(line.split(" ")[2]),
    pid: proc.pid,
    rss: () => rssMiB(proc.pid),
    stop: () => stopProcess(proc).then(),
  };
}

/** A broker someone else started (`--external <port>:<pid>`): measured, never stopped. */
function external(spec: string) {
  const [port, pid] = spec.split(":").map(Number);
  return async (): Promise<Broker> => ({
    port: port!,
    pid: pid!,
    rss: () => rssMiB(pid!),
    stop: async () => {},
  });
}

// --- payloads: what every message carries, and what the subscriber checks -------------------

/** Writes hrtime at publish (CLOCK_MONOTONIC, the same in every process), publisher, seq. */
function stamp(into: Buffer, at: number, publisher: number, seq: number): void {
  into.writeBigUInt64BE(process.hrtime.bigint(), at);
  into.writeUInt32BE(publisher, at + 8);
  into.writeUInt32BE(seq, at + 12);
}

const TEMPLATE = Buffer.alloc(PAYLOAD_BYTES, "x");

function payload(publisher: number, seq: number): Buffer {
  const p = Buffer.from(TEMPLATE);
  stamp(p, 0, publisher, seq);
  return p;
}

/** What the subscriber saw: counts, latency, and the checks of every message. */
class Received {
  received = 0;
  duplicates = 0;
  /** A message older than one already received from the same publisher. */
  reordered = 0;
  lastAt = 0n;
  lastWallMs = 0;
  readonly latencyUs = new Float64Array(TOTAL);
  readonly #seen = new Uint8Array(TOTAL);
  readonly #lastSeq = new Int32Array(PUBLISHERS).fill(-1);

  /** The payload at `at` in `bytes`. */
  record(bytes: Buffer, at: number): void {
    const now = process.hrtime.bigint();
    const publisher = bytes.readUInt32BE(at + 8);
    const seq = bytes.readUInt32BE(at + 12);
    const key = publisher * PER_PUBLISHER + seq;
    if (this.#seen[key]) {
      this.duplicates++;
      return;
    }
    this.#seen[key] = 1;
    if (seq < this.#lastSeq[publisher]!) this.reordered++;
    else this.#lastSeq[publisher] = seq;
    this.latencyUs[this.received++] = Number(now - bytes.readBigUInt64BE(at)) / 1e3;
    this.lastAt = now;
    this.lastWallMs = Date.now();
  }
}

interface Subscriber {
  readonly seen: Received;
  close(): Promise<void>;
  /** Forget the connection at once (a failed run). */
  destroy(): void;
}

// --- mqtt.js clients ------------------------------------------------------------------------

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

/** QoS 1: a window of WINDOW unacked PUBLISHes; each PUBACK releases the next. */
function publishQos1(client: MqttClient, index: number): Promise<void> {
  const topic = `${TOPIC_PREFIX}${index}`;
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
  const topic = `${TOPIC_PREFIX}${index}`;
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

async function subscribeMqttjs(port: number, qos: Qos): Promise<Subscriber> {
  const c = await connectClient(port, "fanin-sub");
  const granted = await c.subscribeAsync(`${TOPIC_PREFIX}+`, { qos });
  if (granted[0]?.qos !== qos) throw new Error(`subscription granted QoS ${granted[0]?.qos}`);
  const seen = new Received();
  c.on("message", (_topic, p) => seen.record(p, 0));
  return { seen, close: () => close(c), destroy: () => c.end(true) };
}

// --- raw-socket clients ---------------------------------------------------------------------

/**
 * QoS 1: at most WINDOW unacked PUBLISHes; the PUBACKs of one socket read release as many
 * new ones, written together. Every PUBACK must answer an id in flight.
 */
function rawQos1(client: RawMqttClient, index: number): Promise<void> {
  const template = new PublishTemplate(`${TOPIC_PREFIX}${index}`, 1, PAYLOAD_BYTES);
  const inFlight = new Uint8Array(0x10000);
  let packetId = 0;
  let sent = 0;
  let acked = 0;
  let released = 0;
  const send = (n: number): void => {
    const batch = Buffer.allocUnsafe(n * template.size);
    for (let i = 0, at = 0; i < n; i++, at += template.size) {
      packetId = nextPacketId(packetId);
      inFlight[packetId] = 1;
      const p = template.write(batch, at, packetId);
      stamp(batch, p, index, sent++);
      batch.fill(0x78, p + 16, at + template.size);
    }
    client.socket.write(batch);
  };
  return new Promise((resolve, reject) => {
    client.onPacket = (first, bytes, start) => {
      if (first !== PACKET.puback) return;
      const id = bytes.readUInt16BE(start);
      if (inFlight[id] !== 1) {
        reject(new Error(`publisher ${index}: PUBACK for id ${id}, not in flight`));
        return;
      }
      inFlight[id] = 0;
      acked++;
      if (sent + released < PER_PUBLISHER) released++;
    };
    client.onReadDone = () => {
      if (released > 0) {
        send(released);
        released = 0;
      }
      if (acked === PER_PUBLISHER) resolve();
    };
    client.socket.once("close", () => {
      if (acked < PER_PUBLISHER) reject(new Error(`publisher ${index}: closed by the broker`));
    });
    send(Math.min(WINDOW, PER_PUBLISHER));
  });
}

/** QoS 0: one write per batch of WINDOW; waits for `drain` when the socket is full. */
async function rawQos0(client: RawMqttClient, index: number): Promise<void> {
  const template = new PublishTemplate(`${TOPIC_PREFIX}${index}`, 0, PAYLOAD_BYTES);
  for (let sent = 0; sent < PER_PUBLISHER; ) {
    const n = Math.min(WINDOW, PER_PUBLISHER - sent);
    const batch = Buffer.allocUnsafe(n * template.size);
    for (let i = 0, at = 0; i < n; i++, at += template.size) {
      const p = template.write(batch, at, 0);
      stamp(batch, p, index, sent++);
      batch.fill(0x78, p + 16, at + template.size);
    }
    if (!client.socket.write(batch)) await once(client.socket, "drain");
    await yieldLoop();
  }
}

async function subscribeRaw(port: number, qos: Qos): Promise<Subscriber> {
  const c = await RawMqttClient.connect(port, "fanin-sub", CONNECT_TIMEOUT_MS);
  const granted = await c.subscribe(`${TOPIC_PREFIX}+`, qos);
  if (granted !== qos) throw new Error(`subscription granted QoS ${granted}`);
  const seen = new Received();
  let acks: number[] = [];
  c.onPacket = (first, bytes, start) => {
    if ((first & 0xf0) !== PACKET.publish) return;
    let at = start + 2 + bytes.readUInt16BE(start);
    if (((first >> 1) & 3) > 0) {
      acks.push(bytes.readUInt16BE(at));
      at += 2;
    }
    seen.record(bytes, at);
  };
  c.onReadDone = () => {
    if (acks.length === 0) return;
    c.socket.write(
      acks.length === 1 ? pubackPacket(acks[0]!) : Buffer.concat(acks.map(pubackPacket)),
    );
    acks = [];
  };
  return { seen, close: () => c.close(), destroy: () => c.socket.destroy() };
}

// --- one run ------------------------------------------------------------------------------

/** Says `ready`; on `go` publishes, says `published <hrtime at start>`; on `end` closes. */
async function publishOnCommand(
  publish: () => Promise<void>[],
  closeAll: () => Promise<void>[],
): Promise<void> {
  const next = commands();
  say("ready");
  await next.next();
  const t0 = process.hrtime.bigint();
  await Promise.all(publish());
  say(`published ${t0}`);
  await next.next();
  await Promise.all(closeAll());
}

/**
 * The publishers' child process: connects all publishers, says `ready`, publishes on `go`,
 * says `published <hrtime of the first publish>`, and disconnects on `end`.
 */
async function publishersProcess(port: number, qos: Qos, generator: Generator): Promise<never> {
  const ids = Array.from({ length: PUBLISHERS }, (_, i) => i);
  if (generator === "raw") {
    const pubs = await Promise.all(
      ids.map((i) => RawMqttClient.connect(port, `fanin-pub-${i}`, CONNECT_TIMEOUT_MS)),
    );
    await publishOnCommand(
      () => pubs.map((c, i) => (qos === 1 ? rawQos1(c, i) : rawQos0(c, i))),
      () => pubs.map((c) => c.close()),
    );
  } else {
    const pubs = await Promise.all(ids.map((i) => connectClient(port, `fanin-pub-${i}`)));
    await publishOnCommand(
      () => pubs.map((c, i) => (qos === 1 ? publishQos1(c, i) : publishQos0(c, i))),
      () => pubs.map(close),
    );
  }
  process.exit(0);
}

interface RunResult {
  rate: number;
  p50: number;
  p99: number;
  lost: number;
  duplicates: number;
  reordered: number;
  /** Share of one core during the run. */
  brokerCpu: number;
  pubCpu: number;
  subCpu: number;
  /** CPU µs per message received. */
  brokerUs: number;
  pubUs: number;
  subUs: number;
  rss: number | undefined;
}

async function runOnce(
  startBroker: () => Promise<Broker>,
  qos: Qos,
  generator: Generator,
): Promise<RunResult> {
  const broker = await startBroker();
  let pubs: TrackedProcess | undefined;
  let sub: Subscriber | undefined;
  try {
    sub =
      generator === "raw"
        ? await subscribeRaw(broker.port, qos)
        : await subscribeMqttjs(broker.port, qos);
    const { seen } = sub;
    const args = [process.argv[1]!, PUBLISHERS_MODE, String(broker.port), String(qos), generator];
    // The child publishes this run's count (--quick included).
    const env = { ...process.env, BENCH_FANIN_MESSAGES: String(TOTAL) };
    const proc = await spawnTracked(process.execPath, args, { stdin: "pipe", env });
    pubs = proc;
    await waitForLine(proc, (l) => l === "ready", START_TIMEOUT_MS);
    const cpu = () => [cpuSeconds(broker.pid), cpuSeconds(proc.pid), selfCpuSeconds()] as const;
    const cpu0 = cpu();
    // CPU is read again whenever more arrived: its figures end at the last receipt, not
    // after the quiet period that ends a run with losses.
    let cpu1 = cpu0;
    let receivedAtPoll = 0;
    proc.child.stdin!.write("go\n");
    const published = await waitForLine(proc, (l) => l.startsWith("published "), RUN_TIMEOUT_MS);
    const t0 = BigInt(published.split(" ")[1]!);
    const publishedAtMs = Date.now();
    await waitFor(
      () => {
        if (seen.received !== receivedAtPoll) {
          receivedAtPoll = seen.received;
          cpu1 = cpu();
        }
        return (
          seen.received >= TOTAL ||
          Date.now() - Math.max(seen.lastWallMs, publishedAtMs) > QUIET_MS[qos]
        );
      },
      {
        timeoutMs: RUN_TIMEOUT_MS,
        intervalMs: POLL_MS,
        message: () => `QoS ${qos} messages (${seen.received}/${TOTAL} so far)`,
      },
    );
    const seconds = Number(seen.lastAt - t0) / 1e9;
    const used = cpu1.map((c, i) => c - cpu0[i]!);
    const share = (i: number) => used[i]! / seconds;
    const perMsg = (i: number) => (used[i]! / Math.max(1, seen.received)) * 1e6;
    const rss = broker.rss?.();
    const lat = seen.latencyUs.subarray(0, seen.received).sort();
    const pct = (q: number) => lat[Math.min(lat.length - 1, Math.floor(q * lat.length))]! / 1000;
    proc.child.stdin!.write("end\n");
    await Promise.all([
      sub.close(),
      waitFor(() => proc.exitInfo, { timeoutMs: 10_000, message: "publishers to exit" }),
    ]);
    sub = undefined;
    return {
      rate: seen.received / seconds,
      p50: pct(0.5),
      p99: pct(0.99),
      lost: TOTAL - seen.received,
      duplicates: seen.duplicates,
      reordered: seen.reordered,
      brokerCpu: share(0),
      pubCpu: share(1),
      subCpu: share(2),
      brokerUs: perMsg(0),
      pubUs: perMsg(1),
      subUs: perMsg(2),
      rss,
    };
  } finally {
    sub?.destroy();
    for (const c of clients) c.end(true);
    clients.clear();
    if (pubs) await stopProcess(pubs);
    await broker.stop();
  }
}

// --- main ---------------------------------------------------------------------------------

const percent = (share: number) => `${fmt(share * 100)}%`;

/** Why a QoS 1 run failed (lost, duplicated or reordered a message), or undefined. */
function qos1Failure(r: RunResult): string | undefined {
  const what = [
    r.lost ? `lost ${r.lost}` : "",
    r.duplicates ? `duplicated ${r.duplicates}` : "",
    r.reordered ? `reordered ${r.reordered}` : "",
  ].filter(Boolean);
  return what.length > 0 ? what.join(", ") : undefined;
}

function choice<T extends string>(value: string, all: readonly T[], flag: string): T[] {
  if (value === "both") return [...all];
  if ((all as readonly string[]).includes(value)) return [value as T];
  throw new Error(`--${flag} ${value}: expected ${all.join(", ")} or both`);
}

async function main(): Promise<never> {
  const work = benchWorkDir("fanin");
  const generators = choice<Generator>(flags.generator!, ["raw", "mqttjs"], "generator");
  const qosLevels = choice(flags.qos!, ["0", "1"], "qos").map(Number) as Qos[];
  const brokers: [string, () => Promise<Broker>][] =
    flags.external !== undefined
      ? [[EXTERNAL, external(flags.external)]]
      : [
          [LEAFGATE, leafgate(work, true)],
          ...(flags.local
            ? [[LEAFGATE_LOCAL, leafgate(work, false)] as [string, () => Promise<Broker>]]
            : []),
          ["mosquitto", mosquitto(work)],
          ["aedes", aedes],
        ];
  const wallStart = performance.now();
  if (flags.external === undefined) buildBundle();
  console.log(
    `\nfan-in: ${PUBLISHERS} publishers x ${PER_PUBLISHER} messages of ${PAYLOAD_BYTES} bytes -> 1 subscriber, ` +
      `MQTT 3.1.1, window ${WINDOW}, ${RUNS} runs per broker, QoS and generator, interleaved\n` +
      "CPU: share of one core (broker, publishers' process, subscriber's process) and µs per message\n",
  );
  const nameWidth = Math.max(...brokers.map(([n]) => n.length));
  const runRows = streamTable([
    { title: "run" },
    { title: "clients", left: true, width: 6 },
    { title: "QoS" },
    { title: "broker", left: true, width: nameWidth },
    { title: "msgs/s", width: 9 },
    { title: "p50 ms", width: 8 },
    { title: "p99 ms", width: 8 },
    { title: "lost", width: 6 },
    { title: "dup" },
    { title: "reord" },
    { title: "broker CPU" },
    { title: "µs/msg" },
    { title: "pubs CPU" },
    { title: "µs/msg" },
    { title: "sub CPU" },
    { title: "µs/msg" },
    { title: "broker RSS" },
    { title: "", left: true },
  ]);
  const results = new Map<string, RunResult[]>(); // `${generator} ${qos} ${name}` -> runs
  const failures: string[] = []; // QoS 1 runs that lost, duplicated or reordered
  for (let run = 1; run <= RUNS; run++) {
    for (const generator of generators) {
      for (const qos of qosLevels) {
        for (const [name, startBroker] of brokers) {
          const r = await runOnce(startBroker, qos, generator);
          const key = `${generator} ${qos} ${name}`;
          results.set(key, [...(results.get(key) ?? []), r]);
          const failed = qos === 1 ? qos1Failure(r) : undefined;
          if (failed) failures.push(`run ${run} ${generator} QoS 1 ${name}: ${failed}`);
          runRows.row([
            run,
            generator,
            qos,
            name,
            fmt(r.rate),
            fmt(r.p50, 2),
            fmt(r.p99, 2),
            r.lost,
            r.duplicates,
            r.reordered,
            percent(r.brokerCpu),
            fmt(r.brokerUs, 1),
            percent(r.pubCpu),
            fmt(r.pubUs, 1),
            percent(r.subCpu),
            fmt(r.subUs, 1),
            r.rss === undefined ? "" : `${fmt(r.rss, 1)} MiB`,
            failed ? `FAIL: QoS 1 ${failed}` : "",
          ]);
        }
      }
    }
  }

  const runsOf = (g: Generator, qos: Qos, name: string) => results.get(`${g} ${qos} ${name}`) ?? [];
  const med = (g: Generator, qos: Qos, name: string, field: keyof RunResult) =>
    median(runsOf(g, qos, name).map((r) => r[field] ?? Number.NaN));
  const medianColumns: Column[] = [
    { title: "medians", left: true },
    { title: "msgs/s" },
    { title: "p50 ms" },
    { title: "p99 ms" },
    { title: "broker µs/msg" },
    { title: "broker CPU" },
    { title: "pubs CPU" },
    { title: "sub CPU" },
    { title: "lost (sum)" },
    { title: "", left: true },
  ];
  console.log();
  printTable(
    medianColumns,
    generators.flatMap((g) =>
      qosLevels.flatMap((qos) =>
        brokers.map(([name]) => {
          const runs = runsOf(g, qos, name);
          const lost = runs.reduce((a, r) => a + r.lost, 0);
          const bad = qos === 1 && runs.some((r) => qos1Failure(r) !== undefined);
          return [
            `${g} QoS ${qos} ${name}`,
            fmt(med(g, qos, name, "rate")),
            fmt(med(g, qos, name, "p50"), 2),
            fmt(med(g, qos, name, "p99"), 2),
            fmt(med(g, qos, name, "brokerUs"), 1),
            percent(med(g, qos, name, "brokerCpu")),
            percent(med(g, qos, name, "pubCpu")),
            percent(med(g, qos, name, "subCpu")),
            lost,
            bad ? "(FAILED: QoS 1 lost, duplicated or reordered)" : "",
          ];
        }),
      ),
    ),
  );

  const rows: unknown[] = [];
  const cpu: Record<string, unknown> = {};
  if (flags.external === undefined) {
    console.log(
      "\nratios of medians (msgs/s: higher is better for leafgate; p99: lower is better)",
    );
    for (const g of generators) {
      for (const qos of qosLevels) {
        const scenario = `QoS ${qos} fan-in, ${PUBLISHERS} publishers -> 1 subscriber (${GENERATOR_LABEL[g]})`;
        const lgRuns = runsOf(g, qos, LEAFGATE);
        cpu[scenario] = Object.fromEntries(
          brokers.map(([name]) => [
            name,
            {
              brokerUsPerMsg: med(g, qos, name, "brokerUs"),
              brokerShare: med(g, qos, name, "brokerCpu"),
              publishersShare: med(g, qos, name, "pubCpu"),
              publishersUsPerMsg: med(g, qos, name, "pubUs"),
              subscriberShare: med(g, qos, name, "subCpu"),
              subscriberUsPerMsg: med(g, qos, name, "subUs"),
            },
          ]),
        );
        for (const peer of ["mosquitto", "aedes"]) {
          const lg = med(g, qos, LEAFGATE, "rate");
          const pv = med(g, qos, peer, "rate");
          console.log(
            `${g} QoS ${qos} ${LEAFGATE} / ${peer}: msgs/s ${ratio(lg, pv)}, p99 ${ratio(med(g, qos, LEAFGATE, "p99"), med(g, qos, peer, "p99"))}` +
              (peer === "mosquitto" ? `  (target ${TARGET[qos]})` : ""),
          );
          rows.push({
            scenario,
            unit: "msgs/s",
            leafgate: lg,
            peer,
            peerValue: pv,
            ratio: lg / pv,
            target: peer === "mosquitto" ? TARGET[qos] : null,
            rounds: {
              leafgate: lgRuns.map((r) => r.rate),
              peer: runsOf(g, qos, peer).map((r) => r.rate),
            },
            checks: {
              exactlyOnce: lgRuns.every((r) => r.duplicates === 0 && (qos === 0 || r.lost === 0)),
              inOrder: lgRuns.every((r) => r.reordered === 0),
              qos0Lost: qos === 0 ? lgRuns.map((r) => r.lost) : undefined,
            },
          });
        }
      }
    }
  }
  if (flags.json !== undefined) {
    writeFileSync(
      flags.json,
      `${JSON.stringify({ bench: "mqtt-fan-in", messages: TOTAL, runs: RUNS, rows, cpu, failures }, null, 2)}\n`,
    );
  }
  console.log(`\nbench wall time ${fmt((performance.now() - wallStart) / 1000, 1)} s`);
  if (failures.length > 0) {
    console.log(
      `\nFAILED: QoS 1 must deliver every message once, in order per publisher\n${failures.join("\n")}`,
    );
    process.exit(1);
  }
  process.exit(0);
}

if (process.argv[2] === PUBLISHERS_MODE) {
  await publishersProcess(
    Number(process.argv[3]),
    Number(process.argv[4]) === 1 ? 1 : 0,
    process.argv[5] === "raw" ? "raw" : "mqttjs",
  );
} else {
  await main();
}
