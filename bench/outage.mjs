// Outage benchmark: what reaches the hub when the uplink or the edge process dies mid-stream.
// Part 1 runs the same paced MQTT QoS 1 workload through three stacks and counts, by the
// sequence number in each payload, what arrived at the hub:
//   leafgate        : SQLite outbox -> JetStream stream on a hub nats-server (Nats-Msg-Id dedup)
//   mosquitto bridge: edge mosquitto bridged (topic # out 1, cleansession false) to a hub
//                     mosquitto; a QoS 1 persistent-session subscriber on the hub counts
//   nats leaf + MQTT: edge nats-server (MQTT listener, JetStream) as a leaf node of a hub
//                     nats-server whose stream captures the MQTT subjects
// Variants: kill -9 of the HUB at 30% published, restarted at 70%; kill -9 of the EDGE at
// 50%, restarted at once. Part 2 buffers a backlog in leafgate while its hub is down, then
// starts the hub and measures the drain.
// Every wait has a deadline; every process started here is killed on exit.
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { connect as mqttConnect } from "mqtt";

const N = Number(process.env.BENCH_OUTAGE_MESSAGES ?? 50_000);
const RATE = Number(process.env.BENCH_OUTAGE_RATE ?? 5000); // msgs/s, one publisher
const DRAIN_N = Number(process.env.BENCH_DRAIN_MESSAGES ?? 1_000_000);
const DRAIN_CLIENTS = 4;
const DRAIN_WINDOW = 1000; // unacked QoS 1 messages per drain publisher
const STABLE_MS = 5000;
const root = new URL("..", import.meta.url).pathname;
const bundle = join(root, "dist/leafgate.mjs");
const work = mkdtempSync(join(tmpdir(), "leafgate-outage-"));
const children = new Set();
const clients = new Set();

process.on("exit", () => {
  for (const c of clients) c.end(true);
  for (const c of children) c.kill("SIGKILL");
  rmSync(work, { recursive: true, force: true });
});
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(130));

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

function start(cmd, args) {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let out = "";
  const keep = (d) => {
    out += d;
    if (out.length > 1e6) out = out.slice(-1e5);
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  child.on("exit", () => children.delete(child));
  return { child, output: () => out };
}

async function until(fn, timeoutMs, what, everyMs = 10) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Resolves `p`, or `undefined` after `ms`. */
function within(p, ms) {
  let timer;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise((r) => {
      timer = setTimeout(r, ms);
    }),
  ]);
}

function portOpen(port) {
  return new Promise((resolve) => {
    const s = tcpConnect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

async function killHard(proc) {
  if (!proc || proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  const exited = new Promise((r) => proc.child.once("exit", r));
  proc.child.kill("SIGKILL");
  await within(exited, 5000);
}

function rssMiB(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** A server process with a fixed config file and store dir, restartable on the same ports. */
function server(cmd, conf, readyPort, what) {
  let proc;
  return {
    async start() {
      proc = start(cmd, ["-c", conf]);
      await until(() => portOpen(readyPort), 20_000, `${what} on :${readyPort}`, 25);
    },
    kill: () => killHard(proc),
    pid: () => proc?.child.pid,
    output: () => proc?.output() ?? "",
  };
}

const PAD = "x".repeat(100);
/** 100 bytes: `<tag>|<seq>|xxx...`; the tag keeps probes and other runs apart. */
const payload = (tag, seq) => `${tag}|${String(seq).padStart(8, "0")}|${PAD}`.slice(0, 100);

/** Counts deliveries per sequence number of `tag` into `counts`; returns false for others. */
function record(counts, tag, data) {
  const s = Buffer.from(data.buffer, data.byteOffset, Math.min(data.length, 40)).toString("latin1");
  const bar = s.indexOf("|");
  if (bar < 0 || s.slice(0, bar) !== tag) return false;
  const seq = Number(s.slice(bar + 1, bar + 9));
  if (!Number.isInteger(seq) || seq < 0 || seq >= counts.length) return false;
  counts[seq]++;
  return true;
}

/** Stream state on a hub that may be down: a fresh, non-reconnecting connection as needed. */
function hubView(port, stream) {
  let nc;
  let jsm;
  const drop = async () => {
    const old = nc;
    nc = undefined;
    await within(
      Promise.resolve(old?.close()).catch(() => {}),
      1000,
    );
  };
  return {
    async count() {
      try {
        if (!nc || nc.isClosed()) {
          nc = await connect({ servers: `127.0.0.1:${port}`, reconnect: false, timeout: 2000 });
          jsm = await jetstreamManager(nc);
        }
        return (await jsm.streams.info(stream)).state.messages;
      } catch {
        await drop();
        return undefined;
      }
    },
    /** Reads the whole stream with an ordered consumer, counting payloads of `tag`. */
    async collect(counts, tag) {
      await drop();
      const c = await connect({ servers: `127.0.0.1:${port}`, timeout: 5000 });
      try {
        const total = (await (await jetstreamManager(c)).streams.info(stream)).state.messages;
        if (total === 0) return;
        const consumer = await jetstream(c).consumers.get(stream);
        const iter = await consumer.consume({ max_messages: 10_000 });
        const timer = setTimeout(() => iter.stop(), 60_000);
        let n = 0;
        for await (const m of iter) {
          record(counts, tag, m.data);
          if (++n >= total || m.info.pending === 0) break;
        }
        clearTimeout(timer);
        if (n < total) throw new Error(`read ${n} of ${total} messages from ${stream}`);
      } finally {
        await c.close();
      }
    },
    close: drop,
  };
}

function natsHubConf(dir, port, extra = "") {
  const conf = join(dir, "hub.conf");
  writeFileSync(
    conf,
    `listen: 127.0.0.1:${port}\nserver_name: hub\njetstream { store_dir: "${dir}/hub-js" }\n${extra}`,
  );
  return conf;
}

async function addStream(port, name, subjects) {
  const nc = await connect({ servers: `127.0.0.1:${port}`, timeout: 5000 });
  const jsm = await jetstreamManager(nc);
  await until(
    () =>
      jsm.streams.add({ name, subjects }).then(
        () => true,
        () => false,
      ),
    10_000,
    `stream ${name}`,
    100,
  );
  await nc.close();
}

function leafgateConf(dir, mqttPort, hubPort, httpPort) {
  const cfg = join(dir, "leafgate.yaml");
  writeFileSync(
    cfg,
    `gateway: { id: bench, data_dir: ./data }
mqtt: { listeners: [ { host: 127.0.0.1, port: ${mqttPort} } ] }
upstream: { servers: [ "nats://127.0.0.1:${hubPort}" ], stream: EDGE }
http: { enabled: true, host: 127.0.0.1, port: ${httpPort} }
`,
  );
  return cfg;
}

function leafgateProcess(cfg) {
  let proc;
  return {
    async start() {
      proc = start(process.execPath, ["--max-semi-space-size=1", bundle, "run", "-c", cfg]);
      await until(
        () => proc.output().includes('"msg":"mqtt listening"'),
        20_000,
        "leafgate listening",
        25,
      );
    },
    kill: () => killHard(proc),
    pid: () => proc?.child.pid,
    output: () => proc?.output() ?? "",
  };
}

async function leafgateStack(tag) {
  const dir = mkdtempSync(join(work, "lg-"));
  const [hubPort, mqttPort, httpPort] = [await freePort(), await freePort(), await freePort()];
  const hub = server("nats-server", natsHubConf(dir, hubPort), hubPort, "hub nats-server");
  const edge = leafgateProcess(leafgateConf(dir, mqttPort, hubPort, httpPort));
  const view = hubView(hubPort, "EDGE");
  return {
    mqttPort,
    topic: `bench/${tag}`,
    async setup() {
      await hub.start();
      await addStream(hubPort, "EDGE", ["edge.>"]);
      await edge.start();
      await until(
        () => edge.output().includes('"msg":"hub stream found"'),
        20_000,
        "leafgate: hub stream found",
        25,
      );
    },
    killHub: () => hub.kill(),
    startHub: () => hub.start(),
    killEdge: () => edge.kill(),
    startEdge: () => edge.start(),
    count: () => view.count(),
    collect: (counts) => view.collect(counts, tag),
    async teardown() {
      await view.close();
      await edge.kill();
      await hub.kill();
    },
  };
}

async function mosquittoStack(tag) {
  const dir = mkdtempSync(join(work, "mosq-"));
  const [hubPort, mqttPort] = [await freePort(), await freePort()];
  for (const d of ["hub-db", "edge-db"]) mkdirSync(join(dir, d));
  // Debian's shipped /etc/mosquitto/mosquitto.conf: persistence true, autosave_interval at its
  // default (1800 s), so a kill -9 finds no saved state here; queues at their defaults.
  const hubConf = join(dir, "hub.conf");
  writeFileSync(
    hubConf,
    `listener ${hubPort} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location ${dir}/hub-db/\n`,
  );
  const edgeConf = join(dir, "edge.conf");
  writeFileSync(
    edgeConf,
    `listener ${mqttPort} 127.0.0.1
allow_anonymous true
persistence true
persistence_location ${dir}/edge-db/
connection hub
address 127.0.0.1:${hubPort}
topic # out 1
cleansession false
`,
  );
  const hub = server("mosquitto", hubConf, hubPort, "hub mosquitto");
  const edge = server("mosquitto", edgeConf, mqttPort, "edge mosquitto");
  const counts = new Uint16Array(N);
  let received = 0;
  let sub;
  return {
    mqttPort,
    topic: `bench/${tag}`,
    async setup() {
      await hub.start();
      sub = mqttConnect(`mqtt://127.0.0.1:${hubPort}`, {
        clientId: `bench-sub-${tag}`,
        clean: false,
        reconnectPeriod: 250,
      });
      clients.add(sub);
      sub.on("error", () => {});
      // Resubscribes by itself when the hub comes back without the session (resubscribe: true).
      sub.on("message", (_topic, data) => {
        received++;
        record(counts, tag, data);
      });
      await within(new Promise((r) => sub.once("connect", r)), 10_000);
      await sub.subscribeAsync(`bench/${tag}`, { qos: 1 });
      await edge.start();
    },
    killHub: () => hub.kill(),
    startHub: () => hub.start(),
    killEdge: () => edge.kill(),
    startEdge: () => edge.start(),
    count: async () => received,
    async collect(into) {
      into.set(counts);
    },
    async teardown() {
      sub?.end(true);
      clients.delete(sub);
      await edge.kill();
      await hub.kill();
    },
  };
}

async function natsLeafStack(tag) {
  const dir = mkdtempSync(join(work, "leaf-"));
  const [hubPort, leafPort, edgePort, mqttPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const hubConf = natsHubConf(dir, hubPort, `leafnodes { listen: 127.0.0.1:${leafPort} }\n`);
  const edgeConf = join(dir, "edge.conf");
  writeFileSync(
    edgeConf,
    `listen: 127.0.0.1:${edgePort}
server_name: edge
jetstream { store_dir: "${dir}/edge-js", domain: edge }
mqtt { listen: 127.0.0.1:${mqttPort} }
leafnodes { remotes = [ { url: "nats-leaf://127.0.0.1:${leafPort}" } ] }
`,
  );
  const hub = server("nats-server", hubConf, hubPort, "hub nats-server");
  const edge = server("nats-server", edgeConf, mqttPort, "edge nats-server (MQTT)");
  const view = hubView(hubPort, "MQTTIN");
  return {
    mqttPort,
    topic: `bench/${tag}`, // subject bench.<tag> at the hub
    async setup() {
      await hub.start();
      await addStream(hubPort, "MQTTIN", ["bench.>"]);
      await edge.start();
    },
    killHub: () => hub.kill(),
    startHub: () => hub.start(),
    killEdge: () => edge.kill(),
    startEdge: () => edge.start(),
    count: () => view.count(),
    collect: (counts) => view.collect(counts, tag),
    async teardown() {
      await view.close();
      await edge.kill();
      await hub.kill();
    },
  };
}

/**
 * One stack, one variant: N paced QoS 1 messages from one mqtt.js client (the client object
 * lives throughout, so unacked messages stay in its store and are resent on reconnect).
 */
async function outageRun(stackName, makeStack, variant) {
  const tag = `${stackName.split(" ")[0]}-${variant}`.replace(/[^a-z0-9-]/gi, "");
  const stack = await makeStack(tag);
  const t0 = performance.now();
  const notes = [];
  let pub;
  try {
    await stack.setup();
    pub = mqttConnect(`mqtt://127.0.0.1:${stack.mqttPort}`, {
      clientId: `bench-pub-${tag}`,
      clean: false,
      reconnectPeriod: 250,
      connectTimeout: 5000,
    });
    clients.add(pub);
    pub.on("error", () => {});
    let publishWrites = 0; // PUBLISH packets written, resends included
    pub.on("packetsend", (p) => {
      if (p.cmd === "publish") publishWrites++;
    });
    await within(new Promise((r) => pub.once("connect", r)), 10_000);
    // The link must work before anything is measured: a probe has to reach the hub.
    await within(pub.publishAsync(stack.topic, `${tag}|probe`, { qos: 1 }), 10_000);
    await until(async () => (await stack.count()) >= 1, 30_000, `${stackName}: probe at hub`, 50);

    const acked = new Uint8Array(N);
    let nAcked = 0;
    let sent = 0;
    let linkBackAt;
    let linkBackCount;
    const marks = [];
    const mark = (what) => marks.push(`${what} @${sent}`);
    const steps =
      variant === "hub"
        ? [
            [Math.floor(N * 0.3), "kill -9 hub", () => stack.killHub(), false],
            [Math.floor(N * 0.7), "hub restart", () => stack.startHub(), true],
          ]
        : [
            [
              Math.floor(N * 0.5),
              "kill -9 edge + restart",
              async () => {
                await stack.killEdge();
                await stack.startEdge();
              },
              true,
            ],
          ];
    let chain = Promise.resolve();
    const tp = performance.now();
    while (sent < N) {
      const target = Math.min(N, Math.floor(((performance.now() - tp) * RATE) / 1000) + 1);
      while (sent < target) {
        const seq = sent++;
        pub.publish(stack.topic, payload(tag, seq), { qos: 1 }, (err) => {
          if (!err && !acked[seq]) {
            acked[seq] = 1;
            nAcked++;
          }
        });
        for (const [at, what, run, linkBack] of steps) {
          if (at !== sent) continue;
          chain = chain.then(async () => {
            marks.push(`${what} at ${at}`);
            await run();
            if (linkBack) mark("link back");
            if (linkBack) {
              linkBackAt = Date.now();
              linkBackCount = await until(
                async () => (await stack.count()) ?? false,
                20_000,
                "count after restart",
                50,
              ).catch(() => 0);
            }
          });
        }
      }
      await sleep(5);
    }
    const publishS = (performance.now() - tp) / 1000;
    if (
      (await within(
        chain.then(() => true),
        60_000,
      )) !== true
    )
      notes.push("restart timed out");
    await until(() => nAcked === N, 60_000, "PUBACKs", 50).catch(() =>
      notes.push(`${N - nAcked} never PUBACKed`),
    );

    // Settle: the count must have moved since the link came back (a bridge may be in its
    // reconnect back-off), then stay still for STABLE_MS. Bounded either way.
    const deadline = Date.now() + 120_000;
    let last = await stack.count();
    let lastChange = Date.now();
    for (;;) {
      await sleep(250);
      const c = await stack.count();
      if (c !== undefined && c !== last) {
        last = c;
        lastChange = Date.now();
      }
      const moved = last > (linkBackCount ?? 0) || Date.now() - (linkBackAt ?? 0) > 35_000;
      if (moved && Date.now() - lastChange >= STABLE_MS) break;
      if (Date.now() > deadline) {
        notes.push("settle deadline hit");
        break;
      }
    }
    const counts = new Uint16Array(N);
    await stack.collect(counts);
    let unique = 0;
    let lost = 0;
    let dup = 0;
    let copies = 0;
    let unackedDelivered = 0;
    for (let i = 0; i < N; i++) {
      if (counts[i] > 0) unique++;
      if (counts[i] > 1) {
        dup++;
        copies += counts[i] - 1;
      }
      if (acked[i] && counts[i] === 0) lost++;
      if (!acked[i] && counts[i] > 0) unackedDelivered++;
    }
    notes.push(`publisher resent ${publishWrites - 1 - N}`);
    if (unackedDelivered) notes.push(`${unackedDelivered} delivered without PUBACK`);
    if (copies > dup) notes.push(`${copies} extra copies`);
    return {
      stack: stackName,
      variant: variant === "hub" ? "hub kill -9 30%..70%" : "edge kill -9 at 50%",
      published: nAcked,
      unique,
      lost,
      dup,
      seconds: (performance.now() - t0) / 1000,
      publishS,
      marks,
      notes,
    };
  } finally {
    pub?.end(true);
    clients.delete(pub);
    await stack.teardown();
  }
}

async function drainRun() {
  const dir = mkdtempSync(join(work, "drain-"));
  const [hubPort, mqttPort, httpPort] = [await freePort(), await freePort(), await freePort()];
  const hub = server("nats-server", natsHubConf(dir, hubPort), hubPort, "hub nats-server");
  // The hub existed (with its stream) and went down before the backlog built up.
  await hub.start();
  await addStream(hubPort, "EDGE", ["edge.>"]);
  await hub.kill();
  const gw = leafgateProcess(leafgateConf(dir, mqttPort, hubPort, httpPort));
  const status = async () => {
    const res = await fetch(`http://127.0.0.1:${httpPort}/status`, {
      signal: AbortSignal.timeout(5000),
    });
    return res.json();
  };
  const pubs = [];
  try {
    await gw.start();
    await sleep(500);
    const idleRss = rssMiB(gw.pid());
    let peak = 0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssMiB(gw.pid()));
    }, 100);

    for (let i = 0; i < DRAIN_CLIENTS; i++) {
      const c = mqttConnect(`mqtt://127.0.0.1:${mqttPort}`, {
        clientId: `bench-drain-${i}`,
        reconnectPeriod: 250,
      });
      clients.add(c);
      c.on("error", () => {});
      pubs.push(c);
    }
    await within(Promise.all(pubs.map((c) => new Promise((r) => c.once("connect", r)))), 10_000);
    const per = Math.ceil(DRAIN_N / DRAIN_CLIENTS);
    const pump = (c, from, to) =>
      new Promise((resolve) => {
        let next = from;
        let inflight = 0;
        let done = 0;
        const send = () => {
          while (inflight < DRAIN_WINDOW && next < to) {
            const seq = next++;
            inflight++;
            c.publish("bench/drain", payload("d", seq), { qos: 1 }, () => {
              inflight--;
              if (++done === to - from) resolve();
              else send();
            });
          }
        };
        send();
      });
    const ti = performance.now();
    const ingested = await within(
      Promise.all(pubs.map((c, i) => pump(c, i * per, Math.min(DRAIN_N, (i + 1) * per)))).then(
        () => true,
      ),
      240_000,
    );
    if (!ingested) throw new Error("backlog ingest timed out");
    const ingestS = (performance.now() - ti) / 1000;
    const ingestPeak = peak;
    const buffered = (await status()).outbox.pending;

    peak = 0;
    const view = hubView(hubPort, "EDGE");
    const td = performance.now();
    await hub.start();
    let firstAt;
    let inStream = 0;
    await until(
      async () => {
        inStream = (await view.count()) ?? inStream;
        if (inStream > 0 && firstAt === undefined) firstAt = performance.now();
        return inStream >= DRAIN_N;
      },
      240_000,
      `stream to hold ${DRAIN_N}`,
      100,
    );
    const drainS = (performance.now() - td) / 1000;
    const drainFromFirstS = (performance.now() - firstAt) / 1000;
    const drainPeak = peak;
    const pending = await until(
      async () => {
        const p = (await status()).outbox.pending;
        return p === 0 ? "0" : false;
      },
      15_000,
      "outbox empty",
      100,
    ).catch(async () => String((await status()).outbox.pending));
    await sleep(1000);
    inStream = (await view.count()) ?? inStream;
    clearInterval(sampler);
    await view.close();
    return {
      idleRss,
      ingestS,
      ingestPeak,
      buffered,
      drainS,
      drainFromFirstS,
      drainPeak,
      pending,
      inStream,
    };
  } finally {
    for (const c of pubs) {
      c.end(true);
      clients.delete(c);
    }
    await gw.kill();
    await hub.kill();
  }
}

function table(headers, rows) {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => r[i].length)));
  const line = (r) => r.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i])));
  console.log(line(headers).join("  "));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const r of rows) console.log(line(r.map(String)).join("  "));
}

const startedAt = performance.now();
if (spawnSync(process.execPath, [join(root, "build.mjs")], { stdio: "inherit" }).status !== 0) {
  throw new Error("build failed");
}
console.log(
  `\npart 1: ${N} QoS 1 messages of 100 bytes per run, one mqtt.js publisher at ${RATE} msgs/s` +
    " (clean: false, reconnectPeriod 250 ms)\n",
);

const stacks = [
  ["leafgate", leafgateStack],
  ["mosquitto bridge", mosquittoStack],
  ["nats leaf + MQTT", natsLeafStack],
];
const results = [];
for (const [name, make] of stacks) {
  for (const variant of ["hub", "edge"]) {
    const r = await outageRun(name, make, variant);
    console.log(
      `  ${name}, ${r.variant}: ${r.seconds.toFixed(1)} s (publishing ${r.publishS.toFixed(1)} s); ${r.marks.join(", ")}${r.notes.length ? `; ${r.notes.join("; ")}` : ""}`,
    );
    results.push(r);
  }
}
console.log();
table(
  ["stack", "variant", "published (PUBACKed)", "delivered unique", "lost", "duplicated"],
  results.map((r) => [r.stack, r.variant, r.published, r.unique, r.lost, r.dup]),
);

console.log(
  `\npart 2: backlog drain, ${DRAIN_N} messages of 100 bytes into leafgate with its hub down` +
    ` (${DRAIN_CLIENTS} mqtt.js QoS 1 clients, ${DRAIN_WINDOW} in flight each), then the hub starts\n`,
);
const d = await drainRun();
table(
  ["", "", "ingest msgs/s", "drain msgs/s", "peak RSS MiB", "final outbox pending", "in stream"],
  [
    [
      "leafgate",
      `${DRAIN_N} msgs`,
      Math.round(DRAIN_N / d.ingestS),
      Math.round(DRAIN_N / d.drainS),
      Math.max(d.ingestPeak, d.drainPeak).toFixed(1),
      d.pending,
      d.inStream,
    ],
  ],
);
console.log(
  `  ingest ${d.ingestS.toFixed(1)} s (peak RSS ${d.ingestPeak.toFixed(1)} MiB, idle ${d.idleRss.toFixed(1)} MiB), ${d.buffered} pending before the hub came back;` +
    ` drain ${d.drainS.toFixed(1)} s from hub start incl. reconnect (${Math.round(DRAIN_N / d.drainFromFirstS)} msgs/s from the first stored message), peak RSS ${d.drainPeak.toFixed(1)} MiB`,
);

const ours = results.filter((r) => r.stack === "leafgate");
const bad = ours.filter((r) => r.lost > 0 || r.dup > 0 || r.published !== N);
console.log("\nsummary");
for (const r of results) {
  console.log(
    `  ${r.stack.padEnd(16)} ${r.variant.padEnd(20)} lost ${((100 * r.lost) / Math.max(1, r.published)).toFixed(2).padStart(6)}%  duplicated ${r.dup}`,
  );
}
if (bad.length > 0) {
  console.log("\n!!!!!!!! LEAFGATE BROKE ITS PROMISE: lost or duplicated messages !!!!!!!!");
  for (const r of bad) {
    console.log(
      `!!! ${r.variant}: published ${r.published}/${N}, lost ${r.lost}, duplicated ${r.dup}`,
    );
  }
} else {
  console.log("  leafgate: 0 lost, 0 duplicated in every variant");
}
if (d.inStream !== DRAIN_N || d.pending !== "0") {
  console.log(`!!! drain: stream holds ${d.inStream} of ${DRAIN_N}, outbox pending ${d.pending}`);
}
console.log(`  total ${((performance.now() - startedAt) / 1000).toFixed(0)} s`);
process.exit(bad.length > 0 && process.env.BENCH_STRICT === "1" ? 1 : 0);
