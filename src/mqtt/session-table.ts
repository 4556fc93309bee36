import { ANONYMOUS } from "../core/index.js";
import type { Connection } from "./connection.js";
import type { SessionContext, Sessions } from "./context.js";
import { Session, type Will } from "./session.js";

/**
 * The broker's client-id table: every session, connected or not, and how many of them
 * are persistent (what `mqtt.max_sessions` bounds).
 */
export class SessionTable implements Sessions {
  readonly #ctx: SessionContext;
  readonly #sessions = new Map<string, Session>();
  /** Sessions in the table that are persistent (expiry > 0). */
  #persistent = 0;
  #nextAnonymousId = 1;

  constructor(ctx: SessionContext) {
    this.#ctx = ctx;
  }

  get(clientId: string): Session | undefined {
    return this.#sessions.get(clientId);
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
    const wills: [string, Will][] = [];
    // Metadata and subscriptions only: a session's messages are read when it connects.
    for (const stored of store.loadSessions()) {
      const since = stored.disconnectedAtMs ?? nowMs;
      if (since + stored.expiryMs <= nowMs) {
        if (stored.will !== undefined) {
          const { dueAtMs: _, ...will } = stored.will;
          wills.push([stored.clientId, { ...will, owner: will.owner ?? stored.owner, delayMs: 0 }]);
        }
        store.deleteSession(stored.clientId);
        expired++;
        continue;
      }
      this.#sessions.set(stored.clientId, Session.restore(ctx, stored, nowMs));
      this.#persistent++;
    }
    ctx.metrics.persistentSessions.set(this.#persistent);
    // Once every session is back, so that those subscribed get them.
    for (const [clientId, will] of wills) ctx.publishWill(clientId, will);
    ctx.metrics.sessions.set(this.#sessions.size);
    if (this.#sessions.size > 0 || expired > 0) {
      ctx.log.info({ sessions: this.#sessions.size, expired }, "mqtt persistent sessions restored");
    }
  }

  /**
   * A session belongs to the user who made it. A session stored before owners were
   * recorded belongs to whoever resumes it first.
   */
  mayTake(clientId: string, owner: string): boolean {
    const held = this.#sessions.get(clientId)?.owner;
    return held === undefined || held === owner;
  }

  /**
   * Refusing the newcomer, not evicting the oldest offline session, keeps what devices
   * already have: an attacker making sessions cannot throw a real device's queued
   * messages away. Resuming or replacing a persistent session, and clean sessions, are
   * never refused.
   */
  limitReached(clientId: string, expiryMs: number): boolean {
    const ctx = this.#ctx;
    if (expiryMs === 0 || ctx.sessionStore === undefined) return false;
    if (this.#sessions.get(clientId)?.persistent === true) return false;
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
    if (this.#sessions.get(session.clientId) !== session) return;
    this.#persistent += delta;
    this.#ctx.metrics.persistentSessions.set(this.#persistent);
  }

  /**
   * Gives `connection` the session of `clientId` [MQTT-3.1.2-4]: an older connection with
   * the id is closed first [MQTT-3.1.4-2]; with clean start the old session ends and a
   * new one begins [MQTT-3.1.2-4].
   */
  take(
    clientId: string,
    connection: Connection,
    cleanStart: boolean,
    expiryMs: number,
    owner: string = ANONYMOUS,
  ): { session: Session; present: boolean } {
    let session = this.#sessions.get(clientId);
    const previous = session?.connection;
    if (previous !== undefined && previous !== connection) {
      previous.close("taken-over");
      session?.detach(previous);
      session = this.#sessions.get(clientId);
    }
    if (session !== undefined && cleanStart) {
      this.end(session);
      session = undefined;
    }
    const present = session !== undefined;
    if (session === undefined) {
      session = new Session(this.#ctx, clientId, 0);
      this.#sessions.set(clientId, session);
      this.#ctx.metrics.sessions.set(this.#sessions.size);
    }
    session.owner = owner;
    // The owner is written with the session's first row, so no stored session lacks one.
    if (expiryMs > 0) this.#ctx.sessionStore?.saveOwner(clientId, owner, expiryMs);
    session.setExpiry(expiryMs);
    return { session, present };
  }

  /** Ends a session: gone from memory and from the store. */
  end(session: Session): void {
    if (this.#sessions.get(session.clientId) === session) {
      if (session.persistent) this.persistenceChanged(session, -1);
      this.#sessions.delete(session.clientId);
      this.#ctx.metrics.sessions.set(this.#sessions.size);
    }
    session.end();
    if (session.persistent) this.#ctx.sessionStore?.deleteSession(session.clientId);
  }

  /** Stops every session's timers at shutdown; stored sessions stay for the next start. */
  suspendAll(): void {
    for (const session of this.#sessions.values()) session.suspend();
  }
}
