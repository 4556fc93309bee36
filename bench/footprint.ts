// Footprint: how small and how quick to start the built bundle is, beside its peers in the same
// run. Idle RSS (leafgate, bare Node, mosquitto), spawn -> MQTT CONNACK (leafgate, bare Node,
// aedes), and leafgate's peak RSS while 1,000 idle MQTT clients are connected and a 1,000,000
// message backlog drains into JetStream. What each row measures and how: docs/bench.md.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Socket, connect as tcpConnect } from "node:net";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as delay } from "node:timers/promises";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect as natsConnect } from "@nats-io/transport-node";
import { stringify } from "yaml";
import { connectClient, createStream } from "../test/helpers/nats-server.js";
import {
  spawnTracked,
  stopProcess,
  type TrackedProcess,
  waitForLine,
} from "../test/helpers/procs.js";
import { waitFor } from "../test/helpers/wait.js";
import { CLOSED_HUB } from "./lib/gateway.js";
import {
  BUNDLE,
  benchArgs,
  benchScript,
  benchWorkDir,
  buildBundle,
  bundleNodeFlags,
  ROOT,
  writeJson,
} from "./lib/harness.js";
import { cpuSeconds, median, RssPeak, rssMiB } from "./lib/measure.js";
import { MosquittoProcess } from "./lib/mosquitto.js";
import { NatsProcess } from "./lib/nats.js";
import { printRows } from "./lib/summary-rows.js";
import type { BenchResult, BenchRow } from "./lib/summary-schema.js";
import { fmt, printTable } from "./lib/table.js";

const ROLE = "--role"; // argv[2] of a client process; argv[3] names the role
const { quick, json } = benchArgs();
/** `--rows idle,spawn,load`: measure only those (to try a change quickly); default all. */
const ROWS_AT = process.argv.indexOf("--rows");
const ROWS = ROWS_AT > 0 ? process.argv[ROWS_AT + 1]!.split(",") : ["idle", "spawn", "load"];
const want = (row: "idle" | "spawn" | "load") => ROWS.includes(row);
const IDLE_ROUNDS = 3;
const SPAWN_ROUNDS = quick ? 5 : 7;
const LOAD_ROUNDS = quick ? 1 : 3;
const BACKLOG = Number(process.env.BENCH_FOOTPRINT_BACKLOG ?? (quick ? 200_000 : 1_000_000));
const CLIENTS = Number(process.env.BENCH_FOOTPRINT_CLIENTS ?? (quick ? 200 : 1000));
/** The issue's targets. */
const TARGET_IDLE_MIB = 45;
const TARGET_SPAWN_MS = 120;
const TARGET_LOAD_MIB = 90;
/** Idle RSS is read once the process has listened this long and RSS stands still. */
const SETTLE_MS = 1000;
const STABLE_POLL_MS = 250;
const STABLE_MIB = 0.25;
const STABLE_DEADLINE_MS = 5000;
/** spawn -> CONNACK: a connect is tried this often until one is accepted. */
const CONNECT_POLL_MS = 2;
const START_TIMEOUT_MS = 20_000;
const RSS_SAMPLE_MS = 50;
/** Backlog fill: raw-socket QoS 1 publishers, each its own process, this many unacked each. */
const FILL_PUBLISHERS = 4;
const FILL_WINDOW = 500;
const PAYLOAD_BYTES = 100;
const SEQ_DIGITS = 8;
/** A payload's `<publisher>|<seq>|` fits in this many bytes. */
const HEAD_BYTES = 16;
/** The gateway's default mqtt.max_connections_per_address is 256: spread over loopback addresses. */
const CLIENTS_PER_ADDRESS = 200;
/** Idle clients connect this many at a time (below the default max_pending_connections, 100). */
const CONNECT_BATCH = 50;
const DRAIN_TIMEOUT_MS = 600_000;
/** Ports for the spawn rounds are drawn from here, below Linux's ephemeral range (32768). */
const PORT_LOW = 10_000;
const PORT_SPAN = 20_000;
const STREAM = "EDGE";

/**
 * The Node flags leafgate and bare Node run with: the bundle's shebang's, or
 * BENCH_FOOTPRINT_FLAGS (space-separated; "" for none) to try others without a rebuild.
 */
const nodeFlags = (): string[] =>
  process.env.BENCH_FOOTPRINT_FLAGS === undefined
    ? bundleNodeFlags()
    : process.env.BENCH_FOOTPRINT_FLAGS.split(/\s+/).filter((f) => f !== "");

// --- raw MQTT 3.1.1: the idle clients and the backlog publishers stay cheap --------------

const PACKET = { connack: 2, puback: 4, suback: 9, pingresp: 13 } as const;

function remainingLength(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

const str = (s: string) => {
  const b = Buffer.from(s);
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
};

const packet = (first: number, body: Buffer) =>
  Buffer.concat([Buffer.from([first, ...remainingLength(body.length)]), body]);

/** CONNECT, MQTT 3.1.1, clean session, keepalive 0 (no PINGREQs: the clients stay idle). */
const connectPacket = (clientId: string) =>
  packet(0x10, Buffer.concat([str("MQTT"), Buffer.from([4, 0x02, 0, 0]), str(clientId)]));

const subscribePacket = (id: number, topic: string) =>
  packet(0x82, Buffer.concat([Buffer.from([id >> 8, id & 0xff]), str(topic), Buffer.from([1])]));

const publishQos1 = (topic: Buffer, id: number, payload: Buffer) =>
  packet(0x32, Buffer.concat([topic, Buffer.from([id >> 8, id & 0xff]), payload]));

/** Calls `onPacket(type, body)` for each whole packet read from `socket`. */
function readPackets(socket: Socket, onPacket: (type: number, body: Buffer) => void): void {
  let buf: Buffer = Buffer.alloc(0);
  socket.on("data", (chunk: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    for (;;) {
      let len = 0;
      let mul = 1;
      let i = 1;
      for (; i < buf.length && i <= 4; i++) {
        len += (buf[i]! & 0x7f) * mul;
        mul *= 128;
        if ((buf[i]! & 0x80) === 0) break;
      }
      if (i >= buf.length || buf.length < i + 1 + len) return;
      onPacket(buf[0]! >> 4, buf.subarray(i + 1, i + 1 + len));
      buf = buf.subarray(i + 1 + len);
    }
  });
}

/** Connects; resolves once CONNACK accepted the session. */
function mqttConnect(port: number, clientId: string, localAddress?: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = tcpConnect({ port, host: "127.0.0.1", ...(localAddress ? { localAddress } : {}) });
    s.setNoDelay(true);
    s.once("error", reject);
    s.once("close", () => reject(new Error(`${clientId}: closed before CONNACK`)));
    s.once("connect", () => s.write(connectPacket(clientId)));
    const onConnack = (type: number, body: Buffer) => {
      if (type !== PACKET.connack) return;
      if (body[1] !== 0) reject(new Error(`${clientId}: CONNACK return code ${body[1]}`));
      else resolve(s);
    };
    readPackets(s, onConnack);
  });
}

/** 100 bytes: `<publisher>|<seq>|xxx...`. */
const payloadOf = (pub: number, seq: number) =>
  Buffer.from(
    `${pub}|${String(seq).padStart(SEQ_DIGITS, "0")}|${"x".repeat(PAYLOAD_BYTES)}`,
  ).subarray(0, PAYLOAD_BYTES);

/**
 * Role `fill`: one connection publishing `count` QoS 1 messages on bench/fill/<pub>, at most
 * FILL_WINDOW unacknowledged; prints `done <acked> <cpuS>` and exits.
 */
async function fillRole(port: number, pub: number, count: number): Promise<void> {
  const s = await mqttConnect(port, `footprint-fill-${pub}`);
  const topic = str(`bench/fill/${pub}`);
  const inUse = new Uint8Array(65_536);
  let nextId = 1;
  let sent = 0;
  let acked = 0;
  const takeId = () => {
    while (inUse[nextId]) nextId = (nextId % 65_535) + 1;
    const id = nextId;
    inUse[id] = 1;
    nextId = (nextId % 65_535) + 1;
    return id;
  };
  await new Promise<void>((resolve, reject) => {
    const send = () => {
      const out: Buffer[] = [];
      while (sent - acked < FILL_WINDOW && sent < count) {
        out.push(publishQos1(topic, takeId(), payloadOf(pub, sent++)));
      }
      if (out.length) s.write(Buffer.concat(out));
    };
    readPackets(s, (type, body) => {
      if (type !== PACKET.puback) return;
      inUse[(body[0]! << 8) | body[1]!] = 0;
      if (++acked === count) resolve();
      else send();
    });
    s.once("close", () => reject(new Error(`fill ${pub}: connection closed at ${acked}`)));
    send();
  });
  s.removeAllListeners("close");
  s.end();
  const { user, system } = process.cpuUsage();
  console.log(`done ${acked} ${(user + system) / 1e6}`);
}

/**
 * Role `clients`: `n` idle connections, each subscribed to its own topic, spread over
 * loopback source addresses; prints `ready <n>`, then answers each `status` line on stdin
 * with `connected <count still open>`.
 */
async function clientsRole(port: number, n: number): Promise<void> {
  const sockets: Socket[] = [];
  let open = 0;
  for (let i = 0; i < n; i += CONNECT_BATCH) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + CONNECT_BATCH); j++) {
      const address = `127.0.0.${1 + Math.floor(j / CLIENTS_PER_ADDRESS)}`;
      batch.push(
        mqttConnect(port, `footprint-idle-${j}`, address).then(
          (s) =>
            new Promise<void>((resolve) => {
              readPackets(s, (type) => {
                if (type === PACKET.suback) resolve();
              });
              s.write(subscribePacket(1, `bench/idle/${j}/cmd`));
              sockets.push(s);
              open++;
              s.once("close", () => open--);
            }),
        ),
      );
    }
    await Promise.all(batch);
  }
  console.log(`ready ${open}`);
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === "status") console.log(`connected ${open}`);
  }
  for (const s of sockets) s.destroy();
}

// --- the processes measured -------------------------------------------------------------

/** The env without LEAFGATE_* (the gateway takes each as a setting). */
const cleanEnv = () =>
  Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("LEAFGATE_")));

/**
 * The shipped defaults but for where things listen (a shared machine: free ports instead of
 * 1883/4222/8222) and the hub, a closed port (the default, 127.0.0.1:4223, may be someone's).
 */
function gatewayConfig(dir: string, mqttPort: number, hub = CLOSED_HUB): string {
  const file = join(dir, "leafgate.yaml");
  writeFileSync(
    file,
    stringify({
      mqtt: { listeners: [{ port: mqttPort }] },
      nats: { listeners: [{ port: 0 }] },
      http: { port: 0 },
      upstream: { servers: [hub] },
    }),
  );
  return file;
}

/** The bundle as its shebang runs it, in `dir` (so ./data is there). */
function spawnGateway(dir: string, file: string): Promise<TrackedProcess> {
  return spawnTracked(process.execPath, [...nodeFlags(), BUNDLE, "run", "-c", file], {
    cwd: dir,
    env: cleanEnv(),
  });
}

const logged = (proc: TrackedProcess, msg: string) =>
  waitForLine(proc, (l) => l.includes(`"msg":"${msg}"`), START_TIMEOUT_MS);

const portIn = (line: string) => (JSON.parse(line) as { port: number }).port;

/** A port nobody listens on now, below the ephemeral range (as bench/lib/mosquitto.ts). */
async function freePort(): Promise<number> {
  for (;;) {
    const port = PORT_LOW + Math.floor(Math.random() * PORT_SPAN);
    const ok = await new Promise<boolean>((resolve) => {
      const srv = createServer();
      srv.once("error", () => resolve(false));
      srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
    });
    if (ok) return port;
  }
}

/** RSS once `pid` has settled: SETTLE_MS, then until two reads STABLE_POLL_MS apart agree. */
async function settledRss(pid: number): Promise<number> {
  await delay(SETTLE_MS);
  const deadline = Date.now() + STABLE_DEADLINE_MS;
  let last = rssMiB(pid);
  for (;;) {
    await delay(STABLE_POLL_MS);
    const now = rssMiB(pid);
    if (Math.abs(now - last) <= STABLE_MIB || Date.now() > deadline) return now;
    last = now;
  }
}

/** A CONNECT that CONNACKs with 0 on `port`, retried every CONNECT_POLL_MS until one does. */
async function firstConnack(port: number, exited: () => boolean): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const s = await mqttConnect(port, "footprint-probe").catch(() => undefined);
    if (s) {
      s.destroy();
      return;
    }
    if (exited()) throw new Error("the process exited before it listened");
    if (Date.now() > deadline) throw new Error(`nothing accepted on ${port}`);
    await delay(CONNECT_POLL_MS);
  }
}

/** Bare Node as a server: accepts, answers any CONNECT with CONNACK 0. */
const bareServer = (port: number) =>
  `require("net").createServer((s) => s.once("data", () => s.write(Buffer.from([32, 2, 0, 0]))))` +
  `.listen(${port}, "127.0.0.1")`;

type Starter = (port: number) => Promise<TrackedProcess>;

/**
 * leafgate's data directory for the spawn rounds, made by a first start that is not measured:
 * each measured start opens an existing database, as every start but a first install does.
 */
async function spawnDir(): Promise<string> {
  const dir = mkdtempSync(join(work, "spawn-"));
  const proc = await spawnGateway(dir, gatewayConfig(dir, 0));
  await logged(proc, "ready");
  await stopProcess(proc);
  return dir;
}

const spawnStarters = (leafgateDir: string): [string, Starter][] => [
  ["leafgate", (port) => spawnGateway(leafgateDir, gatewayConfig(leafgateDir, port))],
  ["bare Node", (port) => spawnTracked(process.execPath, [...nodeFlags(), "-e", bareServer(port)])],
  ["aedes", (port) => spawnTracked(process.execPath, [benchScript("aedes-server"), String(port)])],
];

/**
 * ms from spawn to the first CONNACK, and the CPU ms the process had used by then (steadier
 * than the wall time on a shared machine; /proc counts it in 10 ms ticks).
 */
async function spawnToConnack(start: Starter): Promise<{ ms: number; cpuMs: number }> {
  const port = await freePort();
  const t0 = performance.now();
  const proc = await start(port);
  try {
    await firstConnack(port, () => proc.exitInfo !== undefined);
    return { ms: performance.now() - t0, cpuMs: cpuSeconds(proc.pid) * 1000 };
  } finally {
    await stopProcess(proc);
  }
}

const idleStarters: [string, () => Promise<{ pid: number; stop(): Promise<unknown> }>][] = [
  [
    "leafgate",
    async () => {
      const dir = mkdtempSync(join(work, "idle-"));
      const proc = await spawnGateway(dir, gatewayConfig(dir, 0));
      await logged(proc, "ready");
      return { pid: proc.pid, stop: () => stopProcess(proc) };
    },
  ],
  [
    "bare Node",
    async () => {
      const proc = await spawnTracked(process.execPath, [
        ...nodeFlags(),
        "-e",
        "setInterval(() => {}, 1e9)",
      ]);
      return { pid: proc.pid, stop: () => stopProcess(proc) };
    },
  ],
  [
    "mosquitto",
    async () => {
      const dir = mkdtempSync(join(work, "mosq-"));
      const conf = join(dir, "mosquitto.conf");
      const m = new MosquittoProcess((port) => {
        writeFileSync(
          conf,
          `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\n`,
        );
        return conf;
      });
      await m.start();
      return { pid: m.pid, stop: () => m.stop() };
    },
  ],
];

// --- RSS under load ----------------------------------------------------------------------

interface LoadRound {
  peakMiB: number;
  idleMiB: number;
  beforeDrainMiB: number;
  fillS: number;
  fillPeakMiB: number;
  fillCpuShare: number;
  fillGatewayUsPerMsg: number;
  drainS: number;
  drainCpuUsPerMsg: number;
  inStream: number;
  distinct: number;
  inOrder: boolean;
  clientsConnected: number;
}

async function child(role: string, ...args: (string | number)[]): Promise<TrackedProcess> {
  const argv = [process.argv[1]!, ROLE, role, ...args.map(String)];
  return spawnTracked(process.execPath, argv, { stdin: "pipe" });
}

/** Reads the whole stream: distinct (publisher, seq) pairs, and whether each publisher's are in order. */
async function readStream(
  url: string,
): Promise<{ count: number; distinct: number; inOrder: boolean }> {
  const nc = await natsConnect({ servers: url });
  try {
    const per = Math.ceil(BACKLOG / FILL_PUBLISHERS);
    const seen = Array.from({ length: FILL_PUBLISHERS }, () => new Uint8Array(per));
    const last = new Array<number>(FILL_PUBLISHERS).fill(-1);
    let count = 0;
    let distinct = 0;
    let inOrder = true;
    const consumer = await jetstream(nc).consumers.get(STREAM);
    const iter = await consumer.consume({ max_messages: 5000 });
    const timer = setTimeout(() => void iter.close(), DRAIN_TIMEOUT_MS);
    try {
      for await (const m of iter) {
        count++;
        const s = Buffer.from(m.data.buffer, m.data.byteOffset, HEAD_BYTES).toString("latin1");
        const [p, q] = s.split("|");
        const pub = Number(p);
        const seq = Number(q);
        if (seq !== last[pub]! + 1) inOrder = false;
        last[pub] = seq;
        if (seen[pub] && seq < per && !seen[pub]![seq]) {
          seen[pub]![seq] = 1;
          distinct++;
        }
        if (m.info.pending === 0) break;
      }
    } finally {
      clearTimeout(timer);
      await iter.close();
    }
    return { count, distinct, inOrder };
  } finally {
    await nc.close();
  }
}

async function streamCount(url: string): Promise<number | undefined> {
  const nc = await natsConnect({ servers: url, reconnect: false, timeout: 2000 }).catch(
    () => undefined,
  );
  if (!nc) return undefined;
  try {
    return (await (await jetstreamManager(nc)).streams.info(STREAM)).state.messages;
  } catch {
    return undefined;
  } finally {
    await nc.close().catch(() => {});
  }
}

async function loadRound(): Promise<LoadRound> {
  const dir = mkdtempSync(join(work, "load-"));
  const hub = new NatsProcess({ serverName: "hub", storeDir: join(dir, "hub-js") });
  // The hub existed (with its stream on the export subjects) and went away before the backlog.
  await hub.start();
  const nc = await connectClient(hub.url, { timeout: 5000 });
  await waitFor(() => createStream(nc, STREAM, ["edge.>"]).then(() => true), {
    timeoutMs: 10_000,
    intervalMs: 100,
    message: `stream ${STREAM}`,
  });
  await nc.close();
  await hub.kill();
  const procs: TrackedProcess[] = [];
  const gw = await spawnGateway(dir, gatewayConfig(dir, 0, hub.url));
  procs.push(gw);
  try {
    const mqttPort = portIn(await logged(gw, "mqtt listening"));
    const httpPort = portIn(await logged(gw, "http monitoring listening"));
    await logged(gw, "ready");
    const idleMiB = rssMiB(gw.pid);
    const fillPeak = new RssPeak(() => gw.pid, RSS_SAMPLE_MS);

    // The backlog, through MQTT: FILL_PUBLISHERS processes, each its share.
    const per = Math.ceil(BACKLOG / FILL_PUBLISHERS);
    const t0 = performance.now();
    const cpu0 = cpuSeconds(gw.pid);
    const fillers = await Promise.all(
      Array.from({ length: FILL_PUBLISHERS }, (_, i) =>
        child("fill", mqttPort, i, Math.min(per, BACKLOG - i * per)),
      ),
    );
    procs.push(...fillers);
    const done = await Promise.all(
      fillers.map((f) => waitForLine(f, (l) => l.startsWith("done "), DRAIN_TIMEOUT_MS)),
    );
    const fillS = (performance.now() - t0) / 1000;
    const fillPeakMiB = fillPeak.stop();
    const gwFillCpu = cpuSeconds(gw.pid) - cpu0;
    const fillersCpu = done.reduce((sum, l) => sum + Number(l.split(" ")[2]), 0);
    const pending = (
      (await (await fetch(`http://127.0.0.1:${httpPort}/status`)).json()) as {
        outbox: { pending: number };
      }
    ).outbox.pending;
    if (pending !== BACKLOG) throw new Error(`outbox holds ${pending}, not ${BACKLOG}`);

    // The idle clients, then the hub comes back.
    const clients = await child("clients", mqttPort, CLIENTS);
    procs.push(clients);
    await waitForLine(clients, (l) => l === `ready ${CLIENTS}`, START_TIMEOUT_MS * 3);
    const beforeDrainMiB = rssMiB(gw.pid);
    const cpu1 = cpuSeconds(gw.pid);
    const peak = new RssPeak(() => gw.pid, RSS_SAMPLE_MS);
    const td = performance.now();
    await hub.start();
    await waitFor(async () => ((await streamCount(hub.url)) ?? 0) >= BACKLOG, {
      timeoutMs: DRAIN_TIMEOUT_MS,
      intervalMs: 200,
      message: `stream to hold ${BACKLOG}`,
    });
    const drainS = (performance.now() - td) / 1000;
    const drainCpu = cpuSeconds(gw.pid) - cpu1;
    const peakMiB = peak.stop();

    clients.child.stdin!.write("status\n");
    const status = await waitForLine(clients, (l) => l.startsWith("connected "), 5000);
    const read = await readStream(hub.url);
    return {
      peakMiB,
      idleMiB,
      beforeDrainMiB,
      fillS,
      fillPeakMiB,
      fillCpuShare: fillersCpu / fillS,
      fillGatewayUsPerMsg: (gwFillCpu * 1e6) / BACKLOG,
      drainS,
      drainCpuUsPerMsg: (drainCpu * 1e6) / BACKLOG,
      inStream: read.count,
      distinct: read.distinct,
      inOrder: read.inOrder,
      clientsConnected: Number(status.split(" ")[1]),
    };
  } finally {
    for (const p of procs.reverse()) await stopProcess(p, { signal: "SIGKILL" });
    await hub.kill();
    await hub.stop();
  }
}

// --- --modules: what each dependency costs on its own ------------------------------------

const MODULE_ROUNDS = 5;

/**
 * A fresh Node (the bundle's flags) that runs `code`, then reports the time `code` took and
 * its RSS and heap after full GCs; `code` may await.
 */
function costOf(code: string): { ms: number; rss: number; heap: number } {
  const script =
    `const t0 = performance.now(); ${code}; const ms = performance.now() - t0;` +
    "process.on('exit', () => { gc(); gc(); const m = process.memoryUsage();" +
    " const mib = (b) => b / 1048576;" +
    " process.stderr.write('\\ncost ' + JSON.stringify({ ms, rss: mib(m.rss), heap: mib(m.heapUsed) }) + '\\n'); });";
  const r = spawnSync(
    process.execPath,
    [...nodeFlags(), "--expose-gc", "--input-type=module", "-e", script],
    { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "ignore", "pipe"] },
  );
  const line = r.stderr.split("\n").find((l) => l.startsWith("cost "));
  if (!line) throw new Error(`${code}: ${r.stderr}`);
  return JSON.parse(line.slice("cost ".length)) as { ms: number; rss: number; heap: number };
}

/**
 * Each dependency in package.json imported alone from node_modules (as the source resolves
 * it: the bundle inlines the JS ones, so their cost there is somewhat lower), the bundle
 * loaded by `leafgate version` (every top-level import, no gateway started), and a tiny
 * module for the loader's own cost. Medians of MODULE_ROUNDS fresh processes.
 */
function moduleCosts(): void {
  const deps = Object.keys(
    (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { dependencies: object })
      .dependencies,
  );
  const tiny = join(work, "tiny.mjs");
  writeFileSync(tiny, "export const x = 1;\n");
  const cases: [string, string][] = [
    ["nothing", ""],
    ["a one-line module (the loader)", `await import(${JSON.stringify(tiny)})`],
    ...deps.map((d): [string, string] => [d, `await import(${JSON.stringify(d)})`]),
    ["all of them", `await Promise.all(${JSON.stringify(deps)}.map((d) => import(d)))`],
    [
      "dist/leafgate.mjs version",
      `process.argv.push(${JSON.stringify(BUNDLE)}, "version"); await import(${JSON.stringify(BUNDLE)})`,
    ],
  ];
  const rows = cases.map(([name, code]) => {
    const runs = Array.from({ length: MODULE_ROUNDS }, () => costOf(code));
    return {
      name,
      ms: median(runs.map((r) => r.ms)),
      rss: median(runs.map((r) => r.rss)),
      heap: median(runs.map((r) => r.heap)),
    };
  });
  const base = rows[0]!;
  console.log(
    `node ${nodeFlags().join(" ")} --expose-gc, one process per import, medians of ${MODULE_ROUNDS}\n`,
  );
  printTable(
    [
      { title: "import", left: true },
      { title: "ms" },
      { title: "RSS MiB after gc" },
      { title: "+ RSS" },
      { title: "heap MiB" },
      { title: "+ heap" },
    ],
    rows.map((r) => [
      r.name,
      fmt(r.ms, 1),
      fmt(r.rss, 1),
      fmt(r.rss - base.rss, 1),
      fmt(r.heap, 1),
      fmt(r.heap - base.heap, 1),
    ]),
  );
  if (json) writeJson(json, { bench: "footprint-modules", rows });
}

// --- main -------------------------------------------------------------------------------

if (process.argv[2] === ROLE) {
  const [role, port, ...rest] = process.argv.slice(3);
  const n = rest.map(Number);
  if (role === "fill") await fillRole(Number(port), n[0]!, n[1]!);
  else if (role === "clients") await clientsRole(Number(port), n[0]!);
  else throw new Error(`unknown role ${role}`);
  process.exit(0);
}

const work = benchWorkDir("footprint");
buildBundle();
if (process.argv.includes("--modules")) {
  moduleCosts();
  process.exit(0);
}
const flags = nodeFlags();
console.log(
  `footprint: node ${flags.join(" ")} dist/leafgate.mjs run (the shipped defaults, free ports, hub away)` +
    `${process.env.BENCH_FOOTPRINT_FLAGS === undefined ? "" : " [flags from BENCH_FOOTPRINT_FLAGS]"}` +
    `${quick ? ", --quick" : ""}\n`,
);

const idle = new Map<string, number[]>(idleStarters.map(([n]) => [n, []]));
for (let r = 0; want("idle") && r < IDLE_ROUNDS; r++) {
  for (const [name, start] of idleStarters) {
    const p = await start();
    try {
      idle.get(name)!.push(await settledRss(p.pid));
    } finally {
      await p.stop();
    }
  }
  console.log(
    `  idle RSS round ${r + 1}: ${idleStarters.map(([n]) => `${n} ${fmt(idle.get(n)!.at(-1), 1)} MiB`).join(", ")}`,
  );
}

const starters = want("spawn") ? spawnStarters(await spawnDir()) : [];
const spawned = new Map<string, number[]>(starters.map(([n]) => [n, []]));
const spawnCpu = new Map<string, number[]>(starters.map(([n]) => [n, []]));
for (let r = 0; r < SPAWN_ROUNDS; r++) {
  for (const [name, start] of starters) {
    const { ms, cpuMs } = await spawnToConnack(start);
    spawned.get(name)!.push(ms);
    spawnCpu.get(name)!.push(cpuMs);
  }
  const figures = starters.map(
    ([n]) => `${n} ${fmt(spawned.get(n)!.at(-1))} ms (CPU ${fmt(spawnCpu.get(n)!.at(-1))})`,
  );
  console.log(`  spawn -> CONNACK round ${r + 1}: ${figures.join(", ")}`);
}

const loads: LoadRound[] = [];
for (let r = 0; want("load") && r < LOAD_ROUNDS; r++) {
  const l = await loadRound();
  loads.push(l);
  console.log(
    `  load round ${r + 1}: peak ${fmt(l.peakMiB, 1)} MiB (idle ${fmt(l.idleMiB, 1)}, ${CLIENTS} clients + ${BACKLOG} buffered ${fmt(l.beforeDrainMiB, 1)});` +
      ` fill ${fmt(l.fillS, 1)} s (peak ${fmt(l.fillPeakMiB, 1)} MiB, publishers ${fmt(100 * l.fillCpuShare)}% of a core), drain ${fmt(l.drainS, 1)} s (${fmt(l.drainCpuUsPerMsg, 1)} µs CPU/msg);` +
      ` stream ${l.inStream}, distinct ${l.distinct}, in order ${l.inOrder}, clients still connected ${l.clientsConnected}`,
  );
}

const med = (name: string, m: Map<string, number[]>) => median(m.get(name)!);
const rowOf = (
  id: string,
  scenario: string,
  unit: string,
  m: Map<string, number[]>,
  target: number,
  peers: string[],
  note: string,
): BenchRow => {
  const lg = med("leafgate", m);
  const [first, ...rest] = peers.map((p) => ({
    peer: p,
    peerValue: med(p, m),
    ratio: lg / med(p, m),
    rounds: m.get(p)!,
  }));
  return {
    id,
    scenario,
    unit,
    leafgate: lg,
    peer: first!.peer,
    peerValue: first!.peerValue,
    ratio: first!.ratio,
    target,
    targetOf: "leafgate",
    better: "lower",
    rounds: { leafgate: m.get("leafgate")!, peer: first!.rounds },
    checks: {},
    others: rest,
    note,
  };
};

const exactlyOnce = loads.every((l) => l.inStream === BACKLOG && l.distinct === BACKLOG);
const inOrder = loads.every((l) => l.inOrder);
const clientsStayed = loads.every((l) => l.clientsConnected === CLIENTS);
const rows: BenchRow[] = [];
if (want("idle")) {
  rows.push(
    rowOf(
      "idle-rss",
      "idle RSS",
      "MiB",
      idle,
      TARGET_IDLE_MIB,
      ["bare Node", "mosquitto"],
      `node ${flags.join(" ") || "(no flags)"}; settled after ready`,
    ),
  );
}
if (want("load")) {
  rows.push({
    id: "rss-load",
    scenario: `RSS ${CLIENTS} clients + ${BACKLOG >= 1e6 ? `${BACKLOG / 1e6}M` : `${BACKLOG / 1e3}k`} drain`,
    unit: "MiB",
    leafgate: median(loads.map((l) => l.peakMiB)),
    peer: null,
    peerValue: null,
    ratio: null,
    target: TARGET_LOAD_MIB,
    targetOf: "leafgate",
    better: "lower",
    rounds: { leafgate: loads.map((l) => l.peakMiB), peer: [] },
    checks: { exactlyOnce, inOrder, clientsStayed },
    note:
      `peak from hub start to all in the stream; before the drain ${fmt(median(loads.map((l) => l.beforeDrainMiB)), 1)} MiB,` +
      ` fill peak ${fmt(median(loads.map((l) => l.fillPeakMiB)), 1)} MiB, drain ${fmt(median(loads.map((l) => l.drainS)), 1)} s`,
  });
}
if (want("spawn")) {
  rows.push(
    rowOf(
      "spawn-listening",
      "spawn -> MQTT listening",
      "ms",
      spawned,
      TARGET_SPAWN_MS,
      ["bare Node", "aedes"],
      `to the first CONNACK; CPU ms by then ${[...spawnCpu].map(([n, xs]) => `${n} ${fmt(median(xs))}`).join(", ")}`,
    ),
  );
}

console.log();
printRows("footprint", rows);

const result: BenchResult = {
  bench: "footprint",
  quick,
  rows,
  cpu: {
    spawnCpuMs: Object.fromEntries([...spawnCpu].map(([n, xs]) => [n, median(xs)])),
    drainGatewayUsPerMsg: median(loads.map((l) => l.drainCpuUsPerMsg)),
    fillGatewayUsPerMsg: median(loads.map((l) => l.fillGatewayUsPerMsg)),
    fillPublishersCoreShare: median(loads.map((l) => l.fillCpuShare)),
  },
};
if (json) writeJson(json, result);
const failed = !exactlyOnce || !inOrder || !clientsStayed;
if (failed) {
  console.log(
    `\n!!! load: the stream must hold each of ${BACKLOG} messages once, in order, with every client connected`,
  );
}
process.exit(failed ? 1 : 0);
