import { LeafgateError } from "../core/errors.js";

/** Stable codes of {@link ConfigError}; docs/errors.md says how to fix each. */
export type ConfigErrorCode =
  | "LG_ERR_CONFIG_INVALID"
  | "LG_ERR_CONFIG_SYNTAX"
  | "LG_ERR_CONFIG_NOT_FOUND";

/** A configuration that cannot be used. `problems` lists every finding, one line each. */
export class ConfigError extends LeafgateError {
  declare readonly code: ConfigErrorCode;
  readonly problems: readonly string[];

  constructor(
    code: ConfigErrorCode,
    message: string,
    problems: readonly string[] = [],
    options?: ErrorOptions,
  ) {
    super(code, message, options);
    this.problems = Object.freeze([...problems]);
  }
}

/** `source` is the file's absolute path, or "defaults/environment" when there is none. */
export function invalidConfig(source: string, problems: readonly string[]): ConfigError {
  const lines = problems.map((p) => `\n  ${p}`).join("");
  return new ConfigError(
    "LG_ERR_CONFIG_INVALID",
    `invalid configuration in ${source}:${lines}`,
    problems,
  );
}
