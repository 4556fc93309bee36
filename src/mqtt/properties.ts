import type { Envelope, MessageProperties, Origin } from "../core/index.js";
import { toTopic } from "../core/index.js";
import { MqttProtocolError } from "./errors.js";
import { remainingLengthSize, writeRemainingLength } from "./packets.js";

/**
 * MQTT 5 properties (section 2.2.2): ids, wire types and which may repeat. mqtt-packet
 * decodes user properties into an object, which loses their order; the spec wants it
 * kept [MQTT-3.3.2-18], so PUBLISH properties are read here from the packet's bytes.
 */
const PROPERTY = {
  payloadFormat: 0x01,
  messageExpiry: 0x02,
  contentType: 0x03,
  responseTopic: 0x08,
  correlationData: 0x09,
  subscriptionId: 0x0b,
  topicAlias: 0x23,
  userProperty: 0x26,
} as const;

type WireType = "byte" | "u16" | "u32" | "varint" | "string" | "binary" | "pair";

/** Every property id of MQTT 5 with its wire type. */
const WIRE: ReadonlyMap<number, WireType> = new Map<number, WireType>([
  [0x01, "byte"],
  [0x02, "u32"],
  [0x03, "string"],
  [0x08, "string"],
  [0x09, "binary"],
  [0x0b, "varint"],
  [0x11, "u32"],
  [0x12, "string"],
  [0x13, "u16"],
  [0x15, "string"],
  [0x16, "binary"],
  [0x17, "byte"],
  [0x18, "u32"],
  [0x19, "byte"],
  [0x1a, "string"],
  [0x1c, "string"],
  [0x1f, "string"],
  [0x21, "u16"],
  [0x22, "u16"],
  [0x23, "u16"],
  [0x24, "byte"],
  [0x25, "byte"],
  [0x26, "pair"],
  [0x27, "u32"],
  [0x28, "byte"],
  [0x29, "byte"],
  [0x2a, "byte"],
]);

/** Properties a client may put on PUBLISH (section 3.3.2.3). */
const PUBLISH_PROPERTIES = new Set<number>([
  PROPERTY.payloadFormat,
  PROPERTY.messageExpiry,
  PROPERTY.contentType,
  PROPERTY.responseTopic,
  PROPERTY.correlationData,
  PROPERTY.topicAlias,
  PROPERTY.userProperty,
]);

/** MessageProperties while they are being read. */
interface Building {
  payloadFormat?: 0 | 1;
  contentType?: string;
  responseTopic?: string;
  correlationData?: Buffer;
  userProperties?: [string, string][];
}

/** What a client's PUBLISH carried, besides topic and payload. */
export interface InboundPublishProperties {
  readonly topicAlias: number | undefined;
  readonly messageExpiryS: number | undefined;
  readonly properties: MessageProperties | undefined;
}

const NONE: InboundPublishProperties = {
  topicAlias: undefined,
  messageExpiryS: undefined,
  properties: undefined,
};

class Reader {
  at: number;
  constructor(
    readonly buf: Buffer,
    at: number,
  ) {
    this.at = at;
  }
  need(n: number): void {
    if (this.at + n > this.buf.length) {
      throw new MqttProtocolError("malformed", "property runs past the end of the packet");
    }
  }
  u8(): number {
    this.need(1);
    return this.buf[this.at++]!;
  }
  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16BE(this.at);
    this.at += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.at);
    this.at += 4;
    return v;
  }
  varint(): number {
    let value = 0;
    let mul = 1;
    for (let i = 0; i < 4; i++) {
      const b = this.u8();
      value += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) {
        // The fewest bytes that hold the value [MQTT-1.5.5-1]: no trailing zero byte.
        if (i > 0 && b === 0) {
          throw new MqttProtocolError("malformed", "variable byte integer not in fewest bytes");
        }
        return value;
      }
      mul *= 128;
    }
    throw new MqttProtocolError("malformed", "variable byte integer longer than 4 bytes");
  }
  binary(): Buffer {
    const n = this.u16();
    this.need(n);
    const v = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return v;
  }
  string(): string {
    const bytes = this.binary();
    // [MQTT-1.5.4-1] well-formed UTF-8, [MQTT-1.5.4-2] no U+0000.
    const s = bytes.toString("utf8");
    if (!Buffer.from(s).equals(bytes) || s.includes("\u0000")) {
      throw new MqttProtocolError("malformed", "property string is not valid UTF-8");
    }
    return s;
  }
}

/**
 * Reads the properties of a v5 PUBLISH from its raw bytes (fixed header included).
 * Unknown ids are malformed; ids not allowed on a client's PUBLISH, and repeats of those
 * that must appear once, are protocol errors (section 2.2.2.2).
 */
export function readPublishProperties(raw: Buffer, qos: number): InboundPublishProperties {
  const r = new Reader(raw, 1);
  r.varint(); // remaining length
  const topicLength = r.u16();
  r.at += topicLength + (qos > 0 ? 2 : 0);
  const length = r.varint();
  if (length === 0) return NONE;
  r.need(length);
  const end = r.at + length;
  const seen = new Set<number>();
  let topicAlias: number | undefined;
  let messageExpiryS: number | undefined;
  const props: Building = {};
  while (r.at < end) {
    const id = r.varint();
    const type = WIRE.get(id);
    if (type === undefined) {
      throw new MqttProtocolError("malformed", `unknown property 0x${id.toString(16)}`);
    }
    if (!PUBLISH_PROPERTIES.has(id)) {
      throw new MqttProtocolError(
        "protocolError",
        `property 0x${id.toString(16)} is not allowed on PUBLISH`,
      );
    }
    if (id !== PROPERTY.userProperty) {
      if (seen.has(id)) {
        throw new MqttProtocolError("protocolError", `property 0x${id.toString(16)} repeated`);
      }
      seen.add(id);
    }
    switch (id) {
      case PROPERTY.payloadFormat: {
        const v = r.u8();
        if (v > 1) throw new MqttProtocolError("protocolError", "payload format indicator > 1");
        props.payloadFormat = v as 0 | 1;
        break;
      }
      case PROPERTY.messageExpiry:
        messageExpiryS = r.u32();
        break;
      case PROPERTY.contentType:
        props.contentType = r.string();
        break;
      case PROPERTY.responseTopic: {
        const topic = r.string();
        // [MQTT-3.3.2-14] a Response Topic is a topic name, not a filter.
        if (topic === "" || /[+#]/.test(topic)) {
          throw new MqttProtocolError(
            "protocolError",
            `response topic "${topic}" is not a topic name`,
          );
        }
        props.responseTopic = topic;
        break;
      }
      case PROPERTY.correlationData:
        props.correlationData = Buffer.from(r.binary());
        break;
      case PROPERTY.topicAlias:
        topicAlias = r.u16();
        break;
      case PROPERTY.userProperty: {
        const name = r.string();
        const value = r.string();
        props.userProperties ??= [];
        props.userProperties.push([name, value]);
        break;
      }
    }
  }
  if (r.at !== end) throw new MqttProtocolError("malformed", "property length mismatch");
  const any =
    props.payloadFormat !== undefined ||
    props.contentType !== undefined ||
    props.responseTopic !== undefined ||
    props.correlationData !== undefined ||
    props.userProperties !== undefined;
  return { topicAlias, messageExpiryS, properties: any ? props : undefined };
}

/** Properties mqtt-packet decodes as a list when repeated, and which must appear once. */
export function checkNoRepeats(properties: object | undefined, allowRepeat: string[] = []): void {
  if (properties === undefined) return;
  for (const [name, value] of Object.entries(properties)) {
    if (name === "userProperties" || allowRepeat.includes(name)) continue;
    if (Array.isArray(value)) {
      throw new MqttProtocolError("protocolError", `property ${name} repeated`);
    }
  }
}

/** What an outbound v5 PUBLISH carries besides topic and payload. */
export interface OutboundPublishProperties {
  readonly properties?: MessageProperties | undefined;
  readonly messageExpiryS?: number | undefined;
  readonly topicAlias?: number | undefined;
  readonly subscriptionIds?: readonly number[] | undefined;
}

/** Encodes a v5 PUBLISH property block (its length prefix included). */
export function encodePublishProperties(p: OutboundPublishProperties): Buffer {
  const m = p.properties;
  let size = 0;
  const strings: Buffer[] = [];
  const str = (s: string): Buffer => {
    const b = Buffer.from(s);
    strings.push(b);
    return b;
  };
  const contentType = m?.contentType !== undefined ? str(m.contentType) : undefined;
  const responseTopic = m?.responseTopic !== undefined ? str(m.responseTopic) : undefined;
  const pairs = m?.userProperties?.map(([k, v]) => [str(k), str(v)] as const);
  if (m?.payloadFormat !== undefined) size += 2;
  if (p.messageExpiryS !== undefined) size += 5;
  if (contentType !== undefined) size += 3 + contentType.length;
  if (responseTopic !== undefined) size += 3 + responseTopic.length;
  if (m?.correlationData !== undefined) size += 3 + m.correlationData.length;
  if (p.topicAlias !== undefined) size += 3;
  for (const id of p.subscriptionIds ?? []) size += 1 + remainingLengthSize(id);
  for (const [k, v] of pairs ?? []) size += 5 + k.length + v.length;
  const buf = Buffer.allocUnsafe(remainingLengthSize(size) + size);
  let at = writeRemainingLength(buf, 0, size);
  const bin = (id: number, b: Uint8Array): void => {
    buf[at++] = id;
    buf.writeUInt16BE(b.length, at);
    at += 2;
    buf.set(b, at);
    at += b.length;
  };
  if (m?.payloadFormat !== undefined) {
    buf[at++] = PROPERTY.payloadFormat;
    buf[at++] = m.payloadFormat;
  }
  if (p.messageExpiryS !== undefined) {
    buf[at++] = PROPERTY.messageExpiry;
    buf.writeUInt32BE(p.messageExpiryS, at);
    at += 4;
  }
  if (contentType !== undefined) bin(PROPERTY.contentType, contentType);
  if (responseTopic !== undefined) bin(PROPERTY.responseTopic, responseTopic);
  if (m?.correlationData !== undefined) bin(PROPERTY.correlationData, m.correlationData);
  if (p.topicAlias !== undefined) {
    buf[at++] = PROPERTY.topicAlias;
    buf.writeUInt16BE(p.topicAlias, at);
    at += 2;
  }
  for (const id of p.subscriptionIds ?? []) {
    buf[at++] = PROPERTY.subscriptionId;
    at = writeRemainingLength(buf, at, id);
  }
  for (const [k, v] of pairs ?? []) {
    buf[at++] = PROPERTY.userProperty;
    buf.writeUInt16BE(k.length, at);
    at += 2;
    buf.set(k, at);
    at += k.length;
    buf.writeUInt16BE(v.length, at);
    at += 2;
    buf.set(v, at);
    at += v.length;
  }
  return buf;
}

/** Header names that carry MQTT 5 message properties to and from the hub. */
export const PROPERTY_HEADERS = {
  contentType: "MQTT-Content-Type",
  responseTopic: "MQTT-Response-Topic",
  correlationData: "MQTT-Correlation-Data",
  payloadFormat: "MQTT-Payload-Format",
} as const;

const RESERVED_HEADER = /^(nats-|leafgate-)/i;
const HEADER_OF = new Map<string, keyof typeof PROPERTY_HEADERS>(
  Object.entries(PROPERTY_HEADERS).map(([k, v]) => [
    v.toLowerCase(),
    k as keyof typeof PROPERTY_HEADERS,
  ]),
);

/**
 * Message properties as NATS headers: user properties by name (a repeated name keeps
 * its values in order), the others under `MQTT-*` names.
 */
export function propertiesToHeaders(p: MessageProperties): Map<string, string[]> {
  const h = new Map<string, string[]>();
  const add = (k: string, v: string): void => {
    const list = h.get(k);
    if (list === undefined) h.set(k, [v]);
    else list.push(v);
  };
  // A user property must not pose as a header the gateway or the hub interprets
  // (Nats-Msg-Id would defeat deduplication): those stay on the MQTT side.
  for (const [k, v] of p.userProperties ?? []) {
    if (!RESERVED_HEADER.test(k) && !HEADER_OF.has(k.toLowerCase())) add(k, v);
  }
  if (p.contentType !== undefined) add(PROPERTY_HEADERS.contentType, p.contentType);
  if (p.responseTopic !== undefined) add(PROPERTY_HEADERS.responseTopic, p.responseTopic);
  if (p.correlationData !== undefined)
    add(PROPERTY_HEADERS.correlationData, Buffer.from(p.correlationData).toString("base64"));
  if (p.payloadFormat === 1) add(PROPERTY_HEADERS.payloadFormat, "1");
  return h;
}

/** The reverse of `propertiesToHeaders`, for messages that come from the hub. */
export function headersToProperties(
  headers: ReadonlyMap<string, readonly string[]>,
): MessageProperties | undefined {
  const out: Building = {};
  let any = false;
  for (const [name, values] of headers) {
    const special = HEADER_OF.get(name.toLowerCase());
    const first = values[0];
    if (special !== undefined) {
      if (first === undefined) continue;
      any = true;
      if (special === "contentType") out.contentType = first;
      else if (special === "responseTopic") out.responseTopic = first;
      else if (special === "correlationData") out.correlationData = Buffer.from(first, "base64");
      else out.payloadFormat = first === "1" ? 1 : 0;
      continue;
    }
    if (RESERVED_HEADER.test(name)) continue;
    for (const v of values) {
      out.userProperties ??= [];
      out.userProperties.push([name, v]);
      any = true;
    }
  }
  return any ? out : undefined;
}

/**
 * The properties an MQTT 5 subscriber gets with `m`: its own, or for a message from
 * NATS, a device or the hub, those its headers carry (with any its route added, such as
 * an answer's correlation data); a NATS request's reply subject becomes its response topic.
 */
export function deliveredProperties(m: Envelope): MessageProperties | undefined {
  let p = m.properties;
  if (m.headers !== undefined && (p === undefined || FROM_HEADERS.has(m.origin))) {
    const carried = headersToProperties(m.headers);
    if (carried !== undefined) p = p === undefined ? carried : { ...carried, ...p };
  }
  if (m.reply !== undefined && p?.responseTopic === undefined) {
    let responseTopic: string | undefined;
    try {
      responseTopic = toTopic(m.reply);
    } catch {
      // A reply subject no topic can name (a NATS client's own choice): no response topic.
    }
    if (responseTopic !== undefined) p = { ...p, responseTopic };
  }
  return p;
}

/** Origins whose messages carry their properties as headers only. */
const FROM_HEADERS: ReadonlySet<Origin> = new Set(["nats", "serial", "upstream"]);
