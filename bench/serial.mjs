// Benchmark of the serial path: frames on a socat pty -> framer -> decoder -> outbox.
//   (a) decode throughput per shipped profile on one port, the writer paced to the byte
//       rate of 115200 and 921600 baud (ptys ignore baud rates: 10 bits per byte), and
//       unpaced (as fast as the pty takes it) for the ceiling;
//   (b) a realistic load: 10 devices (env-sensor and pms5003 alternating) x 10 frames/s.
// The gateway is the built bundle, its upstream a closed port so every message stays in
// the SQLite outbox. Decoded frames come from its /metrics, CPU from /proc/<pid>/stat.
// Frames are written by a child process (this file with --writer), so a blocking pty
// write never stalls the measuring loop. The machine is shared and noisy: read medians.
import { spawn, spawnSync } from "node:child_process";
import {
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parse } from "yaml";

const root = new URL("..", import.meta.url).pathname;
const bundle = join(root, "dist/leafgate.mjs");
const devicesDir = join(root, "devices");

/** Profiles benchmarked in (a), when devices/<name>.yaml exists. */
const CANDIDATES = ["env-sensor", "pms5003", "gps-nmea", "weather-csv", "energy-meter"];
const BAUDS = [115200, 921600];
const BITS_PER_BYTE = 10; // start + 8 data + stop
const WARMUP_MS = Number(process.env.BENCH_WARMUP_MS ?? 1000);
const WINDOW_MS = Number(process.env.BENCH_WINDOW_MS ?? 2000);
const WINDOWS = Number(process.env.BENCH_WINDOWS ?? 3);
const LOAD_DEVICES = 10;
const LOAD_FPS = 10;
const LOAD_SECONDS = Number(process.env.BENCH_LOAD_SECONDS ?? 20);
/** The whole run is killed after this, whatever hangs. */
const DEADLINE_MS = Number(process.env.BENCH_DEADLINE_MS ?? 360_000);
/** Distinct frames per device, cycled. */
const POOL = 100;
/** How often the writer reports its count; paced writers tick every 5 ms. */
const REPORT_MS = 50;
const TICK_MS = 5;

// ---------------------------------------------------------------------------------------
// Frames, built from a profile (the bench cannot import firmware-sim, which is TypeScript).

class Unsupported extends Error {}

const STRUCT_SIZES = { u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, f64: 8 };
const CHECKSUM_BYTES = { sum8: 1, xor8: 1, sum16: 2, crc16_modbus: 2 };

function checksum(type, bytes) {
  let s = 0;
  switch (type) {
    case "sum8":
      for (const b of bytes) s = (s + b) & 0xff;
      return s;
    case "sum16":
      for (const b of bytes) s = (s + b) & 0xffff;
      return s;
    case "xor8":
      for (const b of bytes) s ^= b;
      return s;
    case "crc16_modbus": {
      let crc = 0xffff;
      for (const b of bytes) {
        crc ^= b;
        for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0xa001 : crc >>> 1;
      }
      return crc;
    }
    default:
      throw new Unsupported(`checksum ${type}`);
  }
}

/** Plantower PMS5003, as firmware-sim/models.ts builds it: 32 bytes, sum16 checksum. */
function pmsFrame(n) {
  const pm25 = 5 + (n % 40);
  const words = [pm25 - 2, pm25, pm25 + 4, pm25 - 2, pm25, pm25 + 4];
  words.push(1200 + n, 350 + n, 80, 12, 3, 1, 0);
  const frame = Buffer.alloc(32);
  frame[0] = 0x42;
  frame[1] = 0x4d;
  frame.writeUInt16BE(2 * words.length + 2, 2);
  for (const [i, w] of words.entries()) frame.writeUInt16BE(w & 0xffff, 4 + 2 * i);
  let sum = 0;
  for (let i = 0; i < 30; i++) sum += frame[i];
  frame.writeUInt16BE(sum & 0xffff, 30);
  return frame;
}

/** A plausible reading for text decoders: varies with the frame and the field. */
const reading = (n, i) => Math.round((20 + 3 * i + ((n * 7 + i) % 50) / 10) * 10) / 10;

function nmeaSentence(body) {
  let x = 0;
  for (let i = 0; i < body.length; i++) x ^= body.charCodeAt(i);
  return `$${body}*${x.toString(16).toUpperCase().padStart(2, "0")}`;
}

function nmeaText(n, sentences) {
  const kind = sentences[n % sentences.length];
  const s = n % 60;
  const time = `1235${String(s).padStart(2, "0")}.00`;
  const lat = `4807.${String(38 + (n % 900)).padStart(3, "0")}`;
  if (kind === "RMC") {
    return nmeaSentence(`GPRMC,${time},A,${lat},N,01131.000,E,0.5,54.7,230394,003.1,W`);
  }
  return nmeaSentence(`GPGGA,${time},${lat},N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,`);
}

/** A value of the field whose source is `src` (a number unless the field is a string). */
function textValue(n, i, src, profile) {
  const field = profile.fields.find((f) => (f.source ?? f.name) === src);
  if (field?.type !== "string") return reading(n, i);
  const ss = String(n % 60).padStart(2, "0");
  return /time/i.test(src) ? `2024-02-29T23:58:${ss}Z` : `s${n % 10}`;
}

function textPayload(n, profile) {
  const d = profile.decoder;
  const sources = profile.fields.map((f) => f.source ?? f.name);
  switch (d.type) {
    case "json_lines": {
      const doc = {};
      sources.forEach((src, i) => {
        const path = src.split(".");
        let at = doc;
        for (const key of path.slice(0, -1)) {
          at[key] ??= {};
          at = at[key];
        }
        at[path.at(-1)] = textValue(n, i, src, profile);
      });
      return JSON.stringify(doc);
    }
    case "key_value":
      return sources
        .map((src, i) => `${src}${d.kv_separator ?? "="}${textValue(n, i, src, profile)}`)
        .join(d.pair_separator ?? " ");
    case "csv":
      return (d.columns ?? [])
        .map((col, i) => textValue(n, i, col, profile))
        .join(d.separator ?? ",");
    case "nmea": {
      // Receivers end sentences with CR LF; the line framing trims the CR.
      const cr = profile.framing.type === "line" && profile.framing.trim_cr !== false;
      return `${nmeaText(n, d.sentences ?? ["GGA", "RMC"])}${cr ? "\r" : ""}`;
    }
    case "modbus":
      throw new Unsupported("modbus is polled by the gateway, not streamed by the device");
    default:
      throw new Unsupported(`decoder ${d.type}`);
  }
}

function structPayload(n, decoder) {
  const fields = decoder.fields ?? [];
  const size = Math.max(0, ...fields.map((f) => (f.offset ?? 0) + STRUCT_SIZES[f.type ?? "u16"]));
  const buf = Buffer.alloc(size);
  fields.forEach((f, i) => {
    const type = f.type ?? "u16";
    const little = (f.endian ?? decoder.endian ?? "big") === "little";
    const bits = STRUCT_SIZES[type] * 8;
    const v =
      (n * 3 + i * 10) % (type.startsWith("u") || type.startsWith("i") ? 2 ** (bits - 1) : 1e6);
    const view = new DataView(buf.buffer, buf.byteOffset, buf.length);
    const at = f.offset ?? 0;
    const put = {
      u8: () => view.setUint8(at, v),
      i8: () => view.setInt8(at, v),
      u16: () => view.setUint16(at, v, little),
      i16: () => view.setInt16(at, v, little),
      u32: () => view.setUint32(at, v, little),
      i32: () => view.setInt32(at, v, little),
      f32: () => view.setFloat32(at, v / 10, little),
      f64: () => view.setFloat64(at, v / 10, little),
    }[type];
    if (!put) throw new Unsupported(`struct type ${type}`);
    put();
  });
  return buf;
}

function headerFrame(n, profile) {
  if (profile.name === "pms5003") return pmsFrame(n);
  const f = profile.framing;
  if (profile.decoder.type !== "struct") throw new Unsupported("header framing of text");
  const header = f.header ?? [];
  const lengthOffset = f.length_offset ?? 0;
  const lengthBytes = f.length_bytes ?? 1;
  const lengthEnd = lengthOffset + lengthBytes;
  const sumBytes = f.checksum ? CHECKSUM_BYTES[f.checksum.type ?? "sum16"] : 0;
  const body = structPayload(n, profile.decoder);
  const total = Math.max(body.length, lengthEnd) + sumBytes;
  const frame = Buffer.alloc(total);
  body.copy(frame);
  Buffer.from(header).copy(frame);
  const value = total - lengthEnd - (f.length_adjust ?? 0);
  if ((f.endian ?? "big") === "big") frame.writeUIntBE(value, lengthOffset, lengthBytes);
  else frame.writeUIntLE(value, lengthOffset, lengthBytes);
  if (f.checksum) {
    const sum = checksum(f.checksum.type ?? "sum16", frame.subarray(0, total - sumBytes));
    if (sumBytes === 1) frame[total - 1] = sum;
    else if ((f.checksum.endian ?? "big") === "big") frame.writeUInt16BE(sum, total - 2);
    else frame.writeUInt16LE(sum, total - 2);
  }
  return frame;
}

function slip(bytes) {
  const out = [0xc0];
  for (const b of bytes) {
    if (b === 0xc0) out.push(0xdb, 0xdc);
    else if (b === 0xdb) out.push(0xdb, 0xdd);
    else out.push(b);
  }
  out.push(0xc0);
  return Buffer.from(out);
}

/** One frame of `profile` on the wire; throws Unsupported for what the bench cannot play. */
function buildFrame(n, profile) {
  const f = profile.framing;
  if (f.type === "header") return headerFrame(n, profile);
  const payload =
    profile.decoder.type === "struct"
      ? structPayload(n, profile.decoder)
      : Buffer.from(textPayload(n, profile));
  switch (f.type) {
    case "line":
      return Buffer.concat([payload, Buffer.from(f.delimiter ?? "\n")]);
    case "fixed":
      if (payload.length > f.length) throw new Unsupported("payload longer than fixed length");
      return Buffer.concat([payload, Buffer.alloc(f.length - payload.length)]);
    case "length_prefixed": {
      const bytes = f.length_bytes ?? 1;
      const prefix = Buffer.alloc(bytes);
      const value = payload.length + (f.includes_prefix ? bytes : 0);
      if ((f.endian ?? "big") === "big") prefix.writeUIntBE(value, 0, bytes);
      else prefix.writeUIntLE(value, 0, bytes);
      return Buffer.concat([prefix, payload]);
    }
    case "slip":
      return slip(payload);
    default:
      throw new Unsupported(`framing ${f.type} (needs timed bursts)`);
  }
}

function framePool(profileFile) {
  const profile = parse(readFileSync(profileFile, "utf8"));
  const frames = Array.from({ length: POOL }, (_, n) => buildFrame(n, profile));
  const bytes = frames.reduce((s, b) => s + b.length, 0);
  return { profile, frames, meanBytes: bytes / frames.length };
}

// ---------------------------------------------------------------------------------------
// Writer child: `node bench/serial.mjs --writer '<json>'`, json = { targets: [{ sim,
// profile, fps, count? }], unpaced }. Prints "<ms> <frames written>" every REPORT_MS;
// exits once every target with a `count` has written it.

function writeAll(fd, buf) {
  for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off);
}

async function writer(spec) {
  const targets = spec.targets.map((t) => ({
    ...t,
    fd: openSync(t.sim, "r+"),
    frames: framePool(t.profile).frames,
    sent: 0,
  }));
  let lastReport = 0;
  const report = (now) => {
    if (now - lastReport < REPORT_MS) return;
    lastReport = now;
    const total = targets.reduce((s, t) => s + t.sent, 0);
    writeSync(1, `${now} ${total}\n`);
  };
  const t0 = Date.now();
  if (spec.unpaced) {
    // Blocking writes of 64 frames at a time: the pty's own backpressure sets the pace.
    const t = targets[0];
    const batch = Buffer.concat(Array.from({ length: 64 }, (_, i) => t.frames[i % POOL]));
    for (;;) {
      writeAll(t.fd, batch);
      t.sent += 64;
      report(Date.now());
    }
  }
  for (;;) {
    const now = Date.now();
    for (const t of targets) {
      const due = Math.min(Math.floor(((now - t0) / 1000) * t.fps), t.count ?? Infinity) - t.sent;
      if (due <= 0) continue;
      const parts = [];
      for (let i = 0; i < due; i++) parts.push(t.frames[(t.sent + i) % POOL]);
      writeAll(t.fd, parts.length === 1 ? parts[0] : Buffer.concat(parts));
      t.sent += due;
    }
    report(now);
    if (targets.every((t) => t.count !== undefined && t.sent >= t.count)) {
      lastReport = 0;
      report(Date.now());
      process.exit(0);
    }
    await sleep(TICK_MS);
  }
}

// ---------------------------------------------------------------------------------------
// The harness.

const children = new Set();
let work;

function cleanup() {
  for (const c of children) {
    try {
      c.kill("SIGKILL");
    } catch {
      // gone already
    }
  }
  children.clear();
  if (work) rmSync(work, { recursive: true, force: true });
  work = undefined;
}

function start(cmd, args, { keep = 200_000 } = {}) {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let out = "";
  const take = (d) => {
    out += d;
    if (out.length > keep) out = out.slice(-keep / 2);
  };
  child.stdout.on("data", take);
  child.stderr.on("data", take);
  child.on("exit", () => children.delete(child));
  return { child, output: () => out };
}

async function stop(proc, graceMs = 6000) {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  const exited = new Promise((r) => proc.child.once("exit", r));
  proc.child.kill("SIGTERM");
  await Promise.race([exited, sleep(graceMs)]);
  if (proc.child.exitCode === null && proc.child.signalCode === null) {
    proc.child.kill("SIGKILL");
    await Promise.race([exited, sleep(1000)]);
  }
}

async function until(fn, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

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

const CLK_TCK = Number(spawnSync("getconf", ["CLK_TCK"]).stdout?.toString().trim()) || 100;

/** CPU seconds used so far by `pid` (user + system, every thread). */
function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may contain spaces) start at field 3.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return Number.NaN;
  }
}

function rssMiB(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

const median = (xs) => {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

async function ptyPair(name) {
  const dev = join(work, `${name}-dev`);
  const sim = join(work, `${name}-sim`);
  const proc = start("socat", [`pty,raw,echo=0,link=${dev}`, `pty,raw,echo=0,link=${sim}`]);
  await until(
    () => {
      if (proc.child.exitCode !== null) throw new Error(`socat exited: ${proc.output()}`);
      return existsSync(dev) && existsSync(sim);
    },
    5000,
    "socat pty pair",
  );
  return { dev, sim, proc };
}

/** Starts the bundle with `ports`; resolves once /status shows every port open. */
async function startGateway(name, ports) {
  const dir = mkdtempSync(join(work, `gw-${name}-`));
  const httpPort = await freePort();
  const closedPort = await freePort(); // nothing listens: the gateway buffers everything
  const portLines = ports
    .map((p) => `    - { path: "${p.dev}", profile: "${p.profile}", device: ${p.device} }`)
    .join("\n");
  const file = join(dir, "leafgate.yaml");
  writeFileSync(
    file,
    `gateway: { id: bench, data_dir: ./data }
mqtt: { listeners: [ { host: 127.0.0.1, port: 0 } ] }
upstream: { servers: [ "nats://127.0.0.1:${closedPort}" ] }
buffer: { max_messages: 1000000000, max_bytes: 8GB }
serial:
  ports:
${portLines}
http: { enabled: true, host: 127.0.0.1, port: ${httpPort} }
log: { level: warn }
`,
  );
  const proc = start(process.execPath, ["--max-semi-space-size=1", bundle, "run", "-c", file]);
  const base = `http://127.0.0.1:${httpPort}`;
  await until(
    async () => {
      if (proc.child.exitCode !== null) throw new Error(`gateway exited: ${proc.output()}`);
      const status = await fetch(`${base}/status`)
        .then((r) => r.json())
        .catch(() => undefined);
      return (
        status?.serial?.length === ports.length && status.serial.every((s) => s.state === "open")
      );
    },
    15_000,
    "gateway with every serial port open",
  );
  return { proc, pid: proc.child.pid, base };
}

/** `name{port="…"}` values of a counter family, summed per port. */
async function counters(base, name) {
  const text = await fetch(`${base}/metrics`).then((r) => r.text());
  const out = new Map();
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`)) continue;
    const port = /port="([^"]*)"/.exec(line)?.[1];
    const value = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (port !== undefined) out.set(port, (out.get(port) ?? 0) + value);
  }
  return out;
}

const sum = (m) => [...m.values()].reduce((s, v) => s + v, 0);

function startWriter(targets, unpaced = false) {
  const proc = start(process.execPath, [
    new URL(import.meta.url).pathname,
    "--writer",
    JSON.stringify({ targets, unpaced }),
  ]);
  /** The writer's latest report: [ms, frames]. */
  proc.count = () => {
    const lines = proc.output().trimEnd().split("\n");
    for (let i = lines.length - 1; i >= 0; i--) {
      const m = /^(\d+) (\d+)$/.exec(lines[i]);
      if (m) return [Number(m[1]), Number(m[2])];
    }
    return [Date.now(), 0];
  };
  return proc;
}

/** One sample of everything a window needs. */
async function sample(gw, writerProc, socatPids) {
  const [frames, bad] = await Promise.all([
    counters(gw.base, "leafgate_serial_frames_total"),
    counters(gw.base, "leafgate_serial_bad_frames_total"),
  ]);
  return {
    at: performance.now(),
    frames: sum(frames),
    bad: sum(bad),
    cpu: cpuSeconds(gw.pid),
    socatCpu: socatPids.reduce((s, pid) => s + cpuSeconds(pid), 0),
    written: writerProc.count(),
  };
}

function rates(a, b) {
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

/** Decoded rate over offered rate from `a` to `b`, each over its own clock. */
function ratio(a, b) {
  const r = rates(a, b);
  return r.decoded / r.offered;
}

/** Waits until the decoded count stops moving (the pty buffers drained), at most 3 s. */
async function settle(gw) {
  let last = -1;
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline) {
    const now = sum(await counters(gw.base, "leafgate_serial_frames_total"));
    if (now === last) return;
    last = now;
    await sleep(150);
  }
}

async function benchProfile(name) {
  const profileFile = join(devicesDir, `${name}.yaml`);
  const { profile, meanBytes } = framePool(profileFile);
  const pair = await ptyPair(name);
  const gw = await startGateway(name, [{ dev: pair.dev, profile: profileFile, device: "dev-1" }]);
  const msgsPerFrame = profile.publish === "per_frame" ? 1 : profile.fields.length;
  const rows = [];
  try {
    for (const baud of [...BAUDS, 0]) {
      const fps = baud / BITS_PER_BYTE / meanBytes;
      const target = { sim: pair.sim, profile: profileFile, fps };
      const w = startWriter([target], baud === 0);
      await sleep(WARMUP_MS);
      const samples = [await sample(gw, w, [pair.proc.child.pid])];
      for (let i = 0; i < WINDOWS; i++) {
        await sleep(WINDOW_MS);
        samples.push(await sample(gw, w, [pair.proc.child.pid]));
      }
      await stop(w, 1000);
      if (w.child.exitCode !== null && w.child.exitCode !== 0) {
        throw new Error(`writer failed: ${w.output().slice(-2000)}`);
      }
      const windows = samples.slice(1).map((s, i) => rates(samples[i], s));
      rows.push({
        name,
        baud,
        bytes: meanBytes,
        msgsPerFrame,
        offered: median(windows.map((r) => r.offered)),
        decoded: median(windows.map((r) => r.decoded)),
        // Over all windows together: frames in flight at a window's edge even out.
        ratio: ratio(samples[0], samples.at(-1)),
        bad: windows.reduce((s, r) => s + r.bad, 0),
        cpu: median(windows.map((r) => r.cpu)),
        socatCpu: median(windows.map((r) => r.socatCpu)),
        rss: rssMiB(gw.pid),
      });
      await settle(gw);
    }
  } finally {
    await stop(gw.proc);
    await stop(pair.proc, 2000);
  }
  return rows;
}

async function benchLoad() {
  const env = join(devicesDir, "env-sensor.yaml");
  const pms = join(devicesDir, "pms5003.yaml");
  const pairs = [];
  for (let i = 0; i < LOAD_DEVICES; i++) {
    const profile = i % 2 === 0 ? env : pms;
    pairs.push({ ...(await ptyPair(`load-${i}`)), profile, device: `dev-${i}` });
  }
  const gw = await startGateway("load", pairs);
  const socatPids = pairs.map((p) => p.proc.child.pid);
  try {
    await sleep(1000);
    const idleRss = rssMiB(gw.pid);
    const count = LOAD_FPS * LOAD_SECONDS;
    const w = startWriter(
      pairs.map((p) => ({ sim: p.sim, profile: p.profile, fps: LOAD_FPS, count })),
    );
    const done = new Promise((r) => w.child.once("exit", r));
    let finished = false;
    done.then(() => {
      finished = true;
    });
    let prev = await sample(gw, w, socatPids);
    const cpu = [];
    const socatCpu = [];
    const rss = [];
    const deadline = Date.now() + (LOAD_SECONDS + 10) * 1000;
    while (!finished && Date.now() < deadline) {
      await Promise.race([sleep(1000), done]);
      if (finished) break;
      const next = await sample(gw, w, socatPids);
      const r = rates(prev, next);
      cpu.push(r.cpu);
      socatCpu.push(r.socatCpu);
      rss.push(rssMiB(gw.pid));
      prev = next;
    }
    if (!finished) throw new Error(`load writer did not finish: ${w.output().slice(-2000)}`);
    if (w.child.exitCode !== 0) throw new Error(`load writer failed: ${w.output().slice(-2000)}`);
    await settle(gw);
    const last = await sample(gw, w, socatPids);
    const frames = await counters(gw.base, "leafgate_serial_frames_total");
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
    await stop(gw.proc);
    await Promise.all(pairs.map((p) => stop(p.proc, 2000)));
  }
}

const fmt = (n, d = 0) => (Number.isNaN(n) ? "-" : n.toFixed(d));
const pad = (s, n) => String(s).padStart(n);

function printThroughput(rows) {
  console.log(
    "\n(a) decode throughput, one port; medians of %d windows of %d s (after %d s warm-up)\n",
    WINDOWS,
    WINDOW_MS / 1000,
    WARMUP_MS / 1000,
  );
  console.log(
    "profile        bytes/frame msgs/frame  writer pace    offered fr/s  decoded fr/s  decoded %   bad  gateway CPU%  socat CPU%  RSS MiB",
  );
  for (const r of rows) {
    const pace = r.baud === 0 ? "unpaced" : `${r.baud} baud`;
    const pct = r.ratio * 100;
    console.log(
      `${r.name.padEnd(14)} ${pad(fmt(r.bytes, 1), 11)} ${pad(r.msgsPerFrame, 10)}  ${pace.padEnd(12)} ${pad(fmt(r.offered), 13)} ${pad(fmt(r.decoded), 13)} ${pad(fmt(pct, 1), 10)} ${pad(r.bad, 5)} ${pad(fmt(r.cpu, 1), 13)} ${pad(fmt(r.socatCpu, 1), 11)} ${pad(fmt(r.rss, 1), 8)}`,
    );
  }
}

function printLoad(l) {
  const expected = LOAD_DEVICES * LOAD_FPS * LOAD_SECONDS;
  console.log(
    `\n(b) realistic load: ${LOAD_DEVICES} devices (env-sensor and pms5003 alternating, one pty each) x ${LOAD_FPS} frames/s for ${LOAD_SECONDS} s`,
  );
  console.log(
    `    = ${LOAD_DEVICES * LOAD_FPS} frames/s, ${(LOAD_DEVICES / 2) * LOAD_FPS * 4} messages/s into the outbox\n`,
  );
  console.log("metric                               value");
  const line = (k, v) => console.log(`${k.padEnd(36)} ${v}`);
  line("frames written / expected", `${l.written} / ${expected}`);
  line("frames decoded (all ports)", `${l.decodedTotal}`);
  line(
    "frames decoded per port (min..max)",
    `${Math.min(...l.perPort)}..${Math.max(...l.perPort)}`,
  );
  line("bad frames", `${l.bad}`);
  line("gateway CPU% (median of 1 s samples)", fmt(median(l.cpu), 1));
  line("gateway CPU% (max 1 s sample)", fmt(Math.max(...l.cpu), 1));
  line("socat CPU% (10 processes, median)", fmt(median(l.socatCpu), 1));
  line("gateway RSS MiB idle before load", fmt(l.idleRss, 1));
  line("gateway RSS MiB under load (median)", fmt(median(l.rss), 1));
  line("gateway RSS MiB under load (max)", fmt(Math.max(...l.rss), 1));
}

async function main() {
  process.on("exit", cleanup);
  for (const sig of ["SIGINT", "SIGTERM"]) {
    process.on(sig, () => {
      cleanup();
      process.exit(130);
    });
  }
  const watchdog = setTimeout(() => {
    console.error(`bench: deadline of ${DEADLINE_MS / 1000} s passed; giving up`);
    process.exit(1);
  }, DEADLINE_MS);
  watchdog.unref();

  if (spawnSync("socat", ["-V"]).status !== 0)
    throw new Error("socat is needed (apt install socat)");
  const built = spawnSync(process.execPath, [join(root, "build.mjs")], { stdio: "inherit" });
  if (built.status !== 0) {
    if (!existsSync(bundle)) throw new Error("build failed and there is no dist/leafgate.mjs");
    console.error("bench: build failed; measuring the existing dist/leafgate.mjs");
  }
  work = mkdtempSync(join(tmpdir(), "leafgate-bench-serial-"));
  console.log(
    `\nserial bench: ${process.version}, bundle with --max-semi-space-size=1, upstream closed (everything buffers)`,
  );

  const rows = [];
  const skipped = [];
  for (const name of CANDIDATES) {
    const file = join(devicesDir, `${name}.yaml`);
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
    rows.push(...(await benchProfile(name)));
  }
  printThroughput(rows);
  if (skipped.length > 0) console.log(`\nskipped: ${skipped.join("; ")}`);
  const load = await benchLoad();
  printLoad(load);
  console.log(
    "\nOffered = the writer's own count (baud / 10 bits per byte / bytes per frame when paced).",
  );
  console.log(
    "CPU% is of one core (100 = one core busy), from /proc/<pid>/stat utime+stime deltas.",
  );
}

if (process.argv[2] === "--writer") {
  await writer(JSON.parse(process.argv[3]));
} else {
  try {
    await main();
  } catch (err) {
    console.error(`bench: ${err?.stack ?? err}`);
    cleanup();
    process.exit(1);
  }
  cleanup();
  process.exit(0);
}
