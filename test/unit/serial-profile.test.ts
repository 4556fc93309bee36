import { describe, expect, it } from "vitest";
import { ProfileError, resolveProfile, validateProfile } from "../../src/serial/index.js";

const base = {
  name: "probe",
  framing: { type: "line" },
  decoder: { type: "json_lines" },
  fields: [{ name: "t", type: "float" }],
};

function problems(raw: unknown): readonly string[] {
  try {
    validateProfile(raw, "devices/probe.yaml");
  } catch (err) {
    expect(err).toBeInstanceOf(ProfileError);
    expect((err as Error).message).toContain("invalid device profile devices/probe.yaml:");
    return (err as ProfileError).problems;
  }
  throw new Error("expected a ProfileError");
}

describe("device profiles", () => {
  it("fills defaults", () => {
    const p = validateProfile(base, "x.yaml");
    expect(p.serial).toEqual({ baudRate: 9600, dataBits: 8, parity: "none", stopBits: 1 });
    expect(p.fields).toEqual([
      { name: "t", source: "t", type: "float", unit: null, scale: 1, offset: 0 },
    ]);
    expect(p.publish).toBe("per_field");
    expect(p.subject).toBe("sensors.{device}.{field}");
    expect(p.commands).toEqual([]);
  });

  it.each([
    [{ ...base, serial: { baud_rate: 1234 } }, "serial.baud_rate: expected one of 1200, 2400"],
    [{ ...base, framing: { type: "lines" } }, "framing.type: expected one of line, fixed"],
    [{ ...base, decoder: {} }, "decoder.type: expected one of json_lines, csv"],
    [{ ...base, fields: [] }, "fields: expected a list of at least one field"],
    [{ ...base, fields: [{ name: "a.b" }] }, "fields[0].name: expected letters, digits, _ or -"],
    [{ ...base, fields: [{ name: "t" }, { name: "t" }] }, 'fields[1].name: "t" is defined twice'],
    [{ ...base, fields: [{ name: "t", type: "double" }] }, "fields[0].type: expected one of int"],
    [
      { ...base, publish: "per_frame", subject: "s.{device}.{field}" },
      "subject: per_frame publishing has no {field}",
    ],
    [{ ...base, subject: "s.{device}" }, "subject: per_field publishing needs {field}"],
    [{ ...base, subject: "s.*.{field}" }, "subject: expected a subject template"],
    [{ ...base, commands: [{ name: "x" }] }, "commands[0]: expected exactly one of text or hex"],
    [
      { ...base, commands: [{ name: "x", hex: "4G" }] },
      'commands[0].hex: expected pairs of hex digits, got "4G"',
    ],
    // Unknown keys and wrong types are errors in every section, framing and decoder too.
    [
      { ...base, framing: { type: "line", max_lenght: 64 } },
      'framing.max_lenght: unknown key (did you mean "max_length"?)',
    ],
    [
      { ...base, framing: { type: "line", max_length: "64x" } },
      'framing.max_length: expected a size like 512KiB, 1MB, 1GB (or a number of bytes), got "64x"',
    ],
    [
      { ...base, framing: { type: "idle", gap_ms: "5" } },
      'framing.gap_ms: expected a number above 0, got "5"',
    ],
    [
      { ...base, framing: { type: "header", header: [0x42], length_offset: 1, crc: {} } },
      "framing.crc: unknown key (expected one of type, header, length_offset, length_bytes, endian, length_adjust, checksum, max_length)",
    ],
    [{ ...base, framing: { type: "fixed" } }, "framing.length: expected the frame size in bytes"],
    [
      { ...base, decoder: { type: "csv", columns: ["a"], separator: 1 } },
      "decoder.separator: expected a non-empty string, got 1",
    ],
    [
      { ...base, decoder: { type: "nmea", sentences: ["VTG"] } },
      'decoder.sentences[0]: expected one of GGA, RMC, got "VTG"',
    ],
    [
      { ...base, decoder: { type: "struct", fields: [{ name: "a", type: "u64" }] } },
      'decoder.fields[0].type: expected one of u8, i8, u16, i16, u32, i32, f32, f64, got "u64"',
    ],
    [
      {
        ...base,
        decoder: {
          type: "modbus",
          slave: 1,
          registers: [{ name: "t", function: 4, address: "x" }],
        },
      },
      'decoder.registers[0].address: expected an integer from 0 to 65535, got "x"',
    ],
    [{ ...base, colour: "red" }, "colour: unknown key (expected one of name, description"],
    // What spans a framing's or decoder's keys is found when it is built, under its section.
    [
      { ...base, framing: { type: "header", header: [0x42, 0x4d], length_offset: 1 } },
      "framing: header lengthOffset must be an integer",
    ],
    [
      { ...base, decoder: { type: "key_value", pair_separator: "=" } },
      "decoder: key_value pairSeparator and kvSeparator must differ",
    ],
  ])("%#: %j", (raw, problem) => {
    const found = problems(raw);
    expect(found.some((p) => p.startsWith(problem))).toBe(true);
  });

  it("reads commands as text or hex", () => {
    const p = validateProfile(
      {
        ...base,
        commands: [
          { name: "ping", text: "P\r\n" },
          { name: "wake", hex: "42 4D E4 00 01 01 74" },
        ],
      },
      "x.yaml",
    );
    expect(p.commands.map((c) => [c.name, c.bytes.toString("hex")])).toEqual([
      ["ping", "500d0a"],
      ["wake", "424de400010174"],
    ]);
  });

  it("loads every shipped profile", () => {
    for (const name of ["env-sensor", "pms5003", "gps-nmea", "weather-csv", "energy-meter"]) {
      expect(resolveProfile(name, null).name).toBe(name);
    }
    expect(resolveProfile("pms5003", null).spec).toMatchObject({
      kind: "stream",
      framing: { type: "header", header: [0x42, 0x4d], lengthOffset: 2, maxLength: 64 },
    });
    expect(resolveProfile("gps-nmea", null).spec).toMatchObject({
      kind: "stream",
      framing: { type: "line", delimiter: "\n", trimCR: true, maxLength: 128 },
      decoder: { type: "nmea", sentences: ["GGA", "RMC"] },
    });
    expect(resolveProfile("pms5003", null).commands.map((c) => c.name)).toEqual([
      "sleep",
      "wake",
      "passive_mode",
      "active_mode",
      "read_passive",
    ]);
  });
});
