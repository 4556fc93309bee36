import {
  errorMessage,
  TOPIC_TOO_LONG,
  TOPIC_TOO_MANY_LEVELS,
  TopicError,
} from "../../core/index.js";
import { clip } from "../client-text.js";
import type { ConnectedClient, HandlerContext } from "../context.js";
import { FILTER_REFUSALS, type FilterRefusal } from "../errors.js";

/** Longest piece of a refused filter quoted in the log: the client chose it. */
const MAX_LOGGED_FILTER = 80;

/**
 * A PUBLISH or SUBSCRIBE denied by permissions: one log line per client and kind (a
 * misconfigured device must not flood the log), and those rate-limited across clients:
 * connections can be cycled. The client's text is cut short.
 */
export function logDenied(
  ctx: HandlerContext,
  client: ConnectedClient,
  kind: "publish" | "subscribe",
  topic: string,
): void {
  if (!client.firstTime(kind === "publish" ? "publish-denied" : "subscribe-denied")) return;
  ctx.logs.client(
    "refusal",
    { client: clip(client.clientId), user: clip(client.user), topic: clip(topic) },
    `mqtt ${kind} denied by permissions (further denials of this client are only counted)`,
  );
}

/**
 * Counts a filter refused while the connection carries on, and logs the first one per
 * connection (the rest are only counted: a client may send thousands).
 */
export function refuseFilter(
  ctx: HandlerContext,
  client: ConnectedClient,
  filter: string,
  err: unknown,
): void {
  const reason = refusalOf(err);
  ctx.metrics.subscriptionsRefused.inc({ reason });
  if (!client.firstTime("filter-refused")) return;
  ctx.log.info(
    {
      client: client.clientId,
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
