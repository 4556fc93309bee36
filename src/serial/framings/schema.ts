import {
  bool,
  type Infer,
  int,
  list,
  num,
  obj,
  oneOf,
  optionalObj,
  size,
  str,
  union,
} from "../../config/index.js";
import { LINE_FRAMING_DEFAULTS } from "../framing.js";
import { CHECKSUM_BYTES } from "./checksum.js";
import type { ChecksumType, FramingSpec } from "./types.js";

/** Every framing's max_length defaults to the line framing's. */
const DEFAULT_MAX_LENGTH = LINE_FRAMING_DEFAULTS.maxLength;
/** Far above any serial frame (16 MiB is minutes of a 921600-baud line): a typo's bound. */
const MAX_FRAME_BYTES = 16 * 1024 * 1024;
/** A silence that ends a frame by default: several character times at 9600 baud. */
const DEFAULT_GAP_MS = 20;
const ENDIAN = ["big", "little"] as const;
const CHECKSUMS = Object.keys(CHECKSUM_BYTES) as ChecksumType[];

const maxLength = () => size(1, MAX_FRAME_BYTES, { default: DEFAULT_MAX_LENGTH });
const endian = () => oneOf(ENDIAN, { default: "big" });

/**
 * A profile's `framing` section, one variant per `type`, with the file's snake_case keys;
 * docs/profiles.md has each key's meaning. The framer checks what spans keys (a length
 * field inside the header) when it is built.
 */
export const FRAMING_SCHEMA = union(
  "type",
  {
    line: obj({
      delimiter: str({ default: LINE_FRAMING_DEFAULTS.delimiter }),
      trim_cr: bool({ default: LINE_FRAMING_DEFAULTS.trimCR }),
      max_length: maxLength(),
    }),
    fixed: obj({ length: size(1, MAX_FRAME_BYTES, { required: "the frame size in bytes" }) }),
    length_prefixed: obj({
      length_bytes: oneOf([1, 2, 4], { default: 1 }),
      endian: endian(),
      includes_prefix: bool({ default: false }),
      max_length: maxLength(),
    }),
    header: obj({
      header: list(int(0, 0xff), {
        required: "the start bytes, like [0x42, 0x4D]",
        minItems: 1,
        expected: "a list of start bytes, like [0x42, 0x4D]",
      }),
      length_offset: int(0, MAX_FRAME_BYTES, { required: "where the length field starts" }),
      length_bytes: oneOf([1, 2], { default: 1 }),
      endian: endian(),
      length_adjust: int(-MAX_FRAME_BYTES, MAX_FRAME_BYTES, { default: 0 }),
      checksum: optionalObj({ type: oneOf(CHECKSUMS, { default: "sum16" }), endian: endian() }),
      max_length: maxLength(),
    }),
    slip: obj({ max_length: maxLength() }),
    idle: obj({
      gap_ms: num({ above: 0, default: DEFAULT_GAP_MS }),
      max_length: maxLength(),
    }),
  },
  { required: "a mapping with type: line, fixed, length_prefixed, header, slip or idle" },
);

/** A checked `framing` section, as the file spells it. */
export type FramingSection = Infer<typeof FRAMING_SCHEMA>;

/** The framer's spec for a checked section: the one place its keys become camelCase. */
export function toFramingSpec(f: FramingSection): FramingSpec {
  switch (f.type) {
    case "line":
      return { type: "line", delimiter: f.delimiter, maxLength: f.max_length, trimCR: f.trim_cr };
    case "fixed":
      return { type: "fixed", length: f.length };
    case "length_prefixed":
      return {
        type: "length_prefixed",
        lengthBytes: f.length_bytes,
        endian: f.endian,
        includesPrefix: f.includes_prefix,
        maxLength: f.max_length,
      };
    case "header":
      return {
        type: "header",
        header: f.header,
        lengthOffset: f.length_offset,
        lengthBytes: f.length_bytes,
        endian: f.endian,
        lengthAdjust: f.length_adjust,
        checksum: f.checksum ? { type: f.checksum.type, endian: f.checksum.endian } : null,
        maxLength: f.max_length,
      };
    case "slip":
      return { type: "slip", maxLength: f.max_length };
    case "idle":
      return { type: "idle", gapMs: f.gap_ms, maxLength: f.max_length };
  }
}
