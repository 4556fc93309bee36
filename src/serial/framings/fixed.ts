import { requireInteger } from "./spec-error.js";
import type { FixedFramingSpec, Framer, FrameSink } from "./types.js";

/**
 * Fixed-length framing. Rules:
 * - Every `length` consecutive bytes are one frame, counted from the start of the stream or
 *   the last reset. Nothing is ever reported as bad.
 * - There is no way to resynchronise: nothing in the bytes marks a frame start, so one lost
 *   or extra byte shifts every later frame until `reset()`. Use it only for links that do
 *   not lose bytes, behind a decoder that validates frames, or prefer `header` framing.
 */
export function createFixedFramer(spec: FixedFramingSpec, sink: FrameSink): Framer {
  requireInteger("fixed length", spec.length, 1);
  let frame = Buffer.allocUnsafe(spec.length);
  let filled = 0;

  return {
    push(chunk) {
      let pos = 0;
      while (pos < chunk.length) {
        const take = Math.min(spec.length - filled, chunk.length - pos);
        frame.set(chunk.subarray(pos, pos + take), filled);
        filled += take;
        pos += take;
        if (filled === spec.length) {
          const done = frame;
          // A fresh buffer, as the sink may keep the frame it was given.
          frame = Buffer.allocUnsafe(spec.length);
          filled = 0;
          sink.frame(done);
        }
      }
    },
    tick() {},
    reset() {
      filled = 0;
    },
  };
}
