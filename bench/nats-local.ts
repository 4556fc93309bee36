// The local NATS endpoint beside nats-server: (a) pub -> sub throughput, one and two publisher
// processes -> one subscriber process; (b) request-reply round trip, one requester process
// (sequential requests) -> one responder process. Same client (nats.js), each client in a
// process of its own, a fresh server each round, rounds interleaved. What each figure means:
// docs/bench.md.
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { startNatsServer } from "../test/helpers/nats-server.js";
import {
  spawnTracked,
  stopProcess,
  type TrackedProcess,
  waitForLine,
} from "../test/helpers/procs.js";
import { commands, nowNs, publishWindowed, say } from "./lib/client.js";
import { CLOSED_HUB, GatewayBundle } from "./lib/gateway.js";
import { benchWorkDir, buildBundle, timeout } from "./lib/harness.js";
import { cpuSeconds, median, selfCpuSeconds as ownCpu, RssPeak, rssMiB } from "./lib/measure.js";
import { type Column, fmt, printTable, ratio, streamTable } from "./lib/table.js";

const MESSAGES = Number(process.env.BENCH_NATS_MESSAGES ?? 200_000);
const PAYLOAD_BYTES = Number(process.env.BENCH_NATS_PAYLOAD ?? 128);
const REQUESTS = Number(process.env.BENCH_NATS_REQUESTS ?? 5_000);
const RUNS = Number(process.env.BENCH_NATS_RUNS ?? 3);
/** The bundle's young generation in MiB: 1 as `npm start` runs it; 16 is Node's default. */
const SEMI_SPACE_MIB =
  process.env.BENCH_SEMI_SPACE === undefined ? undefined : Number(process.env.BENCH_SEMI_SPACE);
/**
 * A publisher flushes (PING/PONG: the server has read everything before it) after this many
 * messages and waits for the flush before last, so it runs at most two windows ahead of the
 * server: nats.js writes without looking at the socket's buffer, and without a window the
 * whole run would sit in the publisher's memory and then in the server's, measuring queues
 * rather than the server.
 */
const WINDOW = Number(process.env.BENCH_NATS_WINDOW ?? 10_000);
/** Requests before the measured ones: connections, JIT and the reply inbox warmed up. */
const WARMUP_REQUESTS = Math.max(100, Math.floor(REQUESTS / 10));
const REQUEST_TIMEOUT_MS = 5_000;
/** The subscriber reports what it has once nothing arrived for this long after publishing. */
const QUIET_MS = 3_000;
const RUN_TIMEOUT_MS = 180_000;
const START_TIMEOUT_MS = 20_000;
const RSS_SAMPLE_MS = 50;
const SUBJECT = "bench.nats.data";
const SERVICE = "bench.nats.echo";
const ROLE = "--role"; // argv[2] of a client process; argv[3] names the role
const LEAFGATE = "leafgate";
const NATS_SERVER = "nats-server";

// --- the client processes (one role each, driven by lines on stdin) -----------------------

function natsClient(port: number, name: string): Promise<NatsConnection> {
  return connect({ servers: `127.0.0.1:${port}`, name, reconnect: false, noEcho: true });
}

/**
 * Subscriber: counts messages of `SUBJECT` and checks each publisher's sequence numbers arrive
 * in order. Says `done <count> <first ns> <last ns> <out of order> <cpu s>` once it has all of
 * them, and the same figures as `report-<k> ...` when told `report <k>`.
 */
async function subscriberRole(port: number, expected: number, publishers: number) {
  const nc = await natsClient(port, "bench-sub");
  const next = new Uint32Array(publishers);
  let count = 0;
  let outOfOrder = 0;
  let first = 0n;
  let last = 0n;
  let cpu0 = 0;
  const report = (tag: string) =>
    say(`${tag} ${count} ${first} ${last} ${outOfOrder} ${fmt(ownCpu() - cpu0, 3)}`);
  nc.subscribe(SUBJECT, {
    callback: (_err, m) => {
      const at = nowNs();
      if (count === 0) {
        first = at;
        cpu0 = ownCpu();
      }
      last = at;
      const data = m.data;
      const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
      const pub = view.getUint32(0);
      const seq = view.getUint32(4);
      if (pub >= publishers || seq !== next[pub]) outOfOrder++;
      else next[pub] = seq + 1;
      if (++count === expected) report("done");
    },
  });
  await nc.flush();
  say("ready");
  const input = commands();
  for (let c = await input.next(); !c.done && c.value !== "end"; c = await input.next()) {
    const [command, k] = c.value.split(" ");
    if (command === "report") report(`report-${k}`);
  }
  await nc.close();
  process.exit(0);
}

/** Publisher: on `go`, `count` messages of PAYLOAD_BYTES; says `published <cpu s>`. */
async function publisherRole(port: number, index: number, count: number) {
  const nc = await natsClient(port, `bench-pub-${index}`);
  const template = Buffer.alloc(PAYLOAD_BYTES, "x");
  say("ready");
  const input = commands();
  await input.next();
  const cpu0 = ownCpu();
  await publishWindowed(nc, SUBJECT, count, WINDOW, (seq) => {
    const p = Buffer.from(template); // nats.js keeps a reference until it writes
    p.writeUInt32BE(index, 0);
    p.writeUInt32BE(seq, 4);
    return p;
  });
  say(`published ${fmt(ownCpu() - cpu0, 3)}`);
  await input.next();
  await nc.close();
  process.exit(0);
}

/** Responder: answers every request on SERVICE with its own payload. */
async function responderRole(port: number) {
  const nc = await natsClient(port, "bench-responder");
  nc.subscribe(SERVICE, {
    callback: (_err, m) => {
      m.respond(m.data);
    },
  });
  await nc.flush();
  say("ready");
  const input = commands();
  await input.next();
  await nc.close();
  process.exit(0);
}

/**
 * Requester: on `go`, WARMUP_REQUESTS then REQUESTS sequential requests; says
 * `done <p50 us> <p99 us> <requests/s> <failed> <cpu s> <wall s>`.
 */
async function requesterRole(port: number) {
  const nc = await natsClient(port, "bench-requester");
  const payload = Buffer.alloc(PAYLOAD_BYTES, "r");
  say("ready");
  const input = commands();
  await input.next();
  let failed = 0;
  const ask = async () => {
    try {
      await nc.request(SERVICE, payload, { timeout: REQUEST_TIMEOUT_MS });
      return true;
    } catch {
      failed++;
      return false;
    }
  };
  for (let i = 0; i < WARMUP_REQUESTS; i++) await ask();
  failed = 0;
  const rtt = new Float64Array(REQUESTS);
  const cpu0 = ownCpu();
  const t0 = nowNs();
  for (let i = 0; i < REQUESTS; i++) {
    const s = nowNs();
    await ask();
    rtt[i] = Number(nowNs() - s) / 1e3;
  }
  const wall = Number(nowNs() - t0) / 1e9;
  rtt.sort();
  const pct = (q: number) => rtt[Math.min(REQUESTS - 1, Math.floor(q * REQUESTS))]!;
  say(
    `done ${fmt(pct(0.5), 1)} ${fmt(pct(0.99), 1)} ${fmt(REQUESTS / wall)} ${failed} ` +
      `${fmt(ownCpu() - cpu0, 3)} ${fmt(wall, 3)}`,
  );
  await input.next();
  await nc.close();
  process.exit(0);
}

// --- the bench ----------------------------------------------------------------------------

interface Server {
  name: string;
  port: number;
  pid: number;
  stop(): Promise<void>;
}

async function startLeafgate(work: string): Promise<Server> {
  const dir = mkdtempSync(join(work, "gw-"));
  // Nothing forwards (a closed hub) and the bench subjects are not exported, so no message
  // is stored in the outbox: the local path alone is measured, as nats-server's is.
  const gw = new GatewayBundle(
    dir,
    { upstream: { servers: [CLOSED_HUB], export: ["nothing.>"] } },
    { semiSpaceMiB: SEMI_SPACE_MIB },
  );
  await gw.start();
  return {
    name: LEAFGATE,
    port: gw.natsPort,
    pid: gw.pid,
    stop: async () => {
      await gw.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function startPlainNatsServer(): Promise<Server> {
  const s = await startNatsServer({ jetstream: false });
  return { name: NATS_SERVER, port: s.port, pid: s.pid, stop: () => s.stop() };
}

const clientProcs = new Set<TrackedProcess>();

async function client(role: string, ...args: (string | number)[]): Promise<TrackedProcess> {
  const argv = [process.argv[1]!, ROLE, role, ...args.map(String)];
  const proc = await spawnTracked(process.execPath, argv, { stdin: "pipe" });
  clientProcs.add(proc);
  await waitForLine(proc, (l) => l === "ready", START_TIMEOUT_MS);
  return proc;
}

const tell = (proc: TrackedProcess, line: string) => proc.child.stdin!.write(`${line}\n`);

async function endClients(): Promise<void> {
  for (const p of clientProcs) tell(p, "end");
  await Promise.all([...clientProcs].map((p) => stopProcess(p, { graceMs: 10_000 })));
  clientProcs.clear();
}

interface ThroughputResult {
  rate: number;
  expected: number;
  received: number;
  outOfOrder: number;
  /** Share of one core over the run (go -> last receipt). */
  serverCpu: number;
  pubCpu: number;
  subCpu: number;
  /** CPU microseconds per message received: what load contention does not change. */
  serverUsPerMsg: number;
  /** The publishers' (together) and the subscriber's. */
  pubUsPerMsg: number;
  subUsPerMsg: number;
}

async function throughput(server: Server, publishers: number): Promise<ThroughputResult> {
  const perPublisher = Math.ceil(MESSAGES / publishers);
  const expected = perPublisher * publishers;
  try {
    const sub = await client("sub", server.port, expected, publishers);
    const pubs = await Promise.all(
      Array.from({ length: publishers }, (_, i) => client("pub", server.port, i, perPublisher)),
    );
    const cpu0 = cpuSeconds(server.pid);
    const t0 = nowNs();
    for (const p of pubs) tell(p, "go");
    const published = await Promise.all(
      pubs.map((p) => waitForLine(p, (l) => l.startsWith("published "), RUN_TIMEOUT_MS)),
    );
    // Every message, or nothing more for QUIET_MS: the subscriber's count stood still.
    const all = waitForLine(sub, (l) => l.startsWith("done "), RUN_TIMEOUT_MS);
    all.catch(() => {}); // given up on below when the count stands still
    let done: string | undefined;
    for (let k = 0, before = -1; done === undefined; k++) {
      done = await Promise.race([all, timeout(QUIET_MS)]);
      if (done !== undefined) break;
      tell(sub, `report ${k}`);
      const now = await waitForLine(sub, (l) => l.startsWith(`report-${k} `), START_TIMEOUT_MS);
      const count = Number(now.split(" ")[1]);
      if (count === before) done = now;
      before = count;
    }
    const serverCpu = cpuSeconds(server.pid) - cpu0;
    const [, count, first, last, outOfOrder, subCpu] = done.split(" ");
    const seconds = Number(BigInt(last!) - BigInt(first!)) / 1e9;
    const wall = Number(nowNs() - t0) / 1e9;
    const pubCpu = published.reduce((a, l) => a + Number(l.split(" ")[1]), 0);
    const perMsg = (cpu: number) => (cpu * 1e6) / Number(count);
    return {
      rate: Number(count) / seconds,
      expected,
      received: Number(count),
      outOfOrder: Number(outOfOrder),
      serverCpu: serverCpu / wall,
      pubCpu: pubCpu / wall,
      subCpu: Number(subCpu) / seconds,
      serverUsPerMsg: perMsg(serverCpu),
      pubUsPerMsg: perMsg(pubCpu),
      subUsPerMsg: perMsg(Number(subCpu)),
    };
  } finally {
    await endClients();
  }
}

interface RequestResult {
  p50: number;
  p99: number;
  rate: number;
  failed: number;
  serverCpu: number;
  requesterCpu: number;
  responderCpu: number;
}

async function requestReply(server: Server): Promise<RequestResult> {
  try {
    const responder = await client("responder", server.port);
    const requester = await client("requester", server.port);
    const cpu0 = cpuSeconds(server.pid);
    const responderCpu0 = cpuSeconds(responder.pid);
    tell(requester, "go");
    const done = await waitForLine(requester, (l) => l.startsWith("done "), RUN_TIMEOUT_MS);
    const [, p50, p99, rate, failed, cpu, wall] = done.split(" ").map(Number) as number[];
    // Server and responder CPU include the warm-up: a slight overstatement of their share.
    const sinceGo = wall! * (1 + WARMUP_REQUESTS / REQUESTS);
    return {
      p50: p50!,
      p99: p99!,
      rate: rate!,
      failed: failed!,
      serverCpu: (cpuSeconds(server.pid) - cpu0) / sinceGo,
      requesterCpu: cpu! / wall!,
      responderCpu: (cpuSeconds(responder.pid) - responderCpu0) / sinceGo,
    };
  } finally {
    await endClients();
  }
}

interface RoundResult {
  one: ThroughputResult;
  two: ThroughputResult;
  rr: RequestResult;
  rssIdle: number;
  rssPeak: number;
}

async function round(start: () => Promise<Server>): Promise<RoundResult> {
  const server = await start();
  const peak = new RssPeak(() => server.pid, RSS_SAMPLE_MS);
  try {
    const rssIdle = rssMiB(server.pid);
    const one = await throughput(server, 1);
    const two = await throughput(server, 2);
    const rr = await requestReply(server);
    return { one, two, rr, rssIdle, rssPeak: peak.stop() };
  } finally {
    peak.stop();
    await server.stop();
  }
}

const percent = (share: number) => `${fmt(share * 100)}%`;

async function main(): Promise<never> {
  const work = benchWorkDir("nats-local");
  const servers: [string, () => Promise<Server>][] = [
    [LEAFGATE, () => startLeafgate(work)],
    [NATS_SERVER, startPlainNatsServer],
  ];
  const wallStart = performance.now();
  buildBundle();
  console.log(
    `\nnats-local: (a) ${MESSAGES} messages of ${PAYLOAD_BYTES} bytes, 1 and 2 publisher processes -> ` +
      `1 subscriber process, at most 2 x ${WINDOW} unflushed per publisher; (b) ${REQUESTS} sequential ` +
      `requests (after ${WARMUP_REQUESTS} warm-up) -> 1 responder process. nats.js clients, ` +
      `${RUNS} rounds, interleaved; leafgate with ${SEMI_SPACE_MIB === undefined ? "the bundle's Node flags" : `--max-semi-space-size=${SEMI_SPACE_MIB}`}\n`,
  );
  const rows = streamTable([
    { title: "run" },
    { title: "server", left: true, width: NATS_SERVER.length },
    { title: "test", left: true, width: "pub->sub 2 pubs".length },
    { title: "msgs/s", width: 8 },
    { title: "p50 us", width: 7 },
    { title: "p99 us", width: 7 },
    { title: "missed", width: 6 },
    { title: "server CPU" },
    { title: "CPU us/msg: server", width: 5 },
    { title: "pub", width: 5 },
    { title: "sub", width: 5 },
    { title: "client CPU", left: true },
    { title: "", left: true },
  ]);
  const results = new Map<string, RoundResult[]>();
  const failures: string[] = [];
  for (let run = 1; run <= RUNS; run++) {
    for (const [name, start] of servers) {
      const r = await round(start);
      results.set(name, [...(results.get(name) ?? []), r]);
      for (const [test, t] of [
        ["1 pub", r.one],
        ["2 pubs", r.two],
      ] as const) {
        const missed = t.expected - t.received;
        const bad = missed !== 0 || t.outOfOrder !== 0;
        if (bad) {
          failures.push(
            `run ${run} ${name} ${test}: received ${t.received} of ${t.expected}, ${t.outOfOrder} out of order`,
          );
        }
        rows.row([
          run,
          name,
          `pub->sub ${test}`,
          fmt(t.rate),
          "",
          "",
          missed,
          percent(t.serverCpu),
          fmt(t.serverUsPerMsg, 2),
          fmt(t.pubUsPerMsg, 2),
          fmt(t.subUsPerMsg, 2),
          `pub ${percent(t.pubCpu)} sub ${percent(t.subCpu)}`,
          bad ? `FAIL: ${t.outOfOrder} out of order` : "",
        ]);
      }
      if (r.rr.failed) failures.push(`run ${run} ${name}: ${r.rr.failed} requests failed`);
      rows.row([
        run,
        name,
        "request",
        fmt(r.rr.rate),
        fmt(r.rr.p50),
        fmt(r.rr.p99),
        r.rr.failed,
        percent(r.rr.serverCpu),
        "",
        "",
        "",
        `req ${percent(r.rr.requesterCpu)} resp ${percent(r.rr.responderCpu)}`,
        `RSS idle ${fmt(r.rssIdle, 1)} MiB, peak ${fmt(r.rssPeak, 1)} MiB`,
      ]);
    }
  }

  const med = (name: string, pick: (r: RoundResult) => number) =>
    median((results.get(name) ?? []).map(pick));
  const figures: [string, (r: RoundResult) => number, number][] = [
    ["pub->sub msgs/s, 1 publisher", (r) => r.one.rate, 0],
    ["pub->sub msgs/s, 2 publishers", (r) => r.two.rate, 0],
    ["request-reply requests/s", (r) => r.rr.rate, 0],
    ["request-reply p50 us", (r) => r.rr.p50, 0],
    ["request-reply p99 us", (r) => r.rr.p99, 0],
    ["server CPU us/msg, 1 pub", (r) => r.one.serverUsPerMsg, 2],
    ["publisher CPU us/msg, 1 pub", (r) => r.one.pubUsPerMsg, 2],
    ["subscriber CPU us/msg, 1 pub", (r) => r.one.subUsPerMsg, 2],
    ["server CPU % of a core, 1 pub", (r) => r.one.serverCpu * 100, 0],
    ["publisher CPU % of a core, 1 pub", (r) => r.one.pubCpu * 100, 0],
    ["subscriber CPU % of a core, 1 pub", (r) => r.one.subCpu * 100, 0],
    ["RSS idle MiB", (r) => r.rssIdle, 1],
    ["RSS peak under load MiB", (r) => r.rssPeak, 1],
  ];
  const columns: Column[] = [
    { title: "medians", left: true },
    { title: LEAFGATE },
    { title: NATS_SERVER },
    { title: "leafgate / nats-server" },
  ];
  console.log();
  printTable(
    columns,
    figures.map(([title, pick, digits]) => {
      const a = med(LEAFGATE, pick);
      const b = med(NATS_SERVER, pick);
      return [title, fmt(a, digits), fmt(b, digits), ratio(a, b)];
    }),
  );
  console.log(
    "\nratios: msgs/s and requests/s higher is better for leafgate; RTT and RSS lower is better",
  );
  console.log(`\nbench wall time ${fmt((performance.now() - wallStart) / 1000, 1)} s`);
  if (failures.length > 0) {
    console.log(`\nFAILED: every message and request must arrive\n${failures.join("\n")}`);
    process.exit(1);
  }
  process.exit(0);
}

if (process.argv[2] === ROLE) {
  const [role, port, ...rest] = process.argv.slice(3);
  const n = rest.map(Number);
  if (role === "sub") await subscriberRole(Number(port), n[0]!, n[1]!);
  else if (role === "pub") await publisherRole(Number(port), n[0]!, n[1]!);
  else if (role === "responder") await responderRole(Number(port));
  else if (role === "requester") await requesterRole(Number(port));
  else throw new Error(`unknown role ${role}`);
} else {
  await main();
}
