import { ALLOW_ALL, type Permissions } from "../../core/index.js";
import { clip } from "../client-text.js";
import type { MqttBase } from "../context.js";
import { type ParsedFilter, parseFilter } from "../filter.js";
import type { Session } from "../session.js";

/**
 * A resumed session is held to its user's permissions of today: subscriptions no longer
 * allowed go (counted as denied subscribes), and so do the owed messages the user may no
 * longer receive (counted as dropped, `not-authorized`).
 */
export function recheckSession(ctx: MqttBase, session: Session, permissions: Permissions): void {
  if (permissions === ALLOW_ALL) return;
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
      ctx.metrics.denied.inc({ kind: "subscribe" });
      subscriptions++;
      continue;
    }
    const patterns = parsed.patterns.filter((p) => p === main || permissions.canSubscribe(p));
    if (patterns.length !== sub.patterns.length) session.subscribe({ ...sub, patterns }, true);
  }
  const messages = session.owed.dropOwed(
    (m) => permissions.canSubscribe(m.subject) && permissions.mayReceive(m.subject),
  );
  if (messages > 0) ctx.metrics.dropped.inc({ reason: "not-authorized" }, messages);
  if (subscriptions > 0 || messages > 0) {
    ctx.log.info(
      { client: clip(session.clientId), subscriptions, messages },
      "mqtt session resumed under narrower permissions: what they no longer allow was dropped",
    );
  }
}
