import type { Envelope } from "../core/index.js";
import type { SessionStore, StoredMessage } from "../store/index.js";
import type { Connection } from "./connection.js";
import type { SessionContext } from "./context.js";

/**
 * Where an owed message is: waiting for the window, sent and awaiting its PUBACK /
 * PUBREC, or (QoS 2) PUBREC received, PUBREL sent, PUBCOMP awaited. `seq` is the order of
 * first sending, so that resends keep it across reconnects [MQTT-4.6.0-1].
 */
export type OutboundPhase =
  | { readonly kind: "queued" }
  | { readonly kind: "in-flight"; readonly packetId: number; readonly seq: number }
  | { readonly kind: "released"; readonly packetId: number; readonly seq: number };

/** The phase of every message waiting for the window (phases are replaced, never changed). */
export const QUEUED: OutboundPhase = Object.freeze({ kind: "queued" });

/** A QoS 1/2 message owed to the client. */
export interface Outbound {
  readonly message: Envelope;
  readonly qos: 1 | 2;
  readonly retain: boolean;
  readonly subscriptionIds: readonly number[] | undefined;
  /** Its row in the session store (persistent sessions only). */
  readonly rowId: number | undefined;
  phase: OutboundPhase;
}

/** What the outbound queue reads of its session. */
export interface OutboundOwner {
  readonly clientId: string;
  /** The session store of the owner's account (absent: sessions are not stored). */
  readonly sessionStore: SessionStore | undefined;
  readonly connection: Connection | undefined;
  readonly persistent: boolean;
  readonly ended: boolean;
}

/**
 * About what a delivery's PUBLISH takes on the wire (its properties aside): what it will
 * add to the client's unsent bytes once written.
 */
export function deliverySize(out: Outbound): number {
  return out.message.payload.length + out.message.subject.length;
}

export function toOutbound(m: StoredMessage, phase: OutboundPhase): Outbound {
  const message: Envelope = {
    subject: m.subject,
    payload: m.payload,
    receivedAtMs: m.receivedAtMs,
    origin: "internal",
    qos: m.qos,
    retain: m.retain,
    ...(m.properties !== undefined ? { properties: m.properties } : {}),
    ...(m.headers !== undefined ? { headers: m.headers } : {}),
    ...(m.expiresAtMs !== undefined ? { expiresAtMs: m.expiresAtMs } : {}),
    ...(m.publisher !== undefined ? { publisher: m.publisher } : {}),
  };
  return {
    message,
    qos: m.qos,
    retain: m.retain,
    subscriptionIds: m.subscriptionIds,
    rowId: m.id,
    phase,
  };
}

/**
 * Writes a persistent session's copy of a message: its row id, and a promise that settles
 * once it is on disk (or failed, counted). The session store's quota holds what waits
 * (offline, or behind a full window); a message that goes out now (`sendingNow`) is
 * stored regardless, until its ack (the window bounds those). Past the quota, only this
 * session's copy is lost (undefined): the publisher's ingest never waits for room here.
 */
export function storeCopy(
  ctx: SessionContext,
  store: SessionStore,
  clientId: string,
  message: Envelope,
  as: { qos: 1 | 2; retain: boolean; subscriptionIds: readonly number[] | undefined },
  sendingNow: boolean,
): { rowId: number; committed: Promise<void> } | undefined {
  const stored = {
    subject: message.subject,
    payload: Buffer.from(
      message.payload.buffer,
      message.payload.byteOffset,
      message.payload.length,
    ),
    qos: as.qos,
    retain: as.retain,
    receivedAtMs: message.receivedAtMs,
    expiresAtMs: message.expiresAtMs,
    publisher: message.publisher,
    properties: message.properties,
    headers: message.headers,
    subscriptionIds: as.subscriptionIds,
  } as const;
  const row = sendingNow
    ? store.add(clientId, stored, message)
    : store.addIfRoom(clientId, stored, message);
  if (row === undefined) {
    ctx.metrics.dropped.inc({ reason: "session-store-full" });
    ctx.logs.limit(
      "session-store-full",
      { bytes: store.bytes, quota: store.maxBytes },
      "mqtt session store full (mqtt.session_store_max_bytes): messages for waiting sessions are dropped",
    );
    return undefined;
  }
  // A failed commit (disk full) costs this session its copy, counted; never the
  // publisher's ack, which waits only for the copies that can be stored.
  const committed = row.committed.catch(() => {
    ctx.metrics.dropped.inc({ reason: "session-store-failed" });
  });
  return { rowId: row.id, committed };
}
