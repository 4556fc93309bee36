import { LeafgateError } from "../core/index.js";

/**
 * Every protocol violation that closes a connection, declared once with the rule it
 * breaks. The key is the stable label used in logs and the
 * `leafgate_mqtt_protocol_errors_total{violation}` counter.
 */
export const VIOLATIONS = {
  malformed: { rule: "[MQTT-1.5]", text: "malformed packet" },
  packetTooLarge: { rule: "mqtt.max_packet_size", text: "packet larger than mqtt.max_packet_size" },
  firstPacketNotConnect: {
    rule: "[MQTT-3.1.0-1]",
    text: "first packet was not CONNECT",
  },
  secondConnect: { rule: "[MQTT-3.1.0-2]", text: "second CONNECT on one connection" },
  unsupportedProtocol: {
    rule: "[MQTT-3.1.2-2]",
    text: "unsupported protocol level",
  },
  wildcardInTopicName: {
    rule: "[MQTT-3.3.2-2]",
    text: "PUBLISH topic name must not contain wildcards",
  },
  invalidTopicName: { rule: "[MQTT-4.7.3]", text: "invalid PUBLISH topic name" },
  serverOnlyPacket: {
    rule: "[MQTT-2.2.1]",
    text: "client sent a packet only a server may send",
  },
  unsupportedPacket: { rule: "[MQTT-3.15]", text: "packet not valid in MQTT 3.1.1" },
} as const satisfies Record<string, { rule: string; text: string }>;

export type Violation = keyof typeof VIOLATIONS;

/** A client broke the protocol; the connection is closed. */
export class MqttProtocolError extends LeafgateError {
  readonly violation: Violation;
  readonly rule: string;

  constructor(violation: Violation, detail?: string, options?: ErrorOptions) {
    const { rule, text } = VIOLATIONS[violation];
    super("LG_ERR_MQTT_PROTOCOL", `${text}${detail ? `: ${detail}` : ""} ${rule}`, options);
    this.violation = violation;
    this.rule = rule;
  }
}

/** CONNACK return codes of MQTT 3.1.1 (section 3.2.2.3). */
export const CONNACK = {
  accepted: 0,
  unacceptableProtocolVersion: 1,
  identifierRejected: 2,
  serverUnavailable: 3,
  badUsernameOrPassword: 4,
  notAuthorized: 5,
} as const;

/** SUBACK return code for a refused subscription (3.1.1 section 3.9.3). */
export const SUBACK_FAILURE = 0x80;
