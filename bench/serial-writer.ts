// The frame writer of bench/serial.ts, in a process of its own so that a blocking pty write
// never stalls the measuring loop: `node serial-writer.mjs '<json>'`, json = { targets: [{
// sim, profile, fps, count? }], unpaced }. Prints "<ms> <frames written>" every REPORT_MS;
// exits once every target with a `count` has written it.
import { openSync, writeSync } from "node:fs";
import { setTimeout as delay } from "node:timers/promises";
import { framePool, POOL } from "./lib/serial-frames.js";

/** How often the writer reports its count. */
const REPORT_MS = 50;
/** Paced writers wake this often to write what is due. */
const TICK_MS = 5;
/** Frames per blocking write when unpaced. */
const UNPACED_BATCH = 64;

export interface WriterTarget {
  /** The simulator's end of the pty pair. */
  sim: string;
  profile: string;
  fps: number;
  count?: number;
}

export interface WriterSpec {
  targets: WriterTarget[];
  unpaced: boolean;
}

function writeAll(fd: number, buf: Buffer): void {
  for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off);
}

async function writer(spec: WriterSpec): Promise<never> {
  const targets = spec.targets.map((t) => ({
    ...t,
    fd: openSync(t.sim, "r+"),
    frames: framePool(t.profile).frames,
    sent: 0,
  }));
  let lastReport = 0;
  const report = (now: number) => {
    if (now - lastReport < REPORT_MS) return;
    lastReport = now;
    const total = targets.reduce((s, t) => s + t.sent, 0);
    writeSync(1, `${now} ${total}\n`);
  };
  const t0 = Date.now();
  if (spec.unpaced) {
    // Blocking writes of a batch at a time: the pty's own backpressure sets the pace.
    const t = targets[0]!;
    const batch = Buffer.concat(
      Array.from({ length: UNPACED_BATCH }, (_, i) => t.frames[i % POOL]!),
    );
    for (;;) {
      writeAll(t.fd, batch);
      t.sent += UNPACED_BATCH;
      report(Date.now());
    }
  }
  for (;;) {
    const now = Date.now();
    for (const t of targets) {
      const due = Math.min(Math.floor(((now - t0) / 1000) * t.fps), t.count ?? Infinity) - t.sent;
      if (due <= 0) continue;
      const parts: Buffer[] = [];
      for (let i = 0; i < due; i++) parts.push(t.frames[(t.sent + i) % POOL]!);
      writeAll(t.fd, parts.length === 1 ? parts[0]! : Buffer.concat(parts));
      t.sent += due;
    }
    report(now);
    if (targets.every((t) => t.count !== undefined && t.sent >= t.count)) {
      lastReport = 0;
      report(Date.now());
      process.exit(0);
    }
    await delay(TICK_MS);
  }
}

await writer(JSON.parse(process.argv[2]!) as WriterSpec);
