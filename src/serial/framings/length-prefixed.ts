import { ByteQueue } from "./byte-queue.js";
import { FramingSpecError, requireInteger } from "./spec-error.js";
import type { Framer, FrameSink, LengthPrefixedFramingSpec } from "./types.js";

/**
 * Length-prefixed framing. Rules:
 * - A message is an unsigned `lengthBytes`-byte length in `endian` order, then the payload.
 *   The length counts the payload, or prefix + payload when `includesPrefix`.
 * - The frame is the payload only. A zero-length payload is a valid empty message (a
 *   keep-alive): it is consumed and not passed on, as no framing emits empty frames.
 * - A payload length over `maxLength` is not believed: `too_long` for 1 byte, and the
 *   prefix is read again one byte further on (resync).
 * - With `includesPrefix`, a length smaller than the prefix itself: `truncated` for 1 byte,
 *   resync the same way.
 * - An incomplete message waits for more bytes.
 */
export function createLengthPrefixedFramer(
  spec: LengthPrefixedFramingSpec,
  sink: FrameSink,
): Framer {
  const prefixBytes = spec.lengthBytes;
  if (![1, 2, 4].includes(prefixBytes)) {
    throw new FramingSpecError(`length_prefixed lengthBytes must be 1, 2 or 4, got ${prefixBytes}`);
  }
  requireInteger("length_prefixed maxLength", spec.maxLength, 1);
  const pending = new ByteQueue();

  return {
    push(chunk) {
      pending.append(chunk);
      const buf = pending.bytes();
      let pos = 0;
      while (buf.length - pos >= prefixBytes) {
        const value =
          spec.endian === "big"
            ? buf.readUIntBE(pos, prefixBytes)
            : buf.readUIntLE(pos, prefixBytes);
        const payloadBytes = spec.includesPrefix ? value - prefixBytes : value;
        if (payloadBytes < 0 || payloadBytes > spec.maxLength) {
          sink.bad(payloadBytes < 0 ? "truncated" : "too_long", 1);
          pos += 1;
          continue;
        }
        if (buf.length - pos < prefixBytes + payloadBytes) break;
        const start = pos + prefixBytes;
        pos = start + payloadBytes;
        if (payloadBytes > 0) sink.frame(Buffer.from(buf.subarray(start, pos)));
      }
      pending.consume(pos);
    },
    tick() {},
    reset() {
      pending.clear();
    },
  };
}
