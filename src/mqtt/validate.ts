import type mqtt from "mqtt-packet";
import { MqttProtocolError } from "./errors.js";

/**
 * Rules mqtt-packet's parser lets through, checked on every packet from a client before
 * it is handled. Each breaks a normative statement, so the connection is closed.
 */
export function checkPacket(packet: mqtt.Packet, raw: Buffer): void {
  switch (packet.cmd) {
    case "publish":
      // [MQTT-3.3.1-2] DUP must be 0 on QoS 0; [MQTT-2.3.1-1] ids are non-zero.
      if (packet.qos === 0 && packet.dup) {
        throw new MqttProtocolError("malformed", "DUP set on a QoS 0 PUBLISH [MQTT-3.3.1-2]");
      }
      if (packet.qos > 0 && !packet.messageId) {
        throw new MqttProtocolError("malformed", "packet identifier 0 [MQTT-2.3.1-1]");
      }
      break;
    case "subscribe":
      if (!packet.messageId) {
        throw new MqttProtocolError("malformed", "packet identifier 0 [MQTT-2.3.1-1]");
      }
      if (packet.subscriptions.length === 0) {
        throw new MqttProtocolError("malformed", "SUBSCRIBE without a topic filter [MQTT-3.8.3-3]");
      }
      break;
    case "unsubscribe":
      if (!packet.messageId) {
        throw new MqttProtocolError("malformed", "packet identifier 0 [MQTT-2.3.1-1]");
      }
      if (packet.unsubscriptions.length === 0) {
        throw new MqttProtocolError(
          "malformed",
          "UNSUBSCRIBE without a topic filter [MQTT-3.10.3-2]",
        );
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
      break;
    default:
      break;
  }
}
