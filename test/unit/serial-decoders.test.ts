import { Buffer } from "node:buffer";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { LeafgateError } from "../../src/core/errors.js";
import {
  applyScale,
  createDecoder,
  type DecodeFailure,
  type DecodeResult,
  type DecoderSpec,
  DecoderSpecError,
  nmeaChecksum,
  type StructField,
  type Value,
} from "../../src/serial/decoders.js";

const utf8 = (s: string): Buffer => Buffer.from(s, "utf8");

type Good = readonly [input: string, values: Record<string, Value>];
type Bad = readonly [input: string | Buffer, reason: DecodeFailure];

function decodeText(spec: DecoderSpec, input: string | Buffer): DecodeResult {
  return createDecoder(spec)(typeof input === "string" ? utf8(input) : input);
}

/** Every result is one of the two documented shapes, whatever went in. */
function expectWellFormed(r: DecodeResult): void {
  if (r.ok) {
    for (const v of Object.values(r.values)) {
      expect(v === null || ["number", "string", "boolean"].includes(typeof v)).toBe(true);
      if (typeof v === "number") expect(Number.isFinite(v)).toBe(true);
    }
  } else {
    expect(typeof r.reason).toBe("string");
    expect(typeof r.detail).toBe("string");
  }
}

/** Invalid UTF-8: a lone continuation byte and a truncated 3-byte sequence. */
const NOT_UTF8 = Buffer.from([0x7b, 0x80, 0xe2, 0x82, 0x7d]);

describe("json_lines", () => {
  const spec: DecoderSpec = { type: "json_lines" };
  const good: Good[] = [
    ['{"t":21.5,"h":40}', { t: 21.5, h: 40 }],
    ['{"env":{"t":21.5,"h":{"rel":40}},"ok":true}', { ok: true, "env.t": 21.5, "env.h.rel": 40 }],
    ['{"name":"s1","on":false,"err":null}', { name: "s1", on: false, err: null }],
    ['  {"t": -1.5e2}\r\n', { t: -150 }],
    ['\uFEFF{"t":1}', { t: 1 }],
    ['{"a":{},"b":2}', { b: 2 }],
    ["{}", {}],
    ['{"t":1,"t":2}', { t: 2 }],
    ['{"a.b":1,"a":{"c":2}}', { "a.b": 1, "a.c": 2 }],
  ];
  it.each(good)("%s", (input, values) => {
    expect(decodeText(spec, input)).toEqual({ ok: true, values });
  });

  const bad: Bad[] = [
    ["", "bad_json"],
    ["{", "bad_json"],
    ['{"t":21.5', "bad_json"],
    ["t=21.5", "bad_json"],
    ["[1,2]", "bad_json"],
    ["42", "bad_json"],
    ['"text"', "bad_json"],
    ["null", "bad_json"],
    [NOT_UTF8, "bad_json"],
    ['{"t":[1,2]}', "bad_value"],
    ['{"env":{"list":[]}}', "bad_value"],
    ['{"t":1e999}', "bad_value"],
    ['{"a.b":1,"a":{"b":2}}', "bad_value"],
    ['{"a":{"b":2},"a.b":1}', "bad_value"],
    [`${'{"a":'.repeat(17)}1${"}".repeat(17)}`, "bad_value"],
  ];
  it.each(bad)("%s → %s", (input, reason) => {
    const r = decodeText(spec, input);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.reason).toBe(reason);
      expect(r.detail.length).toBeGreaterThan(0);
    }
  });

  it("flattens to the nesting limit and no further", () => {
    const sixteen = `${'{"a":'.repeat(15)}1${"}".repeat(15)}`;
    expect(decodeText(spec, sixteen)).toEqual({
      ok: true,
      values: { [Array(15).fill("a").join(".")]: 1 },
    });
  });

  it("keeps a __proto__ key as a key, not a prototype", () => {
    const r = decodeText(spec, '{"__proto__":{"x":1},"constructor":"c"}');
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(Object.keys(r.values).sort()).toEqual(["__proto__.x", "constructor"]);
      expect(Object.getPrototypeOf(r.values)).toBe(Object.prototype);
      expect(r.values["__proto__.x"]).toBe(1);
    }
  });

  it("quotes at most a short piece of a bad frame", () => {
    const r = decodeText(spec, `{${"x".repeat(10_000)}`);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.detail.length).toBeLessThan(300);
  });

  it("never throws on random bytes", () => {
    const decode = createDecoder(spec);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        expectWellFormed(decode(Buffer.from(bytes)));
      }),
      { numRuns: 2000 },
    );
  });

  it("never throws on random JSON, and decodes every flat object exactly", () => {
    const decode = createDecoder(spec);
    fc.assert(
      fc.property(fc.json(), (text) => {
        expectWellFormed(decode(utf8(text)));
      }),
    );
    const scalar = fc.oneof(
      fc.double({ noNaN: true, noDefaultInfinity: true }).map((n) => (n === 0 ? 0 : n)),
      fc.string(),
      fc.boolean(),
      fc.constant(null),
    );
    fc.assert(
      fc.property(
        fc.dictionary(
          fc.string().filter((k) => !k.includes(".")),
          scalar,
        ),
        (obj) => {
          expect(decode(utf8(JSON.stringify(obj)))).toEqual({ ok: true, values: obj });
        },
      ),
    );
  });
});

describe("csv", () => {
  const spec: DecoderSpec = {
    type: "csv",
    columns: ["t", "h", "label"],
    separator: ",",
    header: "skip",
  };
  const good: Good[] = [
    ["21.5,40,ok", { t: 21.5, h: 40, label: "ok" }],
    [" 21.5 , 40 , ok \r\n", { t: 21.5, h: 40, label: "ok" }],
    ["-1.5e2,+3,.5", { t: -150, h: 3, label: 0.5 }],
    [",,", { t: null, h: null, label: null }],
    ["0x1F,NaN,Infinity", { t: "0x1F", h: "NaN", label: "Infinity" }],
    ['"1,2",3', { t: '"1', h: '2"', label: 3 }],
    ["1 2,3,4", { t: "1 2", h: 3, label: 4 }],
  ];
  it.each(good)("%s", (input, values) => {
    expect(decodeText(spec, input)).toEqual({ ok: true, values });
  });

  it("skips a header row equal to the column names", () => {
    expect(decodeText(spec, "t,h,label\r\n")).toEqual({ ok: true, kind: "header", values: {} });
    expect(decodeText(spec, "t , h , label")).toEqual({ ok: true, kind: "header", values: {} });
  });

  it('decodes the header row as data with header: "none"', () => {
    const none: DecoderSpec = { ...spec, header: "none" };
    expect(decodeText(none, "t,h,label")).toEqual({
      ok: true,
      values: { t: "t", h: "h", label: "label" },
    });
  });

  it("splits on a literal, multi-character separator", () => {
    const semi: DecoderSpec = { type: "csv", columns: ["a", "b"], separator: ";", header: "none" };
    expect(decodeText(semi, "1,5;2")).toEqual({ ok: true, values: { a: "1,5", b: 2 } });
    const pipes: DecoderSpec = {
      type: "csv",
      columns: ["a", "b"],
      separator: "||",
      header: "none",
    };
    expect(decodeText(pipes, "1||.|2")).toEqual({ ok: true, values: { a: 1, b: ".|2" } });
  });

  const bad: Bad[] = [
    ["21.5,40", "bad_csv"],
    ["21.5,40,ok,extra", "bad_csv"],
    ["", "bad_csv"],
    ["t,h", "bad_csv"],
    [NOT_UTF8, "bad_csv"],
    ["1e999,1,2", "bad_value"],
  ];
  it.each(bad)("%s → %s", (input, reason) => {
    expect(decodeText(spec, input)).toMatchObject({ ok: false, reason });
  });

  it("round-trips random numeric rows", () => {
    const finite = fc
      .double({ noNaN: true, noDefaultInfinity: true })
      .map((n) => (n === 0 ? 0 : n)); // "-0" prints as "0"
    fc.assert(
      fc.property(
        fc.constantFrom(",", ";", "\t", " | "),
        fc.array(finite, { minLength: 1, maxLength: 12 }),
        (separator, row) => {
          const columns = row.map((_, i) => `c${i}`);
          const decode = createDecoder({ type: "csv", columns, separator, header: "skip" });
          const line = `${row.map(String).join(separator)}\r\n`;
          const want = Object.fromEntries(columns.map((c, i) => [c, row[i]]));
          expect(decode(utf8(line))).toEqual({ ok: true, values: want });
        },
      ),
    );
  });
});

describe("key_value", () => {
  const spec: DecoderSpec = { type: "key_value", pairSeparator: " ", kvSeparator: "=" };
  const good: Good[] = [
    ["t=21.5 h=40", { t: 21.5, h: 40 }],
    ["  t=21.5   h=40 \r\n", { t: 21.5, h: 40 }],
    ["status=ok code=0x1F", { status: "ok", code: "0x1F" }],
    ["t= h=-2", { t: null, h: -2 }],
    ["expr=a=b", { expr: "a=b" }],
    ["n=007", { n: 7 }],
  ];
  it.each(good)("%s", (input, values) => {
    expect(decodeText(spec, input)).toEqual({ ok: true, values });
  });

  it("takes other separators", () => {
    const colon: DecoderSpec = { type: "key_value", pairSeparator: ",", kvSeparator: ":" };
    expect(decodeText(colon, "T:21.5, RH: 40 ,mode:auto")).toEqual({
      ok: true,
      values: { T: 21.5, RH: 40, mode: "auto" },
    });
    const arrows: DecoderSpec = { type: "key_value", pairSeparator: ";", kvSeparator: "->" };
    expect(decodeText(arrows, "a->1;b->x-y")).toEqual({ ok: true, values: { a: 1, b: "x-y" } });
  });

  const bad: Bad[] = [
    ["", "bad_kv"],
    ["   ", "bad_kv"],
    ["t=21.5 h", "bad_kv"],
    ["21.5", "bad_kv"],
    ["=5", "bad_kv"],
    ["t=1 t=2", "bad_kv"],
    [NOT_UTF8, "bad_kv"],
    ["t=1e999", "bad_value"],
  ];
  it.each(bad)("%s → %s", (input, reason) => {
    expect(decodeText(spec, input)).toMatchObject({ ok: false, reason });
  });
});

describe("nmea", () => {
  const spec: DecoderSpec = { type: "nmea", sentences: ["GGA", "RMC"] };
  /** Independent of the decoder: XOR of the character codes between `$` and `*`. */
  const sentence = (body: string): string => {
    const sum = [...body].reduce((acc, ch) => acc ^ ch.charCodeAt(0), 0);
    return `$${body}*${sum.toString(16).toUpperCase().padStart(2, "0")}`;
  };

  // Real receiver output (their checksums checked by hand: XOR between $ and *).
  const GGA = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47";
  const RMC = "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A";
  const MUNICH = { lat: 48.1173, lon: 11.516666667 };

  it("decodes GGA", () => {
    expect(decodeText(spec, GGA)).toEqual({
      ok: true,
      kind: "GGA",
      values: {
        time: "12:35:19",
        ...MUNICH,
        fix_quality: 1,
        satellites: 8,
        hdop: 0.9,
        altitude_m: 545.4,
      },
    });
  });

  it("decodes RMC", () => {
    expect(decodeText(spec, RMC)).toEqual({
      ok: true,
      kind: "RMC",
      values: {
        time: "12:35:19",
        status: "A",
        ...MUNICH,
        speed_knots: 22.4,
        course_deg: 84.4,
        date: "1994-03-23",
      },
    });
  });

  const good: [string, string, Record<string, Value>][] = [
    [
      "W hemisphere, fractional seconds, 21st century",
      "$GPRMC,155123.000,A,4043.8432,N,07359.7653,W,0.15,83.25,200407,,*28",
      {
        time: "15:51:23.000",
        status: "A",
        lat: 40.73072,
        lon: -73.996088333,
        speed_knots: 0.15,
        course_deg: 83.25,
        date: "2007-04-20",
      },
    ],
    [
      "S hemisphere",
      "$GPRMC,081836,A,3751.65,S,14507.36,E,000.0,360.0,130998,011.3,E*62",
      {
        time: "08:18:36",
        status: "A",
        lat: -37.860833333,
        lon: 145.122666667,
        speed_knots: 0,
        course_deg: 360,
        date: "1998-09-13",
      },
    ],
    [
      "W hemisphere, negative geoid separation, station id",
      "$GPGGA,002153.000,3342.6618,N,11751.3858,W,1,10,1.2,27.0,M,-34.2,M,,0000*5E",
      {
        time: "00:21:53.000",
        lat: 33.71103,
        lon: -117.85643,
        fix_quality: 1,
        satellites: 10,
        hdop: 1.2,
        altitude_m: 27,
      },
    ],
    [
      "GN talker (multi-constellation)",
      "$GNGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*59",
      {
        time: "12:35:19",
        ...MUNICH,
        fix_quality: 1,
        satellites: 8,
        hdop: 0.9,
        altitude_m: 545.4,
      },
    ],
    [
      "no fix: empty fields are null",
      "$GPGGA,,,,,,0,00,,,M,,M,,*66",
      {
        time: null,
        lat: null,
        lon: null,
        fix_quality: 0,
        satellites: 0,
        hdop: null,
        altitude_m: null,
      },
    ],
    [
      "CR LF left on",
      `${GGA}\r\n`,
      { time: "12:35:19", ...MUNICH, fix_quality: 1, satellites: 8, hdop: 0.9, altitude_m: 545.4 },
    ],
    [
      "S and W, equator and prime meridian are 0",
      sentence("GLGGA,000000,0000.000,S,00000.000,W,2,12,0.5,-10.5,M,0.0,M,1.5,0001"),
      {
        time: "00:00:00",
        lat: 0,
        lon: 0,
        fix_quality: 2,
        satellites: 12,
        hdop: 0.5,
        altitude_m: -10.5,
      },
    ],
    [
      "RMC 2.3 mode indicator and 4.1 navigational status are allowed",
      sentence("GARMC,235959.99,V,8959.9999,S,17959.9999,W,,,311299,,,N,V"),
      {
        time: "23:59:59.99",
        status: "V",
        lat: -89.999998333,
        lon: -179.999998333,
        speed_knots: null,
        course_deg: null,
        date: "1999-12-31",
      },
    ],
    [
      "leap day, year 2000",
      sentence("GPRMC,120000,A,4807.038,N,01131.000,E,0,0,290200,,"),
      {
        time: "12:00:00",
        status: "A",
        ...MUNICH,
        speed_knots: 0,
        course_deg: 0,
        date: "2000-02-29",
      },
    ],
  ];
  it.each(good)("%s", (_name, input, values) => {
    const r = decodeText(spec, input);
    expect(r).toEqual({ ok: true, kind: input.slice(3, 6), values });
    if (r.ok) expect(Object.is(r.values.lat, -0)).toBe(false);
  });

  it("accepts a lower-case checksum", () => {
    expect(decodeText(spec, RMC.replace("*6A", "*6a"))).toMatchObject({ ok: true, kind: "RMC" });
  });

  const bad: [string, string | Buffer, DecodeFailure][] = [
    ["corrupted checksum", GGA.replace("*47", "*48"), "bad_checksum"],
    ["corrupted body", GGA.replace("545.4", "545.5"), "bad_checksum"],
    ["swapped hemisphere", RMC.replace(",N,", ",S,"), "bad_checksum"],
    ["truncated sentence", GGA.slice(0, 30), "bad_nmea"],
    ["no checksum", GGA.slice(0, -3), "bad_nmea"],
    ["one checksum digit", GGA.slice(0, -1), "bad_nmea"],
    ["checksum not hex", GGA.replace("*47", "*G7"), "bad_nmea"],
    ["no $", GGA.slice(1), "bad_nmea"],
    ["empty", "", "bad_nmea"],
    [
      "not ASCII",
      sentence("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,µ"),
      "bad_nmea",
    ],
    ["not UTF-8", Buffer.concat([utf8("$GPGGA,"), Buffer.from([0xff]), utf8("*00")]), "bad_nmea"],
    ["address too short", sentence("GPGG,1"), "bad_nmea"],
    [
      "address lower case",
      sentence("gpgga,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
      "bad_nmea",
    ],
    [
      "fields cut (checksum fine)",
      sentence("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4"),
      "too_short",
    ],
    [
      "RMC fields cut",
      sentence("GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394"),
      "too_short",
    ],
    [
      "GSV",
      sentence("GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00"),
      "unsupported_sentence",
    ],
    ["proprietary", sentence("PGRME,15.0,M,45.0,M,25.0,M"), "unsupported_sentence"],
    [
      "AIS encapsulation",
      "!AIVDM,1,1,,B,177KQJ5000G?tO`K>RA1wUbN0TKH,0*5C",
      "unsupported_sentence",
    ],
  ];
  it.each(bad)("%s → %s", (_name, input, reason) => {
    expect(decodeText(spec, input)).toMatchObject({ ok: false, reason });
  });

  it("refuses a sentence type it was not asked for", () => {
    const rmcOnly: DecoderSpec = { type: "nmea", sentences: ["RMC"] };
    expect(decodeText(rmcOnly, GGA)).toMatchObject({ ok: false, reason: "unsupported_sentence" });
    expect(decodeText(rmcOnly, RMC)).toMatchObject({ ok: true, kind: "RMC" });
  });

  const badValues: [string, string][] = [
    ["latitude not a number", "GPGGA,123519,48x7.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"],
    ["latitude minutes ≥ 60", "GPGGA,123519,4867.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"],
    ["latitude above 90", "GPGGA,123519,9107.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"],
    ["longitude above 180", "GPGGA,123519,4807.038,N,18131.000,E,1,08,0.9,545.4,M,46.9,M,,"],
    ["bad hemisphere", "GPGGA,123519,4807.038,X,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"],
    ["missing hemisphere", "GPGGA,123519,4807.038,N,01131.000,,1,08,0.9,545.4,M,46.9,M,,"],
    ["lat hemisphere on lon", "GPGGA,123519,4807.038,N,01131.000,N,1,08,0.9,545.4,M,46.9,M,,"],
    ["hour 25", "GPGGA,253519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"],
    ["short time", "GPGGA,1235,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"],
    ["fix quality 9", "GPGGA,123519,4807.038,N,01131.000,E,9,08,0.9,545.4,M,46.9,M,,"],
    ["satellites not a count", "GPGGA,123519,4807.038,N,01131.000,E,1,-8,0.9,545.4,M,46.9,M,,"],
    ["hdop not a number", "GPGGA,123519,4807.038,N,01131.000,E,1,08,x,545.4,M,46.9,M,,"],
    ["altitude in feet", "GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,F,46.9,M,,"],
    ["status X", "GPRMC,123519,X,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W"],
    ["31 April", "GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,310494,003.1,W"],
    ["29 Feb 2001", "GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,290201,003.1,W"],
    ["month 13", "GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,231394,003.1,W"],
    ["speed not a number", "GPRMC,123519,A,4807.038,N,01131.000,E,fast,084.4,230394,003.1,W"],
  ];
  it.each(badValues)("%s → bad_value", (_name, body) => {
    const r = decodeText(spec, sentence(body));
    expect(r).toMatchObject({ ok: false, reason: "bad_value" });
  });

  it("nmeaChecksum is the XOR between $ and *", () => {
    expect(nmeaChecksum(GGA.slice(1, -3))).toBe(0x47);
    expect(nmeaChecksum(RMC.slice(1, -3))).toBe(0x6a);
    expect(nmeaChecksum("")).toBe(0);
  });

  it("never throws on random sentences with a good checksum", () => {
    const decode = createDecoder(spec);
    const field = fc.stringMatching(/^[0-9A-Z.-]{0,10}$/);
    fc.assert(
      fc.property(
        fc.constantFrom("GPGGA", "GNRMC", "GPGSV", "PXXXX", "GP"),
        fc.array(field, { maxLength: 16 }),
        (address, fields) => {
          expectWellFormed(decode(utf8(sentence([address, ...fields].join(",")))));
        },
      ),
    );
  });
});

describe("struct", () => {
  const TYPES: readonly StructField["type"][] = [
    "u8",
    "i8",
    "u16",
    "i16",
    "u32",
    "i32",
    "f32",
    "f64",
  ];
  const SAMPLES: Record<StructField["type"], number> = {
    u8: 200,
    i8: -56,
    u16: 0xbeef,
    i16: -12345,
    u32: 0xdeadbeef,
    i32: -123456789,
    f32: 230.5,
    f64: -1234.5678,
  };
  const SIZE: Record<StructField["type"], number> = {
    u8: 1,
    i8: 1,
    u16: 2,
    i16: 2,
    u32: 4,
    i32: 4,
    f32: 4,
    f64: 8,
  };

  function write(
    buf: Buffer,
    type: StructField["type"],
    endian: "big" | "little",
    at: number,
    v: number,
  ): void {
    const be = endian === "big";
    switch (type) {
      case "u8":
        buf.writeUInt8(v, at);
        break;
      case "i8":
        buf.writeInt8(v, at);
        break;
      case "u16":
        be ? buf.writeUInt16BE(v, at) : buf.writeUInt16LE(v, at);
        break;
      case "i16":
        be ? buf.writeInt16BE(v, at) : buf.writeInt16LE(v, at);
        break;
      case "u32":
        be ? buf.writeUInt32BE(v, at) : buf.writeUInt32LE(v, at);
        break;
      case "i32":
        be ? buf.writeInt32BE(v, at) : buf.writeInt32LE(v, at);
        break;
      case "f32":
        be ? buf.writeFloatBE(v, at) : buf.writeFloatLE(v, at);
        break;
      case "f64":
        be ? buf.writeDoubleBE(v, at) : buf.writeDoubleLE(v, at);
        break;
    }
  }

  for (const endian of ["big", "little"] as const) {
    it(`reads every type, ${endian}-endian`, () => {
      const fields: StructField[] = [];
      let at = 1; // byte 0 left unread
      for (const type of TYPES) {
        fields.push({ name: `${type}_v`, offset: at, type, endian });
        at += SIZE[type];
      }
      const frame = Buffer.alloc(at);
      for (const f of fields) write(frame, f.type, endian, f.offset, SAMPLES[f.type]);
      const want = Object.fromEntries(TYPES.map((t) => [`${t}_v`, SAMPLES[t]]));
      expect(createDecoder({ type: "struct", fields })(frame)).toEqual({ ok: true, values: want });
    });
  }

  it("reads known bytes in both orders", () => {
    const frame = Buffer.from([0x01, 0x02, 0x03, 0x04]);
    const decode = createDecoder({
      type: "struct",
      fields: [
        { name: "be16", offset: 0, type: "u16", endian: "big" },
        { name: "le16", offset: 0, type: "u16", endian: "little" },
        { name: "be32", offset: 0, type: "u32", endian: "big" },
        { name: "le32", offset: 0, type: "u32", endian: "little" },
        { name: "last", offset: 3, type: "u8", endian: "big" },
      ],
    });
    expect(decode(frame)).toEqual({
      ok: true,
      values: { be16: 0x0102, le16: 0x0201, be32: 0x01020304, le32: 0x04030201, last: 4 },
    });
  });

  it("reads a Buffer that is a slice of a larger one", () => {
    const big = Buffer.from([0xaa, 0xbb, 0x12, 0x34, 0xcc]);
    const decode = createDecoder({
      type: "struct",
      fields: [{ name: "v", offset: 0, type: "u16", endian: "big" }],
    });
    expect(decode(big.subarray(2, 4))).toEqual({ ok: true, values: { v: 0x1234 } });
  });

  it("is too_short when a field runs past the end", () => {
    const decode = createDecoder({
      type: "struct",
      fields: [
        { name: "a", offset: 0, type: "u8", endian: "big" },
        { name: "b", offset: 2, type: "f32", endian: "little" },
      ],
    });
    expect(decode(Buffer.alloc(6)).ok).toBe(true);
    for (const n of [0, 1, 5]) {
      const r = decode(Buffer.alloc(n));
      expect(r).toMatchObject({ ok: false, reason: "too_short" });
      if (!r.ok) expect(r.detail).toContain(n === 0 ? "a " : "b ");
    }
  });

  it("gives null for NaN and infinite floats", () => {
    const frame = Buffer.alloc(12);
    frame.writeFloatBE(Number.NaN, 0);
    frame.writeDoubleLE(Number.NEGATIVE_INFINITY, 4);
    const decode = createDecoder({
      type: "struct",
      fields: [
        { name: "f", offset: 0, type: "f32", endian: "big" },
        { name: "d", offset: 4, type: "f64", endian: "little" },
      ],
    });
    expect(decode(frame)).toEqual({ ok: true, values: { f: null, d: null } });
  });

  it("round-trips random integers at random offsets", () => {
    fc.assert(
      fc.property(
        fc.constantFrom("u16", "i16", "u32", "i32" as const),
        fc.constantFrom("big", "little" as const),
        fc.nat(8),
        fc.integer({ min: -0x80000000, max: 0xffffffff }),
        (type, endian, offset, raw) => {
          const bits = SIZE[type] * 8;
          const unsigned = ((raw % 2 ** bits) + 2 ** bits) % 2 ** bits;
          const v =
            type.startsWith("i") && unsigned >= 2 ** (bits - 1) ? unsigned - 2 ** bits : unsigned;
          const frame = Buffer.alloc(offset + SIZE[type]);
          write(frame, type, endian, offset, v);
          const decode = createDecoder({
            type: "struct",
            fields: [{ name: "v", offset, type, endian }],
          });
          expect(decode(frame)).toEqual({ ok: true, values: { v } });
        },
      ),
    );
  });
});

describe("createDecoder refuses a spec that cannot work", () => {
  const bad: [string, DecoderSpec][] = [
    ["empty csv separator", { type: "csv", columns: ["a"], separator: "", header: "none" }],
    ["no csv columns", { type: "csv", columns: [], separator: ",", header: "none" }],
    ["duplicate csv column", { type: "csv", columns: ["a", "a"], separator: ",", header: "none" }],
    ["empty csv column", { type: "csv", columns: ["a", ""], separator: ",", header: "none" }],
    ["bad csv header", { type: "csv", columns: ["a"], separator: ",", header: "maybe" as "skip" }],
    ["empty pair separator", { type: "key_value", pairSeparator: "", kvSeparator: "=" }],
    ["empty kv separator", { type: "key_value", pairSeparator: " ", kvSeparator: "" }],
    ["equal separators", { type: "key_value", pairSeparator: "=", kvSeparator: "=" }],
    ["no nmea sentences", { type: "nmea", sentences: [] }],
    ["unknown nmea sentence", { type: "nmea", sentences: ["GGA", "VTG"] }],
    [
      "negative offset",
      { type: "struct", fields: [{ name: "a", offset: -1, type: "u8", endian: "big" }] },
    ],
    [
      "fractional offset",
      { type: "struct", fields: [{ name: "a", offset: 0.5, type: "u8", endian: "big" }] },
    ],
    [
      "unknown struct type",
      { type: "struct", fields: [{ name: "a", offset: 0, type: "u64" as "u32", endian: "big" }] },
    ],
    [
      "bad endian",
      { type: "struct", fields: [{ name: "a", offset: 0, type: "u8", endian: "middle" as "big" }] },
    ],
    [
      "duplicate struct name",
      {
        type: "struct",
        fields: [
          { name: "a", offset: 0, type: "u8", endian: "big" },
          { name: "a", offset: 1, type: "u8", endian: "big" },
        ],
      },
    ],
    ["no struct fields", { type: "struct", fields: [] }],
    ["unknown type", { type: "xml" } as unknown as DecoderSpec],
  ];
  it.each(bad)("%s", (_name, spec) => {
    let caught: unknown;
    try {
      createDecoder(spec);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(DecoderSpecError);
    expect(caught).toBeInstanceOf(LeafgateError);
    expect((caught as LeafgateError).code).toBe("LG_ERR_DECODER_SPEC");
  });
});

describe("applyScale", () => {
  const good: [string, Value, Parameters<typeof applyScale>[1], Value][] = [
    ["null stays null", null, { scale: 10, type: "int" }, null],
    ["identity", 21.5, {}, 21.5],
    ["scale 0.1 is exact", 215, { scale: 0.1 }, 21.5],
    ["3 × 0.1 is 0.3", 3, { scale: 0.1 }, 0.3],
    ["scale 0.01", 12345, { scale: 0.01, type: "float" }, 123.45],
    ["scale and offset", 250, { scale: 0.1, offset: -40 }, -15],
    ["offset only", 20, { offset: 273.15 }, 293.15],
    ["non-reciprocal scale multiplies", 7, { scale: 2.5 }, 17.5],
    ["numeric string is scaled", "215", { scale: 0.1 }, 21.5],
    ["int rounds to nearest", 0.57, { scale: 100, type: "int" }, 57],
    ["int rounds half away from zero", -2.5, { type: "int" }, -3],
    ["int rounds 2.5 up", 2.5, { type: "int" }, 3],
    ["int of -0.4 is 0, not -0", -0.4, { type: "int" }, 0],
    ["float of a decimal string", " 21.5 ", { type: "float" }, 21.5],
    ["float of a boolean", true, { type: "float" }, 1],
    ["bool of a number", 2, { type: "bool" }, true],
    ["bool of zero", 0, { type: "bool" }, false],
    ["bool of ON", "ON", { type: "bool" }, true],
    ["bool of no", "no", { type: "bool" }, false],
    ["bool of '1'", "1", { type: "bool" }, true],
    ["bool stays bool", false, { type: "bool" }, false],
    ["string of a number", 21.5, { type: "string" }, "21.5"],
    ["string of a scaled number", 215, { scale: 0.1, type: "string" }, "21.5"],
    ["string of a boolean", true, { type: "string" }, "true"],
    ["string stays", "A", { scale: 1, offset: 0, type: "string" }, "A"],
    ["no type keeps a string", "abc", {}, "abc"],
  ];
  it.each(good)("%s", (_name, value, options, want) => {
    const r = applyScale(value, options);
    expect(r).toEqual({ ok: true, value: want });
    if (r.ok && typeof want === "number") expect(Object.is(r.value, want)).toBe(true);
  });

  const bad: [string, Value, Parameters<typeof applyScale>[1]][] = [
    ["scaling a word", "abc", { scale: 2 }],
    ["scaling a boolean", true, { offset: 1 }],
    ["float of a word", "abc", { type: "float" }],
    ["int of a word", "12abc", { type: "int" }],
    ["bool of a word", "maybe", { type: "bool" }],
    ["scaled past a double", 1e308, { scale: 10 }],
  ];
  it.each(bad)("%s → bad_value", (_name, value, options) => {
    const r = applyScale(value, options);
    expect(r).toMatchObject({ ok: false, reason: "bad_value" });
  });

  it("is the plain formula whenever 1/scale is not whole", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -1_000_000, max: 1_000_000 }),
        fc.double({ min: -1000, max: 1000, noNaN: true }).filter((s) => !Number.isInteger(1 / s)),
        fc.double({ min: -1000, max: 1000, noNaN: true }),
        (raw, scale, offset) => {
          expect(applyScale(raw, { scale, offset })).toEqual({
            ok: true,
            value: raw * scale + offset,
          });
        },
      ),
    );
  });
});
