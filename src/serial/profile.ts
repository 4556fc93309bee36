import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { errorMessage, isValidPattern, LeafgateError } from "../core/index.js";

/** A device profile mistake: names the file, the field path, and what is wrong. */
export class ProfileError extends LeafgateError {
  readonly problems: readonly string[];

  constructor(file: string, problems: readonly string[]) {
    super(
      "LG_ERR_PROFILE_INVALID",
      `invalid device profile ${file}:\n${problems.map((p) => `  ${p}`).join("\n")}`,
    );
    this.problems = problems;
  }
}

export type FieldType = "int" | "float" | "bool" | "string";

/** One published field: where its value comes from and how it is typed. */
export interface ProfileField {
  readonly name: string;
  /** Name of the decoded value it is taken from (default: `name`). */
  readonly source: string;
  readonly type: FieldType;
  readonly unit: string | null;
  readonly scale: number;
  readonly offset: number;
}

/** Serial line settings a profile suggests; a port in the config may override them. */
export interface SerialSettings {
  readonly baudRate: number;
  readonly dataBits: 5 | 6 | 7 | 8;
  readonly parity: "none" | "even" | "odd";
  readonly stopBits: 1 | 2;
}

/**
 * A device kind, from `devices/<name>.yaml`: how to frame and decode its bytes, which
 * fields to publish and on which subjects (`{device}` and `{field}` are replaced).
 * `framing` and `decoder` keep the file's keys; the serial part maps them to its specs.
 */
export interface DeviceProfile {
  readonly name: string;
  readonly description: string;
  readonly serial: SerialSettings;
  readonly framing: Readonly<Record<string, unknown>> & { readonly type: string };
  readonly decoder: Readonly<Record<string, unknown>> & { readonly type: string };
  readonly fields: readonly ProfileField[];
  readonly publish: "per_field" | "per_frame";
  readonly subject: string;
  /** Named byte strings that may be written to the device (downlink commands). */
  readonly commands: readonly ProfileCommand[];
}

/** A command the device understands: fixed bytes, given as text or hex. */
export interface ProfileCommand {
  readonly name: string;
  readonly bytes: Buffer;
}

const FRAMINGS = ["line", "fixed", "length_prefixed", "header", "slip", "idle"];
const DECODERS = ["json_lines", "csv", "key_value", "nmea", "struct", "modbus"];
const FIELD_TYPES: readonly FieldType[] = ["int", "float", "bool", "string"];
const BAUD_RATES = [1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600];

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Validates a parsed profile; every problem is collected with its path. */
export function validateProfile(raw: unknown, file: string): DeviceProfile {
  const problems: string[] = [];
  const fail = (path: string, what: string): void => {
    problems.push(`${path}: ${what}`);
  };
  if (!isRecord(raw)) throw new ProfileError(file, ["top level: expected a mapping"]);
  const str = (path: string, v: unknown, dflt?: string): string => {
    if (v === undefined && dflt !== undefined) return dflt;
    if (typeof v !== "string" || v.length === 0)
      fail(path, `expected a non-empty string, got ${JSON.stringify(v)}`);
    return String(v ?? "");
  };
  const num = (path: string, v: unknown, dflt: number): number => {
    if (v === undefined) return dflt;
    if (typeof v !== "number" || !Number.isFinite(v))
      fail(path, `expected a number, got ${JSON.stringify(v)}`);
    return Number(v);
  };

  const name = str("name", raw.name);
  const description = str("description", raw.description, "");
  const serialRaw = raw.serial ?? {};
  if (!isRecord(serialRaw)) fail("serial", "expected a mapping");
  const s = isRecord(serialRaw) ? serialRaw : {};
  const baudRate = num("serial.baud_rate", s.baud_rate, 9600);
  if (!BAUD_RATES.includes(baudRate))
    fail("serial.baud_rate", `expected one of ${BAUD_RATES.join(", ")}, got ${baudRate}`);
  const dataBits = num("serial.data_bits", s.data_bits, 8);
  if (![5, 6, 7, 8].includes(dataBits))
    fail("serial.data_bits", `expected 5, 6, 7 or 8, got ${dataBits}`);
  const parity = str("serial.parity", s.parity, "none");
  if (!["none", "even", "odd"].includes(parity))
    fail("serial.parity", `expected none, even or odd, got "${parity}"`);
  const stopBits = num("serial.stop_bits", s.stop_bits, 1);
  if (![1, 2].includes(stopBits)) fail("serial.stop_bits", `expected 1 or 2, got ${stopBits}`);

  const framing = raw.framing;
  if (!isRecord(framing) || !FRAMINGS.includes(String(framing.type))) {
    fail(
      "framing.type",
      `expected one of ${FRAMINGS.join(", ")}, got ${JSON.stringify(isRecord(framing) ? framing.type : framing)}`,
    );
  }
  const decoder = raw.decoder;
  if (!isRecord(decoder) || !DECODERS.includes(String(decoder.type))) {
    fail(
      "decoder.type",
      `expected one of ${DECODERS.join(", ")}, got ${JSON.stringify(isRecord(decoder) ? decoder.type : decoder)}`,
    );
  }

  const fields: ProfileField[] = [];
  if (!Array.isArray(raw.fields) || raw.fields.length === 0) {
    fail("fields", "expected a list of at least one field");
  } else {
    const seen = new Set<string>();
    raw.fields.forEach((f: unknown, i: number) => {
      const at = `fields[${i}]`;
      if (!isRecord(f)) {
        fail(at, "expected a mapping");
        return;
      }
      const fieldName = str(`${at}.name`, f.name);
      if (!/^[A-Za-z0-9_-]+$/.test(fieldName))
        fail(
          `${at}.name`,
          `expected letters, digits, _ or - (it becomes a subject token), got "${fieldName}"`,
        );
      if (seen.has(fieldName)) fail(`${at}.name`, `"${fieldName}" is defined twice`);
      seen.add(fieldName);
      const type = str(`${at}.type`, f.type, "float") as FieldType;
      if (!FIELD_TYPES.includes(type))
        fail(`${at}.type`, `expected one of ${FIELD_TYPES.join(", ")}, got "${type}"`);
      fields.push({
        name: fieldName,
        source: str(`${at}.source`, f.source, fieldName),
        type,
        unit: f.unit === undefined ? null : str(`${at}.unit`, f.unit),
        scale: num(`${at}.scale`, f.scale, 1),
        offset: num(`${at}.offset`, f.offset, 0),
      });
    });
  }
  const publish = str("publish", raw.publish, "per_field");
  if (publish !== "per_field" && publish !== "per_frame")
    fail("publish", `expected per_field or per_frame, got "${publish}"`);
  const subject = str(
    "subject",
    raw.subject,
    publish === "per_field" ? "sensors.{device}.{field}" : "sensors.{device}",
  );
  const probe = subject
    .replaceAll("{device}", "d")
    .replaceAll("{field}", "f")
    .replaceAll("{kind}", "k");
  if (!isValidPattern(probe) || probe.includes("*") || probe.includes(">")) {
    fail("subject", `expected a subject template like sensors.{device}.{field}, got "${subject}"`);
  }
  if (publish === "per_field" && !subject.includes("{field}"))
    fail("subject", "per_field publishing needs {field} in the subject");
  if (publish === "per_frame" && subject.includes("{field}"))
    fail("subject", "per_frame publishing has no {field}; use {kind} or a fixed token");

  const commands: ProfileCommand[] = [];
  if (raw.commands !== undefined) {
    if (!Array.isArray(raw.commands)) fail("commands", "expected a list");
    else
      raw.commands.forEach((c: unknown, i: number) => {
        const at = `commands[${i}]`;
        if (!isRecord(c)) {
          fail(at, "expected a mapping with name and text or hex");
          return;
        }
        const cmdName = str(`${at}.name`, c.name);
        if (commands.some((x) => x.name === cmdName))
          fail(`${at}.name`, `"${cmdName}" is defined twice`);
        const hasText = typeof c.text === "string";
        const hasHex = typeof c.hex === "string";
        if (hasText === hasHex) {
          fail(at, "expected exactly one of text or hex");
          return;
        }
        const hex = String(c.hex ?? "").replace(/\s+/g, "");
        if (hasHex && !/^([0-9a-fA-F]{2})+$/.test(hex)) {
          fail(`${at}.hex`, `expected pairs of hex digits, got "${c.hex}"`);
          return;
        }
        commands.push({
          name: cmdName,
          bytes: hasText ? Buffer.from(String(c.text)) : Buffer.from(hex, "hex"),
        });
      });
  }
  if (problems.length > 0) throw new ProfileError(file, problems);
  return {
    name,
    description,
    serial: {
      baudRate,
      dataBits: dataBits as SerialSettings["dataBits"],
      parity: parity as SerialSettings["parity"],
      stopBits: stopBits as SerialSettings["stopBits"],
    },
    framing: framing as DeviceProfile["framing"],
    decoder: decoder as DeviceProfile["decoder"],
    fields,
    publish: publish as DeviceProfile["publish"],
    subject,
    commands,
  };
}

/** Reads and validates one profile file. */
export function loadProfile(file: string): DeviceProfile {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ProfileError(file, [`cannot read: ${errorMessage(err)}`]);
  }
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (err) {
    throw new ProfileError(file, [`not valid YAML: ${errorMessage(err)}`]);
  }
  return validateProfile(raw, file);
}
