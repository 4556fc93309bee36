/**
 * `nmea`: one NMEA 0183 sentence per frame, `$<talker><formatter>,<field>,…*<hh>`. Rules
 * (NMEA 0183 v4.11, "sentence structure", "checksum field", and the GGA and RMC sentence
 * definitions):
 * - the frame is UTF-8, trimmed (so the CR LF end is optional); it must start with `$`, be
 *   printable ASCII, and end with `*` and two hex digits (either case) → else `bad_nmea`;
 * - the checksum is the XOR of every character between `$` and `*`, both excluded; a
 *   mismatch → `bad_checksum`. A sentence without a checksum is refused (`bad_nmea`): GGA
 *   and RMC always carry one, and a missing one usually means the line was cut short;
 * - the address is a two-letter talker (GP, GN, GL, GA, BD… any) and a three-letter
 *   formatter. Proprietary sentences (`$P…`), `!` encapsulation sentences, and formatters
 *   not in `sentences` → `unsupported_sentence`;
 * - fewer fields than the formatter's NMEA 2.0 layout (GGA 14, RMC 11) → `too_short`;
 *   later versions' extra fields (RMC mode indicator, navigational status) are allowed;
 * - an empty ("null") field → null; a field that does not read as its type → `bad_value`;
 * - `kind` is the formatter: `"GGA"` or `"RMC"`.
 *
 * Values:
 * - `time`: `hhmmss[.ss]` UTC → `"hh:mm:ss[.ss]"`;
 * - `lat`, `lon`: `ddmm.mmmm` / `dddmm.mmmm` and a hemisphere → signed decimal degrees
 *   (S and W negative), rounded to {@link DEGREE_DECIMALS} places; a position without its
 *   hemisphere → `bad_value`;
 * - GGA: `fix_quality` (0–8), `satellites`, `hdop`, `altitude_m` (above mean sea level;
 *   its unit field must be `M`);
 * - RMC: `status` (`"A"` valid, `"V"` warning), `speed_knots`, `course_deg` (true),
 *   `date`: `ddmmyy` → `"YYYY-MM-DD"`, years 80–99 in the 1900s (see {@link CENTURY_PIVOT}).
 */

import { decimal, frameText } from "./text.js";
import { type DecodeResult, failure, quote, success, type Value } from "./types.js";

/** The sentence formatters this decoder reads. */
export const NMEA_SENTENCES = ["GGA", "RMC"] as const;
export type NmeaSentence = (typeof NMEA_SENTENCES)[number];

/** Fields after the address in the NMEA 2.0 layout; fewer means the sentence is cut. */
const MIN_FIELDS: Readonly<Record<NmeaSentence, number>> = { GGA: 14, RMC: 11 };

/** 1e-9 degree is 0.1 mm: finer than any receiver, coarse enough to hide float noise. */
const DEGREE_DECIMALS = 9;
const DEGREE_SCALE = 10 ** DEGREE_DECIMALS;
const MINUTES_PER_DEGREE = 60;
/** GPS time starts in 1980, so a two-digit year of 80 or more cannot be in the 2000s yet. */
const CENTURY_PIVOT = 80;
/** Highest GGA quality indicator (8 = simulator mode). */
const MAX_FIX_QUALITY = 8;
/** Hours, minutes, seconds (up to a leap second 60) of `hhmmss.ss`. */
const TIME = /^([01]\d|2[0-3])([0-5]\d)((?:[0-5]\d|60)(?:\.\d+)?)$/;
const DATE = /^(\d{2})(\d{2})(\d{2})$/;
/** Latitude `llll.ll`: degrees then two digits of whole minutes; longitude has 3 degree digits. */
const LATITUDE = /^(\d{1,2})(\d{2}(?:\.\d*)?)$/;
const LONGITUDE = /^(\d{1,3})(\d{2}(?:\.\d*)?)$/;
const ADDRESS = /^([A-Z]{2})([A-Z]{3})$/;
const CHECKSUM_TAIL = /\*([0-9A-Fa-f]{2})$/;
/** `*hh` at the end: the star and two hex digits. */
const CHECKSUM_TAIL_LENGTH = 3;
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;
const UNSIGNED_INTEGER = /^\d+$/;

export interface NmeaOptions {
  readonly sentences: readonly NmeaSentence[];
}

/** A field that does not read as its type; caught in `decodeNmea`, never escapes. */
class BadField extends Error {}

export function decodeNmea(frame: Uint8Array, options: NmeaOptions): DecodeResult {
  const line = frameText(frame);
  if (line === undefined) return failure("bad_nmea", "frame is not valid UTF-8");
  // $ and ! only ever start a sentence: a sentence cut off without its line end runs into
  // the next one, which is still decoded from its own start.
  const from = Math.max(line.lastIndexOf("$"), line.lastIndexOf("!"));
  const text = from > 0 ? line.slice(from) : line;
  if (!PRINTABLE_ASCII.test(text))
    return failure("bad_nmea", `not printable ASCII: ${quote(text)}`);
  const start = text[0];
  if (start !== "$" && start !== "!") return failure("bad_nmea", `no leading $: ${quote(text)}`);
  const tail = CHECKSUM_TAIL.exec(text);
  if (tail === null) return failure("bad_nmea", `no *hh checksum at the end: ${quote(text)}`);
  const body = text.slice(1, -CHECKSUM_TAIL_LENGTH);
  const want = Number.parseInt(tail[1]!, 16);
  const got = nmeaChecksum(body);
  if (got !== want) {
    return failure("bad_checksum", `checksum ${hex(want)} but the sentence sums to ${hex(got)}`);
  }
  if (start === "!")
    return failure("unsupported_sentence", "encapsulation (!) sentences are not decoded");
  const fields = body.split(",");
  const address = fields.shift()!;
  if (address.startsWith("P"))
    return failure("unsupported_sentence", `proprietary sentence ${address}`);
  const parts = ADDRESS.exec(address);
  if (parts === null) return failure("bad_nmea", `bad address field ${quote(address)}`);
  const formatter = parts[2]!;
  if (!(options.sentences as readonly string[]).includes(formatter)) {
    return failure(
      "unsupported_sentence",
      `${formatter} is not among ${options.sentences.join(", ")}`,
    );
  }
  const sentence = formatter as NmeaSentence;
  const min = MIN_FIELDS[sentence];
  if (fields.length < min) {
    return failure("too_short", `${sentence} has ${fields.length} fields, needs ${min}`);
  }
  try {
    return success(sentence === "GGA" ? gga(fields) : rmc(fields), sentence);
  } catch (err) {
    if (err instanceof BadField) return failure("bad_value", `${sentence} ${err.message}`);
    throw err;
  }
}

/** XOR of the characters between `$` and `*` (the caller strips both). */
export function nmeaChecksum(body: string): number {
  let sum = 0;
  for (let i = 0; i < body.length; i++) sum ^= body.charCodeAt(i);
  return sum;
}

/** GGA, Global Positioning System Fix Data: fields 1–14. */
function gga(f: readonly string[]): [string, Value][] {
  const altitudeUnit = f[9]!;
  if (altitudeUnit !== "" && altitudeUnit !== "M") {
    throw new BadField(`altitude unit ${quote(altitudeUnit)}, expected "M"`);
  }
  const quality = integer("fix_quality", f[5]!);
  if (quality !== null && quality > MAX_FIX_QUALITY) {
    throw new BadField(`fix_quality ${quality} is above ${MAX_FIX_QUALITY}`);
  }
  return [
    ["time", time(f[0]!)],
    ["lat", position("lat", f[1]!, f[2]!)],
    ["lon", position("lon", f[3]!, f[4]!)],
    ["fix_quality", quality],
    ["satellites", integer("satellites", f[6]!)],
    ["hdop", number("hdop", f[7]!)],
    ["altitude_m", number("altitude_m", f[8]!)],
  ];
}

/** RMC, Recommended Minimum Specific GNSS Data: fields 1–11 (12–13 from 2.3 and 4.1 ignored). */
function rmc(f: readonly string[]): [string, Value][] {
  const status = f[1]!;
  if (status !== "" && status !== "A" && status !== "V") {
    throw new BadField(`status ${quote(status)}, expected "A" or "V"`);
  }
  return [
    ["time", time(f[0]!)],
    ["status", status === "" ? null : status],
    ["lat", position("lat", f[2]!, f[3]!)],
    ["lon", position("lon", f[4]!, f[5]!)],
    ["speed_knots", number("speed_knots", f[6]!)],
    ["course_deg", number("course_deg", f[7]!)],
    ["date", date(f[8]!)],
  ];
}

function time(field: string): string | null {
  if (field === "") return null;
  const m = TIME.exec(field);
  if (m === null) throw new BadField(`time ${quote(field)} is not hhmmss.ss`);
  return `${m[1]}:${m[2]}:${m[3]}`;
}

function date(field: string): string | null {
  if (field === "") return null;
  const m = DATE.exec(field);
  const [dd, mm, yy] = m === null ? [0, 0, 0] : [Number(m[1]), Number(m[2]), Number(m[3])];
  const year = yy >= CENTURY_PIVOT ? 1900 + yy : 2000 + yy;
  const day = new Date(Date.UTC(year, mm - 1, dd));
  // Date.UTC rolls 31 April over to 1 May: a real date reads back unchanged.
  if (m === null || day.getUTCMonth() !== mm - 1 || day.getUTCDate() !== dd) {
    throw new BadField(`date ${quote(field)} is not a ddmmyy date`);
  }
  return `${year}-${m[2]}-${m[1]}`;
}

function position(name: "lat" | "lon", field: string, hemisphere: string): number | null {
  if (field === "") return null;
  const [pattern, maxDegrees, negative, positive] =
    name === "lat" ? [LATITUDE, 90, "S", "N"] : [LONGITUDE, 180, "W", "E"];
  const m = pattern.exec(field);
  const degrees = m === null ? Number.NaN : Number(m[1]) + Number(m[2]) / MINUTES_PER_DEGREE;
  if (m === null || Number(m[2]) >= MINUTES_PER_DEGREE || degrees > maxDegrees) {
    throw new BadField(
      `${name} ${quote(field)} is not a ${name === "lat" ? "ddmm.mm" : "dddmm.mm"} position`,
    );
  }
  if (hemisphere !== negative && hemisphere !== positive) {
    throw new BadField(
      `${name} hemisphere ${quote(hemisphere)}, expected ${positive} or ${negative}`,
    );
  }
  const rounded = Math.round(degrees * DEGREE_SCALE) / DEGREE_SCALE;
  // `rounded !== 0` keeps the equator and the prime meridian at 0, not -0.
  return hemisphere === negative && rounded !== 0 ? -rounded : rounded;
}

function number(name: string, field: string): number | null {
  if (field === "") return null;
  const n = decimal(field);
  if (n === undefined) throw new BadField(`${name} ${quote(field)} is not a number`);
  return n;
}

function integer(name: string, field: string): number | null {
  if (field === "") return null;
  if (!UNSIGNED_INTEGER.test(field)) throw new BadField(`${name} ${quote(field)} is not a count`);
  return Number(field);
}

function hex(n: number): string {
  return n.toString(16).toUpperCase().padStart(2, "0");
}
