import type mqtt from "mqtt-packet";
import type { Link } from "../connection-state.js";
import type { HandlerContext } from "../context.js";
import { MqttProtocolError, REASON } from "../errors.js";

/**
 * DISCONNECT from the client (section 3.14): a normal one discards the will
 * [MQTT-3.14.4-3]; MQTT 5 reason 0x04 keeps it, and may change the session expiry,
 * though not up from 0 [MQTT-3.14.2-2]. Returns whether the will is kept.
 */
export function handleDisconnect(
  ctx: HandlerContext,
  link: Link,
  packet: mqtt.IDisconnectPacket,
): { keepWill: boolean } {
  if (link.version !== 5) return { keepWill: false };
  const expiryS = packet.properties?.sessionExpiryInterval;
  if (expiryS !== undefined) {
    if (link.connectExpiryWasZero && expiryS !== 0) {
      throw new MqttProtocolError("sessionExpiryFromZero", `${expiryS} s`);
    }
    const maxS = Math.floor(ctx.options.maxSessionExpiryMs / 1000);
    link.session.setExpiry(Math.min(expiryS, maxS) * 1000);
  }
  return { keepWill: (packet.reasonCode ?? 0) === REASON.disconnectWithWill };
}
