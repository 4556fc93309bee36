/**
 * What the text decoders share: bytes → trimmed UTF-8 text, and the one rule for which
 * field text is a number.
 */

/** `fatal` so a frame of noise (wrong baud rate) is reported rather than decoded as U+FFFD. */
const UTF8 = new TextDecoder("utf-8", { fatal: true });

/**
 * A decimal number as sensors print it: optional sign, digits with an optional fraction (or
 * a fraction alone, `.5`), optional exponent. Not hex, `Infinity`, `NaN`, `1_000`, or
 * digits with spaces inside; those stay strings.
 */
const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** The frame as trimmed text, or `undefined` when it is not valid UTF-8. */
export function frameText(frame: Uint8Array): string | undefined {
  try {
    // `trim` also drops a leading byte order mark (U+FEFF counts as white space).
    return UTF8.decode(frame).trim();
  } catch {
    return undefined;
  }
}

/**
 * A field's value by the shared text rules: empty → null; {@link DECIMAL} → a number;
 * anything else → the string unchanged. A decimal too large for a double (`1e999`) gives
 * `undefined`: it is no number we can carry, and passing it on as a string would hide that.
 */
export function textValue(text: string): number | string | null | undefined {
  if (text.length === 0) return null;
  if (!DECIMAL.test(text)) return text;
  const n = Number(text);
  return Number.isFinite(n) ? n : undefined;
}

/** `text` as a number if it is a finite {@link DECIMAL}, else `undefined`. */
export function decimal(text: string): number | undefined {
  if (!DECIMAL.test(text)) return undefined;
  const n = Number(text);
  return Number.isFinite(n) ? n : undefined;
}
