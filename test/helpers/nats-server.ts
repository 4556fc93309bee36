// A real nats-server per test (file), on 127.0.0.1 and an ephemeral port, plus the few
// client-side JetStream calls tests need. Startup follows nats.js' launcher: `-p -1` with a
// ports file, polled with a deadline while racing an early exit.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import {
  jetstream,
  jetstreamManager,
  type StreamConfig,
  type StreamInfo,
} from "@nats-io/jetstream";
import { connect, type NatsConnection, type NodeConnectionOptions } from "@nats-io/transport-node";
import { spawnTracked, stopProcess, type TrackedProcess } from "./procs.js";
import { tempDir, waitFor } from "./wait.js";

const NATS_SERVER = process.env.NATS_SERVER_BIN ?? "nats-server";
const START_TIMEOUT_MS = 10_000;

export interface StartNatsOptions {
  /** Enable JetStream (`-js -sd <storeDir>`); default true. */
  jetstream?: boolean;
  /** Listen on this port instead of an ephemeral one. */
  port?: number;
  /** JetStream store; default a temp dir that stop() deletes. */
  storeDir?: string;
  /** Extra configuration text, passed as `-c`; command-line flags still win. */
  config?: string;
}

export interface NatsServer {
  readonly port: number;
  /** nats://127.0.0.1:PORT */
  readonly url: string;
  readonly storeDir: string;
  /** PID of the current process (changes on restart). */
  readonly pid: number;
  readonly proc: TrackedProcess;
  /** Graceful stop (SIGTERM); also deletes the temp dirs this helper created. */
  stop(): Promise<void>;
  /** Stops if running, then starts again on the same port with the same store. */
  restart(): Promise<void>;
  /** SIGKILL, simulating a crash; the store stays, so restart() recovers it. */
  kill(): Promise<void>;
}

export async function startNatsServer(opts: StartNatsOptions = {}): Promise<NatsServer> {
  const work = tempDir("nats");
  const storeDir = opts.storeDir ?? join(work.path, "store");
  const args = ["-a", "127.0.0.1", "--ports_file_dir", work.path];
  if (opts.config !== undefined) {
    const file = join(work.path, "extra.conf");
    writeFileSync(file, opts.config);
    args.push("-c", file);
  }
  if (opts.jetstream ?? true) args.push("-js", "-sd", storeDir);

  let { proc, port } = await launch(args, opts.port ?? -1, work.path).catch(async (err) => {
    await work.cleanup();
    throw err;
  });
  const url = `nats://127.0.0.1:${port}`;
  return {
    port,
    url,
    storeDir,
    get pid() {
      return proc.pid;
    },
    get proc() {
      return proc;
    },
    async stop() {
      await stopProcess(proc);
      await work.cleanup();
    },
    async restart() {
      await stopProcess(proc);
      mkdirSync(work.path, { recursive: true }); // in case stop() removed it
      ({ proc } = await launch(args, port, work.path));
    },
    async kill() {
      await stopProcess(proc, { signal: "SIGKILL" });
    },
  };
}

/** Starts nats-server and resolves once it has written its ports file. */
async function launch(
  args: string[],
  port: number,
  portsDir: string,
): Promise<{ proc: TrackedProcess; port: number }> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  // A fixed port (restart) may still be held briefly by the old process: retry until the
  // deadline, but only for that error.
  for (;;) {
    const proc = await spawnTracked(NATS_SERVER, [...args, "-p", String(port)]);
    // <executable>_<pid>.ports: the PID means a stale file left by a SIGKILLed predecessor
    // is never read.
    const portsFile = join(portsDir, `${basename(NATS_SERVER)}_${proc.pid}.ports`);
    let outcome: number | "exited";
    try {
      outcome = await waitFor(() => (proc.exitInfo ? "exited" : readPort(portsFile)), {
        timeoutMs: Math.max(deadline - Date.now(), 1000),
        intervalMs: 10,
        message: () => `nats-server did not write ${portsFile}\n${proc.describe()}`,
      });
    } catch (err) {
      await stopProcess(proc, { signal: "SIGKILL" });
      throw err;
    }
    if (outcome !== "exited") return { proc, port: outcome };
    if (!proc.stderr().includes("address already in use") || Date.now() > deadline) {
      throw new Error(`nats-server exited during startup\n${proc.describe()}`);
    }
    await delay(50); // retry back-off while polling for the port to become free, bounded above
  }
}

/** The client port from a ports file ({"nats":["nats://127.0.0.1:PORT"]}), once complete. */
function readPort(file: string): number | undefined {
  try {
    const { nats } = JSON.parse(readFileSync(file, "utf8")) as { nats?: string[] };
    const port = Number(new URL(nats?.[0] ?? "").port);
    return port > 0 ? port : undefined;
  } catch {
    return undefined; // not there yet, or caught mid-write
  }
}

const clients = new Set<NatsConnection>();

/**
 * Connects a client; reconnect waits are short so a client survives restart() quickly.
 * Tracked so closeClients() can end forgotten ones (an open connection keeps vitest alive).
 */
export async function connectClient(
  url: string,
  opts: Partial<NodeConnectionOptions> = {},
): Promise<NatsConnection> {
  const nc = await connect({ servers: url, reconnectTimeWait: 250, ...opts });
  clients.add(nc);
  void nc.closed().then(() => clients.delete(nc));
  return nc;
}

export async function closeClients(): Promise<void> {
  await Promise.all([...clients].map((nc) => nc.close()));
}

/** Returns a function that closes the clients connected after this call, if still open. */
export function clientsFromNow(): () => Promise<void> {
  const before = new Set(clients);
  return async () => {
    await Promise.all([...clients].filter((nc) => !before.has(nc)).map((nc) => nc.close()));
  };
}

/** Creates (file storage by default, so it survives restarts) a stream on `subjects`. */
export async function createStream(
  nc: NatsConnection,
  name: string,
  subjects: string[],
  extra: Partial<StreamConfig> = {},
): Promise<StreamInfo> {
  const jsm = await jetstreamManager(nc);
  return jsm.streams.add({ name, subjects, ...extra });
}

export async function streamInfo(nc: NatsConnection, stream: string): Promise<StreamInfo> {
  const jsm = await jetstreamManager(nc);
  return jsm.streams.info(stream);
}

export interface StreamMessage {
  seq: number;
  subject: string;
  data: Uint8Array;
  headers: Record<string, string[]>;
}

/**
 * Reads every message stored in `stream`, in sequence order, until the consumer has nothing
 * pending (so messages published meanwhile may be included). An ordered consumer
 * streams them in batches (10,000 messages in well under a second), unlike one
 * getMessage request per sequence.
 */
export async function streamMessages(
  nc: NatsConnection,
  stream: string,
  { timeoutMs = 30_000 }: { timeoutMs?: number } = {},
): Promise<StreamMessage[]> {
  const { state } = await streamInfo(nc, stream);
  if (state.messages === 0) return [];

  const consumer = await jetstream(nc).consumers.get(stream);
  const iter = await consumer.consume({ max_messages: 1000 });
  const timer = setTimeout(() => void iter.close(), timeoutMs);
  const out: StreamMessage[] = [];
  try {
    for await (const m of iter) {
      const headers: Record<string, string[]> = {};
      for (const [key, values] of m.headers ?? []) headers[key] = values;
      out.push({ seq: m.seq, subject: m.subject, data: m.data, headers });
      // Not `seq === last_seq`: that message may have been deleted (last_seq stays put).
      if (m.info.pending === 0) break;
    }
  } finally {
    clearTimeout(timer);
    await iter.close();
  }
  if (out.length < state.messages) {
    throw new Error(
      `streamMessages(${stream}): read ${out.length} of ${state.messages} messages ` +
        `(up to seq ${out.at(-1)?.seq ?? "none"} of ${state.last_seq}) within ${timeoutMs} ms`,
    );
  }
  return out;
}
