/**
 * `key_value`: `name=value` pairs per frame, e.g. `t=21.5 h=40`. Rules:
 * - the frame is UTF-8, trimmed, then split on every `pairSeparator`; empty pieces are
 *   skipped, so `t=1  h=2` (two spaces) is two pairs;
 * - each piece splits at its first `kvSeparator`: `k=a=b` is key `k`, value `a=b`; key and
 *   value are trimmed;
 * - a piece without `kvSeparator`, an empty key, the same key twice, or no pair at all →
 *   `bad_kv`;
 * - a value: empty → null; a decimal → a number; anything else stays a string (`ok`,
 *   `0x1F`); a decimal too large for a double → `bad_value`.
 */

import { frameText, textValue } from "./text.js";
import { type DecodeResult, failure, quote, success, type Value } from "./types.js";

export interface KeyValueOptions {
  readonly pairSeparator: string;
  readonly kvSeparator: string;
}

export function decodeKeyValue(frame: Uint8Array, options: KeyValueOptions): DecodeResult {
  const { pairSeparator, kvSeparator } = options;
  const text = frameText(frame);
  if (text === undefined) return failure("bad_kv", "frame is not valid UTF-8");
  const values = new Map<string, Value>();
  for (const piece of text.split(pairSeparator)) {
    if (piece.trim().length === 0) continue;
    const at = piece.indexOf(kvSeparator);
    if (at < 0) return failure("bad_kv", `no ${quote(kvSeparator)} in ${quote(piece)}`);
    const key = piece.slice(0, at).trim();
    if (key.length === 0) return failure("bad_kv", `empty key in ${quote(piece)}`);
    if (values.has(key)) return failure("bad_kv", `key ${quote(key)} appears twice`);
    const value = textValue(piece.slice(at + kvSeparator.length).trim());
    if (value === undefined) return failure("bad_value", `${key}: number out of range`);
    values.set(key, value);
  }
  if (values.size === 0) return failure("bad_kv", `no pairs in ${quote(text)}`);
  return success(values);
}
