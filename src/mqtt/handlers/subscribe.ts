import type mqtt from "mqtt-packet";
import {
  errorMessage,
  TOPIC_TOO_LONG,
  TOPIC_TOO_MANY_LEVELS,
  TopicError,
} from "../../core/index.js";
import type { Connection } from "../connection.js";
import {
  FILTER_REFUSALS,
  type FilterRefusal,
  MqttProtocolError,
  REASON,
  SUBACK_FAILURE,
} from "../errors.js";
import { type ParsedFilter, parseFilter } from "../filter.js";
import { encodeSuback } from "../packets.js";
import type { Subscription } from "../session.js";

/** Every QoS is granted as asked: outbound QoS 2 runs PUBREC/PUBREL/PUBCOMP [MQTT-4.3.3]. */
const MAX_GRANTED_QOS = 2;
/** Largest Subscription Identifier, a variable byte integer (section 3.8.2.1.2). */
const MAX_SUBSCRIPTION_ID = 268_435_455;
/** Longest piece of a refused filter quoted in the log: the client chose it. */
const MAX_LOGGED_FILTER = 80;

/** Connections whose refused filters have been logged once already. */
const refusalsLogged = new WeakSet<Connection>();

/**
 * Counts a filter refused while the connection carries on, and logs the first one per
 * connection (the rest are only counted: a client may send thousands).
 */
export function refuseFilter(conn: Connection, filter: string, err: unknown): void {
  const reason = refusalOf(err);
  conn.broker.metrics.subscriptionsRefused.inc({ reason });
  if (refusalsLogged.has(conn)) return;
  refusalsLogged.add(conn);
  conn.broker.log.info(
    {
      client: conn.clientId,
      filter: filter.length > MAX_LOGGED_FILTER ? `${filter.slice(0, MAX_LOGGED_FILTER)}…` : filter,
      reason,
      err: errorMessage(err),
    },
    "subscription refused (further refusals for this client are only counted)",
  );
}

function refusalOf(err: unknown): FilterRefusal {
  if (err instanceof TopicError && err.rule === TOPIC_TOO_LONG) return FILTER_REFUSALS.tooLong;
  if (err instanceof TopicError && err.rule === TOPIC_TOO_MANY_LEVELS) {
    return FILTER_REFUSALS.tooManyLevels;
  }
  return FILTER_REFUSALS.invalid;
}

/** SUBSCRIBE (section 3.8): one bus subscription per NATS pattern of each filter. */
export function handleSubscribe(conn: Connection, packet: mqtt.ISubscribePacket): void {
  const { broker } = conn;
  const session = conn.session!;
  const v5 = conn.protocolVersion === 5;
  const subscriptionId = v5
    ? (packet.properties as { subscriptionIdentifier?: number } | undefined)?.subscriptionIdentifier
    : undefined;
  if (
    subscriptionId !== undefined &&
    (subscriptionId < 1 || subscriptionId > MAX_SUBSCRIPTION_ID)
  ) {
    throw new MqttProtocolError("protocolError", `Subscription Identifier ${subscriptionId}`);
  }
  const codes: number[] = [];
  const added: { sub: Subscription; isNew: boolean }[] = [];
  for (const { topic: filter, qos, nl, rap, rh } of packet.subscriptions) {
    let parsed: ParsedFilter;
    try {
      // Invalid, or past mqtt.max_topic_length / max_topic_levels: refused, the rest go on.
      parsed = parseFilter(filter, broker.options);
    } catch (err) {
      refuseFilter(conn, filter, err);
      codes.push(v5 ? REASON.topicFilterInvalid : SUBACK_FAILURE);
      continue;
    }
    if (v5 && nl === true && parsed.share !== undefined) {
      throw new MqttProtocolError("sharedNoLocal", filter);
    }
    // `a/#` maps to `a.>` plus the parent `a`: the filter is decided by `a.>`; the parent
    // is added only where it is allowed itself (a permission on `a.>` need not cover `a`).
    const main = parsed.patterns[parsed.patterns.length - 1]!;
    if (!conn.permissions.canSubscribe(main)) {
      broker.metrics.denied.inc({ kind: "subscribe" });
      conn.logDenied("subscribe", filter);
      codes.push(v5 ? REASON.notAuthorized : SUBACK_FAILURE);
      continue;
    }
    const patterns = parsed.patterns.filter((p) => p === main || conn.permissions.canSubscribe(p));
    const granted = Math.min(qos, MAX_GRANTED_QOS) as 0 | 1 | 2;
    const spec = {
      filter,
      share: parsed.share,
      qos: granted,
      noLocal: v5 && nl === true,
      retainAsPublished: v5 && rap === true,
      retainHandling: (v5 ? (rh ?? 0) : 0) as 0 | 1 | 2,
      subscriptionId,
      patterns,
      leadingWildcard: parsed.leadingWildcard,
    };
    // Each message walks a session's subscriptions: their number is bounded. Replacing
    // one the session holds is always allowed [MQTT-3.8.4-3].
    if (
      !session.subscriptions.has(filter) &&
      session.subscriptions.size >= broker.options.maxSubscriptionsPerClient
    ) {
      broker.metrics.subscriptionsRefused.inc({ reason: "max-subscriptions-per-client" });
      broker.logLimit(
        "max-subscriptions-per-client",
        { maxSubscriptionsPerClient: broker.options.maxSubscriptionsPerClient },
        "mqtt subscription refused: mqtt.max_subscriptions_per_client reached",
      );
      codes.push(v5 ? REASON.quotaExceeded : SUBACK_FAILURE);
      continue;
    }
    const isNew = session.subscribe(spec);
    added.push({ sub: session.subscriptions.get(filter)!, isNew });
    codes.push(granted);
  }
  conn.send(encodeSuback(packet.messageId ?? 0, codes, v5));
  // Retained messages follow the SUBACK [MQTT-3.3.1-6]: not for shared subscriptions
  // (section 4.8.2), and as Retain Handling says (section 3.8.3.1).
  if (broker.retained === undefined) return;
  for (const { sub, isNew } of added) {
    if (sub.share !== undefined) continue;
    if (sub.retainHandling === 2 || (sub.retainHandling === 1 && !isNew)) continue;
    conn.deliverRetained(sub, broker.retained.match(sub.patterns));
  }
}
