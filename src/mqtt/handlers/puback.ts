import type mqtt from "mqtt-packet";
import type { Connection } from "../connection.js";

/** PUBACK for a QoS 1 message we sent (section 3.4); unknown ids are ignored. */
export function handlePuback(conn: Connection, packet: mqtt.IPubackPacket): void {
  conn.acknowledge(packet.messageId ?? 0);
}
