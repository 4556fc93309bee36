// Frames a device would send, built from its profile (devices/<name>.yaml) so that every
// shipped profile can be played without a model of the device (firmware-sim's models are per
// device). Sizes and checksums are the gateway's own.
import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { STRUCT_SIZES } from "../../src/serial/decoders/struct.js";
import { CHECKSUM_BYTES, checksum } from "../../src/serial/framings/checksum.js";
import type { ChecksumType } from "../../src/serial/framings/types.js";

/** Distinct frames per device, cycled. */
export const POOL = 100;

/** A profile this builder cannot play (Modbus is polled, bursts need timing). */
export class Unsupported extends Error {}

interface FieldDoc {
  name: string;
  source?: string;
  type?: string;
  offset?: number;
  endian?: string;
}

/** The parts of a profile the frames follow (the gateway's own parser checks the rest). */
export interface ProfileDoc {
  name: string;
  publish?: string;
  fields: FieldDoc[];
  framing: {
    type: string;
    delimiter?: string;
    length?: number;
    length_bytes?: number;
    includes_prefix?: boolean;
    endian?: string;
    header?: number[];
    length_offset?: number;
    length_adjust?: number;
    checksum?: { type?: string; endian?: string };
    trim_cr?: boolean;
  };
  decoder: {
    type: string;
    fields?: FieldDoc[];
    endian?: string;
    kv_separator?: string;
    pair_separator?: string;
    columns?: string[];
    separator?: string;
    sentences?: string[];
  };
}

const PMS_FRAME_BYTES = 32;
const PMS_CHECKSUM_AT = 30;

/** The gateway's own checksum, for the types it knows. */
function checksumOf(type: string, bytes: Uint8Array): number {
  if (!Object.hasOwn(CHECKSUM_BYTES, type)) throw new Unsupported(`checksum ${type}`);
  return checksum(type as ChecksumType, bytes);
}

/** Plantower PMS5003, as firmware-sim/models.ts builds it: 32 bytes, sum16 checksum. */
function pmsFrame(n: number): Buffer {
  const pm25 = 5 + (n % 40);
  const words = [pm25 - 2, pm25, pm25 + 4, pm25 - 2, pm25, pm25 + 4];
  words.push(1200 + n, 350 + n, 80, 12, 3, 1, 0);
  const frame = Buffer.alloc(PMS_FRAME_BYTES);
  frame[0] = 0x42;
  frame[1] = 0x4d;
  frame.writeUInt16BE(2 * words.length + 2, 2);
  for (const [i, w] of words.entries()) frame.writeUInt16BE(w & 0xffff, 4 + 2 * i);
  let sum = 0;
  for (let i = 0; i < PMS_CHECKSUM_AT; i++) sum += frame[i]!;
  frame.writeUInt16BE(sum & 0xffff, PMS_CHECKSUM_AT);
  return frame;
}

/** A plausible reading for text decoders: varies with the frame and the field. */
const reading = (n: number, i: number) =>
  Math.round((20 + 3 * i + ((n * 7 + i) % 50) / 10) * 10) / 10;

function nmeaSentence(body: string): string {
  let x = 0;
  for (let i = 0; i < body.length; i++) x ^= body.charCodeAt(i);
  return `$${body}*${x.toString(16).toUpperCase().padStart(2, "0")}`;
}

function nmeaText(n: number, sentences: readonly string[]): string {
  const kind = sentences[n % sentences.length];
  const s = n % 60;
  const time = `1235${String(s).padStart(2, "0")}.00`;
  const lat = `4807.${String(38 + (n % 900)).padStart(3, "0")}`;
  if (kind === "RMC") {
    return nmeaSentence(`GPRMC,${time},A,${lat},N,01131.000,E,0.5,54.7,230394,003.1,W`);
  }
  return nmeaSentence(`GPGGA,${time},${lat},N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,`);
}

/** A value of the field whose source is `src` (a number unless the field is a string). */
function textValue(n: number, i: number, src: string, profile: ProfileDoc): number | string {
  const field = profile.fields.find((f) => (f.source ?? f.name) === src);
  if (field?.type !== "string") return reading(n, i);
  const ss = String(n % 60).padStart(2, "0");
  return /time/i.test(src) ? `2024-02-29T23:58:${ss}Z` : `s${n % 10}`;
}

type JsonDoc = { [key: string]: JsonDoc | number | string };

function textPayload(n: number, profile: ProfileDoc): string {
  const d = profile.decoder;
  const sources = profile.fields.map((f) => f.source ?? f.name);
  switch (d.type) {
    case "json_lines": {
      const doc: JsonDoc = {};
      sources.forEach((src, i) => {
        const path = src.split(".");
        let at = doc;
        for (const key of path.slice(0, -1)) {
          at[key] ??= {};
          at = at[key] as JsonDoc;
        }
        at[path.at(-1)!] = textValue(n, i, src, profile);
      });
      return JSON.stringify(doc);
    }
    case "key_value":
      return sources
        .map((src, i) => `${src}${d.kv_separator ?? "="}${textValue(n, i, src, profile)}`)
        .join(d.pair_separator ?? " ");
    case "csv":
      return (d.columns ?? [])
        .map((col, i) => textValue(n, i, col, profile))
        .join(d.separator ?? ",");
    case "nmea": {
      // Receivers end sentences with CR LF; the line framing trims the CR.
      const cr = profile.framing.type === "line" && profile.framing.trim_cr !== false;
      return `${nmeaText(n, d.sentences ?? ["GGA", "RMC"])}${cr ? "\r" : ""}`;
    }
    case "modbus":
      throw new Unsupported("modbus is polled by the gateway, not streamed by the device");
    default:
      throw new Unsupported(`decoder ${d.type}`);
  }
}

const sizeOf = (type: string): number => {
  const size = (STRUCT_SIZES as Readonly<Record<string, number>>)[type];
  if (size === undefined) throw new Unsupported(`struct type ${type}`);
  return size;
};

function structPayload(n: number, decoder: ProfileDoc["decoder"]): Buffer {
  const fields = decoder.fields ?? [];
  const size = Math.max(0, ...fields.map((f) => (f.offset ?? 0) + sizeOf(f.type ?? "u16")));
  const buf = Buffer.alloc(size);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.length);
  fields.forEach((f, i) => {
    const type = f.type ?? "u16";
    const little = (f.endian ?? decoder.endian ?? "big") === "little";
    const bits = sizeOf(type) * 8;
    const v =
      (n * 3 + i * 10) % (type.startsWith("u") || type.startsWith("i") ? 2 ** (bits - 1) : 1e6);
    const at = f.offset ?? 0;
    const put: Record<string, () => void> = {
      u8: () => view.setUint8(at, v),
      i8: () => view.setInt8(at, v),
      u16: () => view.setUint16(at, v, little),
      i16: () => view.setInt16(at, v, little),
      u32: () => view.setUint32(at, v, little),
      i32: () => view.setInt32(at, v, little),
      f32: () => view.setFloat32(at, v / 10, little),
      f64: () => view.setFloat64(at, v / 10, little),
    };
    put[type]!();
  });
  return buf;
}

function headerFrame(n: number, profile: ProfileDoc): Buffer {
  if (profile.name === "pms5003") return pmsFrame(n);
  const f = profile.framing;
  if (profile.decoder.type !== "struct") throw new Unsupported("header framing of text");
  const header = f.header ?? [];
  const lengthOffset = f.length_offset ?? 0;
  const lengthBytes = f.length_bytes ?? 1;
  const lengthEnd = lengthOffset + lengthBytes;
  const sumType = f.checksum?.type ?? "sum16";
  const sumBytes = f.checksum ? ((CHECKSUM_BYTES as Record<string, number>)[sumType] ?? 0) : 0;
  const body = structPayload(n, profile.decoder);
  const total = Math.max(body.length, lengthEnd) + sumBytes;
  const frame = Buffer.alloc(total);
  body.copy(frame);
  Buffer.from(header).copy(frame);
  const value = total - lengthEnd - (f.length_adjust ?? 0);
  if ((f.endian ?? "big") === "big") frame.writeUIntBE(value, lengthOffset, lengthBytes);
  else frame.writeUIntLE(value, lengthOffset, lengthBytes);
  if (f.checksum) {
    const sum = checksumOf(sumType, frame.subarray(0, total - sumBytes));
    if (sumBytes === 1) frame[total - 1] = sum;
    else if ((f.checksum.endian ?? "big") === "big") frame.writeUInt16BE(sum, total - 2);
    else frame.writeUInt16LE(sum, total - 2);
  }
  return frame;
}

function slip(bytes: Uint8Array): Buffer {
  const out = [0xc0];
  for (const b of bytes) {
    if (b === 0xc0) out.push(0xdb, 0xdc);
    else if (b === 0xdb) out.push(0xdb, 0xdd);
    else out.push(b);
  }
  out.push(0xc0);
  return Buffer.from(out);
}

/** One frame of `profile` on the wire; throws Unsupported for what the bench cannot play. */
function buildFrame(n: number, profile: ProfileDoc): Buffer {
  const f = profile.framing;
  if (f.type === "header") return headerFrame(n, profile);
  const payload =
    profile.decoder.type === "struct"
      ? structPayload(n, profile.decoder)
      : Buffer.from(textPayload(n, profile));
  switch (f.type) {
    case "line":
      return Buffer.concat([payload, Buffer.from(f.delimiter ?? "\n")]);
    case "fixed": {
      const length = f.length ?? 0;
      if (payload.length > length) throw new Unsupported("payload longer than fixed length");
      return Buffer.concat([payload, Buffer.alloc(length - payload.length)]);
    }
    case "length_prefixed": {
      const bytes = f.length_bytes ?? 1;
      const prefix = Buffer.alloc(bytes);
      const value = payload.length + (f.includes_prefix ? bytes : 0);
      if ((f.endian ?? "big") === "big") prefix.writeUIntBE(value, 0, bytes);
      else prefix.writeUIntLE(value, 0, bytes);
      return Buffer.concat([prefix, payload]);
    }
    case "slip":
      return slip(payload);
    default:
      throw new Unsupported(`framing ${f.type} (needs timed bursts)`);
  }
}

export interface FramePool {
  profile: ProfileDoc;
  frames: Buffer[];
  meanBytes: number;
}

/** POOL frames of the profile in `profileFile`, and their mean size. */
export function framePool(profileFile: string): FramePool {
  const profile = parse(readFileSync(profileFile, "utf8")) as ProfileDoc;
  const frames = Array.from({ length: POOL }, (_, n) => buildFrame(n, profile));
  const bytes = frames.reduce((s, b) => s + b.length, 0);
  return { profile, frames, meanBytes: bytes / frames.length };
}
