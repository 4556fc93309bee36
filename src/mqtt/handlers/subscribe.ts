import type mqtt from "mqtt-packet";
import { errorMessage, filterToPatterns } from "../../core/index.js";
import type { Connection, Subscription } from "../connection.js";
import { SUBACK_FAILURE } from "../errors.js";
import { encodeSuback } from "../packets.js";

/** Every QoS is granted as asked: outbound QoS 2 runs PUBREC/PUBREL/PUBCOMP [MQTT-4.3.3]. */
const MAX_GRANTED_QOS = 2;

/** SUBSCRIBE (section 3.8): one bus subscription per NATS pattern of each filter. */
export function handleSubscribe(conn: Connection, packet: mqtt.ISubscribePacket): void {
  const { broker } = conn;
  const codes: number[] = [];
  const added: Subscription[] = [];
  for (const { topic: filter, qos } of packet.subscriptions) {
    let patterns: string[];
    try {
      patterns = filterToPatterns(filter);
    } catch (err) {
      broker.log.info(
        { client: conn.clientId, filter, err: errorMessage(err) },
        "subscription refused",
      );
      broker.metrics.dropped.inc({ reason: "invalid-filter" });
      codes.push(SUBACK_FAILURE);
      continue;
    }
    // `a/#` maps to `a.>` plus the parent `a`: the filter is decided by `a.>`; the parent
    // is added only where it is allowed itself (a permission on `a.>` need not cover `a`).
    const main = patterns[patterns.length - 1]!;
    if (!conn.permissions.canSubscribe(main)) {
      broker.metrics.denied.inc({ kind: "subscribe" });
      conn.logDenied("subscribe", filter);
      codes.push(SUBACK_FAILURE);
      continue;
    }
    patterns = patterns.filter((p) => p === main || conn.permissions.canSubscribe(p));
    // A new subscription with the same filter replaces the old one [MQTT-3.8.4-3].
    conn.subscriptions.get(filter)?.unsubscribe();
    const busSubs = patterns.map((p) => broker.bus.subscribe(p, conn.subscriber));
    const granted = Math.min(qos, MAX_GRANTED_QOS) as 0 | 1 | 2;
    const subscription: Subscription = {
      filter,
      qos: granted,
      patterns,
      leadingWildcard: filter.startsWith("+") || filter.startsWith("#"),
      unsubscribe: () => {
        for (const s of busSubs) s.unsubscribe();
      },
    };
    conn.subscriptions.set(filter, subscription);
    added.push(subscription);
    codes.push(granted);
  }
  conn.send(encodeSuback(packet.messageId ?? 0, codes));
  // Retained messages follow the SUBACK [MQTT-3.3.1-6].
  if (broker.retained !== undefined) {
    for (const s of added) conn.deliverRetained(s, broker.retained.match(s.patterns));
  }
}
