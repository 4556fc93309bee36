/**
 * `csv`: one row of delimited fields per frame, named by `columns`. Rules:
 * - the frame is UTF-8, trimmed, then split on every `separator` (a literal string, not a
 *   pattern); each field is trimmed;
 * - no quoting: sensors print plain numbers and words, so `"` is an ordinary character and
 *   a separator inside a field cannot be escaped (RFC 4180 section 2 quoting is not done);
 * - a row with another number of fields than `columns` → `bad_csv`;
 * - with `header: "skip"`, a row whose fields equal `columns` (after trimming) is the
 *   device's header line: `{ ok: true, kind: "header", values: {} }`, so it is neither an
 *   error nor a reading. With `header: "none"` it is decoded like any row;
 * - a field's value: empty → null; a decimal (`-1.5`, `.5`, `2e3`) → a number; anything
 *   else → the string; a decimal too large for a double → `bad_value`.
 */

import { frameText, textValue } from "./text.js";
import { type DecodeResult, failure, quote, success, type Value } from "./types.js";

export interface CsvOptions {
  readonly columns: readonly string[];
  readonly separator: string;
  readonly header: "skip" | "none";
}

export function decodeCsvRow(frame: Uint8Array, options: CsvOptions): DecodeResult {
  const { columns, separator, header } = options;
  const text = frameText(frame);
  if (text === undefined) return failure("bad_csv", "frame is not valid UTF-8");
  const fields = text.split(separator).map((f) => f.trim());
  if (fields.length !== columns.length) {
    return failure(
      "bad_csv",
      `expected ${columns.length} fields, got ${fields.length} in ${quote(text)}`,
    );
  }
  if (header === "skip" && fields.every((f, i) => f === columns[i])) {
    return success([], "header");
  }
  const entries: [string, Value][] = [];
  for (const [i, field] of fields.entries()) {
    const value = textValue(field);
    const column = columns[i]!;
    if (value === undefined) return failure("bad_value", `${column}: number out of range`);
    entries.push([column, value]);
  }
  return success(entries);
}
