import { ByteQueue } from "./byte-queue.js";
import { FramingSpecError, requireInteger } from "./spec-error.js";
import type { Framer, FrameSink, LineFramingSpec } from "./types.js";

const CR = 0x0d;

/**
 * Line framing. Rules:
 * - A frame is the bytes between two delimiters (or from the start of the stream / a reset
 *   to the first delimiter), without the delimiter. The delimiter may be several bytes.
 * - With `trimCR`, one trailing \r is removed from the line first.
 * - Empty lines (after trimming) are not frames and count nothing.
 * - A line longer than `maxLength` (after trimming) is dropped: `too_long` with the line's
 *   byte count (delimiter excluded), reported when its delimiter arrives; only a delimiter's
 *   worth of it is buffered meanwhile. The next line is framed normally.
 * - Bytes after the last delimiter wait for the next one.
 */
export function createLineFramer(spec: LineFramingSpec, sink: FrameSink): Framer {
  const delimiter = Buffer.from(spec.delimiter, "utf8");
  if (delimiter.length === 0) throw new FramingSpecError("line delimiter must not be empty");
  requireInteger("line maxLength", spec.maxLength, 1);
  // The longest buffered line that may still turn out short enough: maxLength, one CR
  // that trimming removes, and a delimiter's first bytes that are not yet known to be one.
  const longestUndecided = spec.maxLength + (spec.trimCR ? 1 : 0) + delimiter.length - 1;
  const pending = new ByteQueue();
  // Positions of `pending` before this are known not to start a delimiter.
  let scanned = 0;
  // While a line is known to be too long, its bytes are counted, not kept.
  let dropping = false;
  let droppedBytes = 0;

  const endLine = (line: Buffer): void => {
    if (dropping) {
      sink.bad("too_long", droppedBytes + line.length);
      dropping = false;
      droppedBytes = 0;
      return;
    }
    let end = line.length;
    if (spec.trimCR && end > 0 && line[end - 1] === CR) end--;
    if (end > spec.maxLength) sink.bad("too_long", line.length);
    else if (end > 0) sink.frame(Buffer.from(line.subarray(0, end)));
  };

  return {
    push(chunk) {
      pending.append(chunk);
      const buf = pending.bytes();
      let start = 0;
      for (;;) {
        const at = buf.indexOf(delimiter, Math.max(start, scanned));
        if (at < 0) break;
        endLine(buf.subarray(start, at));
        start = at + delimiter.length;
      }
      pending.consume(start);
      const rest = pending.length;
      // Keep the last delimiter.length - 1 bytes: they may be the start of one.
      const keep = Math.min(rest, delimiter.length - 1);
      if (dropping || rest > longestUndecided) {
        dropping = true;
        droppedBytes += rest - keep;
        pending.consume(rest - keep);
      }
      scanned = pending.length - keep;
    },
    tick() {},
    reset() {
      pending.clear();
      scanned = 0;
      dropping = false;
      droppedBytes = 0;
    },
  };
}
