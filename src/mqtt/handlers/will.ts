import type mqtt from "mqtt-packet";
import type { MessageProperties } from "../../core/index.js";
import { errorMessage, toSubject } from "../../core/index.js";
import { MqttProtocolError } from "../errors.js";
import type { Will } from "../session.js";

/** The will of a CONNECT (section 3.1.3.2); its owner is set once the client is known. */
export function parseWill(packet: mqtt.IConnectPacket): Will | undefined {
  if (!packet.will) return undefined;
  const { topic, payload, qos, retain } = packet.will;
  let subject: string;
  try {
    subject = toSubject(topic);
  } catch (err) {
    throw new MqttProtocolError("invalidTopicName", `will topic: ${errorMessage(err)}`);
  }
  const p = packet.will.properties;
  let properties: MessageProperties | undefined;
  if (p !== undefined) {
    const user = p.userProperties as Record<string, string | string[]> | undefined;
    const userProperties =
      user === undefined
        ? undefined
        : Object.entries(user).flatMap(([k, v]) =>
            (Array.isArray(v) ? v : [v]).map((x) => [k, String(x)] as [string, string]),
          );
    properties = {
      ...(p.payloadFormatIndicator !== undefined
        ? { payloadFormat: p.payloadFormatIndicator ? 1 : 0 }
        : {}),
      ...(p.contentType !== undefined ? { contentType: p.contentType } : {}),
      ...(p.responseTopic !== undefined ? { responseTopic: p.responseTopic } : {}),
      ...(p.correlationData !== undefined
        ? { correlationData: Buffer.from(p.correlationData) }
        : {}),
      ...(userProperties !== undefined ? { userProperties } : {}),
    } satisfies MessageProperties;
  }
  return {
    subject,
    payload: typeof payload === "string" ? Buffer.from(payload) : Buffer.from(payload ?? []),
    qos: qos ?? 0,
    retain: retain === true,
    properties,
    messageExpiryS: p?.messageExpiryInterval,
    delayMs: (p?.willDelayInterval ?? 0) * 1000,
  };
}
