import type mqtt from "mqtt-packet";
import { errorMessage, toSubject } from "../../core/index.js";
import type { Connection } from "../connection.js";
import { CONNACK, MqttProtocolError } from "../errors.js";
import { encodeConnack } from "../packets.js";

/** MQTT 5 CONNACK "Unsupported Protocol Version", with an empty property block. */
const CONNACK_V5_UNSUPPORTED = Buffer.from([0x20, 3, 0, 0x84, 0]);

/** CONNECT: negotiate the session, then answer with CONNACK (section 3.1). */
export function handleConnect(conn: Connection, packet: mqtt.IConnectPacket): void {
  const { broker } = conn;
  const version = packet.protocolVersion ?? 4;
  if (version === 5) {
    // This build speaks 3.1.1; a v5 client parses a v5 CONNACK [MQTT-3.1.2-2].
    conn.send(CONNACK_V5_UNSUPPORTED);
    throw new MqttProtocolError("unsupportedProtocol", "MQTT 5 (level 5); use MQTT 3.1.1");
  }
  conn.protocolVersion = version;

  if (!broker.options.allowAnonymous) {
    // No user database yet: without anonymous access nobody may connect.
    conn.send(encodeConnack(CONNACK.notAuthorized));
    broker.log.warn(
      { remote: conn.transport.remote, client: packet.clientId },
      "mqtt client refused: anonymous access is disabled (mqtt.allow_anonymous)",
    );
    conn.close("not-authorized");
    return;
  }

  let clientId = packet.clientId;
  if (clientId === "") {
    if (packet.clean === false) {
      // [MQTT-3.1.3-8] an empty id needs a clean session.
      conn.send(encodeConnack(CONNACK.identifierRejected));
      conn.close("identifier-rejected");
      return;
    }
    clientId = broker.assignClientId();
  }

  if (packet.will) {
    const { topic, payload, qos, retain } = packet.will;
    let subject: string;
    try {
      subject = toSubject(topic);
    } catch (err) {
      throw new MqttProtocolError("invalidTopicName", `will topic: ${errorMessage(err)}`);
    }
    conn.will = {
      subject,
      payload: typeof payload === "string" ? Buffer.from(payload) : Buffer.from(payload ?? []),
      qos: qos ?? 0,
      retain: retain === true,
    };
  }

  conn.clientId = clientId;
  conn.state = "connected";
  broker.claimClientId(clientId, conn);
  // 3.1.1 has no way to tell a client a shorter keepalive, so its own value (0 = off)
  // is honoured; mqtt.max_keepalive applies where MQTT 5 can announce it.
  conn.startKeepalive(packet.keepalive ?? 0);
  // Sessions are not persisted yet, so there is never a session present [MQTT-3.2.2-1].
  conn.send(encodeConnack(CONNACK.accepted, false));
  broker.log.debug(
    { client: clientId, remote: conn.transport.remote, keepalive: packet.keepalive },
    "mqtt client connected",
  );
}
