/**
 * A Modbus RTU device: the gateway is the master and polls register reads, instead of
 * framing what a streaming device sends. Codec and planning live in modbus.ts (pure); this
 * file owns the port, the clock and the bus.
 *
 * Profile `decoder` section (`type: modbus`), validated by `modbusSpec`:
 * - `slave: 1` or `slaves: [1, 2]` — unicast addresses 1..247 [MB-SL 2.2], not both keys;
 * - `poll_interval`: `"1s"`, `"250ms"`, `"2m"` or a number of milliseconds (default 1s);
 * - `timeout_ms`: how long one request waits for its complete answer (default 200);
 * - `retries`: extra attempts after a timeout or a bad answer (default 2);
 * - `registers`: `{ name, function: 3|4, address, type: u16|i16|u32|i32|f32,
 *   word_order: big|little }`; `function` is required, `type` defaults to u16 and
 *   `word_order` to big. Each profile field's `source` must name a register.
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
  MAX_SLAVE,
  MIN_SLAVE,
  type PlannedRead,
  parseReadResponse,
  planReads,
  type ReadFunction,
  registersToValue,
} from "./modbus.js";
import { PortManager, type PortStatus, type SerialOpener } from "./port.js";
import { type DeviceProfile, ProfileError, type SerialSettings } from "./profile.js";
import { DevicePublisher } from "./publisher.js";

/** Profile defaults: a second between polls suits meters; 200 ms covers a slave's
 * processing time plus a 125-register answer at 19200 baud. */
const DEFAULT_POLL_INTERVAL_MS = 1_000;
const DEFAULT_TIMEOUT_MS = 200;
const DEFAULT_RETRIES = 2;
/** A tighter poll loop would only keep the line busy; a longer timeout or more retries
 * would let one dead slave starve the others for minutes. */
const MIN_POLL_INTERVAL_MS = 10;
const MAX_TIMEOUT_MS = 10_000;
const MAX_RETRIES = 10;
/** [MB-AP 7]: address, function | 0x80, exception code, CRC (2). */
const EXCEPTION_RESPONSE_LENGTH = 5;
/** [MB-SL 2.5.1]: an RTU character is 11 bits (start, 8 data, parity or second stop, stop). */
const BITS_PER_CHAR = 11;
/** [MB-SL 2.5.1.1]: frames are separated by 3.5 character times of silence... */
const SILENT_CHARS = 3.5;
/** ...fixed at 1.75 ms above 19200 baud, rounded up to the timer's whole milliseconds. */
const FAST_LINE_BAUD = 19_200;
const FAST_LINE_SILENCE_MS = 2;
/** [MB-AP 6.3, 6.4] */
const READ_FUNCTIONS: readonly number[] = [3, 4];
/** Registers each value type spans. */
const VALUE_WORDS = { u16: 1, i16: 1, u32: 2, i32: 2, f32: 2 } as const;
/** binary32 carries 6 to 9 significant decimal digits; 9 always reads back exactly. */
const FLOAT32_MAX_DIGITS = 9;
const DECODER_KEYS = [
  "type",
  "slave",
  "slaves",
  "poll_interval",
  "timeout_ms",
  "retries",
  "registers",
];
const REGISTER_KEYS = ["name", "function", "address", "type", "word_order"];
const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m)$/;
const MS_PER_UNIT = { ms: 1, s: 1_000, m: 60_000 } as const;

export type ModbusValueType = keyof typeof VALUE_WORDS;

/** One value a profile reads: `function` and `address` say where, `type` how to read it. */
export interface ModbusRegister {
  readonly name: string;
  readonly fn: ReadFunction;
  readonly address: number;
  readonly type: ModbusValueType;
  readonly wordOrder: "big" | "little";
}

/** A profile's `decoder` section for Modbus, checked and with defaults filled in. */
export interface ModbusSpec {
  readonly slaves: readonly number[];
  /** True when the profile used `slaves:` with more than one address (see `{device}`). */
  readonly perSlaveDevice: boolean;
  readonly pollIntervalMs: number;
  readonly timeoutMs: number;
  readonly retries: number;
  readonly registers: readonly ModbusRegister[];
}

type Raw = Readonly<Record<string, unknown>>;

function isRecord(v: unknown): v is Raw {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const show = (v: unknown): string => JSON.stringify(v) ?? String(v);

/**
 * The Modbus section of `profile`, checked. Every problem is collected with its field
 * path (`decoder.registers[2].address`) and thrown as one `ProfileError`.
 */
export function modbusSpec(profile: DeviceProfile): ModbusSpec {
  const problems: string[] = [];
  const fail = (path: string, what: string): void => {
    problems.push(`${path}: ${what}`);
  };
  const d = profile.decoder;
  if (d.type !== "modbus") fail("decoder.type", `expected modbus, got ${show(d.type)}`);
  for (const key of Object.keys(d)) {
    if (!DECODER_KEYS.includes(key))
      fail(`decoder.${key}`, `unknown key (expected ${DECODER_KEYS.join(", ")})`);
  }
  const int = (path: string, v: unknown, min: number, max: number): number => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
      fail(path, `expected a whole number ${min}..${max}, got ${show(v)}`);
      return min;
    }
    return v;
  };

  // Slaves.
  let slaves: number[] = [];
  if (d.slave !== undefined && d.slaves !== undefined) {
    fail("decoder.slaves", "give either slave or slaves, not both");
  } else if (d.slaves !== undefined) {
    if (!Array.isArray(d.slaves) || d.slaves.length === 0) {
      fail("decoder.slaves", `expected a list of slave addresses, got ${show(d.slaves)}`);
    } else {
      slaves = d.slaves.map((s: unknown, i: number) =>
        int(`decoder.slaves[${i}]`, s, MIN_SLAVE, MAX_SLAVE),
      );
      slaves.forEach((s, i) => {
        if (slaves.indexOf(s) !== i) fail(`decoder.slaves[${i}]`, `slave ${s} is listed twice`);
      });
    }
  } else if (d.slave !== undefined) {
    slaves = [int("decoder.slave", d.slave, MIN_SLAVE, MAX_SLAVE)];
  } else {
    fail("decoder.slave", `required: the slave address (${MIN_SLAVE}..${MAX_SLAVE})`);
  }

  // Timing.
  const pollIntervalMs = pollInterval(d.poll_interval);
  if (pollIntervalMs === undefined || pollIntervalMs < MIN_POLL_INTERVAL_MS) {
    fail(
      "decoder.poll_interval",
      `expected a duration of at least ${MIN_POLL_INTERVAL_MS} ms like "1s" or "250ms", or a number of milliseconds, got ${show(d.poll_interval)}`,
    );
  }
  const timeoutMs =
    d.timeout_ms === undefined
      ? DEFAULT_TIMEOUT_MS
      : int("decoder.timeout_ms", d.timeout_ms, 1, MAX_TIMEOUT_MS);
  const retries =
    d.retries === undefined ? DEFAULT_RETRIES : int("decoder.retries", d.retries, 0, MAX_RETRIES);

  // Registers.
  const registers: ModbusRegister[] = [];
  if (!Array.isArray(d.registers) || d.registers.length === 0) {
    fail("decoder.registers", "expected a list of at least one register");
  } else {
    const names = new Set<string>();
    d.registers.forEach((r: unknown, i: number) => {
      const at = `decoder.registers[${i}]`;
      if (!isRecord(r)) {
        fail(at, "expected a mapping like { name: voltage, function: 4, address: 0, type: f32 }");
        return;
      }
      for (const key of Object.keys(r)) {
        if (!REGISTER_KEYS.includes(key))
          fail(`${at}.${key}`, `unknown key (expected ${REGISTER_KEYS.join(", ")})`);
      }
      const name = typeof r.name === "string" ? r.name : "";
      if (name.length === 0) fail(`${at}.name`, `expected a non-empty string, got ${show(r.name)}`);
      else if (names.has(name)) fail(`${at}.name`, `"${name}" is defined twice`);
      names.add(name);
      if (!READ_FUNCTIONS.includes(r.function as number)) {
        fail(
          `${at}.function`,
          `expected 3 (holding registers) or 4 (input registers), got ${show(r.function)}`,
        );
      }
      const type = (r.type ?? "u16") as ModbusValueType;
      if (!Object.hasOwn(VALUE_WORDS, type)) {
        fail(
          `${at}.type`,
          `expected one of ${Object.keys(VALUE_WORDS).join(", ")}, got ${show(r.type)}`,
        );
      }
      const words = VALUE_WORDS[type] ?? 1;
      const address = int(`${at}.address`, r.address, 0, 0x10000 - words);
      const wordOrder = r.word_order ?? "big";
      if (wordOrder !== "big" && wordOrder !== "little") {
        fail(`${at}.word_order`, `expected big (ABCD) or little (CDAB), got ${show(wordOrder)}`);
      }
      registers.push({
        name,
        fn: r.function as ReadFunction,
        address,
        type,
        wordOrder: wordOrder as "big" | "little",
      });
    });
    profile.fields.forEach((f, i) => {
      if (!names.has(f.source)) {
        fail(
          `fields[${i}].source`,
          `no register named "${f.source}" in decoder.registers (have ${[...names].join(", ")})`,
        );
      }
    });
  }
  if (problems.length > 0) throw new ProfileError(profile.name, problems);
  return {
    slaves,
    perSlaveDevice: d.slaves !== undefined && slaves.length > 1,
    pollIntervalMs: pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS,
    timeoutMs,
    retries,
    registers,
  };
}

/** Checks a Modbus profile without opening anything, for `leafgate check` and start-up. */
export function validateModbusDevice(profile: DeviceProfile): void {
  modbusSpec(profile);
}

/** `"250ms"`, `"1s"`, `"2m"` or a number of milliseconds; undefined when it is neither. */
function pollInterval(v: unknown): number | undefined {
  if (v === undefined) return DEFAULT_POLL_INTERVAL_MS;
  if (typeof v === "number") return Number.isFinite(v) ? v : undefined;
  if (typeof v !== "string") return undefined;
  const m = DURATION.exec(v.trim());
  return m ? Math.round(Number(m[1]) * MS_PER_UNIT[m[2] as keyof typeof MS_PER_UNIT]) : undefined;
}

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
