import { Buffer } from "node:buffer";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { LeafgateError } from "../../src/core/errors.js";
import {
  crc16Modbus,
  encodeException,
  encodeReadRequest,
  encodeReadResponse,
  expectedResponseLength,
  ModbusError,
  type PlannedRead,
  parseReadResponse,
  planReads,
  type ReadFunction,
  registersToValue,
  type WantedRegisters,
} from "../../src/serial/modbus.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");
const toHex = (b: Uint8Array): string =>
  Buffer.from(b)
    .toString("hex")
    .toUpperCase()
    .replace(/(..)(?!$)/g, "$1 ");

function expectModbusError(fn: () => unknown): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(ModbusError);
  expect(caught).toBeInstanceOf(LeafgateError);
  expect((caught as LeafgateError).code).toBe("LG_ERR_MODBUS_ARGUMENT");
}

/** Bitwise CRC-16/MODBUS straight from MB-SL 6.2.2, to check the table-driven one. */
function crcByTheBook(bytes: Uint8Array): number {
  let crc = 0xffff;
  for (const b of bytes) {
    crc ^= b;
    for (let i = 0; i < 8; i++) crc = crc & 1 ? (crc >>> 1) ^ 0xa001 : crc >>> 1;
  }
  return crc;
}

describe("crc16Modbus", () => {
  it("matches the CRC-16/MODBUS check value", () => {
    expect(crc16Modbus(Buffer.from("123456789", "ascii"))).toBe(0x4b37);
  });

  it("is the initial value for no bytes", () => {
    expect(crc16Modbus(new Uint8Array(0))).toBe(0xffff);
  });

  it.each([
    // Published frames: the last two bytes are the CRC, low byte first.
    "01 03 00 6B 00 03 74 17",
    "01 03 00 00 00 01 84 0A",
    "01 04 00 00 00 01 31 CA",
    "11 03 00 6B 00 03 76 87",
    "11 03 06 AE 41 56 52 43 40 49 AD",
    "01 83 02 C0 F1",
  ])("%s", (frame) => {
    const bytes = hex(frame);
    const crc = crc16Modbus(bytes.subarray(0, -2));
    expect(crc).toBe(bytes.readUInt16LE(bytes.length - 2));
    // A frame followed by its own CRC (low byte first) sums to zero.
    expect(crc16Modbus(bytes)).toBe(0);
  });

  it("equals the bitwise algorithm on random bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), (bytes) => {
        expect(crc16Modbus(bytes)).toBe(crcByTheBook(bytes));
      }),
    );
  });
});

describe("encodeReadRequest", () => {
  it.each([
    [1, 3, 0x006b, 3, "01 03 00 6B 00 03 74 17"],
    [1, 3, 0, 1, "01 03 00 00 00 01 84 0A"],
    [1, 4, 0, 1, "01 04 00 00 00 01 31 CA"],
    [17, 3, 0x006b, 3, "11 03 00 6B 00 03 76 87"],
  ] as const)("slave %i fn %i address %i count %i → %s", (slave, fn, address, count, want) => {
    expect(toHex(encodeReadRequest(slave, fn, address, count))).toBe(want);
  });

  it("accepts the range limits", () => {
    expect(encodeReadRequest(247, 4, 0xffff, 1)).toHaveLength(8);
    expect(encodeReadRequest(1, 3, 0x10000 - 125, 125)).toHaveLength(8);
  });

  it.each([
    ["slave 0 (broadcast)", 0, 3, 0, 1],
    ["slave 248", 248, 3, 0, 1],
    ["fractional slave", 1.5, 3, 0, 1],
    ["function 5", 1, 5, 0, 1],
    ["negative address", 1, 3, -1, 1],
    ["address 65536", 1, 3, 0x10000, 1],
    ["count 0", 1, 3, 0, 0],
    ["count 126", 1, 3, 0, 126],
    ["past the address space", 1, 3, 0xffff, 2],
  ])("refuses %s", (_name, slave, fn, address, count) => {
    expectModbusError(() => encodeReadRequest(slave, fn as ReadFunction, address, count));
  });
});

describe("expectedResponseLength", () => {
  it("is 5 + 2 × count", () => {
    expect(expectedResponseLength(3, 1)).toBe(7);
    expect(expectedResponseLength(4, 3)).toBe(11);
    expect(expectedResponseLength(3, 125)).toBe(255);
  });
});

describe("parseReadResponse", () => {
  // Slave 17 answers a read of 3 holding registers from 0x006B.
  const GOOD = hex("11 03 06 AE 41 56 52 43 40 49 AD");
  const EXPECT = { slave: 17, fn: 3, count: 3 } as const;

  it("reads the registers of a good response", () => {
    const r = parseReadResponse(GOOD, EXPECT);
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(r.slave).toBe(17);
      expect(r.fn).toBe(3);
      expect([...r.registers]).toEqual([0xae41, 0x5652, 0x4340]);
    }
  });

  it("reads an exception response", () => {
    expect(parseReadResponse(hex("01 83 02 C0 F1"), { slave: 1, fn: 3, count: 1 })).toEqual({
      ok: false,
      reason: "exception",
      exceptionCode: 2,
      detail: "exception 2 (illegal data address)",
    });
    const busy = encodeException(9, 4, 6);
    expect(toHex(busy).slice(0, 8)).toBe("09 84 06");
    expect(parseReadResponse(busy, { slave: 9, fn: 4, count: 2 })).toMatchObject({
      ok: false,
      reason: "exception",
      exceptionCode: 6,
    });
  });

  /** A frame with a correct CRC appended, to reach the checks after it. */
  const sealed = (s: string): Buffer => {
    const body = hex(s);
    const out = Buffer.alloc(body.length + 2);
    body.copy(out);
    out.writeUInt16LE(crc16Modbus(body), body.length);
    return out;
  };

  it.each([
    ["empty", "too_short", Buffer.alloc(0)],
    ["four bytes", "too_short", sealed("11 03")],
    ["flipped data bit", "bad_crc", Buffer.from(GOOD).fill(0xaf, 3, 4)],
    ["CRC bytes swapped", "bad_crc", hex("11 03 06 AE 41 56 52 43 40 AD 49")],
    ["truncated", "bad_crc", GOOD.subarray(0, 9)],
    ["trailing byte", "bad_crc", Buffer.concat([GOOD, hex("55")])],
    // CRC(frame + its CRC) is 0 and a zero byte keeps it 0: the CRC cannot see this one.
    ["trailing zero byte", "wrong_length", Buffer.concat([GOOD, hex("00")])],
    ["another slave", "wrong_slave", sealed("12 03 06 AE 41 56 52 43 40")],
    ["exception from another slave", "wrong_slave", encodeException(18, 3, 2)],
    ["another function", "wrong_function", sealed("11 04 06 AE 41 56 52 43 40")],
    ["exception to another function", "wrong_function", encodeException(17, 4, 2)],
    ["byte count of 2 registers", "wrong_length", sealed("11 03 04 AE 41 56 52")],
    ["byte count right, data short", "wrong_length", sealed("11 03 06 AE 41 56 52")],
    ["byte count right, data long", "wrong_length", sealed("11 03 06 AE 41 56 52 43 40 00 00")],
    ["odd byte count", "wrong_length", sealed("11 03 05 AE 41 56 52 43")],
    ["exception with extra bytes", "wrong_length", sealed("11 83 02 00")],
  ] as const)("%s → %s", (_name, reason, frame) => {
    const r = parseReadResponse(frame, EXPECT);
    expect(r).toMatchObject({ ok: false, reason });
    if (!r.ok) expect(r.detail.length).toBeGreaterThan(0);
  });

  it("round-trips encodeReadResponse for any registers", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 247 }),
        fc.constantFrom<ReadFunction>(3, 4),
        fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 1, maxLength: 125 }),
        (slave, fn, regs) => {
          const frame = encodeReadResponse(slave, fn, Uint16Array.from(regs));
          expect(frame).toHaveLength(expectedResponseLength(fn, regs.length));
          const r = parseReadResponse(frame, { slave, fn, count: regs.length });
          expect(r.ok).toBe(true);
          if (r.ok) {
            expect(r.slave).toBe(slave);
            expect(r.fn).toBe(fn);
            expect([...r.registers]).toEqual(regs);
          }
        },
      ),
    );
  });

  it("detects every single-bit error", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 1, maxLength: 20 }),
        fc.nat(),
        fc.nat(7),
        (regs, at, bit) => {
          const frame = encodeReadResponse(1, 3, Uint16Array.from(regs));
          frame[at % frame.length]! ^= 1 << bit;
          expect(parseReadResponse(frame, { slave: 1, fn: 3, count: regs.length })).toMatchObject({
            ok: false,
            reason: "bad_crc",
          });
        },
      ),
    );
  });

  it("never throws on random frames", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 260 }),
        fc.integer({ min: 1, max: 125 }),
        (bytes, count) => {
          const r = parseReadResponse(bytes, { slave: 1, fn: 3, count });
          expect(typeof r.ok).toBe("boolean");
        },
      ),
    );
  });
});

describe("encodeReadResponse and encodeException", () => {
  it("encode known frames", () => {
    expect(toHex(encodeReadResponse(17, 3, Uint16Array.of(0xae41, 0x5652, 0x4340)))).toBe(
      "11 03 06 AE 41 56 52 43 40 49 AD",
    );
    expect(toHex(encodeException(1, 3, 2))).toBe("01 83 02 C0 F1");
  });

  it("refuse what no slave could send", () => {
    expectModbusError(() => encodeReadResponse(0, 3, Uint16Array.of(1)));
    expectModbusError(() => encodeReadResponse(1, 3, new Uint16Array(0)));
    expectModbusError(() => encodeReadResponse(1, 3, new Uint16Array(126)));
    expectModbusError(() => encodeReadResponse(1, 6 as ReadFunction, Uint16Array.of(1)));
    expectModbusError(() => encodeException(1, 3, 0));
    expectModbusError(() => encodeException(1, 3, 256));
  });
});

describe("registersToValue", () => {
  /** 230.5 as IEEE 754 binary32 is 0x43668000. */
  const VOLTS = { high: 0x4366, low: 0x8000 };

  it("reads f32 in both word orders", () => {
    expect(registersToValue(Uint16Array.of(VOLTS.high, VOLTS.low), 0, "f32", "big")).toBe(230.5);
    expect(registersToValue(Uint16Array.of(VOLTS.low, VOLTS.high), 0, "f32", "little")).toBe(230.5);
    expect(registersToValue(Uint16Array.of(0, VOLTS.high, VOLTS.low), 1, "f32", "big")).toBe(230.5);
    // The wrong order reads something else entirely.
    expect(registersToValue(Uint16Array.of(VOLTS.high, VOLTS.low), 0, "f32", "little")).not.toBe(
      230.5,
    );
  });

  it("reads f32 of a frame parsed off the wire", () => {
    const frame = encodeReadResponse(1, 4, Uint16Array.of(0x4366, 0x8000));
    expect(toHex(frame).slice(0, 20)).toBe("01 04 04 43 66 80 00");
    const r = parseReadResponse(frame, { slave: 1, fn: 4, count: 2 });
    expect(r.ok && registersToValue(r.registers, 0, "f32", "big")).toBe(230.5);
  });

  it.each([
    ["u16", [0xfffe], 0, "big", 0xfffe],
    ["i16", [0xfffe], 0, "big", -2],
    ["i16", [0x7fff], 0, "little", 0x7fff],
    ["u32", [0x1234, 0x5678], 0, "big", 0x12345678],
    ["u32", [0x5678, 0x1234], 0, "little", 0x12345678],
    ["u32", [0xffff, 0xffff], 0, "big", 0xffffffff],
    ["i32", [0xffff, 0xfffe], 0, "big", -2],
    ["i32", [0xfffe, 0xffff], 0, "little", -2],
    ["i32", [0x8000, 0x0000], 0, "big", -0x80000000],
    ["f32", [0xc2f6, 0xe979], 0, "big", Math.fround(-123.456)],
    ["f32", [0x0000, 0xbf80], 0, "little", -1],
  ] as const)("%s %j at %i, %s → %d", (type, regs, at, order, want) => {
    expect(registersToValue(Uint16Array.from(regs), at, type, order)).toBe(want);
  });

  it("refuses to read past the registers", () => {
    expectModbusError(() => registersToValue(Uint16Array.of(1), 0, "u32", "big"));
    expectModbusError(() => registersToValue(Uint16Array.of(1, 2), 1, "f32", "big"));
    expectModbusError(() => registersToValue(Uint16Array.of(1), 1, "u16", "big"));
    expectModbusError(() => registersToValue(Uint16Array.of(1), -1, "u16", "big"));
  });

  it("round-trips 32-bit values in both word orders", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -0x80000000, max: 0x7fffffff }),
        fc.constantFrom("big", "little" as const),
        (n, order) => {
          const view = new DataView(new ArrayBuffer(4));
          view.setInt32(0, n);
          const [high, low] = [view.getUint16(0), view.getUint16(2)];
          const regs = order === "big" ? Uint16Array.of(high, low) : Uint16Array.of(low, high);
          expect(registersToValue(regs, 0, "i32", order)).toBe(n);
          expect(registersToValue(regs, 0, "u32", order)).toBe(n >>> 0);
          expect(Object.is(registersToValue(regs, 0, "f32", order), view.getFloat32(0))).toBe(true);
        },
      ),
    );
  });
});

describe("planReads", () => {
  const w = (address: number, words: number, slave = 1, fn: ReadFunction = 3): WantedRegisters => ({
    slave,
    fn,
    address,
    words,
  });
  const r = (address: number, count: number, slave = 1, fn: ReadFunction = 3): PlannedRead => ({
    slave,
    fn,
    address,
    count,
  });

  it.each<[string, WantedRegisters[], number | undefined, PlannedRead[]]>([
    ["nothing", [], undefined, []],
    ["one range", [w(100, 2)], undefined, [r(100, 2)]],
    ["adjacent ranges merge", [w(0, 2), w(2, 2), w(4, 1)], undefined, [r(0, 5)]],
    ["order does not matter", [w(4, 1), w(0, 2), w(2, 2)], undefined, [r(0, 5)]],
    ["overlaps merge", [w(0, 4), w(2, 4), w(1, 1)], undefined, [r(0, 6)]],
    ["duplicates collapse", [w(10, 2), w(10, 2)], undefined, [r(10, 2)]],
    ["a gap splits by default", [w(0, 2), w(3, 2)], undefined, [r(0, 2), r(3, 2)]],
    ["a gap within maxGap merges", [w(0, 2), w(5, 2)], 3, [r(0, 7)]],
    ["a gap beyond maxGap splits", [w(0, 2), w(6, 2)], 3, [r(0, 2), r(6, 2)]],
    ["exactly 125 merge", [w(0, 100), w(100, 25)], undefined, [r(0, 125)]],
    ["126 split", [w(0, 100), w(100, 26)], undefined, [r(0, 100), r(100, 26)]],
    ["a range is never split", [w(0, 124), w(124, 2)], undefined, [r(0, 124), r(124, 2)]],
    [
      "a long run becomes 125-register requests",
      Array.from({ length: 300 }, (_, i) => w(i, 1)),
      undefined,
      [r(0, 125), r(125, 125), r(250, 50)],
    ],
    [
      "different slaves never merge",
      [w(0, 2, 2), w(2, 2, 1), w(0, 2, 1)],
      undefined,
      [r(0, 4, 1), r(0, 2, 2)],
    ],
    [
      "different functions never merge",
      [w(0, 2, 1, 4), w(2, 2, 1, 3), w(0, 2, 1, 3)],
      100,
      [r(0, 4, 1, 3), r(0, 2, 1, 4)],
    ],
    [
      "a meter's map",
      [w(0x0000, 2), w(0x0006, 2), w(0x000c, 2), w(0x0046, 2), w(0x0048, 2), w(0x0156, 2)],
      6,
      [r(0x0000, 14), r(0x0046, 4), r(0x0156, 2)],
    ],
  ])("%s", (_name, wanted, maxGap, want) => {
    expect(planReads(wanted, maxGap)).toEqual(want);
  });

  it("refuses ranges no request could read", () => {
    expectModbusError(() => planReads([w(0, 126)]));
    expectModbusError(() => planReads([w(0, 0)]));
    expectModbusError(() => planReads([w(0xffff, 2)]));
    expectModbusError(() => planReads([w(0, 1, 0)]));
    expectModbusError(() => planReads([w(0, 1)], -1));
    expectModbusError(() => planReads([w(0, 1)], 1.5));
  });

  const wantedArb = fc.array(
    fc.record({
      slave: fc.integer({ min: 1, max: 3 }),
      fn: fc.constantFrom<ReadFunction>(3, 4),
      address: fc.integer({ min: 0, max: 400 }),
      words: fc.integer({ min: 1, max: 125 }),
    }),
    { maxLength: 12 },
  );

  it("covers every wanted range inside one valid request", () => {
    fc.assert(
      fc.property(wantedArb, fc.integer({ min: 0, max: 20 }), (wanted, maxGap) => {
        const plan = planReads(wanted, maxGap);
        for (const p of plan) {
          expect(p.count).toBeGreaterThanOrEqual(1);
          expect(p.count).toBeLessThanOrEqual(125);
          // Every request is encodable.
          expect(encodeReadRequest(p.slave, p.fn, p.address, p.count)).toHaveLength(8);
        }
        for (const x of wanted) {
          const home = plan.filter(
            (p) =>
              p.slave === x.slave &&
              p.fn === x.fn &&
              p.address <= x.address &&
              x.address + x.words <= p.address + p.count,
          );
          expect(home.length).toBeGreaterThanOrEqual(1);
        }
      }),
    );
  });

  /**
   * The fewest requests, by trying every way to group the ranges of one slave and function
   * (a group is readable when the union of its ranges spans ≤ 125 and has no hole wider
   * than maxGap).
   */
  function fewestRequests(
    ranges: readonly { address: number; words: number }[],
    maxGap: number,
  ): number {
    const readable = (group: readonly { address: number; words: number }[]): boolean => {
      const sorted = [...group].sort((a, b) => a.address - b.address);
      let end = sorted[0]!.address;
      for (const g of sorted) {
        if (g.address - end > maxGap) return false;
        end = Math.max(end, g.address + g.words);
      }
      return end - sorted[0]!.address <= 125;
    };
    let best = ranges.length;
    const groups: { address: number; words: number }[][] = [];
    const place = (i: number): void => {
      if (groups.length >= best) return;
      if (i === ranges.length) {
        // Only whole groups are judged: a later range can fill an earlier group's hole.
        if (groups.every(readable)) best = groups.length;
        return;
      }
      const x = ranges[i]!;
      for (const g of groups) {
        g.push(x);
        place(i + 1);
        g.pop();
      }
      groups.push([x]);
      place(i + 1);
      groups.pop();
    };
    place(0);
    return best;
  }

  it("makes no more requests than the best grouping", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            address: fc.integer({ min: 0, max: 300 }),
            words: fc.integer({ min: 1, max: 125 }),
          }),
          { minLength: 1, maxLength: 7 },
        ),
        fc.integer({ min: 0, max: 30 }),
        (ranges, maxGap) => {
          const plan = planReads(
            ranges.map((x) => ({ slave: 1, fn: 3, ...x })),
            maxGap,
          );
          expect(plan.length).toBe(fewestRequests(ranges, maxGap));
        },
      ),
      { numRuns: 300 },
    );
  });
});
