import { Empty, type NatsConnection, headers as natsHeaders } from "@nats-io/transport-node";
import type { ImportConfig } from "../config/index.js";
import type {
  Bus,
  Clock,
  Envelope,
  Headers,
  Logger,
  RateLimitedLog,
  Replies,
} from "../core/index.js";
import { errorMessage } from "../core/index.js";
import { subjectMap } from "./subject-map.js";
import type { ImportMetrics } from "./upstream-metrics.js";

/** nats-server's answer to a request nobody serves: an empty message with this status. */
const NO_RESPONDERS_STATUS = 503;
const NO_RESPONDERS_DESCRIPTION = "No Responders";

/** What every import needs, whichever kind. */
export interface ImportContext {
  readonly bus: Bus;
  readonly log: Logger;
  /** Warnings input can cause (failed deliveries, refused answers), per key. */
  readonly warn: RateLimitedLog;
  readonly clock: Clock;
  readonly metrics: ImportMetrics;
  /** Routes a local answer back to a hub request. */
  readonly replies: Replies;
  /** The hub connection now, if any: an answer goes out on the link that is up then. */
  readonly hub: () => NatsConnection | undefined;
}

/** NATS headers as the bus carries them (a name may repeat). */
export function toHeaders(
  h: Iterable<[string, string[]]> | undefined,
): Map<string, string[]> | undefined {
  if (h === undefined) return undefined;
  const out = new Map<string, string[]>();
  for (const [k, v] of h) out.set(k, v);
  return out.size === 0 ? undefined : out;
}

/** An imported message as it goes onto the bus. */
export function importEnvelope(
  subject: string,
  payload: Uint8Array,
  headers: Headers | undefined,
  clock: Clock,
  reply?: string,
): Envelope {
  return {
    subject,
    payload,
    ...(headers !== undefined ? { headers } : {}),
    receivedAtMs: clock.now(),
    origin: "upstream",
    // Commands reach QoS 1 subscribers at QoS 1.
    qos: 1,
    ...(reply !== undefined ? { reply } : {}),
  };
}

/**
 * Subscribes one connection to the core (not durable) imports and delivers each message
 * onto the bus on its local subject. A hub request (a message with a reply subject) is
 * delivered with a reply subject of the gateway's own whose answer goes back to the hub;
 * one nobody local serves is answered "no responders" at once, as nats-server would.
 * Called for every new connection: a subscription lives as long as its connection.
 */
export function subscribeCoreImports(
  nc: NatsConnection,
  imports: readonly ImportConfig[],
  cx: ImportContext,
): void {
  const { bus, warn, metrics } = cx;
  for (const entry of imports) {
    if (entry.durable !== null) continue;
    const pattern = entry.subject;
    const toLocal = subjectMap(pattern, entry.local);
    nc.subscribe(pattern, {
      callback: (err, msg) => {
        if (err) {
          warn.log(
            `subscription:${pattern}`,
            { pattern, err: errorMessage(err) },
            "import subscription failed",
          );
          return;
        }
        const subject = toLocal(msg.subject);
        if (subject === undefined) return;
        let reply: string | undefined;
        const hubReply = msg.reply;
        if (hubReply) {
          if (!bus.hasInterest(subject)) {
            answerNoResponders(nc, hubReply, cx);
            return;
          }
          // Undefined when requests.max_pending are awaiting answers (counted there): the
          // command is still delivered, its requester times out.
          reply = cx.replies.mint((answer) => answerHub(hubReply, answer, cx));
        }
        metrics.imported.inc({ kind: "core" });
        const message = importEnvelope(subject, msg.data, toHeaders(msg.headers), cx.clock, reply);
        bus.publish(message).catch((e: unknown) => {
          warn.log("deliver", { subject, err: errorMessage(e) }, "import not delivered");
        });
      },
    });
  }
}

/** The status nats-server sends for a request nobody serves, so the requester fails fast. */
function answerNoResponders(nc: NatsConnection, hubReply: string, cx: ImportContext): void {
  cx.metrics.replies.inc({ result: "no_responders" });
  try {
    nc.publish(hubReply, Empty, {
      headers: natsHeaders(NO_RESPONDERS_STATUS, NO_RESPONDERS_DESCRIPTION),
    });
  } catch {
    // The link is gone: the requester times out, as it would with no link at all.
  }
}

/**
 * Sends a local answer to the hub requester's reply subject on the link that is up now.
 * With none (the link that brought the request is gone), the answer is dropped and
 * counted: a request is not buffered, its requester has timed out or will.
 */
function answerHub(hubReply: string, answer: Envelope, cx: ImportContext): void {
  const hub = cx.hub();
  if (hub === undefined || hub.isClosed()) {
    cx.metrics.replies.inc({ result: "dropped" });
    return;
  }
  try {
    let h: ReturnType<typeof natsHeaders> | undefined;
    if (answer.headers !== undefined && answer.headers.size > 0) {
      h = natsHeaders();
      for (const [k, values] of answer.headers) for (const v of values) h.append(k, v);
    }
    hub.publish(hubReply, answer.payload, h !== undefined ? { headers: h } : undefined);
    cx.metrics.replies.inc({ result: "sent" });
  } catch (err) {
    // Larger than the hub's max_payload, a header nats.js refuses, a link closing.
    cx.metrics.replies.inc({ result: "dropped" });
    cx.warn.log("answer", { err: errorMessage(err) }, "answer to a hub request not sent");
  }
}
