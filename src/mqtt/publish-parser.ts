import type mqtt from "mqtt-packet";
import { MqttProtocolError } from "./errors.js";

/** PUBLISH's packet type (section 2.1.2). */
export const PUBLISH_TYPE = 3;
const MAX_VARINT_BYTES = 4;

/**
 * A PUBLISH from a client as mqtt-packet's parser gives it, from the packet's whole raw
 * bytes (the framer has cut them: fixed header included, the remaining length checked
 * against the packet's size). It is the hot path of every broker, so it is written out:
 * mqtt-packet parses through a buffer list and a state machine, copies what spans reads,
 * and builds a property object that the PUBLISH handler reads again from the raw bytes.
 *
 * The rules are mqtt-packet 9's (`Parser._parsePublish`), with one stricter:
 * - QoS 3 is malformed [MQTT-3.3.1-4] (the framer already refuses it);
 * - the topic is a two-byte length and that many bytes within the packet, else
 *   "Cannot parse topic"; its text decodes as mqtt-packet does (ill-formed UTF-8 becomes
 *   U+FFFD: `checkPacket` then checks the raw bytes [MQTT-1.5.4-1]);
 * - QoS 1 and 2 carry a two-byte packet id. mqtt-packet lets a PUBLISH that ends before
 *   it through with id -1 (and no payload); here it is malformed, "Cannot parse messageId";
 * - MQTT 5: a property length (a variable byte integer of at most four bytes) and that
 *   many bytes within the packet; the properties themselves are read and checked by
 *   `readPublishProperties` (unknown ids, types, repeats, bounds), which the handler runs
 *   on every v5 PUBLISH, so they are not decoded twice;
 * - the payload is the rest, as a view of `raw` (no copy, as mqtt-packet's is).
 * Everything else (DUP on QoS 0, packet id 0, topic bounds and wildcards) is
 * `checkPacket`'s and the handler's, for both parsers alike.
 */
export function parsePublish(raw: Buffer, v5: boolean): mqtt.IPublishPacket {
  const first = raw[0]!;
  const qos = (first >> 1) & 0x03;
  if (qos === 3) {
    throw new MqttProtocolError("malformed", "Packet must not have both QoS bits set to 1");
  }
  let at = 1;
  while ((raw[at]! & 0x80) !== 0) at++;
  const bodyStart = at + 1;
  const length = raw.length - bodyStart;
  const end = raw.length;
  at = bodyStart;
  if (at + 2 > end) throw new MqttProtocolError("malformed", "Cannot parse topic");
  const topicEnd = at + 2 + ((raw[at]! << 8) | raw[at + 1]!);
  if (topicEnd > end) throw new MqttProtocolError("malformed", "Cannot parse topic");
  const topic = raw.toString("utf8", at + 2, topicEnd);
  at = topicEnd;
  let messageId: number | undefined;
  if (qos > 0) {
    if (at + 2 > end) throw new MqttProtocolError("malformed", "Cannot parse messageId");
    messageId = (raw[at]! << 8) | raw[at + 1]!;
    at += 2;
  }
  if (v5) {
    let propertiesLength = 0;
    let multiplier = 1;
    for (let n = 0; ; n++) {
      if (n === MAX_VARINT_BYTES || at >= end) {
        throw new MqttProtocolError("malformed", "Cannot parse properties length");
      }
      const byte = raw[at++]!;
      propertiesLength += (byte & 0x7f) * multiplier;
      multiplier *= 128;
      if ((byte & 0x80) === 0) break;
    }
    at += propertiesLength;
    if (at > end) throw new MqttProtocolError("malformed", "Cannot parse properties");
  }
  // The same shape (field order) as mqtt-packet's Packet, so handlers see one kind of object.
  return {
    cmd: "publish",
    retain: (first & 0x01) !== 0,
    qos: qos as 0 | 1 | 2,
    dup: (first & 0x08) !== 0,
    length,
    topic,
    payload: raw.subarray(at),
    messageId,
  };
}

/** PUBACK's packet type (section 3.4). */
export const PUBACK_TYPE = 4;

/**
 * An MQTT 3.1.1 PUBACK: the packet id alone (the framer has held its remaining length to
 * exactly 2 for 3.1.1). MQTT 5's may carry a reason code and properties: mqtt-packet's.
 */
export function parsePuback311(raw: Buffer): mqtt.IPubackPacket {
  return { cmd: "puback", messageId: (raw[2]! << 8) | raw[3]! };
}
