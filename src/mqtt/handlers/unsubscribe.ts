import type mqtt from "mqtt-packet";
import type { ConnectedClient, HandlerContext } from "../context.js";
import { REASON } from "../errors.js";
import { checkFilterBounds } from "../filter.js";
import { encodeAck, encodeUnsuback } from "../packets.js";
import { refuseFilter } from "./refusals.js";

/**
 * UNSUBSCRIBE (section 3.10); unknown filters are acknowledged all the same
 * [MQTT-3.10.4-5], MQTT 5 saying which ones were unknown [MQTT-3.11.3-1]. A filter past
 * mqtt.max_topic_length / max_topic_levels (none can have been subscribed) is refused,
 * MQTT 5 with 0x8F, and counted like a refused SUBSCRIBE filter.
 */
export function handleUnsubscribe(
  ctx: HandlerContext,
  client: ConnectedClient,
  packet: mqtt.IUnsubscribePacket,
): void {
  const { session } = client;
  const codes = packet.unsubscriptions.map((filter) => {
    try {
      checkFilterBounds(filter, ctx.options);
    } catch (err) {
      refuseFilter(ctx, client, filter, err);
      return REASON.topicFilterInvalid;
    }
    return session.unsubscribe(filter) ? REASON.success : REASON.noSubscriptionExisted;
  });
  const id = packet.messageId ?? 0;
  client.send(client.version === 5 ? encodeUnsuback(id, codes) : encodeAck("unsuback", id));
}
