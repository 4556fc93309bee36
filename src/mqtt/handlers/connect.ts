import type mqtt from "mqtt-packet";
import { ANONYMOUS, type AuthResult, errorMessage } from "../../core/index.js";
import { clip, sourceAddress } from "../client-text.js";
import type { ConnectOutcome, Negotiated, ProtocolVersion, Refusal } from "../connection-state.js";
import type { HandlerContext } from "../context.js";
import { CONNACK, CONNACK_V5, MqttProtocolError, REASON } from "../errors.js";
import type { BrokerOptions } from "../options.js";
import { encodeConnack, encodeV5 } from "../packets.js";
import { checkNoRepeats } from "../properties.js";
import type { Will } from "../session.js";
import { parseWill } from "./will.js";

/** MQTT 5 Session Expiry Interval meaning "never" (section 3.1.2.11.2). */
const EXPIRY_NEVER_S = 0xffff_ffff;
/** MQTT 5 Receive Maximum when the client names none (section 3.1.2.11.3). */
const DEFAULT_RECEIVE_MAXIMUM = 65_535;

type Accepted = Extract<AuthResult, { ok: true }>;

/**
 * CONNECT: negotiate the session (section 3.1). Decides only: the connection applies
 * what comes back (CONNACK, state, session). Clients with a user name are checked
 * against `authorization.users` off the event loop (`authenticate`); packets they send
 * meanwhile wait. Protocol errors are thrown.
 */
export function handleConnect(
  ctx: HandlerContext,
  remote: string,
  packet: mqtt.IConnectPacket,
): ConnectOutcome {
  const version = (packet.protocolVersion ?? 4) as ProtocolVersion;
  const props = version === 5 ? (packet.properties ?? {}) : {};
  checkNoRepeats(packet.will?.properties);
  if (props.receiveMaximum === 0) {
    throw new MqttProtocolError("protocolError", "Receive Maximum 0");
  }
  if (props.maximumPacketSize === 0) {
    throw new MqttProtocolError("protocolError", "Maximum Packet Size 0");
  }
  const refuse = (r: Omit<Refusal, "clientId" | "username" | "logged">, logged = true) =>
    refusal(packet, r, logged);
  const address = sourceAddress(remote);
  if (ctx.auth.lockedOut(address)) {
    // Too many failed logins from this address: no password check, whoever it is.
    return lockedOut(ctx, packet);
  }
  if (props.authenticationMethod !== undefined) {
    // Enhanced authentication is not offered (section 4.12).
    return refuse({
      reasonV5: REASON.badAuthenticationMethod,
      codeV3: CONNACK.notAuthorized,
      closeReason: "bad-auth-method",
      why: `authentication method "${clip(props.authenticationMethod)}" is not supported`,
    });
  }
  // Before the password is checked, so a full broker does no hashing: the account is not
  // known yet, so a client id connected in any account may be a takeover (checked again,
  // exactly, once the account is known).
  if (tooManyConnections(ctx, ctx.sessions.connectedAnywhere(packet.clientId))) {
    return maxConnectionsRefusal(ctx, packet);
  }

  // Without configured users a user name means nothing, as in Mosquitto without a
  // password file: the client counts as anonymous.
  const asUser = packet.username !== undefined && ctx.auth.hasUsers;
  let anonymous: Accepted | undefined;
  if (!asUser) {
    const result = ctx.auth.anonymous(packet.clientId);
    if (!result.ok) return authRefusal(ctx, packet, result);
    anonymous = result;
  }

  let clientId = packet.clientId;
  let assigned = false;
  if (clientId === "") {
    if (version !== 5 && packet.clean === false) {
      // [MQTT-3.1.3-8] an empty id needs a clean session.
      return refuse({
        reasonV5: REASON.clientIdNotValid,
        codeV3: CONNACK.identifierRejected,
        closeReason: "identifier-rejected",
        why: "an empty client id needs clean session",
      });
    }
    // [MQTT-3.1.3-6], MQTT 5 Assigned Client Identifier [MQTT-3.2.2-16].
    clientId = ctx.sessions.assignClientId();
    assigned = true;
  }
  const will = parseWill(packet);
  const known = { version, clientId, assigned, will };

  if (anonymous !== undefined) {
    // %c in the default permissions names the assigned id when the client sent none.
    const result = clientId === packet.clientId ? anonymous : ctx.auth.anonymous(clientId);
    return negotiate(ctx, packet, known, result.ok ? result : anonymous);
  }
  const decided = ctx.auth.user(packet.username!, packet.password, clientId, address).then(
    (result) => {
      if (result.ok === false && result.lockout !== undefined) {
        const { address: locked, failures, forMs } = result.lockout;
        // One line per lockout, whoever is trying: the address, never the name tried.
        ctx.logs.client(
          "lockout",
          { address: locked, failures, lockedForMs: forMs },
          "mqtt logins from an address locked out: too many failed logins",
        );
      }
      return (): ConnectOutcome =>
        result.ok ? negotiate(ctx, packet, known, result) : authRefusal(ctx, packet, result);
    },
    (err: unknown) => {
      ctx.log.error({ err: errorMessage(err) }, "authentication failed");
      return (): ConnectOutcome =>
        refuse({
          reasonV5: REASON.serverUnavailable,
          codeV3: CONNACK.serverUnavailable,
          closeReason: "auth-error",
          why: "authentication failed",
        });
    },
  );
  return { kind: "authenticate", decided };
}

/** Whether one more connection passes mqtt.max_connections; a takeover does not add one. */
function tooManyConnections(ctx: HandlerContext, replacing: boolean): boolean {
  const { maxConnections } = ctx.options;
  return maxConnections > 0 && ctx.sessions.connectedCount - (replacing ? 1 : 0) >= maxConnections;
}

function maxConnectionsRefusal(ctx: HandlerContext, packet: mqtt.IConnectPacket): ConnectOutcome {
  return refusal(packet, {
    reasonV5: REASON.quotaExceeded,
    codeV3: CONNACK.serverUnavailable,
    closeReason: "max-connections",
    why: `mqtt.max_connections (${ctx.options.maxConnections}) reached`,
  });
}

function refusal(
  packet: mqtt.IConnectPacket,
  r: Omit<Refusal, "clientId" | "username" | "logged">,
  logged = true,
): ConnectOutcome {
  return {
    kind: "refuse",
    refusal: { ...r, logged, clientId: packet.clientId, username: packet.username },
  };
}

function authRefusal(
  ctx: HandlerContext,
  packet: mqtt.IConnectPacket,
  result: Extract<AuthResult, { ok: false }>,
): ConnectOutcome {
  if (result.refusal === "locked-out") return lockedOut(ctx, packet);
  ctx.metrics.authFailures.inc({ code: String(result.returnCode) });
  return refusal(packet, {
    reasonV5: CONNACK_V5[result.returnCode] ?? REASON.notAuthorized,
    codeV3: result.returnCode,
    closeReason:
      result.returnCode === CONNACK.badUsernameOrPassword ? "bad-credentials" : "not-authorized",
    why: result.reason,
  });
}

/**
 * The source address is locked out after too many failed logins. MQTT 5 has a code for
 * it, 0x9F Connection rate exceeded (section 3.2.2.2); MQTT 3.1.1 has none, and 5 (not
 * authorized) is the truthful one of its codes: 4 would say the password was wrong, which
 * was never checked, and 3 (server unavailable) invites an immediate retry.
 */
function lockedOut(ctx: HandlerContext, packet: mqtt.IConnectPacket): ConnectOutcome {
  ctx.metrics.authLockouts.inc();
  return refusal(packet, {
    reasonV5: REASON.connectionRateExceeded,
    codeV3: CONNACK.notAuthorized,
    closeReason: "locked-out",
    why: "too many failed logins from this address; try again later",
  });
}

/** Refused after the credentials were checked: counted as a failure of authorization. */
function notAuthorized(
  ctx: HandlerContext,
  packet: mqtt.IConnectPacket,
  closeReason: string,
  why: string,
): ConnectOutcome {
  ctx.metrics.authFailures.inc({ code: String(CONNACK.notAuthorized) });
  const codes = { reasonV5: REASON.notAuthorized, codeV3: CONNACK.notAuthorized };
  return refusal(packet, { ...codes, closeReason, why });
}

/** The authenticated CONNECT's session, will, keepalive and limits, or its refusal. */
function negotiate(
  ctx: HandlerContext,
  packet: mqtt.IConnectPacket,
  known: { version: ProtocolVersion; clientId: string; assigned: boolean; will: Will | undefined },
  result: Accepted,
): ConnectOutcome {
  const { options } = ctx;
  const { version, clientId, will } = known;
  const v5 = version === 5;
  const props = v5 ? (packet.properties ?? {}) : {};
  const owner = result.user ?? ANONYMOUS;
  const { account } = result;
  if (!ctx.hasAccount(account)) {
    // The authenticator and the accounts come from one config: a bug, not a client's doing.
    ctx.log.error({ account }, "mqtt login into an account the broker does not serve");
    return notAuthorized(ctx, packet, "account-unknown", `account "${account}" is not served`);
  }
  if (tooManyConnections(ctx, ctx.sessions.get(account, clientId)?.connection !== undefined)) {
    return maxConnectionsRefusal(ctx, packet);
  }
  if (!ctx.sessions.mayTake(account, clientId, owner)) {
    // The session is another user's [issue 10]: its owner keeps its connection and session.
    return notAuthorized(
      ctx,
      packet,
      "session-owned",
      "the client id is in use by another user's session",
    );
  }
  // A will is a publish by the client, later: checked now as a PUBLISH would be, so the
  // client learns at once that it could never go out (MQTT 5 CONNACK 0x87 Not authorized,
  // 3.1.1 return code 5), and again when it is published (Broker.publishWill), as
  // mosquitto checks its ACL when it sends a will.
  if (will !== undefined && !result.permissions.canPublish(will.subject)) {
    ctx.metrics.denied.inc({ kind: "will" });
    return notAuthorized(
      ctx,
      packet,
      "will-denied",
      "the will's topic is not one this client may publish to",
    );
  }

  // Session expiry: 3.1.1 clean session 0 keeps the session as long as we keep any;
  // MQTT 5 says how long, within mqtt.max_session_expiry.
  const cleanStart = packet.clean !== false;
  let expiryS: number;
  let announceExpiry: number | undefined;
  const maxExpiryS = Math.floor(options.maxSessionExpiryMs / 1000);
  const asked = v5 ? (props.sessionExpiryInterval ?? 0) : undefined;
  if (asked !== undefined) {
    expiryS = Math.min(asked === EXPIRY_NEVER_S ? maxExpiryS : asked, maxExpiryS);
    if (expiryS !== asked) announceExpiry = expiryS;
  } else {
    expiryS = cleanStart ? 0 : maxExpiryS;
  }
  if (ctx.sessions.limitReached(account, clientId, expiryS * 1000)) {
    // Counted and logged already (rate-limited: the client id is the client's).
    return refusal(
      packet,
      {
        reasonV5: REASON.quotaExceeded,
        codeV3: CONNACK.serverUnavailable,
        closeReason: "max-sessions",
        why: `mqtt.max_sessions (${options.maxSessions}) reached`,
      },
      false,
    );
  }

  let keepaliveS = packet.keepalive ?? 0;
  let serverKeepAlive: number | undefined;
  if (v5 && options.maxKeepaliveS > 0 && (keepaliveS === 0 || keepaliveS > options.maxKeepaliveS)) {
    // MQTT 5 can tell the client a shorter keepalive [MQTT-3.2.2-21]; 3.1.1 cannot, so its
    // own value (0 = off) is honoured there.
    keepaliveS = options.maxKeepaliveS;
    serverKeepAlive = keepaliveS;
  }
  const negotiated: Negotiated = {
    version,
    clientId,
    assigned: known.assigned,
    user: result.user,
    owner,
    account,
    permissions: result.permissions,
    will: will === undefined ? undefined : { ...will, owner },
    cleanStart,
    expiryS,
    connectExpiryWasZero: asked === 0,
    keepaliveS,
    limits: {
      receiveMaximum: props.receiveMaximum ?? DEFAULT_RECEIVE_MAXIMUM,
      maxPacketSize: props.maximumPacketSize ?? Number.POSITIVE_INFINITY,
      topicAliasMaximum: props.topicAliasMaximum ?? 0,
    },
    serverKeepAlive,
    announceExpiry,
  };
  return { kind: "accept", negotiated };
}

/** The CONNACK of an accepted CONNECT; MQTT 5 announces the server's limits in it. */
export function encodeAccepted(
  options: BrokerOptions,
  n: Negotiated,
  sessionPresent: boolean,
): Buffer {
  if (n.version !== 5) return encodeConnack(CONNACK.accepted, sessionPresent);
  const properties: NonNullable<mqtt.IConnackPacket["properties"]> = {
    maximumPacketSize: options.maxPacketSize,
    // How many QoS 1/2 PUBLISHes the client may have unanswered [MQTT-3.3.4-7].
    receiveMaximum: options.receiveMaximum,
  };
  if (options.topicAliasMaximum > 0) properties.topicAliasMaximum = options.topicAliasMaximum;
  if (n.assigned) properties.assignedClientIdentifier = n.clientId;
  if (n.serverKeepAlive !== undefined) properties.serverKeepAlive = n.serverKeepAlive;
  if (n.announceExpiry !== undefined) properties.sessionExpiryInterval = n.announceExpiry;
  return encodeV5({ cmd: "connack", sessionPresent, reasonCode: 0, properties });
}

/** The CONNACK refusing a CONNECT, in the version's code [MQTT-3.2.2-6], [MQTT-3.2.2-7]. */
export function encodeRefusal(version: ProtocolVersion, r: Refusal): Buffer {
  // CONNACK may say why in words whatever the client asked (section 3.2.2.3.7).
  if (version !== 5) return encodeConnack(r.codeV3);
  return encodeV5({
    cmd: "connack",
    sessionPresent: false,
    reasonCode: r.reasonV5,
    properties: { reasonString: r.why },
  });
}

/**
 * The client chose its id and user name: at warn only the address, and rate-limited;
 * the rest at debug, cut short. A lockout was logged once, when it began.
 */
export function logRefusal(ctx: HandlerContext, remote: string, r: Refusal): void {
  if (!r.logged || r.closeReason === "locked-out") return;
  const msg = `mqtt client refused: ${r.why}`;
  ctx.logs.client("refusal", { remote, reason: r.closeReason }, msg);
  ctx.log.debug({ remote, client: clip(r.clientId), user: clip(r.username) }, msg);
}

export function logAccepted(
  ctx: HandlerContext,
  remote: string,
  n: Negotiated,
  sessionPresent: boolean,
): void {
  ctx.log.debug(
    {
      client: n.clientId,
      user: n.user,
      remote,
      protocol: n.version,
      keepalive: n.keepaliveS,
      sessionPresent,
      sessionExpiryS: n.expiryS,
    },
    "mqtt client connected",
  );
}
