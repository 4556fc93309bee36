import { LeafgateError, TOPIC_TOO_LONG, TOPIC_TOO_MANY_LEVELS } from "../core/index.js";
import type { FrameError } from "./framer.js";

/**
 * Every protocol violation that closes a connection, declared once with the rule it
 * breaks. The key is the stable label used in logs and the
 * `leafgate_mqtt_protocol_errors_total{violation}` counter.
 */
export const VIOLATIONS = {
  malformed: { rule: "[MQTT-1.5]", text: "malformed packet", reason: 0x81 },
  protocolError: { rule: "[MQTT-4.13]", text: "protocol error", reason: 0x82 },
  packetTooLarge: {
    rule: "mqtt.max_packet_size",
    text: "packet larger than mqtt.max_packet_size",
    reason: 0x95,
  },
  connectTooLarge: {
    rule: "mqtt.max_connect_size",
    text: "first packet (CONNECT) larger than mqtt.max_connect_size",
    reason: 0x95,
  },
  firstPacketNotConnect: {
    rule: "[MQTT-3.1.0-1]",
    text: "first packet was not CONNECT",
    reason: 0x82,
  },
  secondConnect: {
    rule: "[MQTT-3.1.0-2]",
    text: "second CONNECT on one connection",
    reason: 0x82,
  },
  unsupportedProtocol: {
    rule: "[MQTT-3.1.2-2]",
    text: "unsupported protocol level",
    reason: 0x84,
  },
  wildcardInTopicName: {
    rule: "[MQTT-3.3.2-2]",
    text: "PUBLISH topic name must not contain wildcards",
    reason: 0x90,
  },
  invalidTopicName: { rule: "[MQTT-4.7.3]", text: "invalid PUBLISH topic name", reason: 0x90 },
  // A PUBLISH or will topic past the gateway's bounds: a Topic Name it does not accept.
  topicTooLong: {
    rule: TOPIC_TOO_LONG,
    text: "topic longer than mqtt.max_topic_length",
    reason: 0x90,
  },
  topicTooManyLevels: {
    rule: TOPIC_TOO_MANY_LEVELS,
    text: "topic with more levels than mqtt.max_topic_levels",
    reason: 0x90,
  },
  topicAliasInvalid: {
    rule: "[MQTT-3.3.2-9]",
    text: "topic alias 0 or above the announced Topic Alias Maximum",
    reason: 0x94,
  },
  unknownTopicAlias: {
    rule: "[MQTT-3.3.4]",
    text: "empty topic with a topic alias the client never set",
    reason: 0x82,
  },
  serverOnlyPacket: {
    rule: "[MQTT-2.2.1]",
    text: "client sent a packet only a server may send",
    reason: 0x82,
  },
  unsupportedPacket: { rule: "[MQTT-3.15]", text: "packet not valid in MQTT 3.1.1", reason: 0x82 },
  sharedNoLocal: {
    rule: "[MQTT-3.8.3-4]",
    text: "No Local on a shared subscription",
    reason: 0x82,
  },
  receiveMaxExceeded: {
    rule: "[MQTT-3.3.4-7]",
    text: "more QoS 1/2 PUBLISHes unacknowledged than the Receive Maximum in CONNACK",
    reason: 0x93,
  },
  sessionExpiryFromZero: {
    rule: "[MQTT-3.14.2-2]",
    text: "DISCONNECT set a session expiry after CONNECT set 0",
    reason: 0x82,
  },
} as const satisfies Record<string, { rule: string; text: string; reason: number }>;

export type Violation = keyof typeof VIOLATIONS;

/** A client broke the protocol; the connection is closed. */
export class MqttProtocolError extends LeafgateError {
  readonly violation: Violation;
  readonly rule: string;
  /** The MQTT 5 reason code of the DISCONNECT sent before closing. */
  readonly reasonCode: number;

  constructor(violation: Violation, detail?: string, options?: ErrorOptions) {
    const { rule, text } = VIOLATIONS[violation];
    super("LG_ERR_MQTT_PROTOCOL", `${text}${detail ? `: ${detail}` : ""} ${rule}`, options);
    this.violation = violation;
    this.rule = rule;
    this.reasonCode = VIOLATIONS[violation].reason;
  }
}

/**
 * Why a SUBSCRIBE or UNSUBSCRIBE filter was refused while its connection carries on (SUBACK
 * 0x80, MQTT 5 SUBACK/UNSUBACK 0x8F): the `reason` label of
 * `leafgate_mqtt_subscriptions_refused_total`, by the rule of the filter's TopicError.
 */
export const FILTER_REFUSALS = {
  /** Not a valid filter [MQTT-4.7], or not one a NATS subject can carry. */
  invalid: "invalid-filter",
  /** Longer than mqtt.max_topic_length (or its `$share` group is). */
  tooLong: "too-long",
  /** More levels than mqtt.max_topic_levels. */
  tooManyLevels: "too-many-levels",
} as const;

export type FilterRefusal = (typeof FILTER_REFUSALS)[keyof typeof FILTER_REFUSALS];

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

/** MQTT 5 reason codes (section 2.4) the broker sends. */
export const REASON = {
  success: 0x00,
  noSubscriptionExisted: 0x11,
  disconnectWithWill: 0x04,
  unspecified: 0x80,
  malformed: 0x81,
  protocolError: 0x82,
  unsupportedProtocolVersion: 0x84,
  clientIdNotValid: 0x85,
  badUserNameOrPassword: 0x86,
  notAuthorized: 0x87,
  serverUnavailable: 0x88,
  serverShuttingDown: 0x8b,
  badAuthenticationMethod: 0x8c,
  keepAliveTimeout: 0x8d,
  sessionTakenOver: 0x8e,
  topicFilterInvalid: 0x8f,
  packetIdNotFound: 0x92,
  quotaExceeded: 0x97,
  payloadFormatInvalid: 0x99,
  connectionRateExceeded: 0x9f,
} as const;

/** The MQTT 5 CONNACK reason for a 3.1.1 return code. */
export const CONNACK_V5: Readonly<Record<number, number>> = {
  [CONNACK.unacceptableProtocolVersion]: REASON.unsupportedProtocolVersion,
  [CONNACK.identifierRejected]: REASON.clientIdNotValid,
  [CONNACK.serverUnavailable]: REASON.serverUnavailable,
  [CONNACK.badUsernameOrPassword]: REASON.badUserNameOrPassword,
  [CONNACK.notAuthorized]: REASON.notAuthorized,
};

/** What the framer's refusals break. */
export const FRAME_VIOLATION = {
  malformed: "malformed",
  tooLarge: "packetTooLarge",
  firstTooLarge: "connectTooLarge",
} as const satisfies Record<FrameError, Violation>;
