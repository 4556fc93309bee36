import { HEADER_PREFIX } from "./parser.js";

/**
 * What a NATS server sends a client, as bytes: pure functions, no socket.
 * `MSG <subject> <sid> [reply] <#bytes>` and `HMSG <subject> <sid> [reply] <#header bytes>
 * <#total bytes>`, each followed by its bytes and CRLF; `INFO <json>`, `PING`, `PONG`, `+OK`,
 * `-ERR '<text>'` (nats-server `sendErr`), each one line ending in CRLF.
 */
const CRLF = "\r\n";

export const PING_FRAME: Buffer = Buffer.from(`PING${CRLF}`);
export const PONG_FRAME: Buffer = Buffer.from(`PONG${CRLF}`);
export const OK_FRAME: Buffer = Buffer.from(`+OK${CRLF}`);

/** `INFO <json>`: the server's description, sent first and on changes. */
export function encodeInfo(info: Readonly<Record<string, unknown>>): Buffer {
  return Buffer.from(`INFO ${JSON.stringify(info)}${CRLF}`);
}

/** `-ERR '<text>'`, worded as nats-server words it (see errors.ts). */
export function encodeErr(text: string): Buffer {
  return Buffer.from(`-ERR '${text}'${CRLF}`);
}

/** `MSG`: a message for one subscription, its payload as given (never copied twice). */
export function encodeMsg(
  subject: string,
  sid: string,
  reply: string | undefined,
  payload: Buffer,
): Buffer {
  const replyArg = reply === undefined ? "" : ` ${reply}`;
  const line = `MSG ${subject} ${sid}${replyArg} ${payload.length}${CRLF}`;
  return frame(line, [payload]);
}

/** `HMSG`: a message with a header block (see encodeHeaders) before its payload. */
export function encodeHmsg(
  subject: string,
  sid: string,
  reply: string | undefined,
  header: Buffer,
  payload: Buffer,
): Buffer {
  const replyArg = reply === undefined ? "" : ` ${reply}`;
  const total = header.length + payload.length;
  const line = `HMSG ${subject} ${sid}${replyArg} ${header.length} ${total}${CRLF}`;
  return frame(line, [header, payload]);
}

function frame(line: string, bodies: readonly Buffer[]): Buffer {
  const head = Buffer.from(line);
  let size = head.length + CRLF.length;
  for (const body of bodies) size += body.length;
  const out = Buffer.allocUnsafe(size);
  let at = head.copy(out, 0);
  for (const body of bodies) at += body.copy(out, at);
  out.write(CRLF, at, "latin1");
  return out;
}

/**
 * A header block: the `NATS/1.0` status line with an optional status code and description
 * (`NATS/1.0 503` is no responders), then `Key: Value` lines, then a blank line. Keys keep
 * their case and order; a key may repeat.
 */
export interface NatsHeaders {
  readonly status?: number | undefined;
  readonly description?: string | undefined;
  readonly entries: readonly (readonly [key: string, value: string])[];
}

/** Status codes are three digits (HTTP's range), as nats.js and nats-server write them. */
const MIN_STATUS = 100;
const MAX_STATUS = 999;

/** Encodes a header block. A CR or LF inside a key or value would end it early: refused. */
export function encodeHeaders(headers: NatsHeaders): Buffer {
  let text = HEADER_PREFIX;
  if (headers.status !== undefined) {
    text += ` ${headers.status}`;
    if (headers.description) text += ` ${headers.description}`;
  }
  text += CRLF;
  for (const [key, value] of headers.entries) {
    if (/[\r\n:]/.test(key) || /[\r\n]/.test(value) || key.length === 0) {
      throw new RangeError(`header ${JSON.stringify(key)} cannot be written in a header block`);
    }
    text += `${key}: ${value}${CRLF}`;
  }
  return Buffer.from(text + CRLF);
}

/**
 * Decodes a header block; undefined when it does not start with `NATS/1.0` or its status is
 * not a 3-digit code. Lines without a colon are skipped and values trimmed, as nats.js does.
 */
export function decodeHeaders(block: Buffer): NatsHeaders | undefined {
  const lines = block.toString("utf8").split(CRLF);
  const first = lines[0]!;
  if (!first.startsWith(HEADER_PREFIX)) return undefined;
  const statusText = first.slice(HEADER_PREFIX.length).trim();
  let status: number | undefined;
  let description: string | undefined;
  if (statusText.length > 0) {
    const space = statusText.search(/[ \t]/);
    const code = space < 0 ? statusText : statusText.slice(0, space);
    status = /^\d{3}$/.test(code) ? Number(code) : Number.NaN;
    if (!(status >= MIN_STATUS && status <= MAX_STATUS)) return undefined;
    if (space >= 0) description = statusText.slice(space + 1).trim() || undefined;
  }
  const entries: (readonly [string, string])[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    entries.push([line.slice(0, colon), line.slice(colon + 1).trim()]);
  }
  return { status, description, entries };
}
