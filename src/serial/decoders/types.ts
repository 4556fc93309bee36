/** A decoded value. Booleans come only from json_lines; struct gives numbers or null. */
export type Value = number | string | boolean | null;

/** Why a frame could not be decoded; the label of the serial decode-failure counter. */
export type DecodeFailure =
  | "bad_json"
  | "bad_csv"
  | "bad_kv"
  | "bad_nmea"
  | "bad_checksum"
  | "unsupported_sentence"
  | "too_short"
  | "bad_value";

/**
 * The outcome of decoding one frame. `kind` tells frames of one device apart (the NMEA
 * sentence type, `"header"` for a skipped CSV header row). A decoder never throws: every
 * failure is an `ok: false` result that names the reason and quotes what was wrong.
 */
export type DecodeResult =
  | { readonly ok: true; readonly values: Readonly<Record<string, Value>>; readonly kind?: string }
  | { readonly ok: false; readonly reason: DecodeFailure; readonly detail: string };

/** A decoder made by `createDecoder`: pure, one frame in, one result out. */
export type Decoder = (frame: Uint8Array) => DecodeResult;

/** One value of a binary frame, `offset` bytes from the frame's start. */
export interface StructField {
  readonly name: string;
  readonly offset: number;
  readonly type: "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "f32" | "f64";
  readonly endian: "big" | "little";
}

/** How a device's frames are decoded; see each decoder's module for its full rule set. */
export type DecoderSpec =
  | { readonly type: "json_lines" }
  | {
      readonly type: "csv";
      readonly columns: readonly string[];
      readonly separator: string;
      readonly header: "skip" | "none";
    }
  | { readonly type: "key_value"; readonly pairSeparator: string; readonly kvSeparator: string }
  | { readonly type: "nmea"; readonly sentences: readonly string[] }
  | { readonly type: "struct"; readonly fields: readonly StructField[] };

/** Longest piece of a bad frame quoted in a `detail`, so a noisy line cannot flood the log. */
const MAX_QUOTED_LENGTH = 60;

/** A failed result; `detail` is one short sentence for logs. */
export function failure(reason: DecodeFailure, detail: string): DecodeResult {
  return { ok: false, reason, detail };
}

/** A successful result; `values` is built with `Object.fromEntries`, so a key `__proto__` stays a key. */
export function success(entries: Iterable<readonly [string, Value]>, kind?: string): DecodeResult {
  const values = Object.fromEntries(entries) as Record<string, Value>;
  return kind === undefined ? { ok: true, values } : { ok: true, values, kind };
}

/** `text` as a JSON string literal, cut to a length fit for a log line. */
export function quote(text: string): string {
  return text.length <= MAX_QUOTED_LENGTH
    ? JSON.stringify(text)
    : `${JSON.stringify(text.slice(0, MAX_QUOTED_LENGTH))}…`;
}
