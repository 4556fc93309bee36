/**
 * Device commands: what a profile's `commands` section says, and the pure rules that turn
 * a request into bytes for the port and tell its answer among the frames that come back.
 *
 * Rules:
 * - A command writes fixed bytes (`hex`, or `text` without `{payload}`), or a `text`
 *   template whose every `{payload}` is replaced by the request's payload.
 * - A payload that fills a template is UTF-8 text of 1 to {@link MAX_COMMAND_PAYLOAD_BYTES}
 *   bytes without control characters (C0, DEL) and without the framing's line delimiter,
 *   so one request can never smuggle a second command onto the line. A fixed command
 *   ignores the payload.
 * - The answer is the first frame (as the profile's framing cut it) that the command's
 *   `response` rule accepts while the command waits: `next_frame` any frame; `prefix`
 *   a frame starting with `match` (text) or `match_hex` (bytes); `regex` a frame whose
 *   UTF-8 text `match` finds a match in. `none`: nothing is awaited; written is done.
 * - On a Modbus profile every command is a `modbus` request instead: a read of `count`
 *   registers (function 3 or 4; the payload is ignored), a write of one register
 *   (function 6; the payload is its value as JSON, `42` or `[42]`) or of `count` registers
 *   (function 16; the payload a JSON list of `count` values), each value 0..65535. Its
 *   answer is the slave's, framed and checked as the poller frames and checks reads.
 */
import {
  duration,
  formatDuration,
  int,
  list,
  obj,
  oneOf,
  optionalObj,
  type StringRule,
  str,
} from "../config/index.js";
import {
  encodeReadRequest,
  encodeWriteRequest,
  MAX_READ_COUNT,
  MAX_SLAVE,
  MAX_WRITE_COUNT,
  MIN_SLAVE,
  READ_HOLDING_REGISTERS,
  READ_INPUT_REGISTERS,
  WRITE_MULTIPLE_REGISTERS,
  WRITE_SINGLE_REGISTER,
} from "./modbus.js";

/** Longest payload a `{payload}` template takes: far above any command argument. */
export const MAX_COMMAND_PAYLOAD_BYTES = 256;
/** How long a command waits for its answer unless its profile says otherwise. */
export const DEFAULT_COMMAND_TIMEOUT_MS = 2_000;
/** A timeout above this is a typo: the port is held by one command for all of it. */
const MAX_COMMAND_TIMEOUT_MS = 60_000;
export const PAYLOAD_PLACEHOLDER = "{payload}";
export const RESPONSE_RULES = ["next_frame", "prefix", "regex", "none"] as const;
const MODBUS_FUNCTIONS = [
  READ_HOLDING_REGISTERS,
  READ_INPUT_REGISTERS,
  WRITE_SINGLE_REGISTER,
  WRITE_MULTIPLE_REGISTERS,
] as const;
const MAX_ADDRESS = 0xffff;
export type ResponseRule = (typeof RESPONSE_RULES)[number];

/** A command's name becomes the last token of `devices.{device}.cmd.{name}`. */
const COMMAND_NAME: StringRule = {
  expected: "letters, digits, _ or - (it becomes a subject token)",
  test: (s) => /^[A-Za-z0-9_-]+$/.test(s),
};
/** Whitespace between the pairs is allowed: `42 4D E4`. */
export const HEX: StringRule = {
  expected: "pairs of hex digits",
  test: (s) => /^([0-9a-fA-F]{2})+$/.test(s.replace(/\s+/g, "")),
};

/** One entry of a profile's `commands` list; docs/profiles.md has each key's meaning. */
export const COMMAND_SCHEMA = obj({
  name: str({ rule: COMMAND_NAME, required: "a command name" }),
  text: str(),
  hex: str({ rule: HEX }),
  response: oneOf(RESPONSE_RULES), // default next_frame; none for a modbus command
  match: str(),
  match_hex: str({ rule: HEX }),
  modbus: optionalObj({
    function: oneOf(MODBUS_FUNCTIONS, {
      required: "3 or 4 (read), 6 or 16 (write)",
      expected: "3 or 4 (read holding or input registers), 6 or 16 (write one or several)",
    }),
    address: int(0, MAX_ADDRESS, { required: `an integer from 0 to ${MAX_ADDRESS}` }),
    count: int(1, MAX_READ_COUNT), // default 1
    slave: int(MIN_SLAVE, MAX_SLAVE), // default the profile's (first) slave
  }),
  timeout: duration({
    min: 1,
    max: MAX_COMMAND_TIMEOUT_MS,
    default: formatDuration(DEFAULT_COMMAND_TIMEOUT_MS),
  }),
});

export const COMMANDS_SCHEMA = list(COMMAND_SCHEMA, { default: [] });

/** How a command's answer is told apart from the other frames. */
export type ResponseMatch =
  | { readonly type: "next_frame" }
  | { readonly type: "prefix"; readonly prefix: Buffer }
  | { readonly type: "regex"; readonly regex: RegExp }
  | { readonly type: "none" }
  /** A Modbus request: the device frames and checks the slave's answer itself. */
  | { readonly type: "modbus" };

/** A Modbus command: what it reads or writes. */
export interface ModbusCommand {
  readonly fn: (typeof MODBUS_FUNCTIONS)[number];
  readonly address: number;
  readonly count: number;
  readonly slave: number;
}

/** A command the device understands, as checked when its profile loaded. */
export interface ProfileCommand {
  readonly name: string;
  /** The bytes written: fixed, or the template's with `{payload}` still in it. */
  readonly bytes: Buffer;
  /** The text template when the command takes a payload; undefined for fixed bytes. */
  readonly template: string | undefined;
  readonly response: ResponseMatch;
  readonly timeoutMs: number;
  /** Set for a Modbus command (then `bytes` is empty and `template` undefined). */
  readonly modbus: ModbusCommand | undefined;
}

type CommandSection = {
  readonly name?: string;
  readonly text?: string;
  readonly hex?: string;
  readonly response?: ResponseRule;
  readonly match?: string;
  readonly match_hex?: string;
  readonly timeout?: number;
  readonly modbus?: {
    readonly function?: ModbusCommand["fn"];
    readonly address?: number;
    readonly count?: number;
    readonly slave?: number;
  };
};

const hexBytes = (hex: string): Buffer => Buffer.from(hex.replace(/\s+/g, ""), "hex");

/**
 * A checked `commands` entry as the command it describes; the rules that span its keys
 * are reported through `problem` at `at` (`commands[2]`), and then undefined comes back.
 * `modbusSlave` is the profile's (first) slave on a Modbus profile, undefined on others.
 */
export function toProfileCommand(
  c: CommandSection,
  at: string,
  problem: (at: string, what: string) => void,
  modbusSlave: number | undefined,
): ProfileCommand | undefined {
  if (modbusSlave !== undefined || c.modbus !== undefined) {
    return toModbusCommand(c, at, problem, modbusSlave);
  }
  let problems = 0;
  const report = (where: string, what: string): void => {
    problems++;
    problem(where, what);
  };
  if ((c.text === undefined) === (c.hex === undefined)) {
    report(at, "expected exactly one of text or hex");
  }
  const rule = c.response ?? "next_frame";
  let response: ResponseMatch | undefined;
  if (rule === "prefix") {
    if ((c.match === undefined) === (c.match_hex === undefined)) {
      report(at, "response: prefix needs exactly one of match (text) or match_hex (bytes)");
    } else {
      response = {
        type: "prefix",
        prefix: c.match !== undefined ? Buffer.from(c.match) : hexBytes(c.match_hex ?? ""),
      };
    }
  } else if (rule === "regex") {
    if (c.match === undefined || c.match_hex !== undefined) {
      report(at, "response: regex needs match (a regular expression) and no match_hex");
    } else {
      try {
        response = { type: "regex", regex: new RegExp(c.match) };
      } catch (err) {
        report(`${at}.match`, `not a regular expression: ${(err as Error).message}`);
      }
    }
  } else if (c.match !== undefined || c.match_hex !== undefined) {
    report(at, `response: ${rule} takes no match or match_hex (use prefix or regex)`);
  } else {
    response = { type: rule };
  }
  if (problems > 0 || c.name === undefined || response === undefined) return undefined;
  const template = c.text?.includes(PAYLOAD_PLACEHOLDER) ? c.text : undefined;
  return {
    name: c.name,
    bytes: c.text !== undefined ? Buffer.from(c.text) : hexBytes(c.hex ?? ""),
    template,
    response,
    timeoutMs: c.timeout ?? DEFAULT_COMMAND_TIMEOUT_MS,
    modbus: undefined,
  };
}

/** A `modbus` command entry, on a Modbus profile only; see toProfileCommand. */
function toModbusCommand(
  c: CommandSection,
  at: string,
  problem: (at: string, what: string) => void,
  slave: number | undefined,
): ProfileCommand | undefined {
  let problems = 0;
  const report = (where: string, what: string): void => {
    problems++;
    problem(where, what);
  };
  if (slave === undefined) {
    report(`${at}.modbus`, "only a Modbus profile (decoder.type: modbus) takes modbus commands");
  } else if (c.modbus === undefined) {
    report(at, "a Modbus profile's command needs modbus: { function, address }");
  }
  for (const key of ["text", "hex", "response", "match", "match_hex"] as const) {
    if (c[key] !== undefined) report(`${at}.${key}`, `a modbus command takes no ${key}`);
  }
  const m = c.modbus;
  if (m?.function === undefined || m.address === undefined || slave === undefined) return undefined;
  const fn = m.function;
  const max =
    fn === WRITE_SINGLE_REGISTER
      ? 1
      : fn === WRITE_MULTIPLE_REGISTERS
        ? MAX_WRITE_COUNT
        : MAX_READ_COUNT;
  const count = m.count ?? 1;
  if (count > max)
    report(`${at}.modbus.count`, `function ${fn} takes 1..${max} registers, got ${count}`);
  if (m.address + count > MAX_ADDRESS + 1) {
    report(
      `${at}.modbus`,
      `registers ${m.address}..${m.address + count - 1} run past ${MAX_ADDRESS}`,
    );
  }
  if (problems > 0 || c.name === undefined) return undefined;
  return {
    name: c.name,
    bytes: Buffer.alloc(0),
    template: undefined,
    response: { type: "modbus" },
    timeoutMs: c.timeout ?? DEFAULT_COMMAND_TIMEOUT_MS,
    modbus: { fn, address: m.address, count, slave: m.slave ?? slave },
  };
}

/** The bytes to write for a request, or why the request cannot be written. */
export type Encoded =
  | { readonly ok: true; readonly bytes: Buffer }
  | { readonly ok: false; readonly error: string };

/**
 * The bytes a request writes: the command's fixed bytes, or its template filled with
 * `payload` by the rules in this module's doc comment. `delimiter` is the line framing's
 * (undefined for other framings).
 */
export function encodeCommand(
  command: ProfileCommand,
  payload: Uint8Array,
  delimiter: string | undefined,
): Encoded {
  if (command.modbus !== undefined) return encodeModbus(command.name, command.modbus, payload);
  const template = command.template;
  if (template === undefined) return { ok: true, bytes: command.bytes };
  const needs = `command "${command.name}" needs a payload to fill {payload} in ${JSON.stringify(template)}`;
  if (payload.length === 0) return { ok: false, error: `${needs}; the request had none` };
  if (payload.length > MAX_COMMAND_PAYLOAD_BYTES) {
    return {
      ok: false,
      error: `${needs} of at most ${MAX_COMMAND_PAYLOAD_BYTES} bytes; the request had ${payload.length}`,
    };
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(payload);
  } catch {
    return { ok: false, error: `${needs} as UTF-8 text; the request's payload is not UTF-8` };
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it finds
  if (/[\u0000-\u001f\u007f]/.test(text) || (delimiter !== undefined && text.includes(delimiter))) {
    return {
      ok: false,
      error: `${needs} without control characters or line delimiters (one request writes one command)`,
    };
  }
  return { ok: true, bytes: Buffer.from(template.replaceAll(PAYLOAD_PLACEHOLDER, text)) };
}

/** A Modbus command's request ADU; a write's values come from the payload (JSON). */
function encodeModbus(name: string, m: ModbusCommand, payload: Uint8Array): Encoded {
  if (m.fn === READ_HOLDING_REGISTERS || m.fn === READ_INPUT_REGISTERS) {
    return { ok: true, bytes: encodeReadRequest(m.slave, m.fn, m.address, m.count) };
  }
  const wanted =
    m.fn === WRITE_SINGLE_REGISTER
      ? "a value 0..65535 as JSON (42, or [42])"
      : `a JSON list of ${m.count} values 0..65535`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(payload).toString("utf8"));
  } catch {
    parsed = undefined;
  }
  const values = typeof parsed === "number" && m.fn === WRITE_SINGLE_REGISTER ? [parsed] : parsed;
  const fits =
    Array.isArray(values) &&
    values.length === m.count &&
    values.every((v) => Number.isInteger(v) && v >= 0 && v <= 0xffff);
  if (!fits) {
    return {
      ok: false,
      error: `command "${name}" writes registers ${m.address}..${m.address + m.count - 1}: its payload must be ${wanted}`,
    };
  }
  return { ok: true, bytes: encodeWriteRequest(m.slave, m.fn, m.address, values as number[]) };
}

/** Whether `frame` answers a command that awaits `response`. */
export function matchesResponse(response: ResponseMatch, frame: Buffer): boolean {
  switch (response.type) {
    case "next_frame":
      return true;
    case "prefix":
      return (
        frame.length >= response.prefix.length &&
        frame.subarray(0, response.prefix.length).equals(response.prefix)
      );
    case "regex":
      return response.regex.test(frame.toString("utf8"));
    case "none":
    case "modbus":
      return false;
  }
}
