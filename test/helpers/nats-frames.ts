// Splits a NATS client-protocol byte stream (either direction) into whole frames, so a test
// proxy can decide frame by frame what to pass. Incremental: a frame may arrive split at any
// byte, and payloads may contain CRLF.
//
// Rules (https://docs.nats.io/reference/reference-protocols/nats-protocol): every frame starts
// with a control line ending in CRLF. PUB, HPUB, MSG and HMSG are followed by a payload whose
// size is the control line's last argument, then CRLF:
//   PUB <subject> [reply] <bytes>            HPUB <subject> [reply] <header bytes> <total bytes>
//   MSG <subject> <sid> [reply] <bytes>      HMSG <subject> <sid> [reply] <header bytes> <total bytes>
// Every other verb (INFO, CONNECT, SUB, UNSUB, PING, PONG, +OK, -ERR) is the control line alone.

export interface NatsFrame {
  /** Upper-case verb: PUB, HPUB, MSG, HMSG, INFO, PING… */
  readonly verb: string;
  /** Subject of PUB/HPUB/MSG/HMSG; undefined for other verbs. */
  readonly subject: string | undefined;
  /** Reply subject of PUB/HPUB/MSG/HMSG, when there is one. */
  readonly reply: string | undefined;
  /** The whole frame as it was on the wire, control line and payload included. */
  readonly bytes: Buffer;
}

const CRLF = Buffer.from("\r\n");
/** Frames that carry a payload, and the number of size arguments after the subject/sid/reply. */
const PAYLOAD_SIZE_ARGS: Readonly<Record<string, number>> = { PUB: 1, MSG: 1, HPUB: 2, HMSG: 2 };
/** A control line longer than this is not NATS; the stream is broken. */
const MAX_CONTROL_LINE_BYTES = 64 * 1024;

export class NatsFrameSplitter {
  #buffered: Buffer = Buffer.alloc(0);

  /** Appends `chunk` and returns every frame it completed, in order. */
  push(chunk: Buffer): NatsFrame[] {
    this.#buffered = this.#buffered.length === 0 ? chunk : Buffer.concat([this.#buffered, chunk]);
    const frames: NatsFrame[] = [];
    let offset = 0;
    for (;;) {
      const frame = this.#next(offset);
      if (frame === undefined) break;
      frames.push(frame);
      offset += frame.bytes.length;
    }
    this.#buffered = this.#buffered.subarray(offset);
    return frames;
  }

  /** Bytes of an incomplete frame held back. */
  get pendingBytes(): number {
    return this.#buffered.length;
  }

  #next(offset: number): NatsFrame | undefined {
    const buf = this.#buffered;
    const eol = buf.indexOf(CRLF, offset);
    if (eol < 0) {
      if (buf.length - offset > MAX_CONTROL_LINE_BYTES) {
        throw new Error(`nats-frames: no CRLF within ${MAX_CONTROL_LINE_BYTES} bytes`);
      }
      return undefined;
    }
    const line = buf.toString("latin1", offset, eol);
    const args = line.split(/[ \t]+/).filter((a) => a !== "");
    const verb = (args[0] ?? "").toUpperCase();
    const sizeArgs = PAYLOAD_SIZE_ARGS[verb];
    let end = eol + CRLF.length;
    let subject: string | undefined;
    let reply: string | undefined;
    if (sizeArgs !== undefined) {
      const total = Number(args.at(-1));
      if (!Number.isInteger(total) || total < 0) {
        throw new Error(`nats-frames: bad payload size in ${JSON.stringify(line)}`);
      }
      // Before the sizes: subject [sid] [reply]; MSG/HMSG carry a sid after the subject.
      const names = args.slice(1, args.length - sizeArgs);
      subject = names[0];
      const replyIndex = verb === "MSG" || verb === "HMSG" ? 2 : 1;
      reply = names[replyIndex];
      end += total + CRLF.length;
      if (buf.length < end) return undefined;
    }
    return { verb, subject, reply, bytes: buf.subarray(offset, end) };
  }
}
