import { type PropertiesJson, propertiesFromJson, propertiesToJson } from "./properties-json.js";
import type {
  NewStoredMessage,
  StoredMessage,
  StoredSubscription,
  StoredWill,
} from "./session-types.js";

/** A queued message's row joined with its payload row (see SELECT_MESSAGES). */
export interface MessageRow {
  id: number;
  subject: string;
  payload: Buffer;
  qos: 1 | 2;
  pmeta: string;
  meta: string | null;
  packet_id: number | null;
  released: number;
}

/** The columns `decodeMessage` reads; the caller adds its WHERE clause. */
export const SELECT_MESSAGES =
  "SELECT m.id, p.subject, p.payload, m.qos, p.meta AS pmeta, m.meta, m.packet_id, m.released " +
  "FROM mqtt_message m JOIN mqtt_payload p ON p.id = m.payload_id ";

/** What the publisher gave a message, as one JSON column of its payload row. */
interface PayloadMeta {
  t: number;
  x?: number;
  p?: string;
  h?: [string, string[]][];
  m?: PropertiesJson;
}

/** What one session's copy adds: retain as published, subscription identifiers. */
interface DeliveryMeta {
  r?: 1;
  s?: number[];
}

interface WillJson {
  s: string;
  b: string;
  q: 0 | 1 | 2;
  r?: 1;
  m?: PropertiesJson;
  x?: number;
  o?: string;
  d: number;
}

/** What the publisher gave the message: the same for every session it is queued for. */
export function encodePayloadMeta(m: NewStoredMessage): string {
  const meta: PayloadMeta = { t: m.receivedAtMs };
  if (m.expiresAtMs !== undefined) meta.x = m.expiresAtMs;
  if (m.publisher !== undefined) meta.p = m.publisher;
  if (m.headers !== undefined) meta.h = [...m.headers].map(([k, v]) => [k, [...v]]);
  if (m.properties !== undefined) meta.m = propertiesToJson(m.properties);
  return JSON.stringify(meta);
}

/** What differs per session (retain as published, subscription ids); null when neither. */
export function encodeDeliveryMeta(m: NewStoredMessage): string | null {
  if (!m.retain && m.subscriptionIds === undefined) return null;
  const meta: DeliveryMeta = {};
  if (m.retain) meta.r = 1;
  if (m.subscriptionIds !== undefined) meta.s = [...m.subscriptionIds];
  return JSON.stringify(meta);
}

export function decodeMessage(row: MessageRow): StoredMessage {
  const meta = JSON.parse(row.pmeta) as PayloadMeta;
  const delivery = row.meta === null ? {} : (JSON.parse(row.meta) as DeliveryMeta);
  const properties = meta.m === undefined ? undefined : propertiesFromJson(meta.m);
  return {
    id: row.id,
    subject: row.subject,
    payload: row.payload,
    qos: row.qos,
    retain: delivery.r === 1,
    receivedAtMs: meta.t,
    expiresAtMs: meta.x,
    publisher: meta.p,
    properties,
    headers: meta.h !== undefined ? new Map(meta.h) : undefined,
    subscriptionIds: delivery.s,
    packetId: row.packet_id ?? undefined,
    released: row.released === 1,
  };
}

export function encodeWill(w: StoredWill): string {
  const json: WillJson = { s: w.subject, b: w.payload.toString("base64"), q: w.qos, d: w.dueAtMs };
  if (w.retain) json.r = 1;
  if (w.properties !== undefined) json.m = propertiesToJson(w.properties);
  if (w.messageExpiryS !== undefined) json.x = w.messageExpiryS;
  if (w.owner !== undefined) json.o = w.owner;
  return JSON.stringify(json);
}

export function decodeWill(text: string): StoredWill {
  const w = JSON.parse(text) as WillJson;
  return {
    subject: w.s,
    payload: Buffer.from(w.b, "base64"),
    qos: w.q,
    retain: w.r === 1,
    properties: w.m === undefined ? undefined : propertiesFromJson(w.m),
    messageExpiryS: w.x,
    owner: w.o,
    dueAtMs: w.d,
  };
}

/** Bits of a subscription row's `options` column (as in the SUBSCRIBE options byte). */
const NO_LOCAL_BIT = 1;
const RETAIN_AS_PUBLISHED_BIT = 2;
const RETAIN_HANDLING_SHIFT = 2;
const RETAIN_HANDLING_MASK = 3;

/** A subscription's options as one integer column. */
export function encodeSubscriptionOptions(s: StoredSubscription): number {
  return (
    (s.noLocal ? NO_LOCAL_BIT : 0) |
    (s.retainAsPublished ? RETAIN_AS_PUBLISHED_BIT : 0) |
    ((s.retainHandling & RETAIN_HANDLING_MASK) << RETAIN_HANDLING_SHIFT)
  );
}

/** A subscription row back as a StoredSubscription. */
export function decodeSubscription(row: {
  filter: string;
  qos: 0 | 1 | 2;
  options: number;
  subscription_id: number | null;
}): StoredSubscription {
  return {
    filter: row.filter,
    qos: row.qos,
    noLocal: (row.options & NO_LOCAL_BIT) !== 0,
    retainAsPublished: (row.options & RETAIN_AS_PUBLISHED_BIT) !== 0,
    retainHandling: ((row.options >> RETAIN_HANDLING_SHIFT) & RETAIN_HANDLING_MASK) as 0 | 1 | 2,
    subscriptionId: row.subscription_id ?? undefined,
  };
}
