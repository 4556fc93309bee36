// The MQTT framer (src/mqtt/framer.ts) against packets made by mqtt-packet's generator, a
// generator we did not write: every packet type of 3.1.1 and 5.0, fed whole, byte by byte and
// in random chunks, must come out as the same raw packets, in order and byte-exact. Then the
// refusals: too large (known from the remaining length, before the body), a 5-byte remaining
// length, and first bytes whose type or flags the spec forbids.
import fc from "fast-check";
import mqtt from "mqtt-packet";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  type FrameError,
  lengthFits,
  PacketFramer,
  validFirstByte,
} from "../../src/mqtt/framer.js";

const MB = 1024 * 1024;

/** A framer that records what it delivers (the delivered buffers as given, not copies). */
function recorder(maxPacketBytes = MB) {
  const packets: Buffer[] = [];
  const errors: { error: FrameError; detail: string }[] = [];
  const framer = new PacketFramer(
    maxPacketBytes,
    (raw) => packets.push(raw),
    (error, detail) => errors.push({ error, detail }),
  );
  return { framer, packets, errors };
}

type FeedMode = "whole" | "byte by byte" | readonly number[];

/** Pushes `bytes` whole, one byte at a time, or cut at the given (sorted) offsets. */
function feed(framer: PacketFramer, bytes: Buffer, mode: FeedMode): void {
  if (mode === "whole") {
    framer.push(bytes);
  } else if (mode === "byte by byte") {
    for (let i = 0; i < bytes.length; i++) framer.push(bytes.subarray(i, i + 1));
  } else {
    let from = 0;
    for (const cut of [...mode, bytes.length]) {
      if (cut > from) framer.push(bytes.subarray(from, cut));
      from = Math.max(from, cut);
    }
  }
}

/** Deterministic, non-constant bytes (a constant would hide offset mistakes). */
function bytesOf(size: number, seed = 7): Buffer {
  const buf = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) buf[i] = (i * 31 + seed) & 0xff;
  return buf;
}

const v4 = (p: mqtt.Packet): Buffer => mqtt.generate(p, { protocolVersion: 4 });
const v5 = (p: mqtt.Packet): Buffer => mqtt.generate(p, { protocolVersion: 5 });

/** One packet of every MQTT 3.1.1 type, with remaining lengths of 0, 1, 2 and 3 bytes. */
const PACKETS_V4: readonly [string, Buffer][] = [
  [
    "CONNECT",
    v4({
      cmd: "connect",
      clientId: "c1",
      protocolVersion: 4,
      clean: true,
      keepalive: 30,
      username: "u",
      password: Buffer.from("p"),
      will: { topic: "w/t", payload: Buffer.from("gone"), qos: 1, retain: true },
    }),
  ],
  ["CONNACK", v4({ cmd: "connack", returnCode: 0, sessionPresent: true })],
  [
    "PUBLISH q0",
    v4({
      cmd: "publish",
      topic: "a/b",
      payload: Buffer.from("x"),
      qos: 0,
      dup: false,
      retain: true,
    }),
  ],
  [
    "PUBLISH q1 dup",
    v4({
      cmd: "publish",
      topic: "a/b",
      payload: bytesOf(200),
      qos: 1,
      messageId: 7,
      dup: true,
      retain: false,
    }),
  ],
  [
    "PUBLISH q2 20000 bytes",
    v4({
      cmd: "publish",
      topic: "big",
      payload: bytesOf(20_000),
      qos: 2,
      messageId: 0xffff,
      dup: false,
      retain: false,
    }),
  ],
  [
    "PUBLISH empty payload",
    v4({ cmd: "publish", topic: "e", payload: Buffer.alloc(0), qos: 0, dup: false, retain: false }),
  ],
  ["PUBACK", v4({ cmd: "puback", messageId: 1 })],
  ["PUBREC", v4({ cmd: "pubrec", messageId: 2 })],
  ["PUBREL", v4({ cmd: "pubrel", messageId: 3 })],
  ["PUBCOMP", v4({ cmd: "pubcomp", messageId: 4 })],
  [
    "SUBSCRIBE",
    v4({
      cmd: "subscribe",
      messageId: 5,
      subscriptions: [
        { topic: "a/+", qos: 1 },
        { topic: "#", qos: 2 },
      ],
    }),
  ],
  ["SUBACK", v4({ cmd: "suback", messageId: 5, granted: [1, 2, 0x80] })],
  ["UNSUBSCRIBE", v4({ cmd: "unsubscribe", messageId: 6, unsubscriptions: ["a/+", "#"] })],
  ["UNSUBACK", v4({ cmd: "unsuback", messageId: 6 } as mqtt.Packet)],
  ["PINGREQ", v4({ cmd: "pingreq" })],
  ["PINGRESP", v4({ cmd: "pingresp" })],
  ["DISCONNECT", v4({ cmd: "disconnect" })],
];

const USER = { a: ["1", "3"], b: "2" };

/** One packet of every MQTT 5 type, AUTH included, with properties where the type has them. */
const PACKETS_V5: readonly [string, Buffer][] = [
  [
    "CONNECT",
    v5({
      cmd: "connect",
      clientId: "c5",
      protocolVersion: 5,
      clean: false,
      keepalive: 60,
      properties: {
        sessionExpiryInterval: 3600,
        receiveMaximum: 10,
        maximumPacketSize: 100_000,
        topicAliasMaximum: 5,
        userProperties: USER,
      },
      will: {
        topic: "w/t",
        payload: Buffer.from("gone"),
        qos: 2,
        retain: false,
        properties: { willDelayInterval: 5, contentType: "text/plain" },
      },
    }),
  ],
  [
    "CONNACK",
    v5({
      cmd: "connack",
      reasonCode: 0,
      sessionPresent: false,
      properties: { assignedClientIdentifier: "x", topicAliasMaximum: 64, maximumPacketSize: MB },
    }),
  ],
  [
    "PUBLISH q1 properties",
    v5({
      cmd: "publish",
      topic: "a/b",
      payload: bytesOf(300),
      qos: 1,
      messageId: 9,
      dup: false,
      retain: false,
      properties: {
        payloadFormatIndicator: true,
        messageExpiryInterval: 60,
        contentType: "application/json",
        responseTopic: "r/1",
        correlationData: Buffer.from([0, 1, 2, 0xff]),
        topicAlias: 3,
        userProperties: USER,
      },
    }),
  ],
  [
    "PUBLISH q2 200000 bytes",
    v5({
      cmd: "publish",
      topic: "big",
      payload: bytesOf(200_000, 3),
      qos: 2,
      messageId: 10,
      dup: true,
      retain: true,
    }),
  ],
  ["PUBACK reason", v5({ cmd: "puback", messageId: 9, reasonCode: 0x10 })],
  ["PUBACK", v5({ cmd: "puback", messageId: 9, reasonCode: 0 })],
  ["PUBREC", v5({ cmd: "pubrec", messageId: 10, reasonCode: 0 })],
  ["PUBREL", v5({ cmd: "pubrel", messageId: 10, reasonCode: 0x92 })],
  [
    "PUBCOMP",
    v5({ cmd: "pubcomp", messageId: 10, reasonCode: 0, properties: { reasonString: "ok" } }),
  ],
  [
    "SUBSCRIBE",
    v5({
      cmd: "subscribe",
      messageId: 11,
      properties: { subscriptionIdentifier: 1234 },
      subscriptions: [
        { topic: "a/#", qos: 2, nl: true, rap: true, rh: 1 },
        { topic: "$share/g/b", qos: 0, nl: false, rap: false, rh: 0 },
      ],
    }),
  ],
  ["SUBACK", v5({ cmd: "suback", messageId: 11, granted: [2, 0x8f] })],
  ["UNSUBSCRIBE", v5({ cmd: "unsubscribe", messageId: 12, unsubscriptions: ["a/#"] })],
  ["UNSUBACK", v5({ cmd: "unsuback", messageId: 12, granted: [0, 0x11] })],
  ["PINGREQ", v5({ cmd: "pingreq" })],
  ["PINGRESP", v5({ cmd: "pingresp" })],
  [
    "DISCONNECT",
    v5({ cmd: "disconnect", reasonCode: 0x04, properties: { sessionExpiryInterval: 0 } }),
  ],
  ["AUTH", v5({ cmd: "auth", reasonCode: 0x18, properties: { authenticationMethod: "SCRAM" } })],
];

/** Fresh copies of every packet, so no test can be fooled by shared buffers. */
function stream(packets: readonly [string, Buffer][]): { list: Buffer[]; all: Buffer } {
  const list = packets.map(([, b]) => Buffer.from(b));
  return { list, all: Buffer.concat(list) };
}

/** Hex of each packet, for readable diffs of whole streams. */
const hex = (bufs: readonly Buffer[]): string[] => bufs.map((b) => b.toString("hex"));

afterEach(() => {
  vi.restoreAllMocks();
});

describe("PacketFramer: whole packets out, in order, byte-exact", () => {
  for (const [version, packets] of [
    ["3.1.1", PACKETS_V4],
    ["5.0", PACKETS_V5],
  ] as const) {
    describe(`MQTT ${version}`, () => {
      it("the generated packets are what they claim to be (the test's own premise)", () => {
        const parser = mqtt.parser({ protocolVersion: version === "5.0" ? 5 : 4 });
        const cmds: string[] = [];
        const errors: string[] = [];
        parser.on("packet", (p: mqtt.Packet) => cmds.push(p.cmd));
        parser.on("error", (e: Error) => errors.push(e.message));
        parser.parse(stream(packets).all);
        expect(errors).toEqual([]);
        expect(cmds).toHaveLength(packets.length);
      });

      it.each(packets.map(([name, b]) => [name, b] as const))(
        "%s alone, byte by byte: delivered once, at its last byte",
        (_name, bytes) => {
          const { framer, packets: out, errors } = recorder();
          for (let i = 0; i < bytes.length - 1; i++) framer.push(bytes.subarray(i, i + 1));
          expect(out).toEqual([]);
          framer.push(bytes.subarray(bytes.length - 1));
          expect(errors).toEqual([]);
          expect(hex(out)).toEqual([bytes.toString("hex")]);
        },
      );

      describe.each<[string, (n: number) => FeedMode]>([
        ["whole", () => "whole"],
        ["byte by byte", () => "byte by byte"],
        ["in 7-byte chunks", (n) => Array.from({ length: Math.ceil(n / 7) }, (_, i) => i * 7)],
        [
          "in 1000-byte chunks",
          (n) => Array.from({ length: Math.ceil(n / 1000) }, (_, i) => i * 1000),
        ],
      ])("all concatenated, fed %s", (_mode, mode) => {
        it("comes out as the same packets", () => {
          const { list, all } = stream(packets);
          const { framer, packets: out, errors } = recorder();
          feed(framer, all, mode(all.length));
          expect(errors).toEqual([]);
          // Compared after the whole feed: a delivered buffer must not be overwritten later.
          expect(hex(out)).toEqual(hex(list));
        });
      });

      it("in random chunks (fast-check): the same packets, in order", () => {
        const { list, all } = stream(packets);
        fc.assert(
          fc.property(
            fc.uniqueArray(fc.integer({ min: 1, max: all.length - 1 }), { maxLength: 60 }),
            (cuts) => {
              const { framer, packets: out, errors } = recorder();
              feed(
                framer,
                all,
                [...cuts].sort((a, b) => a - b),
              );
              expect(errors).toEqual([]);
              expect(hex(out)).toEqual(hex(list));
            },
          ),
          { numRuns: 200 },
        );
      });
    });
  }

  it("random sequences of packets of both versions, cut anywhere (fast-check)", () => {
    const all = [...PACKETS_V4, ...PACKETS_V5].map(([, b]) => b);
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: all.length - 1 }), { minLength: 1, maxLength: 30 }),
        fc.array(fc.integer({ min: 1, max: 4096 }), { minLength: 1, maxLength: 50 }),
        (picks, sizes) => {
          const list = picks.map((i) => Buffer.from(all[i]!));
          const bytes = Buffer.concat(list);
          const { framer, packets: out, errors } = recorder();
          // Chunk sizes cycle through `sizes`.
          let at = 0;
          for (let k = 0; at < bytes.length; k++) {
            const n = sizes[k % sizes.length]!;
            framer.push(bytes.subarray(at, at + n));
            at += n;
          }
          expect(errors).toEqual([]);
          expect(hex(out)).toEqual(hex(list));
        },
      ),
      { numRuns: 150 },
    );
  });

  it("an empty chunk changes nothing", () => {
    const bytes = v4({ cmd: "puback", messageId: 1 });
    const { framer, packets: out, errors } = recorder();
    framer.push(Buffer.alloc(0));
    framer.push(bytes.subarray(0, 1));
    framer.push(Buffer.alloc(0));
    framer.push(bytes.subarray(1));
    framer.push(Buffer.alloc(0));
    expect(errors).toEqual([]);
    expect(hex(out)).toEqual([bytes.toString("hex")]);
  });

  it("remaining lengths at every encoding boundary (127/128, 16383/16384, 2097151/2097152)", () => {
    // PUBLISH q0 with topic "t": remaining = 2 + 1 + payload.
    for (const remaining of [0, 3, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152]) {
      const payloadLength = Math.max(remaining - 3, 0);
      const bytes =
        remaining === 0
          ? v4({ cmd: "pingreq" })
          : v4({
              cmd: "publish",
              topic: "t",
              payload: bytesOf(payloadLength),
              qos: 0,
              dup: false,
              retain: false,
            });
      const { framer, packets: out, errors } = recorder(4 * MB);
      feed(framer, bytes, [1, 2, 3, 4, 5, 6]);
      expect(errors, `remaining ${remaining}`).toEqual([]);
      expect(out).toHaveLength(1);
      expect(out[0]!.equals(bytes), `remaining ${remaining}`).toBe(true);
    }
  });

  it("a 1 MB packet in 1000 chunks completes byte-exact, without quadratic copying", () => {
    const payload = bytesOf(MB - 100, 11);
    const bytes = v4({
      cmd: "publish",
      topic: "big/one",
      payload,
      qos: 1,
      messageId: 42,
      dup: false,
      retain: false,
    });
    const next = v4({ cmd: "pingreq" });
    const all = Buffer.concat([bytes, next]);
    const concat = vi.spyOn(Buffer, "concat");
    const { framer, packets: out, errors } = recorder(MB);
    const chunk = Math.ceil(all.length / 1000);
    let pushes = 0;
    for (let at = 0; at < all.length; at += chunk) {
      framer.push(all.subarray(at, at + chunk));
      pushes++;
    }
    expect(pushes).toBe(1000);
    expect(errors).toEqual([]);
    expect(out).toHaveLength(2);
    expect(out[0]!.equals(bytes)).toBe(true);
    expect(out[1]!.equals(next)).toBe(true);
    // Re-concatenating what is buffered on every chunk would copy ~500 MB; a linear framer
    // copies the packet about once.
    const copied = concat.mock.calls.reduce(
      (sum, [list]) => sum + (list as readonly Uint8Array[]).reduce((s, b) => s + b.length, 0),
      0,
    );
    expect(copied).toBeLessThanOrEqual(2 * all.length);
  });
});

describe("PacketFramer: size limit", () => {
  it("refuses a packet over the limit as soon as its remaining length is known: tooLarge", () => {
    // PUBLISH with remaining length 2 MB (0x80 0x80 0x80 0x01), limit 1 MB: no body sent.
    const { framer, packets, errors } = recorder(MB);
    framer.push(Buffer.from([0x30, 0x80, 0x80]));
    expect(errors).toEqual([]);
    framer.push(Buffer.from([0x80, 0x01]));
    expect(packets).toEqual([]);
    expect(errors.map((e) => e.error)).toEqual(["tooLarge"]);
  });

  it("refuses it byte by byte too, at the last length byte", () => {
    const { framer, errors } = recorder(1000);
    // remaining 1000 → 0xe8 0x07: total 1003 > 1000.
    framer.push(Buffer.from([0x30]));
    framer.push(Buffer.from([0xe8]));
    expect(errors).toEqual([]);
    framer.push(Buffer.from([0x07]));
    expect(errors.map((e) => e.error)).toEqual(["tooLarge"]);
  });

  it("the limit counts the whole packet, fixed header included: limit accepted, limit+1 refused", () => {
    const payloadFor = (total: number) => total - 2 - 2 - 1; // 0x30, 1-byte length, "t" topic
    const exact = v4({
      cmd: "publish",
      topic: "t",
      payload: bytesOf(payloadFor(100)),
      qos: 0,
      dup: false,
      retain: false,
    });
    expect(exact).toHaveLength(100);
    const ok = recorder(100);
    ok.framer.push(exact);
    expect(ok.errors).toEqual([]);
    expect(ok.packets).toHaveLength(1);

    const over = v4({
      cmd: "publish",
      topic: "t",
      payload: bytesOf(payloadFor(101)),
      qos: 0,
      dup: false,
      retain: false,
    });
    expect(over).toHaveLength(101);
    const bad = recorder(100);
    // Only the fixed header: the refusal must not wait for the body.
    bad.framer.push(over.subarray(0, 2));
    expect(bad.errors.map((e) => e.error)).toEqual(["tooLarge"]);
    bad.framer.push(over.subarray(2));
    expect(bad.packets).toEqual([]);
    expect(bad.errors).toHaveLength(1);
  });

  it("packets before the oversized one are delivered, none after", () => {
    const small = v4({ cmd: "puback", messageId: 1 });
    const big = v4({
      cmd: "publish",
      topic: "t",
      payload: bytesOf(500),
      qos: 0,
      dup: false,
      retain: false,
    });
    const { framer, packets, errors } = recorder(200);
    framer.push(Buffer.concat([small, big, small]));
    expect(hex(packets)).toEqual([small.toString("hex")]);
    expect(errors.map((e) => e.error)).toEqual(["tooLarge"]);
  });
});

describe("PacketFramer: malformed input", () => {
  it("a remaining length of 5 bytes is malformed [MQTT-1.5.5], without waiting for more", () => {
    const { framer, packets, errors } = recorder(Number.MAX_SAFE_INTEGER);
    framer.push(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]));
    expect(packets).toEqual([]);
    expect(errors.map((e) => e.error)).toEqual(["malformed"]);
  });

  it("a 5-byte remaining length byte by byte: malformed by the 4th continuation byte", () => {
    const { framer, errors } = recorder(Number.MAX_SAFE_INTEGER);
    for (const b of [0x30, 0x80, 0x80, 0x80]) framer.push(Buffer.from([b]));
    expect(errors).toEqual([]);
    framer.push(Buffer.from([0x80]));
    expect(errors.map((e) => e.error)).toEqual(["malformed"]);
  });

  it("a 4-byte remaining length (the most there is) is fine", () => {
    const { framer, errors } = recorder(Number.MAX_SAFE_INTEGER);
    // 0xff 0xff 0xff 0x7f = 268,435,455: not complete, but not an error either.
    framer.push(Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f, 0x00]));
    expect(errors).toEqual([]);
  });

  const BAD_FIRST_BYTES: readonly [string, number][] = [
    ["type 0, flags 0 (reserved) [MQTT-2.1.3-1]", 0x00],
    ["type 0, flags 1111", 0x0f],
    ["CONNECT flags 0001", 0x11],
    ["CONNECT flags 0010", 0x12],
    ["CONNECT flags 1000", 0x18],
    ["CONNACK flags 0001", 0x21],
    ["PUBLISH QoS 3 [MQTT-3.3.1-4]", 0x36],
    ["PUBLISH QoS 3 retain", 0x37],
    ["PUBLISH QoS 3 dup", 0x3e],
    ["PUBLISH QoS 3 dup retain", 0x3f],
    ["PUBACK flags 0010", 0x42],
    ["PUBREC flags 0001", 0x51],
    ["PUBREL flags 0000 [MQTT-3.6.1-1]", 0x60],
    ["PUBREL flags 0011", 0x63],
    ["PUBREL flags 1010", 0x6a],
    ["PUBCOMP flags 0010", 0x72],
    ["SUBSCRIBE flags 0000 [MQTT-3.8.1-1]", 0x80],
    ["SUBSCRIBE flags 0001", 0x81],
    ["SUBSCRIBE flags 0011", 0x83],
    ["SUBSCRIBE flags 1010", 0x8a],
    ["SUBACK flags 0010", 0x92],
    ["UNSUBSCRIBE flags 0000 [MQTT-3.10.1-1]", 0xa0],
    ["UNSUBSCRIBE flags 0110", 0xa6],
    ["UNSUBACK flags 0010", 0xb2],
    ["PINGREQ flags 0001", 0xc1],
    ["PINGRESP flags 1000", 0xd8],
    ["DISCONNECT flags 0010", 0xe2],
    ["AUTH flags 0001", 0xf1],
  ];

  it.each(BAD_FIRST_BYTES)("%s: malformed at the first byte", (_name, byte) => {
    expect(validFirstByte(byte)).toBe(false);
    const { framer, packets, errors } = recorder();
    framer.push(Buffer.from([byte]));
    expect(packets).toEqual([]);
    expect(errors.map((e) => e.error)).toEqual(["malformed"]);
  });

  it.each(BAD_FIRST_BYTES)(
    "%s after a good packet in the same chunk: the good one only",
    (_n, byte) => {
      const good = v4({ cmd: "pingreq" });
      const { framer, packets, errors } = recorder();
      framer.push(Buffer.concat([good, Buffer.from([byte, 0x00]), good]));
      expect(hex(packets)).toEqual([good.toString("hex")]);
      expect(errors.map((e) => e.error)).toEqual(["malformed"]);
    },
  );

  it("validFirstByte accepts exactly the 16 types' legal flags (all 256 bytes)", () => {
    const accepted: number[] = [];
    for (let b = 0; b < 256; b++) if (validFirstByte(b)) accepted.push(b);
    const expected: number[] = [];
    for (let type = 1; type <= 15; type++) {
      if (type === 3) {
        // PUBLISH: DUP and RETAIN free, QoS 0..2.
        for (let flags = 0; flags < 16; flags++) {
          if ((flags & 0x06) !== 0x06) expected.push(0x30 | flags);
        }
      } else if (type === 6 || type === 8 || type === 10) {
        expected.push((type << 4) | 0x02);
      } else {
        expected.push(type << 4);
      }
    }
    expect(accepted).toEqual(expected);
  });
});

describe("PacketFramer: lengths no packet of its type has", () => {
  // PUBACK 0x40 declaring 8,860 bytes, then what follows on the same socket: found by the
  // sequence fuzzer, where the connection sat waiting for a body a PUBACK never has.
  const HUGE_PUBACK = Buffer.from("409c456b6f39fdfae47b8bd9", "hex");

  it("3.1.1: a PUBACK declaring 8,860 bytes is malformed at its header, not waited for", () => {
    const { framer, packets, errors } = recorder();
    framer.setVersion(4);
    framer.push(HUGE_PUBACK);
    expect(packets).toEqual([]);
    expect(errors).toEqual([
      {
        error: "malformed",
        detail: "remaining length 8860 impossible for packet type 4 [MQTT-2.1.4]",
      },
    ]);
  });

  it("5.0: the same PUBACK may carry properties, so it is waited for within the size limit", () => {
    const { framer, errors } = recorder();
    framer.setVersion(5);
    framer.push(HUGE_PUBACK);
    expect(errors).toEqual([]);
  });

  it("PINGREQ with a body is malformed in either version, and before CONNECT", () => {
    for (const version of [undefined, 4, 5] as const) {
      const { framer, errors } = recorder();
      if (version !== undefined) framer.setVersion(version);
      framer.push(Buffer.from([0xc0, 0x01]));
      expect(errors.map((e) => e.error)).toEqual(["malformed"]);
    }
  });

  it("lengthFits: the exact table, per type and version", () => {
    const fits = (version: 3 | 4 | 5 | undefined) => {
      const out: string[] = [];
      for (let type = 1; type <= 15; type++) {
        const ok = [0, 1, 2, 3, 300].filter((n) => lengthFits(type << 4, n, version));
        out.push(`${type}:${ok.join(",")}`);
      }
      return out.join(" ");
    };
    const all = "0,1,2,3,300";
    const v4 = `1:${all} 2:${all} 3:${all} 4:2 5:2 6:2 7:2 8:${all} 9:${all} 10:${all} 11:2 12:0 13:0 14:0 15:${all}`;
    const v5 = `1:${all} 2:${all} 3:${all} 4:2,3,300 5:2,3,300 6:2,3,300 7:2,3,300 8:${all} 9:${all} 10:${all} 11:${all} 12:0 13:0 14:${all} 15:${all}`;
    expect(fits(3)).toBe(v4);
    expect(fits(4)).toBe(v4);
    expect(fits(5)).toBe(v5);
    expect(fits(undefined)).toBe(v5);
  });

  it("every packet mqtt-packet generates for its version fits", () => {
    for (const [version, packets] of [
      [4, PACKETS_V4],
      [5, PACKETS_V5],
    ] as const) {
      for (const [name, raw] of packets) {
        const { framer, errors } = recorder();
        framer.setVersion(version);
        framer.push(raw);
        expect({ name, errors }).toEqual({ name, errors: [] });
      }
    }
  });
});

describe("PacketFramer: stop and after an error", () => {
  it("delivers nothing after stop(), even of a packet half received before", () => {
    const a = v4({ cmd: "puback", messageId: 1 });
    const b = v4({ cmd: "puback", messageId: 2 });
    const { framer, packets, errors } = recorder();
    framer.push(Buffer.concat([a, b.subarray(0, 2)]));
    expect(hex(packets)).toEqual([a.toString("hex")]);
    framer.stop();
    framer.push(b.subarray(2));
    framer.push(Buffer.concat([a, b]));
    expect(hex(packets)).toEqual([a.toString("hex")]);
    expect(errors).toEqual([]);
  });

  it("stop() from inside onPacket: the rest of the same chunk is not delivered", () => {
    const packets: Buffer[] = [];
    const framer: PacketFramer = new PacketFramer(
      MB,
      (raw) => {
        packets.push(raw);
        framer.stop();
      },
      () => {},
    );
    const p = v4({ cmd: "pingreq" });
    framer.push(Buffer.concat([p, p, p]));
    expect(packets).toHaveLength(1);
  });

  it("after an error: no more packets and no second error", () => {
    const good = v4({ cmd: "pingreq" });
    const { framer, packets, errors } = recorder();
    framer.push(Buffer.from([0x60, 0x02, 0x00, 0x01])); // PUBREL flags 0000
    framer.push(good);
    framer.push(Buffer.from([0x00]));
    framer.push(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff]));
    expect(packets).toEqual([]);
    expect(errors.map((e) => e.error)).toEqual(["malformed"]);
  });

  it("after tooLarge: the body that follows is not parsed as packets", () => {
    const { framer, packets, errors } = recorder(10);
    // The body is a run of valid PINGREQs: a framer that skipped on would deliver them.
    framer.push(Buffer.from([0x30, 0x14]));
    framer.push(Buffer.from(Array.from({ length: 10 }, () => [0xc0, 0x00]).flat()));
    expect(packets).toEqual([]);
    expect(errors.map((e) => e.error)).toEqual(["tooLarge"]);
  });
});
