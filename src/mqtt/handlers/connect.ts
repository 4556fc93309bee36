import type mqtt from "mqtt-packet";
import type { MessageProperties } from "../../core/index.js";
import { errorMessage, toSubject } from "../../core/index.js";
import type { AuthResult } from "../auth.js";
import type { Connection } from "../connection.js";
import { CONNACK, CONNACK_V5, MqttProtocolError, REASON } from "../errors.js";
import { encodeConnack, encodeV5 } from "../packets.js";
import { checkNoRepeats } from "../properties.js";
import type { Will } from "../session.js";

/** MQTT 5 Session Expiry Interval meaning "never" (section 3.1.2.11.2). */
const EXPIRY_NEVER_S = 0xffff_ffff;

/**
 * CONNECT: negotiate the session, then answer with CONNACK (section 3.1). Clients with
 * a user name are checked against `authorization.users` off the event loop; packets they
 * send meanwhile wait (the connection is `authenticating`).
 */
export function handleConnect(conn: Connection, packet: mqtt.IConnectPacket): void {
  const { broker } = conn;
  const version = (packet.protocolVersion ?? 4) as 3 | 4 | 5;
  conn.protocolVersion = version;
  const v5 = version === 5;
  const props = v5 ? (packet.properties ?? {}) : {};
  checkNoRepeats(packet.will?.properties);
  if (props.receiveMaximum === 0) {
    throw new MqttProtocolError("protocolError", "Receive Maximum 0");
  }
  if (props.maximumPacketSize === 0) {
    throw new MqttProtocolError("protocolError", "Maximum Packet Size 0");
  }
  if (props.authenticationMethod !== undefined) {
    // Enhanced authentication is not offered (section 4.12).
    refuse(
      conn,
      packet,
      REASON.badAuthenticationMethod,
      CONNACK.notAuthorized,
      "bad-auth-method",
      `authentication method "${props.authenticationMethod}" is not supported`,
    );
    return;
  }
  // A client taking over its own session does not add a connection.
  const replacing = broker.session(packet.clientId)?.connection !== undefined ? 1 : 0;
  const { maxConnections } = broker.options;
  if (maxConnections > 0 && broker.connectedCount - replacing >= maxConnections) {
    refuse(
      conn,
      packet,
      REASON.quotaExceeded,
      CONNACK.serverUnavailable,
      "max-connections",
      `mqtt.max_connections (${broker.options.maxConnections}) reached`,
    );
    return;
  }

  // Without configured users a user name means nothing, as in Mosquitto without a
  // password file: the client counts as anonymous.
  const asUser = packet.username !== undefined && broker.auth.hasUsers;
  let anonymous: Extract<AuthResult, { ok: true }> | undefined;
  if (!asUser) {
    const result = broker.auth.anonymous(packet.clientId);
    if (!result.ok) {
      refuseAuth(conn, packet, result);
      return;
    }
    anonymous = result;
  }

  let clientId = packet.clientId;
  let assigned = false;
  if (clientId === "") {
    if (!v5 && packet.clean === false) {
      // [MQTT-3.1.3-8] an empty id needs a clean session.
      refuse(
        conn,
        packet,
        REASON.clientIdNotValid,
        CONNACK.identifierRejected,
        "identifier-rejected",
        "an empty client id needs clean session",
      );
      return;
    }
    // [MQTT-3.1.3-6], MQTT 5 Assigned Client Identifier [MQTT-3.2.2-16].
    clientId = broker.assignClientId();
    assigned = true;
  }
  const will = parseWill(packet);

  if (anonymous !== undefined) {
    // %c in the default permissions names the assigned id when the client sent none.
    const result = clientId === packet.clientId ? anonymous : broker.auth.anonymous(clientId);
    accept(conn, packet, clientId, assigned, will, result.ok ? result : anonymous);
    return;
  }
  conn.beginAuthentication();
  broker.auth.user(packet.username!, packet.password, clientId).then(
    (result) => {
      if (conn.state !== "authenticating") return;
      if (!result.ok) refuseAuth(conn, packet, result);
      else accept(conn, packet, clientId, assigned, will, result);
    },
    (err: unknown) => {
      broker.log.error({ err: errorMessage(err) }, "authentication failed");
      if (conn.state === "authenticating") {
        refuse(
          conn,
          packet,
          REASON.serverUnavailable,
          CONNACK.serverUnavailable,
          "auth-error",
          "authentication failed",
        );
      }
    },
  );
}

function parseWill(packet: mqtt.IConnectPacket): Will | undefined {
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

/** Refuses CONNECT with the version's code, then closes [MQTT-3.2.2-6], [MQTT-3.2.2-7]. */
function refuse(
  conn: Connection,
  packet: mqtt.IConnectPacket,
  reasonV5: number,
  codeV3: number,
  closeReason: string,
  why: string,
): void {
  if (conn.protocolVersion === 5) {
    // CONNACK may say why in words whatever the client asked (section 3.2.2.3.7).
    conn.send(
      encodeV5({
        cmd: "connack",
        sessionPresent: false,
        reasonCode: reasonV5,
        properties: { reasonString: why },
      }),
    );
  } else {
    conn.send(encodeConnack(codeV3));
  }
  conn.broker.log.warn(
    { remote: conn.transport.remote, client: packet.clientId, user: packet.username },
    `mqtt client refused: ${why}`,
  );
  conn.close(closeReason, true);
}

function refuseAuth(
  conn: Connection,
  packet: mqtt.IConnectPacket,
  result: Extract<AuthResult, { ok: false }>,
): void {
  conn.broker.metrics.authFailures.inc({ code: String(result.returnCode) });
  refuse(
    conn,
    packet,
    CONNACK_V5[result.returnCode] ?? REASON.notAuthorized,
    result.returnCode,
    result.returnCode === CONNACK.badUsernameOrPassword ? "bad-credentials" : "not-authorized",
    result.reason,
  );
}

function accept(
  conn: Connection,
  packet: mqtt.IConnectPacket,
  clientId: string,
  assigned: boolean,
  will: Will | undefined,
  result: Extract<AuthResult, { ok: true }>,
): void {
  const { broker } = conn;
  const { options } = broker;
  const v5 = conn.protocolVersion === 5;
  const props = v5 ? (packet.properties ?? {}) : {};
  conn.will = will;
  conn.user = result.user;
  conn.permissions = result.permissions;
  conn.clientId = clientId;

  // Session expiry: 3.1.1 clean session 0 keeps the session as long as we keep any;
  // MQTT 5 says how long, within mqtt.max_session_expiry.
  const cleanStart = packet.clean !== false;
  let expiryS: number;
  let announceExpiry: number | undefined;
  const maxExpiryS = Math.floor(options.maxSessionExpiryMs / 1000);
  if (v5) {
    const asked = props.sessionExpiryInterval ?? 0;
    conn.connectExpiryWasZero = asked === 0;
    expiryS = Math.min(asked === EXPIRY_NEVER_S ? maxExpiryS : asked, maxExpiryS);
    if (expiryS !== asked) announceExpiry = expiryS;
  } else {
    expiryS = cleanStart ? 0 : maxExpiryS;
  }
  const expiryMs = expiryS * 1000;

  let keepaliveS = packet.keepalive ?? 0;
  let serverKeepAlive: number | undefined;
  if (v5 && options.maxKeepaliveS > 0 && (keepaliveS === 0 || keepaliveS > options.maxKeepaliveS)) {
    // MQTT 5 can tell the client a shorter keepalive [MQTT-3.2.2-21]; 3.1.1 cannot, so its
    // own value (0 = off) is honoured there.
    keepaliveS = options.maxKeepaliveS;
    serverKeepAlive = keepaliveS;
  }
  if (v5) {
    conn.clientMaxPacketSize = props.maximumPacketSize ?? Number.POSITIVE_INFINITY;
    conn.clientTopicAliasMaximum = props.topicAliasMaximum ?? 0;
  }
  conn.setWindow(props.receiveMaximum ?? 65_535);

  conn.state = "connected";
  const { session, present } = broker.takeSession(clientId, conn, cleanStart, expiryMs);
  conn.session = session;
  conn.startKeepalive(keepaliveS);
  if (v5) {
    const properties: NonNullable<mqtt.IConnackPacket["properties"]> = {
      maximumPacketSize: options.maxPacketSize,
      // How many QoS 1/2 PUBLISHes the client may have unanswered [MQTT-3.3.4-7].
      receiveMaximum: options.receiveMaximum,
    };
    if (options.topicAliasMaximum > 0) properties.topicAliasMaximum = options.topicAliasMaximum;
    if (assigned) properties.assignedClientIdentifier = clientId;
    if (serverKeepAlive !== undefined) properties.serverKeepAlive = serverKeepAlive;
    if (announceExpiry !== undefined) properties.sessionExpiryInterval = announceExpiry;
    conn.send(encodeV5({ cmd: "connack", sessionPresent: present, reasonCode: 0, properties }));
  } else {
    conn.send(encodeConnack(CONNACK.accepted, present));
  }
  conn.connackSent = true;
  broker.log.debug(
    {
      client: clientId,
      user: result.user,
      remote: conn.transport.remote,
      protocol: conn.protocolVersion,
      keepalive: keepaliveS,
      sessionPresent: present,
      sessionExpiryS: expiryS,
    },
    "mqtt client connected",
  );
  // Owed messages follow CONNACK: in-flight ones again, then the queue [MQTT-4.4.0-1].
  session.attach(conn, present);
  conn.endAuthentication();
}
