/**
 * Frame decoders for serial sensors: one delimited frame (bytes) in, named values or a
 * reason out. Each format's full rule set is in its module's doc comment:
 * `json_lines` (decoders/json-lines.ts), `csv` (decoders/csv.ts), `key_value`
 * (decoders/key-value.ts), `nmea` (decoders/nmea.ts, NMEA 0183 GGA and RMC), `struct`
 * (decoders/struct.ts). `applyScale` (decoders/scale.ts) turns a decoded value into a
 * profile field's value.
 *
 * `createDecoder` checks the spec once and throws `DecoderSpecError` for one that cannot
 * work, so a bad profile fails at start-up. The decoder it returns is pure and never
 * throws: a frame that cannot be decoded is an `ok: false` result, costing that frame only.
 */

import { decodeCsvRow } from "./decoders/csv.js";
import { DecoderSpecError } from "./decoders/errors.js";
import { decodeJsonLine } from "./decoders/json-lines.js";
import { decodeKeyValue } from "./decoders/key-value.js";
import { decodeNmea, NMEA_SENTENCES, type NmeaSentence } from "./decoders/nmea.js";
import { decodeStruct, STRUCT_SIZES } from "./decoders/struct.js";
import type { Decoder, DecoderSpec, StructField } from "./decoders/types.js";

export { DecoderSpecError } from "./decoders/errors.js";
export { NMEA_SENTENCES, type NmeaSentence, nmeaChecksum } from "./decoders/nmea.js";
export { applyScale, type ScaleOptions, type ScaleResult } from "./decoders/scale.js";
export { STRUCT_SIZES } from "./decoders/struct.js";
export type {
  DecodeFailure,
  DecodeResult,
  Decoder,
  DecoderSpec,
  StructField,
  Value,
} from "./decoders/types.js";

/** The decoder for `spec`; throws `DecoderSpecError` if the spec cannot work. */
export function createDecoder(spec: DecoderSpec): Decoder {
  switch (spec.type) {
    case "json_lines":
      return decodeJsonLine;
    case "csv": {
      nonEmpty("csv separator", spec.separator);
      if (spec.header !== "skip" && spec.header !== "none") {
        throw new DecoderSpecError(
          `csv header must be "skip" or "none", got ${String(spec.header)}`,
        );
      }
      const columns = names("csv column", spec.columns);
      const options = { columns, separator: spec.separator, header: spec.header };
      return (frame) => decodeCsvRow(frame, options);
    }
    case "key_value": {
      nonEmpty("key_value pairSeparator", spec.pairSeparator);
      nonEmpty("key_value kvSeparator", spec.kvSeparator);
      if (spec.pairSeparator === spec.kvSeparator) {
        throw new DecoderSpecError("key_value pairSeparator and kvSeparator must differ");
      }
      const options = { pairSeparator: spec.pairSeparator, kvSeparator: spec.kvSeparator };
      return (frame) => decodeKeyValue(frame, options);
    }
    case "nmea": {
      if (spec.sentences.length === 0) throw new DecoderSpecError("nmea sentences is empty");
      for (const s of spec.sentences) {
        if (!(NMEA_SENTENCES as readonly string[]).includes(s)) {
          throw new DecoderSpecError(
            `nmea sentence ${JSON.stringify(s)} is not decoded; use ${NMEA_SENTENCES.join(", ")}`,
          );
        }
      }
      const options = { sentences: [...spec.sentences] as NmeaSentence[] };
      return (frame) => decodeNmea(frame, options);
    }
    case "struct": {
      const fields = structFields(spec.fields);
      return (frame) => decodeStruct(frame, fields);
    }
    default: {
      const unknown: never = spec;
      throw new DecoderSpecError(
        `unknown decoder type ${JSON.stringify((unknown as { type: unknown }).type)}`,
      );
    }
  }
}

function nonEmpty(what: string, s: string): void {
  if (typeof s !== "string" || s.length === 0)
    throw new DecoderSpecError(`${what} must be a non-empty string`);
}

/** Names must be non-empty and unique: two values cannot share a key. */
function names(what: string, list: readonly string[]): readonly string[] {
  if (list.length === 0) throw new DecoderSpecError(`${what}s: at least one is needed`);
  const seen = new Set<string>();
  for (const name of list) {
    nonEmpty(what, name);
    if (seen.has(name)) throw new DecoderSpecError(`${what} ${JSON.stringify(name)} appears twice`);
    seen.add(name);
  }
  return Object.freeze([...list]);
}

function structFields(fields: readonly StructField[]): readonly StructField[] {
  names(
    "struct field",
    fields.map((f) => f.name),
  );
  for (const f of fields) {
    if (!Number.isSafeInteger(f.offset) || f.offset < 0) {
      throw new DecoderSpecError(
        `struct field ${f.name}: offset must be a whole number ≥ 0, got ${f.offset}`,
      );
    }
    if (!(f.type in STRUCT_SIZES)) {
      throw new DecoderSpecError(`struct field ${f.name}: unknown type ${JSON.stringify(f.type)}`);
    }
    if (f.endian !== "big" && f.endian !== "little") {
      throw new DecoderSpecError(`struct field ${f.name}: endian must be "big" or "little"`);
    }
  }
  return Object.freeze(fields.map((f) => Object.freeze({ ...f })));
}
