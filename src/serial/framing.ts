/**
 * Serial framing: a byte stream from a port → frames, resynchronising after garbage without
 * losing the next good frame. Framers are pure state machines: no timers, no I/O; time
 * comes in as an argument. Each framing's full rule set is in its module's doc comment
 * (`framings/*.ts`). Shared rules:
 * - Frames and bad-byte reports are the same however the stream is cut into chunks
 *   (idle framing: however each burst is cut); each decision waits for the bytes it needs.
 * - The sink never gets an empty frame; each frame is a fresh copy it may keep.
 * - `reset()` forgets partial state and counts nothing; `tick()` matters only to `idle`.
 * - An unusable spec throws {@link FramingSpecError} from `createFramer`, never later.
 */
import { createFixedFramer } from "./framings/fixed.js";
import { createHeaderFramer } from "./framings/header.js";
import { createIdleFramer } from "./framings/idle.js";
import { createLengthPrefixedFramer } from "./framings/length-prefixed.js";
import { createLineFramer } from "./framings/line.js";
import { createSlipFramer } from "./framings/slip.js";
import { FramingSpecError } from "./framings/spec-error.js";
import type { Framer, FrameSink, FramingSpec } from "./framings/types.js";

export { CHECKSUM_BYTES, checksum } from "./framings/checksum.js";
export type {
  BadFrameReason,
  ChecksumSpec,
  ChecksumType,
  FixedFramingSpec,
  Framer,
  FrameSink,
  FramingSpec,
  HeaderFramingSpec,
  IdleFramingSpec,
  LengthPrefixedFramingSpec,
  LineFramingSpec,
  SlipFramingSpec,
} from "./framings/types.js";
export { FramingSpecError };

/** What a line framing spec defaults to where a profile leaves a field out. */
export const LINE_FRAMING_DEFAULTS = {
  delimiter: "\n",
  /** Longer than any sensor line we know of, short enough to bound memory per port. */
  maxLength: 4096,
  trimCR: true,
} as const;

/** A framer for `spec` that reports to `sink`. Throws FramingSpecError for an unusable spec. */
export function createFramer(spec: FramingSpec, sink: FrameSink): Framer {
  switch (spec.type) {
    case "line":
      return createLineFramer(spec, sink);
    case "fixed":
      return createFixedFramer(spec, sink);
    case "length_prefixed":
      return createLengthPrefixedFramer(spec, sink);
    case "header":
      return createHeaderFramer(spec, sink);
    case "slip":
      return createSlipFramer(spec, sink);
    case "idle":
      return createIdleFramer(spec, sink);
    default: {
      const unknown: never = spec;
      throw new FramingSpecError(`unknown framing type ${JSON.stringify(unknown)}`);
    }
  }
}
