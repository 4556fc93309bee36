// The gateway as users run it: the built bundle in its own Node process, configured from an
// object written as YAML. Ports start at 0 and are read back from the log; a restart keeps them.
// The NATS listener is on port 0 too: its default, 4222, may be anyone's on a shared machine.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import {
  spawnTracked,
  stopProcess,
  type TrackedProcess,
  waitForLine,
} from "../../test/helpers/procs.js";
import { BUNDLE, bundleNodeFlags } from "./harness.js";

/** A hub URL where nothing listens (port 1 is privileged): the gateway buffers everything. */
export const CLOSED_HUB = "nats://127.0.0.1:1";
const LISTENING_TIMEOUT_MS = 20_000;

/**
 * The sections a bench sets; `gateway`, the MQTT and NATS listeners and the HTTP address are
 * added.
 */
export interface BenchGatewayConfig {
  mqtt?: { max_queued_messages?: number };
  upstream: { servers: string[]; stream?: string; export?: string[] };
  /** The monitoring endpoint (/status, /metrics); default off. */
  http?: boolean;
  buffer?: { max_messages: number; max_bytes: string };
  serial?: { ports: { path: string; profile: string; device: string }[] };
  /** `accounts:` as in the YAML (docs/config.md "Accounts"). */
  accounts?: Record<string, unknown>;
}

export interface GatewayBundleOptions {
  /** --max-semi-space-size in MiB instead of the bundle's own (its shebang's). */
  semiSpaceMiB?: number;
}

/** One gateway process at a time on one config file; restartable on the ports it first got. */
export class GatewayBundle {
  readonly #dir: string;
  readonly #config: BenchGatewayConfig;
  readonly #nodeFlags: string[];
  #proc: TrackedProcess | undefined;
  #mqttPort = 0;
  #natsPort = 0;
  #httpPort = 0;

  constructor(dir: string, config: BenchGatewayConfig, opts: GatewayBundleOptions = {}) {
    this.#dir = dir;
    this.#config = config;
    // The flags users run it with (the bundle's shebang), unless a bench asks for another
    // young generation.
    const shipped = bundleNodeFlags();
    this.#nodeFlags =
      opts.semiSpaceMiB === undefined
        ? shipped
        : [
            ...shipped.filter((f) => !f.startsWith("--max-semi-space-size=")),
            `--max-semi-space-size=${opts.semiSpaceMiB}`,
          ];
  }

  get proc(): TrackedProcess {
    if (!this.#proc) throw new Error("gateway not started");
    return this.#proc;
  }

  get pid(): number {
    return this.proc.pid;
  }

  get mqttPort(): number {
    return this.#mqttPort;
  }

  get natsPort(): number {
    return this.#natsPort;
  }

  /** http://127.0.0.1:PORT of the monitoring endpoint. */
  get httpBase(): string {
    return `http://127.0.0.1:${this.#httpPort}`;
  }

  /** Starts the bundle; resolves once its MQTT and NATS listeners (and HTTP, if on) logged their ports. */
  async start(): Promise<this> {
    const file = join(this.#dir, "leafgate.yaml");
    const { http, ...sections } = this.#config;
    const yaml = {
      gateway: { id: "bench", data_dir: "./data" },
      ...sections,
      mqtt: { listeners: [{ host: "127.0.0.1", port: this.#mqttPort }], ...sections.mqtt },
      nats: { listeners: [{ host: "127.0.0.1", port: this.#natsPort }] },
      http: http ? { host: "127.0.0.1", port: this.#httpPort } : { enabled: false },
      log: { level: "info" }, // the listening lines carry the ports
    };
    writeFileSync(file, stringify(yaml));
    // The gateway treats every LEAFGATE_* variable as a setting: the caller's must not leak.
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith("LEAFGATE_")),
    );
    const args = [...this.#nodeFlags, BUNDLE, "run", "-c", file];
    const proc = await spawnTracked(process.execPath, args, { env });
    this.#proc = proc;
    const portOf = async (msg: string) => {
      const l = await waitForLine(proc, (l) => l.includes(`"msg":"${msg}"`), LISTENING_TIMEOUT_MS);
      return (JSON.parse(l) as { port: number }).port;
    };
    this.#mqttPort = await portOf("mqtt listening");
    this.#natsPort = await portOf("nats listening");
    if (http) this.#httpPort = await portOf("http monitoring listening");
    return this;
  }

  /** Resolves with the first log line containing `text` (already written or to come). */
  line(text: string, timeoutMs = LISTENING_TIMEOUT_MS): Promise<string> {
    return waitForLine(this.proc, (l) => l.includes(text), timeoutMs);
  }

  /** SIGKILL: a crash; start() brings it back on the same ports and data. */
  async kill(): Promise<void> {
    if (this.#proc) await stopProcess(this.#proc, { signal: "SIGKILL" });
  }

  /** SIGTERM, SIGKILL after the grace period. */
  async stop(): Promise<void> {
    if (this.#proc) await stopProcess(this.#proc);
  }

  /** GET /status, parsed. */
  async status(): Promise<GatewayStatus> {
    const res = await fetch(`${this.httpBase}/status`, { signal: AbortSignal.timeout(5000) });
    return (await res.json()) as GatewayStatus;
  }
}

/** The parts of /status the benches read. */
export interface GatewayStatus {
  outbox: { pending: number };
  /** Per account, `$G` first. */
  accounts?: Record<string, { outbox: { pending: number } }>;
  serial?: { state: string }[];
}
