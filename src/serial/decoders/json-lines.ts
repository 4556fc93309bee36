/**
 * `json_lines`: one JSON object (RFC 8259) per frame. Rules:
 * - the frame is UTF-8, trimmed; anything but a JSON object (invalid JSON, an array, a bare
 *   number or string) → `bad_json`;
 * - nested objects are flattened, keys joined with `.`: `{"env":{"t":21.5}}` → `env.t: 21.5`;
 *   an empty nested object contributes nothing;
 * - an array anywhere → `bad_value`: its items have no names a profile field could pick, and
 *   index keys (`a.0`) would change meaning whenever the device reorders them;
 * - a number JSON can write but a double cannot hold (`1e999`) → `bad_value`;
 * - two keys that flatten to the same name (`{"a.b":1,"a":{"b":2}}`) → `bad_value`;
 * - nesting deeper than {@link MAX_DEPTH} → `bad_value`;
 * - strings, booleans and null pass through; a duplicate key inside one object keeps the
 *   last value (`JSON.parse`, as RFC 8259 section 4 allows).
 */

import { errorMessage } from "../../core/index.js";
import { frameText } from "./text.js";
import { type DecodeResult, failure, quote, success, type Value } from "./types.js";

/** Sensor documents are a few levels deep; this bounds the work a hostile frame can cause. */
const MAX_DEPTH = 16;

export function decodeJsonLine(frame: Uint8Array): DecodeResult {
  const text = frameText(frame);
  if (text === undefined) return failure("bad_json", "frame is not valid UTF-8");
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    return failure("bad_json", `${errorMessage(err)} in ${quote(text)}`);
  }
  if (!isObject(doc)) return failure("bad_json", `not a JSON object: ${quote(text)}`);

  const out = new Map<string, Value>();
  // Depth-first with an explicit stack; entries stay in document order within an object.
  const stack: {
    readonly prefix: string;
    readonly obj: Record<string, unknown>;
    readonly depth: number;
  }[] = [{ prefix: "", obj: doc, depth: 1 }];
  while (stack.length > 0) {
    const { prefix, obj, depth } = stack.pop()!;
    const nested: (typeof stack)[number][] = [];
    for (const [key, v] of Object.entries(obj)) {
      const name = prefix + key;
      if (isObject(v)) {
        if (depth >= MAX_DEPTH)
          return failure("bad_value", `${name}: nested deeper than ${MAX_DEPTH}`);
        nested.push({ prefix: `${name}.`, obj: v, depth: depth + 1 });
        continue;
      }
      if (Array.isArray(v)) return failure("bad_value", `${name}: arrays are not decoded`);
      if (typeof v === "number" && !Number.isFinite(v)) {
        return failure("bad_value", `${name}: number out of range`);
      }
      if (out.has(name)) return failure("bad_value", `${name}: two keys flatten to this name`);
      out.set(name, v as Value);
    }
    for (let i = nested.length - 1; i >= 0; i--) stack.push(nested[i]!);
  }
  return success(out);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
