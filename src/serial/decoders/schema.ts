import { type Infer, int, list, nullable, obj, oneOf, str } from "../../config/index.js";
import { NMEA_SENTENCES } from "./nmea.js";
import { STRUCT_SIZES } from "./struct.js";
import type { DecoderSpec, StructField } from "./types.js";

/** Longest offset a struct field may have: far past any binary frame (a typo's bound). */
const MAX_STRUCT_OFFSET = 16 * 1024 * 1024;
const ENDIAN = ["big", "little"] as const;
const STRUCT_TYPES = Object.keys(STRUCT_SIZES) as StructField["type"][];

/**
 * The streaming decoders' `decoder` sections, one variant per `type`, with the file's
 * snake_case keys; docs/profiles.md has each key's meaning. What spans keys (separators
 * that must differ, names that must be unique) is checked when the decoder is built.
 */
export const DECODER_VARIANTS = {
  json_lines: obj({}),
  csv: obj({
    columns: list(str(), {
      required: "the column names, in order",
      minItems: 1,
      expected: "a list of at least one column name",
    }),
    separator: str({ default: "," }),
    header: oneOf(["skip", "none"], { default: "skip" }),
  }),
  key_value: obj({
    pair_separator: str({ default: " " }),
    kv_separator: str({ default: "=" }),
  }),
  nmea: obj({
    sentences: list(oneOf(NMEA_SENTENCES), { default: [...NMEA_SENTENCES], minItems: 1 }),
  }),
  struct: obj({
    endian: oneOf(ENDIAN, { default: "big" }), // each field's unless it says otherwise
    fields: list(
      obj({
        name: str({ required: "a value name" }),
        offset: int(0, MAX_STRUCT_OFFSET, { default: 0 }),
        type: oneOf(STRUCT_TYPES, { default: "u16" }),
        endian: nullable(oneOf(ENDIAN)),
      }),
      { required: "a list of { name, offset, type, endian }", minItems: 1 },
    ),
  }),
} as const;

type Variants = typeof DECODER_VARIANTS;
/** A checked streaming `decoder` section, as the file spells it. */
export type StreamDecoderSection = {
  [T in keyof Variants]: { readonly type: T } & Infer<Variants[T]>;
}[keyof Variants];

/** The decoder's spec for a checked section: the one place its keys become camelCase. */
export function toDecoderSpec(d: StreamDecoderSection): DecoderSpec {
  switch (d.type) {
    case "json_lines":
      return { type: "json_lines" };
    case "csv":
      return { type: "csv", columns: d.columns, separator: d.separator, header: d.header };
    case "key_value":
      return { type: "key_value", pairSeparator: d.pair_separator, kvSeparator: d.kv_separator };
    case "nmea":
      return { type: "nmea", sentences: d.sentences };
    case "struct":
      return {
        type: "struct",
        fields: d.fields.map((f) => ({
          name: f.name,
          offset: f.offset,
          type: f.type,
          endian: f.endian ?? d.endian,
        })),
      };
  }
}
