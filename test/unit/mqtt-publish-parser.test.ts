// The hand-written PUBLISH and PUBACK parsers (src/mqtt/publish-parser.ts) against mqtt-packet's
// parser, which they stand in for once a client is connected. Each side is the whole path a
// packet takes before its handler acts on it: the parser, then checkPacket, then for MQTT 5
// readPublishProperties (the handler's reading of the properties). On packets made by
// mqtt-packet's generator, and on those packets truncated, stretched and with bytes changed,
// both sides must agree: both refuse, or both accept with the same fields. One difference is
// by design: a QoS 1/2 PUBLISH that ends before its packet id is malformed here, where
// mqtt-packet gives it id -1.
import fc from "fast-check";
import mqtt from "mqtt-packet";
import { describe, expect, it } from "vitest";
import { DEFAULT_BROKER_OPTIONS } from "../../src/mqtt/options.js";
import { remainingLengthSize, writeRemainingLength } from "../../src/mqtt/packets.js";
import { readPublishProperties } from "../../src/mqtt/properties.js";
import { parsePuback311, parsePublish } from "../../src/mqtt/publish-parser.js";
import { checkPacket } from "../../src/mqtt/validate.js";

type Outcome =
  | { ok: false }
  | {
      ok: true;
      qos: number;
      dup: boolean;
      retain: boolean;
      topic: string;
      messageId: number | undefined;
      payload: string;
    };

/** The remaining length re-encoded for `body`: a packet the framer would deliver whole. */
function reframe(first: number, body: Buffer): Buffer {
  const raw = Buffer.alloc(1 + remainingLengthSize(body.length) + body.length);
  raw[0] = first;
  body.copy(raw, writeRemainingLength(raw, 1, body.length));
  return raw;
}

function bodyOf(raw: Buffer): Buffer {
  let at = 1;
  while ((raw[at]! & 0x80) !== 0) at++;
  return raw.subarray(at + 1);
}

function afterParse(packet: mqtt.IPublishPacket, raw: Buffer, v5: boolean): Outcome {
  try {
    checkPacket(packet, raw, v5, DEFAULT_BROKER_OPTIONS);
    if (v5) readPublishProperties(raw, packet.qos);
  } catch {
    return { ok: false };
  }
  return {
    ok: true,
    qos: packet.qos,
    dup: packet.dup,
    retain: packet.retain,
    topic: packet.topic,
    messageId: packet.qos > 0 ? packet.messageId : undefined,
    payload: Buffer.from(packet.payload as Buffer).toString("hex"),
  };
}

function viaMqttPacket(raw: Buffer, v5: boolean): Outcome {
  const parser = mqtt.parser(v5 ? { protocolVersion: 5 } : {});
  const packets: mqtt.Packet[] = [];
  let failed = false;
  parser.on("packet", (p) => packets.push(p));
  parser.on("error", () => {
    failed = true;
  });
  try {
    parser.parse(raw);
  } catch {
    return { ok: false };
  }
  if (failed || packets.length !== 1) return { ok: false };
  const packet = packets[0] as mqtt.IPublishPacket;
  // By design (see the file's comment): no packet id is malformed here.
  if (packet.qos > 0 && packet.messageId === -1) return { ok: false };
  return afterParse(packet, raw, v5);
}

function viaFastPath(raw: Buffer, v5: boolean): Outcome {
  let packet: mqtt.IPublishPacket;
  try {
    packet = parsePublish(raw, v5);
  } catch {
    return { ok: false };
  }
  return afterParse(packet, raw, v5);
}

const publishArb = (v5: boolean) =>
  fc.record({
    topic: fc.oneof(
      fc.constantFrom("a/b", "sensors/kitchen/temp", "ü/€/𝄞", "$SYS/x", "a+b", "#", "a\u0000b"),
      fc.string({ maxLength: 40 }),
    ),
    qos: fc.constantFrom(0, 1, 2) as fc.Arbitrary<0 | 1 | 2>,
    dup: fc.boolean(),
    retain: fc.boolean(),
    messageId: fc.integer({ min: 1, max: 0xffff }),
    payload: fc.uint8Array({ maxLength: 300 }),
    properties: v5
      ? fc.option(
          fc.record(
            {
              payloadFormatIndicator: fc.boolean(),
              messageExpiryInterval: fc.integer({ min: 0, max: 0xffffffff }),
              topicAlias: fc.integer({ min: 1, max: 0xffff }),
              contentType: fc.string({ maxLength: 10 }),
              responseTopic: fc.constantFrom("r/1", "reply"),
              correlationData: fc.uint8Array({ maxLength: 8 }).map((a) => Buffer.from(a)),
              userProperties: fc.constant({ k: "v" }),
            },
            { requiredKeys: [] },
          ),
          { nil: undefined },
        )
      : fc.constant(undefined),
  });

function generate(p: Record<string, unknown>, v5: boolean): Buffer {
  const packet = {
    cmd: "publish",
    topic: p.topic,
    qos: p.qos,
    dup: p.qos === 0 ? false : p.dup,
    retain: p.retain,
    messageId: p.messageId,
    payload: Buffer.from(p.payload as Uint8Array),
    ...(p.properties !== undefined ? { properties: p.properties } : {}),
  } as mqtt.IPublishPacket;
  return mqtt.generate(packet, { protocolVersion: v5 ? 5 : 4 });
}

/** A change to a valid packet that keeps it one whole frame: what a hostile client sends. */
const mutationArb = fc.oneof(
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("extend" as const), bytes: fc.uint8Array({ maxLength: 8 }) }),
  fc.record({ kind: fc.constant("set" as const), at: fc.nat(), value: fc.nat({ max: 255 }) }),
  fc.record({ kind: fc.constant("flags" as const), value: fc.nat({ max: 15 }) }),
  fc.constant({ kind: "none" as const }),
);

function mutate(raw: Buffer, m: { kind: string }): Buffer {
  const body = Buffer.from(bodyOf(raw));
  const first = raw[0]!;
  const mm = m as Record<string, unknown> & { kind: string };
  switch (mm.kind) {
    case "truncate":
      return reframe(first, body.subarray(0, (mm.at as number) % (body.length + 1)));
    case "extend":
      return reframe(first, Buffer.concat([body, Buffer.from(mm.bytes as Uint8Array)]));
    case "set": {
      if (body.length === 0) return raw;
      body[(mm.at as number) % body.length] = mm.value as number;
      return reframe(first, body);
    }
    case "flags": {
      // QoS 3 never reaches a parser: the framer refuses it at the first byte.
      const flags = mm.value as number;
      if ((flags & 0x06) === 0x06) return raw;
      return reframe(0x30 | flags, body);
    }
    default:
      return raw;
  }
}

describe("parsePublish", () => {
  for (const v5 of [false, true]) {
    const version = v5 ? "MQTT 5" : "MQTT 3.1.1";

    it(`${version}: agrees with mqtt-packet on generated packets`, () => {
      fc.assert(
        fc.property(publishArb(v5), (p) => {
          const raw = generate(p, v5);
          const ours = viaFastPath(raw, v5);
          expect(ours).toEqual(viaMqttPacket(raw, v5));
        }),
        { numRuns: 2000 },
      );
    });

    it(`${version}: agrees with mqtt-packet on truncated, stretched and altered packets`, () => {
      let refused = 0;
      fc.assert(
        fc.property(publishArb(v5), mutationArb, (p, m) => {
          const raw = mutate(generate(p, v5), m);
          const ours = viaFastPath(raw, v5);
          expect(ours).toEqual(viaMqttPacket(raw, v5));
          if (!ours.ok) refused++;
        }),
        { numRuns: 5000 },
      );
      // The corpus is not all valid packets: both sides refused a good share of it.
      expect(refused).toBeGreaterThan(200);
    });
  }

  it("reads every field of a 3.1.1 QoS 1 PUBLISH; the payload is a view of the packet", () => {
    const raw = mqtt.generate({
      cmd: "publish",
      topic: "a/b",
      qos: 1,
      dup: true,
      retain: true,
      messageId: 0x1234,
      payload: Buffer.from("hello"),
    });
    const p = parsePublish(raw, false);
    expect(p).toEqual({
      cmd: "publish",
      retain: true,
      qos: 1,
      dup: true,
      length: raw.length - 2,
      topic: "a/b",
      payload: Buffer.from("hello"),
      messageId: 0x1234,
    });
    expect((p.payload as Buffer).buffer).toBe(raw.buffer);
  });

  it("skips MQTT 5 properties to the payload", () => {
    const raw = mqtt.generate(
      {
        cmd: "publish",
        topic: "t",
        qos: 0,
        dup: false,
        retain: false,
        payload: Buffer.from("body"),
        properties: { contentType: "text/plain", userProperties: { a: "b" } },
      },
      { protocolVersion: 5 },
    );
    expect(parsePublish(raw, true).payload.toString()).toBe("body");
  });

  it("refuses what the spec makes malformed, with mqtt-packet's words", () => {
    const cases: [string, Buffer, boolean, string][] = [
      ["no topic length", Buffer.from([0x30, 1, 0]), false, "Cannot parse topic"],
      ["topic past the end", Buffer.from([0x30, 3, 0, 5, 0x61]), false, "Cannot parse topic"],
      ["no packet id", Buffer.from([0x32, 3, 0, 1, 0x61]), false, "Cannot parse messageId"],
      ["half a packet id", Buffer.from([0x32, 4, 0, 1, 0x61, 0]), false, "Cannot parse messageId"],
      [
        "v5 property length past the end",
        Buffer.from([0x30, 4, 0, 1, 0x61, 5]),
        true,
        "Cannot parse properties",
      ],
      [
        "v5 property length of five bytes",
        Buffer.from([0x30, 8, 0, 1, 0x61, 0x80, 0x80, 0x80, 0x80, 0x01]),
        true,
        "Cannot parse properties length",
      ],
      [
        "v5 no property length",
        Buffer.from([0x30, 3, 0, 1, 0x61]),
        true,
        "Cannot parse properties",
      ],
      ["QoS 3", Buffer.from([0x36, 5, 0, 1, 0x61, 0, 1]), false, "both QoS bits"],
    ];
    for (const [name, raw, v5, words] of cases) {
      expect(() => parsePublish(raw, v5), name).toThrow(words);
    }
  });
});

describe("parsePuback311", () => {
  it("reads the packet id as mqtt-packet does", () => {
    for (const messageId of [1, 0x00ff, 0x0100, 0xfffe, 0xffff]) {
      const raw = mqtt.generate({ cmd: "puback", messageId });
      const parser = mqtt.parser();
      let theirs: mqtt.Packet | undefined;
      parser.on("packet", (p) => {
        theirs = p;
      });
      parser.parse(raw);
      expect(parsePuback311(raw).messageId).toBe((theirs as mqtt.IPubackPacket).messageId);
    }
  });
});
