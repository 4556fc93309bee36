import type mqtt from "mqtt-packet";
import type { Envelope } from "../../core/index.js";
import { errorMessage, TopicError, toSubject } from "../../core/index.js";
import type { Connection } from "../connection.js";
import { MqttProtocolError } from "../errors.js";
import { encodeAck } from "../packets.js";

const EMPTY = Buffer.alloc(0);

/**
 * PUBLISH from a client (section 3.3). QoS 1 and 2 are acknowledged only after every
 * durable copy (the outbox) is committed; a failed commit closes the connection without
 * the ack, so the client still owns the message and sends it again.
 */
export function handlePublish(conn: Connection, packet: mqtt.IPublishPacket): void {
  const { broker } = conn;
  let subject: string;
  try {
    subject = toSubject(packet.topic);
  } catch (err) {
    if (err instanceof TopicError) {
      const violation = err.rule === "[MQTT-3.3.2-2]" ? "wildcardInTopicName" : "invalidTopicName";
      throw new MqttProtocolError(violation, err.message, { cause: err });
    }
    throw err;
  }
  const qos = packet.qos;
  broker.metrics.received.inc({ qos: String(qos) });
  if (!conn.permissions.canPublish(subject)) {
    // MQTT 3.1.1 has no negative ack: the message is dropped, and still acknowledged so
    // the client does not resend it forever.
    broker.metrics.denied.inc({ kind: "publish" });
    conn.logDenied("publish", packet.topic);
    const id = packet.messageId ?? 0;
    if (qos === 1) conn.send(encodeAck("puback", id));
    if (qos === 2) conn.send(encodeAck("pubrec", id));
    return;
  }
  const payload = packet.payload;
  const message: Envelope = {
    subject,
    payload: typeof payload === "string" ? Buffer.from(payload) : (payload ?? EMPTY),
    receivedAtMs: Date.now(),
    origin: "mqtt",
    qos,
    retain: packet.retain,
  };

  if (packet.retain && broker.retained !== undefined) {
    try {
      broker.retained.set(subject, message.payload, qos, message.receivedAtMs);
    } catch (err) {
      broker.log.warn({ subject, err: errorMessage(err) }, "retained message not stored");
    }
  }

  if (qos === 0) {
    broker.bus.publish(message).catch((err) => {
      broker.metrics.dropped.inc({ reason: dropReason(err) });
      broker.log.debug({ client: conn.clientId, err: errorMessage(err) }, "QoS 0 message lost");
    });
    return;
  }

  const packetId = packet.messageId ?? 0;
  if (qos === 2) {
    // A resent QoS 2 PUBLISH with an id we hold is not delivered again, and is
    // answered with PUBREC until PUBREL arrives [MQTT-4.3.3-2]; while the first copy
    // is still committing, its PUBREC is on the way.
    const held = conn.awaitingRelease.get(packetId);
    if (held === "received") conn.send(encodeAck("pubrec", packetId));
    if (held !== undefined) return;
    conn.awaitingRelease.set(packetId, "committing");
  }
  conn.trackCommit(
    broker.bus.publish(message),
    () => {
      if (qos === 2) conn.awaitingRelease.set(packetId, "received");
      conn.send(encodeAck(qos === 1 ? "puback" : "pubrec", packetId));
    },
    (err) => {
      if (qos === 2) conn.awaitingRelease.delete(packetId);
      broker.metrics.dropped.inc({ reason: dropReason(err) });
      broker.log.warn(
        { client: conn.clientId, err: errorMessage(err) },
        "message not stored; closing the connection without an ack so the client resends it",
      );
      conn.close("store-failed", true);
    },
  );
}

/** `buffer-full` when the buffer refused the message by policy, else `store-failed`. */
function dropReason(err: unknown): string {
  return (err as { code?: string }).code === "LG_ERR_BUFFER_FULL" ? "buffer-full" : "store-failed";
}

/** PUBREL completes an inbound QoS 2 exchange (section 3.6). */
export function handlePubrel(conn: Connection, packet: mqtt.IPubrelPacket): void {
  const packetId = packet.messageId ?? 0;
  conn.awaitingRelease.delete(packetId);
  // PUBCOMP even for an unknown id: the client may be retrying after our restart.
  conn.send(encodeAck("pubcomp", packetId));
}
