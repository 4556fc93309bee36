// Fan-in benchmark: 50 MQTT 3.1.1 publishers -> 1 subscriber, 100-byte messages, QoS 0 and 1.
// Brokers side by side on this machine, same clients and workload, a fresh broker each run:
//   leafgate                         : default export `>`: each QoS 1 message is committed to
//                                      the SQLite outbox before PUBACK (upstream is a closed
//                                      port, so nothing is forwarded; the outbox only grows)
//   leafgate (local only, no outbox) : upstream.export narrowed to `nothing.>`: the bench
//                                      topics stay on the local bus, nothing is stored
//   mosquitto                        : in memory (persistence false)
//   aedes 1.x                        : in-memory persistence, in a child Node process
//                                      (bench/aedes-server.mjs) with its own event loop
// Outbound (broker -> subscriber) limits: leafgate's default window of 1000 unacked QoS 1
// messages, mosquitto's max_inflight_messages set to the same 1000 (its default is 20); aedes
// has no window. The queue behind the window is raised on leafgate and mosquitto (defaults
// 1000) to hold a whole run, so a subscriber that falls behind is queued for, not dropped.
//
// Clients: mqtt.js 5, protocol 3.1.1, clean session, TCP_NODELAY (so Nagle's algorithm does
// not add to the latency figures). The subscriber (bench/fanin/+) runs in this process; the 50
// publishers (one connection and topic bench/fanin/<i> each) run in a child process, this
// file with --publishers. With all 51 clients in one process, the subscriber's reads and
// PUBACKs waited behind the publishers' work on the shared event loop (that process at
// 75-110% of a core), and the latency measured the bench's turnaround (mosquitto QoS 1: p50
// 29 and 58 ms, 30k and 15k msgs/s, in one process; p50 3 ms, 28k msgs/s split). Every payload carries process.hrtime.bigint() at publish (CLOCK_MONOTONIC, the same
// clock in both processes), its publisher and sequence number; the subscriber takes the
// latency on receipt and counts duplicates. Pacing:
//   QoS 1: each publisher keeps at most BENCH_FANIN_WINDOW (default 20, libmosquitto's and
//          paho's default max inflight) PUBLISHes unacknowledged, sending the next on each
//          PUBACK. mqtt.js itself has no outbound window in 3.1.1: without one the whole run
//          would be written at once and the latency would measure that queue.
//   QoS 0: each publisher writes a batch of BENCH_FANIN_WINDOW messages, waits until its
//          socket accepted the last one (mqtt.js calls back at once, or on `drain`), then
//          yields to the event loop. Client-side buffering is bounded by the socket buffers;
//          the publishers run open loop, so QoS 0 latency is latency under saturation: it
//          shows how much each broker buffers in front of a subscriber that cannot keep up.
// msgs/s = distinct messages received / (first publish -> last receipt). QoS 1 must deliver
// every message (asserted: the bench goes on, then exits 1); QoS 0 losses are reported. CPU%
// is the share of one core each process used during the run (broker, publishers' process,
// subscriber's process), to see which was the bottleneck. The machine is shared and noisy:
// runs are interleaved across brokers; read the medians and ratios.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep, setImmediate as yieldLoop } from "node:timers/promises";
import { connect as mqttConnect } from "mqtt";

const PUBLISHERS = 50;
const PER_PUBLISHER = Math.ceil(Number(process.env.BENCH_FANIN_MESSAGES ?? 100_000) / PUBLISHERS);
const TOTAL = PER_PUBLISHER * PUBLISHERS;
const RUNS = Number(process.env.BENCH_FANIN_RUNS ?? 3);
const WINDOW = Number(process.env.BENCH_FANIN_WINDOW ?? 20);
const PAYLOAD_BYTES = 100;
const QUEUE_LIMIT = TOTAL * 2; // broker-side per-session queue: never the limiting factor
// After the last publish, a run ends when nothing more arrives for this long: QoS 0 losses
// are then counted; at QoS 1 it is a failure (a stall or a drop), not a wait to the timeout.
const QUIET_MS = { 0: 1000, 1: 5000 };
const RUN_TIMEOUT_MS = 120_000;
const CLK_TCK = 100; // /proc/<pid>/stat ticks per second (getconf CLK_TCK on Linux)
const PUBLISHERS_MODE = "--publishers"; // argv[2] of the publishers' child process
const root = new URL("..", import.meta.url).pathname;
const bundle = join(root, "dist/leafgate.mjs");
const self = new URL(import.meta.url).pathname;
const children = new Set();
const clients = new Set();
let work; // temp dir of the main process

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function start(cmd, args, opts = {}) {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...opts });
  children.add(child);
  let out = "";
  const append = (d) => {
    out += d;
    if (out.length > 1e6) out = out.slice(-1e5);
  };
  child.stdout.on("data", append);
  child.stderr.on("data", append);
  child.on("exit", () => children.delete(child));
  return { child, output: () => out };
}

async function until(fn, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function stop(proc) {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  const exited = new Promise((r) => proc.child.once("exit", r));
  proc.child.kill("SIGTERM");
  await Promise.race([exited, sleep(5000)]);
  proc.child.kill("SIGKILL");
}

function rssMiB(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** User + system CPU seconds of a process so far. */
function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK; // utime, stime
}

const selfCpuSeconds = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
};

function accepts(port) {
  return new Promise((resolve) => {
    const s = tcpConnect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

// --- brokers: start() resolves { port, pid, stop(), rss?() } on a fresh instance -----------

function leafgate(exportAll) {
  return async () => {
    const dir = mkdtempSync(join(work, "gw-"));
    const port = await freePort();
    const file = join(dir, "leafgate.yaml");
    writeFileSync(
      file,
      `gateway: { id: bench, data_dir: ./data }
mqtt:
  listeners: [ { host: 127.0.0.1, port: ${port} } ]
  max_queued_messages: ${QUEUE_LIMIT}
upstream:
  servers: [ "nats://127.0.0.1:1" ]
${exportAll ? "" : '  export: [ "nothing.>" ]\n'}http: { host: 127.0.0.1, port: 0 }
`,
    );
    // Every LEAFGATE_* variable is a setting to the gateway: do not leak the caller's.
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith("LEAFGATE_")),
    );
    // As the bundle's shebang and npm start run it.
    const gw = start(process.execPath, ["--max-semi-space-size=1", bundle, "run", "-c", file], {
      env,
    });
    await until(
      () => {
        if (gw.child.exitCode !== null) throw new Error(`leafgate exited: ${gw.output()}`);
        return gw.output().includes('"msg":"mqtt listening"');
      },
      15_000,
      "leafgate",
    );
    return {
      port,
      pid: gw.child.pid,
      rss: () => rssMiB(gw.child.pid),
      stop: async () => {
        await stop(gw);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  };
}

async function mosquitto() {
  const port = await freePort();
  const conf = join(work, `mosquitto-${port}.conf`);
  writeFileSync(
    conf,
    `listener ${port} 127.0.0.1
allow_anonymous true
persistence false
max_inflight_messages 1000
max_queued_messages ${QUEUE_LIMIT}
`,
  );
  const broker = start("/usr/sbin/mosquitto", ["-c", conf]);
  await until(() => accepts(port), 10_000, "mosquitto");
  return { port, pid: broker.child.pid, stop: () => stop(broker) };
}

async function aedes() {
  const port = await freePort();
  const broker = start(process.execPath, [join(root, "bench/aedes-server.mjs"), String(port)]);
  await until(() => broker.output().includes("aedes listening"), 10_000, "aedes");
  return { port, pid: broker.child.pid, stop: () => stop(broker) };
}

const BROKERS = [
  ["leafgate", leafgate(true)],
  ["leafgate (local only, no outbox)", leafgate(false)],
  ["mosquitto", mosquitto],
  ["aedes", aedes],
];

// --- clients ----------------------------------------------------------------------------

function connectClient(port, clientId) {
  return new Promise((resolve, reject) => {
    const c = mqttConnect({
      host: "127.0.0.1",
      port,
      protocolVersion: 4,
      clientId,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
    });
    clients.add(c);
    let connected = false;
    c.once("connect", () => {
      connected = true;
      c.stream.setNoDelay?.(true);
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

function close(c) {
  clients.delete(c);
  return new Promise((resolve) => c.end(false, {}, () => resolve()));
}

const TEMPLATE = Buffer.alloc(PAYLOAD_BYTES, "x");

function payload(publisher, seq) {
  const p = Buffer.from(TEMPLATE);
  p.writeBigUInt64BE(process.hrtime.bigint(), 0);
  p.writeUInt32BE(publisher, 8);
  p.writeUInt32BE(seq, 12);
  return p;
}

/** QoS 1: a window of WINDOW unacked PUBLISHes; each PUBACK releases the next. */
function publishQos1(client, index) {
  const topic = `bench/fanin/${index}`;
  return new Promise((resolve, reject) => {
    let sent = 0;
    let acked = 0;
    const onAck = (err) => {
      if (err) return reject(err);
      if (++acked === PER_PUBLISHER) resolve();
      else if (sent < PER_PUBLISHER)
        client.publish(topic, payload(index, sent++), { qos: 1 }, onAck);
    };
    while (sent < Math.min(WINDOW, PER_PUBLISHER)) {
      client.publish(topic, payload(index, sent++), { qos: 1 }, onAck);
    }
  });
}

/** QoS 0: batches of WINDOW, each waiting until the socket took the batch's last message. */
async function publishQos0(client, index) {
  const topic = `bench/fanin/${index}`;
  for (let sent = 0; sent < PER_PUBLISHER; ) {
    const last = Math.min(sent + WINDOW, PER_PUBLISHER) - 1;
    for (; sent < last; sent++) client.publish(topic, payload(index, sent), { qos: 0 });
    await new Promise((resolve, reject) =>
      client.publish(topic, payload(index, sent++), { qos: 0 }, (err) =>
        err ? reject(err) : resolve(),
      ),
    );
    await yieldLoop();
  }
}

async function subscribe(port, qos) {
  const c = await connectClient(port, "fanin-sub");
  const granted = await new Promise((resolve, reject) =>
    c.subscribe("bench/fanin/+", { qos }, (err, g) => (err ? reject(err) : resolve(g))),
  );
  if (granted[0].qos !== qos) throw new Error(`subscription granted QoS ${granted[0].qos}`);
  const s = {
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

// --- one run ----------------------------------------------------------------------------

/**
 * The publishers' child process: connects all publishers, says `ready`, publishes on `go`,
 * says `published <hrtime of the first publish>`, and disconnects on `end`.
 */
async function publishersProcess() {
  const port = Number(process.argv[3]);
  const qos = Number(process.argv[4]);
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

async function runOnce(startBroker, qos) {
  const broker = await startBroker();
  let pubs;
  try {
    const sub = await subscribe(broker.port, qos);
    pubs = start(process.execPath, [self, PUBLISHERS_MODE, String(broker.port), String(qos)], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    const line = (re, timeoutMs) =>
      until(
        () => {
          if (pubs.child.exitCode !== null) throw new Error(`publishers exited: ${pubs.output()}`);
          return re.exec(pubs.output());
        },
        timeoutMs,
        `publishers: ${re}`,
      );
    await line(/^ready$/m, 15_000);
    const brokerCpu0 = cpuSeconds(broker.pid);
    const pubCpu0 = cpuSeconds(pubs.child.pid);
    const subCpu0 = selfCpuSeconds();
    pubs.child.stdin.write("go\n");
    const t0 = BigInt((await line(/^published (\d+)$/m, RUN_TIMEOUT_MS))[1]);
    const publishedAtMs = Date.now();
    await until(
      () =>
        sub.received >= TOTAL ||
        Date.now() - Math.max(sub.lastWallMs, publishedAtMs) > QUIET_MS[qos],
      RUN_TIMEOUT_MS,
      `QoS ${qos} messages (${sub.received}/${TOTAL} so far)`,
    );
    const seconds = Number(sub.lastAt - t0) / 1e9;
    const brokerCpu = (cpuSeconds(broker.pid) - brokerCpu0) / seconds;
    const pubCpu = (cpuSeconds(pubs.child.pid) - pubCpu0) / seconds;
    const subCpu = (selfCpuSeconds() - subCpu0) / seconds;
    const rss = broker.rss?.();
    const lat = sub.latencyUs.subarray(0, sub.received).sort();
    const pct = (q) => lat[Math.min(lat.length - 1, Math.floor(q * lat.length))] / 1000;
    pubs.child.stdin.write("end\n");
    await Promise.all([
      close(sub.client),
      until(() => pubs.child.exitCode !== null, 10_000, "publishers to exit"),
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
    if (pubs) await stop(pubs);
    await broker.stop();
  }
}

// --- main -------------------------------------------------------------------------------

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (n, d = 0) => n.toFixed(d);

async function main() {
  work = mkdtempSync(join(tmpdir(), "leafgate-fanin-"));
  process.on("exit", () => {
    for (const c of children) c.kill("SIGKILL");
    rmSync(work, { recursive: true, force: true });
  });
  for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(130));
  const wallStart = performance.now();

  if (spawnSync(process.execPath, [join(root, "build.mjs")], { stdio: "inherit" }).status !== 0) {
    throw new Error("build failed");
  }
  console.log(
    `\nfan-in: ${PUBLISHERS} publishers x ${PER_PUBLISHER} messages of ${PAYLOAD_BYTES} bytes -> 1 subscriber, ` +
      `MQTT 3.1.1, window ${WINDOW}, ${RUNS} runs per broker and QoS, interleaved\n`,
  );
  console.log(
    "run QoS broker                              msgs/s   p50 ms   p99 ms   lost  dup  broker CPU  pubs CPU  sub CPU  broker RSS",
  );
  const results = new Map(); // `${qos} ${name}` -> run results
  const failures = []; // QoS 1 runs that did not deliver every message
  for (let run = 1; run <= RUNS; run++) {
    for (const qos of [0, 1]) {
      for (const [name, startBroker] of BROKERS) {
        const r = await runOnce(startBroker, qos);
        const key = `${qos} ${name}`;
        results.set(key, [...(results.get(key) ?? []), r]);
        if (qos === 1 && r.lost !== 0) {
          failures.push(
            `run ${run} QoS 1 ${name}: subscriber received ${TOTAL - r.lost} of ${TOTAL}`,
          );
        }
        console.log(
          `${String(run).padStart(3)} ${String(qos).padStart(3)} ${name.padEnd(33)} ${fmt(r.rate).padStart(9)} ${fmt(r.p50, 2).padStart(8)} ${fmt(r.p99, 2).padStart(8)} ${String(r.lost).padStart(6)} ${String(r.duplicates).padStart(4)} ${`${fmt(r.brokerCpu * 100)}%`.padStart(11)} ${`${fmt(r.pubCpu * 100)}%`.padStart(9)} ${`${fmt(r.subCpu * 100)}%`.padStart(8)} ${r.rss === undefined ? "           " : `${fmt(r.rss, 1)} MiB`.padStart(11)}${qos === 1 && r.lost ? "  FAIL: QoS 1 loss" : ""}`,
        );
      }
    }
  }

  console.log(
    "\nmedians                                     msgs/s   p50 ms   p99 ms   lost (sum)",
  );
  const med = (qos, name, field) => median(results.get(`${qos} ${name}`).map((r) => r[field]));
  for (const qos of [0, 1]) {
    for (const [name] of BROKERS) {
      const lost = results.get(`${qos} ${name}`).reduce((a, r) => a + r.lost, 0);
      console.log(
        `QoS ${qos} ${name.padEnd(33)} ${fmt(med(qos, name, "rate")).padStart(9)} ${fmt(med(qos, name, "p50"), 2).padStart(8)} ${fmt(med(qos, name, "p99"), 2).padStart(8)} ${String(lost).padStart(12)}${qos === 1 && lost ? "  (FAILED: QoS 1 loss)" : ""}`,
      );
    }
  }
  console.log("\nratios of medians (msgs/s: higher is better for leafgate; p99: lower is better)");
  for (const qos of [0, 1]) {
    for (const lg of ["leafgate", "leafgate (local only, no outbox)"]) {
      for (const peer of ["mosquitto", "aedes"]) {
        console.log(
          `QoS ${qos} ${lg} / ${peer}: msgs/s ${fmt(med(qos, lg, "rate") / med(qos, peer, "rate"), 2)}, p99 ${fmt(med(qos, lg, "p99") / med(qos, peer, "p99"), 2)}${failures.some((f) => f.includes(` ${lg}:`) || f.includes(` ${peer}:`)) && qos === 1 ? "  (from runs that lost QoS 1 messages)" : ""}`,
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

if (process.argv[2] === PUBLISHERS_MODE) await publishersProcess();
else await main();
