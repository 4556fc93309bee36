import type { Bus, Clock, Envelope, Logger, Metrics } from "../core/index.js";
import {
  type Admission,
  Admissions,
  Authenticator,
  DEFAULT_ACCOUNT,
  errorMessage,
  Guard,
  systemClock,
} from "../core/index.js";
import type { RetainedStore, SessionStore } from "../store/index.js";
import { clip } from "./client-text.js";
import { Connection } from "./connection.js";
import type {
  ConnectionContext,
  Publisher,
  PublishKind,
  PublishOutcome,
  SessionContext,
} from "./context.js";
import { MqttLogs } from "./logs.js";
import { type BrokerMetrics, brokerMetrics } from "./metrics.js";
import { type BrokerOptions, DEFAULT_BROKER_OPTIONS } from "./options.js";
import { propertiesToHeaders } from "./properties.js";
import type { Session, Will } from "./session.js";
import { SessionTable } from "./session-table.js";
import type { Transport, TransportHandler } from "./transport.js";

/**
 * The accounts a broker serves (an `AccountSpace` is one): `account(name).bus` for every
 * name the authenticator can give; it throws for an unknown one.
 */
export interface BrokerAccounts {
  account(name: string): { readonly bus: Bus };
}

/** What a broker is made of; only `bus`, `log` and `metrics` are required. */
export interface BrokerParts {
  /** The global account's (`$G`) bus; with `accounts`, it must be `$G`'s bus there. */
  readonly bus: Bus;
  /** Every account's bus (issue 13); absent: only `$G`, on `bus`. */
  readonly accounts?: BrokerAccounts;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** Limits; what is not given is DEFAULT_BROKER_OPTIONS. */
  readonly options?: Partial<BrokerOptions>;
  /** Retained messages; absent, the retain flag is ignored (unit tests without a store). */
  readonly retained?: RetainedStore;
  /** Absent: anonymous clients only, allowed everything, if `allowAnonymous`. */
  readonly auth?: Authenticator;
  /** Persistent sessions; absent, sessions last only while the process does. */
  readonly sessionStore?: SessionStore;
  /** Keepalive, connect timeout, session expiry, will delay, lockouts, log windows. */
  readonly clock?: Clock;
}

/**
 * Shared state of every MQTT connection: the buses, options and the client-id table.
 * Each connection lives in its login's account: its publishes, subscriptions, session,
 * retained messages and will are that account's (see docs/accounts.md, "MQTT").
 */
export class Broker implements ConnectionContext, SessionContext {
  /** The global account's bus. */
  readonly bus: Bus;
  readonly #accounts: BrokerAccounts;
  readonly options: BrokerOptions;
  readonly log: Logger;
  readonly logs: MqttLogs;
  readonly metrics: BrokerMetrics;
  readonly clock: Clock;
  readonly retained: RetainedStore | undefined;
  readonly sessionStore: SessionStore | undefined;
  readonly auth: Authenticator;
  readonly guard: Guard;
  readonly sessions: SessionTable;
  /** Sockets by source address, and those still before CONNECT (see admission.ts). */
  readonly admissions: Admissions;
  readonly #connections = new Set<Connection>();
  readonly #admissions = new WeakMap<Connection, Admission>();

  constructor(parts: BrokerParts) {
    const options: BrokerOptions = { ...DEFAULT_BROKER_OPTIONS, ...parts.options };
    this.bus = parts.bus;
    const { bus } = parts;
    this.#accounts = parts.accounts ?? {
      account: (name) => {
        if (name !== DEFAULT_ACCOUNT) throw new Error(`no account "${name}" (accounts: "$G")`);
        return { bus };
      },
    };
    this.options = options;
    this.log = parts.log;
    this.clock = parts.clock ?? systemClock;
    this.retained = parts.retained;
    this.sessionStore = parts.sessionStore;
    this.auth =
      parts.auth ??
      new Authenticator({
        users: [],
        defaultPermissions: {
          publish: { allow: [">"], deny: [] },
          subscribe: { allow: [">"], deny: [] },
        },
        allowAnonymous: options.allowAnonymous,
        clock: this.clock,
      });
    this.metrics = brokerMetrics(parts.metrics);
    this.logs = new MqttLogs(parts.log, this.clock);
    this.admissions = new Admissions(
      {
        maxPending: options.maxPendingConnections,
        maxPerAddress: options.maxConnectionsPerAddress,
      },
      {
        refused: (reason) => this.metrics.refused.inc({ reason }),
        pending: (count) => this.metrics.pending.set(count),
      },
    );
    this.guard = new Guard(parts.log, parts.metrics);
    this.sessions = new SessionTable(this, (account) => this.hasAccount(account));
  }

  busOf(account: string): Bus {
    return this.#accounts.account(account).bus;
  }

  hasAccount(account: string): boolean {
    try {
      this.#accounts.account(account);
      return true;
    } catch {
      return false;
    }
  }

  /** Brings back the persistent sessions of the last run (see SessionTable.restore). */
  restoreSessions(nowMs = this.clock.now()): void {
    this.sessions.restore(nowMs);
  }

  /**
   * Starts the MQTT protocol on a freshly accepted transport; `admission` is the place
   * its socket took when it was accepted (see `admissions`).
   */
  accept(transport: Transport, admission?: Admission): TransportHandler {
    const connection = new Connection(this, transport);
    if (admission !== undefined) this.#admissions.set(connection, admission);
    this.#connections.add(connection);
    this.metrics.accepted.inc();
    this.metrics.connections.set(this.#connections.size);
    return connection;
  }

  established(connection: Connection): void {
    this.#admissions.get(connection)?.established();
  }

  forget(connection: Connection): void {
    this.#connections.delete(connection);
    connection.session?.detach(connection);
    this.metrics.connections.set(this.#connections.size);
  }

  endSession(session: Session): void {
    this.sessions.end(session);
  }

  persistenceChanged(session: Session, delta: 1 | -1): void {
    this.sessions.persistenceChanged(session, delta);
  }

  /**
   * Every message a client publishes into the bus goes through here — PUBLISH, retained
   * PUBLISH, wills — so that none skips the permission check (issue 10: wills did). A
   * denied message is counted in leafgate_mqtt_denied_total{kind} and goes nowhere: not
   * to the bus, not into the retained store. An allowed retained one is stored as the
   * topic's retained message, then published. Both in the publisher's account.
   */
  publish(from: Publisher, message: Envelope, kind: PublishKind = "publish"): PublishOutcome {
    if (!from.permissions.canPublish(message.subject)) {
      this.metrics.denied.inc({ kind });
      return { ok: false, reason: "not-authorized" };
    }
    const bus = this.busOf(from.account);
    if (message.retain === true && this.retained !== undefined) {
      try {
        this.retained
          .forAccount(from.account)
          .set(
            message.subject,
            message.payload,
            message.qos,
            message.receivedAtMs,
            message.properties,
            message.expiresAtMs,
          );
      } catch (err) {
        this.log.warn(
          { subject: message.subject, err: errorMessage(err) },
          "retained message not stored",
        );
      }
    }
    return { ok: true, committed: bus.publish(message) };
  }

  /**
   * Publishes a will (now due) as if its client had published it, with the permissions
   * its owner has today: the will was checked at CONNECT, but a restart may have
   * narrowed them since, or removed the user. It is published in the account its owner
   * is in today (`session` is the account of the session that held it): a user no longer
   * configured, or whose account is gone, publishes nothing.
   */
  publishWill(session: string, clientId: string, will: Will): void {
    const now = this.clock.now();
    const message: Envelope = {
      subject: will.subject,
      payload: will.payload,
      receivedAtMs: now,
      origin: "mqtt",
      qos: will.qos,
      retain: will.retain,
      publisher: clientId,
      ...(will.properties !== undefined
        ? { properties: will.properties, headers: propertiesToHeaders(will.properties) }
        : {}),
      ...(will.messageExpiryS !== undefined
        ? { expiresAtMs: now + will.messageExpiryS * 1000 }
        : {}),
    };
    const permissions = this.auth.permissionsFor(will.owner, clientId);
    const account = this.auth.accountFor(will.owner);
    const outcome =
      account !== undefined && this.hasAccount(account)
        ? this.publish({ account, clientId, permissions }, message, "will")
        : this.#willNowhere();
    if (!outcome.ok) {
      this.logs.client(
        "refusal",
        { client: clip(clientId), account: session, subject: clip(will.subject) },
        "mqtt will not published: its owner may not publish there (any more)",
      );
      return;
    }
    this.metrics.wills.inc();
    outcome.committed.catch((err) => {
      this.metrics.dropped.inc({ reason: "will-not-stored" });
      this.log.warn({ client: clip(clientId), err: errorMessage(err) }, "will not stored");
    });
  }

  /** A will whose owner has no account today: refused as a denied publish. */
  #willNowhere(): PublishOutcome {
    this.metrics.denied.inc({ kind: "will" });
    return { ok: false, reason: "not-authorized" };
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  /** Bytes written to clients that they have not taken yet, over every connection. */
  get unsentBytes(): number {
    let bytes = 0;
    for (const c of this.#connections) bytes += c.transport.writableLength;
    return bytes;
  }

  /**
   * Closes every connection; pending commits still settle first (see Connection.close).
   * Persistent sessions stay in the store, as offline since now.
   */
  async closeAll(reason: string): Promise<void> {
    await Promise.all([...this.#connections].map((c) => c.closeAndWait(reason)));
    this.sessions.suspendAll();
    this.sessionStore?.flush();
  }
}
