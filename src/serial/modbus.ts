/**
 * Modbus RTU codec and polling plan for reading registers; pure, no port in sight.
 *
 * Specs: "MODBUS Application Protocol Specification V1.1b3" (here *MB-AP*) and "MODBUS
 * over Serial Line Specification and Implementation Guide V1.02" (*MB-SL*).
 *
 * Rules:
 * - An RTU frame (ADU) is slave address, PDU, CRC [MB-SL 2.5.1.1]. The PDU is a function
 *   code and its data [MB-AP 4.1].
 * - The CRC is CRC-16/MODBUS: polynomial 0xA001 (0x8005 reflected), start 0xFFFF, no final
 *   XOR, over address and PDU; sent low byte first [MB-SL 2.5.1.2, 6.2.2]. Check value:
 *   "123456789" → 0x4B37.
 * - Everything else is big-endian: addresses, counts, each register [MB-AP 4.2].
 * - Reads: functions 0x03 (read holding registers) and 0x04 (read input registers) [MB-AP
 *   6.3, 6.4]. Request PDU: function, start address (2 bytes), quantity (2 bytes), quantity
 *   1..125. Response PDU: function, byte count = 2 × quantity, the registers.
 * - Writes (device commands): 0x06 (write single register) [MB-AP 6.6], request and
 *   normal response both function, address (2), value (2); and 0x10 (write multiple
 *   registers) [MB-AP 6.12], request function, address (2), quantity (2), byte count =
 *   2 × quantity, the values, quantity 1..123; response function, address (2), quantity (2).
 * - An exception response is the function code with its top bit set (function | 0x80)
 *   and one exception code byte [MB-AP 7].
 * - Unicast slave addresses are 1..247; 0 is broadcast, which reads cannot use because
 *   nobody answers a broadcast [MB-SL 2.2].
 * - A 32-bit value spans two registers. The spec does not say which comes first, so
 *   devices differ: `"big"` word order is high word first (ABCD), `"little"` low word
 *   first (CDAB). Bytes inside a register stay big-endian; byte-swapped devices (BADC,
 *   DCBA) are not supported.
 *
 * Arguments out of range are programmer or configuration errors: they throw
 * `ModbusError` (LG_ERR_MODBUS_ARGUMENT). Response frames come from the wire, so
 * `parseReadResponse` never throws; it returns the reason.
 */

import { Buffer } from "node:buffer";
import { LeafgateError } from "../core/index.js";

/** [MB-AP 6.3, 6.4] */
export const READ_HOLDING_REGISTERS = 0x03;
/** [MB-AP 6.3, 6.4] */
export const READ_INPUT_REGISTERS = 0x04;
export type ReadFunction = typeof READ_HOLDING_REGISTERS | typeof READ_INPUT_REGISTERS;

/** [MB-AP 6.6] */
export const WRITE_SINGLE_REGISTER = 0x06;
/** [MB-AP 6.12] */
export const WRITE_MULTIPLE_REGISTERS = 0x10;
export type WriteFunction = typeof WRITE_SINGLE_REGISTER | typeof WRITE_MULTIPLE_REGISTERS;
/** [MB-AP 6.12]: quantity of registers 1 to 123 (0x7B), so a request fits 256 bytes. */
export const MAX_WRITE_COUNT = 123;
/** A normal write response: address, function, address (2), value or quantity (2), CRC (2). */
export const WRITE_RESPONSE_LENGTH = 8;

/** [MB-AP 7]: an exception response sets the top bit of the request's function code. */
export const EXCEPTION_FLAG = 0x80;
/** [MB-SL 2.2]: unicast addresses; 0 is broadcast. */
export const MIN_SLAVE = 1;
export const MAX_SLAVE = 247;
/** [MB-AP 6.3, 6.4]: quantity of registers 1 to 125 (0x7D), so a response fits 256 bytes. */
export const MAX_READ_COUNT = 125;
/** Register addresses are 16 bits [MB-AP 4.4]. */
const ADDRESS_SPACE = 0x10000;
/** Bytes around the registers of a read response: address, function, byte count, CRC (2). */
const RESPONSE_OVERHEAD = 5;
/** Address, function, exception code, CRC (2). */
const EXCEPTION_LENGTH = 5;
/** Address, function, start (2), quantity (2), CRC (2). */
const REQUEST_LENGTH = 8;
const CRC_LENGTH = 2;
const CRC_INIT = 0xffff;
/** 0x8005 bit-reversed: the CRC shifts right, least significant bit first [MB-SL 6.2.2]. */
const CRC_POLY = 0xa001;
const BYTES_PER_REGISTER = 2;
const HIGH_WORD = 0x10000;
/** Without a `maxGap`, only adjacent or overlapping ranges are merged: reading an unmapped
 * register in a gap makes many devices answer with exception 2 for the whole request. */
const DEFAULT_MAX_GAP = 0;

/** [MB-AP 7] exception codes and their names, for logs. */
export const EXCEPTION_CODES: Readonly<Record<number, string>> = {
  1: "illegal function",
  2: "illegal data address",
  3: "illegal data value",
  4: "server device failure",
  5: "acknowledge",
  6: "server device busy",
  8: "memory parity error",
  10: "gateway path unavailable",
  11: "gateway target device failed to respond",
};

/** An argument no Modbus request could carry (a slave of 0, 126 registers…). */
export class ModbusError extends LeafgateError {
  constructor(message: string, options?: ErrorOptions) {
    super("LG_ERR_MODBUS_ARGUMENT", message, options);
  }
}

const CRC_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let bit = 0; bit < 8; bit++) c = c & 1 ? (c >>> 1) ^ CRC_POLY : c >>> 1;
    table[n] = c;
  }
  return table;
})();

/** CRC-16/MODBUS of `bytes` [MB-SL 6.2.2]; the frame carries it low byte first. */
export function crc16Modbus(bytes: Uint8Array): number {
  let crc = CRC_INIT;
  for (const b of bytes) crc = (crc >>> 8) ^ CRC_TABLE[(crc ^ b) & 0xff]!;
  return crc;
}

/** A read request ADU: `slave fn addr_hi addr_lo count_hi count_lo crc_lo crc_hi`. */
export function encodeReadRequest(
  slave: number,
  fn: ReadFunction,
  address: number,
  count: number,
): Buffer {
  checkSlave(slave);
  checkFunction(fn);
  checkRange(address, count);
  const frame = Buffer.alloc(REQUEST_LENGTH);
  frame[0] = slave;
  frame[1] = fn;
  frame.writeUInt16BE(address, 2);
  frame.writeUInt16BE(count, 4);
  return withCrc(frame);
}

export type ReadResponse =
  | {
      readonly ok: true;
      readonly slave: number;
      readonly fn: ReadFunction;
      readonly registers: Uint16Array;
    }
  | {
      readonly ok: false;
      readonly reason:
        | "bad_crc"
        | "wrong_slave"
        | "wrong_function"
        | "exception"
        | "too_short"
        | "wrong_length";
      /** Set when `reason` is "exception" [MB-AP 7]. */
      readonly exceptionCode?: number;
      readonly detail: string;
    };

/** Bytes of a normal response to a read of `count` registers: 5 + 2 × count [MB-AP 6.3]. */
export function expectedResponseLength(fn: ReadFunction, count: number): number {
  checkFunction(fn);
  return RESPONSE_OVERHEAD + BYTES_PER_REGISTER * count;
}

/**
 * Checks one response frame against the request it answers, in the order a receiver
 * must: length enough for any answer, then the CRC [MB-SL 2.5.1.2] (a frame that fails it
 * says nothing reliable), then the slave address, then the function (an exception response
 * [MB-AP 7] is reported with its code), then the byte count and the frame length.
 */
export function parseReadResponse(
  frame: Uint8Array,
  expect: { readonly slave: number; readonly fn: ReadFunction; readonly count: number },
): ReadResponse {
  const head = checkHead(frame, expect.slave, expect.fn);
  if (head !== undefined) return head;
  const byteCount = frame[2]!;
  if (byteCount !== BYTES_PER_REGISTER * expect.count) {
    return fail("wrong_length", `byte count ${byteCount}, asked ${expect.count} registers`);
  }
  const want = expectedResponseLength(expect.fn, expect.count);
  if (frame.length !== want) return fail("wrong_length", `${frame.length} bytes, expected ${want}`);
  const registers = new Uint16Array(expect.count);
  for (let i = 0; i < expect.count; i++) {
    registers[i] = (frame[3 + 2 * i]! << 8) | frame[4 + 2 * i]!;
  }
  return { ok: true, slave: expect.slave, fn: expect.fn, registers };
}

/** What a failed check of an answer says: every reason but "exception" is a bad frame. */
export type AnswerFailure = Extract<ReadResponse, { ok: false }>;

/**
 * The checks every answer takes first, in the order a receiver must: length enough for
 * any answer, the CRC [MB-SL 2.5.1.2] (a frame that fails it says nothing reliable), the
 * slave address, then the function: an exception response [MB-AP 7] is reported with its
 * code. Undefined when the frame is a normal answer of `slave` to `fn` so far.
 */
function checkHead(frame: Uint8Array, slave: number, fn: number): AnswerFailure | undefined {
  if (frame.length < EXCEPTION_LENGTH) {
    return fail("too_short", `${frame.length} bytes; the shortest answer has ${EXCEPTION_LENGTH}`);
  }
  const body = frame.subarray(0, frame.length - CRC_LENGTH);
  const sent = frame[frame.length - CRC_LENGTH]! | (frame[frame.length - 1]! << 8);
  const computed = crc16Modbus(body);
  if (sent !== computed) return fail("bad_crc", `CRC ${hex4(sent)}, computed ${hex4(computed)}`);
  if (frame[0] !== slave) return fail("wrong_slave", `from slave ${frame[0]}, asked ${slave}`);
  const got = frame[1]!;
  if (got === (fn | EXCEPTION_FLAG)) {
    const code = frame[2]!;
    if (frame.length !== EXCEPTION_LENGTH) {
      return fail(
        "wrong_length",
        `exception response of ${frame.length} bytes, not ${EXCEPTION_LENGTH}`,
      );
    }
    const name = EXCEPTION_CODES[code] ?? "unknown exception";
    return {
      ok: false,
      reason: "exception",
      exceptionCode: code,
      detail: `exception ${code} (${name})`,
    };
  }
  if (got !== fn) return fail("wrong_function", `function ${got}, asked ${fn}`);
  return undefined;
}

/**
 * A write request ADU: function 6 with one value, or 16 with 1..123 (`MAX_WRITE_COUNT`).
 * Throws `ModbusError` for anything a request cannot carry.
 */
export function encodeWriteRequest(
  slave: number,
  fn: WriteFunction,
  address: number,
  values: readonly number[],
): Buffer {
  checkSlave(slave);
  if (fn !== WRITE_SINGLE_REGISTER && fn !== WRITE_MULTIPLE_REGISTERS) {
    throw new ModbusError(`write function must be 6 or 16, got ${fn}`);
  }
  const max = fn === WRITE_SINGLE_REGISTER ? 1 : MAX_WRITE_COUNT;
  if (values.length < 1 || values.length > max) {
    throw new ModbusError(`function ${fn} writes 1..${max} registers, got ${values.length}`);
  }
  checkRange(address, values.length);
  for (const v of values) {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff) {
      throw new ModbusError(`a register holds 0..65535, got ${v}`);
    }
  }
  if (fn === WRITE_SINGLE_REGISTER) {
    const frame = Buffer.alloc(WRITE_RESPONSE_LENGTH);
    frame[0] = slave;
    frame[1] = fn;
    frame.writeUInt16BE(address, 2);
    frame.writeUInt16BE(values[0]!, 4);
    return withCrc(frame);
  }
  const frame = Buffer.alloc(9 + BYTES_PER_REGISTER * values.length);
  frame[0] = slave;
  frame[1] = fn;
  frame.writeUInt16BE(address, 2);
  frame.writeUInt16BE(values.length, 4);
  frame[6] = BYTES_PER_REGISTER * values.length;
  for (const [i, v] of values.entries()) frame.writeUInt16BE(v, 7 + BYTES_PER_REGISTER * i);
  return withCrc(frame);
}

/** The normal answer to a write request (for simulators and tests): its first six bytes. */
export function encodeWriteResponse(request: Uint8Array): Buffer {
  const frame = Buffer.alloc(WRITE_RESPONSE_LENGTH);
  frame.set(request.subarray(0, WRITE_RESPONSE_LENGTH - CRC_LENGTH));
  return withCrc(frame);
}

/**
 * Checks the answer to the write `request` (as `encodeWriteRequest` made it): the checks
 * every answer takes, then its length and the echoed address and value (6) or quantity
 * (16) [MB-AP 6.6, 6.12].
 */
export function parseWriteResponse(
  frame: Uint8Array,
  request: Uint8Array,
): { readonly ok: true } | AnswerFailure {
  const head = checkHead(frame, request[0]!, request[1]!);
  if (head !== undefined) return head;
  if (frame.length !== WRITE_RESPONSE_LENGTH) {
    return fail("wrong_length", `${frame.length} bytes, expected ${WRITE_RESPONSE_LENGTH}`);
  }
  for (let i = 2; i < WRITE_RESPONSE_LENGTH - CRC_LENGTH; i++) {
    if (frame[i] !== request[i]) {
      return fail("wrong_length", "the answer does not echo the address and value or quantity");
    }
  }
  return { ok: true };
}

/**
 * The number held in `regs` from index `at`: u16/i16 read one register, u32/i32/f32 two
 * (IEEE 754 binary32 for f32), combined in `wordOrder` ("big" = ABCD, high word first;
 * "little" = CDAB). Throws `ModbusError` when the registers do not reach that far.
 */
export function registersToValue(
  regs: Uint16Array,
  at: number,
  type: "u16" | "i16" | "u32" | "i32" | "f32",
  wordOrder: "big" | "little",
): number {
  const words = type === "u16" || type === "i16" ? 1 : 2;
  if (!Number.isSafeInteger(at) || at < 0 || at + words > regs.length) {
    throw new ModbusError(`${type} at register ${at} needs ${words}, only ${regs.length} read`);
  }
  const first = regs[at]!;
  if (type === "u16") return first;
  if (type === "i16") return (first << 16) >> 16;
  const second = regs[at + 1]!;
  const [high, low] = wordOrder === "big" ? [first, second] : [second, first];
  if (type === "u32") return high * HIGH_WORD + low;
  const view = new DataView(new ArrayBuffer(4));
  view.setUint16(0, high);
  view.setUint16(2, low);
  return type === "i32" ? view.getInt32(0) : view.getFloat32(0);
}

/** One register range a device profile wants read. */
export interface WantedRegisters {
  readonly slave: number;
  readonly fn: ReadFunction;
  readonly address: number;
  readonly words: number;
}

/** One read request of the plan. */
export interface PlannedRead {
  readonly slave: number;
  readonly fn: ReadFunction;
  readonly address: number;
  readonly count: number;
}

/**
 * The fewest read requests that cover `wanted`. Rules:
 * - only ranges of one slave and one function share a request;
 * - a range is never split: a 32-bit value read in two requests could tear;
 * - ranges that overlap, touch, or leave a gap of at most `maxGap` registers (default 0)
 *   merge, as long as the request stays within 125 registers [MB-AP 6.3];
 * - greedy, left to right by address: each request takes ranges until the next would
 *   break a rule. For one slave and function this is the fewest requests, because every
 *   request it closes reaches at least as far as any other plan's could;
 * - output sorted by slave, function, address; duplicates collapse.
 * Throws `ModbusError` for a range no request could read.
 */
export function planReads(
  wanted: readonly WantedRegisters[],
  maxGap = DEFAULT_MAX_GAP,
): PlannedRead[] {
  if (!Number.isSafeInteger(maxGap) || maxGap < 0) {
    throw new ModbusError(`maxGap must be a whole number ≥ 0, got ${maxGap}`);
  }
  for (const w of wanted) {
    checkSlave(w.slave);
    checkFunction(w.fn);
    checkRange(w.address, w.words);
  }
  const sorted = [...wanted].sort(
    (a, b) => a.slave - b.slave || a.fn - b.fn || a.address - b.address || b.words - a.words,
  );
  const plan: PlannedRead[] = [];
  let current: { slave: number; fn: ReadFunction; address: number; end: number } | undefined;
  for (const w of sorted) {
    const end = w.address + w.words;
    if (
      current !== undefined &&
      current.slave === w.slave &&
      current.fn === w.fn &&
      w.address - current.end <= maxGap &&
      Math.max(current.end, end) - current.address <= MAX_READ_COUNT
    ) {
      current.end = Math.max(current.end, end);
      continue;
    }
    if (current !== undefined) plan.push(toRead(current));
    current = { slave: w.slave, fn: w.fn, address: w.address, end };
  }
  if (current !== undefined) plan.push(toRead(current));
  return plan;
}

/** A normal read response ADU, as a slave would send it (for simulators and tests). */
export function encodeReadResponse(
  slave: number,
  fn: ReadFunction,
  registers: Uint16Array,
): Buffer {
  checkSlave(slave);
  checkFunction(fn);
  if (registers.length < 1 || registers.length > MAX_READ_COUNT) {
    throw new ModbusError(
      `a response carries 1..${MAX_READ_COUNT} registers, got ${registers.length}`,
    );
  }
  const frame = Buffer.alloc(expectedResponseLength(fn, registers.length));
  frame[0] = slave;
  frame[1] = fn;
  frame[2] = BYTES_PER_REGISTER * registers.length;
  for (const [i, r] of registers.entries()) frame.writeUInt16BE(r, 3 + BYTES_PER_REGISTER * i);
  return withCrc(frame);
}

/** An exception response ADU: `slave fn|0x80 code crc_lo crc_hi` [MB-AP 7]. */
export function encodeException(slave: number, fn: ReadFunction, code: number): Buffer {
  checkSlave(slave);
  checkFunction(fn);
  if (!Number.isInteger(code) || code < 1 || code > 0xff) {
    throw new ModbusError(`exception code must be 1..255, got ${code}`);
  }
  const frame = Buffer.alloc(EXCEPTION_LENGTH);
  frame[0] = slave;
  frame[1] = fn | EXCEPTION_FLAG;
  frame[2] = code;
  return withCrc(frame);
}

/** Writes the CRC of all but the last two bytes into them, low byte first [MB-SL 2.5.1.2]. */
function withCrc(frame: Buffer): Buffer {
  const crc = crc16Modbus(frame.subarray(0, frame.length - CRC_LENGTH));
  frame.writeUInt16LE(crc, frame.length - CRC_LENGTH);
  return frame;
}

function toRead(r: { slave: number; fn: ReadFunction; address: number; end: number }): PlannedRead {
  return { slave: r.slave, fn: r.fn, address: r.address, count: r.end - r.address };
}

function checkSlave(slave: number): void {
  if (!Number.isInteger(slave) || slave < MIN_SLAVE || slave > MAX_SLAVE) {
    throw new ModbusError(`slave address must be ${MIN_SLAVE}..${MAX_SLAVE}, got ${slave}`);
  }
}

function checkFunction(fn: number): void {
  if (fn !== READ_HOLDING_REGISTERS && fn !== READ_INPUT_REGISTERS) {
    throw new ModbusError(`function must be 3 or 4, got ${fn}`);
  }
}

function checkRange(address: number, count: number): void {
  if (!Number.isInteger(address) || address < 0 || address >= ADDRESS_SPACE) {
    throw new ModbusError(`register address must be 0..65535, got ${address}`);
  }
  if (!Number.isInteger(count) || count < 1 || count > MAX_READ_COUNT) {
    throw new ModbusError(`register count must be 1..${MAX_READ_COUNT}, got ${count}`);
  }
  if (address + count > ADDRESS_SPACE) {
    throw new ModbusError(`registers ${address}..${address + count - 1} run past 65535`);
  }
}

function fail(
  reason: "bad_crc" | "wrong_slave" | "wrong_function" | "too_short" | "wrong_length",
  detail: string,
): AnswerFailure {
  return { ok: false, reason, detail };
}

function hex4(n: number): string {
  return `0x${n.toString(16).toUpperCase().padStart(4, "0")}`;
}
