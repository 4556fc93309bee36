// Splits a NATS client protocol byte stream (either direction) into whole frames,
// incrementally: a frame may arrive cut at any byte, across any number of TCP chunks.
//
// Rules (https://docs.nats.io/reference/reference-protocols/nats-protocol):
// - Every frame starts with a control line ending in CRLF; the operation name is its first
//   token, case-insensitive; arguments are separated by spaces or tabs.
// - MSG, HMSG, PUB and HPUB announce a byte count as their last argument (HMSG/HPUB: the
//   total of header and payload bytes, after the header byte count); exactly that many
//   bytes follow the control line, then CRLF. Those bytes may hold anything, "\r\n" and
//   whole fake control lines included: they are never scanned.
// - INFO, CONNECT and -ERR carry the rest of the line as one argument (JSON or a quoted
//   message); PING, PONG, +OK, SUB and UNSUB are a control line alone.
// Anything else (an unknown operation, a bad byte count, payload not followed by CRLF, a
// control line past MAX_CONTROL_LINE_BYTES) is a protocol error and throws.

/** A control line longer than this is refused; nats-server's default max_control_line is 4 KiB, INFO may be longer. */
export const MAX_CONTROL_LINE_BYTES = 64 * 1024;

const CRLF = Buffer.from("\r\n");
/** Operations followed by a counted payload. */
const WITH_PAYLOAD = new Set(["MSG", "HMSG", "PUB", "HPUB"]);
/** Operations whose single argument is the rest of the line. */
const REST_OF_LINE = new Set(["INFO", "CONNECT", "-ERR"]);
const BARE = new Set(["PING", "PONG", "+OK", "SUB", "UNSUB"]);

export interface NatsFrame {
  /** Operation in upper case: MSG, HMSG, PUB, HPUB, INFO, CONNECT, PING, PONG, +OK, -ERR, SUB, UNSUB. */
  readonly op: string;
  /** Control-line arguments after the operation (INFO, CONNECT, -ERR: the rest of the line as one). */
  readonly args: readonly string[];
  /** MSG/HMSG/PUB/HPUB: the counted bytes (headers first for HMSG/HPUB). */
  readonly payload?: Buffer;
  /** HMSG/HPUB: how many of the payload bytes are the header block. */
  readonly headerBytes?: number;
  /** The frame exactly as it was on the wire: control line, payload, CRLFs. */
  readonly raw: Buffer;
}

export class NatsProtocolError extends Error {}

/** A control line parsed whose payload has not fully arrived yet. */
interface Awaiting {
  readonly op: string;
  readonly args: readonly string[];
  /** Offset of the payload in the buffer. */
  readonly payloadAt: number;
  readonly size: number;
  readonly headerBytes: number | undefined;
}

function byteCount(text: string | undefined, line: string): number {
  if (text === undefined || !/^\d{1,10}$/.test(text)) {
    throw new NatsProtocolError(
      `bad byte count ${JSON.stringify(text)} in ${JSON.stringify(line)}`,
    );
  }
  return Number(text);
}

/** Incremental frame splitter; one per direction of one connection. */
export class NatsFrameSplitter {
  #buf: Buffer = Buffer.alloc(0);
  /** Where the search for the next CRLF resumes (bytes before it hold none). */
  #scanFrom = 0;
  #awaiting: Awaiting | undefined;

  /** Bytes received that do not form a whole frame yet. */
  get pendingBytes(): number {
    return this.#buf.length;
  }

  /** Appends `chunk` and returns every frame it completes, in order. */
  push(chunk: Buffer): NatsFrame[] {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    const frames: NatsFrame[] = [];
    for (;;) {
      const frame = this.#next();
      if (frame === undefined) return frames;
      frames.push(frame);
    }
  }

  #next(): NatsFrame | undefined {
    if (this.#awaiting === undefined) {
      const end = this.#buf.indexOf(CRLF, this.#scanFrom);
      if (end < 0) {
        if (this.#buf.length > MAX_CONTROL_LINE_BYTES) {
          throw new NatsProtocolError(`control line longer than ${MAX_CONTROL_LINE_BYTES} bytes`);
        }
        // A CR at the very end may be half of the CRLF.
        this.#scanFrom = Math.max(0, this.#buf.length - 1);
        return undefined;
      }
      this.#scanFrom = 0;
      const line = this.#buf.toString("latin1", 0, end);
      const trimmed = line.replace(/^[ \t]+/, "");
      const opEnd = trimmed.search(/[ \t]|$/);
      const op = trimmed.slice(0, opEnd).toUpperCase();
      const rest = trimmed.slice(opEnd).trim();
      if (REST_OF_LINE.has(op) || BARE.has(op)) {
        const args = REST_OF_LINE.has(op) ? [rest] : rest === "" ? [] : rest.split(/[ \t]+/);
        return this.#take(end + 2, { op, args });
      }
      if (!WITH_PAYLOAD.has(op)) {
        throw new NatsProtocolError(`unknown operation in ${JSON.stringify(line.slice(0, 80))}`);
      }
      const args = rest === "" ? [] : rest.split(/[ \t]+/);
      const size = byteCount(args.at(-1), line);
      const withHeaders = op === "HMSG" || op === "HPUB";
      const headerBytes = withHeaders ? byteCount(args.at(-2), line) : undefined;
      if (headerBytes !== undefined && headerBytes > size) {
        throw new NatsProtocolError(`header bytes exceed total bytes in ${JSON.stringify(line)}`);
      }
      this.#awaiting = { op, args, payloadAt: end + 2, size, headerBytes };
    }
    const { op, args, payloadAt, size, headerBytes } = this.#awaiting;
    const frameEnd = payloadAt + size + 2;
    if (this.#buf.length < frameEnd) return undefined;
    if (this.#buf[frameEnd - 2] !== 0x0d || this.#buf[frameEnd - 1] !== 0x0a) {
      throw new NatsProtocolError(`${op}: no CRLF after its ${size} payload bytes`);
    }
    this.#awaiting = undefined;
    const payload = this.#buf.subarray(payloadAt, payloadAt + size);
    return this.#take(frameEnd, { op, args, payload, headerBytes });
  }

  /** Cuts the first `length` bytes off the buffer as the frame's raw bytes. */
  #take(length: number, frame: Omit<NatsFrame, "raw">): NatsFrame {
    const raw = this.#buf.subarray(0, length);
    this.#buf = this.#buf.subarray(length);
    return { ...frame, raw };
  }
}
