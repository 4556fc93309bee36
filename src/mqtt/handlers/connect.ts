import type mqtt from "mqtt-packet";
import type { MessageProperties } from "../../core/index.js";
import { errorMessage, toSubject } from "../../core/index.js";
import { ALLOW_ALL, ANONYMOUS, type AuthResult, type Permissions } from "../auth.js";
import { clip, sourceAddress } from "../broker.js";
import type { Connection } from "../connection.js";
import { CONNACK, CONNACK_V5, MqttProtocolError, REASON } from "../errors.js";
import { type ParsedFilter, parseFilter } from "../filter.js";
import { encodeConnack, encodeV5 } from "../packets.js";
import { checkNoRepeats } from "../properties.js";
import type { Session, Will } from "../session.js";

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
  const address = sourceAddress(conn.transport.remote);
  if (broker.auth.lockedOut(address)) {
    // Too many failed logins from this address: no password check, whoever it is.
    refuseLockedOut(conn, packet);
    return;
  }
  if (props.authenticationMethod !== undefined) {
    // Enhanced authentication is not offered (section 4.12).
    refuse(
      conn,
      packet,
      REASON.badAuthenticationMethod,
      CONNACK.notAuthorized,
      "bad-auth-method",
      `authentication method "${clip(props.authenticationMethod)}" is not supported`,
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
  broker.auth.user(packet.username!, packet.password, clientId, address).then(
    (result) => {
      if (result.ok === false && result.lockout !== undefined) {
        const { address: locked, failures, forMs } = result.lockout;
        // One line per lockout, whoever is trying: the address, never the name tried.
        broker.lockoutLog.warn(
          { address: locked, failures, lockedForMs: forMs },
          "mqtt logins from an address locked out: too many failed logins",
        );
      }
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
  logged = true,
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
  const { broker } = conn;
  // The client chose its id and user name: at warn only the address, and rate-limited;
  // the rest at debug, cut short.
  const remote = conn.transport.remote;
  if (logged && closeReason !== "locked-out") {
    broker.refusalLog.warn({ remote, reason: closeReason }, `mqtt client refused: ${why}`);
    broker.log.debug(
      { remote, client: clip(packet.clientId), user: clip(packet.username) },
      `mqtt client refused: ${why}`,
    );
  }
  conn.close(closeReason, true);
}

function refuseAuth(
  conn: Connection,
  packet: mqtt.IConnectPacket,
  result: Extract<AuthResult, { ok: false }>,
): void {
  if (result.refusal === "locked-out") {
    refuseLockedOut(conn, packet);
    return;
  }
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

/**
 * The source address is locked out after too many failed logins. MQTT 5 has a code for
 * it, 0x9F Connection rate exceeded (section 3.2.2.2); MQTT 3.1.1 has none, and 5 (not
 * authorized) is the truthful one of its codes: 4 would say the password was wrong, which
 * was never checked, and 3 (server unavailable) invites an immediate retry.
 */
function refuseLockedOut(conn: Connection, packet: mqtt.IConnectPacket): void {
  conn.broker.metrics.authLockouts.inc();
  refuse(
    conn,
    packet,
    REASON.connectionRateExceeded,
    CONNACK.notAuthorized,
    "locked-out",
    "too many failed logins from this address; try again later",
  );
}

/**
 * The session of `clientId` is another user's [issue 10]: taking it over, or replacing it
 * with clean start, is refused; its owner keeps its connection and its session.
 */
function refuseNotOwner(conn: Connection, packet: mqtt.IConnectPacket): void {
  conn.broker.metrics.authFailures.inc({ code: String(CONNACK.notAuthorized) });
  refuse(
    conn,
    packet,
    REASON.notAuthorized,
    CONNACK.notAuthorized,
    "session-owned",
    "the client id is in use by another user's session",
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
  const owner = result.user ?? ANONYMOUS;
  if (!broker.mayTakeSession(clientId, owner)) {
    refuseNotOwner(conn, packet);
    return;
  }
  // A will is a publish by the client, later: checked now as a PUBLISH would be, so the
  // client learns at once that it could never go out (MQTT 5 CONNACK 0x87 Not authorized,
  // 3.1.1 return code 5), and again when it is published (Broker.publishWill), as
  // mosquitto checks its ACL when it sends a will.
  if (will !== undefined && !result.permissions.canPublish(will.subject)) {
    broker.metrics.denied.inc({ kind: "will" });
    broker.metrics.authFailures.inc({ code: String(CONNACK.notAuthorized) });
    refuse(
      conn,
      packet,
      REASON.notAuthorized,
      CONNACK.notAuthorized,
      "will-denied",
      "the will's topic is not one this client may publish to",
    );
    return;
  }
  conn.will = will === undefined ? undefined : { ...will, owner };
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
  if (broker.sessionLimitReached(clientId, expiryMs)) {
    // The broker counted and logged it (rate-limited: the client id is the client's).
    // A refused CONNECT leaves no will behind.
    conn.will = undefined;
    refuse(
      conn,
      packet,
      REASON.quotaExceeded,
      CONNACK.serverUnavailable,
      "max-sessions",
      `mqtt.max_sessions (${options.maxSessions}) reached`,
      false,
    );
    return;
  }

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
  broker.established(conn);
  const { session, present } = broker.takeSession(clientId, conn, cleanStart, expiryMs, owner);
  // Before anything owed goes out: the user's permissions may be narrower than when the
  // session was made (a config change across a restart).
  if (present) recheckSession(conn, session, result.permissions);
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

/**
 * A resumed session is held to its user's permissions of today: subscriptions no longer
 * allowed go (counted as denied subscribes), and so do the owed messages the user may no
 * longer receive (counted as dropped, `not-authorized`).
 */
function recheckSession(conn: Connection, session: Session, permissions: Permissions): void {
  if (permissions === ALLOW_ALL) return;
  const { broker } = conn;
  let subscriptions = 0;
  for (const sub of [...session.subscriptions.values()]) {
    let parsed: ParsedFilter;
    try {
      parsed = parseFilter(sub.filter);
    } catch {
      continue; // kept as it was: it was accepted once, and matches what it did
    }
    // As at SUBSCRIBE: the filter is decided by its last pattern, a parent only added
    // where it is allowed itself (see handleSubscribe).
    const main = parsed.patterns[parsed.patterns.length - 1]!;
    if (!permissions.canSubscribe(main)) {
      session.unsubscribe(sub.filter);
      broker.metrics.denied.inc({ kind: "subscribe" });
      subscriptions++;
      continue;
    }
    const patterns = parsed.patterns.filter((p) => p === main || permissions.canSubscribe(p));
    if (patterns.length !== sub.patterns.length) session.subscribe({ ...sub, patterns }, true);
  }
  const messages = session.dropOwed(
    (m) => permissions.canSubscribe(m.subject) && permissions.mayReceive(m.subject),
  );
  if (messages > 0) broker.metrics.dropped.inc({ reason: "not-authorized" }, messages);
  if (subscriptions > 0 || messages > 0) {
    broker.log.info(
      { client: clip(session.clientId), subscriptions, messages },
      "mqtt session resumed under narrower permissions: what they no longer allow was dropped",
    );
  }
}
