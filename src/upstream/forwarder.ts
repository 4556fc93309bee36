import { setTimeout as delay, setImmediate as nextTurn } from "node:timers/promises";
import {
  createInbox,
  type Msg,
  type MsgHdrs,
  MsgHdrsImpl,
  type NatsConnection,
  headers as natsHeaders,
  type Subscription,
} from "@nats-io/transport-node";
import type { Counter, Logger } from "../core/index.js";
import { DEFAULT_ACCOUNT, RateLimitedLog } from "../core/index.js";
import type { OutboxReader, OutboxRow } from "../store/index.js";
import { DrainCursor, type DrainPolicy } from "./drain-cursor.js";
import { dropUnsendable, unsendable } from "./hub-limits.js";
import type { RateCap } from "./token-bucket.js";
import { Wakeup } from "./wakeup.js";

const UTF8 = new TextDecoder();

/** Rows read from the outbox per step; bounds memory between two event-loop turns. */
const READ_BATCH_ROWS = 1000;
/**
 * Acked rows deleted together while a backlog drains: SQLite deletes cost about twice as
 * much per row in batches of 250 as in batches of 1,000 (docs/performance-store.md).
 */
const DELETE_BATCH_ROWS = 1000;
/** How often in-flight publishes are checked against `ack_timeout`. */
const ACK_CHECK_INTERVAL_MS = 1000;
/** Pause after the hub refused a publish, so a persistent error does not spin. */
const RETRY_AFTER_ERROR_MS = 1000;
/** One line per burst of refusals: a missing stream refuses every row in flight. */
const REFUSED_LOG_WINDOW_MS = 10_000;
const REFUSED_LOG_BURST = 1;
/** While stopping, how often `settle` looks whether the acks are in. */
const SETTLE_POLL_MS = 50;

export interface ForwarderMetrics {
  readonly forwarded: Counter;
  /** Rows the hub can never take (larger than its max_payload): dropped, not retried. */
  readonly tooLarge: Counter;
  readonly duplicates: Counter;
  readonly publishErrors: Counter;
  readonly resends: Counter;
}

export interface ForwarderOptions {
  readonly gatewayId: string;
  /** The account whose queue this forwards (its message ids: messageIdPrefix); `$G` when absent. */
  readonly account?: string;
  /** Prepended to every exported subject, with a `.` between. */
  readonly prefix: string;
  readonly maxInFlight: number;
  readonly ackTimeoutMs: number;
  readonly drain: DrainPolicy;
  /** The rate cap; one for the gateway's life, so a reconnect does not refill it. */
  readonly rate: RateCap;
  readonly log: Logger;
  readonly metrics: ForwarderMetrics;
  /** Rows an earlier connection sent without hearing back: sending one again is a resend. */
  readonly unacknowledged?: Iterable<number>;
}

/** Drains the outbox to the hub over one connection; a new connection gets a new forwarder. */
export interface Forwarder {
  /** Forwards until `signal` aborts or the connection fails. */
  run(signal: AbortSignal): Promise<void>;
  /** After `run`: waits up to `deadlineMs` for outstanding acks, then deletes what was acked. */
  settle(deadlineMs: number): Promise<void>;
  /** Rows sent without an answer yet (for the next connection's `unacknowledged`). */
  unacknowledged(): number[];
}

/**
 * What every message id of an account's queue starts with: `<gateway>-` for the global
 * account `$G` (the form from before accounts, so existing streams keep deduplicating
 * after an upgrade), `<gateway>.<account>.` for the others.
 */
export function messageIdPrefix(gatewayId: string, account: string = DEFAULT_ACCOUNT): string {
  return account === DEFAULT_ACCOUNT ? `${gatewayId}-` : `${gatewayId}.${account}.`;
}

/**
 * The message id the hub deduplicates on: unique per gateway and account, never reused
 * (`gw1-42` in $G, `gw1.building.42` in account building).
 */
export function messageId(gatewayId: string, rowId: number, account?: string): string {
  return `${messageIdPrefix(gatewayId, account)}${rowId}`;
}

/**
 * Header on a message sent out of id order (`drain: fresh_first`): which rows had been
 * sent on its connection by then (DrainCursor.sentSoFar), for reconciliation.
 */
export const SENT_ROWS_HEADER = "Leafgate-Sent";

type HeaderMatch = Parameters<MsgHdrsImpl["get"]>[1];

/** The end of a header block: the last header line's CRLF and the empty line. */
const HEADERS_END = "\r\n\r\n";

/**
 * The headers of a row that has none of its own, sent in order: `Nats-Msg-Id` alone, as
 * the bytes nats.js' `headers()` would encode (`NATS/1.0\r\nNats-Msg-Id: gw1-42\r\n\r\n`),
 * built from a prefix encoded once instead of a header map per row. nats.js publishes a
 * message's headers by calling their `encode()` and keeps only the bytes, so one instance
 * serves every publish: `forRow` before each.
 */
export class MessageIdHeaders extends MsgHdrsImpl {
  readonly #idPrefix: string;
  readonly #head: Buffer;
  #bytes: Uint8Array;
  #rowId = 0;
  /** The row whose header the map (super's) holds, for readers other than `encode`. */
  #mapped = -1;

  constructor(idPrefix: string) {
    super();
    this.#idPrefix = idPrefix;
    this.#head = Buffer.from(`NATS/1.0\r\nNats-Msg-Id: ${idPrefix}`);
    this.#bytes = this.#head;
  }

  /** Makes `encode()` the headers of row `rowId`; returns this, for `publish`. */
  forRow(rowId: number): this {
    this.#rowId = rowId;
    const digits = String(rowId);
    const head = this.#head;
    // Small sizes come from Node's buffer pool: no allocation of its own per row.
    const bytes = Buffer.allocUnsafe(head.length + digits.length + HEADERS_END.length);
    head.copy(bytes, 0);
    const at = head.length + bytes.write(digits, head.length, "latin1");
    bytes.write(HEADERS_END, at, "latin1");
    this.#bytes = bytes;
    return this;
  }

  override encode(): Uint8Array {
    return this.#bytes;
  }

  // Anything else that reads the headers sees the current row's, as a map (built on demand).
  override get(k: string, match?: HeaderMatch): string {
    this.#sync();
    return super.get(k, match);
  }

  override has(k: string, match?: HeaderMatch): boolean {
    this.#sync();
    return super.has(k, match);
  }

  override values(k: string, match?: HeaderMatch): string[] {
    this.#sync();
    return super.values(k, match);
  }

  override keys(): string[] {
    this.#sync();
    return super.keys();
  }

  override toString(): string {
    this.#sync();
    return super.toString();
  }

  override [Symbol.iterator](): MapIterator<[string, string[]]> {
    this.#sync();
    return super[Symbol.iterator]();
  }

  #sync(): void {
    if (this.#mapped === this.#rowId) return;
    this.#mapped = this.#rowId;
    super.set("Nats-Msg-Id", `${this.#idPrefix}${this.#rowId}`);
  }
}

/**
 * How every PubAck that stored a message begins. nats-server writes the response's `error`
 * before the PubAck's fields (JSPubAckResponse: `Error` is its first field), so a body that
 * begins so carries no error.
 */
const STORED_ACK_START = Buffer.from('{"stream":');
/** Written only when true (`omitempty`), as `"duplicate": true` by nats-server 2.9. */
const DUPLICATE_KEY = Buffer.from('"duplicate"');

/**
 * For a PubAck of a stored message, whether the stream had it already (a duplicate),
 * read from the bytes without decoding them; undefined for anything else (an error, or a
 * form this does not know), which the caller parses as JSON.
 */
export function storedAck(data: Uint8Array): boolean | undefined {
  const body = Buffer.from(data.buffer, data.byteOffset, data.length);
  if (
    body.length < STORED_ACK_START.length ||
    body.compare(STORED_ACK_START, 0, STORED_ACK_START.length, 0, STORED_ACK_START.length) !== 0
  ) {
    return undefined;
  }
  return body.includes(DUPLICATE_KEY);
}

function rowHeaders(idPrefix: string, row: OutboxRow, sentRows?: string): MsgHdrs {
  const h = natsHeaders();
  if (row.headers !== undefined) {
    for (const [name, values] of row.headers) for (const v of values) h.append(name, v);
  }
  h.set("Nats-Msg-Id", `${idPrefix}${row.id}`);
  if (sentRows !== undefined) h.set(SENT_ROWS_HEADER, sentRows);
  return h;
}

/**
 * JetStream mode. Publishes are pipelined: each row goes out as a core publish whose
 * reply subject is `<inbox>.<row id>` under one wildcard subscription, so a PubAck costs
 * one parse and no timer. A row is deleted only after its PubAck. A refused publish, a
 * missing ack after `ack_timeout`, or a new connection resends from the first
 * unacknowledged row; `Nats-Msg-Id` lets the stream drop the repeats.
 */
export class JetStreamForwarder implements Forwarder {
  readonly #nc: NatsConnection;
  readonly #outbox: OutboxReader;
  readonly #options: ForwarderOptions;
  /** Row id → time sent; insertion order is id order, so the first key is the oldest. */
  readonly #inflight = new Map<number, number>();
  /**
   * Rows sent without an answer and since taken out of flight to go again (a rewind, or
   * an earlier connection). Sending one counts as a resend; a late PubAck for one still
   * counts it forwarded.
   */
  readonly #sentBefore: Set<number>;
  readonly #wakeup = new Wakeup();
  readonly #cursor: DrainCursor;
  readonly #refusedLog: RateLimitedLog;
  /** Acknowledged rows not deleted yet: never sent again. */
  #acked = new Set<number>();
  #deleteScheduled = false;
  #pauseUntilMs = 0;
  #waitingForRoom = false;
  #replies: Subscription | undefined;

  constructor(nc: NatsConnection, outbox: OutboxReader, options: ForwarderOptions) {
    this.#nc = nc;
    this.#outbox = outbox;
    this.#options = options;
    this.#cursor = new DrainCursor(outbox, options.drain);
    this.#sentBefore = new Set(options.unacknowledged);
    this.#refusedLog = new RateLimitedLog(options.log, {
      burst: REFUSED_LOG_BURST,
      windowMs: REFUSED_LOG_WINDOW_MS,
    });
  }

  async run(signal: AbortSignal): Promise<void> {
    const inbox = createInbox();
    const tokenAt = inbox.length + 1;
    this.#replies = this.#nc.subscribe(`${inbox}.*`, {
      callback: (_err, msg) => this.#onReply(Number(msg.subject.slice(tokenAt)), msg),
    });
    const timer = setInterval(() => {
      // Acked rows held for a fuller batch (#scheduleDelete) wait at most this long.
      if (this.#acked.size > 0) this.#deleteAcked();
      this.#checkAckTimeouts();
    }, ACK_CHECK_INTERVAL_MS);
    // Woken in the check phase, after the commit's PUBACKs have been written: the
    // publishers' round trips set ingest throughput, so they go first.
    let wakeScheduled = false;
    const wakeAfterAcks = (): void => {
      wakeScheduled = false;
      if (!this.#waitingForRoom) this.#wakeup.wake();
    };
    const stopListening = this.#outbox.onCommit(() => {
      if (wakeScheduled) return;
      wakeScheduled = true;
      setImmediate(wakeAfterAcks);
    });
    const { maxInFlight, prefix, gatewayId, account, rate } = this.#options;
    const idPrefix = messageIdPrefix(gatewayId, account);
    const idHeaders = new MessageIdHeaders(idPrefix);
    try {
      while (!signal.aborted && !this.#nc.isClosed()) {
        const pauseMs = this.#pauseUntilMs - Date.now();
        if (pauseMs > 0) {
          await this.#wakeup.wait(signal, pauseMs);
          continue;
        }
        if (this.#cursor.caughtUp()) {
          // Caught up: the next commit (or a rewind) wakes us.
          await this.#wakeup.wait(signal);
          continue;
        }
        const room = maxInFlight - this.#inflight.size;
        if (room <= 0) {
          this.#waitingForRoom = true;
          await this.#wakeup.wait(signal);
          this.#waitingForRoom = false;
          continue;
        }
        const allowed = rate.allowed(Math.min(room, READ_BATCH_ROWS));
        if (allowed === 0) {
          await this.#wakeup.wait(signal, rate.waitMs());
          continue;
        }
        const rows = this.#cursor.read(allowed);
        if (rows.length === 0) continue;
        const now = Date.now();
        let capped: OutboxRow | undefined;
        for (const row of rows) {
          const subject = `${prefix}.${row.subject}`;
          const reply = `${inbox}.${row.id}`;
          const why = unsendable(this.#nc, row, subject, reply);
          if (why !== undefined) {
            this.#cursor.advance(row.id);
            dropUnsendable(this.#nc, row, why, this.#options);
            this.#sentBefore.delete(row.id);
            this.#acked.add(row.id);
            this.#scheduleDelete();
            continue;
          }
          // Its PubAck came after a rewind had read it again: it is stored.
          if (this.#acked.has(row.id)) {
            this.#cursor.advance(row.id);
            continue;
          }
          if (!rate.take(row.payload.length)) {
            capped = row;
            break;
          }
          this.#cursor.advance(row.id);
          const sentRows = this.#cursor.sentSoFar();
          this.#nc.publish(subject, row.payload, {
            reply,
            headers:
              row.headers === undefined && sentRows === undefined
                ? idHeaders.forRow(row.id)
                : rowHeaders(idPrefix, row, sentRows),
          });
          this.#inflight.set(row.id, now);
          if (this.#sentBefore.delete(row.id)) this.#options.metrics.resends.inc();
        }
        if (capped !== undefined) {
          await this.#wakeup.wait(signal, rate.waitMs(capped.payload.length));
          continue;
        }
        // Let the socket write and the acks come in before reading more.
        await nextTurn();
      }
    } finally {
      clearInterval(timer);
      stopListening();
      // Rows held for a fuller delete batch: the connection is gone, not their acks.
      if (this.#acked.size > 0) this.#deleteAcked();
    }
  }

  unacknowledged(): number[] {
    return [...this.#inflight.keys(), ...this.#sentBefore];
  }

  async settle(deadlineMs: number): Promise<void> {
    const until = Date.now() + deadlineMs;
    const never = new AbortController().signal;
    while (this.#inflight.size > 0 && !this.#nc.isClosed() && Date.now() < until) {
      await this.#wakeup.wait(never, Math.min(SETTLE_POLL_MS, until - Date.now()));
    }
    this.#replies?.unsubscribe();
    this.#deleteAcked();
  }

  #onReply(rowId: number, msg: Msg): void {
    const status = msg.headers?.code ?? 0;
    if (status >= 300) {
      // 503: no stream listens on the subject (it was deleted or its subjects changed).
      this.#refused(rowId, `${status} ${msg.headers?.description || "no responders"}`);
      return;
    }
    let duplicate = storedAck(msg.data);
    if (duplicate === undefined) {
      let ack: {
        error?: { code?: number; err_code?: number; description?: string };
        duplicate?: boolean;
      };
      try {
        ack = JSON.parse(UTF8.decode(msg.data));
      } catch {
        this.#refused(rowId, "unreadable PubAck");
        return;
      }
      if (ack.error !== undefined) {
        this.#refused(rowId, `${ack.error.code ?? ""} ${ack.error.description ?? ""}`.trim());
        return;
      }
      duplicate = ack.duplicate === true;
    }
    // A late ack after a rewind is still proof the row is stored: delete it either way.
    // Counted once per row: the original's late ack and a resend's duplicate ack may both
    // arrive, but only the first finds the row in flight or waiting to go again.
    if (this.#inflight.delete(rowId) || this.#sentBefore.delete(rowId)) {
      this.#options.metrics.forwarded.inc();
      if (duplicate) this.#options.metrics.duplicates.inc();
    }
    this.#acked.add(rowId);
    this.#scheduleDelete();
    if (this.#waitingForRoom && this.#inflight.size <= this.#options.maxInFlight / 2) {
      this.#wakeup.wake();
    }
  }

  /**
   * Deletes the acked rows on the next turn; while many more acks are due, once at least
   * DELETE_BATCH_ROWS are in (or at the next ack-timeout check, should the acks stop).
   */
  #scheduleDelete(): void {
    if (this.#deleteScheduled) return;
    if (this.#acked.size < DELETE_BATCH_ROWS && this.#inflight.size >= DELETE_BATCH_ROWS) return;
    this.#deleteScheduled = true;
    setImmediate(() => this.#deleteAcked());
  }

  #deleteAcked(): void {
    this.#deleteScheduled = false;
    if (this.#acked.size === 0) return;
    const ids = [...this.#acked];
    this.#acked = new Set();
    this.#outbox.delete(ids);
  }

  #refused(rowId: number, reason: string): void {
    this.#options.metrics.publishErrors.inc({ reason: reason.split(" ")[0] || "unknown" });
    if (!this.#inflight.has(rowId)) return;
    this.#refusedLog.log(
      "refused",
      { row: rowId, reason },
      "hub refused a publish; resending from the first unacknowledged row",
    );
    this.#pauseUntilMs = Date.now() + RETRY_AFTER_ERROR_MS;
    this.#rewind();
  }

  #checkAckTimeouts(): void {
    const first = this.#inflight.entries().next();
    if (first.done) return;
    const [rowId, sentAtMs] = first.value;
    if (Date.now() - sentAtMs < this.#options.ackTimeoutMs) return;
    this.#options.log.warn(
      { row: rowId, inFlight: this.#inflight.size, ackTimeoutMs: this.#options.ackTimeoutMs },
      "no PubAck within upstream.ack_timeout; resending from the first unacknowledged row",
    );
    this.#rewind();
  }

  /** Sends everything unacknowledged again, in order. */
  #rewind(): void {
    const first = this.#inflight.keys().next();
    if (first.done) return;
    this.#cursor.rewind(this.#inflight.keys());
    for (const id of this.#inflight.keys()) this.#sentBefore.add(id);
    this.#inflight.clear();
    this.#wakeup.wake();
  }
}

/**
 * Core-NATS mode, for hubs without JetStream: publish a batch, then flush (a PING/PONG
 * round trip proves the hub read it) and delete. Nothing on the hub stores the messages;
 * a connection lost mid-batch resends the batch, so duplicates are possible.
 */
export class CoreForwarder implements Forwarder {
  readonly #nc: NatsConnection;
  readonly #outbox: OutboxReader;
  readonly #options: ForwarderOptions;
  readonly #cursor: DrainCursor;
  readonly #wakeup = new Wakeup();

  constructor(nc: NatsConnection, outbox: OutboxReader, options: ForwarderOptions) {
    this.#nc = nc;
    this.#outbox = outbox;
    this.#options = options;
    this.#cursor = new DrainCursor(outbox, options.drain);
  }

  async run(signal: AbortSignal): Promise<void> {
    const { prefix, gatewayId, account, maxInFlight, rate } = this.#options;
    const idPrefix = messageIdPrefix(gatewayId, account);
    const stopListening = this.#outbox.onCommit(() => this.#wakeup.wake());
    try {
      while (!signal.aborted && !this.#nc.isClosed()) {
        if (this.#cursor.caughtUp()) {
          // Caught up: the next commit wakes us.
          await this.#wakeup.wait(signal);
          continue;
        }
        const allowed = rate.allowed(Math.min(maxInFlight, READ_BATCH_ROWS));
        if (allowed === 0) {
          await delay(rate.waitMs(), undefined, { signal }).catch(() => {});
          continue;
        }
        const rows = this.#cursor.read(allowed);
        const sent: number[] = [];
        let published = 0;
        let waitMs = 0;
        for (const row of rows) {
          const why = unsendable(this.#nc, row, `${prefix}.${row.subject}`, "");
          if (why !== undefined) {
            dropUnsendable(this.#nc, row, why, this.#options);
          } else if (rate.take(row.payload.length)) {
            this.#nc.publish(`${prefix}.${row.subject}`, row.payload, {
              headers: rowHeaders(idPrefix, row),
            });
            published++;
          } else {
            waitMs = rate.waitMs(row.payload.length);
            break;
          }
          sent.push(row.id);
        }
        if (sent.length > 0) {
          await this.#nc.flush();
          for (const id of sent) this.#cursor.advance(id);
          this.#outbox.delete(sent);
          this.#options.metrics.forwarded.inc(undefined, published);
        }
        if (waitMs > 0) await delay(waitMs, undefined, { signal }).catch(() => {});
      }
    } finally {
      stopListening();
    }
  }

  async settle(): Promise<void> {}

  unacknowledged(): number[] {
    return [];
  }
}
