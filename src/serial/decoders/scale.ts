/**
 * `applyScale`: a decoded value → a profile field's value. Rules, in order:
 * 1. null stays null (the device sent no reading; no cast invents one).
 * 2. Scaling, only when it changes something (`scale` ≠ 1 or `offset` ≠ 0): the value must
 *    be a number, or a string that is a decimal (`"215"`) → `value × scale + offset`. When
 *    `1 / scale` is a whole number (0.1, 0.01, 0.5…) the value is divided by it instead, so
 *    215 × 0.1 gives 21.5 and 3 × 0.1 gives 0.3, not 0.30000000000000004. Anything else,
 *    or a result that is not finite → `bad_value`.
 * 3. The cast:
 *    - `"float"`: a number stays; a decimal string → its number; true/false → 1/0;
 *    - `"int"`: as float, then rounded to the nearest integer, halves away from zero (a
 *      scaled 56.99999999999999 must be 57, not 56);
 *    - `"bool"`: a number → `≠ 0`; a boolean stays; the strings true/false, on/off, yes/no,
 *      1/0 (any case) → their boolean;
 *    - `"string"`: a number → its shortest round-trip form (`String`); a boolean → `"true"`
 *      or `"false"`; a string stays;
 *    - no `type`: the value stays as it is.
 *    A value the cast cannot read (`"abc"` as float, `"maybe"` as bool) → `bad_value`.
 */

import { decimal } from "./text.js";
import type { Value } from "./types.js";

export interface ScaleOptions {
  readonly scale?: number;
  readonly offset?: number;
  readonly type?: "int" | "float" | "bool" | "string";
}

export type ScaleResult =
  | { readonly ok: true; readonly value: Value }
  | { readonly ok: false; readonly reason: "bad_value"; readonly detail: string };

const TRUE_WORDS: ReadonlySet<string> = new Set(["true", "on", "yes", "1"]);
const FALSE_WORDS: ReadonlySet<string> = new Set(["false", "off", "no", "0"]);

export function applyScale(value: Value, options: ScaleOptions): ScaleResult {
  if (value === null) return { ok: true, value: null };
  const { scale = 1, offset = 0, type } = options;
  let v: Value = value;
  if (scale !== 1 || offset !== 0) {
    const n = typeof v === "number" ? v : typeof v === "string" ? decimal(v.trim()) : undefined;
    if (n === undefined) return bad(value, "a number to scale");
    const divisor = 1 / scale;
    const scaled = (Number.isInteger(divisor) ? n / divisor : n * scale) + offset;
    if (!Number.isFinite(scaled))
      return bad(value, `a number whose × ${scale} + ${offset} is finite`);
    v = scaled;
  }
  switch (type) {
    case undefined:
      return { ok: true, value: v };
    case "float": {
      const n = toNumber(v);
      return n === undefined ? bad(value, "a number") : { ok: true, value: n };
    }
    case "int": {
      const n = toNumber(v);
      return n === undefined ? bad(value, "a number") : { ok: true, value: roundHalfAway(n) };
    }
    case "bool": {
      const b = toBoolean(v);
      return b === undefined ? bad(value, "a boolean") : { ok: true, value: b };
    }
    case "string":
      return { ok: true, value: String(v) };
  }
}

function toNumber(v: number | string | boolean): number | undefined {
  if (typeof v === "number") return v;
  if (typeof v === "boolean") return v ? 1 : 0;
  return decimal(v.trim());
}

function toBoolean(v: number | string | boolean): boolean | undefined {
  if (typeof v === "boolean") return v;
  if (typeof v === "number") return v !== 0;
  const word = v.trim().toLowerCase();
  if (TRUE_WORDS.has(word)) return true;
  if (FALSE_WORDS.has(word)) return false;
  return undefined;
}

/** `Math.round` sends -2.5 to -2; a reading's magnitude should not depend on its sign. */
function roundHalfAway(n: number): number {
  const r = Math.sign(n) * Math.round(Math.abs(n));
  return r === 0 ? 0 : r;
}

function bad(value: Value, expected: string): ScaleResult {
  return { ok: false, reason: "bad_value", detail: `${JSON.stringify(value)} is not ${expected}` };
}
