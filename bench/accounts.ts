// The cost of accounts: the same load on one gateway with every client in one account, and
// with each client in an account of its own (ten accounts: ten buses, ten outbox queues, ten
// hub links). P client processes, each one NATS publisher and one subscriber on its own subject,
// every subject exported so every message is stored in the outbox (the hub is a closed port:
// rows accumulate) and delivered locally. A fresh gateway each round, the two layouts
// interleaved. What each figure means: docs/bench.md ("Accounts").
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { cheapPasswordHash } from "../test/helpers/mqtt-sequence.js";
import {
  connectClient,
  createStream,
  type NatsServer,
  startNatsServer,
  streamInfo,
} from "../test/helpers/nats-server.js";
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

const CLIENTS = Number(process.env.BENCH_ACCOUNTS_CLIENTS ?? 10);
const MESSAGES = Number(process.env.BENCH_ACCOUNTS_MESSAGES ?? 100_000);
const PAYLOAD_BYTES = Number(process.env.BENCH_ACCOUNTS_PAYLOAD ?? 128);
const RUNS = Number(process.env.BENCH_ACCOUNTS_RUNS ?? 3);
/** The short variant with a real hub: messages per round; 0 leaves it out. */
const HUB_MESSAGES = Number(process.env.BENCH_ACCOUNTS_HUB_MESSAGES ?? 50_000);
/** A publisher flushes every WINDOW messages and waits for the flush before last (nats-local). */
const WINDOW = Number(process.env.BENCH_ACCOUNTS_WINDOW ?? 1_000);
/** The round ends once nothing was stored or delivered for this long (a loss, reported). */
const QUIET_MS = 3_000;
const POLL_MS = 50;
const RSS_SAMPLE_MS = 50;
const RUN_TIMEOUT_MS = 180_000;
const START_TIMEOUT_MS = 30_000;
const ROLE = "--role";
const PASSWORD = "bench";
const HUB_PASSWORD = "hub-bench";
const GATEWAY_ID = "bench"; // GatewayBundle's gateway.id: accounts export on edge.bench.<account>.>
/** Queue limits far above a round's messages: nothing is refused. */
const BUFFER = { max_messages: 10_000_000, max_bytes: "4GB" };

const subjectOf = (index: number) => `bench.${index}.data`;
const userOf = (index: number) => `u${index}`;

// --- the client process: one publisher and one subscriber of the same user ----------------

/**
 * Subscribes to its subject, says `ready`; on `go` publishes `count` messages on it. Says
 * `published` when the server has them all, `done <received> <last receipt ns> <cpu s>` once
 * its subscriber has every one, and the same as `report ...` when told `report`.
 */
async function pairRole(port: number, index: number, count: number) {
  const nc = await connect({
    servers: `127.0.0.1:${port}`,
    name: `bench-${index}`,
    user: userOf(index),
    pass: PASSWORD,
    reconnect: false,
  });
  const subject = subjectOf(index);
  let received = 0;
  let last = 0n;
  let cpu0 = 0;
  const figures = () => `${received} ${last} ${fmt(ownCpu() - cpu0, 3)}`;
  nc.subscribe(subject, {
    callback: () => {
      last = nowNs();
      if (++received === count) say(`done ${figures()}`);
    },
  });
  await nc.flush();
  say("ready");
  const input = commands();
  await input.next(); // go
  cpu0 = ownCpu();
  const template = Buffer.alloc(PAYLOAD_BYTES, "x");
  await publishWindowed(nc, subject, count, WINDOW, (seq) => {
    const p = Buffer.from(template); // nats.js keeps a reference until it writes
    p.writeUInt32BE(seq, 0);
    return p;
  });
  say("published");
  for (let c = await input.next(); !c.done && c.value !== "end"; c = await input.next()) {
    if (c.value === "report") say(`report ${figures()}`);
  }
  await nc.close();
  process.exit(0);
}

// --- the bench ----------------------------------------------------------------------------

type Layout = "1 account" | "10 accounts";

const hubUserOf = (account: number) => `h${account}`;
const streamOf = (account: number) => `EDGE_A${account}`;
/** Account `a<k>`'s clients: all of them in one account, or client k alone. */
const accountIndexes = (layout: Layout) =>
  layout === "1 account" ? [0] : Array.from({ length: CLIENTS }, (_, i) => i);

/**
 * The accounts section: every user in one account, or each in its own; each account's hub
 * link to the closed port, or to its own account on `hub` (user h<k>, stream EDGE_A<k>).
 */
function accountsOf(layout: Layout, hub: NatsServer | undefined): Record<string, unknown> {
  const hash = cheapPasswordHash(PASSWORD);
  const clientsOf = (k: number) =>
    layout === "1 account" ? Array.from({ length: CLIENTS }, (_, i) => i) : [k];
  return Object.fromEntries(
    accountIndexes(layout).map((k) => [
      `a${k}`,
      {
        users: clientsOf(k).map((i) => ({ user: userOf(i), password: hash })),
        upstream: hub
          ? {
              servers: [hub.url],
              user: hubUserOf(k),
              password: HUB_PASSWORD,
              stream: streamOf(k),
              export: ["bench.>"],
            }
          : { servers: [CLOSED_HUB], export: ["bench.>"] },
        buffer: BUFFER,
      },
    ]),
  );
}

/** A hub nats-server with one JetStream account per edge account, each with its stream. */
async function startHub(layout: Layout): Promise<NatsServer> {
  const all = Array.from({ length: CLIENTS }, (_, i) => i);
  const accounts = all.map(
    (k) =>
      `  HUB_${k}: { jetstream: enabled, users: [{ user: ${hubUserOf(k)}, password: "${HUB_PASSWORD}" }] }`,
  );
  const hub = await startNatsServer({ config: `accounts {\n${accounts.join("\n")}\n}\n` });
  for (const k of accountIndexes(layout)) {
    const nc = await connectClient(hub.url, { user: hubUserOf(k), pass: HUB_PASSWORD });
    await createStream(nc, streamOf(k), [`edge.${GATEWAY_ID}.a${k}.>`]);
    await nc.close();
  }
  return hub;
}

/** Messages in the hub's streams, every account's together. */
async function hubMessages(hub: NatsServer, layout: Layout): Promise<number> {
  let total = 0;
  for (const k of accountIndexes(layout)) {
    const nc = await connectClient(hub.url, { user: hubUserOf(k), pass: HUB_PASSWORD });
    total += (await streamInfo(nc, streamOf(k))).state.messages;
    await nc.close();
  }
  return total;
}

/** The sum over every label set of the counter `name` in a /metrics text. */
function counterSum(metrics: string, name: string): number {
  let total = 0;
  for (const line of metrics.split("\n")) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) {
      total += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return total;
}

interface RoundResult {
  /** Messages committed to the outbox per second (go -> the last one committed). */
  stored: number;
  /** Messages delivered to the local subscribers per second (go -> last receipt). */
  delivered: number;
  /** With a hub: messages the hub acknowledged per second (go -> the last ack). */
  forwarded: number;
  missedStored: number;
  missedDelivered: number;
  /** With a hub: messages not in its streams at the end (0 if every one is there once). */
  missedHub: number;
  gatewayUsPerMsg: number;
  gatewayCpu: number;
  /** The client processes together, per message, and the busiest one's share of a core. */
  clientUsPerMsg: number;
  clientCpuMax: number;
  rssIdle: number;
  rssPeak: number;
}

const clientProcs = new Set<TrackedProcess>();
const tell = (proc: TrackedProcess, line: string) => proc.child.stdin!.write(`${line}\n`);
const secondsSince = (t0: bigint, t: bigint) => Number(t - t0) / 1e9;

async function round(
  work: string,
  layout: Layout,
  withHub: boolean,
  messages: number,
): Promise<RoundResult> {
  const dir = mkdtempSync(join(work, "gw-"));
  const hub = withHub ? await startHub(layout) : undefined;
  const gw = new GatewayBundle(dir, {
    // $G stores nothing: the accounts' queues alone.
    upstream: { servers: [CLOSED_HUB], export: ["nothing.>"] },
    buffer: BUFFER,
    http: true,
    accounts: accountsOf(layout, hub),
  });
  const perClient = Math.ceil(messages / CLIENTS);
  const expected = perClient * CLIENTS;
  let peak: RssPeak | undefined;
  try {
    await gw.start();
    peak = new RssPeak(() => gw.pid, RSS_SAMPLE_MS);
    const rssIdle = rssMiB(gw.pid);
    const pairs = await Promise.all(
      Array.from({ length: CLIENTS }, async (_, i) => {
        const argv = [process.argv[1]!, ROLE, gw.natsPort, i, perClient].map(String);
        const proc = await spawnTracked(process.execPath, argv, { stdin: "pipe" });
        clientProcs.add(proc);
        await waitForLine(proc, (l) => l === "ready", START_TIMEOUT_MS);
        return proc;
      }),
    );
    const done = pairs.map((p) => {
      const d: { value?: string } = {};
      // A client that never says done is a loss: read with `report` below.
      waitForLine(p, (l) => l.startsWith("done "), RUN_TIMEOUT_MS).then(
        (l) => (d.value = l),
        () => {},
      );
      return d;
    });
    const counters = async () => {
      const res = await fetch(`${gw.httpBase}/metrics`, { signal: AbortSignal.timeout(5000) });
      const text = await res.text();
      return {
        stored: counterSum(text, "leafgate_outbox_appended_total"),
        forwarded: counterSum(text, "leafgate_upstream_forwarded_total"),
      };
    };
    const base = await counters();
    const cpu0 = cpuSeconds(gw.pid);
    const t0 = nowNs();
    for (const p of pairs) tell(p, "go");
    const at = { stored: t0, forwarded: t0 };
    let now = { stored: 0, forwarded: 0 };
    let quietSince = nowNs();
    for (let progress = ""; ; ) {
      await timeout(POLL_MS);
      const c = await counters();
      const next = { stored: c.stored - base.stored, forwarded: c.forwarded - base.forwarded };
      if (next.stored !== now.stored) at.stored = nowNs();
      if (next.forwarded !== now.forwarded) at.forwarded = nowNs();
      now = next;
      const delivered = done.filter((d) => d.value !== undefined).length;
      const forwardedAll = !withHub || now.forwarded >= expected;
      if (now.stored >= expected && delivered === CLIENTS && forwardedAll) break;
      const seen = `${now.stored} ${now.forwarded} ${delivered}`;
      if (seen !== progress) {
        progress = seen;
        quietSince = nowNs();
      } else if (Number(nowNs() - quietSince) / 1e6 > QUIET_MS) break;
    }
    const gatewayCpu = cpuSeconds(gw.pid) - cpu0;
    const ends = await Promise.all(
      pairs.map(async (p, i) => {
        const d = done[i]!.value;
        if (d !== undefined) return d;
        tell(p, "report");
        return waitForLine(p, (l) => l.startsWith("report "), START_TIMEOUT_MS);
      }),
    );
    const figures = ends.map((l) => l.split(" ").slice(1));
    const received = figures.reduce((a, f) => a + Number(f[0]), 0);
    const lastReceipt = figures.reduce((a, f) => (BigInt(f[1]!) > a ? BigInt(f[1]!) : a), t0);
    const clientCpu = figures.map((f) => Number(f[2]));
    const seconds = {
      stored: secondsSince(t0, at.stored),
      delivered: secondsSince(t0, lastReceipt),
      forwarded: secondsSince(t0, at.forwarded),
    };
    const wall = Math.max(seconds.stored, seconds.delivered, withHub ? seconds.forwarded : 0);
    return {
      stored: now.stored / seconds.stored,
      delivered: received / seconds.delivered,
      forwarded: withHub ? now.forwarded / seconds.forwarded : Number.NaN,
      missedStored: expected - now.stored,
      missedDelivered: expected - received,
      missedHub: hub ? expected - (await hubMessages(hub, layout)) : 0,
      gatewayUsPerMsg: (gatewayCpu * 1e6) / expected,
      gatewayCpu: gatewayCpu / wall,
      clientUsPerMsg: (clientCpu.reduce((a, c) => a + c, 0) * 1e6) / expected,
      clientCpuMax: Math.max(...clientCpu) / wall,
      rssIdle,
      rssPeak: peak.stop(),
    };
  } finally {
    peak?.stop();
    for (const p of clientProcs) tell(p, "end");
    await Promise.all([...clientProcs].map((p) => stopProcess(p, { graceMs: 10_000 })));
    clientProcs.clear();
    await gw.stop();
    await hub?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const percent = (share: number) => `${fmt(share * 100)}%`;

const CLOSED = "hub away";
const HUB = "hub";

async function main(): Promise<never> {
  const work = benchWorkDir("accounts");
  const layouts: Layout[] = ["1 account", "10 accounts"];
  const variants: [string, boolean, number][] = [[CLOSED, false, MESSAGES]];
  if (HUB_MESSAGES > 0) variants.push([HUB, true, HUB_MESSAGES]);
  const wallStart = performance.now();
  buildBundle();
  console.log(
    `\naccounts: ${CLIENTS} client processes, each one NATS publisher and one subscriber on its ` +
      `own exported subject (${PAYLOAD_BYTES}-byte messages, at most 2 x ${WINDOW} unflushed): ` +
      `every message stored in the outbox and delivered locally. All users in 1 account, or ` +
      `each in its own (${CLIENTS} accounts). "${CLOSED}": ${MESSAGES} messages, upstream a ` +
      `closed port (rows accumulate)` +
      (HUB_MESSAGES > 0
        ? `; "${HUB}": ${HUB_MESSAGES} messages, forwarded to a hub nats-server (JetStream), ` +
          "each account to its own hub account and stream"
        : "") +
      `. ${RUNS} rounds, interleaved, a fresh gateway (and hub) each\n`,
  );
  const rows = streamTable([
    { title: "run" },
    { title: "hub", left: true, width: CLOSED.length },
    { title: "layout", left: true, width: "10 accounts".length },
    { title: "stored/s", width: 8 },
    { title: "delivered/s", width: 8 },
    { title: "forwarded/s", width: 8 },
    { title: "missed", width: 6 },
    { title: "gw CPU" },
    { title: "gw us/msg" },
    { title: "clients us/msg" },
    { title: "busiest client" },
    { title: "RSS idle" },
    { title: "RSS peak" },
  ]);
  const results = new Map<string, RoundResult[]>();
  const failures: string[] = [];
  for (let run = 1; run <= RUNS; run++) {
    for (const [variant, withHub, messages] of variants) {
      for (const layout of layouts) {
        const r = await round(work, layout, withHub, messages);
        const key = `${variant} ${layout}`;
        results.set(key, [...(results.get(key) ?? []), r]);
        const missed = Math.max(r.missedStored, r.missedDelivered, r.missedHub);
        if (missed !== 0) {
          failures.push(
            `run ${run} ${key}: ${r.missedStored} not stored, ${r.missedDelivered} not ` +
              `delivered, ${r.missedHub} not in the hub's streams`,
          );
        }
        rows.row([
          run,
          variant,
          layout,
          fmt(r.stored),
          fmt(r.delivered),
          fmt(r.forwarded),
          missed,
          percent(r.gatewayCpu),
          fmt(r.gatewayUsPerMsg, 2),
          fmt(r.clientUsPerMsg, 2),
          percent(r.clientCpuMax),
          fmt(r.rssIdle, 1),
          fmt(r.rssPeak, 1),
        ]);
      }
    }
  }
  const med = (key: string, pick: (r: RoundResult) => number) =>
    median((results.get(key) ?? []).map(pick));
  const figures: [string, (r: RoundResult) => number, number][] = [
    ["stored msgs/s", (r) => r.stored, 0],
    ["delivered msgs/s", (r) => r.delivered, 0],
    ["forwarded msgs/s", (r) => r.forwarded, 0],
    ["gateway CPU us/msg", (r) => r.gatewayUsPerMsg, 2],
    ["gateway CPU % of a core", (r) => r.gatewayCpu * 100, 0],
    ["clients CPU us/msg (all)", (r) => r.clientUsPerMsg, 2],
    ["busiest client % of a core", (r) => r.clientCpuMax * 100, 0],
    ["RSS idle MiB", (r) => r.rssIdle, 1],
    ["RSS peak MiB", (r) => r.rssPeak, 1],
  ];
  for (const [variant, withHub] of variants) {
    const columns: Column[] = [
      { title: `medians, ${variant}`, left: true },
      { title: layouts[0]! },
      { title: layouts[1]! },
      { title: "10 / 1" },
    ];
    console.log();
    printTable(
      columns,
      figures
        .filter(([title]) => withHub || !title.startsWith("forwarded"))
        .map(([title, pick, digits]) => {
          const a = med(`${variant} ${layouts[0]}`, pick);
          const b = med(`${variant} ${layouts[1]}`, pick);
          return [title, fmt(a, digits), fmt(b, digits), ratio(b, a)];
        }),
    );
  }
  console.log(`\nbench wall time ${fmt((performance.now() - wallStart) / 1000, 1)} s`);
  if (failures.length > 0) {
    console.log(`\nFAILED: every message must be stored and delivered\n${failures.join("\n")}`);
    process.exit(1);
  }
  process.exit(0);
}

if (process.argv[2] === ROLE) {
  const [port, index, count] = process.argv.slice(3).map(Number);
  await pairRole(port!, index!, count!);
} else {
  await main();
}
