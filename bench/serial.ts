// The serial path: frames on a socat pty -> framer -> decoder -> outbox, (a) decode throughput
// per shipped profile and (b) a realistic load of ten devices. How frames are built and paced,
// and what each figure means: docs/bench.md.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { spawnTracked, stopProcess, type TrackedProcess } from "../test/helpers/procs.js";
import { waitFor } from "../test/helpers/wait.js";
import { CLOSED_HUB, GatewayBundle } from "./lib/gateway.js";
import { benchScript, benchWorkDir, buildBundle, DEVICES_DIR } from "./lib/harness.js";
import { cpuSeconds, median, rssMiB } from "./lib/measure.js";
import { framePool, Unsupported } from "./lib/serial-frames.js";
import { fmt, printTable } from "./lib/table.js";
import type { WriterTarget } from "./serial-writer.js";

/** Profiles benchmarked in (a), when devices/<name>.yaml exists. */
const CANDIDATES = ["env-sensor", "pms5003", "gps-nmea", "weather-csv", "energy-meter"];
const BAUDS = [115200, 921600];
const UNPACED = 0; // a "baud rate" of 0: as fast as the pty takes it
const BITS_PER_BYTE = 10; // start + 8 data + stop
const WARMUP_MS = Number(process.env.BENCH_WARMUP_MS ?? 1000);
const WINDOW_MS = Number(process.env.BENCH_WINDOW_MS ?? 2000);
const WINDOWS = Number(process.env.BENCH_WINDOWS ?? 3);
const LOAD_DEVICES = 10;
const LOAD_FPS = 10;
const LOAD_SECONDS = Number(process.env.BENCH_LOAD_SECONDS ?? 20);
/** Messages from one env-sensor frame (3 fields) and one pms5003 frame (1, per_frame). */
const MESSAGES_PER_DEVICE_PAIR = 4;
/** The whole run is killed after this, whatever hangs. */
const DEADLINE_MS = Number(process.env.BENCH_DEADLINE_MS ?? 360_000);
/** The decoded count is still when it did not move over this. */
const SETTLE_POLL_MS = 150;
const SETTLE_MAX_MS = 3000;
const LOAD_SAMPLE_MS = 1000;
/** The load writer's count plus this is the longest the load may run. */
const LOAD_SLACK_S = 10;
const GATEWAY_GRACE_MS = 6000;
const SOCAT_GRACE_MS = 2000;
const WRITER_GRACE_MS = 1000;
const OUTPUT_TAIL = 2000;
/** Far more than any run writes: the outbox never evicts. */
const BUFFER = { max_messages: 1_000_000_000, max_bytes: "8GB" };

interface Pty {
  dev: string;
  sim: string;
  proc: TrackedProcess;
}

async function ptyPair(work: string, name: string): Promise<Pty> {
  const dev = join(work, `${name}-dev`);
  const sim = join(work, `${name}-sim`);
  const proc = await spawnTracked("socat", [
    `pty,raw,echo=0,link=${dev}`,
    `pty,raw,echo=0,link=${sim}`,
  ]);
  await waitFor(() => proc.exitInfo === undefined && existsSync(dev) && existsSync(sim), {
    timeoutMs: 5000,
    message: () => `socat pty pair\n${proc.describe()}`,
  });
  return { dev, sim, proc };
}

/** Starts the bundle with `ports`; resolves once /status shows every port open. */
async function startGateway(
  work: string,
  name: string,
  ports: { path: string; profile: string; device: string }[],
): Promise<GatewayBundle> {
  const gw = new GatewayBundle(mkdtempSync(join(work, `gw-${name}-`)), {
    upstream: { servers: [CLOSED_HUB] },
    buffer: BUFFER,
    serial: { ports },
    http: true,
  });
  await gw.start();
  await waitFor(
    async () => {
      const serial = (await gw.status()).serial ?? [];
      return serial.length === ports.length && serial.every((s) => s.state === "open");
    },
    {
      timeoutMs: 15_000,
      message: () => `gateway with every serial port open\n${gw.proc.describe()}`,
    },
  );
  return gw;
}

/** `name{port="…"}` values of a counter family, summed per port. */
async function counters(gw: GatewayBundle, name: string): Promise<Map<string, number>> {
  const text = await fetch(`${gw.httpBase}/metrics`).then((r) => r.text());
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`)) continue;
    const port = /port="([^"]*)"/.exec(line)?.[1];
    const value = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (port !== undefined) out.set(port, (out.get(port) ?? 0) + value);
  }
  return out;
}

const sum = (m: Map<string, number>) => [...m.values()].reduce((s, v) => s + v, 0);

interface Writer {
  proc: TrackedProcess;
  /** The writer's latest report: [its clock in ms, frames written]. */
  count(): [number, number];
}

async function startWriter(targets: WriterTarget[], unpaced = false): Promise<Writer> {
  const spec = JSON.stringify({ targets, unpaced });
  const proc = await spawnTracked(process.execPath, [benchScript("serial-writer"), spec]);
  const count = (): [number, number] => {
    const lines = proc.stdout().trimEnd().split("\n");
    for (let i = lines.length - 1; i >= 0; i--) {
      const m = /^(\d+) (\d+)$/.exec(lines[i]!);
      if (m) return [Number(m[1]), Number(m[2])];
    }
    return [Date.now(), 0];
  };
  return { proc, count };
}

interface Sample {
  at: number;
  frames: number;
  bad: number;
  cpu: number;
  socatCpu: number;
  written: [number, number];
}

/** One sample of everything a window needs. */
async function sample(gw: GatewayBundle, w: Writer, socatPids: number[]): Promise<Sample> {
  const [frames, bad] = await Promise.all([
    counters(gw, "leafgate_serial_frames_total"),
    counters(gw, "leafgate_serial_bad_frames_total"),
  ]);
  return {
    at: performance.now(),
    frames: sum(frames),
    bad: sum(bad),
    cpu: cpuSeconds(gw.pid),
    socatCpu: socatPids.reduce((s, pid) => s + cpuSeconds(pid), 0),
    written: w.count(),
  };
}

function rates(a: Sample, b: Sample) {
  const secs = (b.at - a.at) / 1000;
  const writerSecs = (b.written[0] - a.written[0]) / 1000;
  return {
    offered: writerSecs > 0 ? (b.written[1] - a.written[1]) / writerSecs : Number.NaN,
    decoded: (b.frames - a.frames) / secs,
    bad: b.bad - a.bad,
    cpu: ((b.cpu - a.cpu) / secs) * 100,
    socatCpu: ((b.socatCpu - a.socatCpu) / secs) * 100,
  };
}

/** Waits until the decoded count stops moving (the pty buffers drained), at most 3 s. */
async function settle(gw: GatewayBundle): Promise<void> {
  let last = -1;
  const deadline = Date.now() + SETTLE_MAX_MS;
  while (Date.now() < deadline) {
    const now = sum(await counters(gw, "leafgate_serial_frames_total"));
    if (now === last) return;
    last = now;
    await delay(SETTLE_POLL_MS);
  }
}

/** Stops the writer; throws if it had failed by itself. */
async function stopWriter(w: Writer): Promise<void> {
  const failed = w.proc.exitInfo !== undefined && w.proc.exitInfo.code !== 0;
  await stopProcess(w.proc, { graceMs: WRITER_GRACE_MS });
  if (failed) throw new Error(`writer failed: ${w.proc.describe().slice(-OUTPUT_TAIL)}`);
}

interface ThroughputRow {
  name: string;
  baud: number;
  bytes: number;
  msgsPerFrame: number;
  offered: number;
  decoded: number;
  ratio: number;
  bad: number;
  cpu: number;
  socatCpu: number;
  rss: number;
}

async function benchProfile(work: string, name: string): Promise<ThroughputRow[]> {
  const profileFile = join(DEVICES_DIR, `${name}.yaml`);
  const { profile, meanBytes } = framePool(profileFile);
  const pair = await ptyPair(work, name);
  const gw = await startGateway(work, name, [
    { path: pair.dev, profile: profileFile, device: "dev-1" },
  ]);
  const msgsPerFrame = profile.publish === "per_frame" ? 1 : profile.fields.length;
  const rows: ThroughputRow[] = [];
  try {
    for (const baud of [...BAUDS, UNPACED]) {
      const fps = baud / BITS_PER_BYTE / meanBytes;
      const w = await startWriter([{ sim: pair.sim, profile: profileFile, fps }], baud === UNPACED);
      await delay(WARMUP_MS);
      const samples = [await sample(gw, w, [pair.proc.pid])];
      for (let i = 0; i < WINDOWS; i++) {
        await delay(WINDOW_MS);
        samples.push(await sample(gw, w, [pair.proc.pid]));
      }
      await stopWriter(w);
      const windows = samples.slice(1).map((s, i) => rates(samples[i]!, s));
      // Over all windows together: frames in flight at a window's edge even out.
      const whole = rates(samples[0]!, samples.at(-1)!);
      rows.push({
        name,
        baud,
        bytes: meanBytes,
        msgsPerFrame,
        offered: median(windows.map((r) => r.offered)),
        decoded: median(windows.map((r) => r.decoded)),
        ratio: whole.decoded / whole.offered,
        bad: windows.reduce((s, r) => s + r.bad, 0),
        cpu: median(windows.map((r) => r.cpu)),
        socatCpu: median(windows.map((r) => r.socatCpu)),
        rss: rssMiB(gw.pid),
      });
      await settle(gw);
    }
  } finally {
    await stopProcess(gw.proc, { graceMs: GATEWAY_GRACE_MS });
    await stopProcess(pair.proc, { graceMs: SOCAT_GRACE_MS });
  }
  return rows;
}

async function benchLoad(work: string) {
  const env = join(DEVICES_DIR, "env-sensor.yaml");
  const pms = join(DEVICES_DIR, "pms5003.yaml");
  const pairs: (Pty & { profile: string; device: string })[] = [];
  for (let i = 0; i < LOAD_DEVICES; i++) {
    const profile = i % 2 === 0 ? env : pms;
    pairs.push({ ...(await ptyPair(work, `load-${i}`)), profile, device: `dev-${i}` });
  }
  const gw = await startGateway(
    work,
    "load",
    pairs.map((p) => ({ path: p.dev, profile: p.profile, device: p.device })),
  );
  const socatPids = pairs.map((p) => p.proc.pid);
  try {
    await delay(1000);
    const idleRss = rssMiB(gw.pid);
    const count = LOAD_FPS * LOAD_SECONDS;
    const w = await startWriter(
      pairs.map((p) => ({ sim: p.sim, profile: p.profile, fps: LOAD_FPS, count })),
    );
    let finished = false;
    void w.proc.exited.then(() => {
      finished = true;
    });
    let prev = await sample(gw, w, socatPids);
    const cpu: number[] = [];
    const socatCpu: number[] = [];
    const rss: number[] = [];
    const deadline = Date.now() + (LOAD_SECONDS + LOAD_SLACK_S) * 1000;
    while (!finished && Date.now() < deadline) {
      await Promise.race([delay(LOAD_SAMPLE_MS), w.proc.exited]);
      if (finished) break;
      const next = await sample(gw, w, socatPids);
      const r = rates(prev, next);
      cpu.push(r.cpu);
      socatCpu.push(r.socatCpu);
      rss.push(rssMiB(gw.pid));
      prev = next;
    }
    const tail = () => w.proc.describe().slice(-OUTPUT_TAIL);
    if (!finished) throw new Error(`load writer did not finish: ${tail()}`);
    if (w.proc.exitInfo?.code !== 0) throw new Error(`load writer failed: ${tail()}`);
    await settle(gw);
    const last = await sample(gw, w, socatPids);
    const frames = await counters(gw, "leafgate_serial_frames_total");
    const perPort = pairs.map((p) => frames.get(p.dev) ?? 0);
    return {
      idleRss,
      cpu,
      socatCpu,
      rss,
      written: last.written[1],
      decodedTotal: last.frames,
      bad: last.bad,
      perPort,
    };
  } finally {
    await stopProcess(gw.proc, { graceMs: GATEWAY_GRACE_MS });
    await Promise.all(pairs.map((p) => stopProcess(p.proc, { graceMs: SOCAT_GRACE_MS })));
  }
}

function printThroughput(rows: ThroughputRow[]): void {
  console.log(
    `\n(a) decode throughput, one port; medians of ${WINDOWS} windows of ${WINDOW_MS / 1000} s (after ${WARMUP_MS / 1000} s warm-up)\n`,
  );
  printTable(
    [
      { title: "profile", left: true },
      { title: "bytes/frame" },
      { title: "msgs/frame" },
      { title: "writer pace", left: true },
      { title: "offered fr/s" },
      { title: "decoded fr/s" },
      { title: "decoded %" },
      { title: "bad" },
      { title: "gateway CPU%" },
      { title: "socat CPU%" },
      { title: "RSS MiB" },
    ],
    rows.map((r) => [
      r.name,
      fmt(r.bytes, 1),
      r.msgsPerFrame,
      r.baud === UNPACED ? "unpaced" : `${r.baud} baud`,
      fmt(r.offered),
      fmt(r.decoded),
      fmt(r.ratio * 100, 1),
      r.bad,
      fmt(r.cpu, 1),
      fmt(r.socatCpu, 1),
      fmt(r.rss, 1),
    ]),
  );
}

function printLoad(l: Awaited<ReturnType<typeof benchLoad>>): void {
  const expected = LOAD_DEVICES * LOAD_FPS * LOAD_SECONDS;
  console.log(
    `\n(b) realistic load: ${LOAD_DEVICES} devices (env-sensor and pms5003 alternating, one pty each) x ${LOAD_FPS} frames/s for ${LOAD_SECONDS} s`,
  );
  console.log(
    `    = ${LOAD_DEVICES * LOAD_FPS} frames/s, ${(LOAD_DEVICES / 2) * LOAD_FPS * MESSAGES_PER_DEVICE_PAIR} messages/s into the outbox\n`,
  );
  printTable(
    [
      { title: "metric", left: true },
      { title: "value", left: true },
    ],
    [
      ["frames written / expected", `${l.written} / ${expected}`],
      ["frames decoded (all ports)", l.decodedTotal],
      [
        "frames decoded per port (min..max)",
        `${Math.min(...l.perPort)}..${Math.max(...l.perPort)}`,
      ],
      ["bad frames", l.bad],
      ["gateway CPU% (median of 1 s samples)", fmt(median(l.cpu), 1)],
      ["gateway CPU% (max 1 s sample)", fmt(Math.max(...l.cpu), 1)],
      ["socat CPU% (10 processes, median)", fmt(median(l.socatCpu), 1)],
      ["gateway RSS MiB idle before load", fmt(l.idleRss, 1)],
      ["gateway RSS MiB under load (median)", fmt(median(l.rss), 1)],
      ["gateway RSS MiB under load (max)", fmt(Math.max(...l.rss), 1)],
    ],
  );
}

async function main(): Promise<void> {
  const watchdog = setTimeout(() => {
    console.error(`bench: deadline of ${DEADLINE_MS / 1000} s passed; giving up`);
    process.exit(1);
  }, DEADLINE_MS);
  watchdog.unref();
  if (spawnSync("socat", ["-V"]).status !== 0) {
    throw new Error("socat is needed (apt install socat)");
  }
  buildBundle({ orExisting: true });
  const work = benchWorkDir("bench-serial");
  console.log(
    `\nserial bench: ${process.version}, bundle with --max-semi-space-size=1, upstream closed (everything buffers)`,
  );

  const rows: ThroughputRow[] = [];
  const skipped: string[] = [];
  for (const name of CANDIDATES) {
    const file = join(DEVICES_DIR, `${name}.yaml`);
    if (!existsSync(file)) {
      skipped.push(`${name} (no devices/${name}.yaml)`);
      continue;
    }
    try {
      framePool(file);
    } catch (err) {
      if (!(err instanceof Unsupported)) throw err;
      skipped.push(`${name} (bench cannot play it: ${err.message})`);
      continue;
    }
    rows.push(...(await benchProfile(work, name)));
  }
  printThroughput(rows);
  if (skipped.length > 0) console.log(`\nskipped: ${skipped.join("; ")}`);
  printLoad(await benchLoad(work));
  console.log(
    "\nOffered = the writer's own count (baud / 10 bits per byte / bytes per frame when paced).",
  );
  console.log(
    "CPU% is of one core (100 = one core busy), from /proc/<pid>/stat utime+stime deltas.",
  );
}

try {
  await main();
} catch (err) {
  console.error(`bench: ${err instanceof Error ? err.stack : err}`);
  process.exit(1);
}
process.exit(0);
