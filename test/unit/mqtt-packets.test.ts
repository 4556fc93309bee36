// Our hand-written server-side encoders (src/mqtt/packets.ts) checked against a parser we did
// not write: every frame must decode with mqtt-packet to exactly the packet we meant, and be
// byte-for-byte what mqtt-packet's own generator makes for that packet.
import fc from "fast-check";
import mqtt from "mqtt-packet";
import { describe, expect, it } from "vitest";
import { TopicError, toSubject, toTopic } from "../../src/core/topic.js";
import { encodeAck, encodeConnack, encodePublish, encodeSuback } from "../../src/mqtt/packets.js";

/**
 * Decodes `bytes` with a fresh mqtt-packet parser (MQTT 3.1.1). Fails unless the bytes are
 * exactly one complete, well-formed packet: no error, nothing left over.
 */
function decodeOne(bytes: Uint8Array): mqtt.Packet {
  const parser = mqtt.parser({ protocolVersion: 4 });
  const packets: mqtt.Packet[] = [];
  const errors: Error[] = [];
  parser.on("packet", (p) => packets.push(p));
  parser.on("error", (e: Error) => errors.push(e));
  const leftover = parser.parse(Buffer.from(bytes));
  expect(errors).toEqual([]);
  expect(leftover).toBe(0);
  expect(packets).toHaveLength(1);
  return packets[0]!;
}

/** The reference encoding of `packet` by mqtt-packet (MQTT 3.1.1). */
function reference(packet: mqtt.Packet): Buffer {
  return mqtt.generate(packet, { protocolVersion: 4 });
}

/** Deterministic, non-constant payload bytes (a constant would hide offset mistakes). */
function payloadOf(size: number): Buffer {
  const buf = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) buf[i] = (i * 31 + 7) & 0xff;
  return buf;
}

describe("encodeConnack", () => {
  it.each([0, 1, 2, 3, 4, 5])("return code %i decodes and matches mqtt-packet", (code) => {
    const bytes = encodeConnack(code);
    expect([...bytes]).toEqual([0x20, 0x02, 0x00, code]);
    expect(
      bytes.equals(reference({ cmd: "connack", returnCode: code, sessionPresent: false })),
    ).toBe(true);
    expect(decodeOne(bytes)).toMatchObject({
      cmd: "connack",
      length: 2,
      returnCode: code,
      sessionPresent: false,
    });
  });

  it("sets the session-present flag [MQTT-3.2.2-2]", () => {
    const bytes = encodeConnack(0, true);
    expect([...bytes]).toEqual([0x20, 0x02, 0x01, 0x00]);
    expect(decodeOne(bytes)).toMatchObject({ cmd: "connack", returnCode: 0, sessionPresent: true });
  });
});

describe("encodeAck", () => {
  const KINDS = [
    ["puback", 0x40],
    ["pubrec", 0x50],
    ["pubrel", 0x62],
    ["pubcomp", 0x70],
    ["unsuback", 0xb0],
  ] as const;
  const IDS = [1, 0x7f, 0x80, 0xff, 0x0100, 0x1234, 0x7fff, 0x8000, 0xfffe, 0xffff];

  for (const [kind, first] of KINDS) {
    it.each(IDS)(`${kind} with packet id %i`, (id) => {
      const bytes = encodeAck(kind, id);
      expect([...bytes]).toEqual([first, 0x02, id >> 8, id & 0xff]);
      expect(bytes.equals(reference({ cmd: kind, messageId: id } as mqtt.Packet))).toBe(true);
      const decoded = decodeOne(bytes);
      expect(decoded).toMatchObject({ cmd: kind, length: 2, messageId: id });
      // PUBREL's reserved flags are 0b0010 [MQTT-3.6.1-1]; mqtt-packet reports them as QoS 1.
      expect((decoded as { qos?: number }).qos).toBe(kind === "pubrel" ? 1 : 0);
    });
  }

  it("any packet id round-trips through every kind", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...KINDS.map(([k]) => k)),
        fc.integer({ min: 1, max: 0xffff }),
        (kind, id) => {
          const bytes = encodeAck(kind, id);
          expect(bytes.equals(reference({ cmd: kind, messageId: id } as mqtt.Packet))).toBe(true);
          expect(decodeOne(bytes)).toMatchObject({ cmd: kind, messageId: id });
        },
      ),
    );
  });

  it("pingresp is d0 00", () => {
    const bytes = encodeAck("pingresp");
    expect([...bytes]).toEqual([0xd0, 0x00]);
    expect(bytes.equals(reference({ cmd: "pingresp" }))).toBe(true);
    expect(decodeOne(bytes)).toMatchObject({ cmd: "pingresp", length: 0 });
  });
});

describe("encodeSuback", () => {
  it("grants and refusals, in order", () => {
    const bytes = encodeSuback(0x0a0b, [0, 1, 0x80, 2]);
    expect([...bytes]).toEqual([0x90, 0x06, 0x0a, 0x0b, 0x00, 0x01, 0x80, 0x02]);
    expect(
      bytes.equals(reference({ cmd: "suback", messageId: 0x0a0b, granted: [0, 1, 128, 2] })),
    ).toBe(true);
    expect(decodeOne(bytes)).toMatchObject({
      cmd: "suback",
      length: 6,
      messageId: 0x0a0b,
      granted: [0, 1, 0x80, 2],
    });
  });

  // Remaining length is 2 (packet id) + one byte per return code.
  it.each([
    [125, [0x7f]],
    [126, [0x80, 0x01]],
    [16_381, [0xff, 0x7f]],
    [16_382, [0x80, 0x80, 0x01]],
  ])("%i return codes cross the remaining-length boundary correctly", (count, lengthBytes) => {
    const codes = Array.from({ length: count }, (_, i) => [0, 1, 0x80][i % 3]!);
    const bytes = encodeSuback(65_535, codes);
    expect([...bytes.subarray(0, 1 + lengthBytes.length)]).toEqual([0x90, ...lengthBytes]);
    expect(bytes.length).toBe(1 + lengthBytes.length + 2 + count);
    expect(bytes.equals(reference({ cmd: "suback", messageId: 65_535, granted: codes }))).toBe(
      true,
    );
    const decoded = decodeOne(bytes) as mqtt.ISubackPacket;
    expect(decoded.messageId).toBe(65_535);
    expect(decoded.granted).toEqual(codes);
  });
});

describe("encodePublish", () => {
  it("QoS 0 carries no packet id [MQTT-2.3.1-5]", () => {
    const bytes = encodePublish(toTopic("a.b"), Buffer.from("hi"), 0, 42);
    expect([...bytes]).toEqual([0x30, 0x07, 0x00, 0x03, 0x61, 0x2f, 0x62, 0x68, 0x69]);
    const decoded = decodeOne(bytes) as mqtt.IPublishPacket;
    expect(decoded).toMatchObject({
      cmd: "publish",
      qos: 0,
      dup: false,
      retain: false,
      length: 7,
      topic: "a/b",
    });
    expect(decoded.messageId).toBeUndefined();
    expect(Buffer.from(decoded.payload as Buffer).toString()).toBe("hi");
  });

  it("QoS 1 carries the packet id after the topic", () => {
    const bytes = encodePublish(toTopic("a.b"), Buffer.from("hi"), 1, 0x0102);
    expect([...bytes]).toEqual([0x32, 0x09, 0x00, 0x03, 0x61, 0x2f, 0x62, 0x01, 0x02, 0x68, 0x69]);
    const decoded = decodeOne(bytes) as mqtt.IPublishPacket;
    expect(decoded).toMatchObject({
      cmd: "publish",
      qos: 1,
      length: 9,
      topic: "a/b",
      messageId: 0x0102,
    });
    expect(Buffer.from(decoded.payload as Buffer).toString()).toBe("hi");
  });

  it.each([0, 1] as const)("QoS %i with an empty payload", (qos) => {
    const bytes = encodePublish(toTopic("t"), new Uint8Array(0), qos, 9);
    const expected =
      qos === 0 ? [0x30, 0x03, 0x00, 0x01, 0x74] : [0x32, 0x05, 0x00, 0x01, 0x74, 0x00, 0x09];
    expect([...bytes]).toEqual(expected);
    const decoded = decodeOne(bytes) as mqtt.IPublishPacket;
    expect(decoded.topic).toBe("t");
    expect(decoded.qos).toBe(qos);
    expect(decoded.messageId).toBe(qos === 1 ? 9 : undefined);
    expect(Buffer.from(decoded.payload as Buffer).length).toBe(0);
  });

  // Topic "t": remaining = 2 (topic length) + 1 (topic) [+ 2 (packet id)] + payload.
  const BOUNDARIES: ReadonlyArray<readonly [number, number[]]> = [
    [127, [0x7f]],
    [128, [0x80, 0x01]],
    [16_383, [0xff, 0x7f]],
    [16_384, [0x80, 0x80, 0x01]],
    [2_097_151, [0xff, 0xff, 0x7f]],
    [2_097_152, [0x80, 0x80, 0x80, 0x01]],
  ];
  for (const qos of [0, 1] as const) {
    it.each(BOUNDARIES)(`QoS ${qos}, remaining length %i`, (remaining, lengthBytes) => {
      const payload = payloadOf(remaining - 3 - (qos === 1 ? 2 : 0));
      const bytes = encodePublish(toTopic("t"), payload, qos, 0xbeef);
      expect([...bytes.subarray(0, 1 + lengthBytes.length)]).toEqual([
        qos === 1 ? 0x32 : 0x30,
        ...lengthBytes,
      ]);
      expect(bytes.length).toBe(1 + lengthBytes.length + remaining);
      const ref = reference({
        cmd: "publish",
        topic: "t",
        payload,
        qos,
        dup: false,
        retain: false,
        ...(qos === 1 ? { messageId: 0xbeef } : {}),
      });
      expect(bytes.equals(ref)).toBe(true);
      const decoded = decodeOne(bytes) as mqtt.IPublishPacket;
      expect(decoded.length).toBe(remaining);
      expect(decoded.topic).toBe("t");
      expect(decoded.qos).toBe(qos);
      expect(decoded.messageId).toBe(qos === 1 ? 0xbeef : undefined);
      expect(Buffer.from(decoded.payload as Buffer).equals(payload)).toBe(true);
    });
  }

  it.each([
    // [subject, topic]: nats-server's reverse mapping.
    ["a./.b", "a//b"],
    ["/.a", "/a"],
    ["a./", "a/"],
    ["/./", "/"],
    ["a//b.c", "a.b/c"],
    ["//", "."],
    ["sensors.kitchen.temp", "sensors/kitchen/temp"],
    ["plain", "plain"],
  ])("subject %j goes out as topic %j", (subject, topic) => {
    const decoded = decodeOne(
      encodePublish(toTopic(subject), Buffer.from("x"), 1, 1),
    ) as mqtt.IPublishPacket;
    expect(decoded.topic).toBe(topic);
  });

  it.each([
    ["capteurs.température", "capteurs/température", 21],
    ["日本.語", "日本/語", 10],
    ["🌡.ünïcødé", "🌡/ünïcødé", 16],
  ])(
    "multibyte UTF-8 subject %j: the topic length prefix counts bytes",
    (subject, topic, bytesLength) => {
      expect(Buffer.byteLength(topic)).toBe(bytesLength);
      const payload = Buffer.from("42");
      const bytes = encodePublish(toTopic(subject), payload, 1, 7);
      expect(bytes.readUInt16BE(2)).toBe(bytesLength);
      expect(bytes[1]).toBe(2 + bytesLength + 2 + payload.length);
      expect(
        bytes.equals(
          reference({
            cmd: "publish",
            topic,
            payload,
            qos: 1,
            messageId: 7,
            dup: false,
            retain: false,
          }),
        ),
      ).toBe(true);
      const decoded = decodeOne(bytes) as mqtt.IPublishPacket;
      expect(decoded.topic).toBe(topic);
      expect(decoded.messageId).toBe(7);
      expect(Buffer.from(decoded.payload as Buffer).toString()).toBe("42");
    },
  );

  it.each(["a.+", "a.#", "x.\u0000"])(
    "refuses subject %j, which has no valid topic form",
    (subject) => {
      expect(() => encodePublish(toTopic(subject), Buffer.from("x"), 0, 0)).toThrow(TopicError);
    },
  );

  // Characters that exercise the mapping: separators, dots, multibyte, astral.
  const topicChar = fc.constantFrom(
    "a",
    "b",
    "Z",
    "0",
    "-",
    "_",
    ".",
    "/",
    "$",
    "é",
    "ß",
    "語",
    "🌡",
    "*",
    ">",
  );
  const validTopic = fc.string({ unit: topicChar, minLength: 1, maxLength: 40 }).filter((t) => {
    try {
      toSubject(t);
      return true;
    } catch {
      return false;
    }
  });

  it("round-trips random topics, payloads, QoS and packet ids through mqtt-packet", () => {
    fc.assert(
      fc.property(
        validTopic,
        fc.uint8Array({ maxLength: 600 }),
        fc.constantFrom(0 as const, 1 as const),
        fc.integer({ min: 1, max: 0xffff }),
        (topic, payload, qos, id) => {
          const bytes = encodePublish(toTopic(toSubject(topic)), payload, qos, id);
          const ref = reference({
            cmd: "publish",
            topic,
            payload: Buffer.from(payload),
            qos,
            dup: false,
            retain: false,
            ...(qos === 1 ? { messageId: id } : {}),
          });
          expect(bytes.equals(ref)).toBe(true);
          const decoded = decodeOne(bytes) as mqtt.IPublishPacket;
          expect(decoded.topic).toBe(topic);
          expect(decoded.qos).toBe(qos);
          expect(decoded.messageId).toBe(qos === 1 ? id : undefined);
          expect(Buffer.from(decoded.payload as Buffer).equals(Buffer.from(payload))).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("round-trips random payload sizes across the one- and two-byte length boundary", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 20_000 }),
        fc.constantFrom(0 as const, 1 as const),
        (size, qos) => {
          const payload = payloadOf(size);
          const decoded = decodeOne(
            encodePublish(toTopic("a./.b"), payload, qos, 3),
          ) as mqtt.IPublishPacket;
          expect(decoded.topic).toBe("a//b");
          expect(decoded.length).toBe(2 + 4 + (qos === 1 ? 2 : 0) + size);
          expect(Buffer.from(decoded.payload as Buffer).equals(payload)).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });
});
