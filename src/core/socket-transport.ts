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
  let held: Uint8Array[] = [];
  let heldBytes = 0;
  const cut = (): void => {
    socket.destroy();
  };
  const flush = guard.wrap(
    `${part}.socket-flush`,
    (): void => {
      if (held.length === 0) return;
      const parts = held;
      const bytes = heldBytes;
      held = [];
      heldBytes = 0;
      if (!socket.writable) return;
      socket.write(parts.length === 1 ? parts[0]! : Buffer.concat(parts, bytes));
    },
    cut,
  );
  const destroyLate = guard.wrap(`${part}.socket-end-timeout`, cut);
  return {
    write: (bytes) => {
      if (bytes.length >= COALESCE_BELOW_BYTES) {
        flush();
        return socket.write(bytes);
      }
      if (held.length === 0) flushAtEndOfTurn(flush);
      held.push(bytes);
      heldBytes += bytes.length;
      if (heldBytes >= FLUSH_AT_BYTES) flush();
      return socket.writableLength + heldBytes < socket.writableHighWaterMark;
    },
    end: (readOn = true) => {
      flush();
      // Read on (and discard: the connection is closing) so the peer's FIN is seen and
      // the socket closes, rather than lingering paused until the deadline below.
      if (readOn) socket.resume();
      socket.end();
      // A peer that never reads must not hold the socket open after we are done: a
      // deadline, not an idle timeout, which a peer that goes on sending would keep off.
      const deadline = setTimeout(destroyLate, END_TIMEOUT_MS).unref();
      socket.once("close", () => clearTimeout(deadline));
    },
    destroy: () => {
      held = [];
      heldBytes = 0;
      socket.destroy();
    },
    pause: () => socket.pause(),
    resume: () => socket.resume(),
    get writableLength() {
      return socket.writableLength + heldBytes;
    },
    remote: `${socket.remoteAddress}:${socket.remotePort}`,
  };
}
