// Event-loop lag of a gateway seen from outside: PINGREQ round trips on a dedicated MQTT
// connection. The gateway answers PINGREQ at once, from the handler that reads it, so a
// round trip is the time the gateway's event loop took to get to the bytes (plus loopback
// and scheduling). The probe runs on its own thread (a worker with its own event loop),
// so a busy test process does not add its own lag to the figures.
//
// The gateway exposes no event-loop metric of its own; when it does (a
// `leafgate_eventloop_lag_*` from monitorEventLoopDelay), a test can read that instead.
import { Worker } from "node:worker_threads";

/** One PINGREQ in flight at a time, one every this often. */
const PING_INTERVAL_MS = 50;
/** The probe's own timer, whose lateness is the machine's scheduling noise. */
const CONTROL_INTERVAL_MS = 10;
/** A PINGREQ unanswered this long is counted as a round trip of this length (a stall). */
const PING_STALL_MS = 5_000;

// Plain JavaScript, run by the worker as it is (eval), so it needs no build step. It writes
// a v4 CONNECT (clean session, keepalive 0, the given client id), waits for CONNACK, then
// sends PINGREQ and times PINGRESP. A closed connection (the gateway killed) drops the
// ping in flight — it measured the kill, not the loop — and connects again to the port it
// was last told.
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const net = require("node:net");
const { performance } = require("node:perf_hooks");
const { intervalMs, stallMs, controlMs, clientId, localAddress } = workerData;
let port = 0;
let socket;
let connected = false;
let sentAt;
let stopped = false;
let timer;
const samples = [];
const at = [];
const control = [];
let stalls = 0;
let reconnects = 0;

function connectPacket() {
  const id = Buffer.from(clientId);
  const body = Buffer.concat([
    Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, 0, 0]),
    Buffer.from([id.length >> 8, id.length & 0xff]),
    id,
  ]);
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
}

function open() {
  if (stopped || port === 0) return;
  connected = false;
  sentAt = undefined;
  const s = net.connect({ host: "127.0.0.1", port, ...(localAddress ? { localAddress } : {}) });
  socket = s;
  s.setNoDelay(true);
  s.on("connect", () => s.write(connectPacket()));
  let pending = Buffer.alloc(0);
  s.on("data", (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 2) {
      const type = pending[0] >> 4;
      const length = pending[1];
      if (pending.length < 2 + length) break;
      pending = pending.subarray(2 + length);
      if (type === 2) connected = true;
      if (type === 13 && sentAt !== undefined) {
        samples.push(performance.now() - sentAt);
        at.push(Date.now());
        sentAt = undefined;
      }
    }
  });
  s.on("error", () => {});
  s.on("close", () => {
    if (socket !== s) return;
    connected = false;
    sentAt = undefined;
    if (!stopped) {
      reconnects++;
      setTimeout(open, 100);
    }
  });
}

function tick() {
  if (connected && socket) {
    if (sentAt === undefined) {
      sentAt = performance.now();
      socket.write(Buffer.from([0xc0, 0]));
    } else if (performance.now() - sentAt > stallMs) {
      samples.push(performance.now() - sentAt);
      at.push(Date.now());
      stalls++;
      sentAt = undefined;
      socket.destroy();
    }
  }
}

parentPort.on("message", (m) => {
  if (m.type === "port") {
    port = m.port;
    if (socket) socket.destroy();
    socket = undefined;
    open();
  } else if (m.type === "stop") {
    stopped = true;
    clearInterval(timer);
    if (socket) socket.destroy();
    clearTimeout(controlTimer);
    parentPort.postMessage({ samples, at, control, stalls, reconnects });
  }
});
timer = setInterval(tick, intervalMs);
// The control: how late this thread's own timers fire. It is the machine's scheduling
// noise (other processes on busy cores), which every round trip includes too.
let controlTimer;
let due = performance.now() + controlMs;
const controlTick = () => {
  const now = performance.now();
  control.push(Math.max(0, now - due));
  due = now + controlMs;
  controlTimer = setTimeout(controlTick, controlMs);
};
controlTimer = setTimeout(controlTick, controlMs);
`;

export interface LagReport {
  /** Round trips in ms, in the order measured. */
  readonly samples: readonly number[];
  /** When each was measured (Date.now()). */
  readonly at: readonly number[];
  /**
   * How late (ms) the probe thread's own 10 ms timer fired, every time: what the machine's
   * load adds to any timing on it, the gateway's round trips included.
   */
  readonly control: readonly number[];
  /** PINGREQs unanswered for PING_STALL_MS on an open connection. */
  readonly stalls: number;
  readonly reconnects: number;
}

export interface LagProbe {
  /** The gateway's MQTT port (again after a restart): the probe (re)connects there. */
  setPort(port: number): void;
  /** Stops probing and returns every round trip measured. */
  stop(): Promise<LagReport>;
}

export function startLagProbe(options: { clientId: string; localAddress?: string }): LagProbe {
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: {
      intervalMs: PING_INTERVAL_MS,
      stallMs: PING_STALL_MS,
      controlMs: CONTROL_INTERVAL_MS,
      clientId: options.clientId,
      localAddress: options.localAddress,
    },
  });
  worker.on("error", () => {});
  return {
    setPort(port) {
      worker.postMessage({ type: "port", port });
    },
    async stop() {
      const report = new Promise<LagReport>((resolve) =>
        worker.once("message", (m: LagReport) => resolve(m)),
      );
      worker.postMessage({ type: "stop" });
      const result = await report;
      await worker.terminate();
      return result;
    },
  };
}

/** The `p`-th percentile (0-100) of `values`, nearest rank. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}
