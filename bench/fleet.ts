// Fleet scale: N gateway processes (the built bundle) on this machine, each with its own
// simulated sensors (raw MQTT QoS 1 publishers in a few generator processes, paced to a fixed
// rate per gateway), forwarding to a 3-node nats-server cluster with one R3 stream on `edge.>`;
// every gateway knows all three nodes. The bench waits until the stream holds every message
// PUBACKed, reads it once in stream order and checks, per gateway, that every sensor's
// messages are there exactly once and in order; it reports the aggregate forwarded rate,
// per-gateway rate and lag (publish -> stored), and each process's CPU and RSS. With
// `--kill-node` (or BENCH_FLEET_KILL=1) the stream's leader is killed -9 at 40% of the run and
// started again at 70%. What each figure means: docs/fleet.md.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  spawnTracked,
  stopProcess,
  type TrackedProcess,
  waitForLine,
} from "../test/helpers/procs.js";
import { commands, say } from "./lib/client.js";
import { type Ceiling, measureCeiling } from "./lib/fleet-ceiling.js";
import { FleetCheck, fleetPayload, quantile, readStream, sensorTopic } from "./lib/fleet-check.js";
import { type Probe, probe } from "./lib/fleet-probes.js";
import { KEEPALIVE_S, Sensor } from "./lib/fleet-sensors.js";
import { type BenchGatewayConfig, GatewayBundle } from "./lib/gateway.js";
import { benchWorkDir, buildBundle, timeout } from "./lib/harness.js";
import { cpuSeconds, median, rssMiB } from "./lib/measure.js";
import { NatsCluster } from "./lib/nats-cluster.js";
import { fmt, printTable } from "./lib/table.js";

const argv = process.argv.slice(2);
const QUICK = argv.includes("--quick");
const JSON_FILE = argv.includes("--json") ? argv[argv.indexOf("--json") + 1] : undefined;
const KILL_NODE = argv.includes("--kill-node") || process.env.BENCH_FLEET_KILL === "1";
/** Instead of the fleet: what the hub's memory grows with (docs/fleet.md, "Hub memory"). */
const PROBES = argv.includes("--probes");
const PROBE_COUNT = Number(process.env.BENCH_FLEET_PROBE_COUNT ?? 1_000_000);
const PROBE_CONNECTIONS = Number(process.env.BENCH_FLEET_PROBE_CONNECTIONS ?? 2_000);

const GATEWAYS = Number(process.env.BENCH_FLEET_GATEWAYS ?? (QUICK ? 5 : 20));
const SECONDS = Number(process.env.BENCH_FLEET_SECONDS ?? (QUICK ? 10 : 30));
/** Messages per second per gateway, all its sensors together. */
const RATE = Number(process.env.BENCH_FLEET_RATE ?? 200);
const SENSORS = Number(process.env.BENCH_FLEET_SENSORS ?? 4);
const GENERATORS = Number(process.env.BENCH_FLEET_GENERATORS ?? 2);
const PAYLOAD_BYTES = Number(process.env.BENCH_FLEET_PAYLOAD ?? 100);
/** `buffer.commit_interval` of every gateway (docs/outbox.md, "Group commit"); unset: its default. */
const COMMIT_INTERVAL = process.env.BENCH_FLEET_COMMIT_INTERVAL;
/** BenchGatewayConfig's `buffer` names its limits: the gateway's defaults (docs/config.md). */
const BUFFER_DEFAULTS = { max_messages: 10_000_000, max_bytes: "1GB" };
/** The hub's ceiling (a bare pipelined publisher into an R3, then an R1 stream); 0: skipped. */
const CEILING_MESSAGES = Number(
  process.env.BENCH_FLEET_CEILING_MESSAGES ?? (QUICK ? 30_000 : 100_000),
);
/** In flight for the ceiling's publisher: about what the gateways have at most together. */
const CEILING_IN_FLIGHT = 4_000;
/** PUBLISHes a sensor keeps unacknowledged (libmosquitto's and paho's default max inflight). */
const WINDOW = 20;
const STREAM = "FLEET";
const SUBJECT_ROOT = "edge";
/**
 * The stream's duplicate window (docs/fleet.md, "Dedup window"): longer than the gateways'
 * ack_timeout, so a resend on the same connection is deduplicated; reconnects are reconciled
 * by the gateway beyond it.
 */
const DUPLICATE_WINDOW_NS = 2 * 60 * 1e9;
/**
 * A publish lost in a failover (sent to a node while the stream's new leader is not known
 * there) is resent this soon; the default (10 s) only makes the kill variant settle later.
 */
const ACK_TIMEOUT = "2s";
const START_CONCURRENCY = 4;
const STARTED_TIMEOUT_MS = 60_000;
const SAMPLE_MS = 500;
/** After the last PUBACK, the stream must hold everything within this (kill: a re-election). */
const SETTLE_TIMEOUT_MS = 120_000;
const READ_TIMEOUT_MS = 120_000;
const KILL_AT = 0.4;
const RESTART_AT = 0.7;
const ROLE = "--role";
const PING_EVERY_MS = (KEEPALIVE_S * 1000) / 2;
const TICK_MS = 10;

const gatewayId = (i: number) => `gw${String(i + 1).padStart(2, "0")}`;

// --- the generator process: the sensors of some gateways ----------------------------------

interface GeneratorSpec {
  targets: { gateway: string; port: number }[];
  sensors: number;
  rate: number;
  seconds: number;
  payloadBytes: number;
}

interface GeneratorReport {
  /** Per gateway, each sensor's messages PUBACKed. */
  acked: Record<string, number[]>;
  /** The most messages any sensor had due and unsent (its window full): 0-1 = kept pace. */
  maxBehind: number;
  errors: string[];
}

/** Connects every sensor, says `ready`; on `go` publishes; says `done <json>` when all acked. */
async function generatorRole(spec: GeneratorSpec): Promise<void> {
  const perSensorRate = spec.rate / spec.sensors;
  const count = Math.round(perSensorRate * spec.seconds);
  const sensors = spec.targets.flatMap(({ gateway, port }) =>
    Array.from(
      { length: spec.sensors },
      (_, s) =>
        [
          gateway,
          new Sensor({
            port,
            clientId: `${gateway}-s${s}`,
            topic: sensorTopic(s),
            count,
            rate: perSensorRate,
            window: WINDOW,
            payload: (seq) => fleetPayload(gateway, s, seq, spec.payloadBytes),
          }),
        ] as const,
    ),
  );
  await Promise.all(sensors.map(([, s]) => s.connect()));
  const report = (): GeneratorReport => {
    const acked: Record<string, number[]> = {};
    for (const [gateway, s] of sensors) {
      acked[gateway] ??= [];
      acked[gateway].push(s.acked);
    }
    return {
      acked,
      maxBehind: Math.max(...sensors.map(([, s]) => s.maxBehind)),
      errors: sensors.flatMap(([, s]) => (s.error ? [s.error] : [])),
    };
  };
  say("ready");
  const input = commands();
  await input.next(); // go
  const t0 = performance.now();
  let finished = false;
  const finish = () => {
    if (finished || !sensors.every(([, s]) => s.done || s.error)) return;
    finished = true;
    clearInterval(tick);
    clearInterval(ping);
    say(`done ${JSON.stringify(report())}`);
  };
  for (const [, s] of sensors) s.onDone = finish;
  const tick = setInterval(() => {
    const elapsed = performance.now() - t0;
    for (const [, s] of sensors) s.pump(elapsed);
  }, TICK_MS);
  const ping = setInterval(() => {
    for (const [, s] of sensors) s.ping();
  }, PING_EVERY_MS);
  for (let c = await input.next(); !c.done && c.value !== "end"; c = await input.next()) {
    if (c.value === "report") say(`report ${JSON.stringify(report())}`);
  }
  clearInterval(tick);
  clearInterval(ping);
  for (const [, s] of sensors) s.close();
  process.exit(0);
}

// --- the bench ----------------------------------------------------------------------------

interface Usage {
  cpu0: number;
  rssPeak: number;
}

/** CPU at the start and the RSS peak of a set of PIDs (a restarted node gets a new one). */
class Watch {
  readonly #usage = new Map<string, Usage>();
  readonly #pids: () => [string, number][];
  readonly #cpuBefore = new Map<string, number>();

  constructor(pids: () => [string, number][]) {
    this.#pids = pids;
  }

  start(): void {
    for (const [name, pid] of this.#pids())
      this.#usage.set(name, { cpu0: cpuSeconds(pid), rssPeak: rssMiB(pid) });
  }

  sample(): void {
    for (const [name, pid] of this.#pids()) {
      const u = this.#usage.get(name);
      if (u) u.rssPeak = Math.max(u.rssPeak, rssMiB(pid) || 0);
    }
  }

  /** Before a process is replaced: keep the CPU it used so far. */
  retire(name: string, pid: number): void {
    const u = this.#usage.get(name)!;
    this.#cpuBefore.set(name, (this.#cpuBefore.get(name) ?? 0) + cpuSeconds(pid) - u.cpu0);
    u.cpu0 = 0; // the new process starts from zero
  }

  /** Per name: CPU seconds used since start(), RSS peak in MiB. */
  end(): Map<string, { cpu: number; rssPeak: number }> {
    const out = new Map<string, { cpu: number; rssPeak: number }>();
    for (const [name, pid] of this.#pids()) {
      const u = this.#usage.get(name)!;
      out.set(name, {
        cpu: (this.#cpuBefore.get(name) ?? 0) + cpuSeconds(pid) - u.cpu0,
        rssPeak: u.rssPeak,
      });
    }
    return out;
  }
}

const tell = (proc: TrackedProcess, line: string) => proc.child.stdin!.write(`${line}\n`);
const percent = (share: number) => `${fmt(share * 100)}%`;

async function startGateways(work: string, urls: string[]): Promise<GatewayBundle[]> {
  const gateways: GatewayBundle[] = [];
  for (let i = 0; i < GATEWAYS; i += START_CONCURRENCY) {
    const batch = Array.from({ length: Math.min(START_CONCURRENCY, GATEWAYS - i) }, (_, k) => {
      const id = gatewayId(i + k);
      const dir = join(work, id);
      mkdirSync(dir);
      // GatewayBundle names every gateway "bench"; the fleet needs its own id per gateway
      // (subjects edge.<id>.>, Nats-Msg-Id <id>-<row>): `gateway` is written after its default.
      const config: BenchGatewayConfig = Object.assign(
        {
          upstream: {
            servers: urls,
            stream: STREAM,
            export: ["sensors.>"],
            prefix: `${SUBJECT_ROOT}.{gateway}`,
            ack_timeout: ACK_TIMEOUT,
          },
        },
        { gateway: { id, data_dir: "./data" } },
        COMMIT_INTERVAL === undefined
          ? {}
          : { buffer: { ...BUFFER_DEFAULTS, commit_interval: COMMIT_INTERVAL } },
      );
      return new GatewayBundle(dir, config).start();
    });
    gateways.push(...(await Promise.all(batch)));
  }
  // Forwarding once the stream is found (the stream check is the last step before it).
  await Promise.all(gateways.map((g) => g.line('"msg":"hub stream found"', STARTED_TIMEOUT_MS)));
  return gateways;
}

async function startGenerators(gateways: GatewayBundle[]): Promise<TrackedProcess[]> {
  const count = Math.min(GENERATORS, gateways.length);
  return Promise.all(
    Array.from({ length: count }, async (_, g) => {
      const spec: GeneratorSpec = {
        targets: gateways
          .map((gw, i) => ({ gateway: gatewayId(i), port: gw.mqttPort }))
          .filter((_, i) => i % count === g),
        sensors: SENSORS,
        rate: RATE,
        seconds: SECONDS,
        payloadBytes: PAYLOAD_BYTES,
      };
      const proc = await spawnTracked(
        process.execPath,
        [process.argv[1]!, ROLE, JSON.stringify(spec)],
        {
          stdin: "pipe",
        },
      );
      await waitForLine(proc, (l) => l === "ready", STARTED_TIMEOUT_MS);
      return proc;
    }),
  );
}

async function streamCount(nc: NatsConnection): Promise<number | undefined> {
  try {
    const jsm = await jetstreamManager(nc, { timeout: 2_000 });
    return (await jsm.streams.info(STREAM)).state.messages;
  } catch {
    return undefined; // a leader election: asked again at the next sample
  }
}

interface Result {
  json: unknown;
  failed: string[];
}

async function run(work: string): Promise<Result> {
  const failed: string[] = [];
  const cluster = await NatsCluster.start(work);
  const nc = await cluster.connect();
  const gateways: GatewayBundle[] = [];
  const generators: TrackedProcess[] = [];
  try {
    await cluster.createStream(nc, {
      name: STREAM,
      subjects: [`${SUBJECT_ROOT}.>`],
      duplicate_window: DUPLICATE_WINDOW_NS,
    });
    const t0Start = performance.now();
    gateways.push(...(await startGateways(work, cluster.urls)));
    const startedS = (performance.now() - t0Start) / 1000;
    const idleRss = gateways.map((g) => rssMiB(g.pid));
    generators.push(...(await startGenerators(gateways)));

    const names = cluster.names;
    const watch = new Watch(() => [
      ...gateways.map((g, i) => [gatewayId(i), g.pid] as [string, number]),
      ...cluster.pids.map((pid, i) => [names[i]!, pid] as [string, number]),
      ...generators.map((p, i) => [`gen${i + 1}`, p.pid] as [string, number]),
    ]);
    const reports: (GeneratorReport | undefined)[] = generators.map(() => undefined);
    const done = generators.map((p, i) =>
      waitForLine(p, (l) => l.startsWith("done "), SECONDS * 1000 + SETTLE_TIMEOUT_MS).then(
        (l) => {
          reports[i] = JSON.parse(l.slice("done ".length)) as GeneratorReport;
        },
        () => {},
      ),
    );
    watch.start();
    const t0 = performance.now();
    for (const p of generators) tell(p, "go");

    // Sample the stream's count (and RSS) while the load runs; kill and restart a node.
    const samples: [number, number][] = [];
    let killed: { index: number; name: string; atS: number; restartedAtS?: number } | undefined;
    let publishedAt: number | undefined;
    void Promise.all(done).then(() => {
      publishedAt = performance.now();
    });
    const elapsedS = () => (performance.now() - t0) / 1000;
    let expected = Number.POSITIVE_INFINITY;
    for (;;) {
      await timeout(SAMPLE_MS);
      watch.sample();
      const count = await streamCount(nc);
      if (count !== undefined) samples.push([elapsedS(), count]);
      if (KILL_NODE && !killed && elapsedS() >= SECONDS * KILL_AT) {
        const leader = (await cluster.streamReady(nc, STREAM)).cluster!.leader!;
        const index = cluster.indexOf(leader);
        killed = { index, name: leader, atS: elapsedS() };
        watch.retire(leader, cluster.pids[index]!);
        await cluster.kill(index);
        console.log(`${fmt(killed.atS, 1)} s: killed -9 ${leader}, the stream's leader`);
      }
      if (killed && killed.restartedAtS === undefined && elapsedS() >= SECONDS * RESTART_AT) {
        await cluster.restart(killed.index);
        killed.restartedAtS = elapsedS();
        console.log(`${fmt(killed.restartedAtS, 1)} s: ${killed.name} started again`);
      }
      if (publishedAt !== undefined && expected === Number.POSITIVE_INFINITY) {
        expected = reports.reduce(
          (a, r) =>
            a +
            Object.values(r?.acked ?? {})
              .flat()
              .reduce((b, n) => b + n, 0),
          0,
        );
      }
      if (count !== undefined && count >= expected) break;
      if (publishedAt !== undefined && performance.now() - publishedAt > SETTLE_TIMEOUT_MS) {
        failed.push(
          `the stream held ${samples.at(-1)?.[1]} of ${expected} messages after the deadline`,
        );
        break;
      }
      if (elapsedS() > SECONDS + SETTLE_TIMEOUT_MS / 1000 && publishedAt === undefined) break;
    }
    // A generator that never said `done` (a sensor never got every PUBACK): what it has.
    await Promise.all(
      generators.map(async (p, i) => {
        if (reports[i] !== undefined) return;
        failed.push(`generator ${i + 1} did not get every PUBACK`);
        tell(p, "report");
        const l = await waitForLine(p, (l) => l.startsWith("report "), 10_000);
        reports[i] = JSON.parse(l.slice("report ".length)) as GeneratorReport;
      }),
    );
    if (killed && killed.restartedAtS === undefined) {
      await cluster.restart(killed.index);
      killed.restartedAtS = elapsedS();
    }
    const wallS = elapsedS();
    const usage = watch.end();

    // The aggregate rate: messages in the stream over go -> the sample where it held them all.
    const total = samples.at(-1)?.[1] ?? 0;
    const reachedAll = samples.find(([, n]) => n >= total)?.[0] ?? wallS;
    const aggregate = total / reachedAll;
    // The steady part: between 20% and 80% of the load's seconds.
    const at = (s: number) => samples.find(([t]) => t >= s) ?? samples.at(-1)!;
    const [s1, n1] = at(SECONDS * 0.2);
    const [s2, n2] = at(SECONDS * 0.8);
    const steady = (n2 - n1) / (s2 - s1);

    // Read the stream once, in order, and check every gateway.
    const sent = new Map<string, number[]>();
    for (const r of reports)
      for (const [gw, counts] of Object.entries(r?.acked ?? {})) sent.set(gw, counts);
    const check = new FleetCheck(sent, SUBJECT_ROOT);
    const streamLeader = (await cluster.streamReady(nc, STREAM)).cluster?.leader;
    const read = await readStream(nc, STREAM, check, READ_TIMEOUT_MS);
    const verdicts = check.verdicts();
    if (verdicts.length !== GATEWAYS)
      failed.push(`${verdicts.length} of ${GATEWAYS} gateways reported`);
    const { state } = await (await jetstreamManager(nc)).streams.info(STREAM);
    const bytesPerMessage = state.bytes / state.messages;
    // The hub's own ceiling, after the fleet (its memory would blur the nodes' RSS figures).
    const ceilings: Ceiling[] = [];
    if (CEILING_MESSAGES > 0) {
      for (const replicas of [3, 1]) {
        ceilings.push(
          await measureCeiling(
            cluster,
            nc,
            replicas,
            CEILING_MESSAGES,
            CEILING_IN_FLIGHT,
            PAYLOAD_BYTES,
          ),
        );
      }
      printTable(
        [
          { title: "hub ceiling (bare publisher)", left: true },
          { title: "msgs/s" },
          { title: "cluster CPU us/msg" },
          { title: "failed acks" },
        ],
        ceilings.map((c) => [
          `R${c.replicas} stream, ${CEILING_IN_FLIGHT} in flight`,
          fmt(c.msgsPerSecond),
          fmt(c.clusterUsPerMsg, 1),
          c.failed,
        ]),
      );
      for (const c of ceilings.filter((c) => c.failed > 0))
        failed.push(`ceiling R${c.replicas}: ${c.failed} acks failed`);
    }
    const errors = reports.flatMap((r) => r?.errors ?? []);
    if (errors.length > 0) failed.push(`generator errors: ${errors.slice(0, 5).join("; ")}`);
    if (check.stray > 0) failed.push(`${check.stray} messages of no gateway of the fleet`);
    for (const v of verdicts.filter((v) => !v.ok)) {
      // What the gateway said meanwhile (warnings and errors: refusals, resends, failovers).
      const gw = gateways[Number(v.gateway.slice(2)) - 1];
      const said = (gw?.proc.stdout() ?? "")
        .split("\n")
        .filter((l) => /"level":(40|50)/.test(l))
        .slice(0, 10);
      if (said.length > 0) console.log(`${v.gateway} logged:\n${said.join("\n")}`);
      if (v.examples.length > 0)
        console.log(`${v.gateway} in the stream:\n${v.examples.join("\n")}`);
      failed.push(
        `${v.gateway}: ${v.missing} missing, ${v.duplicates} duplicated, ${v.outOfOrder} out of ` +
          `order, ${v.foreign} foreign, ${v.badIds} bad Nats-Msg-Ids (of ${v.expected})`,
      );
    }
    if (read !== total) failed.push(`read ${read} messages, the stream held ${total}`);
    const offered = GATEWAYS * RATE;

    // --- tables ---
    const lags = check.allLags();
    const rates = verdicts.map((v) => v.msgsPerSecond);
    const gwCpu = gateways.map((_, i) => usage.get(gatewayId(i))!.cpu / wallS);
    const gwRss = gateways.map((_, i) => usage.get(gatewayId(i))!.rssPeak);
    const mmm = (xs: number[], digits = 0) => {
      const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
      return [fmt(s[0], digits), fmt(median(s), digits), fmt(s.at(-1), digits)];
    };
    const lagP50 = verdicts.map((v) => v.lagP50Ms);
    const lagP99 = verdicts.map((v) => v.lagP99Ms);
    console.log(
      `\n${GATEWAYS} gateways started in ${fmt(startedS, 1)} s; load ${SECONDS} s; the stream ` +
        `held all ${total} messages ${fmt(reachedAll, 1)} s after go\n`,
    );
    printTable(
      [{ title: "fleet", left: true }, { title: "value" }],
      [
        ["offered msgs/s (gateways x rate)", offered],
        ["aggregate forwarded msgs/s (go -> all in stream)", fmt(aggregate)],
        ["steady forwarded msgs/s (20%-80% of the load)", fmt(steady)],
        ["lag publish -> stored p50 ms, all", fmt(quantile(lags, 0.5), 1)],
        ["lag publish -> stored p99 ms, all", fmt(quantile(lags, 0.99), 1)],
        ["lag max ms, all", fmt(quantile(lags, 1), 1)],
        ["messages checked", read],
        ["stored bytes per message (subject, headers, payload)", fmt(bytesPerMessage)],
        [
          "gateways exactly once, in order",
          `${verdicts.filter((v) => v.ok).length} / ${verdicts.length}`,
        ],
      ],
    );
    console.log();
    printTable(
      [
        { title: "per gateway", left: true },
        { title: "min" },
        { title: "median" },
        { title: "max" },
      ],
      [
        ["forwarded msgs/s", ...mmm(rates)],
        ["lag p50 ms", ...mmm(lagP50, 1)],
        ["lag p99 ms", ...mmm(lagP99, 1)],
        [
          "CPU % of a core",
          ...mmm(
            gwCpu.map((c) => c * 100),
            1,
          ),
        ],
        [
          "CPU us per message",
          ...mmm(
            gateways.map(
              (_, i) => (usage.get(gatewayId(i))!.cpu * 1e6) / (verdicts[i]?.received || 1),
            ),
            1,
          ),
        ],
        ["RSS idle MiB", ...mmm(idleRss, 1)],
        ["RSS peak MiB", ...mmm(gwRss, 1)],
      ],
    );
    console.log();
    const others = [
      ...names.map(
        (n) => [n === streamLeader ? `${n} (stream leader)` : n, usage.get(n)!] as const,
      ),
      ...generators.map((_, i) => [`generator ${i + 1}`, usage.get(`gen${i + 1}`)!] as const),
    ];
    printTable(
      [
        { title: "process", left: true },
        { title: "CPU % of a core" },
        { title: "us/msg" },
        { title: "RSS peak MiB" },
      ],
      [
        ...others.map(([name, u]) => [
          name,
          percent(u.cpu / wallS),
          fmt((u.cpu * 1e6) / total, 1),
          fmt(u.rssPeak, 1),
        ]),
        [
          "all gateways",
          percent(gwCpu.reduce((a, c) => a + c, 0)),
          fmt((gateways.reduce((a, _, i) => a + usage.get(gatewayId(i))!.cpu, 0) * 1e6) / total, 1),
          fmt(
            gwRss.reduce((a, r) => a + r, 0),
            0,
          ),
        ],
      ],
    );
    const maxBehind = Math.max(...reports.map((r) => r?.maxBehind ?? 0));
    console.log(
      `\ngenerators: at most ${maxBehind} message(s) due and unsent on any sensor ` +
        `(its window of ${WINDOW} full); ${killed ? `killed ${killed.name} at ${fmt(killed.atS, 1)} s, started again at ${fmt(killed.restartedAtS, 1)} s` : "no node killed"}`,
    );
    // Every PUBACKed message in the stream once (order aside): what `failed` says but order.
    const exactlyOnce =
      errors.length === 0 &&
      check.stray === 0 &&
      read === total &&
      verdicts.length === GATEWAYS &&
      reports.every((r) => r !== undefined) &&
      verdicts.every(
        (v) => v.missing === 0 && v.duplicates === 0 && v.badIds === 0 && v.foreign === 0,
      );
    const inOrder = verdicts.every((v) => v.outOfOrder === 0);
    const scenario = `fleet: ${GATEWAYS} gateways x ${RATE} msgs/s -> 3-node R3 stream${killed ? ", stream leader killed -9" : ""}`;
    const json = {
      bench: "fleet",
      rows: [
        {
          scenario: `${scenario}, aggregate forwarded`,
          unit: "msgs/s",
          leafgate: aggregate,
          peer: "offered load (gateways x rate)",
          peerValue: offered,
          ratio: aggregate / offered,
          target: null,
          rounds: { leafgate: [aggregate], peer: [offered] },
          checks: { exactlyOnce, inOrder },
        },
      ],
      cpu: {
        wallSeconds: wallS,
        gatewaysShareOfCore: gwCpu,
        gatewayUsPerMsgMedian: median(
          gateways.map(
            (_, i) => (usage.get(gatewayId(i))!.cpu * 1e6) / (verdicts[i]?.received || 1),
          ),
        ),
        clusterShareOfCore: Object.fromEntries(names.map((n) => [n, usage.get(n)!.cpu / wallS])),
        generatorsShareOfCore: generators.map((_, i) => usage.get(`gen${i + 1}`)!.cpu / wallS),
      },
      perGateway: verdicts.map((v, i) => ({
        ...v,
        cpuShare: gwCpu[i],
        rssPeakMiB: gwRss[i],
        rssIdleMiB: idleRss[i],
      })),
      lagMs: { p50: quantile(lags, 0.5), p99: quantile(lags, 0.99), max: quantile(lags, 1) },
      steadyMsgsPerSecond: steady,
      killed: killed ?? null,
      streamLeader,
      hubCeiling: ceilings,
      streamBytesPerMessage: bytesPerMessage,
      generatorMaxBehind: maxBehind,
    };
    return { json, failed };
  } finally {
    for (const p of generators) tell(p, "end");
    await Promise.all(generators.map((p) => stopProcess(p, { graceMs: 5_000 })));
    await Promise.all(gateways.map((g) => g.stop()));
    await nc.close();
    await cluster.stop();
  }
}

async function probes(): Promise<never> {
  benchWorkDir("fleet");
  const results: Probe[] = [];
  for (const kind of ["baseline", "msg-ids", "subjects"] as const) {
    results.push(await probe(kind, PROBE_COUNT));
  }
  results.push(await probe("connections", PROBE_CONNECTIONS));
  const what = {
    baseline: "messages on 4 subjects, no Nats-Msg-Id",
    "msg-ids": "messages with a distinct Nats-Msg-Id (window 1 h)",
    subjects: "messages on as many distinct subjects",
    connections: "idle client connections, 2 subscriptions each",
  };
  printTable(
    [
      { title: "nats-server RSS grows by", left: true },
      { title: "count" },
      { title: "MiB before" },
      { title: "MiB after" },
      { title: "bytes each" },
    ],
    results.map((r) => [
      what[r.kind],
      r.count,
      fmt(r.rssBeforeMiB, 1),
      fmt(r.rssAfterMiB, 1),
      fmt(r.bytesEach),
    ]),
  );
  if (JSON_FILE)
    writeFileSync(
      JSON_FILE,
      `${JSON.stringify({ bench: "fleet-probes", rows: [], probes: results }, null, 2)}\n`,
    );
  process.exit(0);
}

async function main(): Promise<never> {
  const work = benchWorkDir("fleet");
  buildBundle();
  console.log(
    `\nfleet: ${GATEWAYS} gateways (the bundle), ${SENSORS} MQTT QoS 1 sensors each (window ` +
      `${WINDOW}), ${RATE} msgs/s per gateway for ${SECONDS} s (${PAYLOAD_BYTES}-byte payloads), ` +
      `${Math.min(GENERATORS, GATEWAYS)} generator processes; hub: 3-node nats-server cluster, ` +
      `stream ${STREAM} on ${SUBJECT_ROOT}.> with 3 replicas${KILL_NODE ? "; the stream leader killed -9 at 40%, started again at 70%" : ""}\n`,
  );
  const { json, failed } = await run(work);
  if (JSON_FILE) writeFileSync(JSON_FILE, `${JSON.stringify(json, null, 2)}\n`);
  if (failed.length > 0) {
    console.log(`\nFAILED: every message exactly once and in order\n${failed.join("\n")}`);
    process.exit(1);
  }
  process.exit(0);
}

if (argv[0] === ROLE) {
  await generatorRole(JSON.parse(argv[1]!) as GeneratorSpec);
} else if (PROBES) {
  await probes();
} else {
  await main();
}
