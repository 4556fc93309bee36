import type mqtt from "mqtt-packet";
import type { Link } from "../connection-state.js";
import type { ConnectedClient, HandlerContext } from "../context.js";
import { MqttProtocolError } from "../errors.js";
import { PUBREC_ERROR } from "../flow.js";
import { encodeAck } from "../packets.js";
import { handleDisconnect } from "./disconnect.js";
import { handlePublish, handlePubrel } from "./publish.js";
import { handleSubscribe } from "./subscribe.js";
import { handleUnsubscribe } from "./unsubscribe.js";

/**
 * A packet of a connected client, to its handler: one `switch` over the packet types, as
 * aedes has. CONNECT is the connection's own (see Connection); a second one is an error.
 */
export function dispatchPacket(
  ctx: HandlerContext,
  link: Link,
  client: ConnectedClient,
  packet: mqtt.Packet,
  raw: Buffer,
): void {
  const { session } = link;
  switch (packet.cmd) {
    case "publish":
      handlePublish(ctx, client, packet, raw);
      break;
    case "puback":
      session.owed.acknowledge(packet.messageId ?? 0, "puback");
      break;
    case "pubrec":
      // A PUBREC with an error reason ends the exchange (section 4.3.3).
      if ((packet.reasonCode ?? 0) >= PUBREC_ERROR) {
        session.owed.acknowledge(packet.messageId ?? 0, "pubrec-error");
      } else {
        session.owed.received(packet.messageId ?? 0);
      }
      break;
    case "pubrel":
      handlePubrel(ctx, client, packet);
      break;
    case "pubcomp":
      session.owed.acknowledge(packet.messageId ?? 0, "pubcomp");
      break;
    case "subscribe":
      handleSubscribe(ctx, client, packet);
      break;
    case "unsubscribe":
      handleUnsubscribe(ctx, client, packet);
      break;
    case "pingreq":
      client.send(encodeAck("pingresp"));
      break;
    case "disconnect":
      client.disconnected(handleDisconnect(ctx, link, packet).keepWill);
      break;
    case "connect":
      throw new MqttProtocolError("secondConnect");
    case "auth":
      // No authentication method was agreed in CONNECT [MQTT-4.12.0-1].
      if (link.version === 5) {
        throw new MqttProtocolError("protocolError", "AUTH without an authentication method");
      }
      throw new MqttProtocolError("unsupportedPacket", "AUTH");
    default:
      throw new MqttProtocolError("serverOnlyPacket", packet.cmd.toUpperCase());
  }
}
