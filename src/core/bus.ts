import type { Envelope } from "./envelope.js";
import { Sublist, type SublistEntry } from "./sublist.js";

/**
 * A bus subscriber. A durable subscriber (the outbox) returns a promise that settles
 * when the message is committed; `bus.publish` waits for those, so a QoS 1 PUBACK is
 * sent only once every durable copy exists. Local subscribers return nothing.
 */
export interface BusSubscriber {
  deliver(message: Envelope): Promise<void> | undefined;
  /**
   * Stores or forwards, never answers (the outbox): not counted by `hasInterest`, so a
   * request only it takes still gets "no responders".
   */
  readonly passive?: boolean;
}

export interface BusSubscription {
  readonly pattern: string;
  readonly queue: string | undefined;
  unsubscribe(): void;
}

const DONE: Promise<void> = Promise.resolve();

/** The in-process subject space: subjects with NATS wildcards and queue groups. */
export class Bus {
  readonly #subs = new Sublist<BusSubscriber>();
  readonly #onDeliveryError: (err: unknown, subject: string) => void;
  /**
   * Per queue group: its subscriptions (the entry goes with the last) and whose turn it
   * is, so each group takes turns on its own whatever else is published.
   */
  readonly #groups = new Map<string, { subscriptions: number; turn: number }>();

  /**
   * `onDeliveryError` hears of a subscriber that threw: one broken subscriber must not
   * fail the publisher or the other subscribers.
   */
  constructor(options: { onDeliveryError?: (err: unknown, subject: string) => void } = {}) {
    this.#onDeliveryError = options.onDeliveryError ?? (() => {});
  }

  subscribe(pattern: string, subscriber: BusSubscriber, queue?: string): BusSubscription {
    const entry: SublistEntry<BusSubscriber> = this.#subs.insert(pattern, subscriber, queue);
    if (queue !== undefined) {
      const group = this.#groups.get(queue);
      if (group === undefined) this.#groups.set(queue, { subscriptions: 1, turn: 0 });
      else group.subscriptions++;
    }
    let active = true;
    return {
      pattern,
      queue,
      unsubscribe: () => {
        if (!active) return;
        active = false;
        this.#subs.remove(entry);
        if (queue === undefined) return;
        const group = this.#groups.get(queue)!;
        if (--group.subscriptions === 0) this.#groups.delete(queue);
      },
    };
  }

  /**
   * Delivers to every matching subscriber (one member per queue group). Resolves when
   * durable subscribers have committed; rejects if one of them failed to.
   */
  publish(message: Envelope): Promise<void> {
    const match = this.#subs.match(message.subject);
    let pending: Promise<void> | undefined;
    let more: Promise<void>[] | undefined;
    // Written out (no closure per publish): this runs for every message.
    for (const subscriber of match.plain) {
      const p = this.#deliver(subscriber, message);
      if (p === undefined) continue;
      if (pending === undefined) pending = p;
      else if (more === undefined) more = [pending, p];
      else more.push(p);
    }
    for (const members of match.queues) {
      // Each group in turn among the members that match this subject.
      const group = this.#groups.get(members.queue)!;
      const member = members[group.turn++ % members.length];
      if (member === undefined) continue;
      const p = this.#deliver(member, message);
      if (p === undefined) continue;
      if (pending === undefined) pending = p;
      else if (more === undefined) more = [pending, p];
      else more.push(p);
    }
    if (more !== undefined) return Promise.all(more).then(() => undefined);
    return pending ?? DONE;
  }

  #deliver(subscriber: BusSubscriber, message: Envelope): Promise<void> | undefined {
    try {
      return subscriber.deliver(message);
    } catch (err) {
      this.#onDeliveryError(err, message.subject);
      return undefined;
    }
  }

  /** True when a publish on literal `subject` would reach a subscriber that may answer. */
  hasInterest(subject: string): boolean {
    const match = this.#subs.match(subject);
    if (match.queues.length > 0) return true;
    for (const subscriber of match.plain) if (subscriber.passive !== true) return true;
    return false;
  }

  get subscriptionCount(): number {
    return this.#subs.size;
  }
}
