import { realpathSync } from "node:fs";
import type { SerialPort as SerialPortClass } from "serialport";
import { type Clock, errorMessage, type Logger, systemClock } from "../core/index.js";
import type { SerialSettings } from "./profile.js";
import { sleep } from "./sleep.js";

/** How often an open port's device node is checked: a pty or USB adapter can vanish silently. */
const PRESENCE_CHECK_MS = 500;
/**
 * Reopen delays after a failure, doubling up to the maximum: a replugged adapter is back
 * within a second, and a port that stays away costs one attempt a second, not a busy loop.
 */
const REOPEN_DELAY_MIN_MS = 200;
const REOPEN_DELAY_MAX_MS = 1_000;

export type PortStatus =
  | { readonly state: "opening" }
  | { readonly state: "open"; readonly since: number }
  | { readonly state: "waiting"; readonly reason: string }
  | { readonly state: "closed" };

/** What a port needs from the serial library; tests may substitute their own. */
export interface SerialLink {
  write(bytes: Uint8Array): void;
  close(): Promise<void>;
}
export type SerialOpener = (
  path: string,
  settings: SerialSettings,
  events: { data(chunk: Buffer): void; closed(err?: Error): void },
) => Promise<SerialLink>;

// Loaded on the first open: the package and its native binding cost ~14 MB RSS and ~60 ms of
// start-up, which a gateway without serial devices should not pay.
let serialPortClass: Promise<typeof SerialPortClass> | undefined;
const loadSerialPort = () => {
  serialPortClass ??= import("serialport").then((m) => m.SerialPort);
  return serialPortClass;
};

/** Opens a port with the `serialport` package. */
export const openSerialPort: SerialOpener = async (path, settings, events) => {
  const SerialPort = await loadSerialPort();
  return new Promise((resolve, reject) => {
    const port = new SerialPort({
      path,
      baudRate: settings.baudRate,
      dataBits: settings.dataBits,
      parity: settings.parity,
      stopBits: settings.stopBits,
      autoOpen: false,
    });
    port.open((err) => {
      if (err) {
        reject(err);
        return;
      }
      port.on("data", (chunk: Buffer) => events.data(chunk));
      port.on("close", (closeErr?: Error) => events.closed(closeErr ?? undefined));
      port.on("error", (e: Error) => events.closed(e));
      resolve({
        write: (bytes) => {
          port.write(Buffer.from(bytes));
        },
        close: () =>
          new Promise<void>((done) => {
            if (!port.isOpen) done();
            else port.close(() => done());
          }),
      });
    });
  });
};

/** The device node a path names now (following links), or undefined when it is gone. */
function deviceIdentity(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}

/** An open port: its link, the node it was opened on, and what ends its watch. */
interface OpenPort {
  readonly link: SerialLink;
  readonly identity: string;
  readonly lost: AbortController;
  lostReason: string;
}

export interface PortOptions {
  readonly path: string;
  readonly settings: SerialSettings;
  readonly log: Logger;
  readonly onData: (chunk: Buffer) => void;
  /** Called after every (re)open, e.g. to reset a framer's partial state. */
  readonly onOpen?: () => void;
  /** Called once each time an open port is lost (unplugged, closed), with why. */
  readonly onLost?: (reason: string) => void;
  readonly open?: SerialOpener;
  readonly clock?: Clock;
}

/**
 * One configured serial port: opens it, notices when the device goes away (unplugged,
 * or a pty whose other end closed, which the serial library does not report), and
 * reopens it with backoff when it comes back. Bytes go to `onData`.
 */
export class PortManager {
  readonly path: string;
  readonly #settings: SerialSettings;
  readonly #open: SerialOpener;
  readonly #log: Logger;
  readonly #onData: (chunk: Buffer) => void;
  readonly #onOpen: () => void;
  readonly #onLost: (reason: string) => void;
  readonly #clock: Clock;
  #status: PortStatus = { state: "closed" };
  #port: OpenPort | undefined;
  /** Ends the open-watch-reopen loop; undefined while stopped. */
  #stop: AbortController | undefined;

  constructor(options: PortOptions) {
    this.path = options.path;
    this.#settings = options.settings;
    this.#log = options.log;
    this.#onData = options.onData;
    this.#onOpen = options.onOpen ?? (() => {});
    this.#onLost = options.onLost ?? (() => {});
    this.#open = options.open ?? openSerialPort;
    this.#clock = options.clock ?? systemClock;
  }

  status(): PortStatus {
    return this.#status;
  }

  /** Opens the port, and keeps reopening it, until `stop()` or until `signal` aborts. */
  start(signal?: AbortSignal): void {
    if (this.#stop !== undefined || signal?.aborted) return;
    const stop = new AbortController();
    this.#stop = stop;
    signal?.addEventListener("abort", () => void this.stop(), { once: true });
    // #supervise catches what an attempt throws; this catch is for a bug in the loop itself.
    this.#supervise(stop.signal).catch((err: unknown) =>
      this.#log.error({ err, path: this.path }, "serial port supervisor failed"),
    );
  }

  /**
   * Closes the port; never waits for an open still in progress (that one is closed as
   * soon as it completes), so a hung device cannot hold up a shutdown.
   */
  async stop(): Promise<void> {
    this.#stop?.abort();
    this.#stop = undefined;
    const port = this.#port;
    this.#port = undefined;
    this.#status = { state: "closed" };
    port?.lost.abort();
    await port?.link.close().catch(() => {});
  }

  /** Why the port is not open now (its status in words); undefined while it is open. */
  unavailable(): string | undefined {
    const s = this.#status;
    switch (s.state) {
      case "open":
        return this.#port === undefined ? "the port closed" : undefined;
      case "waiting":
        return s.reason;
      case "opening":
        return `${this.path} is opening`;
      case "closed":
        return `${this.path} is closed`;
    }
  }

  /** Writes to the device when open; false when it is not. */
  write(bytes: Uint8Array): boolean {
    if (this.#port === undefined) return false;
    this.#port.link.write(bytes);
    return true;
  }

  /** Open, watch until lost, wait, again: each wait doubles up to REOPEN_DELAY_MAX_MS. */
  async #supervise(signal: AbortSignal): Promise<void> {
    let delayMs = REOPEN_DELAY_MIN_MS;
    // A reason is logged when it changes, not at every attempt of a long absence.
    let lastReason: string | undefined;
    while (!signal.aborted) {
      const opened = await this.#openOnce(signal);
      if (signal.aborted) return;
      let reason: string;
      if (typeof opened === "string") {
        reason = opened;
        if (reason !== lastReason) {
          this.#log.warn({ path: this.path, reason }, "serial port not available; retrying");
        }
      } else {
        delayMs = REOPEN_DELAY_MIN_MS;
        await this.#watch(opened, signal);
        if (signal.aborted) return;
        reason = opened.lostReason;
      }
      lastReason = reason;
      this.#status = { state: "waiting", reason };
      await sleep(this.#clock, delayMs, signal);
      delayMs = Math.min(REOPEN_DELAY_MAX_MS, delayMs * 2);
    }
  }

  /** One attempt: the open port, or why there is none. */
  async #openOnce(signal: AbortSignal): Promise<OpenPort | string> {
    const identity = deviceIdentity(this.path);
    if (identity === undefined) return `${this.path} does not exist (unplugged?)`;
    this.#status = { state: "opening" };
    let port: OpenPort | undefined;
    try {
      const link = await this.#open(this.path, this.#settings, {
        data: (chunk) => this.#onData(chunk),
        closed: (err) => {
          if (port !== undefined) this.#lose(port, err ? errorMessage(err) : "the port closed");
        },
      });
      if (signal.aborted) {
        await link.close().catch(() => {});
        return "stopped";
      }
      port = { link, identity, lost: new AbortController(), lostReason: "" };
      this.#port = port;
      this.#status = { state: "open", since: this.#clock.now() };
      this.#onOpen();
      this.#log.info({ path: this.path, node: identity }, "serial port open");
      return port;
    } catch (err) {
      if (port !== undefined && this.#port === port) {
        this.#port = undefined;
        await port.link.close().catch(() => {});
      }
      return `cannot open ${this.path}: ${errorMessage(err)}`;
    }
  }

  /** Checks the device node until the port is lost (or stopped). */
  async #watch(port: OpenPort, signal: AbortSignal): Promise<void> {
    while (await sleep(this.#clock, PRESENCE_CHECK_MS, signal, port.lost.signal)) {
      const now = deviceIdentity(this.path);
      if (now !== port.identity) {
        this.#lose(port, now === undefined ? "the device went away" : "the device was replaced");
      }
    }
  }

  /** The port is gone: said at once (status, log), the reopen loop takes it from here. */
  #lose(port: OpenPort, reason: string): void {
    if (this.#port !== port) return;
    this.#port = undefined;
    port.lostReason = reason;
    port.lost.abort();
    void port.link.close().catch(() => {});
    this.#log.warn({ path: this.path, reason }, "serial port lost; reopening when it is back");
    this.#status = { state: "waiting", reason };
    this.#onLost(reason);
  }
}
