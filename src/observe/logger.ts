import { MASK, secretRedactor } from "../config/index.js";
import type { Logger } from "../core/index.js";

export type LogLevel = "debug" | "info" | "warn" | "error";

/** Keys whose values never reach a log line, at the top of a record or up to two levels down. */
const SECRET_KEYS = ["password", "pass", "token", "auth_token", "nkey_seed", "seed", "jwt"];
const SECRETS = new Set(SECRET_KEYS);
/** How deep below the top of a record a secret key is still masked. */
const REDACT_DEPTH = 2;

const LEVELS = { debug: 20, info: 30, warn: 40, error: 50 } as const;

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

type Fields = Record<string, unknown>;

/** An error as a plain object: its class, message, stack and own fields (such as `code`). */
function serializeError(err: Error): Fields {
  const base: Fields = {
    type: err.constructor?.name ?? "Error",
    message: err.message,
    stack: err.stack,
  };
  return Object.assign(base, err);
}

/**
 * A copy of `record` with secret keys masked down to REDACT_DEPTH and errors serialized;
 * the caller's objects are never changed. Iterative: a record's depth is the caller's, but
 * only REDACT_DEPTH levels are walked.
 */
function prepare(record: Fields): Fields {
  const out: Fields = {};
  for (const key of Object.keys(record)) out[key] = record[key];
  const todo: [Fields, number][] = [[out, 0]];
  while (todo.length > 0) {
    const [node, depth] = todo.pop()!;
    for (const key of Object.keys(node)) {
      let value = node[key];
      if (value === undefined) continue;
      if (SECRETS.has(key)) {
        node[key] = MASK;
        continue;
      }
      if (value instanceof Error) value = node[key] = serializeError(value);
      if (depth < REDACT_DEPTH && typeof value === "object" && value !== null) {
        const copy: Fields = Array.isArray(value)
          ? ([...value] as unknown as Fields)
          : { ...value };
        node[key] = copy;
        todo.push([copy, depth + 1]);
      }
    }
  }
  return out;
}

/** JSON of a record that cannot throw: cycles and BigInts become strings, and a value too
 * deep for JSON.stringify is replaced by a marker rather than losing the line. */
function stringify(record: Fields): string {
  try {
    return JSON.stringify(record);
  } catch {}
  const seen = new WeakSet<object>();
  try {
    return JSON.stringify(record, (_key, value: unknown) => {
      if (typeof value === "bigint") return value.toString();
      if (typeof value === "object" && value !== null) {
        if (seen.has(value)) return "[Circular]";
        seen.add(value);
      }
      return value;
    });
  } catch {}
  const flat: Fields = {};
  for (const [key, value] of Object.entries(record)) {
    if (typeof value === "bigint") flat[key] = value.toString();
    else flat[key] = typeof value === "object" && value !== null ? "[Unserializable]" : value;
  }
  return JSON.stringify(flat);
}

/**
 * One JSON object per line, as pino writes them (`level`, `time`, `pid`, bindings, fields,
 * `msg`), without pino: its transports, worker threads and redaction compiler cost several
 * MB of RSS and milliseconds of start-up that a gateway logging a few lines a minute never
 * earns back.
 */
class JsonLogger implements Logger {
  readonly #min: number;
  readonly #bindings: Fields;
  readonly #write: (line: string) => void;

  constructor(min: number, bindings: Fields, write: (line: string) => void) {
    this.#min = min;
    this.#bindings = bindings;
    this.#write = write;
  }

  debug(fields: Fields, msg: string): void {
    this.#log(LEVELS.debug, fields, msg);
  }
  info(fields: Fields, msg: string): void {
    this.#log(LEVELS.info, fields, msg);
  }
  warn(fields: Fields, msg: string): void {
    this.#log(LEVELS.warn, fields, msg);
  }
  error(fields: Fields, msg: string): void {
    this.#log(LEVELS.error, fields, msg);
  }

  child(bindings: Fields): Logger {
    return new JsonLogger(this.#min, { ...this.#bindings, ...bindings }, this.#write);
  }

  #log(level: number, fields: Fields, msg: string): void {
    if (level < this.#min) return;
    const record = prepare({ level, time: Date.now(), ...this.#bindings, ...fields });
    record.msg = msg;
    this.#write(`${stringify(record)}\n`);
  }
}

/** stdout, written synchronously (Linux writes pipes and files so); a closed stdout loses lines, never the process. */
function stdoutWriter(): (line: string) => void {
  const out = process.stdout;
  out.on("error", () => {});
  return (line) => {
    out.write(line);
  };
}

/** The process logger: JSON lines to stdout, pretty only when stdout is a TTY. */
export function createLogger(options: LoggerOptions): Logger {
  const pretty = options.pretty ?? process.stdout.isTTY === true;
  const destination =
    options.destination ?? (pretty ? prettyStream(process.stdout) : { write: stdoutWriter() });
  const scrub = scrubLine(options.scrub ?? secretRedactor([]));
  return new JsonLogger(LEVELS[options.level], { pid: process.pid }, (line) =>
    destination.write(scrub(line)),
  );
}
