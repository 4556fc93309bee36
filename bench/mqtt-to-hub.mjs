// Benchmark of the walking-skeleton path: mosquitto_pub QoS 1 -> broker -> JetStream.
// Peers run side by side on the same machine with the same client and workload:
//   leafgate       : PUBACK after the SQLite commit, forwarded to a JetStream stream
//   nats-server    : its own MQTT listener, a stream capturing the MQTT subjects
//   mosquitto      : in-memory broker, nothing stored or forwarded (an upper bound)
// The machine is shared and noisy: compare ratios within one run, read medians.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 50_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const PAYLOAD = "x".repeat(90); // 100-byte lines with the counter prefix
const root = new URL("..", import.meta.url).pathname;
const bundle = join(root, "dist/leafgate.mjs");
const work = mkdtempSync(join(tmpdir(), "leafgate-bench-"));
const children = new Set();

process.on("exit", () => {
  for (const c of children) c.kill("SIGKILL");
  rmSync(work, { recursive: true, force: true });
});

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
  child.stdout.on("data", (d) => {
    out += d;
    if (out.length > 1e6) out = out.slice(-1e5);
  });
  child.stderr.on("data", (d) => {
    out += d;
  });
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

function rssMiB(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

async function stop(proc) {
  if (proc.child.exitCode !== null) return;
  const exited = new Promise((r) => proc.child.once("exit", r));
  proc.child.kill("SIGTERM");
  await Promise.race([exited, sleep(5000)]);
  proc.child.kill("SIGKILL");
}

async function startHub(extraConf = "") {
  const port = await freePort();
  const dir = mkdtempSync(join(work, "hub-"));
  const conf = join(dir, "hub.conf");
  writeFileSync(
    conf,
    `listen: 127.0.0.1:${port}\nserver_name: hub\njetstream { store_dir: "${dir}/js" }\n${extraConf}`,
  );
  const proc = start("nats-server", ["-c", conf]);
  const nc = await until(
    () => connect({ servers: `127.0.0.1:${port}` }).catch(() => undefined),
    10_000,
    "nats-server",
  );
  return { proc, port, nc, jsm: await jetstreamManager(nc) };
}

function lines(tag) {
  let s = "";
  for (let i = 0; i < MESSAGES; i++) s += `${tag}${String(i).padStart(8, "0")}${PAYLOAD}\n`;
  return s;
}

/** mosquitto_pub -l -q 1; resolves with the wall time until it exited (every PUBACK in). */
function publish(port, topic, input) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn(
      "mosquitto_pub",
      ["-h", "127.0.0.1", "-p", String(port), "-q", "1", "-t", topic, "-l"],
      {
        stdio: ["pipe", "ignore", "pipe"],
      },
    );
    let err = "";
    p.stderr.on("data", (d) => {
      err += d;
    });
    p.on("exit", (code) =>
      code === 0
        ? resolve(performance.now() - t0)
        : reject(new Error(`mosquitto_pub ${code}: ${err}`)),
    );
    p.stdin.end(input);
  });
}

async function streamCount(jsm, name) {
  return (await jsm.streams.info(name)).state.messages;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function benchLeafgate() {
  const hub = await startHub();
  await hub.jsm.streams.add({ name: "EDGE", subjects: ["edge.>"] });
  const dir = mkdtempSync(join(work, "gw-"));
  const mqttPort = await freePort();
  writeFileSync(
    join(dir, "leafgate.yaml"),
    `gateway: { id: bench, data_dir: ./data }
mqtt: { listeners: [ { host: 127.0.0.1, port: ${mqttPort} } ] }
upstream: { servers: [ "nats://127.0.0.1:${hub.port}" ], stream: EDGE }
http: { enabled: false }
`,
  );
  const t0 = performance.now();
  const gw = start(process.execPath, [
    // As the bundle's shebang and npm start run it; BENCH_SEMI_SPACE=16 is Node's default.
    `--max-semi-space-size=${process.env.BENCH_SEMI_SPACE ?? 1}`,
    bundle,
    "run",
    "-c",
    join(dir, "leafgate.yaml"),
  ]);
  await until(() => gw.output().includes('"msg":"mqtt listening"'), 10_000, "leafgate listening");
  const listenMs = performance.now() - t0;
  const startupMs = Number(
    /"startupMs":(\d+)/.exec(
      await until(() => /"startupMs":\d+/.exec(gw.output())?.[0], 5000, "ready"),
    )[1],
  );
  await until(() => gw.output().includes('"msg":"hub stream found"'), 10_000, "stream check");
  await sleep(1000);
  const idleRss = rssMiB(gw.child.pid);
  const ingest = [];
  const endToEnd = [];
  let peakRss = 0;
  for (let run = 0; run < RUNS; run++) {
    const before = await streamCount(hub.jsm, "EDGE");
    const input = lines(`r${run}-`);
    const t = performance.now();
    const sampler = setInterval(() => {
      peakRss = Math.max(peakRss, rssMiB(gw.child.pid));
    }, 50);
    ingest.push(await publish(mqttPort, "bench/leafgate", input));
    await until(
      async () => (await streamCount(hub.jsm, "EDGE")) >= before + MESSAGES,
      120_000,
      "stream",
    );
    endToEnd.push(performance.now() - t);
    clearInterval(sampler);
  }
  const total = await streamCount(hub.jsm, "EDGE");
  await stop(gw);
  await hub.nc.close();
  await stop(hub.proc);
  return { listenMs, startupMs, idleRss, peakRss, ingest, endToEnd, total };
}

async function benchNatsMqtt() {
  const mqttPort = await freePort();
  const hub = await startHub(`mqtt { listen: 127.0.0.1:${mqttPort} }\n`);
  await hub.jsm.streams.add({ name: "MQTTIN", subjects: ["bench.>"] });
  await until(() => publish(mqttPort, "bench/warmup", "w\n").catch(() => 0), 10_000, "nats mqtt");
  const ingest = [];
  const endToEnd = [];
  let peakRss = 0;
  for (let run = 0; run < RUNS; run++) {
    const before = await streamCount(hub.jsm, "MQTTIN");
    const t = performance.now();
    const sampler = setInterval(() => {
      peakRss = Math.max(peakRss, rssMiB(hub.proc.child.pid));
    }, 50);
    ingest.push(await publish(mqttPort, "bench/nats", lines(`r${run}-`)));
    await until(
      async () => (await streamCount(hub.jsm, "MQTTIN")) >= before + MESSAGES,
      120_000,
      "stream",
    );
    endToEnd.push(performance.now() - t);
    clearInterval(sampler);
  }
  await hub.nc.close();
  await stop(hub.proc);
  return { ingest, endToEnd, peakRss };
}

async function benchMosquitto() {
  const port = await freePort();
  const conf = join(work, "mosquitto.conf");
  writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\n`);
  const broker = start("mosquitto", ["-c", conf]);
  await until(() => publish(port, "warmup", "w\n").catch(() => 0), 10_000, "mosquitto");
  const ingest = [];
  let peakRss = 0;
  for (let run = 0; run < RUNS; run++) {
    const sampler = setInterval(() => {
      peakRss = Math.max(peakRss, rssMiB(broker.child.pid));
    }, 50);
    ingest.push(await publish(port, "bench/mosquitto", lines(`r${run}-`)));
    clearInterval(sampler);
  }
  await stop(broker);
  return { ingest, peakRss };
}

const rate = (ms) => Math.round((MESSAGES / ms) * 1000);

if (spawnSync(process.execPath, [join(root, "build.mjs")], { stdio: "inherit" }).status !== 0) {
  throw new Error("build failed");
}
const bundleKiB = Math.round(statSync(bundle).size / 1024);
console.log(
  `\nworkload: ${RUNS} runs x ${MESSAGES} QoS 1 messages of 100 bytes, mosquitto_pub -l\n`,
);

const lg = await benchLeafgate();
if (lg.total !== RUNS * MESSAGES)
  throw new Error(`leafgate stream holds ${lg.total}, expected ${RUNS * MESSAGES}`);
const nm = await benchNatsMqtt();
const mq = await benchMosquitto();

const rows = [
  ["leafgate (SQLite outbox -> JetStream)", median(lg.ingest), median(lg.endToEnd), lg.peakRss],
  ["nats-server MQTT (-> JetStream stream)", median(nm.ingest), median(nm.endToEnd), nm.peakRss],
  ["mosquitto (in memory, no forwarding)", median(mq.ingest), undefined, mq.peakRss],
];
console.log(
  "peer                                     ingest msg/s   into stream msg/s   peak RSS MiB",
);
for (const [name, ingestMs, e2eMs, rss] of rows) {
  console.log(
    `${name.padEnd(40)} ${String(rate(ingestMs)).padStart(12)}   ${String(e2eMs ? rate(e2eMs) : "-").padStart(17)}   ${rss.toFixed(1).padStart(12)}`,
  );
}
console.log(`
ratios (median ingest): leafgate / nats-server MQTT = ${(median(nm.ingest) / median(lg.ingest)).toFixed(2)}, leafgate / mosquitto = ${(median(mq.ingest) / median(lg.ingest)).toFixed(2)}
ratios (into stream):   leafgate / nats-server MQTT = ${(median(nm.endToEnd) / median(lg.endToEnd)).toFixed(2)}
leafgate: runs ingest ${lg.ingest.map(rate).join(", ")} msg/s; into stream ${lg.endToEnd.map(rate).join(", ")} msg/s
leafgate: spawn to MQTT listening ${lg.listenMs.toFixed(0)} ms (start() itself ${lg.startupMs} ms), idle RSS ${lg.idleRss.toFixed(1)} MiB, bundle ${bundleKiB} KiB`);
process.exit(0);
