/**
 * A Modbus RTU device: the gateway is the master and polls register reads, instead of
 * framing what a streaming device sends. The polling rules are in docs/serial.md
 * ("Modbus polling"); codec and planning live in modbus.ts (pure), the profile's
 * `decoder` section is checked when the profile loads (`toModbusSpec`, modbus-spec.ts).
 */

import { type ClockTimer, type Counter, RateLimitedLog } from "../core/index.js";
import type { CommandJob, CommandResult } from "./command-runner.js";
import type { Value } from "./decoders.js";
import { lineSettings } from "./device.js";
import {
  EXCEPTION_FLAG,
  encodeReadRequest,
  expectedResponseLength,
  type PlannedRead,
  parseReadResponse,
  parseWriteResponse,
  planReads,
  READ_HOLDING_REGISTERS,
  READ_INPUT_REGISTERS,
  registersToValue,
  WRITE_RESPONSE_LENGTH,
} from "./modbus.js";
import { type ModbusRegister, type ModbusSpec, modbusSpec, VALUE_WORDS } from "./modbus-spec.js";
import { type DeviceOptions, PortDevice } from "./port-device.js";
import { sleep } from "./sleep.js";

/** [MB-AP 7]: address, function | 0x80, exception code, CRC (2). */
const EXCEPTION_RESPONSE_LENGTH = 5;
/** [MB-SL 2.5.1]: an RTU character is 11 bits (start, 8 data, parity or second stop, stop). */
const BITS_PER_CHAR = 11;
/** [MB-SL 2.5.1.1]: frames are separated by 3.5 character times of silence... */
const SILENT_CHARS = 3.5;
/** ...fixed at 1.75 ms above 19200 baud, rounded up to the timer's whole milliseconds. */
const FAST_LINE_BAUD = 19_200;
const FAST_LINE_SILENCE_MS = 2;
const MS_PER_SECOND = 1_000;
/** binary32 carries 6 to 9 significant decimal digits; 9 always reads back exactly. */
const FLOAT32_MAX_DIGITS = 9;
/** A cycle that throws is a bug that repeats every poll: one line a minute says so. */
const CYCLE_FAILED_LOG_WINDOW_MS = 60_000;

/**
 * The shortest decimal that reads back as the same binary32 as `n` (which must be one):
 * what a meter displays for the register pair, rather than the double it widens to.
 */
export function shortestFloat32(n: number): number {
  if (!Number.isFinite(n) || n === 0) return n;
  for (let digits = 1; digits < FLOAT32_MAX_DIGITS; digits++) {
    const candidate = Number(n.toPrecision(digits));
    if (Math.fround(candidate) === n) return candidate;
  }
  return n;
}

/** [MB-SL 2.5.1.1] t3.5 in whole milliseconds at `baudRate`. */
function silenceMs(baudRate: number): number {
  if (baudRate > FAST_LINE_BAUD) return FAST_LINE_SILENCE_MS;
  return Math.ceil((SILENT_CHARS * BITS_PER_CHAR * MS_PER_SECOND) / baudRate);
}

/** What one request came to. */
type Exchange =
  | { readonly kind: "frame"; readonly bytes: Buffer }
  | { readonly kind: "timeout"; readonly received: number }
  | { readonly kind: "not_open" }
  | { readonly kind: "stopped" };

/** The one request on the line: its answer is collected into `rx`. */
interface Outstanding {
  /** The request's function code: an answer with it | 0x80 is an exception. */
  readonly fn: number;
  /** As long as a normal answer. */
  readonly rx: Buffer;
  length: number;
  timer: ClockTimer | undefined;
  settle(result: Exchange): void;
}

/** One slave's share of a cycle: its requests and the registers each one carries. */
/** Cycles without a good answer before a polled device counts as silent (`/readyz`). */
const SILENT_CYCLES = 3;

interface SlavePlan {
  readonly slave: number;
  readonly device: string;
  readonly reads: readonly {
    readonly read: PlannedRead;
    readonly registers: readonly ModbusRegister[];
  }[];
}

/** Each slave's requests, the fewest `planReads` allows, and the registers they carry. */
function planSlaves(spec: ModbusSpec, device: string): SlavePlan[] {
  return spec.slaves.map((slave) => {
    const reads = planReads(
      spec.registers.map((r) => ({
        slave,
        fn: r.fn,
        address: r.address,
        words: VALUE_WORDS[r.type],
      })),
    );
    return {
      slave,
      device: spec.perSlaveDevice ? `${device}-${slave}` : device,
      reads: reads.map((read) => ({
        read,
        registers: spec.registers.filter(
          (r) =>
            r.fn === read.fn &&
            r.address >= read.address &&
            r.address + VALUE_WORDS[r.type] <= read.address + read.count,
        ),
      })),
    };
  });
}

/**
 * A Modbus RTU device on a serial port, polled by the gateway. A dead slave or an
 * unplugged port costs only this device: counted, logged once a minute per reason, and
 * polling carries on.
 */
export class ModbusDevice extends PortDevice {
  readonly spec: ModbusSpec;
  readonly #requests: Counter;
  readonly #retried: Counter;
  readonly #plan: readonly SlavePlan[];
  readonly #cycleFailedLog: RateLimitedLog;
  readonly #silenceMs: number;
  #outstanding: Outstanding | undefined;
  /** Ends the pause between cycles early: a command came, or the port reopened. */
  #wake: AbortController | undefined;
  /** The command whose turn has come, waiting for the line between two requests. */
  #command: { readonly job: CommandJob; readonly done: (r: CommandResult) => void } | undefined;
  #skipped = false;

  constructor(options: DeviceOptions) {
    // The device's answers drive onData: a bug they reach is counted and logged once, and
    // the request waiting for them times out and is retried as usual.
    super(options, { badMessage: "modbus read failed", dataWhere: "serial.modbus-data" });
    const { config, profile, metrics } = options;
    this.spec = modbusSpec(profile);
    this.#requests = metrics.counter(
      "leafgate_serial_modbus_requests_total",
      "Modbus requests written, by port",
    );
    this.#retried = metrics.counter(
      "leafgate_serial_modbus_retries_total",
      "Modbus requests written again after a timeout or a bad answer, by port",
    );
    this.#plan = planSlaves(this.spec, config.device);
    this.#cycleFailedLog = new RateLimitedLog(this.log, {
      burst: 1,
      windowMs: CYCLE_FAILED_LOG_WINDOW_MS,
      level: "error",
      clock: this.clock,
    });
    this.#silenceMs = silenceMs(lineSettings(config, profile).baudRate);
  }

  /**
   * A polled device is silent after SILENT_CYCLES cycles without a good answer, a cycle
   * being the poll interval plus every read of it timing out on every attempt.
   */
  protected override silentAfterMs(): number {
    const reads = this.#plan.reduce((n, p) => n + p.reads.length, 0);
    const worstCycleMs =
      this.spec.pollIntervalMs + reads * (this.spec.retries + 1) * this.spec.timeoutMs;
    return SILENT_CYCLES * worstCycleMs;
  }

  /** The poll loop; a cycle that throws is logged and the loop carries on. */
  protected override async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const startedAt = this.clock.now();
      try {
        await this.#cycle(signal);
      } catch (err) {
        this.#cycleFailedLog.log(
          "cycle",
          { err, path: this.config.path, device: this.config.device },
          "modbus poll cycle failed",
        );
      }
      const elapsed = this.clock.now() - startedAt;
      await this.#pauseBetweenCycles(Math.max(0, this.spec.pollIntervalMs - elapsed), signal);
    }
  }

  async #cycle(signal: AbortSignal): Promise<void> {
    this.#skipped = false;
    for (const plan of this.#plan) {
      const values: Record<string, Value> = {};
      for (const { read, registers } of plan.reads) {
        if (signal.aborted) return;
        if (this.port.status().state !== "open") {
          this.#skipped = true;
          return;
        }
        const regs = await this.#read(read, signal);
        if (regs === "not_open") {
          this.#skipped = true;
          return;
        }
        if (regs === "stopped") return;
        if (regs === "failed") continue;
        for (const r of registers) {
          const v = registersToValue(regs, r.address - read.address, r.type, r.wordOrder);
          values[r.name] = r.type !== "f32" ? v : Number.isFinite(v) ? shortestFloat32(v) : null;
        }
      }
      this.out.publish(values, plan.device);
    }
  }

  /** One read with its retries: the registers, or why there are none. */
  async #read(
    read: PlannedRead,
    signal: AbortSignal,
  ): Promise<Uint16Array | "failed" | "not_open" | "stopped"> {
    const { retries, timeoutMs } = this.spec;
    let last = { reason: "timeout", detail: "" };
    for (let attempt = 0; attempt <= retries; attempt++) {
      if (attempt > 0) this.#retried.inc({ port: this.config.path });
      // A command waits at most one request of the poll for the line.
      await this.#serveCommand(signal);
      await sleep(this.clock, this.#silenceMs, signal);
      const request = encodeReadRequest(read.slave, read.fn, read.address, read.count);
      const length = expectedResponseLength(read.fn, read.count);
      const result = await this.#exchange(request, read.fn, length, timeoutMs, signal);
      if (result.kind === "not_open" || result.kind === "stopped") return result.kind;
      if (result.kind === "timeout") {
        last = {
          reason: "timeout",
          detail: `no complete answer within ${timeoutMs} ms (${result.received} bytes)`,
        };
        // A slave that answers just after we gave up must not answer our retry.
        if (attempt < retries) await sleep(this.clock, timeoutMs, signal);
        continue;
      }
      const parsed = parseReadResponse(result.bytes, read);
      if (parsed.ok) return parsed.registers;
      if (parsed.reason === "exception") {
        this.out.bad("exception", `${describe(read)}: ${parsed.detail}`);
        return "failed";
      }
      last = { reason: parsed.reason, detail: parsed.detail };
    }
    this.out.bad(last.reason, `${describe(read)}: ${last.detail}, after ${retries + 1} attempts`);
    // ...nor the next request.
    if (last.reason === "timeout") await sleep(this.clock, timeoutMs, signal);
    return "failed";
  }

  /**
   * Writes one request and collects its answer (`length` bytes, or an exception's 5)
   * until `timeoutMs`; only one is ever outstanding.
   */
  #exchange(
    request: Buffer,
    fn: number,
    length: number,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<Exchange> {
    if (signal.aborted) return Promise.resolve({ kind: "stopped" });
    if (this.#outstanding !== undefined) {
      // The loop awaits every exchange; reaching this is a bug, not a device fault.
      throw new Error("modbus: a request is already outstanding");
    }
    return new Promise((resolve) => {
      const onAbort = (): void => outstanding.settle({ kind: "stopped" });
      const outstanding: Outstanding = {
        fn,
        rx: Buffer.alloc(length),
        length: 0,
        timer: undefined,
        settle: (result) => {
          if (this.#outstanding !== outstanding) return;
          this.#outstanding = undefined;
          this.clock.clearTimeout(outstanding.timer);
          signal.removeEventListener("abort", onAbort);
          resolve(result);
        },
      };
      this.#outstanding = outstanding;
      signal.addEventListener("abort", onAbort, { once: true });
      outstanding.timer = this.clock.setTimeout(
        this.guard.wrap("serial.modbus-timeout", () =>
          outstanding.settle({ kind: "timeout", received: outstanding.length }),
        ),
        timeoutMs,
      );
      outstanding.timer.unref?.();
      if (this.port.write(request)) this.#requests.inc({ port: this.config.path });
      else outstanding.settle({ kind: "not_open" });
    });
  }

  protected override onData(chunk: Buffer): void {
    const o = this.#outstanding;
    if (o === undefined) {
      this.out.bad("unsolicited", `${chunk.length} bytes while no request was outstanding`);
      return;
    }
    const taken = chunk.copy(o.rx, o.length);
    o.length += taken;
    const exception = o.length >= 2 && o.rx[1] === (o.fn | EXCEPTION_FLAG);
    const complete = exception ? EXCEPTION_RESPONSE_LENGTH : o.rx.length;
    if (o.length < complete) return;
    const extra = o.length - complete + (chunk.length - taken);
    o.settle({ kind: "frame", bytes: Buffer.from(o.rx.subarray(0, complete)) });
    if (extra > 0) this.out.bad("unsolicited", `${extra} bytes after a complete answer`);
  }

  /** The port (re)opened: a cycle skipped for want of it runs now, not an interval later. */
  protected override onOpen(): void {
    if (this.#skipped) this.#wake?.abort();
  }

  /** A command's turn: it waits for the line (at most one poll request), then runs. */
  protected override executeCommand(job: CommandJob, done: (r: CommandResult) => void): void {
    this.#command = { job, done };
    this.#wake?.abort();
  }

  /**
   * Runs the command waiting for the line, if one is: after t3.5 of silence, one attempt
   * (a write is not repeated on a guess), answered with what the slave said.
   */
  async #serveCommand(signal: AbortSignal): Promise<void> {
    const pending = this.#command;
    if (pending === undefined) return;
    this.#command = undefined;
    // Failed while it waited for the line (the port was lost): its requester was told so.
    if (!this.commands.isOnTheLine(pending.job)) return;
    const { command, bytes } = pending.job;
    const m = command.modbus;
    if (m === undefined) {
      pending.done({ outcome: "error", error: `command "${command.name}" is no Modbus request` });
      return;
    }
    await sleep(this.clock, this.#silenceMs, signal);
    const read = m.fn === READ_HOLDING_REGISTERS || m.fn === READ_INPUT_REGISTERS;
    const length = read ? expectedResponseLength(m.fn, m.count) : WRITE_RESPONSE_LENGTH;
    const result = await this.#exchange(bytes, m.fn, length, command.timeoutMs, signal);
    const what = `slave ${m.slave} fn ${m.fn} registers ${m.address}..${m.address + m.count - 1}`;
    switch (result.kind) {
      case "stopped":
        return; // the runner has failed it already
      case "not_open":
        pending.done({
          outcome: "unplugged",
          error: this.commands.notConnected(this.port.unavailable() ?? "the port closed"),
        });
        return;
      case "timeout":
        pending.done({ outcome: "timeout", error: this.commands.noAnswer(command) });
        // A slave that answers just after we gave up must not answer the next request.
        await sleep(this.clock, command.timeoutMs, signal);
        return;
    }
    const parsed = read
      ? parseReadResponse(result.bytes, { slave: m.slave, fn: m.fn, count: m.count })
      : parseWriteResponse(result.bytes, bytes);
    if (parsed.ok) {
      const values = "registers" in parsed ? [...(parsed.registers as Uint16Array)] : undefined;
      pending.done({
        outcome: "ok",
        body:
          values !== undefined
            ? { address: m.address, registers: values }
            : { address: m.address, written: registersOf(bytes, m.fn) },
      });
      return;
    }
    if (parsed.reason !== "exception") this.out.bad(parsed.reason, `${what}: ${parsed.detail}`);
    pending.done({
      outcome: "error",
      error:
        parsed.reason === "exception"
          ? `device ${this.name} refused "${command.name}" (${what}): ${parsed.detail}`
          : `device ${this.name} answered "${command.name}" (${what}) with a bad frame (${parsed.reason}: ${parsed.detail}); it may or may not have been done: read it back`,
    });
  }

  async #pauseBetweenCycles(ms: number, signal: AbortSignal): Promise<void> {
    const until = this.clock.now() + ms;
    for (;;) {
      // The port may have opened between the skipped cycle and this pause.
      if (this.#skipped && this.port.status().state === "open") return;
      // Between cycles the line is the commands' (each one's end starts the next).
      while (this.#command !== undefined && !signal.aborted) await this.#serveCommand(signal);
      const left = until - this.clock.now();
      if (left <= 0 || signal.aborted) return;
      const wake = new AbortController();
      this.#wake = wake;
      const slept = await sleep(this.clock, left, signal, wake.signal);
      this.#wake = undefined;
      if (slept) return;
    }
  }
}

/** The values a write request carries (function 6: one; 16: from byte 7). */
function registersOf(request: Buffer, fn: number): number[] {
  if (fn !== 16) return [request.readUInt16BE(4)];
  const out: number[] = [];
  for (let i = 0; i < request.readUInt16BE(4); i++) out.push(request.readUInt16BE(7 + 2 * i));
  return out;
}

function describe(read: PlannedRead): string {
  return `slave ${read.slave} fn ${read.fn} registers ${read.address}..${read.address + read.count - 1}`;
}
