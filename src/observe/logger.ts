import pino from "pino";
import type { Logger } from "../core/index.js";

export type LogLevel = "debug" | "info" | "warn" | "error";

/** Paths whose values never reach a log line, wherever a caller puts them. */
const REDACT_PATHS = ["password", "token", "nkey_seed", "*.password", "*.token", "*.nkey_seed"];

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

/** The process logger: JSON lines to stdout, pretty only when stdout is a TTY. */
export function createLogger(options: { level: LogLevel; pretty?: boolean }): Logger {
  const pretty = options.pretty ?? process.stdout.isTTY === true;
  const destination = pretty
    ? prettyStream(process.stdout)
    : pino.destination({ dest: 1, sync: true });
  return pino(
    {
      level: options.level,
      base: { pid: process.pid },
      redact: { paths: REDACT_PATHS, censor: "***" },
      serializers: { err: pino.stdSerializers.err },
    },
    destination,
  ) as unknown as Logger;
}
