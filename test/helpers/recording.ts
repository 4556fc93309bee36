import type { Bus, Envelope, LogFields, Logger } from "../../src/core/index.js";

/** A logger that keeps every line as [level, msg, fields]; its children write to it too. */
export function recordingLogger(): { log: Logger; lines: [string, string, LogFields][] } {
  const lines: [string, string, LogFields][] = [];
  const at =
    (level: string) =>
    (fields: LogFields, msg: string): void => {
      lines.push([level, msg, fields]);
    };
  const log: Logger = {
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    child: () => log,
  };
  return { log, lines };
}

/** Every message published on `bus` from now on, in order. */
export function recordPublished(bus: Bus): Envelope[] {
  const published: Envelope[] = [];
  bus.subscribe(">", {
    deliver: (m) => {
      published.push(m);
      return undefined;
    },
  });
  return published;
}
