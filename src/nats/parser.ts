import type { NatsViolation } from "./errors.js";

/**
 * An incremental parser of what a NATS client sends a server, on bytes (no socket).
 *
 * Rules, as nats-server's server/parser.go and client.go apply them:
 * - A control line ends in LF; a CR right before it is dropped (nats-server accepts a bare
 *   LF too). The operation is its first token, case-insensitive; arguments are separated by
 *   runs of spaces or tabs. An empty line or an unknown operation is `unknownOperation`.
 * - `CONNECT <json>`: the rest of the line, untouched (the handler parses the JSON).
 * - `PUB <subject> [reply] <#bytes>`, `HPUB <subject> [reply] <#header bytes> <#total bytes>`:
 *   counts are 1 to 9 decimal digits (nats-server `parseSize`); a total over `maxPayloadBytes`
 *   is refused from the control line, before any payload byte is buffered. Exactly that many
 *   bytes follow, never scanned, then CRLF (else `payloadNotTerminated`). An HPUB header
 *   block must start with `NATS/1.0`.
 * - `SUB <subject> [queue group] <sid>`; `UNSUB <sid> [max_msgs]` (a max that is not a count
 *   means "now", as nats-server reads it).
 * - `PING`, `PONG`: anything after the operation on that line is ignored (nats-server skips
 *   to the LF). `INFO`, `+OK`, `-ERR` from a client are read and dropped, as nats-server does.
 * - A control line longer than `maxControlLineBytes` (without its line end) is refused, as
 *   soon as that many bytes have arrived without a line end.
 * After a refusal nothing more is delivered.
 */
export type ClientOp =
  | { readonly op: "connect"; readonly json: string }
  | {
      readonly op: "pub";
      readonly subject: string;
      readonly reply: string | undefined;
      readonly payload: Buffer;
    }
  | {
      readonly op: "hpub";
      readonly subject: string;
      readonly reply: string | undefined;
      /** The header block, `NATS/1.0` line to the blank line included. */
      readonly header: Buffer;
      readonly payload: Buffer;
    }
  | {
      readonly op: "sub";
      readonly subject: string;
      readonly queue: string | undefined;
      readonly sid: string;
    }
  | { readonly op: "unsub"; readonly sid: string; readonly max: number | undefined }
  | { readonly op: "ping" }
  | { readonly op: "pong" };

export interface ParserLimits {
  /** nats-server `max_control_line`. */
  readonly maxControlLineBytes: number;
  /** nats-server `max_payload` (HPUB: header and payload together). */
  readonly maxPayloadBytes: number;
}

/** nats-server's defaults: MAX_CONTROL_LINE_SIZE 4096 and MAX_PAYLOAD_SIZE 1 MiB. */
export const DEFAULT_PARSER_LIMITS: ParserLimits = {
  maxControlLineBytes: 4096,
  maxPayloadBytes: 1024 * 1024,
};

/** nats-server `parseSize`: at most 9 digits (999M), so a count never overruns. */
const MAX_COUNT_DIGITS = 9;
const LF = 0x0a;
const CR = 0x0d;
const CRLF_BYTES = 2;
/** Every header block starts with this status line ("NATS/1.0" then CRLF or a status). */
export const HEADER_PREFIX = "NATS/1.0";

/** A counted operation whose control line was read; its payload is still arriving. */
interface PendingPayload {
  readonly subject: string;
  readonly reply: string | undefined;
  /** -1 for PUB, else HPUB's header byte count. */
  readonly headerBytes: number;
  readonly totalBytes: number;
}

/** nats-server `parseSize`: 1-9 decimal digits, else -1. */
export function parseCount(text: string): number {
  if (text.length === 0 || text.length > MAX_COUNT_DIGITS) return -1;
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const d = text.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

/** Splits on runs of spaces and tabs, as nats-server's processPub and splitArg do. */
function splitArgs(text: string): string[] {
  const out: string[] = [];
  let start = -1;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x20 || c === 0x09) {
      if (start >= 0) out.push(text.slice(start, i));
      start = -1;
    } else if (start < 0) {
      start = i;
    }
  }
  if (start >= 0) out.push(text.slice(start));
  return out;
}

type LineResult =
  | { readonly kind: "op"; readonly op: ClientOp }
  | { readonly kind: "payload"; readonly pending: PendingPayload }
  | { readonly kind: "none" }
  | { readonly kind: "error"; readonly violation: NatsViolation; readonly detail: string };

const error = (violation: NatsViolation, detail: string): LineResult => ({
  kind: "error",
  violation,
  detail,
});

/** One control line (without its line end) to what it asks for. Pure. */
export function parseControlLine(line: string, maxPayloadBytes: number): LineResult {
  let opEnd = 0;
  while (opEnd < line.length && line[opEnd] !== " " && line[opEnd] !== "\t") opEnd++;
  const name = line.slice(0, opEnd).toUpperCase();
  const rest = line.slice(opEnd);
  switch (name) {
    case "PING":
      return { kind: "op", op: { op: "ping" } };
    case "PONG":
      return { kind: "op", op: { op: "pong" } };
    case "INFO":
    case "+OK":
    case "-ERR":
      return { kind: "none" };
    case "CONNECT": {
      const json = rest.replace(/^[ \t]+/, "");
      if (json.length === 0) return error("badArguments", "CONNECT without arguments");
      return { kind: "op", op: { op: "connect", json } };
    }
    case "PUB":
    case "HPUB": {
      const args = splitArgs(rest);
      const header = name === "HPUB";
      const counts = header ? 2 : 1;
      if (args.length !== counts + 1 && args.length !== counts + 2) {
        return error("badArguments", `${name} with ${args.length} arguments`);
      }
      const subject = args[0]!;
      const reply = args.length === counts + 2 ? args[1] : undefined;
      const totalBytes = parseCount(args[args.length - 1]!);
      const headerBytes = header ? parseCount(args[args.length - 2]!) : -1;
      if (totalBytes < 0 || (header && headerBytes < 0)) {
        return error("badArguments", `${name} byte count not 1-${MAX_COUNT_DIGITS} digits`);
      }
      if (header && headerBytes > totalBytes) {
        return error("headerLargerThanTotal", `${headerBytes} > ${totalBytes}`);
      }
      if (totalBytes > maxPayloadBytes) {
        return error("payloadTooLarge", `${totalBytes} bytes, max_payload ${maxPayloadBytes}`);
      }
      return { kind: "payload", pending: { subject, reply, headerBytes, totalBytes } };
    }
    case "SUB": {
      const args = splitArgs(rest);
      if (args.length !== 2 && args.length !== 3) {
        return error("badArguments", `SUB with ${args.length} arguments`);
      }
      const queue = args.length === 3 ? args[1] : undefined;
      return {
        kind: "op",
        op: { op: "sub", subject: args[0]!, queue, sid: args[args.length - 1]! },
      };
    }
    case "UNSUB": {
      const args = splitArgs(rest);
      if (args.length !== 1 && args.length !== 2) {
        return error("badArguments", `UNSUB with ${args.length} arguments`);
      }
      const max = args.length === 2 ? parseCount(args[1]!) : -1;
      return { kind: "op", op: { op: "unsub", sid: args[0]!, max: max > 0 ? max : undefined } };
    }
    default:
      return error("unknownOperation", JSON.stringify(line.slice(0, 16)));
  }
}

export class ClientParser {
  readonly #limits: ParserLimits;
  readonly #onOp: (op: ClientOp) => void;
  readonly #onError: (violation: NatsViolation, detail: string) => void;
  /** Pieces of the control line or payload that arrived in earlier chunks. */
  #parts: Buffer[] = [];
  #buffered = 0;
  #pending: PendingPayload | undefined;
  #stopped = false;

  constructor(
    onOp: (op: ClientOp) => void,
    onError: (violation: NatsViolation, detail: string) => void,
    limits: ParserLimits = DEFAULT_PARSER_LIMITS,
  ) {
    this.#onOp = onOp;
    this.#onError = onError;
    this.#limits = limits;
  }

  /** No more ops are delivered (the connection is closing). */
  stop(): void {
    this.#stopped = true;
    this.#parts = [];
    this.#buffered = 0;
    this.#pending = undefined;
  }

  /** Bytes held for an incomplete control line or payload. */
  get bufferedBytes(): number {
    return this.#buffered;
  }

  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length && !this.#stopped) {
      at = this.#pending === undefined ? this.#line(chunk, at) : this.#payload(chunk, at);
    }
  }

  /** Reads control-line bytes from `at`; returns where it stopped. */
  #line(chunk: Buffer, at: number): number {
    const lf = chunk.indexOf(LF, at);
    const max = this.#limits.maxControlLineBytes;
    if (lf < 0) {
      this.#keep(chunk.subarray(at));
      // One byte more than the limit may be the CR of a line exactly at the limit.
      if (this.#buffered > max + 1) this.#tooLong();
      return chunk.length;
    }
    let line = this.#take(chunk.subarray(at, lf));
    if (line.length > 0 && line[line.length - 1] === CR) line = line.subarray(0, -1);
    if (line.length > max) {
      this.#tooLong();
      return chunk.length;
    }
    const result = parseControlLine(line.toString("utf8"), this.#limits.maxPayloadBytes);
    switch (result.kind) {
      case "op":
        this.#onOp(result.op);
        break;
      case "payload":
        this.#pending = result.pending;
        break;
      case "error":
        this.#fail(result.violation, result.detail);
        break;
      case "none":
        break;
    }
    return lf + 1;
  }

  /** Reads payload bytes (never scanned) from `at`; returns where it stopped. */
  #payload(chunk: Buffer, at: number): number {
    const pending = this.#pending!;
    const need = pending.totalBytes + CRLF_BYTES - this.#buffered;
    if (chunk.length - at < need) {
      this.#keep(chunk.subarray(at));
      return chunk.length;
    }
    const data = this.#take(chunk.subarray(at, at + need));
    this.#pending = undefined;
    const total = pending.totalBytes;
    if (data[total] !== CR || data[total + 1] !== LF) {
      this.#fail("payloadNotTerminated", `byte after ${total}-byte payload`);
      return chunk.length;
    }
    this.#deliver(pending, data.subarray(0, total));
    return at + need;
  }

  #deliver(pending: PendingPayload, body: Buffer): void {
    const { subject, reply, headerBytes } = pending;
    if (headerBytes < 0) {
      this.#onOp({ op: "pub", subject, reply, payload: body });
      return;
    }
    const header = body.subarray(0, headerBytes);
    if (header.toString("latin1", 0, HEADER_PREFIX.length) !== HEADER_PREFIX) {
      this.#fail("badHeader", "header block does not start with NATS/1.0");
      return;
    }
    this.#onOp({ op: "hpub", subject, reply, header, payload: body.subarray(headerBytes) });
  }

  /** Holds a piece for later, copied so the chunk it came in can be collected. */
  #keep(piece: Buffer): void {
    if (piece.length === 0) return;
    this.#parts.push(Buffer.from(piece));
    this.#buffered += piece.length;
  }

  /** The held pieces followed by `last`, as one buffer; clears what was held. */
  #take(last: Buffer): Buffer {
    if (this.#parts.length === 0) return last;
    this.#parts.push(last);
    const whole = Buffer.concat(this.#parts);
    this.#parts = [];
    this.#buffered = 0;
    return whole;
  }

  #tooLong(): void {
    this.#fail("controlLineTooLong", `max_control_line ${this.#limits.maxControlLineBytes}`);
  }

  #fail(violation: NatsViolation, detail: string): void {
    this.stop();
    this.#onError(violation, detail);
  }
}
