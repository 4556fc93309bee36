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
 */
import { duration, list, obj, oneOf, type StringRule, str } from "../config/index.js";

/** Longest payload a `{payload}` template takes: far above any command argument. */
export const MAX_COMMAND_PAYLOAD_BYTES = 256;
/** How long a command waits for its answer unless its profile says otherwise. */
export const DEFAULT_COMMAND_TIMEOUT = "2s";
/** A timeout above this is a typo: the port is held by one command for all of it. */
const MAX_COMMAND_TIMEOUT_MS = 60_000;
export const PAYLOAD_PLACEHOLDER = "{payload}";
export const RESPONSE_RULES = ["next_frame", "prefix", "regex", "none"] as const;
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
  response: oneOf(RESPONSE_RULES, { default: "next_frame" }),
  match: str(),
  match_hex: str({ rule: HEX }),
  timeout: duration({ min: 1, max: MAX_COMMAND_TIMEOUT_MS, default: DEFAULT_COMMAND_TIMEOUT }),
});

export const COMMANDS_SCHEMA = list(COMMAND_SCHEMA, { default: [] });

/** How a command's answer is told apart from the other frames. */
export type ResponseMatch =
  | { readonly type: "next_frame" }
  | { readonly type: "prefix"; readonly prefix: Buffer }
  | { readonly type: "regex"; readonly regex: RegExp }
  | { readonly type: "none" };

/** A command the device understands, as checked when its profile loaded. */
export interface ProfileCommand {
  readonly name: string;
  /** The bytes written: fixed, or the template's with `{payload}` still in it. */
  readonly bytes: Buffer;
  /** The text template when the command takes a payload; undefined for fixed bytes. */
  readonly template: string | undefined;
  readonly response: ResponseMatch;
  readonly timeoutMs: number;
}

type CommandSection = {
  readonly name?: string;
  readonly text?: string;
  readonly hex?: string;
  readonly response?: ResponseRule;
  readonly match?: string;
  readonly match_hex?: string;
  readonly timeout?: number;
};

const hexBytes = (hex: string): Buffer => Buffer.from(hex.replace(/\s+/g, ""), "hex");

/**
 * A checked `commands` entry as the command it describes; the rules that span its keys
 * are reported through `problem` at `at` (`commands[2]`), and then undefined comes back.
 */
export function toProfileCommand(
  c: CommandSection,
  at: string,
  problem: (at: string, what: string) => void,
): ProfileCommand | undefined {
  const before = { count: 0 };
  const report = (where: string, what: string): void => {
    before.count++;
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
  if (c.hex?.includes(PAYLOAD_PLACEHOLDER)) {
    report(`${at}.hex`, "only text commands take {payload}");
  }
  if (before.count > 0 || c.name === undefined || response === undefined) return undefined;
  const template = c.text?.includes(PAYLOAD_PLACEHOLDER) ? c.text : undefined;
  return {
    name: c.name,
    bytes: c.text !== undefined ? Buffer.from(c.text) : hexBytes(c.hex ?? ""),
    template,
    response,
    timeoutMs: c.timeout ?? 2_000,
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
      return false;
  }
}
