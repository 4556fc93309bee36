import type mqtt from "mqtt-packet";
import type { Connection } from "../connection.js";
import { encodeAck } from "../packets.js";

/** UNSUBSCRIBE (section 3.10); unknown filters are acknowledged all the same [MQTT-3.10.4-5]. */
export function handleUnsubscribe(conn: Connection, packet: mqtt.IUnsubscribePacket): void {
  for (const filter of packet.unsubscriptions) {
    conn.subscriptions.get(filter)?.unsubscribe();
    conn.subscriptions.delete(filter);
  }
  conn.send(encodeAck("unsuback", packet.messageId ?? 0));
}
