import type mqtt from "mqtt-packet";
import type { Permissions } from "../core/index.js";
import { REASON } from "./errors.js";
import type { Session, Will } from "./session.js";

export type ProtocolVersion = 3 | 4 | 5;

/** MQTT 5 limits the client announced in CONNECT (3.1.1 clients have none). */
export interface ClientLimits {
  /** Outbound QoS 1/2 the client takes unanswered (Receive Maximum). */
  readonly receiveMaximum: number;
  readonly maxPacketSize: number;
  readonly topicAliasMaximum: number;
}

/** What an accepted CONNECT settled: `handleConnect`'s answer, applied by the connection. */
export interface Negotiated {
  readonly version: ProtocolVersion;
  readonly clientId: string;
  /** The server chose the id (the client sent an empty one). */
  readonly assigned: boolean;
  /** The authenticated user, when the client logged in as one. */
  readonly user: string | undefined;
  /** Who the session belongs to: the user, or ANONYMOUS. */
  readonly owner: string;
  /** The account the client is in: its login's. */
  readonly account: string;
  readonly permissions: Permissions;
  readonly will: Will | undefined;
  readonly cleanStart: boolean;
  readonly expiryS: number;
  /** MQTT 5: the expiry CONNECT asked for was 0 (a DISCONNECT may not raise it). */
  readonly connectExpiryWasZero: boolean;
  readonly keepaliveS: number;
  readonly limits: ClientLimits;
  /** MQTT 5 CONNACK: a keepalive the server imposed, an expiry it shortened. */
  readonly serverKeepAlive: number | undefined;
  readonly announceExpiry: number | undefined;
}

/** A refused CONNECT: the CONNACK codes of either version, the close reason, and why. */
export interface Refusal {
  readonly reasonV5: number;
  readonly codeV3: number;
  /** As counted in leafgate_mqtt_connections_closed_total{reason}. */
  readonly closeReason: string;
  readonly why: string;
  /** Logged at warn (rate-limited); false where the refusal was logged already. */
  readonly logged: boolean;
  /** As the client sent them: logged at debug only, cut short. */
  readonly clientId: string;
  readonly username: string | undefined;
}

/** What CONNECT came to: accepted, refused, or waiting for a password check. */
export type ConnectOutcome =
  | { readonly kind: "accept"; readonly negotiated: Negotiated }
  | { readonly kind: "refuse"; readonly refusal: Refusal }
  | {
      readonly kind: "authenticate";
      /** Once the password is checked: what to do, asked only if the connection still waits. */
      readonly decided: Promise<() => ConnectOutcome>;
    };

/** A connection past CONNACK: what it negotiated and the session it holds. */
export interface Link {
  readonly version: ProtocolVersion;
  readonly clientId: string;
  readonly user: string | undefined;
  readonly permissions: Permissions;
  readonly session: Session;
  readonly limits: ClientLimits;
  readonly connectExpiryWasZero: boolean;
  /** Outbound QoS 1/2 in flight at most: ours, or the client's Receive Maximum if smaller. */
  readonly window: number;
  /** The will from CONNECT, until a clean DISCONNECT discards it or it is released. */
  will: Will | undefined;
}

/** A packet that arrived while CONNECT was being authenticated, replayed after. */
export interface HeldPacket {
  readonly packet: mqtt.Packet;
  readonly raw: Buffer;
}

/**
 * One connection's life: `awaiting-connect` until a CONNECT, `authenticating` while its
 * password is checked (later packets held), `connected` once CONNACK is out; `closing`
 * while pending commits settle (so committed messages still get their PUBACK); `closed`
 * once the transport is gone. `link` stays through closing and closed: a DISCONNECT still
 * needs the version, and the session lets go of the connection when it closes.
 */
export type ConnectionState =
  | { readonly kind: "awaiting-connect" }
  | {
      readonly kind: "authenticating";
      readonly version: ProtocolVersion;
      readonly held: HeldPacket[];
    }
  | { readonly kind: "connected"; readonly link: Link }
  | { readonly kind: "closing"; readonly reason: string; readonly link: Link | undefined }
  | { readonly kind: "closed"; readonly link: Link | undefined };

/** Why reading from the client is paused; it resumes when no reason is left. */
export type PauseReason =
  /** CONNECT is being authenticated: later packets wait. */
  | "auth"
  /** Too many durable commits pending: a fast publisher must not outrun the disk. */
  | "commits"
  /** The client is behind on reading what we send (see SOFT_MARK_DIVISOR). */
  | "output";

/** Why the server closes a connection: an MQTT 5 DISCONNECT reason code and its words. */
export const DISCONNECT_REASON: Readonly<Record<string, { code: number; words: string }>> = {
  "keepalive-timeout": { code: REASON.keepAliveTimeout, words: "keep alive timeout" },
  "taken-over": {
    code: REASON.sessionTakenOver,
    words: "session taken over by another connection",
  },
  shutdown: { code: REASON.serverShuttingDown, words: "the gateway is shutting down" },
  // An administratively imposed limit: mqtt.max_outbound_bytes, or behind for a keepalive.
  "slow-consumer": {
    code: REASON.quotaExceeded,
    words: "slow consumer: the client does not read what is sent to it",
  },
};
