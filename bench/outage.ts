// Outage: what reaches the hub when the uplink or the edge process dies mid-stream, through
// leafgate, a mosquitto bridge and a nats-server leaf node; then leafgate's backlog drain.
// The stacks, the variants and how a run settles: docs/bench.md.
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { type JetStreamManager, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { type MqttClient, connect as mqttConnect } from "mqtt";
import { connectClient, createStream, streamMessages } from "../test/helpers/nats-server.js";
import { waitFor } from "../test/helpers/wait.js";
import { GatewayBundle } from "./lib/gateway.js";
import { benchWorkDir, buildBundle, timeout } from "./lib/harness.js";
import { RssPeak, rssMiB } from "./lib/measure.js";
import { MosquittoProcess } from "./lib/mosquitto.js";
import { NatsProcess } from "./lib/nats.js";
import { fmt, printTable } from "./lib/table.js";

const N = Number(process.env.BENCH_OUTAGE_MESSAGES ?? 50_000);
const RATE = Number(process.env.BENCH_OUTAGE_RATE ?? 5000); // msgs/s, one publisher
const DRAIN_N = Number(process.env.BENCH_DRAIN_MESSAGES ?? 1_000_000);
const DRAIN_CLIENTS = 4;
const DRAIN_WINDOW = 1000; // unacked QoS 1 messages per drain publisher
/** A run has settled when the hub's count stayed still this long. */
const STABLE_MS = 5000;
const SETTLE_DEADLINE_MS = 120_000;
const SETTLE_POLL_MS = 250;
/** A bridge may still be in its reconnect back-off this long after the link came back. */
const BRIDGE_BACKOFF_MS = 35_000;
const RECONNECT_PERIOD_MS = 250;
const CONNECT_TIMEOUT_MS = 10_000;
const PUBLISH_TICK_MS = 5;
const DRAIN_TIMEOUT_MS = 240_000;
const RSS_SAMPLE_MS = 100;
const PAD = "x".repeat(100);
const PAYLOAD_BYTES = 100;
const SEQ_DIGITS = 8;

const work = benchWorkDir("outage");
const clients = new Set<MqttClient>();
process.on("exit", () => {
  for (const c of clients) c.end(true);
});

/** 100 bytes: `<tag>|<seq>|xxx...`; the tag keeps probes and other runs apart. */
const payload = (tag: string, seq: number) =>
  `${tag}|${String(seq).padStart(SEQ_DIGITS, "0")}|${PAD}`.slice(0, PAYLOAD_BYTES);

/** Counts deliveries per sequence number of `tag` into `counts`; returns false for others. */
function record(counts: Uint16Array, tag: string, data: Uint8Array): boolean {
  const s = Buffer.from(data.buffer, data.byteOffset, Math.min(data.length, 40)).toString("latin1");
  const bar = s.indexOf("|");
  if (bar < 0 || s.slice(0, bar) !== tag) return false;
  const seq = Number(s.slice(bar + 1, bar + 1 + SEQ_DIGITS));
  if (!Number.isInteger(seq) || seq < 0 || seq >= counts.length) return false;
  counts[seq]!++;
  return true;
}

/** An MQTT client that reconnects by itself; resolves once connected (or after the timeout). */
async function mqttClient(port: number, clientId: string, clean: boolean): Promise<MqttClient> {
  const c = mqttConnect(`mqtt://127.0.0.1:${port}`, {
    clientId,
    clean,
    reconnectPeriod: RECONNECT_PERIOD_MS,
    connectTimeout: 5000,
  });
  clients.add(c);
  c.on("error", () => {});
  await Promise.race([new Promise((r) => c.once("connect", r)), timeout(CONNECT_TIMEOUT_MS)]);
  return c;
}

function endClient(c: MqttClient | undefined): void {
  if (!c) return;
  c.end(true);
  clients.delete(c);
}

/** Stream state on a hub that may be down: a fresh, non-reconnecting connection as needed. */
function hubView(url: () => string, stream: string) {
  let nc: NatsConnection | undefined;
  let jsm: JetStreamManager | undefined;
  const drop = async () => {
    const old = nc;
    nc = undefined;
    await Promise.race([old?.close().catch(() => {}), timeout(1000)]);
  };
  return {
    async count(): Promise<number | undefined> {
      try {
        if (!nc || nc.isClosed() || !jsm) {
          nc = await connect({ servers: url(), reconnect: false, timeout: 2000 });
          jsm = await jetstreamManager(nc);
        }
        return (await jsm.streams.info(stream)).state.messages;
      } catch {
        await drop();
        return undefined;
      }
    },
    /** Reads the whole stream, counting payloads of `tag`. */
    async collect(counts: Uint16Array, tag: string): Promise<void> {
      await drop();
      const c = await connect({ servers: url(), timeout: 5000 });
      try {
        for (const m of await streamMessages(c, stream, { timeoutMs: 60_000 })) {
          record(counts, tag, m.data);
        }
      } finally {
        await c.close();
      }
    },
    close: drop,
  };
}

/** Creates `name` once the hub's JetStream takes requests. */
async function addStream(url: string, name: string, subjects: string[]): Promise<void> {
  const nc = await connectClient(url, { timeout: 5000 });
  await waitFor(() => createStream(nc, name, subjects).then(() => true), {
    timeoutMs: 10_000,
    intervalMs: 100,
    message: `stream ${name}`,
  });
  await nc.close();
}

interface Stack {
  readonly mqttPort: number;
  readonly topic: string;
  setup(): Promise<void>;
  killHub(): Promise<void>;
  startHub(): Promise<unknown>;
  killEdge(): Promise<void>;
  startEdge(): Promise<unknown>;
  count(): Promise<number | undefined>;
  collect(counts: Uint16Array): Promise<void>;
  teardown(): Promise<void>;
}

function leafgateStack(tag: string): Stack {
  const dir = mkdtempSync(join(work, "lg-"));
  const hub = new NatsProcess({ serverName: "hub", storeDir: join(dir, "hub-js") });
  let edge: GatewayBundle | undefined;
  const view = hubView(() => hub.url, "EDGE");
  return {
    get mqttPort() {
      return edge!.mqttPort;
    },
    topic: `bench/${tag}`,
    async setup() {
      await hub.start();
      await addStream(hub.url, "EDGE", ["edge.>"]);
      edge = new GatewayBundle(dir, {
        upstream: { servers: [hub.url], stream: "EDGE" },
        http: true,
      });
      await edge.start();
      await edge.line('"msg":"hub stream found"');
    },
    killHub: () => hub.kill(),
    startHub: () => hub.start(),
    killEdge: () => edge!.kill(),
    startEdge: () => edge!.start(),
    count: () => view.count(),
    collect: (counts) => view.collect(counts, tag),
    async teardown() {
      await view.close();
      await edge?.kill();
      await hub.kill();
      await hub.stop();
    },
  };
}

function mosquittoStack(tag: string): Stack {
  const dir = mkdtempSync(join(work, "mosq-"));
  for (const d of ["hub-db", "edge-db"]) mkdirSync(join(dir, d));
  const conf = (name: string, text: string) => {
    const file = join(dir, `${name}.conf`);
    writeFileSync(file, text);
    return file;
  };
  // Debian's shipped /etc/mosquitto/mosquitto.conf: persistence true, autosave_interval at its
  // default (1800 s), so a kill -9 finds no saved state here; queues at their defaults.
  const hub = new MosquittoProcess((port) =>
    conf(
      "hub",
      `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location ${dir}/hub-db/\n`,
    ),
  );
  const edge = new MosquittoProcess((port) =>
    conf(
      "edge",
      `listener ${port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location ${dir}/edge-db/
connection hub
address 127.0.0.1:${hub.port}
topic # out 1
cleansession false
`,
    ),
  );
  const counts = new Uint16Array(N);
  let received = 0;
  let sub: MqttClient | undefined;
  return {
    get mqttPort() {
      return edge.port;
    },
    topic: `bench/${tag}`,
    async setup() {
      await hub.start();
      // Resubscribes by itself when the hub comes back without the session (resubscribe: true).
      sub = await mqttClient(hub.port, `bench-sub-${tag}`, false);
      sub.on("message", (_topic, data) => {
        received++;
        record(counts, tag, data);
      });
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
      endClient(sub);
      await edge.kill();
      await hub.kill();
    },
  };
}

function natsLeafStack(tag: string): Stack {
  const dir = mkdtempSync(join(work, "leaf-"));
  const hub = new NatsProcess({
    serverName: "hub",
    storeDir: join(dir, "hub-js"),
    leafnodes: true,
  });
  const edge = new NatsProcess({
    serverName: "edge",
    storeDir: join(dir, "edge-js"),
    domain: "edge",
    mqtt: true,
    hubLeafPort: () => hub.leafPort,
  });
  const view = hubView(() => hub.url, "MQTTIN");
  return {
    get mqttPort() {
      return edge.mqttPort;
    },
    topic: `bench/${tag}`, // subject bench.<tag> at the hub
    async setup() {
      await hub.start();
      await addStream(hub.url, "MQTTIN", ["bench.>"]);
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
      await Promise.all([edge.stop(), hub.stop()]);
    },
  };
}

type Variant = "hub" | "edge";

interface OutageResult {
  stack: string;
  variant: string;
  published: number;
  unique: number;
  lost: number;
  dup: number;
  seconds: number;
  publishS: number;
  marks: string[];
  notes: string[];
}

/** [published count at which, what, action, whether the link is back after it]. */
type Step = [number, string, () => Promise<unknown>, boolean];

function stepsOf(stack: Stack, variant: Variant): Step[] {
  if (variant === "hub") {
    return [
      [Math.floor(N * 0.3), "kill -9 hub", () => stack.killHub(), false],
      [Math.floor(N * 0.7), "hub restart", () => stack.startHub(), true],
    ];
  }
  const restart = async () => {
    await stack.killEdge();
    await stack.startEdge();
  };
  return [[Math.floor(N * 0.5), "kill -9 edge + restart", restart, true]];
}

/**
 * One stack, one variant: N paced QoS 1 messages from one mqtt.js client (the client object
 * lives throughout, so unacked messages stay in its store and are resent on reconnect).
 */
async function outageRun(
  stackName: string,
  makeStack: (tag: string) => Stack,
  variant: Variant,
): Promise<OutageResult> {
  const tag = `${stackName.split(" ")[0]}-${variant}`.replace(/[^a-z0-9-]/gi, "");
  const stack = makeStack(tag);
  const t0 = performance.now();
  const notes: string[] = [];
  let pub: MqttClient | undefined;
  try {
    await stack.setup();
    pub = await mqttClient(stack.mqttPort, `bench-pub-${tag}`, false);
    let publishWrites = 0; // PUBLISH packets written, resends included
    pub.on("packetsend", (p) => {
      if (p.cmd === "publish") publishWrites++;
    });
    // The link must work before anything is measured: a probe has to reach the hub.
    await Promise.race([
      pub.publishAsync(stack.topic, `${tag}|probe`, { qos: 1 }),
      timeout(10_000),
    ]);
    await waitFor(async () => ((await stack.count()) ?? 0) >= 1, {
      timeoutMs: 30_000,
      intervalMs: 50,
      message: `${stackName}: probe at hub`,
    });

    const acked = new Uint8Array(N);
    let nAcked = 0;
    let sent = 0;
    let linkBackAt: number | undefined;
    let linkBackCount: number | undefined;
    const marks: string[] = [];
    const steps = stepsOf(stack, variant);
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
            if (!linkBack) return;
            marks.push(`link back @${sent}`);
            linkBackAt = Date.now();
            linkBackCount = (await waitFor(async () => (await stack.count()) ?? false, {
              timeoutMs: 20_000,
              intervalMs: 50,
            }).catch(() => 0)) as number;
          });
        }
      }
      await delay(PUBLISH_TICK_MS);
    }
    const publishS = (performance.now() - tp) / 1000;
    if ((await Promise.race([chain.then(() => true), timeout(60_000)])) !== true) {
      notes.push("restart timed out");
    }
    await waitFor(() => nAcked === N, { timeoutMs: 60_000, intervalMs: 50 }).catch(() =>
      notes.push(`${N - nAcked} never PUBACKed`),
    );

    // Settle: the count must have moved since the link came back (a bridge may be in its
    // reconnect back-off), then stay still for STABLE_MS. Bounded either way.
    const deadline = Date.now() + SETTLE_DEADLINE_MS;
    let last = (await stack.count()) ?? 0;
    let lastChange = Date.now();
    for (;;) {
      await delay(SETTLE_POLL_MS);
      const c = await stack.count();
      if (c !== undefined && c !== last) {
        last = c;
        lastChange = Date.now();
      }
      const moved =
        last > (linkBackCount ?? 0) || Date.now() - (linkBackAt ?? 0) > BRIDGE_BACKOFF_MS;
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
      const n = counts[i]!;
      if (n > 0) unique++;
      if (n > 1) {
        dup++;
        copies += n - 1;
      }
      if (acked[i] && n === 0) lost++;
      if (!acked[i] && n > 0) unackedDelivered++;
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
    endClient(pub);
    await stack.teardown();
  }
}

/** `count` QoS 1 messages from `from` on, at most DRAIN_WINDOW unacknowledged at a time. */
function pump(c: MqttClient, from: number, to: number): Promise<void> {
  return new Promise((resolve) => {
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
}

async function drainRun() {
  const dir = mkdtempSync(join(work, "drain-"));
  const hub = new NatsProcess({ serverName: "hub", storeDir: join(dir, "hub-js") });
  // The hub existed (with its stream) and went down before the backlog built up.
  await hub.start();
  await addStream(hub.url, "EDGE", ["edge.>"]);
  await hub.kill();
  const gw = new GatewayBundle(dir, {
    upstream: { servers: [hub.url], stream: "EDGE" },
    http: true,
  });
  const pubs: MqttClient[] = [];
  try {
    await gw.start();
    await delay(500);
    const idleRss = rssMiB(gw.pid);
    const peak = new RssPeak(() => gw.pid, RSS_SAMPLE_MS);
    for (let i = 0; i < DRAIN_CLIENTS; i++) {
      pubs.push(await mqttClient(gw.mqttPort, `bench-drain-${i}`, true));
    }
    const per = Math.ceil(DRAIN_N / DRAIN_CLIENTS);
    const ti = performance.now();
    const ingested = await Promise.race([
      Promise.all(pubs.map((c, i) => pump(c, i * per, Math.min(DRAIN_N, (i + 1) * per)))).then(
        () => true,
      ),
      timeout(DRAIN_TIMEOUT_MS),
    ]);
    if (!ingested) throw new Error("backlog ingest timed out");
    const ingestS = (performance.now() - ti) / 1000;
    const ingestPeak = peak.peak;
    const buffered = (await gw.status()).outbox.pending;

    peak.reset();
    const view = hubView(() => hub.url, "EDGE");
    const td = performance.now();
    await hub.start();
    let firstAt: number | undefined;
    let inStream = 0;
    await waitFor(
      async () => {
        inStream = (await view.count()) ?? inStream;
        if (inStream > 0 && firstAt === undefined) firstAt = performance.now();
        return inStream >= DRAIN_N;
      },
      { timeoutMs: DRAIN_TIMEOUT_MS, intervalMs: 100, message: `stream to hold ${DRAIN_N}` },
    );
    const drainS = (performance.now() - td) / 1000;
    const drainFromFirstS = (performance.now() - firstAt!) / 1000;
    const drainPeak = peak.peak;
    const pending = await waitFor(async () => (await gw.status()).outbox.pending === 0, {
      timeoutMs: 15_000,
      intervalMs: 100,
      message: "outbox empty",
    }).then(
      () => "0",
      async () => String((await gw.status()).outbox.pending),
    );
    await delay(1000);
    inStream = (await view.count()) ?? inStream;
    peak.stop();
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
    for (const c of pubs) endClient(c);
    await gw.kill();
    await hub.kill();
    await hub.stop();
  }
}

const startedAt = performance.now();
buildBundle();
console.log(
  `\npart 1: ${N} QoS 1 messages of 100 bytes per run, one mqtt.js publisher at ${RATE} msgs/s` +
    ` (clean: false, reconnectPeriod ${RECONNECT_PERIOD_MS} ms)\n`,
);

const stacks: [string, (tag: string) => Stack][] = [
  ["leafgate", leafgateStack],
  ["mosquitto bridge", mosquittoStack],
  ["nats leaf + MQTT", natsLeafStack],
];
const results: OutageResult[] = [];
for (const [name, make] of stacks) {
  for (const variant of ["hub", "edge"] as const) {
    const r = await outageRun(name, make, variant);
    console.log(
      `  ${name}, ${r.variant}: ${fmt(r.seconds, 1)} s (publishing ${fmt(r.publishS, 1)} s); ${r.marks.join(", ")}${r.notes.length ? `; ${r.notes.join("; ")}` : ""}`,
    );
    results.push(r);
  }
}
console.log();
printTable(
  [
    { title: "stack", left: true },
    { title: "variant", left: true },
    { title: "published (PUBACKed)" },
    { title: "delivered unique" },
    { title: "lost" },
    { title: "duplicated" },
  ],
  results.map((r) => [r.stack, r.variant, r.published, r.unique, r.lost, r.dup]),
);

console.log(
  `\npart 2: backlog drain, ${DRAIN_N} messages of 100 bytes into leafgate with its hub down` +
    ` (${DRAIN_CLIENTS} mqtt.js QoS 1 clients, ${DRAIN_WINDOW} in flight each), then the hub starts\n`,
);
const d = await drainRun();
printTable(
  [
    { title: "", left: true },
    { title: "", left: true },
    { title: "ingest msgs/s" },
    { title: "drain msgs/s" },
    { title: "peak RSS MiB" },
    { title: "final outbox pending" },
    { title: "in stream" },
  ],
  [
    [
      "leafgate",
      `${DRAIN_N} msgs`,
      Math.round(DRAIN_N / d.ingestS),
      Math.round(DRAIN_N / d.drainS),
      fmt(Math.max(d.ingestPeak, d.drainPeak), 1),
      d.pending,
      d.inStream,
    ],
  ],
);
console.log(
  `  ingest ${fmt(d.ingestS, 1)} s (peak RSS ${fmt(d.ingestPeak, 1)} MiB, idle ${fmt(d.idleRss, 1)} MiB), ${d.buffered} pending before the hub came back;` +
    ` drain ${fmt(d.drainS, 1)} s from hub start incl. reconnect (${Math.round(DRAIN_N / d.drainFromFirstS)} msgs/s from the first stored message), peak RSS ${fmt(d.drainPeak, 1)} MiB`,
);

const bad = results.filter(
  (r) => r.stack === "leafgate" && (r.lost > 0 || r.dup > 0 || r.published !== N),
);
console.log("\nsummary");
for (const r of results) {
  console.log(
    `  ${r.stack.padEnd(16)} ${r.variant.padEnd(20)} lost ${fmt((100 * r.lost) / Math.max(1, r.published), 2).padStart(6)}%  duplicated ${r.dup}`,
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
console.log(`  total ${fmt((performance.now() - startedAt) / 1000)} s`);
process.exit(bad.length > 0 && process.env.BENCH_STRICT === "1" ? 1 : 0);
