import { ByteQueue } from "./byte-queue.js";
import { requireInteger } from "./spec-error.js";
import type { BadFrameReason, Framer, FrameSink, SlipFramingSpec } from "./types.js";

/** RFC 1055 special characters. */
const END = 0xc0;
const ESC = 0xdb;
const ESC_END = 0xdc;
const ESC_ESC = 0xdd;

/**
 * SLIP framing (RFC 1055). Rules:
 * - END (0xC0) ends a frame. ESC (0xDB) then ESC_END (0xDC) stands for 0xC0, ESC then
 *   ESC_ESC (0xDD) for 0xDB; the frame is the decoded bytes between two ENDs.
 * - Bytes before the first END after start or `reset()` are `garbage`, counted when that END
 *   arrives: a port opened mid-frame sees the tail of a frame, which cannot be told from a
 *   whole one. (RFC 1055 has senders open each packet with an END for this reason.)
 * - Empty frames (END END) are ignored and count nothing.
 * - ESC followed by anything else, END included, is `bad_escape`; a decoded frame over
 *   `maxLength` is `too_long`. Either drops the whole frame, counted in raw bytes (the ENDs
 *   excluded) when its END arrives; the first failure is the reason.
 */
export function createSlipFramer(spec: SlipFramingSpec, sink: FrameSink): Framer {
  requireInteger("slip maxLength", spec.maxLength, 1);
  const decoded = new ByteQueue();
  let synced = false;
  let rawBytes = 0;
  let escaping = false;
  let failure: BadFrameReason | null = null;

  const endFrame = (): void => {
    if (!synced) {
      synced = true;
      if (rawBytes > 0) sink.bad("garbage", rawBytes);
    } else {
      if (escaping && failure === null) failure = "bad_escape";
      if (failure !== null) sink.bad(failure, rawBytes);
      else if (decoded.length > 0) sink.frame(Buffer.from(decoded.bytes()));
    }
    decoded.clear();
    rawBytes = 0;
    escaping = false;
    failure = null;
  };

  const take = (byte: number): void => {
    if (decoded.length === spec.maxLength) failure = "too_long";
    else decoded.appendByte(byte);
  };

  return {
    push(chunk) {
      for (const byte of chunk) {
        if (byte === END) {
          endFrame();
          continue;
        }
        rawBytes++;
        if (!synced || failure !== null) continue;
        if (escaping) {
          escaping = false;
          if (byte === ESC_END) take(END);
          else if (byte === ESC_ESC) take(ESC);
          else failure = "bad_escape";
        } else if (byte === ESC) {
          escaping = true;
        } else {
          take(byte);
        }
      }
    },
    tick() {},
    reset() {
      decoded.clear();
      synced = false;
      rawBytes = 0;
      escaping = false;
      failure = null;
    },
  };
}
