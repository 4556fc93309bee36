import { isUtf8 } from "node:buffer";
import type mqtt from "mqtt-packet";
import { checkTopicBounds, TOPIC_TOO_LONG, type TopicBounds, TopicError } from "../core/index.js";
import { MqttProtocolError } from "./errors.js";
import { checkNoRepeats } from "./properties.js";

/** mqtt-packet decodes ill-formed UTF-8 to U+FFFD; only then are the raw bytes checked. */
const REPLACEMENT = "\uFFFD";

/** Where a packet's variable header starts: after the type byte and the remaining length. */
function bodyStart(raw: Buffer): number {
  let at = 1;
  while (at < raw.length && (raw[at]! & 0x80) !== 0) at++;
  return at + 1;
}

function varintAt(raw: Buffer, at: number): { value: number; next: number } {
  let value = 0;
  let multiplier = 1;
  let i = at;
  for (; i < raw.length; i++) {
    value += (raw[i]! & 0x7f) * multiplier;
    multiplier *= 128;
    if ((raw[i]! & 0x80) === 0) return { value, next: i + 1 };
  }
  return { value, next: i };
}

/** A length-prefixed string at `at`: throws unless it is well-formed UTF-8 [MQTT-1.5.4-1]. */
function checkStringAt(raw: Buffer, at: number, what: string): number {
  const length = raw.readUInt16BE(at);
  const start = at + 2;
  const end = start + length;
  // ASCII (most topics) is well-formed: checked in place, without a view to allocate.
  let i = start;
  while (i < end && raw[i]! < 0x80) i++;
  if (i < end && !isUtf8(raw.subarray(i, end))) {
    throw new MqttProtocolError("malformed", `${what} is not well-formed UTF-8 [MQTT-1.5.4-1]`);
  }
  return at + 2 + length;
}

/**
 * The UTF-8 strings of a CONNECT (client id, will topic, user name), checked on the raw
 * bytes (section 3.1.3); the parser has already checked that they are all there.
 */
function checkConnectStrings(packet: mqtt.IConnectPacket, raw: Buffer): void {
  let at = bodyStart(raw);
  at += 2 + raw.readUInt16BE(at); // protocol name
  at += 1 + 1 + 2; // level, flags, keepalive
  const v5 = packet.protocolVersion === 5;
  if (v5) {
    const { value, next } = varintAt(raw, at);
    at = next + value;
  }
  at = checkStringAt(raw, at, "client id");
  if (packet.will !== undefined) {
    if (v5) {
      const { value, next } = varintAt(raw, at);
      at = next + value;
    }
    at = checkStringAt(raw, at, "will topic");
    at += 2 + raw.readUInt16BE(at); // will payload (binary)
  }
  if (packet.username !== undefined) checkStringAt(raw, at, "user name");
}

/** The topic filters of a SUBSCRIBE or UNSUBSCRIBE, checked on the raw bytes. */
function checkFilterStrings(raw: Buffer, v5: boolean, withOptions: boolean): void {
  let at = bodyStart(raw) + 2; // packet id
  if (v5) {
    const { value, next } = varintAt(raw, at);
    at = next + value;
  }
  while (at + 2 <= raw.length) {
    at = checkStringAt(raw, at, "topic filter");
    if (withOptions) at += 1;
  }
}

/**
 * A PUBLISH or will topic within `bounds`, else the violation that closes the connection.
 * (Filters past them are refused one by one in SUBACK/UNSUBACK instead.)
 */
function checkTopicName(topic: string, bounds: TopicBounds, what: string): void {
  try {
    checkTopicBounds(topic, bounds);
  } catch (err) {
    if (!(err instanceof TopicError)) throw err;
    const violation = err.rule === TOPIC_TOO_LONG ? "topicTooLong" : "topicTooManyLevels";
    throw new MqttProtocolError(violation, `${what}: ${err.message}`, { cause: err });
  }
}

/**
 * Rules mqtt-packet's parser lets through, checked on every packet from a client before
 * it is handled. Each breaks a normative statement, or a bound of the gateway (`bounds`:
 * PUBLISH and will topics), so the connection is closed.
 */
export function checkPacket(
  packet: mqtt.Packet,
  raw: Buffer,
  v5: boolean,
  bounds?: TopicBounds,
): void {
  // Only User Property may repeat in what a client sends (section 2.2.2.2); PUBLISH
  // properties are read from the raw bytes, with the same rule.
  if (v5 && packet.cmd !== "publish") {
    checkNoRepeats((packet as { properties?: object }).properties);
  }
  switch (packet.cmd) {
    case "publish":
      // The topic is the first field: checked on every PUBLISH, it is cheap.
      checkStringAt(raw, bodyStart(raw), "topic name");
      // [MQTT-3.3.1-2] DUP must be 0 on QoS 0; [MQTT-2.3.1-1] ids are non-zero.
      if (packet.qos === 0 && packet.dup) {
        throw new MqttProtocolError("malformed", "DUP set on a QoS 0 PUBLISH [MQTT-3.3.1-2]");
      }
      if (packet.qos > 0 && !packet.messageId) {
        throw new MqttProtocolError("malformed", "packet identifier 0 [MQTT-2.3.1-1]");
      }
      // An empty topic (a topic alias in use) stands for one already held to the bounds.
      if (bounds !== undefined) checkTopicName(packet.topic, bounds, "topic name");
      break;
    case "subscribe":
      if (!packet.messageId) {
        throw new MqttProtocolError("malformed", "packet identifier 0 [MQTT-2.3.1-1]");
      }
      if (packet.subscriptions.length === 0) {
        // A protocol error in MQTT 5 [MQTT-3.8.3-2], a violation in 3.1.1 [MQTT-3.8.3-3].
        throw new MqttProtocolError("protocolError", "SUBSCRIBE without a topic filter");
      }
      if (packet.subscriptions.some((s) => s.topic.includes(REPLACEMENT))) {
        checkFilterStrings(raw, v5, true);
      }
      break;
    case "unsubscribe":
      if (!packet.messageId) {
        throw new MqttProtocolError("malformed", "packet identifier 0 [MQTT-2.3.1-1]");
      }
      if (packet.unsubscriptions.length === 0) {
        throw new MqttProtocolError(
          "protocolError",
          "UNSUBSCRIBE without a topic filter [MQTT-3.10.3-2]",
        );
      }
      if (packet.unsubscriptions.some((f) => f.includes(REPLACEMENT))) {
        checkFilterStrings(raw, v5, false);
      }
      break;
    case "pingreq":
      if (raw.length !== 2) {
        throw new MqttProtocolError("malformed", "PINGREQ with a body");
      }
      break;
    case "connect":
      if (packet.will !== undefined && (packet.will.qos ?? 0) > 2) {
        throw new MqttProtocolError("malformed", "will QoS 3 [MQTT-3.1.2-14]");
      }
      // 3.1.1 allows a password only with a user name [MQTT-3.1.2-22].
      if (
        packet.protocolVersion !== 5 &&
        packet.password !== undefined &&
        packet.username === undefined
      ) {
        throw new MqttProtocolError("malformed", "password without a user name [MQTT-3.1.2-22]");
      }
      if (
        packet.clientId.includes(REPLACEMENT) ||
        packet.will?.topic.includes(REPLACEMENT) === true ||
        packet.username?.includes(REPLACEMENT) === true
      ) {
        checkConnectStrings(packet, raw);
      }
      if (packet.will !== undefined && bounds !== undefined) {
        checkTopicName(packet.will.topic, bounds, "will topic");
      }
      break;
    default:
      break;
  }
}
