// MQTT 5 PUBLISH properties (src/mqtt/properties.ts): read from raw packets made by
// mqtt-packet's generator and by hand (mqtt-packet's object form of user properties cannot
// interleave names, and the spec wants their order kept [MQTT-3.3.2-18]); a table of bad
// property blocks; round trips of the encoder through mqtt-packet's parser and our reader
// (fast-check); and the mapping to and from NATS headers for the hub.
import fc from "fast-check";
import mqtt from "mqtt-packet";
import { describe, expect, it } from "vitest";
import type { MessageProperties } from "../../src/core/index.js";
import { MqttProtocolError, type Violation } from "../../src/mqtt/errors.js";
import { encodePublish } from "../../src/mqtt/packets.js";
import {
  encodePublishProperties,
  headersToProperties,
  type OutboundPublishProperties,
  propertiesToHeaders,
  readPublishProperties,
} from "../../src/mqtt/properties.js";

// -- raw packets by hand ----------------------------------------------------------------

function varint(n: number): Buffer {
  const out: number[] = [];
  let v = n;
  do {
    let b = v % 128;
    v = Math.floor(v / 128);
    if (v > 0) b |= 0x80;
    out.push(b);
  } while (v > 0);
  return Buffer.from(out);
}

const u16 = (n: number): Buffer => Buffer.from([n >> 8, n & 0xff]);
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const lenPrefixed = (b: Buffer): Buffer => Buffer.concat([u16(b.length), b]);
const str = (s: string | Buffer): Buffer => lenPrefixed(typeof s === "string" ? Buffer.from(s) : s);

/** One property on the wire: id (a variable byte integer) and its value bytes. */
const P = {
  payloadFormat: (v: number) => Buffer.from([0x01, v]),
  messageExpiry: (s: number) => Buffer.concat([Buffer.from([0x02]), u32(s)]),
  contentType: (s: string | Buffer) => Buffer.concat([Buffer.from([0x03]), str(s)]),
  responseTopic: (s: string | Buffer) => Buffer.concat([Buffer.from([0x08]), str(s)]),
  correlationData: (b: Buffer) => Buffer.concat([Buffer.from([0x09]), lenPrefixed(b)]),
  subscriptionId: (n: number) => Buffer.concat([Buffer.from([0x0b]), varint(n)]),
  sessionExpiry: (s: number) => Buffer.concat([Buffer.from([0x11]), u32(s)]),
  topicAlias: (n: number) => Buffer.concat([Buffer.from([0x23]), u16(n)]),
  user: (k: string | Buffer, v: string | Buffer) =>
    Buffer.concat([Buffer.from([0x26]), str(k), str(v)]),
};

/**
 * A v5 PUBLISH built byte by byte: `props` are the property bytes (the block's length is
 * prefixed here unless `propertyLength` overrides it).
 */
function rawPublish(
  props: Buffer,
  opts: { topic?: string; qos?: 0 | 1 | 2; payload?: Buffer; propertyLength?: number } = {},
): Buffer {
  const qos = opts.qos ?? 1;
  const body = Buffer.concat([
    str(opts.topic ?? "t/1"),
    qos > 0 ? u16(0x1234) : Buffer.alloc(0),
    varint(opts.propertyLength ?? props.length),
    props,
    opts.payload ?? Buffer.from("payload"),
  ]);
  return Buffer.concat([Buffer.from([0x30 | (qos << 1)]), varint(body.length), body]);
}

/** The violation `fn` throws, or a failure if it throws anything else or nothing. */
function violationOf(fn: () => unknown): Violation {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(MqttProtocolError);
    return (err as MqttProtocolError).violation;
  }
  throw new Error("expected an MqttProtocolError, nothing was thrown");
}

const v5 = (p: mqtt.Packet): Buffer => mqtt.generate(p, { protocolVersion: 5 });

/** Decodes one v5 packet with mqtt-packet; fails on an error or leftover bytes. */
function decodeV5(bytes: Buffer): mqtt.Packet {
  const parser = mqtt.parser({ protocolVersion: 5 });
  const packets: mqtt.Packet[] = [];
  const errors: string[] = [];
  parser.on("packet", (p: mqtt.Packet) => packets.push(p));
  parser.on("error", (e: Error) => errors.push(e.message));
  const left = parser.parse(bytes);
  expect(errors).toEqual([]);
  expect(left).toBe(0);
  expect(packets).toHaveLength(1);
  return packets[0]!;
}

// -- readPublishProperties ----------------------------------------------------------------

describe("readPublishProperties on packets from mqtt-packet's generator", () => {
  it.each([0, 1, 2] as const)("QoS %i with every PUBLISH property", (qos) => {
    const raw = v5({
      cmd: "publish",
      topic: "sensors/a/t",
      payload: Buffer.from("21.5"),
      qos,
      dup: false,
      retain: false,
      ...(qos > 0 ? { messageId: 77 } : {}),
      properties: {
        payloadFormatIndicator: true,
        messageExpiryInterval: 3600,
        contentType: "application/json; charset=utf-8",
        responseTopic: "replies/ü/1",
        correlationData: Buffer.from([0x00, 0xff, 0x10, 0x80]),
        topicAlias: 5,
        // The object form: all values of a name together, names in key order.
        userProperties: { unit: "°C", a: ["1", "3"], "": "" },
      },
    });
    expect(readPublishProperties(raw, qos)).toEqual({
      topicAlias: 5,
      messageExpiryS: 3600,
      properties: {
        payloadFormat: 1,
        contentType: "application/json; charset=utf-8",
        responseTopic: "replies/ü/1",
        correlationData: Buffer.from([0x00, 0xff, 0x10, 0x80]),
        userProperties: [
          ["unit", "°C"],
          ["a", "1"],
          ["a", "3"],
          ["", ""],
        ],
      },
    });
  });

  it.each([0, 1, 2] as const)("QoS %i with no properties: nothing", (qos) => {
    const raw = v5({
      cmd: "publish",
      topic: "a",
      payload: Buffer.from("x"),
      qos,
      dup: false,
      retain: false,
      ...(qos > 0 ? { messageId: 1 } : {}),
    });
    expect(readPublishProperties(raw, qos)).toEqual({
      topicAlias: undefined,
      messageExpiryS: undefined,
      properties: undefined,
    });
  });

  it("payload format 0 is kept as 0; a topic alias alone gives no message properties", () => {
    const raw = v5({
      cmd: "publish",
      topic: "a",
      payload: Buffer.from("x"),
      qos: 0,
      dup: false,
      retain: false,
      properties: { payloadFormatIndicator: false },
    });
    expect(readPublishProperties(raw, 0).properties).toEqual({ payloadFormat: 0 });
    const aliasOnly = v5({
      cmd: "publish",
      topic: "",
      payload: Buffer.from("x"),
      qos: 1,
      messageId: 2,
      dup: false,
      retain: false,
      properties: { topicAlias: 9 },
    });
    expect(readPublishProperties(aliasOnly, 1)).toEqual({
      topicAlias: 9,
      messageExpiryS: undefined,
      properties: undefined,
    });
  });

  it("a large packet (4-byte remaining length) is read past its longer header", () => {
    const raw = v5({
      cmd: "publish",
      topic: "big",
      payload: Buffer.alloc(2_100_000, 1),
      qos: 1,
      messageId: 3,
      dup: false,
      retain: false,
      properties: { contentType: "bin", messageExpiryInterval: 1 },
    });
    expect(raw[4]! & 0x80).toBe(0); // remaining length takes 4 bytes: 1..4
    expect(raw[3]! & 0x80).not.toBe(0);
    expect(readPublishProperties(raw, 1)).toEqual({
      topicAlias: undefined,
      messageExpiryS: 1,
      properties: { contentType: "bin" },
    });
  });
});

describe("readPublishProperties on raw packets made by hand", () => {
  it("interleaved user properties come out in wire order [MQTT-3.3.2-18]", () => {
    const raw = rawPublish(
      Buffer.concat([P.user("a", "1"), P.user("b", "2"), P.contentType("c"), P.user("a", "3")]),
    );
    expect(readPublishProperties(raw, 1).properties).toEqual({
      contentType: "c",
      userProperties: [
        ["a", "1"],
        ["b", "2"],
        ["a", "3"],
      ],
    });
  });

  it("the same name and value twice is kept twice", () => {
    const raw = rawPublish(Buffer.concat([P.user("k", "v"), P.user("k", "v")]), { qos: 0 });
    expect(readPublishProperties(raw, 0).properties?.userProperties).toEqual([
      ["k", "v"],
      ["k", "v"],
    ]);
  });

  it("properties in any order", () => {
    const raw = rawPublish(
      Buffer.concat([P.topicAlias(2), P.user("x", "y"), P.messageExpiry(0), P.payloadFormat(0)]),
      { qos: 2 },
    );
    expect(readPublishProperties(raw, 2)).toEqual({
      topicAlias: 2,
      messageExpiryS: 0,
      properties: { payloadFormat: 0, userProperties: [["x", "y"]] },
    });
  });

  it("an empty payload after the properties", () => {
    const raw = rawPublish(P.contentType("t"), { payload: Buffer.alloc(0) });
    expect(readPublishProperties(raw, 1).properties).toEqual({ contentType: "t" });
  });

  it("the correlation data is a copy, not a view into the packet buffer", () => {
    const raw = rawPublish(P.correlationData(Buffer.from([1, 2, 3])));
    const data = readPublishProperties(raw, 1).properties!.correlationData!;
    raw.fill(0);
    expect([...data]).toEqual([1, 2, 3]);
  });
});

describe("readPublishProperties refuses bad property blocks", () => {
  it("a property id in more bytes than needed (0x81 0x00 for 0x01) is malformed [MQTT-1.5.5-1]", () => {
    const raw = rawPublish(Buffer.from([0x81, 0x00, 0x01]));
    expect(violationOf(() => readPublishProperties(raw, 1))).toBe("malformed");
  });

  const BAD_UTF8: readonly [string, Buffer][] = [
    ["a lone continuation byte", Buffer.from([0x80])],
    ["a truncated 2-byte sequence", Buffer.from([0x61, 0xc3])],
    ["0xFF", Buffer.from([0xff])],
    ["an overlong '/' (C0 AF)", Buffer.from([0xc0, 0xaf])],
    ["a UTF-16 surrogate (ED A0 80) [MQTT-1.5.4-1]", Buffer.from([0xed, 0xa0, 0x80])],
    ["U+0000 [MQTT-1.5.4-2]", Buffer.from([0x61, 0x00])],
  ];

  const TABLE: readonly [string, Buffer, 0 | 1 | 2, Violation][] = [
    ["unknown property 0x04", Buffer.from([0x04, 0x00]), 1, "malformed"],
    ["unknown property 0x00", Buffer.from([0x00, 0x00]), 1, "malformed"],
    ["unknown property 0x7f", Buffer.from([0x7f, 0x00]), 1, "malformed"],
    ["unknown two-byte property id 0x80 0x01", Buffer.from([0x80, 0x01, 0x00]), 1, "malformed"],
    ["Session Expiry Interval (0x11) on PUBLISH", P.sessionExpiry(10), 1, "protocolError"],
    [
      "Subscription Identifier (0x0B) from a client [MQTT-3.3.4-6]",
      P.subscriptionId(5),
      1,
      "protocolError",
    ],
    ["Receive Maximum (0x21) on PUBLISH", Buffer.from([0x21, 0x00, 0x0a]), 0, "protocolError"],
    [
      "Reason String (0x1F) on PUBLISH",
      Buffer.concat([Buffer.from([0x1f]), str("r")]),
      2,
      "protocolError",
    ],
    [
      "Payload Format Indicator twice",
      Buffer.concat([P.payloadFormat(1), P.payloadFormat(1)]),
      1,
      "protocolError",
    ],
    [
      "Message Expiry Interval twice",
      Buffer.concat([P.messageExpiry(1), P.messageExpiry(2)]),
      1,
      "protocolError",
    ],
    [
      "Content Type twice",
      Buffer.concat([P.contentType("a"), P.contentType("a")]),
      1,
      "protocolError",
    ],
    [
      "Response Topic twice",
      Buffer.concat([P.responseTopic("a"), P.responseTopic("b")]),
      1,
      "protocolError",
    ],
    [
      "Correlation Data twice",
      Buffer.concat([P.correlationData(Buffer.from([1])), P.correlationData(Buffer.from([2]))]),
      1,
      "protocolError",
    ],
    ["Topic Alias twice", Buffer.concat([P.topicAlias(1), P.topicAlias(1)]), 1, "protocolError"],
    ["Payload Format Indicator 2", P.payloadFormat(2), 1, "protocolError"],
    ["Payload Format Indicator 255", P.payloadFormat(255), 0, "protocolError"],
    ["Response Topic with +  [MQTT-3.3.2-14]", P.responseTopic("a/+/b"), 1, "protocolError"],
    ["Response Topic with #", P.responseTopic("a/#"), 1, "protocolError"],
    ["Response Topic empty", P.responseTopic(""), 1, "protocolError"],
    ...BAD_UTF8.flatMap(([name, bytes]): [string, Buffer, 0 | 1 | 2, Violation][] => [
      [`Content Type with ${name}`, P.contentType(bytes), 1, "malformed"],
      [`Response Topic with ${name}`, P.responseTopic(bytes), 1, "malformed"],
      [`user property name with ${name}`, P.user(bytes, "v"), 1, "malformed"],
      [`user property value with ${name}`, P.user("k", bytes), 1, "malformed"],
    ]),
  ];

  it.each(TABLE)("%s → %s", (_name, props, qos, violation) => {
    expect(violationOf(() => readPublishProperties(rawPublish(props, { qos }), qos))).toBe(
      violation,
    );
  });

  const TRUNCATED: readonly [string, Buffer][] = [
    [
      "property length beyond the packet",
      rawPublish(P.contentType("abc"), { propertyLength: 200, payload: Buffer.alloc(0) }),
    ],
    [
      "a value running past the property block (into the payload)",
      rawPublish(P.contentType("abcdef"), { propertyLength: 4, payload: Buffer.from("xyzxyz") }),
    ],
    [
      "a block that ends inside a 4-byte integer",
      rawPublish(P.messageExpiry(7), { propertyLength: 3 }),
    ],
    [
      "a packet that ends inside a 4-byte integer",
      rawPublish(P.messageExpiry(7).subarray(0, 3), {
        propertyLength: 5,
        payload: Buffer.alloc(0),
      }),
    ],
    [
      "a packet that ends inside a user property",
      rawPublish(P.user("name", "value").subarray(0, 8), {
        propertyLength: 15,
        payload: Buffer.alloc(0),
      }),
    ],
    [
      "a property length of 5 bytes",
      Buffer.concat([
        Buffer.from([0x32, 0x0b]),
        str("t"),
        u16(1),
        Buffer.from([0xff, 0xff, 0xff, 0xff, 0x7f]),
        Buffer.from([0x00]),
      ]),
    ],
    [
      "a packet that ends before its property length",
      Buffer.concat([Buffer.from([0x32, 0x05]), str("t"), u16(1)]),
    ],
    [
      "a topic length beyond the packet",
      Buffer.concat([Buffer.from([0x32, 0x05]), u16(300), Buffer.from([0x61, 0x00, 0x00])]),
    ],
  ];

  it.each(TRUNCATED)("%s → malformed", (_name, raw) => {
    expect(violationOf(() => readPublishProperties(raw, 1))).toBe("malformed");
  });
});

// -- encodePublishProperties round trips -----------------------------------------------------

/** Strings an MQTT UTF-8 string can carry: any Unicode but U+0000 [MQTT-1.5.4-2]. */
const mqttString = fc
  .string({ unit: "grapheme", maxLength: 12 })
  .filter((s) => !s.includes("\u0000"));
const topicName = mqttString.filter((s) => s !== "" && !/[+#]/.test(s));
const bytes = fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a));

const messageProperties: fc.Arbitrary<MessageProperties> = fc.record(
  {
    payloadFormat: fc.constantFrom<0 | 1>(0, 1),
    contentType: mqttString,
    responseTopic: topicName,
    correlationData: bytes,
    userProperties: fc.array(fc.tuple(mqttString, mqttString), { minLength: 1, maxLength: 8 }),
  },
  { requiredKeys: [] },
);

const outbound: fc.Arbitrary<OutboundPublishProperties> = fc.record(
  {
    properties: messageProperties,
    messageExpiryS: fc.integer({ min: 0, max: 0xffff_ffff }),
    topicAlias: fc.integer({ min: 1, max: 0xffff }),
    subscriptionIds: fc.array(fc.integer({ min: 1, max: 268_435_455 }), {
      minLength: 1,
      maxLength: 4,
    }),
  },
  { requiredKeys: [] },
);

/** What our reader gives back for `m`: undefined when nothing is set. */
function readBack(m: MessageProperties | undefined): MessageProperties | undefined {
  if (m === undefined || Object.keys(m).length === 0) return undefined;
  return m;
}

describe("encodePublishProperties", () => {
  it("round trip through mqtt-packet's parser (fast-check): the same values", () => {
    fc.assert(
      fc.property(
        outbound,
        fc.constantFrom<0 | 1 | 2>(0, 1, 2),
        bytes,
        fc.boolean(),
        fc.boolean(),
        (p, qos, payload, retain, dup) => {
          const block = encodePublishProperties(p);
          const raw = encodePublish("a/b/ü", payload, qos, 513, retain, dup, block);
          const packet = decodeV5(raw) as mqtt.IPublishPacket;
          expect(packet.topic).toBe("a/b/ü");
          expect(Buffer.from(packet.payload as Buffer).equals(payload)).toBe(true);
          expect(packet.qos).toBe(qos);
          expect(packet.retain).toBe(retain);
          if (qos > 0) expect(packet.messageId).toBe(513);

          const m = p.properties;
          const expected: Record<string, unknown> = {};
          if (m?.payloadFormat !== undefined)
            expected.payloadFormatIndicator = m.payloadFormat === 1;
          if (p.messageExpiryS !== undefined) expected.messageExpiryInterval = p.messageExpiryS;
          if (m?.contentType !== undefined) expected.contentType = m.contentType;
          if (m?.responseTopic !== undefined) expected.responseTopic = m.responseTopic;
          if (m?.correlationData !== undefined)
            expected.correlationData = Buffer.from(m.correlationData);
          if (p.topicAlias !== undefined) expected.topicAlias = p.topicAlias;
          if (p.subscriptionIds !== undefined) {
            expected.subscriptionIdentifier =
              p.subscriptionIds.length === 1 ? p.subscriptionIds[0] : [...p.subscriptionIds];
          }
          if (m?.userProperties !== undefined) {
            // mqtt-packet's object form: a repeated name collects its values in order. Its
            // parser tests the earlier value for truthiness (parser.js, user properties), so
            // a repeated name whose value so far is "" starts over: modelled here as it is.
            const user: Record<string, string | string[]> = Object.create(null);
            for (const [k, v] of m.userProperties) {
              const had = user[k];
              user[k] = !had ? v : Array.isArray(had) ? [...had, v] : [had, v];
            }
            expected.userProperties = { ...user };
          }
          const got: Record<string, unknown> = { ...(packet.properties ?? {}) };
          if (got.userProperties !== undefined)
            got.userProperties = { ...(got.userProperties as object) };
          expect(got).toEqual(expected);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("round trip through readPublishProperties (fast-check): the same properties, in order", () => {
    fc.assert(
      fc.property(
        outbound.map((p) => ({ ...p, subscriptionIds: undefined })),
        fc.constantFrom<0 | 1 | 2>(0, 1, 2),
        bytes,
        (p, qos, payload) => {
          const raw = encodePublish(
            "x/y",
            payload,
            qos,
            9,
            false,
            false,
            encodePublishProperties(p),
          );
          const got = readPublishProperties(raw, qos);
          expect(got).toEqual({
            topicAlias: p.topicAlias,
            messageExpiryS: p.messageExpiryS,
            properties: readBack(p.properties),
          });
          // Order of user properties, interleaved names included [MQTT-3.3.2-18].
          expect(got.properties?.userProperties).toEqual(p.properties?.userProperties);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("an empty set of properties is the one byte 0x00", () => {
    expect([...encodePublishProperties({})]).toEqual([0x00]);
  });

  it("a block over 127 bytes has a 2-byte length and still parses", () => {
    const p: OutboundPublishProperties = {
      properties: { contentType: "c".repeat(200), userProperties: [["k", "v".repeat(20_000)]] },
    };
    const block = encodePublishProperties(p);
    expect(block[0]! & 0x80).not.toBe(0);
    const raw = encodePublish("t", Buffer.from("x"), 1, 1, false, false, block);
    expect(readPublishProperties(raw, 1).properties).toEqual(p.properties);
    expect((decodeV5(raw) as mqtt.IPublishPacket).properties?.contentType).toBe("c".repeat(200));
  });

  it("interleaved user properties are written in order (bytes checked by hand)", () => {
    const block = encodePublishProperties({
      properties: {
        userProperties: [
          ["a", "1"],
          ["b", "2"],
          ["a", "3"],
        ],
      },
    });
    expect(block).toEqual(
      Buffer.concat([Buffer.from([21]), P.user("a", "1"), P.user("b", "2"), P.user("a", "3")]),
    );
  });
});

// -- NATS headers ---------------------------------------------------------------------------

describe("propertiesToHeaders / headersToProperties", () => {
  it("user properties by name, a repeated name keeping its values in order; MQTT-* for the rest", () => {
    const h = propertiesToHeaders({
      payloadFormat: 1,
      contentType: "text/plain",
      responseTopic: "reply/to/me",
      correlationData: Buffer.from([0, 1, 2, 250]),
      userProperties: [
        ["a", "1"],
        ["b", "2"],
        ["a", "3"],
      ],
    });
    expect([...h]).toEqual([
      ["a", ["1", "3"]],
      ["b", ["2"]],
      ["MQTT-Content-Type", ["text/plain"]],
      ["MQTT-Response-Topic", ["reply/to/me"]],
      ["MQTT-Correlation-Data", [Buffer.from([0, 1, 2, 250]).toString("base64")]],
      ["MQTT-Payload-Format", ["1"]],
    ]);
  });

  it("payload format 0 is the default and gives no header; no properties, no headers", () => {
    expect([...propertiesToHeaders({ payloadFormat: 0 })]).toEqual([]);
    expect([...propertiesToHeaders({})]).toEqual([]);
  });

  it("headers from the hub: MQTT-* (any case) become properties, Nats-* and Leafgate-* are ignored", () => {
    const p = headersToProperties(
      new Map<string, string[]>([
        ["Nats-Msg-Id", ["42"]],
        ["nats-expected-stream", ["S"]],
        ["Leafgate-Origin", ["x"]],
        ["mqtt-content-type", ["application/cbor"]],
        ["MQTT-RESPONSE-TOPIC", ["r/1"]],
        ["Mqtt-Correlation-Data", [Buffer.from("corr").toString("base64")]],
        ["MQTT-Payload-Format", ["1"]],
        ["site", ["north", "south"]],
        ["empty", []],
        ["unit", ["°C"]],
      ]),
    );
    expect(p).toEqual({
      contentType: "application/cbor",
      responseTopic: "r/1",
      correlationData: Buffer.from("corr"),
      payloadFormat: 1,
      userProperties: [
        ["site", "north"],
        ["site", "south"],
        ["unit", "°C"],
      ],
    });
  });

  it("only reserved headers: no properties at all", () => {
    expect(headersToProperties(new Map([["Nats-Msg-Id", ["1"]]]))).toBeUndefined();
    expect(headersToProperties(new Map())).toBeUndefined();
  });

  it("round trip (fast-check): values per name in order, names in first-seen order", () => {
    const name = mqttString.filter((s) => !/^(nats-|leafgate-|mqtt-)/i.test(s));
    fc.assert(
      fc.property(
        messageProperties.map((m) => m),
        fc.array(fc.tuple(name, mqttString), { maxLength: 8 }),
        (base, user) => {
          const p: MessageProperties = {
            ...base,
            ...(user.length > 0 ? { userProperties: user } : { userProperties: undefined }),
          };
          const back = headersToProperties(propertiesToHeaders(p));
          const grouped = new Map<string, string[]>();
          for (const [k, v] of user) grouped.set(k, [...(grouped.get(k) ?? []), v]);
          const expected: Record<string, unknown> = {};
          if (p.payloadFormat === 1) expected.payloadFormat = 1;
          if (p.contentType !== undefined) expected.contentType = p.contentType;
          if (p.responseTopic !== undefined) expected.responseTopic = p.responseTopic;
          if (p.correlationData !== undefined)
            expected.correlationData = Buffer.from(p.correlationData);
          if (user.length > 0)
            expected.userProperties = [...grouped].flatMap(([k, vs]) => vs.map((v) => [k, v]));
          expect(back ?? {}).toEqual(expected);
        },
      ),
      { numRuns: 300 },
    );
  });
});
