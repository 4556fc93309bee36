import { ByteQueue } from "./byte-queue.js";
import { FramingSpecError, requireInteger } from "./spec-error.js";
import type { Framer, FrameSink, IdleFramingSpec } from "./types.js";

/**
 * Idle-gap framing (Modbus RTU's 3.5 character times, chatty binary sensors). Rules:
 * - Bytes accumulate into one frame while each chunk arrives less than `gapMs` after the
 *   previous one. Time is the `nowMs` given with each chunk; a chunk's bytes arrived together.
 * - The pending frame is closed by `tick(now)` or by a `push` (empty or not) when
 *   now − (time of its last byte) ≥ gapMs; a push closes it before taking its own bytes.
 * - A frame over `maxLength` is `too_long`: its bytes are counted, not kept, until it closes.
 * - A clock that goes backwards counts as no silence.
 */
export function createIdleFramer(spec: IdleFramingSpec, sink: FrameSink): Framer {
  if (!(Number.isFinite(spec.gapMs) && spec.gapMs > 0)) {
    throw new FramingSpecError(`idle gapMs must be a positive number, got ${spec.gapMs}`);
  }
  requireInteger("idle maxLength", spec.maxLength, 1);
  const pending = new ByteQueue();
  let droppedBytes = 0;
  let lastByteMs = 0;

  const closeIfIdle = (nowMs: number): void => {
    if (pending.length === 0 && droppedBytes === 0) return;
    if (nowMs - lastByteMs < spec.gapMs) return;
    if (droppedBytes > 0) sink.bad("too_long", droppedBytes);
    else sink.frame(Buffer.from(pending.bytes()));
    pending.clear();
    droppedBytes = 0;
  };

  return {
    push(chunk, nowMs) {
      closeIfIdle(nowMs);
      if (chunk.length === 0) return;
      lastByteMs = nowMs;
      if (droppedBytes === 0 && pending.length + chunk.length <= spec.maxLength) {
        pending.append(chunk);
        return;
      }
      droppedBytes += pending.length + chunk.length;
      pending.clear();
    },
    tick(nowMs) {
      closeIfIdle(nowMs);
    },
    reset() {
      pending.clear();
      droppedBytes = 0;
    },
  };
}
