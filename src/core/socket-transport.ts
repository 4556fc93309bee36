import type { Socket } from "node:net";
import type { Guard } from "./guard.js";
import type { Transport } from "./transport.js";

/**
 * Packets smaller than this that are written in one turn of the event loop go out as one
 * buffer: the acks of a group commit, or the PINGRESPs for a read full of PINGREQs, cost
 * one write request and their bytes, instead of a queued request each (about 100 bytes
 * apiece, which made 8 M PINGRESPs queued for a client that did not read hold 460 MB).
 * Larger packets are written as they are, to spare the copy. The held bytes go at the end
 * of the turn (setImmediate), not of the callback (nextTick): what fifty publishers' reads
 * of one turn deliver to a subscriber is one write, not fifty; or as soon as they reach
 * FLUSH_AT_BYTES, so that the kernel's buffer takes them as they come (held bytes count
 * as unsent: a turn's worth held back would make a subscriber look behind and lose QoS 0).
 */
const COALESCE_BELOW_BYTES = 16 * 1024;
const FLUSH_AT_BYTES = 64 * 1024;
/** A socket that is done with but whose peer does not read is destroyed after this. */
const END_TIMEOUT_MS = 5_000;

/** The flushes of the transports that hold bytes this turn: one setImmediate runs them all. */
let dueThisTurn: (() => void)[] = [];

function flushDue(): void {
  const flushes = dueThisTurn;
  dueThisTurn = [];
  // Each flush runs under its own guard: one failing does not keep the others from going.
  for (const flush of flushes) flush();
}

function flushAtEndOfTurn(flush: () => void): void {
  if (dueThisTurn.length === 0) setImmediate(flushDue);
  dueThisTurn.push(flush);
}

/**
 * Adapts a TCP (or TLS) socket to a protocol's Transport; its callbacks run under `guard`,
 * labelled `<part>.socket-flush` and so on.
 */
export function socketTransport(socket: Socket, guard: Guard, part: "mqtt" | "nats"): Transport {
  return new SocketTransport(socket, guard, part);
}

/**
 * A class rather than an object of closures: a thousand idle connections share its methods
 * instead of holding ten closures and a dictionary-mode object each (about 1 KiB apiece).
 */
class SocketTransport implements Transport {
  readonly remote: string;
  readonly #socket: Socket;
  readonly #guard: Guard;
  readonly #part: "mqtt" | "nats";
  #held: Uint8Array[] = [];
  #heldBytes = 0;
  /** Set while bytes are held: the end of this turn's flush (one closure per held turn). */
  #due: (() => void) | undefined;

  constructor(socket: Socket, guard: Guard, part: "mqtt" | "nats") {
    this.#socket = socket;
    this.#guard = guard;
    this.#part = part;
    this.remote = `${socket.remoteAddress}:${socket.remotePort}`;
  }

  write(bytes: Uint8Array): boolean {
    const socket = this.#socket;
    if (bytes.length >= COALESCE_BELOW_BYTES) {
      this.#flush();
      return socket.write(bytes);
    }
    if (this.#due === undefined) {
      this.#due = () => this.#flush();
      flushAtEndOfTurn(this.#due);
    }
    this.#held.push(bytes);
    this.#heldBytes += bytes.length;
    if (this.#heldBytes >= FLUSH_AT_BYTES) this.#flush();
    return socket.writableLength + this.#heldBytes < socket.writableHighWaterMark;
  }

  end(readOn = true): void {
    const socket = this.#socket;
    this.#flush();
    // Read on (and discard: the connection is closing) so the peer's FIN is seen and
    // the socket closes, rather than lingering paused until the deadline below.
    if (readOn) socket.resume();
    socket.end();
    // A peer that never reads must not hold the socket open after we are done: a
    // deadline, not an idle timeout, which a peer that goes on sending would keep off.
    const destroyLate = (): void =>
      this.#guard.run(`${this.#part}.socket-end-timeout`, () => socket.destroy(), this.#cut);
    const deadline = setTimeout(destroyLate, END_TIMEOUT_MS).unref();
    socket.once("close", () => clearTimeout(deadline));
  }

  destroy(): void {
    this.#held = [];
    this.#heldBytes = 0;
    this.#socket.destroy();
  }

  pause(): void {
    this.#socket.pause();
  }

  resume(): void {
    this.#socket.resume();
  }

  get writableLength(): number {
    return this.#socket.writableLength + this.#heldBytes;
  }

  readonly #cut = (): void => {
    this.#socket.destroy();
  };

  /** Writes the held bytes as one buffer; a flush already made (or a destroy) leaves none. */
  #flush(): void {
    this.#due = undefined;
    if (this.#held.length === 0) return;
    this.#guard.run(
      `${this.#part}.socket-flush`,
      () => {
        const parts = this.#held;
        const bytes = this.#heldBytes;
        this.#held = [];
        this.#heldBytes = 0;
        if (!this.#socket.writable) return;
        this.#socket.write(parts.length === 1 ? parts[0]! : Buffer.concat(parts, bytes));
      },
      this.#cut,
    );
  }
}
