import { randomBytes } from "node:crypto";
import type { Bus, BusSubscription } from "./bus.js";
import { type Clock, systemClock } from "./clock.js";
import type { Envelope } from "./envelope.js";
import { toSubject } from "./topic.js";

export interface RepliesOptions {
  readonly bus: Bus;
  /** Routes held at once; past it `mint` refuses (a request then goes without a reply). */
  readonly maxRoutes: number;
  /** How long a route waits for its reply. */
  readonly ttlMs: number;
  readonly clock?: Clock;
  /** Hears of each route refused because the table was full. */
  readonly onFull?: () => void;
}

interface Route {
  readonly expiresAtMs: number;
  readonly onReply: (reply: Envelope) => void;
}

/** What `Replies.stats` reports. */
export interface RepliesStats {
  readonly routes: number;
  readonly minted: number;
  readonly answered: number;
  readonly expired: number;
  readonly refused: number;
}

/**
 * Request-reply across protocols. A request's reply subject is a NATS inbox; where the
 * answer must go somewhere a subject cannot name by itself (an MQTT 5 response topic with
 * correlation data, a hub inbox on the other side of the uplink), a route is minted: a
 * subject under this gateway's own inbox prefix whose first message is handed to a
 * callback. Routes expire after `ttlMs` and there are at most `maxRoutes`; both are
 * checked when a route is minted, so the table needs no timers.
 */
export class Replies {
  /** `_INBOX.<random>`: one wildcard subscription on the bus serves every route. */
  readonly prefix: string;
  readonly #options: RepliesOptions;
  readonly #clock: Clock;
  /** Minted in expiry order (one ttl for all), so the oldest are first. */
  readonly #routes = new Map<string, Route>();
  /** An MQTT 5 request delivered to several NATS subscribers gets one route. */
  readonly #minted = new WeakMap<Envelope, string>();
  readonly #subscription: BusSubscription;
  #next = 0;
  #stats = { minted: 0, answered: 0, expired: 0, refused: 0 };

  constructor(options: RepliesOptions) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.prefix = `_INBOX.${randomBytes(12).toString("base64url").replaceAll(/[-_]/g, "x")}`;
    this.#subscription = options.bus.subscribe(`${this.prefix}.*`, {
      deliver: (m) => this.#answer(m),
    });
  }

  /**
   * A subject whose first message goes to `onReply`; undefined when the table is full
   * (counted). The route is dropped after that message or after `ttlMs`.
   */
  mint(onReply: (reply: Envelope) => void): string | undefined {
    const now = this.#clock.now();
    this.#sweep(now);
    if (this.#routes.size >= this.#options.maxRoutes) {
      this.#stats.refused++;
      this.#options.onFull?.();
      return undefined;
    }
    const token = (this.#next++).toString(36);
    this.#routes.set(token, { expiresAtMs: now + this.#options.ttlMs, onReply });
    this.#stats.minted++;
    return `${this.prefix}.${token}`;
  }

  /**
   * The subject that answers `request`: its NATS reply subject; or for an MQTT 5 request,
   * its response topic as a subject, through a route that puts the correlation data back
   * on the answer when there is some. Undefined for a message that is no request.
   */
  replyTo(request: Envelope): string | undefined {
    if (request.reply !== undefined) return request.reply;
    const properties = request.properties;
    const topic = properties?.responseTopic;
    if (topic === undefined) return undefined;
    let subject: string;
    try {
      subject = toSubject(topic);
    } catch {
      return undefined;
    }
    const correlationData = properties?.correlationData;
    if (correlationData === undefined) return subject;
    const known = this.#minted.get(request);
    if (known !== undefined) return known;
    const bus = this.#options.bus;
    const minted = this.mint((answer) => {
      const routed: Envelope = {
        ...answer,
        subject,
        properties: { ...answer.properties, correlationData },
      };
      void bus.publish(routed).catch(() => {});
    });
    if (minted !== undefined) this.#minted.set(request, minted);
    return minted;
  }

  get stats(): RepliesStats {
    return { routes: this.#routes.size, ...this.#stats };
  }

  close(): void {
    this.#subscription.unsubscribe();
    this.#routes.clear();
  }

  #answer(message: Envelope): undefined {
    const token = message.subject.slice(this.prefix.length + 1);
    const route = this.#routes.get(token);
    if (route === undefined) return undefined;
    this.#routes.delete(token);
    if (route.expiresAtMs <= this.#clock.now()) {
      this.#stats.expired++;
      return undefined;
    }
    this.#stats.answered++;
    route.onReply(message);
    return undefined;
  }

  #sweep(now: number): void {
    for (const [token, route] of this.#routes) {
      if (route.expiresAtMs > now) return;
      this.#routes.delete(token);
      this.#stats.expired++;
    }
  }
}
