import { readFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import YAML from "yaml";
import { errorMessage } from "../core/errors.js";
import { ConfigError, invalidConfig } from "./errors.js";
import { resolveConfig } from "./resolve.js";
import { CONFIG_SCHEMA, type LeafgateConfig } from "./schema.js";
import { type Def, isMapping, toFileShape } from "./schema-engine.js";

/** Where the configuration comes from; each falls back to the process's own. */
export interface LoadConfigOptions {
  /** A YAML file, relative to `cwd`. Without one, defaults and environment only. */
  readonly file?: string;
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly hostname?: string;
  readonly cwd?: string;
}

const ENV_PREFIX = "LEAFGATE_";
/** Read by the CLI to find the file, not a setting. */
const RESERVED_ENV = new Set(["LEAFGATE_CONFIG"]);

/** A key path set by an environment variable, so its problems name the variable. */
interface EnvOrigin {
  readonly at: string;
  readonly name: string;
  /** The path the variable's name stands for; `at` may be below it. */
  readonly root: string;
}

/**
 * Reads, overrides, validates and deep-freezes the configuration. Order: built-in
 * defaults < file < `LEAFGATE_*` variables. Throws {@link ConfigError} listing every
 * problem found.
 */
export function loadConfig(options: LoadConfigOptions = {}): LeafgateConfig {
  const cwd = options.cwd ?? process.cwd();
  const file = options.file === undefined ? undefined : path.resolve(cwd, options.file);
  const problems: string[] = [];
  const raw = file === undefined ? {} : (readYaml(file) ?? {});
  // A non-mapping top level is reported by validation; env problems are still wanted.
  const origins = applyEnv(isMapping(raw) ? raw : {}, options.env ?? process.env, problems);
  // The most specific origin wins; among equals, the one applied last.
  const originOf = (at: string) => {
    let best: EnvOrigin | undefined;
    for (const o of origins) {
      const under = at === o.at || at.startsWith(`${o.at}.`) || at.startsWith(`${o.at}[`);
      if (under && (!best || o.at.length >= best.at.length)) best = o;
    }
    return best;
  };
  const config = resolveConfig(raw, {
    defaults: { hostname: options.hostname ?? os.hostname() },
    problems,
    label: (at) => {
      const o = originOf(at);
      return o ? o.name + at.slice(o.root.length) : at;
    },
    baseDir: (at, fromDefault) =>
      file === undefined || fromDefault || originOf(at) ? cwd : path.dirname(file),
  });
  if (problems.length > 0) throw invalidConfig(file ?? "defaults/environment", problems);
  return deepFreeze(config);
}

/** The effective configuration as YAML in the file's shape, secrets shown as `"***"`. */
export function formatConfig(config: LeafgateConfig): string {
  return YAML.stringify(toFileShape(CONFIG_SCHEMA, config));
}

function readYaml(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    // An installed config is 0640 root:leafgate (it may hold secrets): say how to read it.
    const hint =
      (err as NodeJS.ErrnoException).code === "EACCES"
        ? "; run as root (sudo) or as a member of the file's group"
        : "";
    const message = `cannot read config file ${file}: ${errorMessage(err)}${hint}`;
    throw new ConfigError("LG_ERR_CONFIG_NOT_FOUND", message, [message], { cause: err });
  }
  const doc = YAML.parseDocument(text);
  const problems = doc.errors.map((e) => {
    const pos = e.linePos?.[0];
    const where = pos ? ` at line ${pos.line}, column ${pos.col}` : "";
    // yaml appends the position and a source excerpt; keep the first line, reworded.
    const what = e.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
    return `syntax error in ${file}${where}: ${what}`;
  });
  try {
    if (problems.length === 0) return doc.toJS();
  } catch (err) {
    problems.push(`syntax error in ${file}: ${errorMessage(err)}`); // e.g. too many aliases
  }
  throw new ConfigError("LG_ERR_CONFIG_SYNTAX", problems[0]!, problems, { cause: doc.errors[0] });
}

/**
 * Finds the key path for the words of an env name. Keys contain underscores, so the
 * longest run of words naming a key wins, backtracking when the rest then fails.
 */
function matchEnv(node: Def, words: readonly string[]): { keys: string[]; node: Def } | undefined {
  if (words.length === 0) return { keys: [], node };
  if (node.kind !== "object") return undefined;
  for (let n = words.length; n > 0; n--) {
    const key = words.slice(0, n).join("_");
    const child = Object.hasOwn(node.fields, key) ? node.fields[key] : undefined;
    const rest = child && matchEnv(child, words.slice(n));
    if (rest) return { keys: [key, ...rest.keys], node: rest.node };
  }
  return undefined;
}

/** A string from the environment in the type its key expects; bad values stay strings. */
function coerceEnv(node: Def, value: string): unknown {
  const v = value.trim();
  switch (node.kind) {
    case "list":
      return v.split(",").flatMap((item) => (item.trim() ? [coerceEnv(node.of, item.trim())] : []));
    case "int":
      return /^[+-]?\d+$/.test(v) ? Number(v) : value;
    case "bool":
      return /^(true|yes|on|1)$/i.test(v) ? true : /^(false|no|off|0)$/i.test(v) ? false : value;
    default:
      return value;
  }
}

/**
 * Writes every `LEAFGATE_*` variable into `doc`, in name order so that a specific
 * variable (`LEAFGATE_UPSTREAM_MODE`) overrides a general one (`LEAFGATE_UPSTREAM`).
 * An empty value unsets the key, so its default applies.
 */
function applyEnv(
  doc: Record<string, unknown>,
  env: Readonly<Record<string, string | undefined>>,
  problems: string[],
): EnvOrigin[] {
  const origins: EnvOrigin[] = [];
  for (const name of Object.keys(env).sort()) {
    const value = env[name];
    if (!name.startsWith(ENV_PREFIX) || RESERVED_ENV.has(name) || value === undefined) continue;
    const match = matchEnv(CONFIG_SCHEMA, name.slice(ENV_PREFIX.length).toLowerCase().split("_"));
    if (!match || match.keys.length === 0) {
      problems.push(`${name}: no such setting`);
      continue;
    }
    let parsed: unknown;
    if (/^\s*[[{]/.test(value)) {
      try {
        parsed = YAML.parse(value);
      } catch (err) {
        problems.push(`${name}: invalid YAML: ${errorMessage(err).split("\n")[0]}`);
        continue;
      }
    } else {
      parsed = value === "" ? undefined : coerceEnv(match.node, value);
    }
    const root = match.keys.join(".");
    merge(doc, match.keys, parsed, (at) => origins.push({ at, name, root }));
  }
  return origins;
}

/**
 * Mappings merge key by key (`LEAFGATE_UPSTREAM='{mode: core}'` keeps the file's servers);
 * anything else replaces, and `undefined` deletes.
 */
function merge(
  doc: Record<string, unknown>,
  keys: readonly string[],
  value: unknown,
  setBy: (at: string) => void,
): void {
  let target = doc;
  for (const key of keys.slice(0, -1)) {
    target[key] ??= {};
    const next = target[key];
    if (!isMapping(next)) return; // validation reports the file's non-mapping
    target = next;
  }
  const last = keys[keys.length - 1]!;
  if (isMapping(value) && isMapping(target[last])) {
    for (const [k, v] of Object.entries(value)) merge(doc, [...keys, k], v, setBy);
    return;
  }
  setBy(keys.join("."));
  if (value === undefined) delete target[last];
  else target[last] = value;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
