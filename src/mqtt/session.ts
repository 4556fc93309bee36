import type { BusSubscription, Envelope } from "../core/index.js";
import { subjectMatches } from "../core/index.js";
import {
  queuedBytesOf,
  type SessionStore,
  type StoredMessage,
  type StoredSession,
  type StoredWill,
} from "../store/index.js";
import type { Broker } from "./broker.js";
import type { Connection } from "./connection.js";
import { type ParsedFilter, parseFilter } from "./filter.js";
import { encodeAck } from "./packets.js";

const MAX_PACKET_ID = 0xffff;
const DOLLAR = "$".charCodeAt(0);
/**
 * Queued messages a persistent session holds in memory at most; the rest stay on disk and
 * are read, this many at a time, as the client's window takes them. Each read is one
 * indexed query; a window this size keeps a connected session's memory small whatever
 * its queue (offline sessions hold none).
 */
const QUEUE_WINDOW = 64;

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

/** A QoS 1/2 message owed to the client: queued (packetId 0) or in flight. */
export interface Outbound {
  readonly message: Envelope;
  readonly qos: 1 | 2;
  readonly retain: boolean;
  readonly subscriptionIds: readonly number[] | undefined;
  /** Its row in the session store (persistent sessions only). */
  readonly rowId: number | undefined;
  packetId: number;
  /** PUBREC received: PUBREL sent, PUBCOMP awaited. */
  released: boolean;
  /** Order of first sending, so that resends keep it across reconnects. */
  seq: number;
}

/** Node timers hold at most 2^31-1 ms (24.8 days); MQTT 5 intervals go to 136 years. */
const MAX_TIMER_MS = 0x7fff_ffff;

/** A timer for any delay: longer ones are chained. Unref'd; call the result to cancel. */
function longTimeout(fn: () => void, delayMs: number): () => void {
  let timer: NodeJS.Timeout;
  const arm = (left: number): void => {
    const step = Math.min(Math.max(left, 0), MAX_TIMER_MS);
    timer = setTimeout(() => (left > step ? arm(left - step) : fn()), step);
    timer.unref();
  };
  arm(delayMs);
  return () => clearTimeout(timer);
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
 * The server side of an MQTT session (section 4.1): subscriptions, messages owed to the
 * client, inbound QoS 2 ids. It outlives its connections when the client asked for a
 * persistent session, and then lives in the session store too.
 */
export class Session {
  readonly clientId: string;
  readonly broker: Broker;
  /**
   * The user it belongs to (a user name, or ANONYMOUS); no one else may take it over.
   * Undefined only for a session stored before owners were recorded.
   */
  owner: string | undefined;
  /** How long the session outlives its connection; 0 = it ends with it. */
  expiryMs: number;
  connection: Connection | undefined;
  readonly subscriptions = new Map<string, Subscription>();
  /** The non-shared subscription when there is exactly one (the common case). */
  #onlyPlain: Subscription | undefined;
  /** In flight, in the order sent; resent in that order on reconnect [MQTT-4.6.0-1]. */
  readonly inflight = new Map<number, Outbound>();
  /** Sent on an earlier connection and not acknowledged: resent first, same ids. */
  readonly #resend = new Map<number, Outbound>();
  #queue: Outbound[] = [];
  #queueHead = 0;
  /** Bytes of every queued message, in memory or on disk (max_session_queued_bytes). */
  #queuedBytes = 0;
  /**
   * Persistent sessions: queued messages only on disk, each with a row id above
   * `#queueCursor` (the last one read into memory or queued there).
   */
  #diskQueued = 0;
  /** After a resume under narrower permissions: which owed messages may still go. */
  #owedKeep: ((message: Envelope) => boolean) | undefined;
  #queueCursor = 0;
  /** Persistent sessions while offline: their in-flight messages are on disk only. */
  #diskInflight = 0;
  /** Inbound QoS 2 ids: `committing` until stored, then `received` until PUBREL. */
  readonly awaitingRelease = new Map<number, "committing" | "received">();
  #nextPacketId = 1;
  #nextSeq = 0;
  /** Writes waiting for a commit of the session store (see #whenStored). */
  #writesHeld = 0;
  /** Inside pump: a write that frees the window does not start another. */
  #pumping = false;
  #cancelExpiry: (() => void) | undefined;
  #will: PendingWill | undefined;
  #ended = false;
  readonly #subscriber = { deliver: (m: Envelope) => this.#deliver(m) };

  constructor(broker: Broker, clientId: string, expiryMs: number) {
    this.broker = broker;
    this.clientId = clientId;
    this.expiryMs = expiryMs;
  }

  get #store(): SessionStore | undefined {
    return this.expiryMs > 0 ? this.broker.sessionStore : undefined;
  }

  get persistent(): boolean {
    return this.expiryMs > 0;
  }

  /** Messages waiting for the window: in memory, and on disk for a persistent session. */
  get queuedCount(): number {
    return this.#queue.length - this.#queueHead + this.#diskQueued;
  }

  /** Their bytes (subject + payload), as `max_session_queued_bytes` bounds them. */
  get queuedBytes(): number {
    return this.#queuedBytes;
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
    full.busSubs = sub.patterns.map((p) => this.broker.bus.subscribe(p, subscriber, sub.share));
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
      return this.offer(message, Math.min(only.qos, message.qos) as 0 | 1 | 2, retain, ids);
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
    return this.offer(message, Math.min(granted, message.qos) as 0 | 1 | 2, retain, ids);
  }

  #deliverShared(sub: Subscription, message: Envelope): Promise<void> | undefined {
    if (message.subject.charCodeAt(0) === DOLLAR && sub.leadingWildcard) return undefined;
    const ids = sub.subscriptionId !== undefined ? [sub.subscriptionId] : undefined;
    const retain = sub.retainAsPublished && message.retain === true;
    return this.offer(message, Math.min(sub.qos, message.qos) as 0 | 1 | 2, retain, ids);
  }

  /**
   * Takes a message for the client: QoS 0 goes now or not at all; QoS 1/2 goes when the
   * window has room, else waits in the session's queue (bounded). For a persistent
   * session the returned promise settles when the message is on disk.
   */
  offer(
    message: Envelope,
    qos: 0 | 1 | 2,
    retain: boolean,
    subscriptionIds: readonly number[] | undefined,
  ): Promise<void> | undefined {
    if (this.#ended) return undefined;
    if (message.expiresAtMs !== undefined && message.expiresAtMs <= Date.now()) {
      this.broker.metrics.dropped.inc({ reason: "expired" });
      return undefined;
    }
    const conn = this.connection;
    if (qos === 0) {
      if (conn !== undefined) {
        // Behind any QoS 1/2 delivery of this session still waiting for its commit.
        this.#whenStored(conn, () => conn.sendQos0(message, retain, subscriptionIds), false);
      }
      return undefined;
    }
    const canSend =
      conn !== undefined &&
      this.queuedCount === 0 &&
      this.#resend.size === 0 &&
      this.#diskInflight === 0 &&
      conn.hasWindow(this.inflight.size);
    const bytes = queuedBytesOf(message);
    const { maxQueued, maxSessionQueuedBytes } = this.broker.options;
    if (
      !canSend &&
      (this.queuedCount >= maxQueued || this.#queuedBytes + bytes > maxSessionQueuedBytes)
    ) {
      this.broker.metrics.dropped.inc({ reason: "queue-full" });
      return undefined;
    }
    let rowId: number | undefined;
    let committed: Promise<void> | undefined;
    const store = this.#store;
    if (store !== undefined) {
      // The session store's quota holds what waits (offline, or behind a full window);
      // a message that goes out now is stored regardless, until its ack (the window
      // bounds those). Past it, only this session's copy is lost: the publisher's ingest
      // (the outbox) never waits for room here.
      const stored = {
        subject: message.subject,
        payload: Buffer.from(
          message.payload.buffer,
          message.payload.byteOffset,
          message.payload.length,
        ),
        qos,
        retain,
        receivedAtMs: message.receivedAtMs,
        expiresAtMs: message.expiresAtMs,
        publisher: message.publisher,
        properties: message.properties,
        headers: message.headers,
        subscriptionIds,
      } as const;
      const row = canSend
        ? store.add(this.clientId, stored, message)
        : store.addIfRoom(this.clientId, stored, message);
      if (row === undefined) {
        this.broker.metrics.dropped.inc({ reason: "session-store-full" });
        this.broker.logSessionStoreFull();
        return undefined;
      }
      rowId = row.id;
      // A failed commit (disk full) costs this session its copy, counted; never the
      // publisher's ack, which waits only for the copies that can be stored.
      committed = row.committed.catch(() => {
        this.broker.metrics.dropped.inc({ reason: "session-store-failed" });
      });
    }
    const out: Outbound = {
      message,
      qos,
      retain,
      subscriptionIds,
      rowId,
      packetId: 0,
      released: false,
      seq: 0,
    };
    if (canSend) {
      this.#send(out);
      return committed;
    }
    this.#queuedBytes += bytes;
    if (
      rowId !== undefined &&
      (conn === undefined ||
        this.#diskQueued > 0 ||
        this.#queue.length - this.#queueHead >= QUEUE_WINDOW)
    ) {
      // On disk only, read back in order when the window takes it.
      this.#diskQueued++;
      return committed;
    }
    if (rowId !== undefined) this.#queueCursor = rowId;
    this.#queue.push(out);
    return committed;
  }

  /**
   * Gives `out` a packet id and sends it. For a stored message the id is committed first:
   * a PUBLISH on the wire whose id a `kill -9` lost would come again after the restart
   * under a new id without DUP, a second message to a QoS 2 receiver [MQTT-4.4.0-1].
   */
  #send(out: Outbound): void {
    const conn = this.connection!;
    let id = this.#nextPacketId;
    while (this.inflight.has(id) || this.#resend.has(id)) id = (id % MAX_PACKET_ID) + 1;
    this.#nextPacketId = (id % MAX_PACKET_ID) + 1;
    out.packetId = id;
    out.seq = this.#nextSeq++;
    this.inflight.set(id, out);
    if (out.rowId !== undefined) this.#store?.markSent(out.rowId, id, false);
    const size = deliverySize(out);
    conn.reserve(size);
    this.#whenStored(conn, () => {
      conn.release(size);
      // Taken out of the window meanwhile (session ended, or moved to be resent).
      if (this.inflight.get(id) !== out) return;
      if (conn.sendAcked(out, false)) {
        // Its reservation is now real bytes: if the kernel took them, there is room again.
        this.pump();
        return;
      }
      // Not sendable to this client (too large for it, no MQTT topic, not permitted):
      // as if delivered, as the spec says for oversized packets [MQTT-3.1.2-25].
      this.inflight.delete(id);
      if (out.rowId !== undefined) this.#store?.remove(out.rowId);
      // Its place in the window is free (inside pump, its loop goes on by itself).
      this.pump();
    });
  }

  /**
   * Runs `write` once the session store has committed every write made so far (at once
   * when nothing is pending, or when the session is not stored), and only while `conn`
   * is still the session's connection. Writes keep their order: a later one never
   * overtakes one that waits. `needsCommit` false: it waits only for those.
   */
  #whenStored(conn: Connection, write: () => void, needsCommit = true): void {
    const store = this.#writesHeld > 0 || needsCommit ? this.broker.sessionStore : undefined;
    if (store === undefined || (this.#writesHeld === 0 && !this.persistent)) {
      write();
      return;
    }
    this.#writesHeld++;
    const run = (): void => {
      this.#writesHeld--;
      if (this.connection !== conn) return;
      // Runs from the store's commit: one failure must not stop the writes behind it.
      this.broker.guard.run("mqtt.write-after-commit", write, () => conn.transport.destroy());
    };
    store.afterCommit(run);
  }

  /** Sends owed messages while the window has room: resends first, then the queue. */
  pump(): void {
    const conn = this.connection;
    if (conn === undefined || this.#pumping) return;
    this.#pumping = true;
    try {
      this.#fill(conn);
    } finally {
      this.#pumping = false;
    }
  }

  #fill(conn: Connection): void {
    for (const [id, out] of this.#resend) {
      if (!conn.hasWindow(this.inflight.size) || this.connection !== conn) return;
      this.#resend.delete(id);
      this.inflight.set(id, out);
      const size = deliverySize(out);
      conn.reserve(size);
      this.#whenStored(conn, () => {
        conn.release(size);
        if (this.inflight.get(id) !== out) return;
        if (out.released) conn.send(encodeAck("pubrel", id));
        else conn.sendAcked(out, true);
        this.pump();
      });
    }
    while (conn.hasWindow(this.inflight.size) && this.connection === conn) {
      if (this.#queueHead >= this.#queue.length && !this.#readQueued()) break;
      const out = this.#queue[this.#queueHead]!;
      this.#queue[this.#queueHead++] = undefined as unknown as Outbound;
      this.#queuedBytes -= queuedBytesOf(out.message);
      const expires = out.message.expiresAtMs;
      if (expires !== undefined && expires <= Date.now()) {
        // Expired before onward delivery began: not sent [MQTT-3.3.2-5].
        this.broker.metrics.dropped.inc({ reason: "expired" });
        if (out.rowId !== undefined) this.#store?.remove(out.rowId);
        continue;
      }
      if (this.#owedKeep !== undefined && !this.#owedKeep(out.message)) {
        // Read from disk after a resume under narrower permissions (see dropOwed).
        this.broker.metrics.dropped.inc({ reason: "not-authorized" });
        if (out.rowId !== undefined) this.#store?.remove(out.rowId);
        continue;
      }
      this.#send(out);
      if (this.connection === undefined) break;
    }
    if (this.#queueHead >= this.#queue.length) {
      this.#queue = [];
      this.#queueHead = 0;
    } else if (this.#queueHead > 1024 && this.#queueHead * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#queueHead);
      this.#queueHead = 0;
    }
  }

  /**
   * Reads the next queued messages from disk into the (empty) memory queue, at most
   * QUEUE_WINDOW; false when there are none.
   */
  #readQueued(): boolean {
    const store = this.#store;
    if (this.#diskQueued === 0 || store === undefined) return false;
    const rows = store.loadQueued(
      this.clientId,
      this.#queueCursor,
      Math.min(QUEUE_WINDOW, this.#diskQueued),
    );
    if (rows.length === 0) {
      // Rows a failed commit never wrote: nothing more is owed than what memory holds.
      this.#diskQueued = 0;
      this.#queuedBytes = 0;
      for (let i = this.#queueHead; i < this.#queue.length; i++) {
        this.#queuedBytes += queuedBytesOf(this.#queue[i]!.message);
      }
      return false;
    }
    this.#queue = rows.map(toOutbound);
    this.#queueHead = 0;
    this.#diskQueued -= rows.length;
    this.#queueCursor = rows[rows.length - 1]!.id;
    return true;
  }

  /**
   * PUBACK (QoS 1) or PUBCOMP (QoS 2) ends an outbound exchange; so does a PUBREC with
   * an error reason. An ack of the wrong kind for the id is ignored.
   */
  acknowledge(packetId: number, kind: "puback" | "pubcomp" | "pubrec-error"): boolean {
    const entry = this.inflight.get(packetId);
    if (entry === undefined) return false;
    if (kind === "puback" && entry.qos !== 1) return false;
    if (kind !== "puback" && entry.qos !== 2) return false;
    // PUBCOMP answers our PUBREL: before PUBREC the PUBLISH is still unacknowledged.
    if (kind === "pubcomp" && !entry.released) return false;
    this.inflight.delete(packetId);
    if (entry.rowId !== undefined) this.#store?.remove(entry.rowId);
    this.pump();
    return true;
  }

  /**
   * PUBREC for our QoS 2 PUBLISH: answer PUBREL [MQTT-4.3.3-1]; repeat it if asked again.
   * The PUBREL waits for the PUBREC's commit: after it the PUBLISH must never be sent again.
   */
  received(packetId: number): void {
    const entry = this.inflight.get(packetId);
    const conn = this.connection;
    if (entry === undefined || entry.qos !== 2 || conn === undefined) return;
    if (!entry.released) {
      entry.released = true;
      if (entry.rowId !== undefined) this.#store?.markSent(entry.rowId, packetId, true);
    }
    this.#whenStored(conn, () => {
      if (this.inflight.get(packetId) === entry) conn.send(encodeAck("pubrel", packetId));
    });
  }

  // -- connections ---------------------------------------------------------------

  /**
   * A connection takes the session. A resumed session resends what is in flight, with
   * the original packet ids and DUP set, PUBREL where PUBREC came [MQTT-4.4.0-1].
   */
  attach(conn: Connection, resumed: boolean): void {
    this.#cancelExpiry?.();
    this.#cancelExpiry = undefined;
    this.cancelWill();
    this.connection = conn;
    if (this.#store !== undefined)
      this.broker.sessionStore?.saveSession(this.clientId, this.expiryMs, undefined);
    if (resumed) this.#readInflight();
    if (resumed) {
      // Owed again, in order, within the new connection's window [MQTT-3.3.4-9]; the
      // rest keep their ids and go as acks free the window.
      const owed = [...this.#resend, ...this.inflight].sort((a, b) => a[1].seq - b[1].seq);
      this.#resend.clear();
      this.inflight.clear();
      for (const [id, out] of owed) this.#resend.set(id, out);
    }
    this.pump();
  }

  /** The session's connection is gone: the session ends, or waits for its expiry. */
  detach(conn: Connection): void {
    if (this.connection !== conn) return;
    this.connection = undefined;
    if (this.expiryMs === 0) {
      this.broker.endSession(this);
      return;
    }
    const now = Date.now();
    this.broker.sessionStore?.saveSession(this.clientId, this.expiryMs, now);
    this.armExpiry(this.expiryMs);
    this.#unload();
  }

  /** Offline, in-flight messages were on disk only: back in the order first sent. */
  #readInflight(): void {
    if (this.#diskInflight === 0) return;
    this.#diskInflight = 0;
    for (const m of this.#store?.loadInflight(this.clientId) ?? []) {
      if (m.packetId === undefined || this.inflight.has(m.packetId)) continue;
      const out = toOutbound(m);
      out.packetId = m.packetId;
      out.seq = this.#nextSeq++;
      this.inflight.set(m.packetId, out);
      this.#nextPacketId = (m.packetId % MAX_PACKET_ID) + 1;
    }
  }

  /**
   * An offline persistent session keeps no message in memory: each is on disk (queued
   * ones read back in windows, in-flight ones at the next connection).
   */
  #unload(): void {
    if (this.#store === undefined) return;
    this.#diskInflight += this.inflight.size + this.#resend.size;
    this.inflight.clear();
    this.#resend.clear();
    this.#diskQueued += this.#queue.length - this.#queueHead;
    this.#queue = [];
    this.#queueHead = 0;
    this.#queueCursor = 0;
  }

  armExpiry(delayMs: number): void {
    this.#cancelExpiry?.();
    this.#cancelExpiry = longTimeout(
      this.broker.guard.wrap("mqtt.session-expiry", () => {
        this.#cancelExpiry = undefined;
        if (this.connection === undefined) this.broker.endSession(this);
      }),
      delayMs,
    );
  }

  /**
   * Holds the will until its delay passes or the session ends, whichever is first
   * [MQTT-3.1.3-9]; a connection to the session before then cancels it.
   */
  delayWill(will: Will, delayMs: number): void {
    this.cancelWill();
    const cancel = longTimeout(
      this.broker.guard.wrap("mqtt.will-delay", () => {
        this.#will = undefined;
        this.#store?.saveWill(this.clientId, undefined);
        this.broker.publishWill(this.clientId, will);
      }),
      delayMs,
    );
    this.#will = { will, cancel };
    // Part of the session's state [MQTT-4.1]: a restart meanwhile does not lose it.
    this.#store?.saveWill(this.clientId, { ...will, dueAtMs: Date.now() + delayMs });
  }

  cancelWill(): void {
    if (this.#will === undefined) return;
    this.#will.cancel();
    this.#will = undefined;
    this.#store?.saveWill(this.clientId, undefined);
  }

  /** Ends the session: its subscriptions go, a pending will is published now. */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#cancelExpiry?.();
    for (const sub of this.subscriptions.values()) for (const s of sub.busSubs) s.unsubscribe();
    this.subscriptions.clear();
    this.#onlyPlain = undefined;
    const will = this.#will;
    if (will !== undefined) {
      will.cancel();
      this.#will = undefined;
      this.broker.publishWill(this.clientId, will.will);
    }
    this.#queue = [];
    this.#queueHead = 0;
    this.#queuedBytes = 0;
    this.#diskQueued = 0;
    this.#diskInflight = 0;
    this.inflight.clear();
    this.#resend.clear();
  }

  /**
   * Drops the owed messages (queued, in flight, to be resent) that `keep` refuses, as if
   * delivered; returns how many. For a resumed session whose user may no longer receive
   * some of what was queued for it.
   */
  dropOwed(keep: (message: Envelope) => boolean): number {
    // Queued messages still on disk are judged as they are read (see #fill).
    this.#owedKeep = keep;
    let dropped = 0;
    const drop = (out: Outbound): boolean => {
      // PUBREC came: the client has the message, only our PUBREL is owed [MQTT-4.3.3-1].
      if (out.released || keep(out.message)) return false;
      if (out.rowId !== undefined) this.#store?.remove(out.rowId);
      dropped++;
      return true;
    };
    for (const owed of [this.inflight, this.#resend]) {
      for (const [id, out] of owed) if (drop(out)) owed.delete(id);
    }
    const queue = this.#queue.slice(this.#queueHead).filter((out) => !drop(out));
    this.#queue = queue;
    this.#queueHead = 0;
    return dropped;
  }

  /** Stops timers at gateway shutdown; the stored session stays for the next start. */
  suspend(): void {
    this.#cancelExpiry?.();
    this.#will?.cancel();
    this.#will = undefined;
  }

  /** Makes the session persistent, or not, for its current connection (at CONNECT). */
  setExpiry(expiryMs: number): void {
    const wasStored = this.expiryMs > 0;
    if (wasStored && expiryMs === 0) {
      // No longer stored: what is owed moves to memory first, for this connection
      // (bounded by max_queued_messages and the window it was sent in).
      this.#readInflight();
      while (this.#diskQueued > 0) {
        const rest = this.#queue.slice(this.#queueHead);
        if (!this.#readQueued()) {
          this.#queue = rest;
          break;
        }
        this.#queue = [...rest, ...this.#queue];
      }
      this.#queueHead = 0;
    }
    this.expiryMs = expiryMs;
    if (wasStored !== expiryMs > 0 && this.broker.session(this.clientId) === this) {
      this.broker.persistenceChanged(wasStored ? -1 : 1);
    }
    const store = this.broker.sessionStore;
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
  static restore(broker: Broker, stored: StoredSession, nowMs: number): Session {
    const session = new Session(broker, stored.clientId, stored.expiryMs);
    session.owner = stored.owner;
    for (const s of stored.subscriptions) {
      let parsed: ParsedFilter;
      try {
        parsed = parseFilter(s.filter, broker.options);
      } catch {
        continue;
      }
      session.subscribe({ ...s, ...parsed }, true);
    }
    // Messages stay on disk until the client connects (lazy loading).
    session.#diskInflight = stored.inflight;
    session.#diskQueued = stored.queued;
    session.#queuedBytes = stored.queuedBytes;
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
      broker.sessionStore?.saveSession(stored.clientId, stored.expiryMs, nowMs);
    }
    session.armExpiry(since + stored.expiryMs - nowMs);
    return session;
  }
}

/**
 * About what a delivery's PUBLISH takes on the wire (its properties aside): what it will
 * add to the client's unsent bytes once written.
 */
function deliverySize(out: Outbound): number {
  return out.message.payload.length + out.message.subject.length;
}

function toOutbound(m: StoredMessage): Outbound {
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
    packetId: 0,
    released: m.released,
    seq: 0,
  };
}
