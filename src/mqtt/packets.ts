import { toTopic } from "../core/index.js";

/**
 * Encoders for the packets a server sends in MQTT 3.1.1. They are few and fixed, and
 * PUBLISH/PUBACK are the hot path, so they are written out rather than generated.
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

/** Writes the variable-length "remaining length" at `offset`; returns the next offset. */
function writeRemainingLength(buf: Buffer, offset: number, length: number): number {
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

/** PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK (packet id only) or PINGRESP. */
export function encodeAck(
  kind: "puback" | "pubrec" | "pubrel" | "pubcomp" | "unsuback" | "pingresp",
  packetId = 0,
): Buffer {
  if (kind === "pingresp") return PINGRESP;
  return Buffer.from([TYPE[kind], 2, packetId >> 8, packetId & 0xff]);
}

export function encodeSuback(packetId: number, returnCodes: readonly number[]): Buffer {
  const remaining = 2 + returnCodes.length;
  const buf = Buffer.allocUnsafe(1 + remainingLengthSize(remaining) + remaining);
  buf[0] = TYPE.suback;
  let at = writeRemainingLength(buf, 1, remaining);
  buf.writeUInt16BE(packetId, at);
  at += 2;
  for (const code of returnCodes) buf[at++] = code;
  return buf;
}

/** A PUBLISH to a subscriber; the subject becomes its MQTT topic. */
export function encodePublish(
  subject: string,
  payload: Uint8Array,
  qos: 0 | 1 | 2,
  packetId: number,
  retain = false,
): Buffer {
  const topic = toTopic(subject);
  const topicLength = Buffer.byteLength(topic);
  const remaining = 2 + topicLength + (qos > 0 ? 2 : 0) + payload.length;
  const buf = Buffer.allocUnsafe(1 + remainingLengthSize(remaining) + remaining);
  buf[0] = TYPE.publish | (qos << 1) | (retain ? 1 : 0);
  let at = writeRemainingLength(buf, 1, remaining);
  buf.writeUInt16BE(topicLength, at);
  at += 2;
  at += buf.write(topic, at);
  if (qos > 0) {
    buf.writeUInt16BE(packetId, at);
    at += 2;
  }
  buf.set(payload, at);
  return buf;
}
