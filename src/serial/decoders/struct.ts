/**
 * `struct`: a binary frame read as fixed-offset fields. Rules:
 * - each field is read at its byte `offset` from the frame's start, as its `type` (u/i =
 *   unsigned/two's-complement integer of 8, 16 or 32 bits; f32/f64 = IEEE 754 binary32/64)
 *   in its `endian` byte order; fields may overlap and bytes may be left unread;
 * - a frame shorter than `offset + size` of any field → `too_short`, naming the field;
 * - a float that is NaN or ±Infinity → null: sensors write NaN for "no reading", and JSON
 *   (what values become on the wire) cannot carry either;
 * - 64-bit integers are not offered: a double cannot hold them exactly.
 */

import type { DecodeResult, StructField, Value } from "./types.js";
import { failure, success } from "./types.js";

/** Bytes each field type occupies. */
export const STRUCT_SIZES: Readonly<Record<StructField["type"], number>> = {
  u8: 1,
  i8: 1,
  u16: 2,
  i16: 2,
  u32: 4,
  i32: 4,
  f32: 4,
  f64: 8,
};

export function decodeStruct(frame: Uint8Array, fields: readonly StructField[]): DecodeResult {
  // A Buffer may be a slice of a larger pool: view exactly its own bytes.
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const entries: [string, Value][] = [];
  for (const field of fields) {
    const end = field.offset + STRUCT_SIZES[field.type];
    if (end > frame.byteLength) {
      return failure(
        "too_short",
        `${field.name} needs bytes ${field.offset}..${end - 1}, frame has ${frame.byteLength}`,
      );
    }
    entries.push([field.name, read(view, field)]);
  }
  return success(entries);
}

function read(view: DataView, { offset, type, endian }: StructField): Value {
  const little = endian === "little";
  switch (type) {
    case "u8":
      return view.getUint8(offset);
    case "i8":
      return view.getInt8(offset);
    case "u16":
      return view.getUint16(offset, little);
    case "i16":
      return view.getInt16(offset, little);
    case "u32":
      return view.getUint32(offset, little);
    case "i32":
      return view.getInt32(offset, little);
    case "f32":
      return finiteOrNull(view.getFloat32(offset, little));
    case "f64":
      return finiteOrNull(view.getFloat64(offset, little));
  }
}

function finiteOrNull(n: number): number | null {
  return Number.isFinite(n) ? n : null;
}
