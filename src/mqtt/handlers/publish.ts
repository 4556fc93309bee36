import { isUtf8 } from "node:buffer";
import type mqtt from "mqtt-packet";
import type { Envelope } from "../../core/index.js";
import { errorMessage, TopicError, toSubject } from "../../core/index.js";
import type { ConnectedClient, HandlerContext } from "../context.js";
import { MqttProtocolError, REASON } from "../errors.js";
import { propertiesToHeaders, readPublishProperties } from "../properties.js";
import { logDenied } from "./refusals.js";

const EMPTY = Buffer.alloc(0);
/** Frozen, so the metrics registry computes their key once. */
const QOS_LABELS = [
  Object.freeze({ qos: "0" }),
  Object.freeze({ qos: "1" }),
  Object.freeze({ qos: "2" }),
] as const;

/**
 * PUBLISH from a client (section 3.3). QoS 1 and 2 are acknowledged only after every
 * durable copy (the outbox, persistent sessions) is committed; a failed commit closes
 * the connection without the ack, so the client still owns the message and sends it again.
 */
export function handlePublish(
  ctx: HandlerContext,
  client: ConnectedClient,
  packet: mqtt.IPublishPacket,
  raw: Buffer,
): void {
  const v5 = client.version === 5;
  const qos = packet.qos;
  const packetId = packet.messageId ?? 0;
  // Flow control first: past the Receive Maximum nothing else of it matters (section 4.9).
  if (qos > 0) client.inboundPublish(packetId);
  let topic = packet.topic;
  const extra = v5 ? readPublishProperties(raw, qos) : undefined;
  if (extra?.topicAlias !== undefined) {
    const alias = extra.topicAlias;
    if (alias === 0 || alias > ctx.options.topicAliasMaximum) {
      throw new MqttProtocolError("topicAliasInvalid", `alias ${alias}`);
    }
    if (topic === "") {
      const known = client.aliasesIn.get(alias);
      if (known === undefined) throw new MqttProtocolError("unknownTopicAlias", `alias ${alias}`);
      topic = known;
    } else {
      client.aliasesIn.set(alias, topic);
    }
  }
  let subject: string;
  try {
    subject = toSubject(topic);
  } catch (err) {
    if (err instanceof TopicError) {
      // U+0000 makes the packet malformed [MQTT-1.5.4-2]; the rest is a bad topic name.
      const violation =
        err.rule === "[MQTT-3.3.2-2]"
          ? "wildcardInTopicName"
          : err.rule === "[MQTT-4.7.3-2]"
            ? "malformed"
            : "invalidTopicName";
      throw new MqttProtocolError(violation, err.message, { cause: err });
    }
    throw err;
  }
  ctx.metrics.received.inc(QOS_LABELS[qos]);
  const payload =
    typeof packet.payload === "string" ? Buffer.from(packet.payload) : (packet.payload ?? EMPTY);
  const properties = extra?.properties;
  if (properties?.payloadFormat === 1 && !isUtf8(payload)) {
    // [MQTT-3.3.2-4] the receiver may check a payload said to be UTF-8.
    ctx.metrics.dropped.inc({ reason: "payload-format-invalid" });
    nack(client, qos, packetId, REASON.payloadFormatInvalid);
    return;
  }
  const { session } = client;
  if (qos === 2) {
    // A resent QoS 2 PUBLISH with an id we hold is not delivered again, and is
    // answered with PUBREC until PUBREL arrives [MQTT-4.3.3-2]; while the first copy
    // is still committing, its PUBREC is on the way.
    const held = session.awaitingRelease.get(packetId);
    if (held === "received") client.sendInboundAck("pubrec", packetId);
    if (held !== undefined) return;
  }
  const now = ctx.clock.now();
  const plain: Envelope = {
    subject,
    payload,
    receivedAtMs: now,
    origin: "mqtt",
    qos,
    retain: packet.retain,
    publisher: client.clientId,
  };
  // MQTT 3.1.1 (the common case) has no properties: no spreads, each an object more.
  const message: Envelope =
    extra === undefined
      ? plain
      : {
          ...plain,
          ...(properties !== undefined
            ? { properties, headers: propertiesToHeaders(properties) }
            : {}),
          ...(extra.messageExpiryS !== undefined
            ? { expiresAtMs: now + extra.messageExpiryS * 1000 }
            : {}),
        };

  // The one way in for what clients publish: permissions, then the retained store, then
  // the bus (see Broker.publish).
  const outcome = ctx.publish(client, message);
  if (!outcome.ok) {
    logDenied(ctx, client, "publish", topic);
    nack(client, qos, packetId, REASON.notAuthorized);
    return;
  }
  if (qos === 0) {
    outcome.committed.catch((err) => {
      ctx.metrics.dropped.inc({ reason: dropReason(err) });
      ctx.log.debug({ client: client.clientId, err: errorMessage(err) }, "QoS 0 message lost");
    });
    return;
  }
  if (qos === 2) session.awaitingRelease.set(packetId, "committing");
  client.trackCommit(
    outcome.committed,
    () => {
      if (qos === 2) {
        session.awaitingRelease.set(packetId, "received");
        if (session.persistent)
          session.sessionStore?.addAwaitingRelease(session.clientId, packetId);
      }
      client.sendInboundAck(qos === 1 ? "puback" : "pubrec", packetId);
    },
    (err) => {
      if (qos === 2) session.awaitingRelease.delete(packetId);
      const reason = dropReason(err);
      ctx.metrics.dropped.inc({ reason });
      if (v5 && reason === "buffer-full") {
        // MQTT 5 can say no: Quota exceeded; the client decides what to do with it.
        client.sendInboundAck(qos === 1 ? "puback" : "pubrec", packetId, REASON.quotaExceeded);
        return;
      }
      ctx.log.warn(
        { client: client.clientId, err: errorMessage(err) },
        "message not stored; closing the connection without an ack so the client resends it",
      );
      client.close("store-failed", true);
    },
  );
}

/**
 * Refuses a QoS 1/2 PUBLISH. MQTT 3.1.1 has no negative ack: the message is dropped, and
 * still acknowledged so the client does not resend it forever. MQTT 5 says why
 * [MQTT-3.4.2-1].
 */
function nack(client: ConnectedClient, qos: 0 | 1 | 2, packetId: number, reason: number): void {
  const v5 = client.version === 5;
  const code = v5 ? reason : 0;
  if (qos === 1) client.sendInboundAck("puback", packetId, code);
  if (qos === 2) {
    // A PUBREC with an error ends the exchange; 3.1.1 waits for PUBREL as usual.
    if (!v5) client.session.awaitingRelease.set(packetId, "received");
    client.sendInboundAck("pubrec", packetId, code);
  }
}

/** `buffer-full` when the buffer refused the message by policy, else `store-failed`. */
function dropReason(err: unknown): string {
  return (err as { code?: string }).code === "LG_ERR_BUFFER_FULL" ? "buffer-full" : "store-failed";
}

/** PUBREL completes an inbound QoS 2 exchange (section 3.6). */
export function handlePubrel(
  _ctx: HandlerContext,
  client: ConnectedClient,
  packet: mqtt.IPubrelPacket,
): void {
  const packetId = packet.messageId ?? 0;
  const { session } = client;
  const known = session.awaitingRelease.delete(packetId);
  if (known && session.persistent) {
    session.sessionStore?.deleteAwaitingRelease(session.clientId, packetId);
  }
  // 3.1.1: PUBCOMP even for an unknown id (the client may be retrying after our
  // restart); MQTT 5 says the id was not found [MQTT-3.7.2-1].
  const code = !known && client.version === 5 ? REASON.packetIdNotFound : 0;
  client.sendInboundAck("pubcomp", packetId, code);
}
