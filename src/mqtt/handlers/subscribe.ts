import type mqtt from "mqtt-packet";
import type { Envelope } from "../../core/index.js";
import type { RetainedMessage } from "../../store/index.js";
import type { ConnectedClient, HandlerContext } from "../context.js";
import { MqttProtocolError, REASON, SUBACK_FAILURE } from "../errors.js";
import { type ParsedFilter, parseFilter } from "../filter.js";
import { encodeSuback } from "../packets.js";
import type { Subscription } from "../session.js";
import { logDenied, refuseFilter } from "./refusals.js";

/** Every QoS is granted as asked: outbound QoS 2 runs PUBREC/PUBREL/PUBCOMP [MQTT-4.3.3]. */
const MAX_GRANTED_QOS = 2;
const DOLLAR = "$".charCodeAt(0);
/** Largest Subscription Identifier, a variable byte integer (section 3.8.2.1.2). */
const MAX_SUBSCRIPTION_ID = 268_435_455;
/** SUBSCRIBE (section 3.8): one bus subscription per NATS pattern of each filter. */
export function handleSubscribe(
  ctx: HandlerContext,
  client: ConnectedClient,
  packet: mqtt.ISubscribePacket,
): void {
  const { session } = client;
  const v5 = client.version === 5;
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
      parsed = parseFilter(filter, ctx.options);
    } catch (err) {
      refuseFilter(ctx, client, filter, err);
      codes.push(v5 ? REASON.topicFilterInvalid : SUBACK_FAILURE);
      continue;
    }
    if (v5 && nl === true && parsed.share !== undefined) {
      throw new MqttProtocolError("sharedNoLocal", filter);
    }
    // `a/#` maps to `a.>` plus the parent `a`: the filter is decided by `a.>`; the parent
    // is added only where it is allowed itself (a permission on `a.>` need not cover `a`).
    const main = parsed.patterns[parsed.patterns.length - 1]!;
    if (!client.permissions.canSubscribe(main)) {
      ctx.metrics.denied.inc({ kind: "subscribe" });
      logDenied(ctx, client, "subscribe", filter);
      codes.push(v5 ? REASON.notAuthorized : SUBACK_FAILURE);
      continue;
    }
    const patterns = parsed.patterns.filter(
      (p) => p === main || client.permissions.canSubscribe(p),
    );
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
      session.subscriptions.size >= ctx.options.maxSubscriptionsPerClient
    ) {
      ctx.metrics.subscriptionsRefused.inc({ reason: "max-subscriptions-per-client" });
      ctx.logs.limit(
        "max-subscriptions-per-client",
        { maxSubscriptionsPerClient: ctx.options.maxSubscriptionsPerClient },
        "mqtt subscription refused: mqtt.max_subscriptions_per_client reached",
      );
      codes.push(v5 ? REASON.quotaExceeded : SUBACK_FAILURE);
      continue;
    }
    const isNew = session.subscribe(spec);
    added.push({ sub: session.subscriptions.get(filter)!, isNew });
    codes.push(granted);
  }
  client.send(encodeSuback(packet.messageId ?? 0, codes, v5));
  // Retained messages follow the SUBACK [MQTT-3.3.1-6]: not for shared subscriptions
  // (section 4.8.2), and as Retain Handling says (section 3.8.3.1).
  if (ctx.retained === undefined) return;
  // The account's retained messages only.
  const retained = ctx.retained.forAccount(session.account);
  for (const { sub, isNew } of added) {
    if (sub.share !== undefined) continue;
    if (sub.retainHandling === 2 || (sub.retainHandling === 1 && !isNew)) continue;
    deliverRetained(client, sub, retained.match(sub.patterns));
  }
}

/**
 * Sends the retained messages a new subscription matches, with the retain flag set
 * [MQTT-3.3.1-6]; wildcard-first filters skip `$` topics [MQTT-4.7.2-1].
 */
function deliverRetained(
  client: ConnectedClient,
  sub: Subscription,
  messages: readonly RetainedMessage[],
): void {
  if (!client.connected) return;
  const ids = sub.subscriptionId !== undefined ? [sub.subscriptionId] : undefined;
  for (const m of messages) {
    if (sub.leadingWildcard && m.subject.charCodeAt(0) === DOLLAR) continue;
    if (!client.permissions.mayReceive(m.subject)) continue;
    const copy: Envelope = {
      subject: m.subject,
      payload: m.payload,
      receivedAtMs: m.receivedAtMs,
      origin: "internal",
      qos: m.qos,
      retain: true,
      ...(m.properties !== undefined ? { properties: m.properties } : {}),
      ...(m.expiresAtMs !== undefined ? { expiresAtMs: m.expiresAtMs } : {}),
    };
    client.session.owed.offer(copy, Math.min(sub.qos, m.qos) as 0 | 1 | 2, true, ids);
  }
}
