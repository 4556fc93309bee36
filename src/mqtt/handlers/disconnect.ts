import type mqtt from "mqtt-packet";
import type { Connection } from "../connection.js";
import { MqttProtocolError, REASON } from "../errors.js";

/**
 * DISCONNECT from the client (section 3.14): a normal one discards the will
 * [MQTT-3.14.4-3]; MQTT 5 reason 0x04 keeps it, and may change the session expiry,
 * though not up from 0 [MQTT-3.14.2-2].
 */
export function handleDisconnect(conn: Connection, packet: mqtt.IDisconnectPacket): void {
  const session = conn.session!;
  if (conn.protocolVersion === 5) {
    const expiryS = packet.properties?.sessionExpiryInterval;
    if (expiryS !== undefined) {
      if (conn.connectExpiryWasZero && expiryS !== 0) {
        throw new MqttProtocolError("sessionExpiryFromZero", `${expiryS} s`);
      }
      const maxS = Math.floor(conn.broker.options.maxSessionExpiryMs / 1000);
      session.setExpiry(Math.min(expiryS, maxS) * 1000);
    }
  }
  if (conn.protocolVersion !== 5 || (packet.reasonCode ?? 0) !== REASON.disconnectWithWill) {
    conn.will = undefined;
  }
  conn.close(conn.will === undefined ? "client-disconnect" : "client-disconnect-with-will");
}
