// Serial framings: every framing fed whole, one byte at a time and in random chunks gives
// the same frames and bad-byte reports; garbage before, between and inside frames is
// counted with its reason and the next good frame survives; PMS5003 frames built here with
// real checksums; fast-check properties for header resync; checksum test vectors.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type BadFrameReason,
  checksum,
  createFramer,
  type FrameSink,
  type FramingSpec,
  FramingSpecError,
  type HeaderFramingSpec,
  LINE_FRAMING_DEFAULTS,
} from "../../src/serial/framing.js";

// ---------------------------------------------------------------------------------------
// Helpers

/** Events as strings, so a failing comparison shows a readable diff. */
const frame = (bytes: Uint8Array | readonly number[] | string): string =>
  `frame ${Buffer.from(bytes as Uint8Array).toString("hex")}`;
const bad = (reason: BadFrameReason, bytes: number): string => `bad ${reason} ${bytes}`;

function recorder(): { sink: FrameSink; events: string[] } {
  const events: string[] = [];
  return {
    events,
    sink: {
      frame: (b) => events.push(frame(b)),
      bad: (reason, n) => events.push(bad(reason, n)),
    },
  };
}

function run(spec: FramingSpec, chunks: readonly Uint8Array[], nowMs = 0): string[] {
  const { sink, events } = recorder();
  const framer = createFramer(spec, sink);
  for (const chunk of chunks) framer.push(chunk, nowMs);
  return events;
}

const bytewise = (bytes: Buffer): Buffer[] => [...bytes].map((b) => Buffer.from([b]));

/** `bytes` cut at `cuts` (sorted; repeats and 0/length give empty chunks, which are legal). */
function split(bytes: Buffer, cuts: readonly number[]): Buffer[] {
  const out: Buffer[] = [];
  let prev = 0;
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    out.push(bytes.subarray(prev, cut));
    prev = cut;
  }
  out.push(bytes.subarray(prev));
  return out;
}

const cutsFor = (length: number) =>
  fc.array(fc.integer({ min: 0, max: length }), { maxLength: Math.min(40, length + 1) });

const cat = (...parts: (Uint8Array | readonly number[] | string)[]): Buffer =>
  Buffer.concat(parts.map((p) => Buffer.from(p as Uint8Array)));

// ---------------------------------------------------------------------------------------
// Plantower PMS5003: 42 4D, length 28 (big-endian), 13 big-endian u16 data words, sum16
// big-endian over the 30 bytes before it. 32 bytes in all.

const PMS5003: HeaderFramingSpec = {
  type: "header",
  header: [0x42, 0x4d],
  lengthOffset: 2,
  lengthBytes: 2,
  endian: "big",
  lengthAdjust: 0,
  checksum: { type: "sum16", endian: "big" },
  maxLength: 32,
};
const PMS_FRAME_BYTES = 32;
const PMS_DATA_WORDS = 13;

function pms(words: readonly number[]): Buffer {
  expect(words).toHaveLength(PMS_DATA_WORDS);
  const b = Buffer.alloc(PMS_FRAME_BYTES);
  b.writeUInt16BE(0x424d, 0);
  b.writeUInt16BE(28, 2);
  words.forEach((w, i) => {
    b.writeUInt16BE(w, 4 + 2 * i);
  });
  b.writeUInt16BE(checksum("sum16", b.subarray(0, 30)), 30);
  return b;
}

// PM1.0/2.5/10 (CF=1), the same (atmospheric), particle counts per 0.1 l for >0.3…>10 µm,
// reserved. Chosen so no byte after the header is 0x42, making the resync counts exact.
const PMS_A = pms([12, 18, 21, 12, 18, 21, 2091, 612, 98, 10, 2, 0, 0x9700]);
const PMS_B = pms([5, 7, 9, 5, 7, 9, 1011, 290, 31, 4, 1, 0, 0x9700]);
const PMS_C = pms([35, 51, 60, 33, 48, 60, 6123, 1844, 310, 27, 6, 1, 0x9700]);
/** PMS_A with one data byte hit by noise: its checksum no longer matches. */
const PMS_A_CORRUPT = Buffer.from(PMS_A);
PMS_A_CORRUPT[9] = (PMS_A_CORRUPT[9]! ^ 0x10) & 0xff;
/** PMS_B with the low checksum byte hit by noise, turned into a header's first byte. */
const PMS_B_ENDING_0X42 = Buffer.from(PMS_B);
PMS_B_ENDING_0X42[31] = 0x42;

// A Modbus RTU read-holding-registers response: slave 1, function 3, 4 data bytes
// (registers 234 and 500), CRC-16/MODBUS stored low byte first.
const MODBUS_RESPONSE = Buffer.from("010304" + "00ea01f4" + "dbd0", "hex");
const MODBUS_LIKE: HeaderFramingSpec = {
  type: "header",
  header: [0x01, 0x03],
  lengthOffset: 2,
  lengthBytes: 1,
  endian: "big",
  lengthAdjust: 2, // the byte count covers the data; the CRC follows it
  checksum: { type: "crc16_modbus", endian: "little" },
  maxLength: 256,
};

// One start byte, a length that counts the whole frame (hence -2), an XOR checksum.
const XOR_FRAMED: HeaderFramingSpec = {
  type: "header",
  header: [0xaa],
  lengthOffset: 1,
  lengthBytes: 1,
  endian: "big",
  lengthAdjust: -2,
  checksum: { type: "xor8", endian: "big" },
  maxLength: 16,
};
const xorFrame = (data: readonly number[]): Buffer => {
  const body = Buffer.from([0xaa, data.length + 3, ...data]);
  return cat(body, [checksum("xor8", body)]);
};

const LINE: FramingSpec = { type: "line", ...LINE_FRAMING_DEFAULTS, maxLength: 16 };
const SLIP: FramingSpec = { type: "slip", maxLength: 4 };

// ---------------------------------------------------------------------------------------
// One table for every chunk-insensitive framing: the stream and the exact events it gives.

interface StreamCase {
  readonly name: string;
  readonly spec: FramingSpec;
  readonly stream: Buffer;
  readonly expected: readonly string[];
}

const CASES: readonly StreamCase[] = [
  {
    name: "line: CRLF trimmed, empty lines skipped, a too-long line dropped, tail pending",
    spec: LINE,
    stream: cat("temp=21.5\r\n", "\n", "\r\n", "x".repeat(40), "\n", "hum=40\n", "partial"),
    expected: [frame("temp=21.5"), bad("too_long", 40), frame("hum=40")],
  },
  {
    name: "line: maxLength counts after the CR is trimmed; a dropped line counts its CR",
    spec: LINE,
    stream: cat("0123456789abcdef\r\n", "0123456789abcdefg\n", "0123456789abcdefg\r\n", "ok\n"),
    expected: [frame("0123456789abcdef"), bad("too_long", 17), bad("too_long", 18), frame("ok")],
  },
  {
    name: "line: 10,000 bytes of noise without a newline is one too_long; the next line survives",
    spec: LINE,
    stream: cat(Buffer.alloc(10_000, 0x7f), "\nok\n"),
    expected: [bad("too_long", 10_000), frame("ok")],
  },
  {
    name: "line: multi-byte delimiter \\r\\n, lone \\r and \\n are content, trimCR off",
    spec: { type: "line", delimiter: "\r\n", maxLength: 8, trimCR: false },
    stream: cat("a\rb\r\n", "c\nd\r\n", "\r\n", "0123456789\r\n", "e\r\r\n"),
    expected: [frame("a\rb"), frame("c\nd"), bad("too_long", 10), frame("e\r")],
  },
  {
    name: "line: a self-overlapping delimiter is found at its first full match",
    spec: { type: "line", delimiter: "aab", maxLength: 8, trimCR: false },
    stream: cat("xaaab", "yaab", "aab"),
    expected: [frame("xa"), frame("y")],
  },
  {
    name: "line: a multi-byte UTF-8 delimiter",
    spec: { type: "line", delimiter: "§", maxLength: 8, trimCR: true },
    stream: cat("α§β§"),
    expected: [frame("α"), frame("β")],
  },
  {
    name: "fixed: consecutive frames, the remainder pending",
    spec: { type: "fixed", length: 4 },
    stream: Buffer.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
    expected: [frame([0, 1, 2, 3]), frame([4, 5, 6, 7])],
  },
  {
    name: "length_prefixed: u16 BE; implausible lengths skipped a byte at a time; empty payload consumed",
    spec: {
      type: "length_prefixed",
      lengthBytes: 2,
      endian: "big",
      includesPrefix: false,
      maxLength: 8,
    },
    stream: cat(
      [0xff, 0xff, 0xff], // ffff, ffff, ff00: all over 8
      [0x00, 0x03, 0x61, 0x62, 0x63],
      [0x09], // 0x0900
      [0x00, 0x02, 0x68, 0x69],
      [0x00, 0x00],
      [0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8],
      [0x00, 0x02, 0x78],
    ),
    expected: [
      bad("too_long", 1),
      bad("too_long", 1),
      bad("too_long", 1),
      frame("abc"),
      bad("too_long", 1),
      frame("hi"),
      frame([1, 2, 3, 4, 5, 6, 7, 8]),
    ],
  },
  {
    name: "length_prefixed: u8 including the prefix; a length below the prefix is truncated",
    spec: {
      type: "length_prefixed",
      lengthBytes: 1,
      endian: "big",
      includesPrefix: true,
      maxLength: 4,
    },
    stream: cat([0x04, 0x61, 0x62, 0x63], [0x00], [0x01], [0x06], [0x03, 0x78, 0x79]),
    expected: [frame("abc"), bad("truncated", 1), bad("too_long", 1), frame("xy")],
  },
  {
    name: "length_prefixed: u32 little-endian",
    spec: {
      type: "length_prefixed",
      lengthBytes: 4,
      endian: "little",
      includesPrefix: false,
      maxLength: 1000,
    },
    stream: cat([0x03, 0, 0, 0, 0x61, 0x62, 0x63], [0x01, 0, 0, 0]),
    expected: [frame("abc")],
  },
  {
    name: "header PMS5003: garbage before/between, a bad checksum then a good frame, a frame cut short",
    spec: PMS5003,
    stream: cat(
      [0x00, 0x13, 0x42, 0x00], // a lone 0x42 is not a header
      PMS_A,
      [0xff],
      PMS_B,
      PMS_A_CORRUPT,
      PMS_C,
      // The sensor's frame lost its last 22 bytes: the framer waits for 32 bytes, which
      // run into the next frame, fails the checksum, and finds that frame inside.
      PMS_B.subarray(0, 10),
      PMS_A,
      [0x42], // a partial header stays pending
    ),
    expected: [
      bad("garbage", 4),
      frame(PMS_A),
      bad("garbage", 1),
      frame(PMS_B),
      bad("bad_checksum", 32),
      frame(PMS_C),
      bad("bad_checksum", 10),
      frame(PMS_A),
    ],
  },
  {
    name: "header PMS5003: impossible lengths are too_long / truncated, resync inside them",
    spec: PMS5003,
    stream: cat(
      [0x42, 0x4d, 0xff, 0xff],
      PMS_A,
      [0x42, 0x4d, 0x00, 0x00], // 4 bytes: shorter than header, length and checksum
      PMS_B,
      [0x42, 0x4d], // its "length" is the next frame's header: 0x424d
      PMS_C,
      [0x42, 0x42], // 0x42 then a header
      PMS_A,
    ),
    expected: [
      bad("too_long", 4),
      frame(PMS_A),
      bad("truncated", 4),
      frame(PMS_B),
      bad("too_long", 2),
      frame(PMS_C),
      bad("garbage", 2),
      frame(PMS_A),
    ],
  },
  {
    // Whether the 0x42 starts a header is only known a byte later; judging the resync by
    // the failed frame's own bytes keeps the counts the same however the stream is cut.
    name: "header: a bad frame ending in 0x42 counts up to it; the 0x42 then proves garbage",
    spec: PMS5003,
    stream: cat(PMS_B_ENDING_0X42, [0x00], PMS_C),
    expected: [bad("bad_checksum", 31), bad("garbage", 2), frame(PMS_C)],
  },
  {
    name: "header: a garbage run is reported every 1024 bytes and when the header is found",
    spec: PMS5003,
    stream: cat(Buffer.alloc(2100, 0x00), PMS_A, Buffer.alloc(1030, 0x4d)),
    expected: [
      bad("garbage", 1024),
      bad("garbage", 1024),
      bad("garbage", 52),
      frame(PMS_A),
      bad("garbage", 1024),
    ],
  },
  {
    name: "header: Modbus-like frames, CRC-16 little-endian; swapped CRC bytes are bad_checksum",
    spec: MODBUS_LIKE,
    stream: cat(
      [0x07],
      MODBUS_RESPONSE,
      MODBUS_RESPONSE.subarray(0, 7),
      [0xd0, 0xdb],
      MODBUS_RESPONSE,
    ),
    expected: [
      bad("garbage", 1),
      frame(MODBUS_RESPONSE),
      bad("bad_checksum", 9),
      frame(MODBUS_RESPONSE),
    ],
  },
  {
    name: "header: one-byte header, length counting the whole frame, xor8",
    spec: XOR_FRAMED,
    stream: cat([0x00], xorFrame([1, 2, 3]), [0xaa, 0x01], xorFrame([]), xorFrame([9])),
    expected: [
      bad("garbage", 1),
      frame(xorFrame([1, 2, 3])),
      bad("truncated", 2),
      frame(xorFrame([])),
      frame(xorFrame([9])),
    ],
  },
  {
    name: "header: no checksum",
    spec: { ...XOR_FRAMED, header: [0x7e], lengthAdjust: 0, checksum: null },
    stream: cat([0x01, 0x02], [0x7e, 0x02, 0xab, 0xcd], [0x7e, 0x00], [0x7e, 0x01, 0x7e]),
    expected: [
      bad("garbage", 2),
      frame([0x7e, 0x02, 0xab, 0xcd]),
      frame([0x7e, 0x00]),
      frame([0x7e, 0x01, 0x7e]),
    ],
  },
  {
    name: "slip: garbage before the first END, escapes, empty frames, bad escapes, too long",
    spec: SLIP,
    stream: cat(
      [0x01, 0x02, 0xc0],
      [0x61, 0xdb, 0xdc, 0x62, 0xc0],
      [0xc0],
      [0x61, 0xdb, 0x00, 0x62, 0xc0], // ESC 00
      [0x63, 0xdb, 0xdd, 0xc0],
      [0x01, 0x02, 0x03, 0x04, 0x05, 0xc0],
      [0xdb, 0xdc, 0xdb, 0xdc, 0xdb, 0xdc, 0xdb, 0xdc, 0xc0], // 4 decoded bytes: fits
      [0x61, 0xdb, 0xc0], // ESC END
      [0x64, 0xc0],
      [0x65],
    ),
    expected: [
      bad("garbage", 2),
      frame([0x61, 0xc0, 0x62]),
      bad("bad_escape", 4),
      frame([0x63, 0xdb]),
      bad("too_long", 5),
      frame([0xc0, 0xc0, 0xc0, 0xc0]),
      bad("bad_escape", 2),
      frame([0x64]),
    ],
  },
];

describe.each(CASES)("$name", ({ spec, stream, expected }) => {
  it("fed whole", () => {
    expect(run(spec, [stream])).toEqual(expected);
  });

  it("fed one byte at a time", () => {
    expect(run(spec, bytewise(stream))).toEqual(expected);
  });

  it("fed in random chunks (fast-check)", () => {
    fc.assert(
      fc.property(cutsFor(stream.length), (cuts) => {
        expect(run(spec, split(stream, cuts))).toEqual(expected);
      }),
    );
  });
});

// ---------------------------------------------------------------------------------------

describe("idle framing", () => {
  const IDLE: FramingSpec = { type: "idle", gapMs: 20, maxLength: 4 };
  const BURSTS: readonly { readonly atMs: number; readonly bytes: Buffer }[] = [
    { atMs: 0, bytes: Buffer.from("ab") },
    { atMs: 5, bytes: Buffer.from("cd") }, // 5 ms after: same frame
    { atMs: 100, bytes: Buffer.from("ef") }, // closes "abcd" first
    { atMs: 130, bytes: Buffer.from("ghijk") }, // closes "ef"; 5 bytes > maxLength
    { atMs: 131, bytes: Buffer.from("l") },
    { atMs: 200, bytes: Buffer.from("mn") }, // closes the 6 dropped bytes
  ];
  const EXPECTED = [frame("abcd"), frame("ef"), bad("too_long", 6), frame("mn")];

  function feedBursts(cutBurst: (bytes: Buffer, i: number) => Buffer[]): string[] {
    const { sink, events } = recorder();
    const framer = createFramer(IDLE, sink);
    BURSTS.forEach(({ atMs, bytes }, i) => {
      for (const chunk of cutBurst(bytes, i)) framer.push(chunk, atMs);
    });
    framer.tick(219); // 19 ms after "mn": not yet
    events.push("tick 219");
    framer.tick(220); // exactly gapMs: closes
    events.push("tick 220");
    framer.tick(500);
    return events;
  }
  const WITH_TICKS = [...EXPECTED.slice(0, 3), "tick 219", EXPECTED[3], "tick 220"];

  it("closes a frame on tick or on a push after ≥ gapMs of silence (whole bursts)", () => {
    expect(feedBursts((b) => [b])).toEqual(WITH_TICKS);
  });

  it("gives the same frames one byte at a time", () => {
    expect(feedBursts(bytewise)).toEqual(WITH_TICKS);
  });

  it("gives the same frames however each burst is chunked (fast-check)", () => {
    fc.assert(
      fc.property(fc.tuple(...BURSTS.map(({ bytes }) => cutsFor(bytes.length))), (cutsPerBurst) => {
        expect(feedBursts((b, i) => split(b, cutsPerBurst[i]!))).toEqual(WITH_TICKS);
      }),
    );
  });

  it("an empty push after the gap closes the frame too; a clock going back is no silence", () => {
    const { sink, events } = recorder();
    const framer = createFramer(IDLE, sink);
    framer.push(Buffer.from("ab"), 1000);
    framer.push(Buffer.alloc(0), 990);
    framer.tick(500);
    expect(events).toEqual([]);
    framer.push(Buffer.alloc(0), 1020);
    expect(events).toEqual([frame("ab")]);
  });

  it("a frame of exactly maxLength bytes is a frame", () => {
    const { sink, events } = recorder();
    const framer = createFramer(IDLE, sink);
    framer.push(Buffer.from("wxyz"), 0);
    framer.tick(20);
    expect(events).toEqual([frame("wxyz")]);
  });
});

// ---------------------------------------------------------------------------------------

describe("header framing properties (fast-check)", () => {
  const word = fc.integer({ min: 0, max: 0xffff });
  const words = fc.array(word, { minLength: PMS_DATA_WORDS, maxLength: PMS_DATA_WORDS });
  /** Garbage that cannot hold a frame: it never contains the header's first byte. */
  const garbage = fc
    .uint8Array({ maxLength: 80 })
    .map((g) => Buffer.from(g.map((b) => (b === 0x42 ? 0x41 : b))));

  it("recovers every frame between random garbage, with exact garbage counts", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(garbage, words), { minLength: 1, maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        (items, rawCuts) => {
          const stream = cat(...items.flatMap(([g, w]) => [g, pms(w)]));
          const expected = items.flatMap(([g, w]) =>
            g.length > 0 ? [bad("garbage", g.length), frame(pms(w))] : [frame(pms(w))],
          );
          const cuts = rawCuts.map((c) => c % (stream.length + 1));
          expect(run(PMS5003, split(stream, cuts))).toEqual(expected);
        },
      ),
    );
  });

  it("with corrupted frames among them, keeps every good frame and counts each byte once", () => {
    // Data without 0x42, so a corrupted frame cannot hide a plausible header whose
    // checksum might match by chance; the corruption changes a data byte to another
    // non-0x42 value, which always breaks sum16.
    const cleanWord = word.filter((w) => w >> 8 !== 0x42 && (w & 0xff) !== 0x42);
    const cleanWords = fc.array(cleanWord, {
      minLength: PMS_DATA_WORDS,
      maxLength: PMS_DATA_WORDS,
    });
    const corruption = fc.record({
      at: fc.integer({ min: 4, max: 29 }),
      to: fc.integer({ min: 0, max: 0xff }).filter((b) => b !== 0x42),
    });
    const item = fc.record({
      garbage,
      words: cleanWords,
      corrupt: fc.option(corruption, { nil: undefined }),
    });
    fc.assert(
      fc.property(
        fc.array(item, { minLength: 1, maxLength: 8 }),
        cleanWords,
        fc.array(fc.nat(), { maxLength: 30 }),
        (items, lastWords, rawCuts) => {
          const good: Buffer[] = [];
          const parts: Buffer[] = [];
          for (const entry of items) {
            const f = pms(entry.words);
            parts.push(entry.garbage);
            if (entry.corrupt === undefined || f[entry.corrupt.at] === entry.corrupt.to) {
              good.push(f);
            } else {
              f[entry.corrupt.at] = entry.corrupt.to;
            }
            parts.push(f);
          }
          // Ends with a good frame, so no byte is left pending or unreported.
          good.push(pms(lastWords));
          parts.push(good.at(-1)!);
          const stream = cat(...parts);
          const cuts = rawCuts.map((c) => c % (stream.length + 1));

          const frames: Buffer[] = [];
          let badBytes = 0;
          const framer = createFramer(PMS5003, {
            frame: (b) => frames.push(b),
            bad: (reason, n) => {
              expect(["garbage", "bad_checksum", "too_long", "truncated"]).toContain(reason);
              badBytes += n;
            },
          });
          for (const chunk of split(stream, cuts)) framer.push(chunk, 0);
          expect(frames).toEqual(good);
          expect(badBytes + good.length * PMS_FRAME_BYTES).toBe(stream.length);
        },
      ),
    );
  });
});

// ---------------------------------------------------------------------------------------

describe("framer behaviour shared by all framings", () => {
  it("reset() drops partial state and counts nothing", () => {
    const partialThenWhole: [FramingSpec, Buffer, Buffer, string[]][] = [
      [LINE, Buffer.from("half a li"), Buffer.from("line\n"), [frame("line")]],
      [LINE, Buffer.alloc(40, 0x78), Buffer.from("line\n"), [frame("line")]],
      [{ type: "fixed", length: 3 }, Buffer.from([1]), Buffer.from([4, 5, 6]), [frame([4, 5, 6])]],
      [
        {
          type: "length_prefixed",
          lengthBytes: 1,
          endian: "big",
          includesPrefix: false,
          maxLength: 9,
        },
        Buffer.from([5, 1]),
        Buffer.from([1, 7]),
        [frame([7])],
      ],
      [PMS5003, PMS_A.subarray(0, 20), PMS_B, [frame(PMS_B)]],
      [PMS5003, Buffer.alloc(30, 0), PMS_B, [frame(PMS_B)]],
      // After a reset SLIP waits for an END again: bytes before it are garbage.
      [
        SLIP,
        Buffer.from([0xc0, 0x61, 0xdb]),
        Buffer.from([0x62, 0xc0, 0x63, 0xc0]),
        [bad("garbage", 1), frame([0x63])],
      ],
      [
        { type: "idle", gapMs: 10, maxLength: 4 },
        Buffer.from("abcdef"),
        Buffer.from("gh"),
        [frame("gh")],
      ],
    ];
    for (const [spec, partial, whole, expected] of partialThenWhole) {
      const { sink, events } = recorder();
      const framer = createFramer(spec, sink);
      framer.push(partial, 0);
      framer.reset();
      framer.push(whole, 0);
      framer.tick(1_000);
      expect(events, spec.type).toEqual(expected);
    }
  });

  it("tick() does nothing for framings without an inter-byte timeout", () => {
    const specs: FramingSpec[] = [
      LINE,
      { type: "fixed", length: 3 },
      {
        type: "length_prefixed",
        lengthBytes: 1,
        endian: "big",
        includesPrefix: false,
        maxLength: 9,
      },
      PMS5003,
      SLIP,
    ];
    for (const spec of specs) {
      const { sink, events } = recorder();
      const framer = createFramer(spec, sink);
      framer.push(Buffer.from([0xc0, 0x05, 0x42]), 0);
      const before = [...events];
      framer.tick(Number.MAX_SAFE_INTEGER);
      expect(events, spec.type).toEqual(before);
      expect(
        events.filter((e) => e.startsWith("frame")),
        spec.type,
      ).toEqual(spec.type === "fixed" ? [frame([0xc0, 0x05, 0x42])] : []);
    }
  });

  it("fixed framing cannot resync: one lost byte shifts every later frame until reset()", () => {
    const { sink, events } = recorder();
    const framer = createFramer({ type: "fixed", length: 2 }, sink);
    framer.push(Buffer.from([0xa1, 0xa2, /* lost: 0xb1 */ 0xb2, 0xc1, 0xc2]), 0);
    framer.reset();
    framer.push(Buffer.from([0xd1, 0xd2]), 0);
    expect(events).toEqual([frame([0xa1, 0xa2]), frame([0xb2, 0xc1]), frame([0xd1, 0xd2])]);
  });

  it("hands out frames the sink may keep: later bytes do not overwrite them", () => {
    const specs: FramingSpec[] = [
      LINE,
      { type: "fixed", length: 4 },
      {
        type: "length_prefixed",
        lengthBytes: 1,
        endian: "big",
        includesPrefix: false,
        maxLength: 9,
      },
      PMS5003,
      SLIP,
      { type: "idle", gapMs: 1, maxLength: 64 },
    ];
    const streams: Record<FramingSpec["type"], (n: number) => Buffer> = {
      line: (n) => Buffer.from(`l${n}\n`),
      fixed: (n) => Buffer.from([n, n, n, n]),
      length_prefixed: (n) => Buffer.from([2, n, n]),
      header: (n) => pms(Array.from({ length: PMS_DATA_WORDS }, () => n)),
      slip: (n) => Buffer.from([0xc0, n, 0xc0]),
      idle: (n) => Buffer.from([n, n]),
    };
    for (const spec of specs) {
      const kept: Buffer[] = [];
      const framer = createFramer(spec, { frame: (b) => kept.push(b), bad: () => {} });
      for (let n = 1; n <= 20; n++) framer.push(streams[spec.type](n), n * 10);
      framer.tick(1_000);
      expect(
        kept.map((b) => b.toString("hex")),
        spec.type,
      ).toEqual(
        Array.from({ length: 20 }, (_, i) => {
          const n = i + 1;
          return {
            line: Buffer.from(`l${n}`),
            fixed: streams.fixed(n),
            length_prefixed: Buffer.from([n, n]),
            header: streams.header(n),
            slip: Buffer.from([n]),
            idle: streams.idle(n),
          }[spec.type].toString("hex");
        }),
      );
    }
  });

  it("a 4,000-byte frame fed one byte at a time", () => {
    const data = Buffer.from(
      Array.from({ length: 4000 }, (_, i) => (i * 7) & 0xff).map((b) => (b === 0x7e ? 0 : b)),
    );
    const body = cat([0x7e, 0, 0], data);
    body.writeUInt16BE(data.length + 1, 1);
    const whole = cat(body, [checksum("sum8", body)]);
    const spec: HeaderFramingSpec = {
      type: "header",
      header: [0x7e],
      lengthOffset: 1,
      lengthBytes: 2,
      endian: "big",
      lengthAdjust: 0,
      checksum: { type: "sum8", endian: "big" },
      maxLength: 5000,
    };
    expect(run(spec, bytewise(cat([1, 2, 3], whole, whole)))).toEqual([
      bad("garbage", 3),
      frame(whole),
      frame(whole),
    ]);
  });
});

// ---------------------------------------------------------------------------------------

describe("createFramer rejects unusable specs at start-up", () => {
  const header = (over: Partial<HeaderFramingSpec>): FramingSpec => ({ ...PMS5003, ...over });
  const INVALID: [string, FramingSpec][] = [
    ["empty line delimiter", { type: "line", delimiter: "", maxLength: 10, trimCR: true }],
    ["line maxLength 0", { type: "line", delimiter: "\n", maxLength: 0, trimCR: true }],
    ["fixed length 0", { type: "fixed", length: 0 }],
    ["fixed length 1.5", { type: "fixed", length: 1.5 }],
    [
      "length_prefixed lengthBytes 3",
      {
        type: "length_prefixed",
        lengthBytes: 3 as 2,
        endian: "big",
        includesPrefix: false,
        maxLength: 10,
      },
    ],
    ["empty header", header({ header: [] })],
    ["header byte 256", header({ header: [0x42, 256] })],
    ["length field inside the header", header({ lengthOffset: 1 })],
    ["header lengthBytes 4", header({ lengthBytes: 4 as 2 })],
    ["header maxLength below its fixed parts", header({ maxLength: 5 })],
    ["fractional lengthAdjust", header({ lengthAdjust: 0.5 })],
    ["slip maxLength 0", { type: "slip", maxLength: 0 }],
    ["idle gapMs 0", { type: "idle", gapMs: 0, maxLength: 10 }],
    ["idle gapMs NaN", { type: "idle", gapMs: Number.NaN, maxLength: 10 }],
    ["unknown type", { type: "cobs" } as unknown as FramingSpec],
  ];

  it.each(INVALID)("%s", (_, spec) => {
    const make = () => createFramer(spec, recorder().sink);
    expect(make).toThrow(FramingSpecError);
    expect(make).toThrow(expect.objectContaining({ code: "LG_ERR_FRAMING_SPEC" }));
  });
});

// ---------------------------------------------------------------------------------------

describe("checksum", () => {
  const CHECK = Buffer.from("123456789");

  it.each([
    ["crc16_modbus", CHECK, 0x4b37], // CRC-16/MODBUS check value
    ["sum8", CHECK, 0xdd], // 0x31 + … + 0x39 = 477 = 0x1DD
    ["sum16", CHECK, 0x01dd],
    ["xor8", CHECK, 0x31],
    ["sum16", Buffer.alloc(300, 0xff), 0x2ad4], // 76,500 & 0xFFFF
    ["sum8", Buffer.alloc(300, 0xff), 0xd4],
    ["crc16_modbus", Buffer.from([0x01, 0x03, 0x00, 0x00, 0x00, 0x0a]), 0xcdc5], // sent C5 CD
    ["crc16_modbus", Buffer.alloc(0), 0xffff],
    ["sum16", Buffer.alloc(0), 0],
    ["xor8", Buffer.alloc(0), 0],
  ] as const)("%s of %o is %i", (type, bytes, expected) => {
    expect(checksum(type, bytes)).toBe(expected);
  });

  it("the PMS5003 frames built here carry their sum16 in the last two bytes", () => {
    expect(PMS_A.readUInt16BE(30)).toBe(checksum("sum16", PMS_A.subarray(0, 30)));
    expect(PMS_A.subarray(0, 4).toString("hex")).toBe("424d001c");
    for (const f of [PMS_A, PMS_B, PMS_C, PMS_A_CORRUPT]) expect(f.indexOf(0x42, 1)).toBe(-1);
  });

  it("the Modbus response carries its CRC low byte first", () => {
    expect(checksum("crc16_modbus", MODBUS_RESPONSE.subarray(0, 7))).toBe(
      MODBUS_RESPONSE.readUInt16LE(7),
    );
  });
});
