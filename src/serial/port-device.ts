import {
  type Bus,
  type Clock,
  Guard,
  type Logger,
  type Metrics,
  systemClock,
} from "../core/index.js";
import { lineSettings, type SerialPortConfig } from "./device.js";
import { PortManager, type PortStatus, type SerialOpener } from "./port.js";
import type { DeviceProfile } from "./profile.js";
import { DevicePublisher } from "./publisher.js";

/**
 * What /status shows for a device: which one, how many frames it published, and its
 * port's state (`opening`, `open` since when, `waiting` and why, `closed`).
 */
export type DeviceStatus = {
  readonly device: string;
  readonly path: string;
  readonly profile: string;
  readonly frames: number;
} & PortStatus;

/**
 * A serial device, whatever it speaks: streaming (framer and decoder) or polled (Modbus).
 * `createDevice` picks the kind from the profile. See docs/serial.md.
 */
export interface Device {
  /** The configured device name (`{device}` in subjects). */
  readonly name: string;
  /** Opens the port and runs until `stop()` or until `signal` aborts. */
  start(signal: AbortSignal): void;
  /** Stops every wait and closes the port; resolves once the device is idle. */
  stop(): Promise<void>;
  /** Resolves (never rejects) once stopped: undefined, or the bug that ended its loop. */
  closed(): Promise<Error | undefined>;
  status(): DeviceStatus;
}

/** What every device is built from besides its port config and profile. */
export interface DeviceDeps {
  readonly bus: Bus;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** The serial library seam (tests). */
  readonly open?: SerialOpener;
  /** Reopen backoff, polls, timeouts and log windows run on it (tests: ManualClock). */
  readonly clock?: Clock;
}

export interface DeviceOptions extends DeviceDeps {
  readonly config: SerialPortConfig;
  readonly profile: DeviceProfile;
}

/** How a kind of device differs in what it shares. */
export interface DeviceKind {
  /** The log line for bad data ("bad serial data dropped"). */
  readonly badMessage: string;
  /** The guard's label for the port's data callback. */
  readonly dataWhere: string;
}

type Lifecycle = "new" | "running" | "stopped";

/**
 * What both kinds of device share: options, the port (reopened by itself), the publisher,
 * status, and the lifecycle. A kind supplies `onData` for the port's bytes and `run`, its
 * loop, which must end soon after its signal aborts.
 */
export abstract class PortDevice implements Device {
  readonly name: string;
  readonly config: SerialPortConfig;
  readonly profile: DeviceProfile;
  protected readonly clock: Clock;
  protected readonly log: Logger;
  /** Device input drives callbacks: a bug it reaches is counted and logged, never thrown. */
  protected readonly guard: Guard;
  protected readonly out: DevicePublisher;
  protected readonly port: PortManager;
  readonly #stop = new AbortController();
  #state: Lifecycle = "new";
  #running: Promise<Error | undefined> = Promise.resolve(undefined);
  #stopped: Promise<void> | undefined;
  readonly #closed: Promise<Error | undefined>;
  #resolveClosed!: (err: Error | undefined) => void;

  protected constructor(options: DeviceOptions, kind: DeviceKind) {
    const { config, profile, log, metrics } = options;
    this.name = config.device;
    this.config = config;
    this.profile = profile;
    this.clock = options.clock ?? systemClock;
    this.log = log;
    this.guard = new Guard(log, metrics);
    this.#closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    this.out = new DevicePublisher({
      profile,
      port: config.path,
      device: config.device,
      bus: options.bus,
      log,
      metrics,
      badMessage: kind.badMessage,
      clock: this.clock,
    });
    this.port = new PortManager({
      path: config.path,
      settings: lineSettings(config, profile),
      log,
      clock: this.clock,
      onData: this.guard.wrap(
        kind.dataWhere,
        (chunk: Buffer) => this.onData(chunk),
        (err) => this.onDataFailed(err),
      ),
      onOpen: () => this.onOpen(),
      ...(options.open ? { open: options.open } : {}),
    });
  }

  /** Without a signal only `stop()` ends the device. */
  start(signal?: AbortSignal): void {
    if (this.#state !== "new") return;
    this.#state = "running";
    signal?.addEventListener("abort", () => void this.stop(), { once: true });
    const stop = this.#stop.signal;
    this.port.start(stop);
    this.#running = this.run(stop).then(
      () => undefined,
      (err: unknown) => {
        this.log.error({ err, path: this.config.path }, "serial device loop failed");
        return err instanceof Error ? err : new Error(String(err));
      },
    );
    if (signal?.aborted) void this.stop();
  }

  stop(): Promise<void> {
    this.#stopped ??= this.#shutdown();
    return this.#stopped;
  }

  closed(): Promise<Error | undefined> {
    return this.#closed;
  }

  status(): DeviceStatus {
    return {
      device: this.config.device,
      path: this.config.path,
      profile: this.profile.name,
      frames: this.out.frames,
      ...this.port.status(),
    };
  }

  /** Bytes from the port. */
  protected abstract onData(chunk: Buffer): void;

  /** The kind's loop; resolves once `signal` has aborted (a throw is a bug: logged). */
  protected abstract run(signal: AbortSignal): Promise<void>;

  /** After `onData` threw (a bug): the guard has counted and logged it. */
  protected onDataFailed(_err: unknown): void {}

  /** After every (re)open of the port. */
  protected onOpen(): void {}

  async #shutdown(): Promise<void> {
    this.#state = "stopped";
    this.#stop.abort();
    const err = await this.#running;
    await this.port.stop();
    this.#resolveClosed(err);
  }
}
