// mosquitto as a peer broker. It cannot listen on port 0 (0 means a Unix socket to it), so a
// port is drawn below the kernel's ephemeral range (where port-0 servers and outgoing
// connections take theirs) and another is drawn if the listener finds it taken. A restart
// keeps the port.
import { readFileSync } from "node:fs";
import {
  spawnTracked,
  stopProcess,
  type TrackedProcess,
  waitForLine,
} from "../../test/helpers/procs.js";

const MOSQUITTO = process.env.MOSQUITTO_BIN ?? "/usr/sbin/mosquitto";
const START_TIMEOUT_MS = 20_000;
const RUNNING = /mosquitto version \S+ running/;
/** Ports drawn from here up to the start of the ephemeral range. */
const LOWEST_PORT = 10_000;
const EPHEMERAL_START_FALLBACK = 32_768; // Linux's default ip_local_port_range

function ephemeralStart(): number {
  try {
    const low = Number(
      readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").split(/\s+/)[0],
    );
    return low > LOWEST_PORT ? low : EPHEMERAL_START_FALLBACK;
  } catch {
    return EPHEMERAL_START_FALLBACK;
  }
}

const drawPort = () => LOWEST_PORT + Math.floor(Math.random() * (ephemeralStart() - LOWEST_PORT));

/** One mosquitto at a time on the config `conf(port)` writes; start() again is a restart. */
export class MosquittoProcess {
  readonly #conf: (port: number) => string;
  #proc: TrackedProcess | undefined;
  #port = 0;

  /** `conf(port)` writes the config file for a listener on `port` and returns its path. */
  constructor(conf: (port: number) => string) {
    this.#conf = conf;
  }

  get port(): number {
    return this.#port;
  }

  get pid(): number {
    if (!this.#proc) throw new Error("mosquitto not started");
    return this.#proc.pid;
  }

  /** Starts mosquitto (on its port, if it ran before); resolves once it listens. */
  async start(): Promise<this> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      const port = this.#port || drawPort();
      const proc = await spawnTracked(MOSQUITTO, ["-c", this.#conf(port)]);
      // Logged once every listener is open; a listener that cannot bind ends the process.
      const running = await waitForLine(
        proc,
        (l) => RUNNING.test(l),
        Math.max(deadline - Date.now(), 1000),
        "stderr",
      ).catch(() => undefined);
      if (running !== undefined) {
        this.#proc = proc;
        this.#port = port;
        return this;
      }
      await stopProcess(proc, { signal: "SIGKILL" });
      if (!proc.stderr().includes("Address already in use") || Date.now() > deadline) {
        throw new Error(`mosquitto did not start on port ${port}\n${proc.describe()}`);
      }
    }
  }

  /** SIGKILL: a crash. */
  async kill(): Promise<void> {
    if (this.#proc) await stopProcess(this.#proc, { signal: "SIGKILL" });
  }

  async stop(): Promise<void> {
    if (this.#proc) await stopProcess(this.#proc);
  }
}
