/**
 * A Modbus RTU device: the gateway is the master and polls register reads, instead of
 * framing what a streaming device sends. Codec and planning live in modbus.ts (pure); this
 * file owns the port, the clock and the bus.
 *
 * The profile's `decoder` section is checked by `modbusSpec` (modbus-spec.ts).
 *
 * Polling rules:
 * - every `poll_interval` (measured start to start; a cycle that overruns is followed by
 *   the next at once), each slave in turn is read with the fewest requests `planReads`
 *   allows, and its fields are published as SerialDevice publishes a frame;
 * - one request on the line at a time: the next is written only after the previous one
 *   was answered or timed out, and after the line was silent for t3.5 [MB-SL 2.5.1.1];
 * - an answer is complete at the length `expectedResponseLength` gives, or at 5 bytes
 *   when the function code has the exception bit [MB-AP 7]; it is then checked by
 *   `parseReadResponse`. Bytes while no request is outstanding are dropped and counted
 *   (`unsolicited`);
 * - a timeout or a bad answer (CRC, slave, function, length) is retried up to `retries`
 *   times; after a timeout the line is drained for `timeout_ms` first, so a late answer is
 *   not taken for the retry's. When every attempt failed, the read is counted once in
 *   `leafgate_serial_bad_frames_total{port, reason}` with the last reason (`timeout`,
 *   `bad_crc`, `wrong_slave`, `wrong_function`, `wrong_length`, `too_short`). An
 *   exception answer is counted (`exception`) and not retried: the slave has answered;
 * - the values a slave's reads produced in one cycle are published together, even when
 *   some of its reads failed; a cycle that read nothing publishes nothing;
 * - f32 values are published as the shortest decimal that reads back as the same
 *   binary32 (230.1, not 230.10000610351562); NaN and ±Infinity, which meters use for "no
 *   reading", become null;
 * - with one slave `{device}` in the subject is the port's device name; with `slaves:`
 *   listing several it is `<device>-<slave>`, so each meter has its own subjects;
 * - while the port is not open, cycles are skipped; the PortManager reopens it and the
 *   next cycle starts as soon as it is open.
 */

import type { Bus, Counter, Logger, Metrics } from "../core/index.js";
import { Guard } from "../core/index.js";
import type { Value } from "./decoders.js";
import { lineSettings, type SerialPortConfig } from "./device.js";
import {
  EXCEPTION_FLAG,
  encodeReadRequest,
  expectedResponseLength,
  type PlannedRead,
  parseReadResponse,
  planReads,
  registersToValue,
} from "./modbus.js";
import { type ModbusRegister, type ModbusSpec, modbusSpec, VALUE_WORDS } from "./modbus-spec.js";
import { PortManager, type PortStatus, type SerialOpener } from "./port.js";
import type { DeviceProfile, SerialSettings } from "./profile.js";
import { DevicePublisher } from "./publisher.js";

/** [MB-AP 7]: address, function | 0x80, exception code, CRC (2). */
const EXCEPTION_RESPONSE_LENGTH = 5;
/** [MB-SL 2.5.1]: an RTU character is 11 bits (start, 8 data, parity or second stop, stop). */
const BITS_PER_CHAR = 11;
/** [MB-SL 2.5.1.1]: frames are separated by 3.5 character times of silence... */
const SILENT_CHARS = 3.5;
/** ...fixed at 1.75 ms above 19200 baud, rounded up to the timer's whole milliseconds. */
const FAST_LINE_BAUD = 19_200;
const FAST_LINE_SILENCE_MS = 2;
/** binary32 carries 6 to 9 significant decimal digits; 9 always reads back exactly. */
const FLOAT32_MAX_DIGITS = 9;

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
  return Math.ceil((SILENT_CHARS * BITS_PER_CHAR * 1_000) / baudRate);
}

/** What one request came to. */
type Exchange =
  | { readonly kind: "frame"; readonly bytes: Buffer }
  | { readonly kind: "timeout"; readonly received: number }
  | { readonly kind: "not_open" }
  | { readonly kind: "stopped" };

/** The one request on the line: its answer is collected into `rx`. */
interface Outstanding {
  readonly read: PlannedRead;
  readonly rx: Buffer;
  length: number;
  timer: NodeJS.Timeout | undefined;
  settle(result: Exchange): void;
}

/** One slave's share of a cycle: its requests and the registers each one carries. */
interface SlavePlan {
  readonly slave: number;
  readonly device: string;
  readonly reads: readonly {
    readonly read: PlannedRead;
    readonly registers: readonly ModbusRegister[];
  }[];
}

type DeviceState = "new" | "running" | "stopped";

/**
 * A Modbus RTU device on a serial port, polled by the gateway; options, `start`, `stop`
 * and `status` as `SerialDevice`, so the gateway picks this class when
 * `profile.decoder.type === "modbus"`. A dead slave or an unplugged port costs only this
 * device: counted, logged once a minute per reason, and polling carries on.
 */
export class ModbusDevice {
  readonly config: SerialPortConfig;
  readonly profile: DeviceProfile;
  readonly spec: ModbusSpec;
  readonly #port: PortManager;
  readonly #log: Logger;
  readonly #out: DevicePublisher;
  readonly #requests: Counter;
  readonly #retried: Counter;
  readonly #plan: readonly SlavePlan[];
  readonly #silenceMs: number;
  readonly #guard: Guard;
  #state: DeviceState = "new";
  #loop: Promise<void> | undefined;
  #outstanding: Outstanding | undefined;
  /** The sleep in progress: between cycles (`wakeOnOpen`) or before a request. */
  #sleep: { timer: NodeJS.Timeout; wakeOnOpen: boolean; wake(): void } | undefined;
  #skipped = false;

  constructor(options: {
    config: SerialPortConfig;
    profile: DeviceProfile;
    bus: Bus;
    log: Logger;
    metrics: Metrics;
    open?: SerialOpener;
  }) {
    const { config, profile, log, metrics } = options;
    this.config = config;
    this.profile = profile;
    this.spec = modbusSpec(profile);
    this.#log = log;
    this.#out = new DevicePublisher({
      profile,
      port: config.path,
      device: config.device,
      bus: options.bus,
      log,
      metrics,
      badMessage: "modbus read failed",
    });
    this.#requests = metrics.counter(
      "leafgate_serial_modbus_requests_total",
      "Modbus requests written, by port",
    );
    this.#retried = metrics.counter(
      "leafgate_serial_modbus_retries_total",
      "Modbus requests written again after a timeout or a bad answer, by port",
    );
    this.#plan = this.#makePlan();
    const settings: SerialSettings = lineSettings(config, profile);
    this.#silenceMs = silenceMs(settings.baudRate);
    // The device's answers drive onData: a bug they reach is counted and logged once, and
    // the request waiting for them times out and is retried as usual.
    this.#guard = new Guard(log, metrics);
    this.#port = new PortManager({
      path: config.path,
      settings,
      log,
      onData: this.#guard.wrap("serial.modbus-data", (chunk: Buffer) => this.#onData(chunk)),
      onOpen: () => this.#onOpen(),
      ...(options.open ? { open: options.open } : {}),
    });
  }

  start(): void {
    if (this.#state !== "new") return;
    this.#state = "running";
    this.#port.start();
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    if (this.#state === "stopped") return;
    this.#state = "stopped";
    this.#outstanding?.settle({ kind: "stopped" });
    this.#wake();
    await this.#loop;
    await this.#port.stop();
  }

  status(): { device: string; path: string; profile: string; frames: number } & PortStatus {
    return {
      device: this.config.device,
      path: this.config.path,
      profile: this.profile.name,
      frames: this.#out.frames,
      ...this.#port.status(),
    };
  }

  #makePlan(): SlavePlan[] {
    const { spec, config } = this;
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
        device: spec.perSlaveDevice ? `${config.device}-${slave}` : config.device,
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

  /** The poll loop; a cycle that throws is logged and the loop carries on. */
  async #run(): Promise<void> {
    while (this.#state === "running") {
      const startedAt = Date.now();
      try {
        await this.#cycle();
      } catch (err) {
        this.#log.error(
          { err, path: this.config.path, device: this.config.device },
          "modbus poll cycle failed",
        );
      }
      const elapsed = Date.now() - startedAt;
      await this.#pause(Math.max(0, this.spec.pollIntervalMs - elapsed), true);
    }
  }

  async #cycle(): Promise<void> {
    this.#skipped = false;
    for (const plan of this.#plan) {
      const values: Record<string, Value> = {};
      for (const { read, registers } of plan.reads) {
        if (this.#state !== "running") return;
        if (this.#port.status().state !== "open") {
          this.#skipped = true;
          return;
        }
        const regs = await this.#read(read);
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
      this.#onValues(plan.device, values);
    }
  }

  /** One read with its retries: the registers, or why there are none. */
  async #read(read: PlannedRead): Promise<Uint16Array | "failed" | "not_open" | "stopped"> {
    const { retries, timeoutMs } = this.spec;
    let last = { reason: "timeout", detail: "" };
    for (let attempt = 0; attempt <= retries; attempt++) {
      if (attempt > 0) this.#retried.inc({ port: this.config.path });
      await this.#pause(this.#silenceMs, false);
      const result = await this.#exchange(read);
      if (result.kind === "not_open" || result.kind === "stopped") return result.kind;
      if (result.kind === "timeout") {
        last = {
          reason: "timeout",
          detail: `no complete answer within ${timeoutMs} ms (${result.received} bytes)`,
        };
        // A slave that answers just after we gave up must not answer our retry.
        if (attempt < retries) await this.#pause(timeoutMs, false);
        continue;
      }
      const parsed = parseReadResponse(result.bytes, read);
      if (parsed.ok) return parsed.registers;
      if (parsed.reason === "exception") {
        this.#onBad("exception", `${describe(read)}: ${parsed.detail}`);
        return "failed";
      }
      last = { reason: parsed.reason, detail: parsed.detail };
    }
    this.#onBad(last.reason, `${describe(read)}: ${last.detail}, after ${retries + 1} attempts`);
    // ...nor the next request.
    if (last.reason === "timeout") await this.#pause(timeoutMs, false);
    return "failed";
  }

  /** Writes one request and collects its answer; only one is ever outstanding. */
  #exchange(read: PlannedRead): Promise<Exchange> {
    if (this.#state !== "running") return Promise.resolve({ kind: "stopped" });
    if (this.#outstanding !== undefined) {
      // The loop awaits every exchange; reaching this is a bug, not a device fault.
      throw new Error("modbus: a request is already outstanding");
    }
    const request = encodeReadRequest(read.slave, read.fn, read.address, read.count);
    return new Promise((resolve) => {
      const outstanding: Outstanding = {
        read,
        rx: Buffer.alloc(expectedResponseLength(read.fn, read.count)),
        length: 0,
        timer: undefined,
        settle: (result) => {
          if (this.#outstanding !== outstanding) return;
          this.#outstanding = undefined;
          clearTimeout(outstanding.timer);
          resolve(result);
        },
      };
      this.#outstanding = outstanding;
      outstanding.timer = setTimeout(
        this.#guard.wrap("serial.modbus-timeout", () =>
          outstanding.settle({ kind: "timeout", received: outstanding.length }),
        ),
        this.spec.timeoutMs,
      );
      outstanding.timer.unref();
      if (this.#port.write(request)) this.#requests.inc({ port: this.config.path });
      else outstanding.settle({ kind: "not_open" });
    });
  }

  #onData(chunk: Buffer): void {
    const o = this.#outstanding;
    if (o === undefined) {
      this.#onBad("unsolicited", `${chunk.length} bytes while no request was outstanding`);
      return;
    }
    const taken = chunk.copy(o.rx, o.length);
    o.length += taken;
    const exception = o.length >= 2 && o.rx[1] === (o.read.fn | EXCEPTION_FLAG);
    const complete = exception ? EXCEPTION_RESPONSE_LENGTH : o.rx.length;
    if (o.length < complete) return;
    const extra = o.length - complete + (chunk.length - taken);
    o.settle({ kind: "frame", bytes: Buffer.from(o.rx.subarray(0, complete)) });
    if (extra > 0) this.#onBad("unsolicited", `${extra} bytes after a complete answer`);
  }

  /** The port (re)opened: a cycle skipped for want of it runs now, not an interval later. */
  #onOpen(): void {
    if (this.#skipped && this.#sleep?.wakeOnOpen) this.#wake();
  }

  #pause(ms: number, wakeOnOpen: boolean): Promise<void> {
    if (this.#state !== "running") return Promise.resolve();
    // The port may have opened between the skipped cycle and this pause.
    if (wakeOnOpen && this.#skipped && this.#port.status().state === "open") {
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(
        this.#guard.wrap("serial.modbus-pause", () => {
          this.#sleep = undefined;
          resolve();
        }),
        ms,
      );
      timer.unref();
      this.#sleep = { timer, wakeOnOpen, wake: resolve };
    });
  }

  #wake(): void {
    const sleep = this.#sleep;
    if (sleep === undefined) return;
    this.#sleep = undefined;
    clearTimeout(sleep.timer);
    sleep.wake();
  }

  #onBad(reason: string, detail: string): void {
    this.#out.bad(reason, detail);
  }

  #onValues(device: string, decoded: Readonly<Record<string, Value>>): void {
    this.#out.publish(decoded, device);
  }
}

function describe(read: PlannedRead): string {
  return `slave ${read.slave} fn ${read.fn} registers ${read.address}..${read.address + read.count - 1}`;
}
