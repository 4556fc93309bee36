import mqtt from "mqtt-packet";

/**
 * Encoders for the packets a server sends. PUBLISH and the acks are the hot path, so
 * they are written out; the rarer MQTT 5 packets with properties (CONNACK, SUBACK,
 * DISCONNECT...) go through mqtt-packet's generator.
 */

const TYPE = {
  connack: 0x20,
  publish: 0x30,
  puback: 0x40,
  pubrec: 0x50,
  pubrel: 0x62, // PUBREL carries reserved flags 0b0010 [MQTT-3.6.1-1]
  pubcomp: 0x70,
  suback: 0x90,
  unsuback: 0xb0,
  pingresp: 0xd0,
} as const;

const PINGRESP = Buffer.from([TYPE.pingresp, 0]);

/**
 * Writes a variable byte integer (the "remaining length", property lengths, subscription
 * ids) at `offset`; returns the next offset.
 */
export function writeRemainingLength(buf: Buffer, offset: number, length: number): number {
  let n = length;
  let at = offset;
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    buf[at++] = byte;
  } while (n > 0);
  return at;
}

/** Bytes the "remaining length" field takes for `length`. */
export function remainingLengthSize(length: number): number {
  return length < 128 ? 1 : length < 16_384 ? 2 : length < 2_097_152 ? 3 : 4;
}

/** Whole size of a packet whose remaining length is `remaining` (fixed header included). */
export function packetSize(remaining: number): number {
  return 1 + remainingLengthSize(remaining) + remaining;
}

export function encodeConnack(returnCode: number, sessionPresent = false): Buffer {
  return Buffer.from([TYPE.connack, 2, sessionPresent ? 1 : 0, returnCode]);
}

/**
 * PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK (packet id only) or PINGRESP. An MQTT 5
 * ack with a reason code other than success carries it after the id (section 3.4.2.1).
 */
export function encodeAck(
  kind: "puback" | "pubrec" | "pubrel" | "pubcomp" | "unsuback" | "pingresp",
  packetId = 0,
  reasonCode = 0,
): Buffer {
  if (kind === "pingresp") return PINGRESP;
  // Written byte by byte: one per QoS 1 message, with no array to build first.
  const buf = Buffer.allocUnsafe(reasonCode !== 0 ? 5 : 4);
  buf[0] = TYPE[kind];
  buf[1] = reasonCode !== 0 ? 3 : 2;
  buf[2] = packetId >> 8;
  buf[3] = packetId & 0xff;
  if (reasonCode !== 0) buf[4] = reasonCode;
  return buf;
}

/** Any packet in MQTT 5, properties included (the rare ones: CONNACK, SUBACK, DISCONNECT...). */
export function encodeV5(packet: mqtt.Packet): Buffer {
  return mqtt.generate(packet, { protocolVersion: 5 });
}

/** SUBACK; MQTT 5 adds an empty property block before the codes. */
export function encodeSuback(packetId: number, returnCodes: readonly number[], v5 = false): Buffer {
  const remaining = 2 + (v5 ? 1 : 0) + returnCodes.length;
  const buf = Buffer.allocUnsafe(1 + remainingLengthSize(remaining) + remaining);
  buf[0] = TYPE.suback;
  let at = writeRemainingLength(buf, 1, remaining);
  buf.writeUInt16BE(packetId, at);
  at += 2;
  if (v5) buf[at++] = 0;
  for (const code of returnCodes) buf[at++] = code;
  return buf;
}

/** MQTT 5 UNSUBACK: a reason code per filter (section 3.11). */
export function encodeUnsuback(packetId: number, reasonCodes: readonly number[]): Buffer {
  const buf = encodeSuback(packetId, reasonCodes, true);
  buf[0] = TYPE.unsuback;
  return buf;
}

/**
 * A PUBLISH to a subscriber. `properties` is an encoded MQTT 5 property block (with its
 * length), present exactly for MQTT 5 connections.
 */
export function encodePublish(
  topic: string,
  payload: Uint8Array,
  qos: 0 | 1 | 2,
  packetId: number,
  retain = false,
  dup = false,
  properties?: Uint8Array,
): Buffer {
  const topicLength = Buffer.byteLength(topic);
  const remaining =
    2 + topicLength + (qos > 0 ? 2 : 0) + (properties?.length ?? 0) + payload.length;
  const buf = Buffer.allocUnsafe(1 + remainingLengthSize(remaining) + remaining);
  buf[0] = TYPE.publish | (dup ? 0x08 : 0) | (qos << 1) | (retain ? 1 : 0);
  let at = writeRemainingLength(buf, 1, remaining);
  buf.writeUInt16BE(topicLength, at);
  at += 2;
  at += buf.write(topic, at);
  if (qos > 0) {
    buf.writeUInt16BE(packetId, at);
    at += 2;
  }
  if (properties !== undefined) {
    buf.set(properties, at);
    at += properties.length;
  }
  buf.set(payload, at);
  return buf;
}
