/**
 * A Modbus RTU slave on a pty pair, for end-to-end tests of the polling side: it reads
 * requests from its end of the pty, answers reads of functions 3 and 4 from a register
 * model, and records every request with its timing.
 *
 * Rules:
 * - A request is 8 bytes with a good CRC [MB-SL 2.5.1.2]. Bytes that do not start one are
 *   dropped one at a time until a good frame lines up (`badRequests` counts them), and a
 *   partial frame older than REQUEST_GAP_MS is discarded, as an RTU slave discards a frame
 *   interrupted by silence [MB-SL 2.5.1.1]. At most MAX_RX_BYTES are buffered.
 * - Only requests to one of `slaves` are answered; others are recorded as "ignored".
 * - Reads (3, 4) and writes (6, 16) of registers [MB-AP 6.3, 6.4, 6.6, 6.12]; a write
 *   request is 8 bytes (6) or 9 + its byte count (16). Writes go to holding registers the
 *   model has, and are kept per slave: later reads of function 3 see them.
 * - Another function → exception 1; a quantity outside 1..125 (reads) or 1..123 (16) →
 *   exception 3; a register the model does not have → exception 2 [MB-AP 7].
 * - Sample `n` of a slave is the number of normal answers to input-register reads (4) it
 *   has written: its values depend only on slave and `n`, so a test can compare what was
 *   published with `requests[].values` of the "answered" records, in order.
 * - Fault modes apply to the next `count` requests addressed to us: "no_answer" (the
 *   master times out), "bad_crc" (an answer with its CRC broken), "slow" (the right answer,
 *   `delayMs` late). A faulty answer does not advance `n`; a slow one does.
 */

import { performance } from "node:perf_hooks";
import {
  crc16Modbus,
  encodeException,
  encodeReadResponse,
  encodeWriteResponse,
  MAX_READ_COUNT,
  MAX_WRITE_COUNT,
  type ReadFunction,
  WRITE_MULTIPLE_REGISTERS,
  WRITE_SINGLE_REGISTER,
} from "../src/serial/modbus.js";
import { PtyPair } from "./pty.js";

/** fn, address (2), quantity or value (2) after the slave byte, and the CRC (2). */
const REQUEST_LENGTH = 8;
/** A write-multiple request: slave, fn, address (2), quantity (2), byte count, CRC (2)... */
const WRITE_MULTIPLE_OVERHEAD = 9;
/** ...whose byte count is its seventh byte. */
const BYTE_COUNT_AT = 6;
/** A request's bytes come in one burst; a gap this long means the rest is not coming. */
const REQUEST_GAP_MS = 50;
/** Enough for a few requests; anything beyond is line noise. */
const MAX_RX_BYTES = 256;
/** The request log keeps the most recent entries only. */
const MAX_RECORDS = 10_000;
/** [MB-AP 7] */
const ILLEGAL_FUNCTION = 1;
const ILLEGAL_DATA_ADDRESS = 2;
const ILLEGAL_DATA_VALUE = 3;

/** Registers of one slave at one sample, and the values a decoder must find in them. */
export interface RegisterSample {
  /** Function 4 registers by address. */
  readonly input: ReadonlyMap<number, number>;
  /** Function 3 registers by address. */
  readonly holding: ReadonlyMap<number, number>;
  readonly values: Readonly<Record<string, number>>;
}

/** A device kind the slave can play: registers from slave address and sample number. */
export interface RegisterModel {
  readonly name: string;
  sample(slave: number, n: number): RegisterSample;
}

export type ModbusFault = "none" | "no_answer" | "bad_crc" | "slow";

/** One request the slave read, and what it did with it. */
export interface ModbusRequestRecord {
  readonly slave: number;
  readonly fn: number;
  readonly address: number;
  readonly count: number;
  /** `performance.now()` when the request was read. */
  readonly receivedAtMs: number;
  /** `performance.now()` when the answer was written; undefined while none was. */
  readonly answeredAtMs: number | undefined;
  /** "pending": a slow answer not yet written; "unsent": the pty was gone when it was. */
  readonly outcome:
    | "answered"
    | "exception"
    | "no_answer"
    | "bad_crc"
    | "ignored"
    | "pending"
    | "unsent";
  readonly exceptionCode?: number;
  /** The sample's values, for "answered" (and "bad_crc": what the broken frame held). */
  readonly values?: Readonly<Record<string, number>>;
  /** The sample number answered. */
  readonly n?: number;
  /** The values a write (6, 16) carried. */
  readonly written?: readonly number[];
}

type MutableRecord = { -readonly [K in keyof ModbusRequestRecord]: ModbusRequestRecord[K] };

const round = (x: number, decimals: number): number => {
  const f = 10 ** decimals;
  return Math.round(x * f) / f;
};

function f32Words(x: number): [number, number] {
  const view = new DataView(new ArrayBuffer(4));
  view.setFloat32(0, x);
  return [view.getUint16(0), view.getUint16(2)];
}

/**
 * The energy meter's settings, holding registers a master may write: 100 demand interval
 * (minutes), 101 CT ratio, 102 Modbus baud rate code (3 = 9600).
 */
const METER_SETTINGS: ReadonlyMap<number, number> = new Map([
  [100, 15],
  [101, 1],
  [102, 3],
]);

/**
 * A single-phase energy meter: input registers 0..7 hold voltage (V), current (A), power
 * (W) and energy (kWh) as f32, high word first; 8 holds frequency in 0.01 Hz (u16).
 * Holding registers 100..102 are its settings (`METER_SETTINGS`), which writes change.
 * Every value has at most six significant digits, so it survives binary32 exactly as
 * the shortest decimal; `values.frequency` is in Hz (the register ÷ 100).
 */
export const energyMeter: RegisterModel = {
  name: "energy-meter",
  sample(slave, n) {
    const voltage = round(230 + 3 * Math.sin(n / 5) + (slave - 1), 2);
    const current = round(5 + 1.5 * Math.cos(n / 7) + 0.5 * (slave - 1), 3);
    const power = round(voltage * current, 1);
    const energy = round(100 * slave + 0.01 * n, 2);
    const frequencyRaw = 5000 + ((n % 7) - 3);
    const input = new Map<number, number>();
    [voltage, current, power, energy].forEach((x, i) => {
      const [high, low] = f32Words(x);
      input.set(2 * i, high);
      input.set(2 * i + 1, low);
    });
    input.set(8, frequencyRaw);
    return {
      input,
      holding: METER_SETTINGS,
      values: { voltage, current, power, energy, frequency: frequencyRaw / 100 },
    };
  },
};

/**
 * Plays Modbus RTU slaves on a pty pair. `devicePath` is the gateway's side. Open with
 * `open()`; `unplug()` makes the device node vanish, `replug()` brings it back.
 */
export class ModbusSlaveSimulator {
  readonly model: RegisterModel;
  readonly slaves: readonly number[];
  readonly pty: PtyPair;
  /** Every request read, oldest first (the last MAX_RECORDS). */
  readonly requests: ModbusRequestRecord[] = [];
  /** Bytes dropped because they did not begin a request with a good CRC. */
  badRequests = 0;
  readonly #samples = new Map<number, number>();
  /** Holding registers written, by `${slave}:${address}`. */
  readonly #holding = new Map<string, number>();
  readonly #slow = new Set<NodeJS.Timeout>();
  #stopReading: (() => void) | undefined;
  #rx = Buffer.alloc(0);
  #lastByteAt = 0;
  #fault: { mode: ModbusFault; left: number; delayMs: number; slave: number | undefined } = {
    mode: "none",
    left: 0,
    delayMs: 0,
    slave: undefined,
  };

  constructor(options: {
    devicePath: string;
    simPath: string;
    slaves?: readonly number[];
    model?: RegisterModel;
  }) {
    this.model = options.model ?? energyMeter;
    this.slaves = options.slaves ?? [1];
    this.pty = new PtyPair(options.devicePath, options.simPath);
  }

  get devicePath(): string {
    return this.pty.devicePath;
  }

  async open(): Promise<void> {
    await this.pty.open();
    this.#attach();
  }

  /**
   * Misbehaves for the next `count` requests addressed to us (default: until changed),
   * only for `slave` when given. `delayMs` is how late a "slow" answer is.
   */
  fault(
    mode: ModbusFault,
    options: { count?: number; delayMs?: number; slave?: number } = {},
  ): void {
    this.#fault = {
      mode,
      left: options.count ?? Number.POSITIVE_INFINITY,
      delayMs: options.delayMs ?? 0,
      slave: options.slave,
    };
  }

  /** The values of the answers the master can have accepted, oldest first. */
  answeredValues(slave?: number): Readonly<Record<string, number>>[] {
    return this.requests.flatMap((r) =>
      r.outcome === "answered" && r.values && (slave === undefined || r.slave === slave)
        ? [r.values]
        : [],
    );
  }

  /**
   * The most requests outstanding at once, as the slave saw them: a request counts from
   * when it was read until its answer was written. Requests never answered (no_answer,
   * ignored, or unplugged) are left out: the slave cannot know when the master gave up.
   * A master that waits for each answer gives 1.
   */
  maxOutstanding(): number {
    const answered = this.requests.filter((r) => r.answeredAtMs !== undefined);
    let max = 0;
    for (const [i, r] of answered.entries()) {
      let open = 1;
      for (const earlier of answered.slice(0, i)) {
        if (earlier.answeredAtMs! > r.receivedAtMs) open++;
      }
      max = Math.max(max, open);
    }
    return max;
  }

  async unplug(): Promise<void> {
    this.#detach();
    await this.pty.close();
  }

  async replug(): Promise<void> {
    await this.pty.open();
    this.#attach();
  }

  async close(): Promise<void> {
    this.#detach();
    await this.pty.close();
  }

  /** Reads what the gateway writes; an error (socat gone) stops it until the next replug. */
  #attach(): void {
    this.#stopReading = this.pty.read(
      (chunk) => this.#onData(chunk),
      () => this.#detach(),
    );
    this.#rx = Buffer.alloc(0);
  }

  #detach(): void {
    for (const timer of this.#slow) clearTimeout(timer);
    this.#slow.clear();
    const stop = this.#stopReading;
    this.#stopReading = undefined;
    stop?.();
  }

  #onData(chunk: Buffer): void {
    const now = performance.now();
    if (now - this.#lastByteAt > REQUEST_GAP_MS) this.#rx = Buffer.alloc(0);
    this.#lastByteAt = now;
    this.#rx = Buffer.concat([this.#rx, chunk]);
    if (this.#rx.length > MAX_RX_BYTES) {
      this.badRequests += this.#rx.length - MAX_RX_BYTES;
      this.#rx = this.#rx.subarray(this.#rx.length - MAX_RX_BYTES);
    }
    while (this.#rx.length >= REQUEST_LENGTH) {
      const length =
        this.#rx[1] === WRITE_MULTIPLE_REGISTERS
          ? WRITE_MULTIPLE_OVERHEAD + this.#rx[BYTE_COUNT_AT]!
          : REQUEST_LENGTH;
      if (this.#rx.length < length) break;
      const frame = this.#rx.subarray(0, length);
      const crc = frame.readUInt16LE(length - 2);
      if (crc !== crc16Modbus(frame.subarray(0, length - 2))) {
        this.badRequests++;
        this.#rx = this.#rx.subarray(1);
        continue;
      }
      this.#rx = this.#rx.subarray(length);
      this.#handle(Buffer.from(frame), now);
    }
  }

  #handle(frame: Buffer, receivedAtMs: number): void {
    const record: MutableRecord = {
      slave: frame[0]!,
      fn: frame[1]!,
      address: frame.readUInt16BE(2),
      count: frame.readUInt16BE(4),
      receivedAtMs,
      answeredAtMs: undefined,
      outcome: "ignored",
    };
    this.requests.push(record);
    if (this.requests.length > MAX_RECORDS) this.requests.shift();
    const { slave, fn, address, count } = record;
    if (!this.slaves.includes(slave)) return;

    const fault = this.#takeFault(slave);
    if (fault.mode === "no_answer") {
      record.outcome = "no_answer";
      return;
    }
    let answer: Buffer;
    const n = this.#samples.get(slave) ?? 0;
    const sample = this.model.sample(slave, n);
    let code = 0;
    let normal: Buffer | undefined;
    if (fn === WRITE_SINGLE_REGISTER || fn === WRITE_MULTIPLE_REGISTERS) {
      const values =
        fn === WRITE_SINGLE_REGISTER
          ? [count]
          : Array.from({ length: count }, (_, i) => frame.readUInt16BE(7 + 2 * i));
      record.count = values.length;
      record.written = values;
      if (fn === WRITE_MULTIPLE_REGISTERS && (count < 1 || count > MAX_WRITE_COUNT)) {
        code = ILLEGAL_DATA_VALUE;
      } else if (!values.every((_, i) => sample.holding.has(address + i))) {
        code = ILLEGAL_DATA_ADDRESS;
      } else {
        for (const [i, v] of values.entries()) this.#holding.set(`${slave}:${address + i}`, v);
        normal = encodeWriteResponse(frame);
      }
    } else {
      const table = fn === 4 ? sample.input : fn === 3 ? sample.holding : undefined;
      const registers = new Uint16Array(Math.max(0, Math.min(count, MAX_READ_COUNT)));
      if (table === undefined) code = ILLEGAL_FUNCTION;
      else if (count < 1 || count > MAX_READ_COUNT) code = ILLEGAL_DATA_VALUE;
      else {
        for (let i = 0; i < count; i++) {
          const held = fn === 3 ? this.#holding.get(`${slave}:${address + i}`) : undefined;
          const value = held ?? table.get(address + i);
          if (value === undefined) {
            code = ILLEGAL_DATA_ADDRESS;
            break;
          }
          registers[i] = value;
        }
      }
      if (code === 0) {
        normal = encodeReadResponse(slave, fn as ReadFunction, registers);
        if (fn === 4) {
          record.values = sample.values;
          record.n = n;
        }
      }
    }
    if (normal === undefined) {
      record.outcome = "exception";
      record.exceptionCode = code;
      // Function codes other than 3/4 are echoed as they came; encodeException takes 3/4.
      answer = encodeException(slave, (fn === 3 || fn === 4 ? fn : 3) as ReadFunction, code);
      if (fn !== 3 && fn !== 4) {
        answer[1] = (fn | 0x80) & 0xff;
        answer.writeUInt16LE(crc16Modbus(answer.subarray(0, 3)), 3);
      }
    } else {
      answer = normal;
      if (fault.mode === "bad_crc") {
        record.outcome = "bad_crc";
        answer[answer.length - 1] = answer[answer.length - 1]! ^ 0xff;
      } else {
        record.outcome = "pending";
      }
    }
    const send = (): void => {
      if (!this.pty.write(answer)) {
        record.outcome = "unsent";
        return;
      }
      record.answeredAtMs = performance.now();
      if (record.outcome === "pending") {
        record.outcome = "answered";
        if (record.n !== undefined) this.#samples.set(slave, (this.#samples.get(slave) ?? 0) + 1);
      }
    };
    if (fault.mode !== "slow") {
      send();
      return;
    }
    const timer = setTimeout(() => {
      this.#slow.delete(timer);
      send();
    }, fault.delayMs);
    this.#slow.add(timer);
  }

  #takeFault(slave: number): { mode: ModbusFault; delayMs: number } {
    const f = this.#fault;
    if (f.mode === "none" || f.left <= 0 || (f.slave !== undefined && f.slave !== slave)) {
      return { mode: "none", delayMs: 0 };
    }
    f.left--;
    return { mode: f.mode, delayMs: f.delayMs };
  }
}
