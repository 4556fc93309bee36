// Text-line serial devices end to end: a simulated NMEA GPS and CSV weather station on
// socat ptys -> leafgate (in process) -> a real hub stream; and `leafgate check` on the
// shipped profiles through the bundle.
import type { NatsConnection } from "@nats-io/transport-node";
import { describe, expect } from "vitest";
import {
  gpsNmea,
  isoSeconds,
  nmeaSentence,
  weatherCsv,
  weatherHeader,
} from "../../firmware-sim/models-text.js";
import type { Simulator } from "../../firmware-sim/simulator.js";
import { BUNDLE, childEnv } from "../helpers/gateway.js";
import { streamMessages } from "../helpers/nats-server.js";
import { runToCompletion } from "../helpers/procs.js";
import { it } from "../helpers/serial-gateway.js";
import { waitFor } from "../helpers/wait.js";

const decoder = new TextDecoder();
const CRLF = Buffer.from("\r\n");
/** Longer than the gps-nmea profile's max_length (128): dropped as too_long. */
const OVERLONG_LINE_BYTES = 200;
/** A line of binary noise (no CR or LF in the simulator's pattern this short). */
const GARBAGE_LINE_BYTES = 40;

type Values = Record<string, number>;

/** `utc_ms` as the nmea decoder prints the time (hh:mm:ss.ss) and date (YYYY-MM-DD). */
const nmeaTime = (utcMs: number | undefined) =>
  `${new Date(utcMs!).toISOString().slice(11, 19)}.00`;
const nmeaDate = (utcMs: number | undefined) => new Date(utcMs!).toISOString().slice(0, 10);

/** The per_frame message gps-nmea publishes for one simulated sentence: only its fields. */
function gpsMessage(v: Values): Record<string, unknown> {
  const common = { time: nmeaTime(v.utc_ms), latitude: v.lat, longitude: v.lon };
  return "altitude_m" in v
    ? {
        ...common,
        altitude: v.altitude_m,
        satellites: v.satellites,
        fix_quality: v.fix_quality,
        hdop: v.hdop,
      }
    : {
        ...common,
        date: nmeaDate(v.utc_ms),
        status: "A",
        speed_knots: v.speed_knots,
        course: v.course_deg,
      };
}

/** The per_field messages weather-csv publishes for one row, in profile order. */
function weatherMessages(device: string, v: Record<string, number | null>): [string, unknown][] {
  const at = (field: string) => `edge.gw1.sensors.${device}.${field}`;
  return [
    [at("timestamp"), { value: isoSeconds(v.timestamp!) }],
    [at("temperature"), { value: v.temp_c, unit: "°C" }],
    [at("humidity"), { value: v.humidity, unit: "%" }],
    [at("pressure"), { value: v.pressure_hpa, unit: "hPa" }],
    [at("wind_speed"), { value: v.wind_ms, unit: "m/s" }],
    [at("wind_direction"), { value: v.wind_dir, unit: "deg" }],
    [at("rain"), { value: v.rain_mm, unit: "mm" }],
  ];
}

describe("text-line serial devices", () => {
  const published = async (nc: NatsConnection) =>
    (await streamMessages(nc, "EDGE")).map((m) => ({
      subject: m.subject,
      body: JSON.parse(decoder.decode(m.data)) as unknown,
    }));
  /** Ends the line just written, as the device's next output would after a glitch. */
  const endLine = (s: Simulator) => expect(s.pty.write(CRLF)).toBe(true);

  describe("gps-nmea (NMEA 0183, per_frame)", () => {
    it("publishes each GGA and RMC sentence with exactly the fields it carries", async ({
      nc,
      serialGateway,
    }) => {
      const { sim: s, stored, frames } = await serialGateway(gpsNmea, "gps-nmea", "gps-1");
      await s.run(100, 44);
      const good = s.goodValues();
      expect(good).toHaveLength(44);
      await waitFor(async () => (await stored()) === 44);
      const messages = await published(nc);
      expect(messages.every((m) => m.subject === "edge.gw1.sensors.gps-1.position")).toBe(true);
      expect(messages.map((m) => m.body)).toStrictEqual(good.map(gpsMessage));
      expect(frames()).toBe(44);

      // Spelled out once: units, signs, the leap day and midnight, the prime meridian.
      expect(messages[0]!.body).toStrictEqual({
        time: "23:59:50.00",
        latitude: 51.4769,
        longitude: -0.002,
        altitude: 45,
        satellites: 4,
        fix_quality: 1,
        hdop: 0.8,
      });
      expect(messages[1]!.body).toStrictEqual({
        time: "23:59:50.00",
        date: "2024-02-29",
        status: "A",
        latitude: 51.4769,
        longitude: -0.002,
        speed_knots: 0,
        course: 0,
      });
      expect(messages[21]!.body).toMatchObject({
        time: "00:00:00.00",
        date: "2024-03-01",
        speed_knots: 1.7,
        course: 137,
      });
      expect(messages[30]!.body).toMatchObject({ time: "00:00:05.00", longitude: -0.0005 });
      // Fix 19 is just west of the meridian, fix 20 on it (printed E), fix 21 east of it.
      const longitudes = messages.slice(38).map((m) => (m.body as { longitude: number }).longitude);
      expect(longitudes).toStrictEqual([-0.0001, -0.0001, 0, 0, 0.0001, 0.0001]);
    });

    it("counts garbage, bad checksums, cut and overlong lines and other sentences; loses no good sentence", async ({
      nc,
      serialGateway,
    }) => {
      const { sim: s, stored, frames, bad } = await serialGateway(gpsNmea, "gps-nmea", "gps-1");
      s.sendGood();
      s.sendGarbage(GARBAGE_LINE_BYTES);
      endLine(s);
      s.sendGood();
      s.sendBadChecksum();
      s.sendGood();
      s.sendTruncated();
      endLine(s);
      s.sendGood();
      // A satellites-in-view sentence, as receivers print every second: valid, not decoded.
      expect(
        s.pty.write(
          nmeaSentence("GPGSV,1,1,04,01,40,083,46,02,17,308,41,12,07,344,39,14,22,228,45"),
        ),
      ).toBe(true);
      s.sendGarbage(OVERLONG_LINE_BYTES, 0x41);
      endLine(s);
      s.sendGood();
      await s.run(100, 20);
      const good = s.goodValues();
      expect(good).toHaveLength(25);
      await waitFor(async () => (await stored()) === 25);
      const messages = await published(nc);
      expect(messages.every((m) => m.subject === "edge.gw1.sensors.gps-1.position")).toBe(true);
      expect(messages.map((m) => m.body)).toStrictEqual(good.map(gpsMessage));
      expect(frames()).toBe(25);
      expect(bad("bad_checksum")).toBe(1);
      // The noise line (not UTF-8) and the cut sentence (no *hh at its end).
      expect(bad("bad_nmea")).toBe(2);
      expect(bad("unsupported_sentence")).toBe(1);
      expect(bad("too_long")).toBe(1);
      expect(bad("too_short")).toBe(0);
      expect(bad("bad_value")).toBe(0);
    });
  });

  describe("weather-csv (CSV, per_field)", () => {
    it("skips the header and publishes every column of every row with its unit, in order", async ({
      nc,
      serialGateway,
    }) => {
      const wx = await serialGateway(weatherCsv, "weather-csv", "wx-1");
      const { sim: s, stored, frames, bad } = wx;
      expect(s.pty.write(weatherHeader())).toBe(true);
      await s.run(100, 30);
      const good = s.goodValues();
      expect(good).toHaveLength(30);
      await waitFor(async () => (await stored()) === 30 * 7);
      const messages = await published(nc);
      expect(messages.map((m) => [m.subject, m.body])).toStrictEqual(
        good.flatMap((v) => weatherMessages("wx-1", v)),
      );
      expect(frames()).toBe(30);
      expect(bad("bad_csv")).toBe(0);
      // Spelled out once: the first row, 2024-02-29T23:58:00Z,-3.5,60,1006.9,0.0,0,0.00.
      expect(messages.slice(0, 7).map((m) => m.body)).toStrictEqual([
        { value: "2024-02-29T23:58:00Z" },
        { value: -3.5, unit: "°C" },
        { value: 60, unit: "%" },
        { value: 1006.9, unit: "hPa" },
        { value: 0, unit: "m/s" },
        { value: 0, unit: "deg" },
        { value: 0, unit: "mm" },
      ]);
    });

    it("counts garbage, wrong column counts and cut rows; skips a repeated header; loses no good row", async ({
      nc,
      serialGateway,
    }) => {
      const wx = await serialGateway(weatherCsv, "weather-csv", "wx-2");
      const { sim: s, stored, frames, bad } = wx;
      const row = (fields: string[]) =>
        expect(s.pty.write(Buffer.from(`${fields.join(",")}\r\n`))).toBe(true);
      expect(s.pty.write(weatherHeader())).toBe(true);
      s.sendGood();
      s.sendGarbage(GARBAGE_LINE_BYTES);
      endLine(s);
      s.sendGood();
      row(["2024-03-01T00:30:00Z", "1.0", "50", "1000.0", "1.0", "90"]);
      row(["2024-03-01T00:30:00Z", "1.0", "50", "1000.0", "1.0", "90", "0.00", "7"]);
      s.sendGood();
      s.sendTruncated();
      endLine(s);
      s.sendGood();
      // The station restarted: its header again, then a row without a rain reading.
      expect(s.pty.write(weatherHeader())).toBe(true);
      const beforeGap = s.goodValues().length;
      row(["2024-03-01T00:31:00Z", "-0.4", "88", "1001.2", "2.5", "315", ""]);
      s.sendGood();
      await s.run(100, 10);
      const good = s.goodValues();
      expect(good).toHaveLength(15);
      await waitFor(async () => (await stored()) === 16 * 7);
      const gapRow = {
        timestamp: Date.UTC(2024, 2, 1, 0, 31),
        temp_c: -0.4,
        humidity: 88,
        pressure_hpa: 1001.2,
        wind_ms: 2.5,
        wind_dir: 315,
        rain_mm: null,
      };
      const expected = [...good.slice(0, beforeGap), gapRow, ...good.slice(beforeGap)].flatMap(
        (v) => weatherMessages("wx-2", v),
      );
      const messages = await published(nc);
      expect(messages.map((m) => [m.subject, m.body])).toStrictEqual(expected);
      expect(frames()).toBe(16);
      // The noise line (not UTF-8), the 6- and 8-column rows, and the cut row.
      expect(bad("bad_csv")).toBe(4);
      expect(bad("bad_value")).toBe(0);
    });
  });

  it("leafgate check accepts a config using both profiles", async ({ gateway }) => {
    const { file } = gateway.writeConfig(
      {
        serial: {
          ports: [
            { path: "/dev/ttyUSB0", profile: "gps-nmea", device: "gps-1" },
            { path: "/dev/ttyUSB1", profile: "weather-csv", device: "wx-1", baud_rate: 19200 },
          ],
        },
      },
      { testDefaults: false },
    );
    const r = await runToCompletion(process.execPath, [BUNDLE, "check", "-c", file], {
      env: childEnv(),
      timeoutMs: 15_000,
    });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("profile: gps-nmea");
    expect(r.stdout).toContain("profile: weather-csv");
  });
});
