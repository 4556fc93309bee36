import type { Bus, BusSubscription, ClockTimer, Envelope } from "../core/index.js";
import { subjectMatches } from "../core/index.js";
import type { SessionStore, StoredSession, StoredWill } from "../store/index.js";
import type { Connection } from "./connection.js";
import type { SessionContext } from "./context.js";
import { type ParsedFilter, parseFilter } from "./filter.js";
import { OutboundQueue } from "./outbound.js";

export type { Outbound, OutboundPhase } from "./outbound-message.js";

const DOLLAR = "$".charCodeAt(0);
/** Node timers hold at most 2^31-1 ms (24.8 days); MQTT 5 intervals go to 136 years. */
const MAX_TIMER_MS = 0x7fff_ffff;

export interface Subscription {
  /** As the client sent it, `$share/<group>/` included. */
  readonly filter: string;
  /** The shared subscription's group (a bus queue group), if any. */
  readonly share: string | undefined;
  readonly qos: 0 | 1 | 2;
  readonly noLocal: boolean;
  readonly retainAsPublished: boolean;
  readonly retainHandling: 0 | 1 | 2;
  readonly subscriptionId: number | undefined;
  readonly patterns: readonly string[];
  /** The filter starts with `+` or `#`, so it must not match `$` topics [MQTT-4.7.2-1]. */
  readonly leadingWildcard: boolean;
  busSubs: BusSubscription[];
}

/**
 * The will from CONNECT (section 3.1.3.2): what the store keeps of a delayed will, with
 * the MQTT 5 Will Delay Interval in place of the time it falls due.
 */
export type Will = Omit<StoredWill, "dueAtMs"> & { readonly delayMs: number };

/** A will held back by its delay interval (MQTT 5, section 3.1.3.2.2). */
interface PendingWill {
  readonly will: Will;
  readonly cancel: () => void;
}

/**
 * A session's life: `online` while a connection holds it; `offline` waiting for its
 * client until its expiry (a persistent session; the timer is absent at first, and after
 * shutdown stopped it); `ended` for good.
 */
export type SessionState =
  | { readonly kind: "online"; readonly connection: Connection }
  | { readonly kind: "offline"; readonly cancelExpiry: (() => void) | undefined }
  | { readonly kind: "ended" };

/**
 * The server side of an MQTT session (section 4.1): subscriptions, messages owed to the
 * client (see session-outbound.ts), inbound QoS 2 ids. It outlives its connections when
 * the client asked for a persistent session, and then lives in the session store too.
 */
export class Session {
  readonly clientId: string;
  /** The account it lives in: its subscriptions are on that account's bus. */
  readonly account: string;
  /** The session store of its account (absent: sessions are not stored). */
  readonly sessionStore: SessionStore | undefined;
  readonly #bus: Bus;
  readonly #ctx: SessionContext;
  /**
   * The user it belongs to (a user name, or ANONYMOUS); no one else may take it over.
   * Undefined only for a session stored before owners were recorded.
   */
  owner: string | undefined;
  /** How long the session outlives its connection; 0 = it ends with it. */
  expiryMs: number;
  #state: SessionState = { kind: "offline", cancelExpiry: undefined };
  readonly subscriptions = new Map<string, Subscription>();
  /** The non-shared subscription when there is exactly one (the common case). */
  #onlyPlain: Subscription | undefined;
  /** What is owed to the client: in flight, to resend, queued (see outbound.ts). */
  readonly owed: OutboundQueue;
  /** Inbound QoS 2 ids: `committing` until stored, then `received` until PUBREL. */
  readonly awaitingRelease = new Map<number, "committing" | "received">();
  #will: PendingWill | undefined;
  readonly #subscriber = { deliver: (m: Envelope) => this.#deliver(m) };

  constructor(ctx: SessionContext, account: string, clientId: string, expiryMs: number) {
    this.#ctx = ctx;
    this.account = account;
    this.#bus = ctx.busOf(account);
    this.sessionStore = ctx.sessionStore?.forAccount(account);
    this.clientId = clientId;
    this.expiryMs = expiryMs;
    this.owed = new OutboundQueue(ctx, this);
  }

  get state(): SessionState {
    return this.#state;
  }

  get connection(): Connection | undefined {
    return this.#state.kind === "online" ? this.#state.connection : undefined;
  }

  get ended(): boolean {
    return this.#state.kind === "ended";
  }

  get #store(): SessionStore | undefined {
    return this.expiryMs > 0 ? this.sessionStore : undefined;
  }

  get persistent(): boolean {
    return this.expiryMs > 0;
  }

  /** The bus subscriber behind every non-shared subscription of this session. */
  get subscriber(): { deliver(m: Envelope): Promise<void> | undefined } {
    return this.#subscriber;
  }

  // -- subscriptions -------------------------------------------------------------

  /**
   * Adds (or replaces [MQTT-3.8.4-3]) a subscription; true when it is new. `stored`: it
   * comes from the store (a restart), so it is not written again.
   */
  subscribe(sub: Omit<Subscription, "busSubs">, stored = false): boolean {
    const previous = this.subscriptions.get(sub.filter);
    for (const s of previous?.busSubs ?? []) s.unsubscribe();
    const full: Subscription = { ...sub, busSubs: [] };
    const subscriber =
      sub.share === undefined
        ? this.#subscriber
        : { deliver: (m: Envelope) => this.#deliverShared(full, m) };
    full.busSubs = sub.patterns.map((p) => this.#bus.subscribe(p, subscriber, sub.share));
    this.subscriptions.set(sub.filter, full);
    if (!stored) this.#store?.saveSubscription(this.clientId, sub);
    this.#findOnlyPlain();
    return previous === undefined;
  }

  #findOnlyPlain(): void {
    let only: Subscription | undefined;
    for (const sub of this.subscriptions.values()) {
      if (sub.share !== undefined) continue;
      if (only !== undefined) {
        this.#onlyPlain = undefined;
        return;
      }
      only = sub;
    }
    this.#onlyPlain = only;
  }

  unsubscribe(filter: string): boolean {
    const sub = this.subscriptions.get(filter);
    if (sub === undefined) return false;
    for (const s of sub.busSubs) s.unsubscribe();
    this.subscriptions.delete(filter);
    this.#store?.deleteSubscription(this.clientId, filter);
    this.#findOnlyPlain();
    return true;
  }

  // -- delivery ------------------------------------------------------------------

  /**
   * A message from the bus for the non-shared subscriptions: delivered once, at the
   * highest QoS of those that match [MQTT-3.3.5-1], with all their identifiers.
   */
  #deliver(message: Envelope): Promise<void> | undefined {
    const dollar = message.subject.charCodeAt(0) === DOLLAR;
    const only = this.#onlyPlain;
    if (only !== undefined) {
      // One subscription behind the bus subscriber: the bus matched it already.
      if (dollar && only.leadingWildcard) return undefined;
      if (only.noLocal && message.publisher === this.clientId) return undefined;
      const ids = only.subscriptionId !== undefined ? [only.subscriptionId] : undefined;
      const retain = only.retainAsPublished && message.retain === true;
      return this.owed.offer(message, Math.min(only.qos, message.qos) as 0 | 1 | 2, retain, ids);
    }
    let granted = -1;
    let ids: number[] | undefined;
    let retain = false;
    for (const sub of this.subscriptions.values()) {
      if (sub.share !== undefined) continue;
      if (dollar && sub.leadingWildcard) continue;
      // No Local: not back to the client that published it [MQTT-3.8.3-3].
      if (sub.noLocal && message.publisher === this.clientId) continue;
      if (!sub.patterns.some((p) => subjectMatches(p, message.subject))) continue;
      if (sub.qos > granted) granted = sub.qos;
      if (sub.subscriptionId !== undefined) {
        ids ??= [];
        ids.push(sub.subscriptionId);
      }
      // Live deliveries clear the retain flag [MQTT-3.3.1-9] unless Retain As Published.
      if (sub.retainAsPublished && message.retain === true) retain = true;
    }
    if (granted < 0) return undefined;
    return this.owed.offer(message, Math.min(granted, message.qos) as 0 | 1 | 2, retain, ids);
  }

  #deliverShared(sub: Subscription, message: Envelope): Promise<void> | undefined {
    if (message.subject.charCodeAt(0) === DOLLAR && sub.leadingWildcard) return undefined;
    const ids = sub.subscriptionId !== undefined ? [sub.subscriptionId] : undefined;
    const retain = sub.retainAsPublished && message.retain === true;
    return this.owed.offer(message, Math.min(sub.qos, message.qos) as 0 | 1 | 2, retain, ids);
  }

  // -- connections ---------------------------------------------------------------

  /** A connection takes the session; a resumed one is owed what was in flight first. */
  attach(conn: Connection, resumed: boolean): void {
    this.#stopExpiry();
    this.cancelWill();
    this.#state = { kind: "online", connection: conn };
    if (this.#store !== undefined) {
      this.sessionStore?.saveSession(this.clientId, this.expiryMs, undefined);
    }
    this.owed.attach(resumed);
  }

  /** The session's connection is gone: the session ends, or waits for its expiry. */
  detach(conn: Connection): void {
    if (this.connection !== conn) return;
    this.#state = { kind: "offline", cancelExpiry: undefined };
    if (this.expiryMs === 0) {
      this.#ctx.endSession(this);
      return;
    }
    this.sessionStore?.saveSession(this.clientId, this.expiryMs, this.#ctx.clock.now());
    this.armExpiry(this.expiryMs);
    this.owed.unload();
  }

  /** Ends the session, offline for `delayMs` from now, unless a client takes it first. */
  armExpiry(delayMs: number): void {
    this.#stopExpiry();
    const cancelExpiry = this.#longTimeout(
      this.#ctx.guard.wrap("mqtt.session-expiry", () => {
        if (this.#state.kind === "offline") {
          this.#state = { kind: "offline", cancelExpiry: undefined };
          this.#ctx.endSession(this);
        }
      }),
      delayMs,
    );
    if (this.#state.kind === "offline") this.#state = { kind: "offline", cancelExpiry };
  }

  #stopExpiry(): void {
    if (this.#state.kind !== "offline") return;
    this.#state.cancelExpiry?.();
    this.#state = { kind: "offline", cancelExpiry: undefined };
  }

  /** A timer for any delay on the clock: longer ones are chained. Call the result to cancel. */
  #longTimeout(fn: () => void, delayMs: number): () => void {
    const { clock } = this.#ctx;
    let timer: ClockTimer;
    const arm = (left: number): void => {
      const step = Math.min(Math.max(left, 0), MAX_TIMER_MS);
      timer = clock.setTimeout(() => (left > step ? arm(left - step) : fn()), step);
      timer.unref?.();
    };
    arm(delayMs);
    return () => clock.clearTimeout(timer);
  }

  /**
   * Holds the will until its delay passes or the session ends, whichever is first
   * [MQTT-3.1.3-9]; a connection to the session before then cancels it.
   */
  delayWill(will: Will, delayMs: number): void {
    this.cancelWill();
    const cancel = this.#longTimeout(
      this.#ctx.guard.wrap("mqtt.will-delay", () => {
        this.#will = undefined;
        this.#store?.saveWill(this.clientId, undefined);
        this.#ctx.publishWill(this.account, this.clientId, will);
      }),
      delayMs,
    );
    this.#will = { will, cancel };
    // Part of the session's state [MQTT-4.1]: a restart meanwhile does not lose it.
    this.#store?.saveWill(this.clientId, { ...will, dueAtMs: this.#ctx.clock.now() + delayMs });
  }

  cancelWill(): void {
    if (this.#will === undefined) return;
    this.#will.cancel();
    this.#will = undefined;
    this.#store?.saveWill(this.clientId, undefined);
  }

  /** Ends the session: its subscriptions go, a pending will is published now. */
  end(): void {
    if (this.#state.kind === "ended") return;
    this.#stopExpiry();
    this.#state = { kind: "ended" };
    for (const sub of this.subscriptions.values()) for (const s of sub.busSubs) s.unsubscribe();
    this.subscriptions.clear();
    this.#onlyPlain = undefined;
    const will = this.#will;
    if (will !== undefined) {
      will.cancel();
      this.#will = undefined;
      this.#ctx.publishWill(this.account, this.clientId, will.will);
    }
    this.owed.clear();
  }

  /** Stops timers at gateway shutdown; the stored session stays for the next start. */
  suspend(): void {
    this.#stopExpiry();
    this.#will?.cancel();
    this.#will = undefined;
  }

  /** Makes the session persistent, or not, for its current connection (at CONNECT). */
  setExpiry(expiryMs: number): void {
    const wasStored = this.expiryMs > 0;
    // No longer stored: what is owed moves to memory first.
    if (wasStored && expiryMs === 0) this.owed.loadAll();
    this.expiryMs = expiryMs;
    if (wasStored !== expiryMs > 0) this.#ctx.persistenceChanged(this, wasStored ? -1 : 1);
    const store = this.sessionStore;
    if (store === undefined) return;
    if (expiryMs === 0) {
      if (wasStored) store.deleteSession(this.clientId);
      return;
    }
    store.saveSession(this.clientId, expiryMs, undefined);
    if (wasStored) return;
    // Newly persistent: what the session already holds is written down now.
    for (const sub of this.subscriptions.values()) store.saveSubscription(this.clientId, sub);
  }

  /** Rebuilds a stored session after a restart; it waits offline for its client. */
  static restore(ctx: SessionContext, stored: StoredSession, nowMs: number): Session {
    const session = new Session(ctx, stored.account, stored.clientId, stored.expiryMs);
    session.owner = stored.owner;
    for (const s of stored.subscriptions) {
      let parsed: ParsedFilter;
      try {
        parsed = parseFilter(s.filter, ctx.options);
      } catch {
        continue;
      }
      session.subscribe({ ...s, ...parsed }, true);
    }
    // Messages stay on disk until the client connects (lazy loading).
    session.owed.restore(stored);
    for (const id of stored.awaitingRelease) session.awaitingRelease.set(id, "received");
    if (stored.will !== undefined) {
      const { dueAtMs, ...will } = stored.will;
      // A will stored before owners were recorded is its session's.
      session.delayWill(
        { ...will, owner: will.owner ?? stored.owner, delayMs: 0 },
        dueAtMs - nowMs,
      );
    }
    const since = stored.disconnectedAtMs ?? nowMs;
    if (stored.disconnectedAtMs === undefined) {
      session.sessionStore?.saveSession(stored.clientId, stored.expiryMs, nowMs);
    }
    session.armExpiry(since + stored.expiryMs - nowMs);
    return session;
  }
}
