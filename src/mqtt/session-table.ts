import { ANONYMOUS } from "../core/index.js";
import type { Connection } from "./connection.js";
import type { SessionContext, Sessions } from "./context.js";
import { Session, type Will } from "./session.js";

/** A session's key in the table: account names have no spaces, so it is unambiguous. */
function keyOf(account: string, clientId: string): string {
  return `${account} ${clientId}`;
}

/**
 * The broker's client-id table: every session, connected or not, and how many of them
 * are persistent (what `mqtt.max_sessions` bounds, over every account). Sessions are
 * keyed by (account, client id): the same id in two accounts is two sessions, and a
 * client never takes over or resumes another account's.
 */
export class SessionTable implements Sessions {
  readonly #ctx: SessionContext;
  readonly #sessions = new Map<string, Session>();
  /** Whether an account exists: stored sessions of others are not restored. */
  readonly #hasAccount: (account: string) => boolean;
  /** Sessions in the table that are persistent (expiry > 0). */
  #persistent = 0;
  #nextAnonymousId = 1;

  constructor(ctx: SessionContext, hasAccount: (account: string) => boolean = () => true) {
    this.#ctx = ctx;
    this.#hasAccount = hasAccount;
  }

  get(account: string, clientId: string): Session | undefined {
    return this.#sessions.get(keyOf(account, clientId));
  }

  get size(): number {
    return this.#sessions.size;
  }

  get persistentCount(): number {
    return this.#persistent;
  }

  get connectedCount(): number {
    let n = 0;
    for (const s of this.#sessions.values()) if (s.connection !== undefined) n++;
    return n;
  }

  /** Connected clients by account (accounts without one are absent). */
  connectedByAccount(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const s of this.#sessions.values()) {
      if (s.connection !== undefined) counts.set(s.account, (counts.get(s.account) ?? 0) + 1);
    }
    return counts;
  }

  connectedAnywhere(clientId: string): boolean {
    for (const s of this.#sessions.values()) {
      if (s.clientId === clientId && s.connection !== undefined) return true;
    }
    return false;
  }

  assignClientId(): string {
    return `leafgate-${process.pid}-${this.#nextAnonymousId++}`;
  }

  /**
   * Brings back the persistent sessions of the last run; expired ones are dropped, and a
   * will one still held is published: it was due when the session ended [MQTT-3.1.3-9].
   */
  restore(nowMs: number): void {
    const ctx = this.#ctx;
    const store = ctx.sessionStore;
    if (store === undefined) return;
    let expired = 0;
    const unknown = new Map<string, number>();
    const wills: [string, string, Will][] = [];
    // Metadata and subscriptions only: a session's messages are read when it connects.
    for (const stored of store.loadSessions()) {
      if (!this.#hasAccount(stored.account)) {
        // Kept on disk: the account may come back with the config; nothing to deliver to.
        unknown.set(stored.account, (unknown.get(stored.account) ?? 0) + 1);
        continue;
      }
      const since = stored.disconnectedAtMs ?? nowMs;
      if (since + stored.expiryMs <= nowMs) {
        if (stored.will !== undefined) {
          const { dueAtMs: _, ...will } = stored.will;
          const owner = will.owner ?? stored.owner;
          wills.push([stored.account, stored.clientId, { ...will, owner, delayMs: 0 }]);
        }
        store.forAccount(stored.account).deleteSession(stored.clientId);
        expired++;
        continue;
      }
      const session = Session.restore(ctx, stored, nowMs);
      this.#sessions.set(keyOf(stored.account, stored.clientId), session);
      this.#persistent++;
    }
    ctx.metrics.persistentSessions.set(this.#persistent);
    // Once every session is back, so that those subscribed get them.
    for (const [account, clientId, will] of wills) ctx.publishWill(account, clientId, will);
    ctx.metrics.sessions.set(this.#sessions.size);
    if (this.#sessions.size > 0 || expired > 0) {
      ctx.log.info({ sessions: this.#sessions.size, expired }, "mqtt persistent sessions restored");
    }
    for (const [account, sessions] of unknown) {
      ctx.log.warn(
        { account, sessions },
        "mqtt persistent sessions of an account no longer configured not restored (kept in the " +
          "session store): add the account back to restore them",
      );
    }
  }

  /**
   * A session belongs to the user who made it. A session stored before owners were
   * recorded belongs to whoever resumes it first.
   */
  mayTake(account: string, clientId: string, owner: string): boolean {
    const held = this.get(account, clientId)?.owner;
    return held === undefined || held === owner;
  }

  /**
   * Refusing the newcomer, not evicting the oldest offline session, keeps what devices
   * already have: an attacker making sessions cannot throw a real device's queued
   * messages away. Resuming or replacing a persistent session, and clean sessions, are
   * never refused.
   */
  limitReached(account: string, clientId: string, expiryMs: number): boolean {
    const ctx = this.#ctx;
    if (expiryMs === 0 || ctx.sessionStore === undefined) return false;
    if (this.get(account, clientId)?.persistent === true) return false;
    if (this.#persistent < ctx.options.maxSessions) return false;
    ctx.metrics.sessionsRefused.inc({ reason: "max-sessions" });
    ctx.logs.limit(
      "max-sessions",
      { maxSessions: ctx.options.maxSessions },
      "mqtt client refused: mqtt.max_sessions persistent sessions exist",
    );
    return true;
  }

  /** `session` became persistent (+1) or stopped being so (-1); counted while in the table. */
  persistenceChanged(session: Session, delta: 1 | -1): void {
    if (this.get(session.account, session.clientId) !== session) return;
    this.#persistent += delta;
    this.#ctx.metrics.persistentSessions.set(this.#persistent);
  }

  /**
   * Gives `connection` the session of `clientId` [MQTT-3.1.2-4]: an older connection with
   * the id is closed first [MQTT-3.1.4-2]; with clean start the old session ends and a
   * new one begins [MQTT-3.1.2-4].
   */
  take(
    account: string,
    clientId: string,
    connection: Connection,
    cleanStart: boolean,
    expiryMs: number,
    owner: string = ANONYMOUS,
  ): { session: Session; present: boolean } {
    const key = keyOf(account, clientId);
    let session = this.#sessions.get(key);
    const previous = session?.connection;
    if (previous !== undefined && previous !== connection) {
      previous.close("taken-over");
      session?.detach(previous);
      session = this.#sessions.get(key);
    }
    if (session !== undefined && cleanStart) {
      this.end(session);
      session = undefined;
    }
    const present = session !== undefined;
    if (session === undefined) {
      session = new Session(this.#ctx, account, clientId, 0);
      this.#sessions.set(key, session);
      this.#ctx.metrics.sessions.set(this.#sessions.size);
    }
    session.owner = owner;
    // The owner is written with the session's first row, so no stored session lacks one.
    if (expiryMs > 0) session.sessionStore?.saveOwner(clientId, owner, expiryMs);
    session.setExpiry(expiryMs);
    return { session, present };
  }

  /** Ends a session: gone from memory and from the store. */
  end(session: Session): void {
    const key = keyOf(session.account, session.clientId);
    if (this.#sessions.get(key) === session) {
      if (session.persistent) this.persistenceChanged(session, -1);
      this.#sessions.delete(key);
      this.#ctx.metrics.sessions.set(this.#sessions.size);
    }
    session.end();
    if (session.persistent) session.sessionStore?.deleteSession(session.clientId);
  }

  /** Stops every session's timers at shutdown; stored sessions stay for the next start. */
  suspendAll(): void {
    for (const session of this.#sessions.values()) session.suspend();
  }
}
