// Fuzzing a live gateway process: fast-check feeds random and mutated MQTT bytes, one fresh
// raw TCP connection per run, to the shipped bundle running as a child process (so a crash
// ends the process and shows). Two well-behaved mqtt.js clients, a 3.1.1 publisher and an
// MQTT 5 subscriber, stay connected to the same listener the whole time: every numbered
// message must reach the subscriber once and in order, and neither may be disconnected.
// A table of raw malformed packets then checks the answers the spec or the contract pins.
//
// By default each generator makes 200 runs, however long they take, then goes on until 3 s
// have passed; LEAFGATE_FUZZ_RUNS sets an exact total number of runs instead,
// LEAFGATE_FUZZ_SEED replays the seed a failed run printed (its first 200 runs exactly).
import { connect as netConnect, type Socket } from "node:net";
import fc from "fast-check";
import type { MqttClient } from "mqtt";
import mqttPacket from "mqtt-packet";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type ChildGateway, startGatewayProcess, writeConfig } from "../helpers/gateway.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { stopAll } from "../helpers/procs.js";
import { RawMqtt } from "../helpers/raw-mqtt.js";
import { type TempDir, waitFor } from "../helpers/wait.js";

type Version = 4 | 5;

const FUZZ_RUNS_SET = process.env.LEAFGATE_FUZZ_RUNS;
/** Total runs over the four generators; LEAFGATE_FUZZ_RUNS sets an exact number. */
const FUZZ_RUNS = Number(FUZZ_RUNS_SET ?? 20_000);
/**
 * Unless LEAFGATE_FUZZ_RUNS is set, each generator also stops after this long (past its
 * floor of MIN_RUNS_PER_GENERATOR), so the file takes ~15 s on a fast machine (a run takes
 * ~1 ms on loopback, or QUIET_MS when the server waits for more).
 */
const FUZZ_TIME_LIMIT_MS = FUZZ_RUNS_SET === undefined ? 3_000 : undefined;
/** ... but not before this many runs: fewer would not test much. */
const MIN_RUNS_PER_GENERATOR = 200;
const FUZZ_SEED =
  process.env.LEAFGATE_FUZZ_SEED === undefined ? undefined : Number(process.env.LEAFGATE_FUZZ_SEED);
/** A numbered bystander message goes through after every this many runs. */
const PUBLISH_EVERY_RUNS = 25;
/** A run ends when the server closed the socket, or after this long without a byte from it. */
const QUIET_MS = 500;
/** ... and never later than this, whatever the server keeps sending. */
const RUN_DEADLINE_MS = 3_000;
/** A bystander's PUBACK must not take longer, however busy the machine. */
const PUBACK_DEADLINE_MS = 5_000;
/** A table case's answer and close: milliseconds on loopback, generous for a noisy machine. */
const CLOSE_DEADLINE_MS = 2_000;
/** Lines of the gateway's output shown with a failure. */
const GATEWAY_LOG_LINES = 40;
/** The contract's default mqtt.topic_alias_maximum. */
const TOPIC_ALIAS_MAXIMUM = 64;
/** Placed in generated strings so that a mutation can swap it for bad UTF-8 of equal length. */
const MARK = "~U8~";
const MARK_BYTES = Buffer.from(MARK);
/** Four-byte replacements for MARK: ill-formed UTF-8 [MQTT-1.5.3-1], U+0000 [MQTT-1.5.3-2], controls. */
const BAD_UTF8: readonly (readonly number[])[] = [
  [0xc3, 0x28, 0x61, 0x62], // lead byte followed by a non-continuation
  [0xed, 0xa0, 0x80, 0x61], // UTF-16 surrogate U+D800
  [0x00, 0x61, 0x62, 0x63], // U+0000
  [0xc0, 0x80, 0x61, 0x62], // overlong U+0000
  [0xf8, 0x88, 0x80, 0x80], // five-byte form
  [0xff, 0xfe, 0x61, 0x62], // never valid in UTF-8
  [0x80, 0x61, 0x62, 0x63], // lone continuation byte
  [0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
  [0xef, 0xbf, 0xbf, 0x61], // U+FFFF: well-formed, a non-character (allowed)
  [0xf0, 0x9f, 0x98, 0x80], // U+1F600: valid
];

// -- bytes ----------------------------------------------------------------------------------

function varint(n: number): number[] {
  const out: number[] = [];
  let rest = n;
  do {
    let byte = rest % 128;
    rest = Math.floor(rest / 128);
    if (rest > 0) byte |= 0x80;
    out.push(byte);
  } while (rest > 0);
  return out;
}

/** A Variable Byte Integer at `at` (at most 4 bytes), or undefined if malformed or cut. */
function readVarint(buf: Buffer, at: number): { value: number; size: number } | undefined {
  let value = 0;
  for (let i = 0; i < 4; i++) {
    const byte = buf[at + i];
    if (byte === undefined) return undefined;
    value += (byte & 0x7f) * 128 ** i;
    if ((byte & 0x80) === 0) return { value, size: i + 1 };
  }
  return undefined;
}

/** A packet: first byte, remaining length, body. */
function frame(first: number, body: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([first, ...varint(body.length)]), body]);
}

/** A length-prefixed MQTT string or binary field. */
function field(value: string | Uint8Array): Buffer {
  const bytes = typeof value === "string" ? Buffer.from(value) : Buffer.from(value);
  const length = Buffer.alloc(2);
  length.writeUInt16BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

/** mqtt-packet's encoder; undefined when it refuses the packet. */
function generate(packet: mqttPacket.Packet, version: Version): Buffer | undefined {
  try {
    return mqttPacket.generate(packet, { protocolVersion: version });
  } catch {
    return undefined;
  }
}

/** Like `generate`, for packets a test builds by hand and knows to be encodable. */
function encode(packet: mqttPacket.Packet, version: Version): Buffer {
  return mqttPacket.generate(packet, { protocolVersion: version });
}

interface Layout {
  /** Offset of the body (after the remaining length). */
  body: number;
  /** Offset just past the packet. */
  end: number;
  /** v5: the property section (its length field at `at`, the properties in [start, end)). */
  properties?: { at: number; start: number; end: number };
}

/** Where a well-framed packet's parts are; undefined when it no longer parses that far. */
function layout(buf: Buffer, version: Version): Layout | undefined {
  const remaining = readVarint(buf, 1);
  if (remaining === undefined) return undefined;
  const body = 1 + remaining.size;
  const end = body + remaining.value;
  if (end > buf.length) return undefined;
  if (version !== 5) return { body, end };
  const u16 = (at: number): number => (at + 2 <= end ? buf.readUInt16BE(at) : Number.NaN);
  const type = buf[0]! >> 4;
  let at: number;
  if (type === 1)
    at = body + 2 + u16(body) + 4; // protocol name, level, flags, keepalive
  else if (type === 3) at = body + 2 + u16(body) + (((buf[0]! >> 1) & 3) > 0 ? 2 : 0);
  else if (type >= 4 && type <= 7 && remaining.value >= 4)
    at = body + 3; // id, reason code
  else if (type === 8 || type === 10)
    at = body + 2; // packet id
  else if ((type === 14 || type === 15) && remaining.value >= 2)
    at = body + 1; // reason code
  else return { body, end };
  if (!(at < end)) return { body, end };
  const length = readVarint(buf, at);
  if (length === undefined || at + length.size + length.value > end) return undefined;
  return {
    body,
    end,
    properties: { at, start: at + length.size, end: at + length.size + length.value },
  };
}

/** Replaces a v5 packet's properties with `props`, fixing both length fields. */
function withProperties(buf: Buffer, version: Version, props: Buffer): Buffer {
  const l = layout(buf, version);
  if (l?.properties === undefined) return buf;
  const { at, end } = l.properties;
  const body = Buffer.concat([
    buf.subarray(l.body, at),
    Buffer.from(varint(props.length)),
    props,
    buf.subarray(end, l.end),
  ]);
  return Buffer.concat([frame(buf[0]!, body), buf.subarray(l.end)]);
}

function propertiesOf(buf: Buffer, version: Version): Buffer | undefined {
  const p = layout(buf, version)?.properties;
  return p === undefined ? undefined : buf.subarray(p.start, p.end);
}

// -- mutations --------------------------------------------------------------------------------

type Mutation =
  | { kind: "flip"; pos: number; bit: number }
  | { kind: "truncate"; keep: number }
  | { kind: "insert"; pos: number; bytes: Uint8Array }
  | { kind: "delete"; pos: number; count: number }
  /** The remaining length replaced: huge, 5-byte, non-minimal or random. */
  | { kind: "remainingLength"; bytes: readonly number[] }
  | { kind: "flags"; nibble: number }
  | { kind: "type"; nibble: number }
  /** A property id that is unknown, or not allowed in this packet, or a varint id. */
  | { kind: "bogusProperty"; id: readonly number[]; value: Uint8Array; first: boolean }
  | { kind: "duplicateProperties" }
  /** The property length lies, the rest of the packet unchanged. */
  | { kind: "propertyLength"; bytes: readonly number[] }
  | { kind: "badUtf8"; replacement: readonly number[]; which: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant("flip"), pos: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant("truncate"), keep: fc.nat() }),
  fc.record({
    kind: fc.constant("insert"),
    pos: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }),
  }),
  fc.record({ kind: fc.constant("delete"), pos: fc.nat(), count: fc.integer({ min: 1, max: 4 }) }),
  fc.record({
    kind: fc.constant("remainingLength"),
    bytes: fc.oneof(
      fc.constantFrom(
        [0xff, 0xff, 0xff, 0x7f], // 268,435,455: the largest there is
        [0xff, 0xff, 0xff, 0xff, 0x01], // five bytes [MQTT-1.5.5]
        [0x80, 0x80, 0x80, 0x80, 0x00],
        [0x80, 0x80, 0x80, 0x80, 0x80, 0x80],
        [0x80, 0x00], // non-minimal zero
        [0x00],
        [0xff, 0x7f],
      ),
      fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 5 }),
    ),
  }),
  fc.record({ kind: fc.constant("flags"), nibble: fc.integer({ min: 0, max: 15 }) }),
  fc.record({ kind: fc.constant("type"), nibble: fc.integer({ min: 0, max: 15 }) }),
  fc.record({
    kind: fc.constant("bogusProperty"),
    id: fc.constantFrom(
      [0x00],
      [0x04],
      [0x10],
      [0x2b],
      [0x7f],
      [0x80, 0x01], // a property id as a two-byte varint
      [0xff, 0xff, 0xff, 0x7f],
      [0x0b], // Subscription Identifier: never from a client in PUBLISH
      [0x12], // Assigned Client Identifier: server only
      [0x13], // Server Keep Alive: server only
      [0x24], // Maximum QoS: CONNACK only
      [0x23], // Topic Alias
      [0x01], // Payload Format Indicator
    ),
    value: fc.uint8Array({ maxLength: 6 }),
    first: fc.boolean(),
  }),
  fc.constant({ kind: "duplicateProperties" as const }),
  fc.record({
    kind: fc.constant("propertyLength"),
    bytes: fc.oneof(
      fc.constantFrom([0xff, 0xff, 0xff, 0x7f], [0xff, 0xff, 0xff, 0xff, 0x01], [0x01], [0x00]),
      fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 4 }),
    ),
  }),
  fc.record({
    kind: fc.constant("badUtf8"),
    replacement: fc.constantFrom(...BAD_UTF8),
    which: fc.nat(),
  }),
);

function mutate(buf: Buffer, m: Mutation, version: Version): Buffer {
  const at = (pos: number, extra = 0): number => pos % (buf.length + extra);
  switch (m.kind) {
    case "flip": {
      if (buf.length === 0) return buf;
      const out = Buffer.from(buf);
      out[at(m.pos)]! ^= 1 << m.bit;
      return out;
    }
    case "truncate":
      return buf.subarray(0, at(m.keep));
    case "insert": {
      const pos = at(m.pos, 1);
      return Buffer.concat([buf.subarray(0, pos), m.bytes, buf.subarray(pos)]);
    }
    case "delete": {
      if (buf.length === 0) return buf;
      const pos = at(m.pos);
      return Buffer.concat([buf.subarray(0, pos), buf.subarray(pos + m.count)]);
    }
    case "remainingLength": {
      if (buf.length === 0) return buf;
      const old = readVarint(buf, 1)?.size ?? 1;
      return Buffer.concat([buf.subarray(0, 1), Buffer.from(m.bytes), buf.subarray(1 + old)]);
    }
    case "flags":
    case "type": {
      if (buf.length === 0) return buf;
      const out = Buffer.from(buf);
      out[0] =
        m.kind === "flags" ? (out[0]! & 0xf0) | m.nibble : (m.nibble << 4) | (out[0]! & 0x0f);
      return out;
    }
    case "bogusProperty": {
      const props = propertiesOf(buf, version);
      if (props === undefined) return buf;
      const bogus = Buffer.from([...m.id, ...m.value]);
      return withProperties(
        buf,
        version,
        m.first ? Buffer.concat([bogus, props]) : Buffer.concat([props, bogus]),
      );
    }
    case "duplicateProperties": {
      const props = propertiesOf(buf, version);
      if (props === undefined || props.length === 0) return buf;
      return withProperties(buf, version, Buffer.concat([props, props]));
    }
    case "propertyLength": {
      const p = layout(buf, version)?.properties;
      if (p === undefined) return buf;
      const l = layout(buf, version)!;
      const body = Buffer.concat([
        buf.subarray(l.body, p.at),
        Buffer.from(m.bytes),
        buf.subarray(p.start, l.end),
      ]);
      return Buffer.concat([frame(buf[0]!, body), buf.subarray(l.end)]);
    }
    case "badUtf8": {
      const found: number[] = [];
      for (let i = buf.indexOf(MARK_BYTES); i >= 0; i = buf.indexOf(MARK_BYTES, i + 1)) {
        found.push(i);
      }
      if (found.length === 0) return buf;
      const out = Buffer.from(buf);
      out.set(m.replacement, found[m.which % found.length]!);
      return out;
    }
  }
}

// -- packet arbitraries -------------------------------------------------------------------------

const qosArb = fc.constantFrom<0 | 1 | 2>(0, 1, 2);
const bytesArb = fc.uint8Array({ maxLength: 48 }).map((b) => Buffer.from(b));
const textArb = fc.oneof(
  fc.constantFrom("", "a", MARK, `x${MARK}y`, "é✓"),
  fc.string({ unit: "grapheme-ascii", maxLength: 12 }),
);
// Never under fuzz/ok/: fuzzed publishes must not reach the bystander subscriber.
const topicArb = fc.constantFrom(
  "f/a",
  "f/b/c",
  `f/${MARK}`,
  "$SYS/x",
  "f/+",
  "f/#",
  "",
  "/",
  "f//g",
  "f/é/✓",
);
const validTopicArb = fc.constantFrom("f/a", "f/b/c", `f/${MARK}`, "f/é/✓");
const filterArb = fc.constantFrom(
  "f/#",
  "f/+/c",
  "#",
  "+",
  `f/${MARK}/#`,
  "$share/g/f/#",
  "$share/g",
  "$share//f",
  "f/#/x",
  "f+",
  "",
  "$SYS/#",
  "f/a",
);
const clientIdArb = fc.oneof(
  fc.constantFrom("", "fz-a", "fz-b", `fz${MARK}`),
  fc.string({ unit: "grapheme-ascii", maxLength: 20 }).map((s) => `fz${s}`),
);
const userPropertiesArb = fc.dictionary(
  fc.constantFrom("k", "k2", MARK, "é"),
  fc.oneof(textArb, fc.array(textArb, { minLength: 1, maxLength: 3 })),
  { maxKeys: 3 },
);
const messageIdArb = fc.oneof(fc.constantFrom(1, 2, 0xffff), fc.integer({ min: 1, max: 0xffff }));

/**
 * CONNECT packets; `accepted` keeps to those the server should accept (valid will topic,
 * no enhanced authentication, no zero limits), so that the packets behind them reach the
 * connected state.
 */
function connectArb(version: Version, accepted = false): fc.Arbitrary<mqttPacket.IConnectPacket> {
  const v5 = version === 5;
  const willTopic = accepted ? validTopicArb : topicArb;
  return fc
    .record(
      {
        clientId: clientIdArb,
        clean: fc.boolean(),
        keepalive: fc.constantFrom(0, 1, 30, 65_535),
        username: textArb,
        password: bytesArb,
        will: fc.record(
          {
            topic: willTopic,
            payload: bytesArb,
            qos: qosArb,
            retain: fc.boolean(),
            ...(v5
              ? {
                  properties: fc.record(
                    {
                      willDelayInterval: fc.constantFrom(0, 1, 0xffff_ffff),
                      payloadFormatIndicator: fc.boolean(),
                      messageExpiryInterval: fc.constantFrom(0, 60),
                      contentType: textArb,
                      responseTopic: willTopic,
                      correlationData: bytesArb,
                      userProperties: userPropertiesArb,
                    },
                    { requiredKeys: [] },
                  ),
                }
              : {}),
          },
          { requiredKeys: ["topic", "payload", "qos", "retain"] },
        ),
        ...(v5
          ? {
              properties: fc.record(
                {
                  sessionExpiryInterval: fc.constantFrom(0, 10, 0xffff_ffff),
                  receiveMaximum: accepted
                    ? fc.constantFrom(1, 10, 0xffff)
                    : fc.constantFrom(0, 1, 10, 0xffff),
                  maximumPacketSize: accepted
                    ? fc.constantFrom(256, 1_000_000)
                    : fc.constantFrom(0, 1, 64, 1_000_000),
                  topicAliasMaximum: fc.constantFrom(0, 1, 0xffff),
                  requestResponseInformation: fc.boolean(),
                  requestProblemInformation: fc.boolean(),
                  userProperties: userPropertiesArb,
                  ...(accepted
                    ? {}
                    : {
                        authenticationMethod: fc.constantFrom("SCRAM-SHA-1", MARK),
                        authenticationData: bytesArb,
                      }),
                },
                { requiredKeys: [] },
              ),
            }
          : {}),
      },
      { requiredKeys: ["clientId", "clean", "keepalive"] },
    )
    .map((p) => {
      const packet = {
        cmd: "connect",
        protocolId: "MQTT",
        protocolVersion: version,
        ...p,
      } as const;
      if (!accepted || v5) return packet;
      // 3.1.1 refuses an empty client id without clean session, a password without a user.
      return {
        ...packet,
        clean: packet.clean || packet.clientId === "",
        ...(packet.username === undefined ? { password: undefined } : {}),
      };
    });
}

function publishArb(): fc.Arbitrary<mqttPacket.IPublishPacket> {
  return fc.record({
    cmd: fc.constant("publish"),
    topic: topicArb,
    payload: bytesArb,
    qos: qosArb,
    dup: fc.boolean(),
    retain: fc.boolean(),
    messageId: messageIdArb,
    properties: fc.record(
      {
        payloadFormatIndicator: fc.boolean(),
        messageExpiryInterval: fc.constantFrom(0, 1, 3600),
        topicAlias: fc.constantFrom(0, 1, 2, TOPIC_ALIAS_MAXIMUM, TOPIC_ALIAS_MAXIMUM + 1, 0xffff),
        responseTopic: topicArb,
        correlationData: bytesArb,
        userProperties: userPropertiesArb,
        subscriptionIdentifier: fc.constantFrom(0, 1, 0x0fff_ffff),
        contentType: textArb,
      },
      { requiredKeys: [] },
    ),
  }) as fc.Arbitrary<mqttPacket.IPublishPacket>;
}

function subscribeArb(version: Version): fc.Arbitrary<mqttPacket.ISubscribePacket> {
  const subscription = fc.record(
    {
      topic: filterArb,
      qos: qosArb,
      ...(version === 5
        ? { nl: fc.boolean(), rap: fc.boolean(), rh: fc.integer({ min: 0, max: 2 }) }
        : {}),
    },
    { requiredKeys: ["topic", "qos"] },
  );
  return fc.record({
    cmd: fc.constant("subscribe"),
    messageId: messageIdArb,
    subscriptions: fc.array(subscription, { minLength: 1, maxLength: 3 }),
    properties: fc.record(
      {
        subscriptionIdentifier: fc.constantFrom(0, 1, 0x0fff_ffff),
        userProperties: userPropertiesArb,
      },
      { requiredKeys: [] },
    ),
  }) as fc.Arbitrary<mqttPacket.ISubscribePacket>;
}

function otherPacketArb(version: Version): fc.Arbitrary<mqttPacket.Packet> {
  const reasonCode = fc.constantFrom(0x00, 0x04, 0x10, 0x80, 0x92);
  const ack = (cmd: "puback" | "pubrec" | "pubrel" | "pubcomp") =>
    fc.record(
      { cmd: fc.constant(cmd), messageId: messageIdArb, reasonCode },
      { requiredKeys: ["cmd", "messageId"] },
    );
  const packets: fc.Arbitrary<mqttPacket.Packet>[] = [
    fc.record({
      cmd: fc.constant("unsubscribe"),
      messageId: messageIdArb,
      unsubscriptions: fc.array(filterArb, { minLength: 1, maxLength: 3 }),
      properties: fc.record({ userProperties: userPropertiesArb }, { requiredKeys: [] }),
    }) as fc.Arbitrary<mqttPacket.Packet>,
    fc.constant({ cmd: "pingreq" } as const),
    fc.record(
      {
        cmd: fc.constant("disconnect"),
        reasonCode: fc.constantFrom(0x00, 0x04, 0x80),
        properties: fc.record(
          { sessionExpiryInterval: fc.constantFrom(0, 10), reasonString: textArb },
          { requiredKeys: [] },
        ),
      },
      { requiredKeys: ["cmd"] },
    ),
    ack("puback"),
    ack("pubrec"),
    ack("pubrel"),
    ack("pubcomp"),
  ];
  if (version === 5) {
    packets.push(
      fc.record(
        {
          cmd: fc.constant("auth"),
          reasonCode: fc.constantFrom(0x00, 0x18, 0x19),
          properties: fc.record(
            {
              authenticationMethod: fc.constantFrom("SCRAM-SHA-1", MARK),
              authenticationData: bytesArb,
              reasonString: textArb,
            },
            { requiredKeys: [] },
          ),
        },
        { requiredKeys: ["cmd", "reasonCode"] },
      ) as fc.Arbitrary<mqttPacket.Packet>,
    );
  }
  return fc.oneof(...packets);
}

/** Packets a client may send, encoded by mqtt-packet (which drops what it cannot encode). */
function validPacketArb(version: Version, connects = true): fc.Arbitrary<Buffer> {
  const packets: fc.WeightedArbitrary<mqttPacket.Packet>[] = [
    { arbitrary: publishArb(), weight: 3 },
    { arbitrary: subscribeArb(version), weight: 2 },
    { arbitrary: otherPacketArb(version), weight: 2 },
  ];
  if (connects) packets.push({ arbitrary: connectArb(version), weight: 2 });
  return fc
    .oneof(...packets)
    .map((p) => generate(p, version))
    .filter((b): b is Buffer => b !== undefined);
}

const versionArb = fc.constantFrom<Version>(4, 5);

/** A valid packet with 0..`max` mutations applied in order. */
function mutatedArb(version: Version, min: number, max: number, connects = true) {
  return fc
    .tuple(
      validPacketArb(version, connects),
      fc.array(mutationArb, { minLength: min, maxLength: max }),
    )
    .map(([packet, mutations]) => mutations.reduce((b, m) => mutate(b, m, version), packet));
}

/**
 * A CONNECT the server accepts, then packets (some valid, not CONNECT: the table checks a
 * second CONNECT) mostly of the same version.
 */
const sessionArb = versionArb.chain((version) =>
  fc
    .tuple(
      connectArb(version, true)
        .map((p) => generate(p, version))
        .filter((b): b is Buffer => b !== undefined),
      // Mostly intact packets, so that the stream gets past its first one now and then.
      fc.array(
        fc
          .oneof(
            { arbitrary: fc.constant(version), weight: 7 },
            { arbitrary: fc.constant<Version>(version === 4 ? 5 : 4), weight: 1 },
          )
          .chain((v) =>
            fc.oneof(
              { arbitrary: mutatedArb(v, 0, 0, false), weight: 3 },
              { arbitrary: mutatedArb(v, 1, 2, false), weight: 2 },
            ),
          ),
        { minLength: 1, maxLength: 6 },
      ),
    )
    .map(([connect, rest]) => ({ version, packets: [connect, ...rest] })),
);

interface FuzzInput {
  readonly chunks: readonly Buffer[];
  /** Yield to the event loop between chunks, so the server reads them separately. */
  readonly paced: boolean;
}

const VALID_CONNECTS: readonly Buffer[] = ([4, 5] as const).map((v) =>
  encode({ cmd: "connect", clientId: "", protocolVersion: v, clean: true, keepalive: 30 }, v),
);

/** (a) random bytes, alone or after a valid CONNECT. */
const rawInputArb: fc.Arbitrary<FuzzInput> = fc
  .tuple(
    // fast-check keeps arrays short unless asked for the whole range.
    fc.oneof(fc.uint8Array({ maxLength: 512, size: "max" }), fc.uint8Array({ maxLength: 16 })),
    // Behind a valid CONNECT the bytes reach the connected state's parser.
    fc.option(fc.constantFrom(...VALID_CONNECTS), { nil: undefined }),
  )
  .map(([bytes, connect]) => ({
    chunks: connect === undefined ? [Buffer.from(bytes)] : [connect, Buffer.from(bytes)],
    paced: false,
  }));

/** (b) one valid packet, mutated. */
const mutatedInputArb: fc.Arbitrary<FuzzInput> = versionArb
  .chain((version) => mutatedArb(version, 1, 3))
  .map((b) => ({ chunks: [b], paced: false }));

/** (c) a valid CONNECT followed by mutated packets, each its own write. */
const sessionInputArb: fc.Arbitrary<FuzzInput> = sessionArb.map(({ packets }) => ({
  chunks: packets,
  paced: false,
}));

/** (d) such a sequence cut into random chunks (or single bytes), written one turn apart. */
const chunkedInputArb: fc.Arbitrary<FuzzInput> = fc
  .tuple(sessionArb, fc.array(fc.nat(), { maxLength: 12 }), fc.boolean())
  .map(([{ packets }, cuts, byteByByte]) => {
    const all = Buffer.concat(packets);
    if (byteByByte && all.length <= 128) {
      return { chunks: [...all].map((b) => Buffer.from([b])), paced: true };
    }
    const at = [...new Set(cuts.map((c) => c % (all.length + 1)))].sort((a, b) => a - b);
    const chunks: Buffer[] = [];
    let from = 0;
    for (const to of [...at, all.length]) {
      if (to > from) chunks.push(all.subarray(from, to));
      from = to;
    }
    return { chunks, paced: true };
  });

// -- raw connections -------------------------------------------------------------------------

const rawSockets = new Set<Socket>();

/**
 * Opens a raw TCP connection, writes `input`, half-closes, and waits until the server
 * closes or goes quiet (bounded by RUN_DEADLINE_MS). The server may close at any point.
 */
async function feed(port: number, input: FuzzInput): Promise<void> {
  const socket = netConnect({ host: "127.0.0.1", port });
  rawSockets.add(socket);
  // Writes after the server closed fail with EPIPE/ECONNRESET: expected, "close" follows.
  socket.on("error", () => {});
  let quiet: NodeJS.Timeout | undefined;
  let deadline: NodeJS.Timeout | undefined;
  let finish: () => void = () => {};
  const ended = new Promise<void>((resolve) => {
    finish = () => {
      clearTimeout(quiet);
      clearTimeout(deadline);
      resolve();
    };
  });
  socket.once("close", () => finish());
  deadline = setTimeout(() => finish(), RUN_DEADLINE_MS);
  const connected = await new Promise<boolean>((resolve) => {
    socket.once("connect", () => resolve(true));
    socket.once("close", () => resolve(false));
  });
  if (connected) {
    for (const [i, chunk] of input.chunks.entries()) {
      if (!socket.writable) break;
      socket.write(chunk);
      if (input.paced && i < input.chunks.length - 1) await new Promise(setImmediate);
    }
    socket.end();
    const arm = () => {
      clearTimeout(quiet);
      quiet = setTimeout(() => finish(), QUIET_MS);
    };
    socket.on("data", arm);
    arm();
  }
  await ended;
  socket.destroy();
  rawSockets.delete(socket);
}

/** The gateway's state and the tail of its output (all of it can be a megabyte of warnings). */
function describeGateway(gw: ChildGateway): string {
  const tail = (text: string) => text.trimEnd().split("\n").slice(-GATEWAY_LOG_LINES).join("\n");
  return [
    `${gw.proc.command} (pid ${gw.proc.pid}, ${gw.proc.exitInfo ? `exited ${JSON.stringify(gw.proc.exitInfo)}` : "running"})`,
    `--- stdout, last ${GATEWAY_LOG_LINES} lines ---\n${tail(gw.proc.stdout())}`,
    `--- stderr, last ${GATEWAY_LOG_LINES} lines ---\n${tail(gw.proc.stderr())}`,
  ].join("\n");
}

function describeInput(input: FuzzInput): string {
  return `${input.chunks.map((c) => hex(c)).join(" | ")}${input.paced ? " (paced)" : ""}`;
}

async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Sums every sample of `name` in a Prometheus text exposition. */
function metricSum(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) {
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return sum;
}

// -- the fuzz --------------------------------------------------------------------------------

describe("fuzzing a live gateway process with random and mutated MQTT bytes", () => {
  let dir: TempDir | undefined;
  let gw: ChildGateway;
  let publisher: MqttClient | undefined;
  let subscriber: MqttClient | undefined;
  const clients: MqttClient[] = [];
  /** close/offline/disconnect/error events of the two bystanders. */
  const disruptions: string[] = [];
  const received: { topic: string; payload: string; qos: number }[] = [];
  let published = 0;
  let runs = 0;
  /** Runs every generator was sure to make, whatever the time limit. */
  let floorRuns = 0;
  let previous = "(none)";

  beforeAll(async () => {
    const config = writeConfig({ gateway: { id: "fuzz" } });
    dir = config.dir;
    gw = await startGatewayProcess(config.file);
    const watch = (client: MqttClient, name: string): void => {
      clients.push(client);
      for (const event of ["close", "offline", "disconnect", "error"] as const) {
        client.on(event, (arg: unknown) =>
          disruptions.push(`${name} ${event}${arg instanceof Error ? `: ${arg.message}` : ""}`),
        );
      }
    };
    subscriber = await connectMqttJs(gw.mqttPort, {
      clientId: "fuzz-bystander-v5-sub",
      protocolVersion: 5,
    });
    watch(subscriber, "v5 subscriber");
    subscriber.on("message", (topic, payload, packet) =>
      received.push({ topic, payload: payload.toString(), qos: packet.qos }),
    );
    const granted = await subscriber.subscribeAsync("fuzz/ok/#", { qos: 1 });
    expect(granted.map((g) => g.qos)).toEqual([1]);
    publisher = await connectMqttJs(gw.mqttPort, {
      clientId: "fuzz-bystander-v311-pub",
      protocolVersion: 4,
    });
    watch(publisher, "3.1.1 publisher");
  });

  afterEach(() => {
    for (const socket of rawSockets) socket.destroy();
    rawSockets.clear();
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => {})));
    await stopAll();
    await dir?.cleanup();
  });

  async function publishNumbered(): Promise<void> {
    published++;
    await withDeadline(
      publisher!.publishAsync(`fuzz/ok/${published}`, String(published), { qos: 1 }),
      PUBACK_DEADLINE_MS,
      `bystander publish ${published}`,
    );
  }

  /** One run: the bytes go in, then the gateway must still run and the bystanders be connected. */
  async function run(input: FuzzInput): Promise<void> {
    try {
      await feed(gw.mqttPort, input);
      runs++;
      if (gw.proc.exitInfo !== undefined) throw new Error("the gateway exited");
      if (disruptions.length > 0) {
        throw new Error(`a bystander was disturbed: ${disruptions.join("; ")}`);
      }
      if (runs % PUBLISH_EVERY_RUNS === 0) await publishNumbered();
    } catch (err) {
      // A process that just died takes a moment to be reaped: wait for that (bounded)
      // so that the message says whether it crashed.
      await withDeadline(gw.proc.exited, 1_000, "exit").catch(() => undefined);
      throw new Error(
        `${err instanceof Error ? err.message : String(err)}, at run ${runs}: ${describeInput(input)}\n` +
          `(the run before: ${previous})\n${describeGateway(gw)}`,
        { cause: err },
      );
    } finally {
      previous = describeInput(input);
    }
  }

  let inFlight: Promise<void> | undefined;
  const tracked = (input: FuzzInput): Promise<void> => {
    inFlight = run(input);
    return inFlight;
  };

  /** `numRuns` runs of `arb` (fewer if `timeLimitMs` passes first); returns how many ran. */
  async function check(
    arb: fc.Arbitrary<FuzzInput>,
    numRuns: number,
    seed: number | undefined,
    timeLimitMs?: number,
  ): Promise<number> {
    const before = runs;
    // A crash is not undone by shrinking: report the input that was running, not a
    // "smaller" one that merely met a dead process.
    await fc.assert(fc.asyncProperty(arb, tracked), {
      numRuns,
      endOnFailure: true,
      ...(timeLimitMs === undefined ? {} : { interruptAfterTimeLimit: timeLimitMs }),
      ...(seed === undefined ? {} : { seed }),
    });
    // A time limit interrupts fast-check, not the run it was awaiting: that run goes on,
    // and must end (or fail the test) before the next one starts.
    await inFlight;
    return runs - before;
  }

  async function fuzz(arb: fc.Arbitrary<FuzzInput>, share: number): Promise<void> {
    const numRuns = Math.max(1, Math.round(FUZZ_RUNS * share));
    const startedAt = Date.now();
    // A busy machine must not make a generator run less than its floor: the floor runs
    // first, whatever it takes; only the rest is cut by the time limit.
    const floor =
      FUZZ_TIME_LIMIT_MS === undefined ? numRuns : Math.min(numRuns, MIN_RUNS_PER_GENERATOR);
    expect(await check(arb, floor, FUZZ_SEED)).toBe(floor);
    floorRuns += floor;
    const leftMs = (FUZZ_TIME_LIMIT_MS ?? 0) - (Date.now() - startedAt);
    if (numRuns > floor && leftMs > 0) {
      const seed = FUZZ_SEED === undefined ? undefined : FUZZ_SEED + 1;
      expect(await check(arb, numRuns - floor, seed, leftMs)).toBeLessThanOrEqual(numRuns - floor);
    }
    await publishNumbered();
  }

  const timeoutMs = FUZZ_TIME_LIMIT_MS === undefined ? Math.max(60_000, FUZZ_RUNS * 50) : 60_000;

  it("(a) random bytes", () => fuzz(rawInputArb, 0.2), timeoutMs);
  it("(b) valid packets, mutated", () => fuzz(mutatedInputArb, 0.3), timeoutMs);
  it("(c) a valid CONNECT, then mutated packets", () => fuzz(sessionInputArb, 0.25), timeoutMs);
  it(
    "(d) CONNECT and mutated packets in random chunks",
    () => fuzz(chunkedInputArb, 0.25),
    timeoutMs,
  );

  it("the gateway survived, counted the bad input, and the bystanders saw nothing", async () => {
    // (Zero only if this test runs alone, filtered.)
    expect(runs).toBeGreaterThanOrEqual(floorRuns);
    expect(gw.proc.exitInfo, describeGateway(gw)).toBeUndefined();

    const health = await fetch(`http://127.0.0.1:${gw.httpPort}/healthz`);
    expect(health.status).toBe(200);
    await health.text();
    const metrics = await (await fetch(`http://127.0.0.1:${gw.httpPort}/metrics`)).text();
    // Which inputs break the protocol is not known ahead (random bytes can be a valid
    // prefix, a fuzzed DISCONNECT is fine): at most one error per fuzz connection, as the
    // first closes it, none from the bystanders, and some at all if anything ran.
    const protocolErrors = metricSum(metrics, "leafgate_mqtt_protocol_errors_total");
    expect(protocolErrors).toBeLessThanOrEqual(runs);
    expect(protocolErrors).toBeGreaterThanOrEqual(floorRuns >= MIN_RUNS_PER_GENERATOR ? 1 : 0);

    // A marker after the last numbered message: whatever was coming has arrived with it.
    await withDeadline(
      publisher!.publishAsync("fuzz/ok/end", "end", { qos: 1 }),
      PUBACK_DEADLINE_MS,
      "bystander end marker",
    );
    await waitFor(() => received.some((r) => r.topic === "fuzz/ok/end"), {
      message: () => `the end marker did not arrive; got ${received.map((r) => r.topic).join(",")}`,
    });
    const numbered = Array.from({ length: published }, (_, i) => ({
      topic: `fuzz/ok/${i + 1}`,
      payload: String(i + 1),
      qos: 1,
    }));
    expect(received).toEqual([...numbered, { topic: "fuzz/ok/end", payload: "end", qos: 1 }]);
    expect(disruptions).toEqual([]);
    expect(subscriber!.connected).toBe(true);
    expect(publisher!.connected).toBe(true);
  });

  it("the gateway wrote nothing to stderr: no Node warnings, no uncaught errors", () => {
    // Logs go to stdout; stderr gets what Node itself reports, e.g. a TimeoutOverflowWarning
    // for a timer longer than 2^31-1 ms, which then fires after 1 ms.
    const distinct = new Set(
      gw.proc
        .stderr()
        .split("\n")
        .filter((line) => line !== ""),
    );
    expect([...distinct].join("\n")).toBe("");
  });

  it.each([4, 5] as const)(
    "a brand-new MQTT %s client connects, subscribes, publishes QoS 1 and 2, and receives",
    async (protocolVersion) => {
      const client = await connectMqttJs(gw.mqttPort, {
        clientId: `fuzz-after-v${protocolVersion}`,
        protocolVersion,
      });
      clients.push(client);
      const got: { topic: string; payload: string; qos: number }[] = [];
      client.on("message", (topic, payload, packet) =>
        got.push({ topic, payload: payload.toString(), qos: packet.qos }),
      );
      const granted = await client.subscribeAsync(`fuzz/after/${protocolVersion}/#`, { qos: 2 });
      expect(granted.map((g) => g.qos)).toEqual([2]);
      await client.publishAsync(`fuzz/after/${protocolVersion}/one`, "1", { qos: 1 });
      await client.publishAsync(`fuzz/after/${protocolVersion}/two`, "2", { qos: 2 });
      await waitFor(() => got.length >= 2, { message: () => `got ${JSON.stringify(got)}` });
      expect(got).toEqual([
        { topic: `fuzz/after/${protocolVersion}/one`, payload: "1", qos: 1 },
        { topic: `fuzz/after/${protocolVersion}/two`, payload: "2", qos: 2 },
      ]);
      await client.endAsync();
      expect(gw.proc.exitInfo).toBeUndefined();
    },
  );
});

// -- malformed packets with a pinned answer ------------------------------------------------------

const gen4 = (p: mqttPacket.Packet): Buffer => encode(p, 4);
const gen5 = (p: mqttPacket.Packet): Buffer => encode(p, 5);
const CONNECT4 = gen4({
  cmd: "connect",
  clientId: "",
  protocolVersion: 4,
  clean: true,
  keepalive: 30,
});
const CONNECT5 = gen5({
  cmd: "connect",
  clientId: "",
  protocolVersion: 5,
  clean: true,
  keepalive: 30,
});
const connect5 = (properties: mqttPacket.IConnectPacket["properties"]): Buffer =>
  gen5({
    cmd: "connect",
    clientId: "",
    protocolVersion: 5,
    clean: true,
    keepalive: 30,
    properties,
  });
const publish = (
  version: Version,
  topic: string | Buffer,
  properties?: mqttPacket.IPublishPacket["properties"],
  extra: { qos?: 0 | 1; payload?: Buffer } = {},
): Buffer =>
  encode(
    {
      cmd: "publish",
      topic: topic as string, // mqtt-packet also encodes a Buffer as it is
      payload: extra.payload ?? Buffer.from("x"),
      qos: extra.qos ?? 0,
      dup: false,
      retain: false,
      messageId: 7,
      ...(properties ? { properties } : {}),
    },
    version,
  );
const subscribe = (
  version: Version,
  subscriptions: mqttPacket.ISubscription[],
  properties?: mqttPacket.ISubscribePacket["properties"],
): Buffer =>
  encode(
    { cmd: "subscribe", messageId: 3, subscriptions, ...(properties ? { properties } : {}) },
    version,
  );
/** The CONNECT flags byte (after name, level) set to `flags`. */
function withConnectFlags(connect: Buffer, flags: (old: number) => number): Buffer {
  const out = Buffer.from(connect);
  const at = layout(out, 4)!.body + 2 + out.readUInt16BE(layout(out, 4)!.body) + 1;
  out[at] = flags(out[at]!);
  return out;
}
function withFirstByte(packet: Buffer, first: number): Buffer {
  const out = Buffer.from(packet);
  out[0] = first;
  return out;
}
/** A v5 packet with its first property written twice. */
function duplicateFirstProperty(packet: Buffer, propertySize: number): Buffer {
  const props = propertiesOf(packet, 5)!;
  return withProperties(packet, 5, Buffer.concat([props.subarray(0, propertySize), props]));
}

/** What the server wrote, one line per packet, e.g. "CONNACK 0x00", "DISCONNECT 0x94". */
function summarize(raw: RawMqtt): string[] {
  const code = (n: number | undefined) => `0x${(n ?? 0).toString(16).padStart(2, "0")}`;
  const out = raw.packets.map((p) => {
    switch (p.cmd) {
      case "connack":
        return raw.version === 5 ? `CONNACK ${code(p.reasonCode)}` : `CONNACK ${p.returnCode}`;
      case "disconnect":
      case "puback":
      case "pubrec":
      case "pubcomp":
        return `${p.cmd.toUpperCase()} ${code(p.reasonCode)}`;
      case "suback":
        return ["SUBACK", ...(p.granted as number[]).map(code)].join(" ");
      default:
        return p.cmd.toUpperCase();
    }
  });
  if (raw.parseError) out.push(`unparseable (${raw.parseError.message})`);
  return out;
}

interface PinnedCase {
  readonly name: string;
  readonly version: Version;
  readonly bytes: readonly Buffer[];
  /** Every acceptable answer, as `summarize` lines. */
  readonly answers: readonly (readonly string[])[];
  /** The server must close the connection (default); else it must stay open. */
  readonly closes?: boolean;
}

const OK4 = "CONNACK 0";
const OK5 = "CONNACK 0x00";
/** v5: the server may send a DISCONNECT with the reason before it closes [MQTT-4.13.2-1]. */
const closedAfter = (reason: string, before: readonly string[] = [OK5]) => [
  before,
  [...before, `DISCONNECT ${reason}`],
];

const PINNED: readonly PinnedCase[] = [
  {
    name: "3.1.1 CONNECT with the reserved flag set: closed without CONNACK [MQTT-3.1.2-3]",
    version: 4,
    bytes: [withConnectFlags(CONNECT4, (f) => f | 0x01)],
    answers: [[]],
  },
  {
    name: "v5 CONNECT with the reserved flag set: closed, no accepting CONNACK [MQTT-3.1.2-3]",
    version: 5,
    bytes: [withConnectFlags(CONNECT5, (f) => f | 0x01)],
    answers: [[], ["CONNACK 0x81"]],
  },
  {
    name: "3.1.1 CONNECT with Will QoS 1 but no Will Flag: closed [MQTT-3.1.2-13]",
    version: 4,
    bytes: [withConnectFlags(CONNECT4, (f) => f | 0x08)],
    answers: [[]],
  },
  {
    name: "3.1.1 CONNECT with a password but no user name: closed [MQTT-3.1.2-22]",
    version: 4,
    bytes: [
      frame(
        0x10,
        Buffer.concat([
          field("MQTT"),
          Buffer.from([4, 0x42, 0, 30]), // password flag, clean session
          field(""),
          field("secret"),
        ]),
      ),
    ],
    answers: [[]],
  },
  {
    name: "3.1.1 CONNECT with an ill-formed UTF-8 client id: closed [MQTT-1.5.3-1]",
    version: 4,
    bytes: [
      frame(
        0x10,
        Buffer.concat([
          field("MQTT"),
          Buffer.from([4, 0x02, 0, 30]),
          field(Buffer.from([0x61, 0xc3, 0x28])),
        ]),
      ),
    ],
    answers: [[], ["CONNACK 2"]],
  },
  {
    name: "3.1.1 PINGREQ as the first packet: closed [MQTT-3.1.0-1]",
    version: 4,
    bytes: [Buffer.from([0xc0, 0x00])],
    answers: [[]],
  },
  {
    name: "3.1.1 SUBSCRIBE as the first packet: closed [MQTT-3.1.0-1]",
    version: 4,
    bytes: [subscribe(4, [{ topic: "a/b", qos: 0 }])],
    answers: [[]],
  },
  {
    name: "v5 PUBLISH as the first packet: closed [MQTT-3.1.0-1]",
    version: 5,
    bytes: [publish(5, "a/b")],
    answers: [[]],
  },
  {
    name: "3.1.1 second CONNECT: closed [MQTT-3.1.0-2]",
    version: 4,
    bytes: [CONNECT4, CONNECT4],
    answers: [[OK4]],
  },
  {
    name: "v5 second CONNECT: closed, protocol error [MQTT-3.1.0-2]",
    version: 5,
    bytes: [CONNECT5, CONNECT5],
    answers: closedAfter("0x82"),
  },
  {
    name: "3.1.1 PUBLISH with QoS 3: closed [MQTT-3.3.1-4]",
    version: 4,
    bytes: [CONNECT4, withFirstByte(publish(4, "a/b"), 0x36)],
    answers: [[OK4]],
  },
  {
    name: "v5 PUBLISH with QoS 3: closed, malformed [MQTT-3.3.1-4]",
    version: 5,
    bytes: [CONNECT5, withFirstByte(publish(5, "a/b"), 0x36)],
    answers: closedAfter("0x81"),
  },
  {
    name: "3.1.1 SUBSCRIBE with reserved flags 0000: closed [MQTT-3.8.1-1]",
    version: 4,
    bytes: [CONNECT4, withFirstByte(subscribe(4, [{ topic: "a/b", qos: 0 }]), 0x80)],
    answers: [[OK4]],
  },
  {
    name: "v5 SUBSCRIBE with reserved flags 0011: closed, malformed [MQTT-3.8.1-1]",
    version: 5,
    bytes: [CONNECT5, withFirstByte(subscribe(5, [{ topic: "a/b", qos: 0 }]), 0x83)],
    answers: closedAfter("0x81"),
  },
  {
    name: "3.1.1 UNSUBSCRIBE with reserved flags 0000: closed [MQTT-3.10.1-1]",
    version: 4,
    bytes: [
      CONNECT4,
      withFirstByte(gen4({ cmd: "unsubscribe", messageId: 4, unsubscriptions: ["a/b"] }), 0xa0),
    ],
    answers: [[OK4]],
  },
  {
    name: "3.1.1 PUBREL with reserved flags 0000: closed [MQTT-3.6.1-1]",
    version: 4,
    bytes: [CONNECT4, Buffer.from([0x60, 0x02, 0x00, 0x01])],
    answers: [[OK4]],
  },
  {
    name: "3.1.1 SUBSCRIBE without a topic filter: closed [MQTT-3.8.3-3]",
    version: 4,
    bytes: [CONNECT4, Buffer.from([0x82, 0x02, 0x00, 0x01])],
    answers: [[OK4]],
  },
  {
    name: "v5 SUBSCRIBE without a topic filter: closed, protocol error [MQTT-3.8.3-2]",
    version: 5,
    bytes: [CONNECT5, Buffer.from([0x82, 0x03, 0x00, 0x01, 0x00])],
    answers: closedAfter("0x82"),
  },
  {
    name: "3.1.1 PUBLISH topic containing U+0000: closed [MQTT-1.5.3-2]",
    version: 4,
    bytes: [CONNECT4, publish(4, Buffer.from([0x61, 0x00, 0x62]))],
    answers: [[OK4]],
  },
  {
    name: "3.1.1 PUBLISH topic with ill-formed UTF-8: closed [MQTT-1.5.3-1]",
    version: 4,
    bytes: [CONNECT4, publish(4, Buffer.from([0x61, 0xc3, 0x28]))],
    answers: [[OK4]],
  },
  {
    name: "v5 PUBLISH topic containing U+0000: closed, malformed [MQTT-1.5.4-2]",
    version: 5,
    bytes: [CONNECT5, publish(5, Buffer.from([0x61, 0x00, 0x62]))],
    answers: closedAfter("0x81"),
  },
  {
    name: "v5 PUBLISH topic with ill-formed UTF-8: closed, malformed [MQTT-1.5.4-1]",
    version: 5,
    bytes: [CONNECT5, publish(5, Buffer.from([0x61, 0xc3, 0x28]))],
    answers: closedAfter("0x81"),
  },
  {
    name: "v5 CONNECT with an ill-formed UTF-8 client id: closed, no accepting CONNACK [MQTT-1.5.4-1]",
    version: 5,
    bytes: [
      frame(
        0x10,
        Buffer.concat([
          field("MQTT"),
          Buffer.from([5, 0x02, 0, 30, 0]), // level 5, clean start, keepalive, no properties
          field(Buffer.from([0x61, 0xc3, 0x28])),
        ]),
      ),
    ],
    answers: [[], ["CONNACK 0x81"]],
  },
  {
    name: "v5 malformed remaining length (5 bytes): closed [MQTT-1.5.5]",
    version: 5,
    bytes: [CONNECT5, Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00, 0x01, 0x61])],
    answers: closedAfter("0x81"),
  },
  {
    name: "v5 PUBLISH with Topic Alias 0: DISCONNECT 0x94 [MQTT-3.3.2-8]",
    version: 5,
    bytes: [CONNECT5, publish(5, "a/b", { topicAlias: 0 })],
    answers: [[OK5, "DISCONNECT 0x94"]],
  },
  {
    name: `v5 PUBLISH with Topic Alias ${TOPIC_ALIAS_MAXIMUM + 1}, above the maximum: DISCONNECT 0x94 [MQTT-3.3.2-9]`,
    version: 5,
    bytes: [CONNECT5, publish(5, "a/b", { topicAlias: TOPIC_ALIAS_MAXIMUM + 1 })],
    answers: [[OK5, "DISCONNECT 0x94"]],
  },
  {
    name: "v5 PUBLISH with an empty topic and an unknown Topic Alias: DISCONNECT 0x82",
    version: 5,
    bytes: [CONNECT5, publish(5, "", { topicAlias: 5 })],
    answers: [[OK5, "DISCONNECT 0x82"]],
  },
  {
    name: "v5 PUBLISH with Topic Alias twice: closed, protocol error",
    version: 5,
    bytes: [CONNECT5, duplicateFirstProperty(publish(5, "a/b", { topicAlias: 1 }), 3)],
    answers: closedAfter("0x82"),
  },
  {
    name: "v5 PUBLISH from a client with a Subscription Identifier: DISCONNECT 0x82 [MQTT-3.3.4-6]",
    version: 5,
    bytes: [CONNECT5, publish(5, "a/b", { subscriptionIdentifier: 1 })],
    answers: [[OK5, "DISCONNECT 0x82"]],
  },
  {
    name: "v5 PUBLISH QoS 1, Payload Format Indicator 1, invalid UTF-8 payload: PUBACK 0x99, stays open",
    version: 5,
    bytes: [
      CONNECT5,
      publish(
        5,
        "fuzz/pfi",
        { payloadFormatIndicator: true },
        { qos: 1, payload: Buffer.from([0xc3, 0x28]) },
      ),
    ],
    answers: [[OK5, "PUBACK 0x99", "PINGRESP"]],
    closes: false,
  },
  {
    name: "v5 CONNECT with Session Expiry Interval twice: closed, protocol error",
    version: 5,
    bytes: [duplicateFirstProperty(connect5({ sessionExpiryInterval: 10 }), 5)],
    answers: [[], ["CONNACK 0x82"]],
  },
  {
    // Found by the fuzzer: the repeated interval once reached the session store as NaN.
    name: "v5 DISCONNECT with Session Expiry Interval twice: closed, protocol error",
    version: 5,
    bytes: [
      gen5({
        cmd: "connect",
        clientId: "dup-expiry",
        protocolVersion: 5,
        clean: true,
        keepalive: 0,
        properties: { sessionExpiryInterval: 60 },
      }),
      Buffer.from([0xe0, 0x0c, 0x00, 0x0a, 0x11, 0, 0, 0, 0x0a, 0x11, 0, 0, 0, 0x14]),
    ],
    answers: closedAfter("0x82"),
  },
  {
    name: "v5 CONNECT with Receive Maximum 0: closed, protocol error",
    version: 5,
    bytes: [connect5({ receiveMaximum: 0 })],
    answers: [[], ["CONNACK 0x82"]],
  },
  {
    name: "v5 CONNECT with Maximum Packet Size 0: closed, protocol error",
    version: 5,
    bytes: [connect5({ maximumPacketSize: 0 })],
    answers: [[], ["CONNACK 0x82"]],
  },
  {
    name: "v5 CONNECT with an Authentication Method: CONNACK 0x8C (no enhanced auth), closed",
    version: 5,
    bytes: [connect5({ authenticationMethod: "SCRAM-SHA-1" })],
    answers: [["CONNACK 0x8c"]],
  },
  {
    name: "v5 DISCONNECT setting a Session Expiry Interval after 0: DISCONNECT 0x82 [MQTT-3.14.2-2]",
    version: 5,
    bytes: [
      CONNECT5,
      gen5({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 10 } }),
    ],
    answers: [[OK5, "DISCONNECT 0x82"]],
  },
  {
    name: "v5 shared subscription with No Local: DISCONNECT 0x82 [MQTT-3.8.3-4]",
    version: 5,
    bytes: [CONNECT5, subscribe(5, [{ topic: "$share/g/a/b", qos: 0, nl: true }])],
    answers: [[OK5, "DISCONNECT 0x82"]],
  },
  {
    name: "v5 SUBSCRIBE with Subscription Identifier 0: closed, protocol error",
    version: 5,
    bytes: [CONNECT5, subscribe(5, [{ topic: "a/b", qos: 0 }], { subscriptionIdentifier: 0 })],
    answers: closedAfter("0x82"),
  },
];

describe("malformed packets with an answer pinned by the spec or the contract", () => {
  let dir: TempDir | undefined;
  let gw: ChildGateway;

  beforeAll(async () => {
    const config = writeConfig({ gateway: { id: "pinned" } });
    dir = config.dir;
    gw = await startGatewayProcess(config.file);
  });

  afterAll(async () => {
    await stopAll();
    await dir?.cleanup();
  });

  // A loop rather than it.each, whose "$name" cuts long names short. Each case has its own
  // connection, so they run side by side: a server that fails to close costs one deadline.
  for (const c of PINNED) {
    it.concurrent(c.name, async ({ expect, onTestFinished }) => {
      const raw = await RawMqtt.open(gw.mqttPort, c.version);
      onTestFinished(() => raw.destroy());
      let reset: Error | undefined;
      raw.socket.on("error", (err) => {
        reset = err;
      });
      // One write: the packets arrive together, as a client would pipeline them.
      raw.write(Buffer.concat(c.bytes));
      const sent = () => `the server sent ${JSON.stringify(summarize(raw))}`;

      if (c.closes === false) {
        raw.write([0xc0, 0x00]); // PINGREQ: its PINGRESP shows that the rest was handled
        await raw.next("pingresp", undefined, CLOSE_DEADLINE_MS);
        expect(c.answers, sent()).toContainEqual(summarize(raw));
        expect(raw.isClosed).toBe(false);
        raw.write([0xe0, 0x00]); // DISCONNECT
      }
      await raw.closedByServer(CLOSE_DEADLINE_MS);
      expect(c.answers, sent()).toContainEqual(summarize(raw));
      // A reset instead of a close could lose what the server wrote before it.
      expect(reset?.message).toBeUndefined();
      expect(gw.proc.exitInfo, describeGateway(gw)).toBeUndefined();
    });
  }
});
