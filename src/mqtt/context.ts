import type {
  Authenticator,
  Bus,
  Clock,
  Envelope,
  Guard,
  Logger,
  Permissions,
} from "../core/index.js";
import type { RetainedStore, SessionStore } from "../store/index.js";
import type { Connection } from "./connection.js";
import type { ProtocolVersion } from "./connection-state.js";
import type { MqttLogs } from "./logs.js";
import type { BrokerMetrics } from "./metrics.js";
import type { BrokerOptions } from "./options.js";
import type { Session, Will } from "./session.js";

/**
 * Who publishes: the account it publishes in, whose permissions apply, and the client id
 * it is published under.
 */
export interface Publisher {
  readonly account: string;
  readonly clientId: string | undefined;
  readonly permissions: Permissions;
}

/** What `publish` did: refused, or handed to the bus (settles once stored). */
export type PublishOutcome =
  | { readonly ok: false; readonly reason: "not-authorized" }
  | { readonly ok: true; readonly committed: Promise<void> };

/** The kinds of publish, as counted in leafgate_mqtt_denied_total{kind}. */
export type PublishKind = "publish" | "will";

/** What every piece of the protocol reads: limits, counters, logs, time. */
export interface MqttBase {
  readonly options: BrokerOptions;
  readonly metrics: BrokerMetrics;
  readonly log: Logger;
  /** Rate-limited warnings that clients and bounds can cause. */
  readonly logs: MqttLogs;
  readonly clock: Clock;
  /** Every timer and socket callback of the MQTT part runs under it (see Guard). */
  readonly guard: Guard;
}

/**
 * The client-id table, as CONNECT sees it (see session-table.ts): a client id names a
 * session within its account only.
 */
export interface Sessions {
  get(account: string, clientId: string): Session | undefined;
  /** Connections that completed CONNECT and hold a session. */
  readonly connectedCount: number;
  /** Whether a connection holds a session of `clientId` in any account. */
  connectedAnywhere(clientId: string): boolean;
  /** A unique id for a client that sent an empty one with clean session [MQTT-3.1.3-6]. */
  assignClientId(): string;
  /** Whether `owner` may have the session of `clientId` (a session is its maker's). */
  mayTake(account: string, clientId: string, owner: string): boolean;
  /** True (counted and logged) when the CONNECT would pass mqtt.max_sessions. */
  limitReached(account: string, clientId: string, expiryMs: number): boolean;
  /** Gives `connection` the session of `clientId` in `account`; whether it was resumed. */
  take(
    account: string,
    clientId: string,
    connection: Connection,
    cleanStart: boolean,
    expiryMs: number,
    owner: string,
  ): { session: Session; present: boolean };
}

/** What a session uses of the broker. */
export interface SessionContext extends MqttBase {
  /** The bus of `account`; throws for an account that does not exist. */
  busOf(account: string): Bus;
  /** Persistent sessions (the global account's view); absent, they last only in memory. */
  readonly sessionStore: SessionStore | undefined;
  /** Publishes a will now due, with its owner's permissions and account of today. */
  publishWill(account: string, clientId: string, will: Will): void;
  /** Ends a session: gone from memory and from the store. */
  endSession(session: Session): void;
  /** `session` became persistent (+1) or stopped being so (-1). */
  persistenceChanged(session: Session, delta: 1 | -1): void;
}

/** What packet handlers use of the broker: never the broker itself. */
export interface HandlerContext extends MqttBase {
  readonly auth: Authenticator;
  /** Retained messages; absent, the retain flag is ignored (unit tests without a store). */
  readonly retained: RetainedStore | undefined;
  readonly sessionStore: SessionStore | undefined;
  readonly sessions: Sessions;
  /** Whether `account` exists (a user's account must, or its login is refused). */
  hasAccount(account: string): boolean;
  /** The one way into the bus for what clients publish: permissions first. */
  publish(from: Publisher, message: Envelope, kind?: PublishKind): PublishOutcome;
}

/** What a connection uses besides what its handlers do. */
export interface ConnectionContext extends HandlerContext {
  /** The connection's CONNECT was accepted: its socket no longer counts as pending. */
  established(connection: Connection): void;
  /** The connection's transport is gone. */
  forget(connection: Connection): void;
  publishWill(account: string, clientId: string, will: Will): void;
}

/** What happens once per connection at most in the log (then it is only counted). */
export type OnceKey = "publish-denied" | "subscribe-denied" | "filter-refused";

/** What packet handlers use of their connection once CONNECT is accepted. */
export interface ConnectedClient extends Publisher {
  readonly clientId: string;
  readonly user: string | undefined;
  readonly version: ProtocolVersion;
  readonly session: Session;
  /** Inbound topic aliases (MQTT 5 section 3.3.2.3.4), this connection only. */
  readonly aliasesIn: Map<number, string>;
  /** Writes a packet if the connection can still carry it. */
  send(bytes: Uint8Array): void;
  /** A QoS 1/2 PUBLISH came in: one more unanswered (held to our Receive Maximum). */
  inboundPublish(packetId: number): void;
  /** Answers a QoS 1/2 PUBLISH; PUBACK, PUBCOMP and an error PUBREC end its exchange. */
  sendInboundAck(
    kind: "puback" | "pubrec" | "pubcomp",
    packetId: number,
    reasonCode?: number,
  ): void;
  /** Runs `onCommitted` or `onFailed` once `commit` settles; reading pauses past a bound. */
  trackCommit(
    commit: Promise<void>,
    onCommitted: () => void,
    onFailed: (err: unknown) => void,
  ): void;
  close(reason: string, now?: boolean): void;
  /** True the first time `what` happens on this connection. */
  firstTime(what: OnceKey): boolean;
  /** False once the connection is closing. */
  readonly connected: boolean;
  /** The client sent DISCONNECT: the connection closes, its will kept or discarded. */
  disconnected(keepWill: boolean): void;
}
