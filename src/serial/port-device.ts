import {
  type Bus,
  type BusSubscription,
  type Clock,
  type Envelope,
  Guard,
  type Logger,
  type Metrics,
  type Replies,
  systemClock,
} from "../core/index.js";
import { commandReply } from "./command-reply.js";
import { type CommandJob, type CommandResult, CommandRunner } from "./command-runner.js";
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
  /** Bad frames and bytes dropped, every reason (`leafgate_serial_bad_frames_total`). */
  readonly badFrames: number;
  /** When the last frame that published was received (ms since the epoch); null: none yet. */
  readonly lastFrameAt: number | null;
  /**
   * Silence longer than this (ms) means the device stopped answering: known for a polled
   * device only (see `silentAfterMs`); null: the device sends when it likes.
   */
  readonly silentAfterMs: number | null;
  /** Commands waiting for their turn (the one on the line not counted). */
  readonly commandsQueued: number;
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
  /**
   * Where a command's reply goes (`replies.replyTo(request)`: a NATS reply subject, or an
   * MQTT 5 response topic with its correlation data). Without it, `envelope.reply` only.
   */
  readonly replies?: Replies;
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
  /** Requests on `devices.{device}.cmd.*`, one on the line at a time. */
  protected readonly commands: CommandRunner;
  readonly #bus: Bus;
  readonly #replies: Replies | undefined;
  #commandSubscription: BusSubscription | undefined;
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
    this.#bus = options.bus;
    this.#replies = options.replies;
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
      onLost: (reason) => this.commands.portLost(reason),
      ...(options.open ? { open: options.open } : {}),
    });
    const spec = profile.spec;
    this.commands = new CommandRunner({
      device: config.device,
      profileFile: profile.file,
      commands: profile.commands,
      delimiter:
        spec.kind === "stream" && spec.framing.type === "line" ? spec.framing.delimiter : undefined,
      clock: this.clock,
      write: (bytes) => this.port.write(bytes),
      unavailable: () => this.port.unavailable(),
      counter: metrics.counter(
        "leafgate_serial_commands_total",
        "Commands requested of serial devices, by device and result (ok, timeout, unplugged, busy, unknown, error)",
      ),
      guard: this.guard,
      ...(spec.kind === "modbus"
        ? {
            execute: (job: CommandJob, done: (r: CommandResult) => void) =>
              this.executeCommand(job, done),
          }
        : {}),
    });
  }

  /** Without a signal only `stop()` ends the device. */
  start(signal?: AbortSignal): void {
    if (this.#state !== "new") return;
    this.#state = "running";
    signal?.addEventListener("abort", () => void this.stop(), { once: true });
    const stop = this.#stop.signal;
    this.#commandSubscription = this.#bus.subscribe(`devices.${this.name}.cmd.*`, {
      deliver: (m) => {
        this.guard.run("serial.command", () => this.#onCommand(m));
        return undefined;
      },
    });
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

  /** How long a healthy device of this kind can stay silent; undefined: no expectation. */
  protected silentAfterMs(): number | undefined {
    return undefined;
  }

  status(): DeviceStatus {
    return {
      device: this.config.device,
      path: this.config.path,
      profile: this.profile.name,
      frames: this.out.frames,
      badFrames: this.out.badFrames,
      lastFrameAt: this.out.lastFrameAt ?? null,
      silentAfterMs: this.config.silent_after ?? this.silentAfterMs() ?? null,
      commandsQueued: this.commands.queued,
      ...this.port.status(),
    };
  }

  /**
   * The reply to a command its answer `frame` ended: by default the frame as hex; a kind
   * that frames text or decodes values says more.
   */
  protected answer(frame: Buffer): Record<string, unknown> {
    return { hex: frame.toString("hex") };
  }

  /**
   * Runs a command whose turn has come, for a kind whose own loop owns the line (Modbus);
   * the others write it and match frames through the runner.
   */
  protected executeCommand(_job: CommandJob, done: (result: CommandResult) => void): void {
    done({ outcome: "error", error: `device ${this.name} runs no commands itself (a bug)` });
  }

  /** Bytes from the port. */
  protected abstract onData(chunk: Buffer): void;

  /** The kind's loop; resolves once `signal` has aborted (a throw is a bug: logged). */
  protected abstract run(signal: AbortSignal): Promise<void>;

  /** After `onData` threw (a bug): the guard has counted and logged it. */
  protected onDataFailed(_err: unknown): void {}

  /** After every (re)open of the port. */
  protected onOpen(): void {}

  /** A request on `devices.{device}.cmd.{name}`: queued, and answered when it ends. */
  #onCommand(m: Envelope): void {
    const name = m.subject.slice(`devices.${this.name}.cmd.`.length);
    // Worked out now: an MQTT 5 request's route is minted when the request arrives.
    const replyTo = this.#replies !== undefined ? this.#replies.replyTo(m) : m.reply;
    this.commands.submit({
      name,
      payload: m.payload,
      requester: m.publisher ?? m.origin,
      done: (result) => {
        if (replyTo === undefined) return;
        const reply = commandReply(replyTo, result, this.clock.now(), (frame) =>
          this.answer(frame),
        );
        this.#bus.publish(reply).catch(() => {});
      },
    });
  }

  async #shutdown(): Promise<void> {
    this.#state = "stopped";
    this.#commandSubscription?.unsubscribe();
    this.commands.stop(
      `device ${this.name} is stopping (the gateway shuts down); retry after it restarts`,
    );
    this.#stop.abort();
    const err = await this.#running;
    await this.port.stop();
    this.#resolveClosed(err);
  }
}
