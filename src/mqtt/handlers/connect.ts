import type mqtt from "mqtt-packet";
import { errorMessage, toSubject } from "../../core/index.js";
import type { AuthResult } from "../auth.js";
import type { Connection } from "../connection.js";
import { CONNACK, MqttProtocolError } from "../errors.js";
import { encodeConnack } from "../packets.js";

/** MQTT 5 CONNACK "Unsupported Protocol Version", with an empty property block. */
const CONNACK_V5_UNSUPPORTED = Buffer.from([0x20, 3, 0, 0x84, 0]);

/**
 * CONNECT: negotiate the session, then answer with CONNACK (section 3.1). Clients with
 * a user name are checked against `authorization.users` off the event loop; packets they
 * send meanwhile wait (the connection is `authenticating`).
 */
export function handleConnect(conn: Connection, packet: mqtt.IConnectPacket): void {
  const { broker } = conn;
  const version = packet.protocolVersion ?? 4;
  if (version === 5) {
    // This build speaks 3.1.1; a v5 client parses a v5 CONNACK [MQTT-3.1.2-2].
    conn.send(CONNACK_V5_UNSUPPORTED);
    throw new MqttProtocolError("unsupportedProtocol", "MQTT 5 (level 5); use MQTT 3.1.1");
  }
  conn.protocolVersion = version;

  // Without configured users a user name means nothing, as in Mosquitto without a
  // password file: the client counts as anonymous.
  const asUser = packet.username !== undefined && broker.auth.hasUsers;
  let anonymous: Extract<AuthResult, { ok: true }> | undefined;
  if (!asUser) {
    const result = broker.auth.anonymous(packet.clientId);
    if (!result.ok) {
      refuse(conn, packet, result);
      return;
    }
    anonymous = result;
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
  const will = parseWill(packet);

  if (anonymous !== undefined) {
    // %c in the default permissions names the assigned id when the client sent none.
    const result = clientId === packet.clientId ? anonymous : broker.auth.anonymous(clientId);
    accept(conn, packet, clientId, will, result.ok ? result : anonymous);
    return;
  }
  conn.beginAuthentication();
  broker.auth.user(packet.username!, packet.password, clientId).then(
    (result) => {
      if (conn.state !== "authenticating") return;
      if (!result.ok) refuse(conn, packet, result);
      else accept(conn, packet, clientId, will, result);
    },
    (err: unknown) => {
      broker.log.error({ err: errorMessage(err) }, "authentication failed");
      if (conn.state === "authenticating") {
        conn.send(encodeConnack(CONNACK.serverUnavailable));
        conn.close("auth-error", true);
      }
    },
  );
}

function parseWill(packet: mqtt.IConnectPacket): Connection["will"] {
  if (!packet.will) return undefined;
  const { topic, payload, qos, retain } = packet.will;
  let subject: string;
  try {
    subject = toSubject(topic);
  } catch (err) {
    throw new MqttProtocolError("invalidTopicName", `will topic: ${errorMessage(err)}`);
  }
  return {
    subject,
    payload: typeof payload === "string" ? Buffer.from(payload) : Buffer.from(payload ?? []),
    qos: qos ?? 0,
    retain: retain === true,
  };
}

function refuse(
  conn: Connection,
  packet: mqtt.IConnectPacket,
  result: Extract<AuthResult, { ok: false }>,
): void {
  conn.send(encodeConnack(result.returnCode));
  conn.broker.metrics.authFailures.inc({ code: String(result.returnCode) });
  conn.broker.log.warn(
    { remote: conn.transport.remote, client: packet.clientId, user: packet.username },
    `mqtt client refused: ${result.reason}`,
  );
  conn.close(
    result.returnCode === CONNACK.badUsernameOrPassword ? "bad-credentials" : "not-authorized",
    true,
  );
}

function accept(
  conn: Connection,
  packet: mqtt.IConnectPacket,
  clientId: string,
  will: Connection["will"],
  result: Extract<AuthResult, { ok: true }>,
): void {
  const { broker } = conn;
  conn.will = will;
  conn.user = result.user;
  conn.permissions = result.permissions;
  conn.clientId = clientId;
  conn.state = "connected";
  broker.claimClientId(clientId, conn);
  // 3.1.1 has no way to tell a client a shorter keepalive, so its own value (0 = off)
  // is honoured; mqtt.max_keepalive applies where MQTT 5 can announce it.
  conn.startKeepalive(packet.keepalive ?? 0);
  // Sessions are not persisted yet, so there is never a session present [MQTT-3.2.2-1].
  conn.send(encodeConnack(CONNACK.accepted, false));
  broker.log.debug(
    {
      client: clientId,
      user: result.user,
      remote: conn.transport.remote,
      keepalive: packet.keepalive,
    },
    "mqtt client connected",
  );
  conn.endAuthentication();
}
