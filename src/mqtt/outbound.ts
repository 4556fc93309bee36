import type { Envelope } from "../core/index.js";
import { queuedBytesOf, type SessionStore } from "../store/index.js";
import type { Connection } from "./connection.js";
import type { SessionContext } from "./context.js";
import {
  deliverySize,
  type Outbound,
  type OutboundOwner,
  type OutboundPhase,
  QUEUED,
  storeCopy,
  toOutbound,
} from "./outbound-message.js";
import { encodeAck } from "./packets.js";
import { SessionQueue } from "./session-queue.js";

const MAX_PACKET_ID = 0xffff;

/**
 * A session's messages owed to its client (section 4.3): in flight in the order sent,
 * to be resent after a reconnect, and queued behind a full window (see SessionQueue).
 */
export class OutboundQueue {
  readonly #ctx: SessionContext;
  readonly #owner: OutboundOwner;
  /** In flight, in the order sent; resent in that order on reconnect [MQTT-4.6.0-1]. */
  readonly inflight = new Map<number, Outbound>();
  /** Sent on an earlier connection and not acknowledged: resent first, same ids. */
  readonly #resend = new Map<number, Outbound>();
  readonly #queue: SessionQueue;
  /** Persistent sessions while offline: their in-flight messages are on disk only. */
  #diskInflight = 0;
  /** After a resume under narrower permissions: which owed messages may still go. */
  #owedKeep: ((message: Envelope) => boolean) | undefined;
  #nextPacketId = 1;
  #nextSeq = 0;
  /** Writes waiting for a commit of the session store (see #whenStored). */
  #writesHeld = 0;
  /** Inside pump: a write that frees the window does not start another. */
  #pumping = false;

  constructor(ctx: SessionContext, owner: OutboundOwner) {
    this.#ctx = ctx;
    this.#owner = owner;
    this.#queue = new SessionQueue(owner);
  }

  get #store(): SessionStore | undefined {
    return this.#owner.persistent ? this.#owner.sessionStore : undefined;
  }

  /** Messages waiting for the window: in memory, and on disk for a persistent session. */
  get queuedCount(): number {
    return this.#queue.count;
  }

  get queuedBytes(): number {
    return this.#queue.bytes;
  }

  /** A stored session's owed messages, still on disk (a restart: read when it connects). */
  restore(stored: { inflight: number; queued: number; queuedBytes: number }): void {
    this.#diskInflight = stored.inflight;
    this.#queue.restore(stored.queued, stored.queuedBytes);
  }

  /**
   * Takes a message for the client: QoS 0 goes now or not at all; QoS 1/2 goes when the
   * window has room, else waits in the queue (bounded). For a persistent session the
   * returned promise settles when the message is on disk.
   */
  offer(
    message: Envelope,
    qos: 0 | 1 | 2,
    retain: boolean,
    subscriptionIds: readonly number[] | undefined,
  ): Promise<void> | undefined {
    const ctx = this.#ctx;
    if (this.#owner.ended) return undefined;
    if (message.expiresAtMs !== undefined && message.expiresAtMs <= ctx.clock.now()) {
      ctx.metrics.dropped.inc({ reason: "expired" });
      return undefined;
    }
    const conn = this.#owner.connection;
    if (qos === 0) {
      if (conn === undefined) return undefined;
      // Behind any QoS 1/2 delivery of this session still waiting for its commit.
      if (this.#writesHeld === 0) conn.output.sendQos0(message, retain, subscriptionIds);
      else {
        this.#whenStored(conn, () => conn.output.sendQos0(message, retain, subscriptionIds), false);
      }
      return undefined;
    }
    const canSend =
      conn !== undefined &&
      this.queuedCount === 0 &&
      this.#resend.size === 0 &&
      this.#diskInflight === 0 &&
      conn.output.hasWindow(this.inflight.size);
    const bytes = queuedBytesOf(message);
    const { maxQueued, maxSessionQueuedBytes } = ctx.options;
    if (
      !canSend &&
      (this.queuedCount >= maxQueued || this.#queue.bytes + bytes > maxSessionQueuedBytes)
    ) {
      ctx.metrics.dropped.inc({ reason: "queue-full" });
      return undefined;
    }
    let rowId: number | undefined;
    let committed: Promise<void> | undefined;
    const store = this.#store;
    if (store !== undefined) {
      const row = storeCopy(
        ctx,
        store,
        this.#owner.clientId,
        message,
        { qos, retain, subscriptionIds },
        canSend,
      );
      if (row === undefined) return undefined;
      ({ rowId, committed } = row);
    }
    const out: Outbound = {
      message,
      qos,
      retain,
      subscriptionIds,
      rowId,
      phase: QUEUED,
    };
    if (canSend) {
      this.#send(conn, out);
      return committed;
    }
    this.#queue.push(out, bytes, conn !== undefined);
    return committed;
  }

  /**
   * Gives `out` a packet id and sends it. For a stored message the id is committed first:
   * a PUBLISH on the wire whose id a `kill -9` lost would come again after the restart
   * under a new id without DUP, a second message to a QoS 2 receiver [MQTT-4.4.0-1].
   */
  #send(conn: Connection, out: Outbound): void {
    let id = this.#nextPacketId;
    while (this.inflight.has(id) || this.#resend.has(id)) id = (id % MAX_PACKET_ID) + 1;
    this.#nextPacketId = (id % MAX_PACKET_ID) + 1;
    out.phase = { kind: "in-flight", packetId: id, seq: this.#nextSeq++ };
    this.inflight.set(id, out);
    if (out.rowId !== undefined) this.#store?.markSent(out.rowId, id, false);
    const size = deliverySize(out);
    conn.output.reserve(size);
    // Nothing to wait for (the common case): written now, without a closure to hold.
    const store = this.#owner.sessionStore;
    if (store === undefined || (this.#writesHeld === 0 && !this.#owner.persistent)) {
      this.#write(conn, out, id, size);
    } else {
      this.#whenStored(conn, () => this.#write(conn, out, id, size));
    }
  }

  /** Writes a PUBLISH given its id by #send (its `size` was reserved). */
  #write(conn: Connection, out: Outbound, id: number, size: number): void {
    conn.output.release(size);
    // Taken out of the window meanwhile (session ended, or moved to be resent).
    if (this.inflight.get(id) !== out) return;
    if (conn.output.sendAcked(out, id, false)) {
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
  }

  /**
   * Runs `write` once the session store has committed every write made so far (at once
   * when nothing is pending, or when the session is not stored), and only while `conn`
   * is still the session's connection. Writes keep their order: a later one never
   * overtakes one that waits. `needsCommit` false: it waits only for those.
   */
  #whenStored(conn: Connection, write: () => void, needsCommit = true): void {
    const ctx = this.#ctx;
    const store = this.#writesHeld > 0 || needsCommit ? this.#owner.sessionStore : undefined;
    if (store === undefined || (this.#writesHeld === 0 && !this.#owner.persistent)) {
      write();
      return;
    }
    this.#writesHeld++;
    const run = (): void => {
      this.#writesHeld--;
      if (this.#owner.connection !== conn) return;
      // Runs from the store's commit: one failure must not stop the writes behind it.
      ctx.guard.run("mqtt.write-after-commit", write, () => conn.transport.destroy());
    };
    store.afterCommit(run);
  }

  /** Sends owed messages while the window has room: resends first, then the queue. */
  pump(): void {
    const conn = this.#owner.connection;
    if (conn === undefined || this.#pumping) return;
    this.#pumping = true;
    try {
      this.#fill(conn);
    } finally {
      this.#pumping = false;
    }
  }

  #fill(conn: Connection): void {
    const ctx = this.#ctx;
    const owner = this.#owner;
    for (const [id, out] of this.#resend) {
      if (!conn.output.hasWindow(this.inflight.size) || owner.connection !== conn) return;
      this.#resend.delete(id);
      this.inflight.set(id, out);
      const size = deliverySize(out);
      conn.output.reserve(size);
      this.#whenStored(conn, () => {
        conn.output.release(size);
        if (this.inflight.get(id) !== out) return;
        if (out.phase.kind === "released") conn.send(encodeAck("pubrel", id));
        else conn.output.sendAcked(out, id, true);
        this.pump();
      });
    }
    while (conn.output.hasWindow(this.inflight.size) && owner.connection === conn) {
      const out = this.#queue.shift();
      if (out === undefined) break;
      const expires = out.message.expiresAtMs;
      if (expires !== undefined && expires <= ctx.clock.now()) {
        // Expired before onward delivery began: not sent [MQTT-3.3.2-5].
        ctx.metrics.dropped.inc({ reason: "expired" });
        if (out.rowId !== undefined) this.#store?.remove(out.rowId);
        continue;
      }
      if (this.#owedKeep !== undefined && !this.#owedKeep(out.message)) {
        // Read from disk after a resume under narrower permissions (see dropOwed).
        ctx.metrics.dropped.inc({ reason: "not-authorized" });
        if (out.rowId !== undefined) this.#store?.remove(out.rowId);
        continue;
      }
      this.#send(conn, out);
      if (owner.connection === undefined) break;
    }
    this.#queue.compact();
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
    if (kind === "pubcomp" && entry.phase.kind !== "released") return false;
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
    const conn = this.#owner.connection;
    if (entry === undefined || entry.qos !== 2 || conn === undefined) return;
    if (entry.phase.kind === "in-flight") {
      entry.phase = { kind: "released", packetId, seq: entry.phase.seq };
      if (entry.rowId !== undefined) this.#store?.markSent(entry.rowId, packetId, true);
    }
    this.#whenStored(conn, () => {
      if (this.inflight.get(packetId) === entry) conn.send(encodeAck("pubrel", packetId));
    });
  }

  /**
   * A connection takes the session. A resumed session resends what is in flight, with
   * the original packet ids and DUP set, PUBREL where PUBREC came [MQTT-4.4.0-1].
   */
  attach(resumed: boolean): void {
    if (resumed) {
      this.#readInflight();
      // Owed again, in order, within the new connection's window [MQTT-3.3.4-9]; the
      // rest keep their ids and go as acks free the window.
      const owed = [...this.#resend, ...this.inflight].sort((a, b) => seqOf(a[1]) - seqOf(b[1]));
      this.#resend.clear();
      this.inflight.clear();
      for (const [id, out] of owed) this.#resend.set(id, out);
    }
    this.pump();
  }

  /** Offline, in-flight messages were on disk only: back in the order first sent. */
  #readInflight(): void {
    if (this.#diskInflight === 0) return;
    this.#diskInflight = 0;
    for (const m of this.#store?.loadInflight(this.#owner.clientId) ?? []) {
      if (m.packetId === undefined || this.inflight.has(m.packetId)) continue;
      const at = { packetId: m.packetId, seq: this.#nextSeq++ };
      const phase: OutboundPhase = m.released
        ? { kind: "released", ...at }
        : { kind: "in-flight", ...at };
      this.inflight.set(m.packetId, toOutbound(m, phase));
      this.#nextPacketId = (m.packetId % MAX_PACKET_ID) + 1;
    }
  }

  /**
   * An offline persistent session keeps no message in memory: each is on disk (queued
   * ones read back in windows, in-flight ones at the next connection).
   */
  unload(): void {
    if (this.#store === undefined) return;
    this.#diskInflight += this.inflight.size + this.#resend.size;
    this.inflight.clear();
    this.#resend.clear();
    this.#queue.unload();
  }

  /**
   * The session stops being stored: what is owed moves to memory first, for this
   * connection (bounded by max_queued_messages and the window it was sent in).
   */
  loadAll(): void {
    this.#readInflight();
    this.#queue.loadAll();
  }

  /** Forgets every owed message: the session ended. */
  clear(): void {
    this.#queue.clear();
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
      if (out.phase.kind === "released" || keep(out.message)) return false;
      if (out.rowId !== undefined) this.#store?.remove(out.rowId);
      dropped++;
      return true;
    };
    for (const owed of [this.inflight, this.#resend]) {
      for (const [id, out] of owed) if (drop(out)) owed.delete(id);
    }
    this.#queue.drop(drop);
    return dropped;
  }
}

function seqOf(out: Outbound): number {
  return out.phase.kind === "queued" ? 0 : out.phase.seq;
}
