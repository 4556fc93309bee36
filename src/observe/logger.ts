import pino from "pino";
import { MASK, secretRedactor } from "../config/index.js";
import type { Logger } from "../core/index.js";

export type LogLevel = "debug" | "info" | "warn" | "error";

/** Keys whose values never reach a log line, at the top of a record or up to two levels down. */
const SECRET_KEYS = ["password", "pass", "token", "auth_token", "nkey_seed", "seed", "jwt"];
const REDACT_PATHS = SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`]);

const LEVEL_LABELS: Record<number, string> = {
  10: "TRACE",
  20: "DEBUG",
  30: "INFO ",
  40: "WARN ",
  50: "ERROR",
  60: "FATAL",
};

/** One readable line per record for a person at a terminal; JSON stays the default. */
function prettyStream(out: NodeJS.WriteStream): { write(line: string): void } {
  return {
    write(line: string) {
      try {
        const { level, time, msg, pid: _pid, hostname: _host, err, ...rest } = JSON.parse(line);
        const stamp = new Date(time).toISOString().slice(11, 23);
        const extra = Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : "";
        const error = err?.message ? `\n    ${err.type ?? "Error"}: ${err.message}` : "";
        out.write(`${stamp} ${LEVEL_LABELS[level] ?? level} ${msg}${extra}${error}\n`);
      } catch {
        out.write(line);
      }
    },
  };
}

/** Applies `scrub` to every string (keys too) in a parsed JSON value; no recursion on depth. */
function scrubStrings(root: unknown, scrub: (text: string) => string): unknown {
  const fix = (v: unknown): unknown => (typeof v === "string" ? scrub(v) : v);
  const top = { v: root };
  const stack: Record<string, unknown>[] = [top];
  while (stack.length > 0) {
    const node = stack.pop()!;
    for (const key of Object.keys(node)) {
      const value = fix(node[key]);
      const name = scrub(key);
      if (name !== key) delete node[key];
      node[name] = value;
      if (typeof value === "object" && value !== null) stack.push(value as Record<string, unknown>);
    }
  }
  return top.v;
}

/**
 * The last step before a record is written: `scrub` over the whole JSON line, which
 * catches a secret wherever it hides (an error's message or stack, a URL in a field no
 * redact path names). A secret that is also part of the JSON syntax (a password of
 * digits inside a number) would break the line; then strings are scrubbed one by one.
 */
function scrubLine(scrub: (text: string) => string): (line: string) => string {
  return (line) => {
    const scrubbed = scrub(line);
    if (scrubbed === line) return line;
    try {
      JSON.parse(scrubbed);
      return scrubbed;
    } catch {
      try {
        return `${JSON.stringify(scrubStrings(JSON.parse(line), scrub))}\n`;
      } catch {
        return scrubbed;
      }
    }
  };
}

export interface LoggerOptions {
  readonly level: LogLevel;
  readonly pretty?: boolean;
  /**
   * Masks secrets in a text (`secretRedactor` of the config's secrets); applied to every
   * line written, after redaction by key. Without it, URL user info and nkey seeds are
   * still masked.
   */
  readonly scrub?: (text: string) => string;
  /** Where lines go instead of stdout (tests). */
  readonly destination?: { write(line: string): void };
}

/** The process logger: JSON lines to stdout, pretty only when stdout is a TTY. */
export function createLogger(options: LoggerOptions): Logger {
  const pretty = options.pretty ?? process.stdout.isTTY === true;
  const destination =
    options.destination ??
    (pretty ? prettyStream(process.stdout) : pino.destination({ dest: 1, sync: true }));
  return pino(
    {
      level: options.level,
      base: { pid: process.pid },
      redact: { paths: REDACT_PATHS, censor: MASK },
      serializers: { err: pino.stdSerializers.err },
      hooks: { streamWrite: scrubLine(options.scrub ?? secretRedactor([])) },
    },
    destination,
  ) as unknown as Logger;
}
