import { type Infer, list, num, obj, oneOf, type StringRule, str, union } from "../config/index.js";
import { COMMANDS_SCHEMA } from "./command-spec.js";
import { DECODER_VARIANTS } from "./decoders/schema.js";
import { FRAMING_SCHEMA } from "./framings/schema.js";
import { MODBUS_DECODER } from "./modbus-spec.js";

/** What UARTs and USB adapters offer; a port in the config may set any other rate. */
const BAUD_RATES = [
  1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600,
] as const;
export const FIELD_TYPES = ["int", "float", "bool", "string"] as const;

/** A field's name becomes a subject token. */
const FIELD_NAME: StringRule = {
  expected: "letters, digits, _ or - (it becomes a subject token)",
  test: (s) => /^[A-Za-z0-9_-]+$/.test(s),
};

/**
 * A device profile file (`devices/<name>.yaml`): how to frame and decode a device's bytes,
 * which fields to publish and on which subjects. Keys and meanings: docs/profiles.md.
 * The rules that span keys are in profile.ts.
 */
export const PROFILE_SCHEMA = obj({
  name: str({ required: "a non-empty string" }),
  description: str(),
  // Line settings the profile suggests; a port in the config may override them.
  serial: obj({
    baud_rate: oneOf(BAUD_RATES, { default: 9600 }),
    data_bits: oneOf([5, 6, 7, 8], { default: 8 }),
    parity: oneOf(["none", "even", "odd"], { default: "none" }),
    stop_bits: oneOf([1, 2], { default: 1 }),
  }),
  framing: FRAMING_SCHEMA,
  decoder: union(
    "type",
    { ...DECODER_VARIANTS, modbus: MODBUS_DECODER },
    { required: "a mapping with type: json_lines, csv, key_value, nmea, struct or modbus" },
  ),
  fields: list(
    obj({
      name: str({ rule: FIELD_NAME, required: "a field name" }),
      source: str(), // the decoded value's name; default: name
      type: oneOf(FIELD_TYPES, { default: "float" }),
      unit: str(),
      scale: num({ default: 1 }),
      offset: num({ default: 0 }),
    }),
    {
      required: "a list of at least one field",
      minItems: 1,
      expected: "a list of at least one field",
    },
  ),
  publish: oneOf(["per_field", "per_frame"], { default: "per_field" }),
  subject: str(), // default by publish, see profile.ts
  // Requests on devices.{device}.cmd.{name}: what to write, and which frame answers.
  commands: COMMANDS_SCHEMA,
});

/** A profile file as the schema resolves it, before the rules that span keys. */
export type ProfileSections = Infer<typeof PROFILE_SCHEMA>;
export type DecoderSection = ProfileSections["decoder"];
