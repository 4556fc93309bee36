import { queuedBytesOf, type SessionStore } from "../store/index.js";
import { type Outbound, type OutboundOwner, QUEUED, toOutbound } from "./outbound-message.js";

/**
 * Queued messages a persistent session holds in memory at most; the rest stay on disk and
 * are read, this many at a time, as the client's window takes them. Each read is one
 * indexed query; a window this size keeps a connected session's memory small whatever
 * its queue (offline sessions hold none).
 */
const QUEUE_WINDOW = 64;
/** A consumed queue head past this many slots (and half the array) is cut off. */
const QUEUE_COMPACT_AFTER = 1024;

/**
 * A session's messages waiting for the client's window, in order: in memory, and for a
 * persistent session on disk too, read back QUEUE_WINDOW at a time.
 */
export class SessionQueue {
  readonly #owner: OutboundOwner;
  #queue: (Outbound | undefined)[] = [];
  #head = 0;
  /** Bytes of every queued message, in memory or on disk (max_session_queued_bytes). */
  #bytes = 0;
  /**
   * Persistent sessions: queued messages only on disk, each with a row id above
   * `#cursor` (the last one read into memory or queued there).
   */
  #onDisk = 0;
  #cursor = 0;

  constructor(owner: OutboundOwner) {
    this.#owner = owner;
  }

  get #store(): SessionStore | undefined {
    return this.#owner.persistent ? this.#owner.sessionStore : undefined;
  }

  get count(): number {
    return this.#queue.length - this.#head + this.#onDisk;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** A stored session's queue, left on disk after a restart. */
  restore(onDisk: number, bytes: number): void {
    this.#onDisk = onDisk;
    this.#bytes = bytes;
  }

  /** Queues `out` (`bytes` of it); a stored one stays on disk only when memory is not its place. */
  push(out: Outbound, bytes: number, connected: boolean): void {
    this.#bytes += bytes;
    const { rowId } = out;
    if (
      rowId !== undefined &&
      (!connected || this.#onDisk > 0 || this.#queue.length - this.#head >= QUEUE_WINDOW)
    ) {
      // On disk only, read back in order when the window takes it.
      this.#onDisk++;
      return;
    }
    if (rowId !== undefined) this.#cursor = rowId;
    this.#queue.push(out);
  }

  /** The next message in order (read from disk when memory has none), or undefined. */
  shift(): Outbound | undefined {
    if (this.#head >= this.#queue.length && !this.#read()) return undefined;
    const out = this.#queue[this.#head]!;
    this.#queue[this.#head++] = undefined;
    this.#bytes -= queuedBytesOf(out.message);
    return out;
  }

  /** Lets go of the slots already taken. */
  compact(): void {
    if (this.#head >= this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
    } else if (this.#head > QUEUE_COMPACT_AFTER && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }

  /** Reads the next queued messages from disk into the (empty) memory queue. */
  #read(): boolean {
    const store = this.#store;
    if (this.#onDisk === 0 || store === undefined) return false;
    const rows = store.loadQueued(
      this.#owner.clientId,
      this.#cursor,
      Math.min(QUEUE_WINDOW, this.#onDisk),
    );
    if (rows.length === 0) {
      // Rows a failed commit never wrote: nothing more is owed than what memory holds.
      this.#onDisk = 0;
      this.#bytes = 0;
      for (let i = this.#head; i < this.#queue.length; i++) {
        this.#bytes += queuedBytesOf(this.#queue[i]!.message);
      }
      return false;
    }
    this.#queue = rows.map((m) => toOutbound(m, QUEUED));
    this.#head = 0;
    this.#onDisk -= rows.length;
    this.#cursor = rows[rows.length - 1]!.id;
    return true;
  }

  /** Offline: every queued message of a persistent session is on disk only. */
  unload(): void {
    this.#onDisk += this.#queue.length - this.#head;
    this.#queue = [];
    this.#head = 0;
    this.#cursor = 0;
  }

  /** The session stops being stored: every queued message moves to memory. */
  loadAll(): void {
    while (this.#onDisk > 0) {
      const rest = this.#queue.slice(this.#head);
      if (!this.#read()) {
        this.#queue = rest;
        break;
      }
      this.#queue = [...rest, ...this.#queue];
    }
    this.#head = 0;
  }

  clear(): void {
    this.#queue = [];
    this.#head = 0;
    this.#bytes = 0;
    this.#onDisk = 0;
  }

  /** Drops the messages in memory for which `drop` says so (those on disk are not read). */
  drop(drop: (out: Outbound) => boolean): void {
    this.#queue = this.#queue.slice(this.#head).filter((out) => !drop(out!));
    this.#head = 0;
  }
}
