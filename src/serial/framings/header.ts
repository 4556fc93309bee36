import { ByteQueue } from "./byte-queue.js";
import { CHECKSUM_BYTES, checksum } from "./checksum.js";
import { FramingSpecError, requireInteger } from "./spec-error.js";
import type { Framer, FrameSink, HeaderFramingSpec } from "./types.js";

/**
 * A run of garbage is reported when the next header is found, so the reports do not depend
 * on how the bytes were chunked. A port at the wrong baud rate may never show a header:
 * reporting every this many bytes too keeps it visible in the counters (still
 * chunking-independent, as the slices fall at fixed stream positions).
 */
const MAX_UNREPORTED_GARBAGE_BYTES = 1024;

/**
 * Header framing (Plantower PMS5003, many binary sensors). Rules:
 * - A frame starts with the `header` bytes. Bytes before a header are `garbage`, reported
 *   as one count when the header is found (or every 1024 bytes of a longer run).
 * - The length field is `lengthBytes` at `lengthOffset` (in `endian` order); the frame is
 *   lengthOffset + lengthBytes + value + lengthAdjust bytes long, header and checksum
 *   included. The frame emitted is the whole frame; decoders pick their offsets from it.
 * - A declared length over `maxLength` is `too_long`; one shorter than the length field plus
 *   the checksum is `truncated`. Both are decided as soon as the length field is in.
 * - With a `checksum`, it occupies the frame's last 1 or 2 bytes (`endian` for 2) and covers
 *   every byte before it; a mismatch is `bad_checksum`.
 * - After any of these the header is searched again from the byte after the failed
 *   header, so a real frame starting inside a bad one (a frame cut short by lost bytes) is
 *   still found. The count is the bytes up to that next possible header within the part
 *   that was examined (the header and length field, or the whole frame), else all of them.
 * - Every byte pushed ends up in exactly one frame or one report, except those still
 *   pending (a frame in progress, an unreported garbage run).
 */
export function createHeaderFramer(spec: HeaderFramingSpec, sink: FrameSink): Framer {
  const header = Buffer.from(validHeader(spec.header));
  requireInteger("header lengthOffset", spec.lengthOffset, header.length);
  if (spec.lengthBytes !== 1 && spec.lengthBytes !== 2) {
    throw new FramingSpecError(`header lengthBytes must be 1 or 2, got ${spec.lengthBytes}`);
  }
  if (!Number.isInteger(spec.lengthAdjust)) {
    throw new FramingSpecError(`header lengthAdjust must be an integer, got ${spec.lengthAdjust}`);
  }
  const lengthEnd = spec.lengthOffset + spec.lengthBytes;
  const checksumBytes = spec.checksum === null ? 0 : CHECKSUM_BYTES[spec.checksum.type];
  const shortestFrame = lengthEnd + checksumBytes;
  requireInteger("header maxLength", spec.maxLength, Math.max(shortestFrame, 1));

  const pending = new ByteQueue();
  let garbageBytes = 0;

  const addGarbage = (count: number): void => {
    garbageBytes += count;
    while (garbageBytes >= MAX_UNREPORTED_GARBAGE_BYTES) {
      sink.bad("garbage", MAX_UNREPORTED_GARBAGE_BYTES);
      garbageBytes -= MAX_UNREPORTED_GARBAGE_BYTES;
    }
  };

  const reportGarbage = (): void => {
    if (garbageBytes > 0) sink.bad("garbage", garbageBytes);
    garbageBytes = 0;
  };

  /** First position ≥ from where the header is, or where the buffer ends inside it; -1 if none. */
  const findHeader = (buf: Buffer, from: number): number => {
    for (let p = buf.indexOf(header[0]!, from); p >= 0; p = buf.indexOf(header[0]!, p + 1)) {
      if (matchesHeader(buf, p, buf.length)) return p;
    }
    return -1;
  };

  /** Whether the bytes from `at` up to `limit` agree with the header (as far as they go). */
  const matchesHeader = (buf: Buffer, at: number, limit: number): boolean => {
    const end = Math.min(at + header.length, limit);
    return buf.subarray(at, end).equals(header.subarray(0, end - at));
  };

  /**
   * How many bytes to drop after a failed frame at `at` whose first `examined` bytes were
   * read: up to the next position that may start a header, judged only on those bytes so
   * the answer does not depend on how many more bytes happen to be buffered.
   */
  const resyncDistance = (buf: Buffer, at: number, examined: number): number => {
    for (let skip = 1; skip < examined; skip++) {
      if (matchesHeader(buf, at + skip, at + examined)) return skip;
    }
    return examined;
  };

  const checksumMatches = (frame: Buffer): boolean => {
    if (spec.checksum === null) return true;
    const at = frame.length - checksumBytes;
    const expected = checksum(spec.checksum.type, frame.subarray(0, at));
    const stored =
      checksumBytes === 1
        ? frame[at]
        : spec.checksum.endian === "big"
          ? frame.readUInt16BE(at)
          : frame.readUInt16LE(at);
    return stored === expected;
  };

  return {
    push(chunk) {
      pending.append(chunk);
      const buf = pending.bytes();
      let pos = 0;
      const drop = (reason: "too_long" | "truncated" | "bad_checksum", examined: number) => {
        const count = resyncDistance(buf, pos, examined);
        sink.bad(reason, count);
        pos += count;
      };
      for (;;) {
        const at = findHeader(buf, pos);
        if (at < 0) {
          addGarbage(buf.length - pos);
          pos = buf.length;
          break;
        }
        addGarbage(at - pos);
        pos = at;
        if (buf.length - pos < header.length) break;
        reportGarbage();
        if (buf.length - pos < lengthEnd) break;
        const lengthAt = pos + spec.lengthOffset;
        const value =
          spec.lengthBytes === 1
            ? buf[lengthAt]!
            : spec.endian === "big"
              ? buf.readUInt16BE(lengthAt)
              : buf.readUInt16LE(lengthAt);
        const frameBytes = lengthEnd + value + spec.lengthAdjust;
        if (frameBytes > spec.maxLength) {
          drop("too_long", lengthEnd);
          continue;
        }
        if (frameBytes < shortestFrame) {
          drop("truncated", lengthEnd);
          continue;
        }
        if (buf.length - pos < frameBytes) break;
        const frame = buf.subarray(pos, pos + frameBytes);
        if (!checksumMatches(frame)) {
          drop("bad_checksum", frameBytes);
          continue;
        }
        sink.frame(Buffer.from(frame));
        pos += frameBytes;
      }
      pending.consume(pos);
    },
    tick() {},
    reset() {
      pending.clear();
      garbageBytes = 0;
    },
  };
}

function validHeader(header: readonly number[]): readonly number[] {
  if (header.length === 0) throw new FramingSpecError("header must not be empty");
  for (const [i, b] of header.entries()) requireInteger(`header[${i}]`, b, 0, 0xff);
  return header;
}
