import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { resolveNode } from "../config/index.js";
import { errorMessage, isValidPattern } from "../core/index.js";
import { type ProfileCommand, toProfileCommand } from "./command-spec.js";
import { toDecoderSpec } from "./decoders/schema.js";
import { createDecoder, type DecoderSpec } from "./decoders.js";
import { createFramer, type FramingSpec } from "./framing.js";
import { type FramingSection, toFramingSpec } from "./framings/schema.js";
import { type ModbusSpec, toModbusSpec } from "./modbus-spec.js";
import { ProfileError } from "./profile-error.js";
import {
  type DecoderSection,
  type FIELD_TYPES,
  PROFILE_SCHEMA,
  type ProfileSections,
} from "./profile-schema.js";

export type { ProfileCommand } from "./command-spec.js";
export { ProfileError } from "./profile-error.js";

export type FieldType = (typeof FIELD_TYPES)[number];

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
 * `framing` and `decoder` are the checked sections as the file spells them, defaults
 * filled in; `spec` is what the device is built from.
 */
export interface DeviceProfile {
  /** The file it was read from (or the name it was validated under), for errors. */
  readonly file: string;
  readonly name: string;
  readonly description: string;
  readonly serial: SerialSettings;
  readonly framing: FramingSection;
  readonly decoder: DecoderSection;
  readonly fields: readonly ProfileField[];
  readonly publish: "per_field" | "per_frame";
  readonly subject: string;
  /** Requests it answers on `devices.{device}.cmd.{name}` (docs/serial.md, "Commands"). */
  readonly commands: readonly ProfileCommand[];
  /** A streaming device's framer and decoder specs, or what a Modbus device polls. */
  readonly spec:
    | { readonly kind: "stream"; readonly framing: FramingSpec; readonly decoder: DecoderSpec }
    | { readonly kind: "modbus"; readonly modbus: ModbusSpec };
}

/**
 * Validates a parsed profile: the schema, then the rules that span keys, then (for a
 * streaming device) its framer and decoder are built once. Every problem is collected
 * with its path and thrown as one {@link ProfileError} naming `file`.
 */
export function validateProfile(raw: unknown, file: string): DeviceProfile {
  const problems: string[] = [];
  const problem = (at: string, what: string): void => {
    problems.push(`${at}: ${what}`);
  };
  const p = (resolveNode(PROFILE_SCHEMA, raw, "", {
    defaults: { hostname: "" },
    problems,
    label: (at) => at || "top level",
    baseDir: () => ".",
  }) ?? {}) as Partial<ProfileSections>;

  // With problems found already, parts may be missing: each rule checks what is there.
  const fields = (p.fields ?? []).filter((f) => f !== undefined);
  const seen = new Set<string>();
  (p.fields ?? []).forEach((f, i) => {
    if (f?.name === undefined) return;
    if (seen.has(f.name)) problem(`fields[${i}].name`, `"${f.name}" is defined twice`);
    seen.add(f.name);
  });
  const publish = p.publish ?? "per_field";
  const subject =
    p.subject ?? (publish === "per_field" ? "sensors.{device}.{field}" : "sensors.{device}");
  checkSubject(subject, publish, problem);
  let spec: DeviceProfile["spec"] | undefined;
  if (p.decoder?.type === "modbus") {
    const sources = fields.map((f) => f.source ?? f.name);
    spec = { kind: "modbus", modbus: toModbusSpec(p.decoder, sources, problem) };
  } else if (problems.length === 0 && p.framing && p.decoder) {
    spec = buildStream(p.framing, p.decoder, problem);
  }
  // A Modbus command's default slave; undefined makes every command a byte string.
  const modbusSlave =
    p.decoder?.type === "modbus"
      ? ((spec?.kind === "modbus" ? spec.modbus.slaves[0] : undefined) ?? 1)
      : undefined;
  const commands: ProfileCommand[] = [];
  (p.commands ?? []).forEach((c, i) => {
    if (c === undefined) return;
    if (c.name !== undefined && commands.some((x) => x.name === c.name)) {
      problem(`commands[${i}].name`, `"${c.name}" is defined twice`);
    }
    const command = toProfileCommand(c, `commands[${i}]`, problem, modbusSlave);
    if (command !== undefined) commands.push(command);
  });
  if (problems.length > 0 || spec === undefined) throw new ProfileError(file, problems);
  const whole = p as ProfileSections;
  return {
    file,
    name: whole.name,
    description: whole.description ?? "",
    serial: {
      baudRate: whole.serial.baud_rate,
      dataBits: whole.serial.data_bits,
      parity: whole.serial.parity,
      stopBits: whole.serial.stop_bits,
    },
    framing: whole.framing,
    decoder: whole.decoder,
    fields: whole.fields.map((f) => ({
      name: f.name,
      source: f.source ?? f.name,
      type: f.type,
      unit: f.unit ?? null,
      scale: f.scale,
      offset: f.offset,
    })),
    publish,
    subject,
    commands,
    spec,
  };
}

/** `{device}`, `{field}` and `{kind}` stand for tokens; the rest must be a plain subject. */
function checkSubject(
  subject: string,
  publish: "per_field" | "per_frame",
  problem: (at: string, what: string) => void,
): void {
  const probe = subject
    .replaceAll("{device}", "d")
    .replaceAll("{field}", "f")
    .replaceAll("{kind}", "k");
  if (!isValidPattern(probe) || probe.includes("*") || probe.includes(">")) {
    problem(
      "subject",
      `expected a subject template like sensors.{device}.{field}, got "${subject}"`,
    );
  }
  if (publish === "per_field" && !subject.includes("{field}"))
    problem("subject", "per_field publishing needs {field} in the subject");
  if (publish === "per_frame" && subject.includes("{field}"))
    problem("subject", "per_frame publishing has no {field}; use {kind} or a fixed token");
}

/** Builds the framer and decoder once, so what spans their keys fails here, with a path. */
function buildStream(
  framingSection: FramingSection,
  decoderSection: Exclude<DecoderSection, { type: "modbus" }>,
  problem: (at: string, what: string) => void,
): DeviceProfile["spec"] | undefined {
  const framing = toFramingSpec(framingSection);
  const decoder = toDecoderSpec(decoderSection);
  for (const [at, build] of [
    ["framing", () => createFramer(framing, { frame: () => {}, bad: () => {} })],
    ["decoder", () => createDecoder(decoder)],
  ] as const) {
    try {
      build();
    } catch (err) {
      problem(at, errorMessage(err));
    }
  }
  return { kind: "stream", framing, decoder };
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
