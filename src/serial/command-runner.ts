import type { Clock, ClockTimer, Counter, Guard } from "../core/index.js";
import {
  type Encoded,
  encodeCommand,
  matchesResponse,
  type ProfileCommand,
} from "./command-spec.js";
import { FairQueue } from "./fair-queue.js";

/** Commands one port holds waiting (besides the one on the line); past it: `busy`. */
export const MAX_QUEUED_COMMANDS = 64;

/** How a command ended: the label of leafgate_serial_commands_total{result}. */
export type CommandOutcome = "ok" | "timeout" | "unplugged" | "busy" | "unknown" | "error";

export type CommandResult =
  /** The frame that answered it (`response` other than none). */
  | { readonly outcome: "ok"; readonly frame: Buffer }
  /** Written; nothing awaited (`response: none`). */
  | { readonly outcome: "ok"; readonly written: number }
  /** Answered, and the device made the reply's body (a Modbus read or write). */
  | { readonly outcome: "ok"; readonly body: Readonly<Record<string, unknown>> }
  | { readonly outcome: Exclude<CommandOutcome, "ok">; readonly error: string };

/** One request for a command, from whoever asked. */
export interface CommandRequest {
  /** The command's name (the last token of its subject). */
  readonly name: string;
  readonly payload: Uint8Array;
  /** Whose turn it is: requests are taken in turns between requesters. */
  readonly requester: string;
  /** Called once with how it ended. */
  readonly done: (result: CommandResult) => void;
}

export interface CommandRunnerOptions {
  /** The device's name, for errors. */
  readonly device: string;
  /** The profile file, for errors. */
  readonly profileFile: string;
  readonly commands: readonly ProfileCommand[];
  /** The line framing's delimiter, which a payload may not carry; undefined otherwise. */
  readonly delimiter: string | undefined;
  readonly clock: Clock;
  /** Writes to the port; false when it is not open. */
  readonly write: (bytes: Uint8Array) => boolean;
  /** Why the port is not open now; undefined while it is. */
  readonly unavailable: () => string | undefined;
  /** leafgate_serial_commands_total; counted with {device, result}. */
  readonly counter: Counter;
  readonly maxQueued?: number;
  /** Runs the timeout callback under it: a bug it reaches is counted, never thrown. */
  readonly guard?: Guard;
  /**
   * For a device that runs commands itself (Modbus: its poll loop owns the line): called
   * with each command when its turn comes, instead of `write`; `done` is called once with
   * how it ended (a call after the port was lost is ignored). No timer is set here then.
   */
  readonly execute?: (job: CommandJob, done: (result: CommandResult) => void) => void;
}

/** A command whose turn has come, as `execute` gets it. */
export interface CommandJob {
  readonly command: ProfileCommand;
  /** The bytes to write (the request encoded). */
  readonly bytes: Buffer;
}

interface Job extends CommandJob {
  readonly request: CommandRequest;
}

interface Running {
  readonly job: Job;
  readonly timer: ClockTimer | undefined;
}

/**
 * The commands of one port: one on the line at a time (written, then its answer or its
 * timeout awaited, then the next), the others queued in turns between requesters
 * (`FairQueue`), at most `maxQueued`. What cannot be done is said at once: an unknown
 * command, a payload its template cannot take, a port that is not open, a full queue.
 * A port lost while commands wait fails them all at once. Rules: docs/serial.md, "Commands".
 */
export class CommandRunner {
  readonly #options: CommandRunnerOptions;
  readonly #byName: ReadonlyMap<string, ProfileCommand>;
  readonly #queue: FairQueue<Job>;
  #running: Running | undefined;
  /** Set while #pump loops: a request made from inside a reply is only queued. */
  #pumping = false;
  #stopped: string | undefined;

  constructor(options: CommandRunnerOptions) {
    this.#options = options;
    this.#byName = new Map(options.commands.map((c) => [c.name, c]));
    this.#queue = new FairQueue(options.maxQueued ?? MAX_QUEUED_COMMANDS);
  }

  /** Commands waiting for their turn (not the one on the line). */
  get queued(): number {
    return this.#queue.size;
  }

  /** The command on the line, if any. */
  get running(): string | undefined {
    return this.#running?.job.command.name;
  }

  /** Whether `job` (as `execute` got it) is still the one on the line, not failed since. */
  isOnTheLine(job: CommandJob): boolean {
    return this.#running?.job === job;
  }

  submit(request: CommandRequest): void {
    const { device, profileFile } = this.#options;
    if (this.#stopped !== undefined) {
      this.#finish(request, { outcome: "error", error: this.#stopped });
      return;
    }
    const command = this.#byName.get(request.name);
    if (command === undefined) {
      const known = [...this.#byName.keys()];
      this.#finish(request, {
        outcome: "unknown",
        error: `device ${device} has no command "${request.name}"; ${known.length === 0 ? "its profile has none" : `its commands are ${known.join(", ")}`} (${profileFile})`,
      });
      return;
    }
    const encoded: Encoded = encodeCommand(command, request.payload, this.#options.delimiter);
    if (!encoded.ok) {
      this.#finish(request, { outcome: "error", error: encoded.error });
      return;
    }
    const away = this.#options.unavailable();
    if (away !== undefined) {
      this.#finish(request, { outcome: "unplugged", error: this.notConnected(away) });
      return;
    }
    const job: Job = { request, command, bytes: encoded.bytes };
    if (!this.#queue.push(request.requester, job)) {
      this.#finish(request, {
        outcome: "busy",
        error: `device ${device} has ${this.#queue.capacity} commands waiting already; retry when it has worked through them`,
      });
      return;
    }
    this.#pump();
  }

  /** A frame from the port: true when it answered the command on the line. */
  onFrame(frame: Buffer): boolean {
    const running = this.#running;
    if (running === undefined || !matchesResponse(running.job.command.response, frame)) {
      return false;
    }
    this.#settle(running, { outcome: "ok", frame });
    return true;
  }

  /** The port went away: the command on the line and every waiting one fail now. */
  portLost(reason: string): void {
    this.#failAll("unplugged", this.notConnected(reason));
  }

  /** The device stops: every command fails now, and later requests at once. */
  stop(reason: string): void {
    this.#stopped = reason;
    this.#failAll("error", reason);
  }

  /** The error of a command the port was not there for. */
  notConnected(reason: string): string {
    return `device ${this.#options.device} is not connected (${reason}); retry when it is back`;
  }

  /** The error of a command that got no answer in time. */
  noAnswer(command: ProfileCommand): string {
    return `device ${this.#options.device} did not answer "${command.name}" within ${command.timeoutMs} ms; check that it is powered, and in the mode that command needs`;
  }

  #failAll(outcome: "unplugged" | "error", error: string): void {
    const running = this.#running;
    const waiting = this.#queue.drain();
    if (running !== undefined) this.#settle(running, { outcome, error }, false);
    for (const job of waiting) this.#finish(job.request, { outcome, error });
  }

  #settle(running: Running, result: CommandResult, next = true): void {
    if (this.#running !== running) return;
    this.#running = undefined;
    this.#options.clock.clearTimeout(running.timer);
    this.#finish(running.job.request, result);
    if (next) this.#pump();
  }

  /** Starts waiting commands until one is on the line awaiting its answer. */
  #pump(): void {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (this.#running === undefined && this.#stopped === undefined) {
        const job = this.#queue.shift();
        if (job === undefined) return;
        this.#start(job);
      }
    } finally {
      this.#pumping = false;
    }
  }

  #start(job: Job): void {
    const { clock, write, unavailable, execute } = this.#options;
    const { command, request } = job;
    if (execute !== undefined) {
      const running: Running = { job, timer: undefined };
      this.#running = running;
      execute(job, (result) => this.#settle(running, result));
      return;
    }
    if (!write(job.bytes)) {
      const why = unavailable() ?? "the port closed";
      this.#finish(request, { outcome: "unplugged", error: this.notConnected(why) });
      return;
    }
    if (command.response.type === "none") {
      this.#finish(request, { outcome: "ok", written: job.bytes.length });
      return;
    }
    const onTimeout = (): void =>
      this.#settle(running, { outcome: "timeout", error: this.noAnswer(command) });
    const guard = this.#options.guard;
    const timer = clock.setTimeout(
      guard ? guard.wrap("serial.command-timeout", onTimeout) : onTimeout,
      command.timeoutMs,
    );
    const running: Running = { job, timer };
    this.#running = running;
  }

  #finish(request: CommandRequest, result: CommandResult): void {
    this.#options.counter.inc({ device: this.#options.device, result: result.outcome });
    request.done(result);
  }
}
