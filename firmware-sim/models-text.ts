// Text-line devices for the simulator: an NMEA 0183 GPS receiver and a CSV weather station.
//
// Every number on the line is printed from whole units (1e-4 degree, tenths, hundredths),
// and the value a decoder must find is read back from that printed decimal with `Number`,
// so the expectations do not reuse the decoders' arithmetic.
//
// `SentFrame.values` holds numbers only, so text values travel as numbers: `utc_ms` is the
// instant the line's time (GPS `time`/`date`, weather `timestamp`) prints; a test turns it
// back into text with `Date#toISOString`.
import { gpsCommands } from "./commands.js";
import type { DeviceModel } from "./simulator.js";

/** GPS track start: two fixes later it is 1 March (the RMC date rolls over a leap day). */
const GPS_START_MS = Date.UTC(2024, 1, 29, 23, 59, 50);
/** One fix a second, as receivers report by default. */
const GPS_FIX_INTERVAL_MS = 1_000;
/** Royal Observatory, Greenwich, in 1e-4 degree; the track runs east across the meridian. */
const GPS_START_LAT_E4 = 514_769;
const GPS_START_LON_E4 = -20;
/** 1e-4 degree = 0.006 minute: every position prints exactly with three minute decimals. */
const THOUSANDTHS_OF_MINUTE_PER_E4 = 6;

/** Weather station start and reporting interval (one row a minute). */
const WEATHER_START_MS = Date.UTC(2024, 1, 29, 23, 58, 0);
const WEATHER_INTERVAL_MS = 60_000;
const WEATHER_COLUMNS = [
  "timestamp",
  "temp_c",
  "humidity",
  "pressure_hpa",
  "wind_ms",
  "wind_dir",
  "rain_mm",
] as const;

const pad = (n: number, width: number): string => String(n).padStart(width, "0");

/** XOR of the characters between `$` and `*` (NMEA 0183, "checksum field"). */
function xorChecksum(body: string): number {
  let sum = 0;
  for (let i = 0; i < body.length; i++) sum ^= body.charCodeAt(i);
  return sum;
}

/**
 * A complete sentence line: `$`, `body`, `*`, the checksum as two upper-case hex digits
 * (XORed with `flip` to break it), CR LF.
 */
export function nmeaSentence(body: string, flip = 0): Buffer {
  const sum = (xorChecksum(body) ^ flip) & 0xff;
  return Buffer.from(`$${body}*${sum.toString(16).toUpperCase().padStart(2, "0")}\r\n`, "ascii");
}

/** `e4` (1e-4 degree) as `[d]ddmm.mmm` and its hemisphere, and the degrees it means. */
function nmeaAngle(
  e4: number,
  degreeDigits: 2 | 3,
  [positive, negative]: readonly [string, string],
): { field: string; hemisphere: string; degrees: number } {
  const abs = Math.abs(e4);
  const whole = Math.floor(abs / 10_000);
  const fraction = abs % 10_000;
  const thousandths = fraction * THOUSANDTHS_OF_MINUTE_PER_E4;
  const field = `${pad(whole, degreeDigits)}${pad(Math.floor(thousandths / 1000), 2)}.${pad(thousandths % 1000, 3)}`;
  const degrees = Number(`${whole}.${pad(fraction, 4)}`);
  return { field, hemisphere: e4 < 0 ? negative : positive, degrees: e4 < 0 ? -degrees : degrees };
}

/** Whole tenths as a decimal: -35 → "-3.5", -4 → "-0.4". */
function tenths(t: number): string {
  const abs = Math.abs(t);
  return `${t < 0 ? "-" : ""}${Math.floor(abs / 10)}.${abs % 10}`;
}

/** Whole hundredths (≥ 0) as a decimal: 25 → "0.25". */
function hundredths(h: number): string {
  return `${Math.floor(h / 100)}.${pad(h % 100, 2)}`;
}

interface GpsFix {
  readonly utcMs: number;
  readonly time: string;
  readonly date: string;
  readonly lat: ReturnType<typeof nmeaAngle>;
  readonly lon: ReturnType<typeof nmeaAngle>;
}

function gpsFix(fix: number): GpsFix {
  const utcMs = GPS_START_MS + fix * GPS_FIX_INTERVAL_MS;
  const d = new Date(utcMs);
  return {
    utcMs,
    time: `${pad(d.getUTCHours(), 2)}${pad(d.getUTCMinutes(), 2)}${pad(d.getUTCSeconds(), 2)}.00`,
    date: `${pad(d.getUTCDate(), 2)}${pad(d.getUTCMonth() + 1, 2)}${pad(d.getUTCFullYear() % 100, 2)}`,
    lat: nmeaAngle(GPS_START_LAT_E4 + 3 * fix, 2, ["N", "S"]),
    lon: nmeaAngle(GPS_START_LON_E4 + fix, 3, ["E", "W"]),
  };
}

/** Sequence `n`: fix `n >> 1`; even n its GGA sentence, odd n its RMC sentence. */
function gpsSentence(n: number): { body: string; values: Record<string, number> } {
  const fix = n >> 1;
  const f = gpsFix(fix);
  const position = [f.lat.field, f.lat.hemisphere, f.lon.field, f.lon.hemisphere];
  if (n % 2 === 0) {
    const quality = fix % 4 === 3 ? 2 : 1; // 1 GPS fix, 2 DGPS fix
    const satellites = 4 + (fix % 9);
    const hdop = tenths(8 + (fix % 5));
    const altitude = tenths(450 + 3 * (fix % 25));
    // time, lat, N/S, lon, E/W, quality, satellites, HDOP, altitude, M, geoid separation,
    // M, DGPS age, DGPS station: the 14 fields of GGA.
    const fields = [f.time, ...position, quality, pad(satellites, 2), hdop, altitude, "M"];
    return {
      body: `GPGGA,${[...fields, "46.9", "M", "", ""].join(",")}`,
      values: {
        utc_ms: f.utcMs,
        lat: f.lat.degrees,
        lon: f.lon.degrees,
        fix_quality: quality,
        satellites,
        hdop: Number(hdop),
        altitude_m: Number(altitude),
      },
    };
  }
  const speed = tenths((7 * fix) % 53);
  const course = tenths((137 * fix) % 3600);
  // time, status, lat, N/S, lon, E/W, speed, course, date, magnetic variation, E/W, and
  // the NMEA 2.3 mode indicator (A autonomous).
  const fields = [f.time, "A", ...position, speed, course, f.date, "", "", "A"];
  return {
    body: `GNRMC,${fields.join(",")}`,
    values: {
      utc_ms: f.utcMs,
      lat: f.lat.degrees,
      lon: f.lon.degrees,
      speed_knots: Number(speed),
      course_deg: Number(course),
    },
  };
}

/**
 * NMEA 0183 GPS receiver: a GGA then an RMC sentence for each one-second fix, CR LF
 * ended, talkers GP (GGA) and GN (RMC). Values use the nmea decoder's names; a GGA's
 * values have `altitude_m`, an RMC's `speed_knots`. RMC status is always "A" (valid).
 */
export const gpsNmea: DeviceModel = {
  name: "gps-nmea",
  commands: gpsCommands,
  good(n) {
    const { body, values } = gpsSentence(n);
    return { bytes: nmeaSentence(body), values };
  },
  badChecksum(n) {
    return nmeaSentence(gpsSentence(n).body, 0x5a);
  },
};

/** The station's header line, printed once when it starts: write it before the rows. */
export function weatherHeader(): Buffer {
  return Buffer.from(`${WEATHER_COLUMNS.join(",")}\r\n`, "ascii");
}

/** An ISO 8601 UTC time to the second, as the station prints it. */
export function isoSeconds(utcMs: number): string {
  return new Date(utcMs).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/**
 * CSV weather station: one CR LF ended row a minute, columns as {@link weatherHeader};
 * temperatures go below zero. Values use the column names; `timestamp` is `utc_ms`.
 * There is no checksum, so no `badChecksum`.
 */
export const weatherCsv: DeviceModel = {
  name: "weather-csv",
  good(n) {
    const utcMs = WEATHER_START_MS + n * WEATHER_INTERVAL_MS;
    const temp = tenths(-35 + ((7 * n) % 60));
    const humidity = 60 + (n % 35);
    const pressure = tenths(10_069 + (n % 30));
    const wind = tenths((3 * n) % 120);
    const windDir = (45 * n) % 360;
    const rain = hundredths(25 * (n % 4));
    const row = [isoSeconds(utcMs), temp, humidity, pressure, wind, windDir, rain];
    return {
      bytes: Buffer.from(`${row.join(",")}\r\n`, "ascii"),
      values: {
        timestamp: utcMs,
        temp_c: Number(temp),
        humidity,
        pressure_hpa: Number(pressure),
        wind_ms: Number(wind),
        wind_dir: windDir,
        rain_mm: Number(rain),
      },
    };
  },
};

/** The text-line models by profile name, to merge into `MODELS`. */
export const TEXT_MODELS: Readonly<Record<string, DeviceModel>> = {
  "gps-nmea": gpsNmea,
  "weather-csv": weatherCsv,
};
