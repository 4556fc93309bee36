import { realpathSync } from "node:fs";
import { SerialPort } from "serialport";
import type { Logger } from "../core/index.js";
import { errorMessage } from "../core/index.js";
import type { SerialSettings } from "./profile.js";

/** How often an open port's device node is checked: a pty or USB adapter can vanish silently. */
const PRESENCE_CHECK_MS = 500;
/** Reopen delays after a failure, doubling up to the maximum. */
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

/** Opens a port with the `serialport` package. */
export const openSerialPort: SerialOpener = (path, settings, events) =>
  new Promise((resolve, reject) => {
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

/** The device node a path names now (following links), or undefined when it is gone. */
function deviceIdentity(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
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
  #status: PortStatus = { state: "closed" };
  #link: SerialLink | undefined;
  #identity: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  #delayMs = REOPEN_DELAY_MIN_MS;
  #stopped = true;
  #lastReason: string | undefined;

  constructor(options: {
    path: string;
    settings: SerialSettings;
    log: Logger;
    onData: (chunk: Buffer) => void;
    /** Called after every (re)open, e.g. to reset a framer's partial state. */
    onOpen?: () => void;
    open?: SerialOpener;
  }) {
    this.path = options.path;
    this.#settings = options.settings;
    this.#log = options.log;
    this.#onData = options.onData;
    this.#onOpen = options.onOpen ?? (() => {});
    this.#open = options.open ?? openSerialPort;
  }

  status(): PortStatus {
    return this.#status;
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    void this.#tryOpen();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const link = this.#link;
    this.#link = undefined;
    this.#status = { state: "closed" };
    await link?.close().catch(() => {});
  }

  /** Writes to the device when open; false when it is not. */
  write(bytes: Uint8Array): boolean {
    if (this.#link === undefined) return false;
    this.#link.write(bytes);
    return true;
  }

  async #tryOpen(): Promise<void> {
    if (this.#stopped) return;
    const identity = deviceIdentity(this.path);
    if (identity === undefined) {
      this.#wait(`${this.path} does not exist (unplugged?)`);
      return;
    }
    this.#status = { state: "opening" };
    try {
      const link = await this.#open(this.path, this.#settings, {
        data: (chunk) => this.#onData(chunk),
        closed: (err) => this.#lost(err ? errorMessage(err) : "the port closed"),
      });
      if (this.#stopped) {
        await link.close().catch(() => {});
        return;
      }
      this.#link = link;
      this.#identity = identity;
      this.#delayMs = REOPEN_DELAY_MIN_MS;
      this.#lastReason = undefined;
      this.#status = { state: "open", since: Date.now() };
      this.#onOpen();
      this.#log.info({ path: this.path, node: identity }, "serial port open");
      this.#timer = setTimeout(() => this.#checkPresence(), PRESENCE_CHECK_MS);
    } catch (err) {
      this.#wait(`cannot open ${this.path}: ${errorMessage(err)}`);
    }
  }

  #checkPresence(): void {
    if (this.#stopped || this.#link === undefined) return;
    const now = deviceIdentity(this.path);
    if (now !== this.#identity) {
      this.#lost(now === undefined ? "the device went away" : "the device was replaced");
      return;
    }
    this.#timer = setTimeout(() => this.#checkPresence(), PRESENCE_CHECK_MS);
  }

  #lost(reason: string): void {
    if (this.#stopped || this.#link === undefined) return;
    const link = this.#link;
    this.#link = undefined;
    clearTimeout(this.#timer);
    void link.close().catch(() => {});
    this.#log.warn({ path: this.path, reason }, "serial port lost; reopening when it is back");
    this.#wait(reason, true);
  }

  #wait(reason: string, logged = false): void {
    if (this.#stopped) return;
    this.#status = { state: "waiting", reason };
    if (!logged && reason !== this.#lastReason) {
      this.#log.warn({ path: this.path, reason }, "serial port not available; retrying");
    }
    this.#lastReason = reason;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#tryOpen(), this.#delayMs);
    this.#delayMs = Math.min(REOPEN_DELAY_MAX_MS, this.#delayMs * 2);
  }
}
