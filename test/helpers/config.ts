// Gateway configs for tests, written from typed objects: a misspelt key or a section at the
// wrong depth is a type error here, not a silent default at run time. Serialised with the
// `yaml` package; `writeRawConfig` is only for tests whose point is the YAML text itself.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import YAML from "yaml";
import type { LeafgateConfig, PermissionsConfig } from "../../src/config/index.js";
import { type TempDir, tempDir } from "./wait.js";

/**
 * The file's shape of a config: every key optional, sizes and durations as numbers or
 * strings ("1MB", "200ms"), as users write them. Derived from the resolved type so that
 * the two cannot drift apart.
 */
export type GatewayConfigInput = ConfigInput<LeafgateConfig>;

/** The `upstream:` section, as written. */
export type UpstreamInput = NonNullable<GatewayConfigInput["upstream"]>;

/** A user's (or the default) publish and subscribe rules, as written. */
export type PermissionsInput = ConfigInput<PermissionsConfig>;

type ConfigInput<T> = T extends readonly (infer E)[]
  ? readonly ConfigInput<E>[]
  : T extends object
    ? { -readonly [K in keyof T]?: ConfigInput<T[K]> }
    : T extends number
      ? number | string
      : T;

/** A hub nobody listens on (port 1 is never ours): the gateway buffers. */
export const CLOSED_HUB = "nats://127.0.0.1:1";

/**
 * What every test config starts from: gateway gw1, loopback listeners on ephemeral ports,
 * no reachable hub. A test's own values are merged over it (lists replace lists).
 */
export const TEST_DEFAULTS = {
  gateway: { id: "gw1", data_dir: "./data" },
  mqtt: { listeners: [{ host: "127.0.0.1", port: 0 }] },
  nats: { listeners: [{ host: "127.0.0.1", port: 0 }] },
  upstream: { servers: [CLOSED_HUB], mode: "jetstream" },
  http: { host: "127.0.0.1", port: 0 },
} as const satisfies GatewayConfigInput;

/** `TEST_DEFAULTS` with `input` merged over it: mappings key by key, anything else replaced. */
export function testConfig(input: GatewayConfigInput = {}): GatewayConfigInput {
  return merge(TEST_DEFAULTS, input) as GatewayConfigInput;
}

function merge(base: unknown, over: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(over)) return over === undefined ? base : over;
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) out[key] = merge(base[key], value);
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** `testConfig(input)` as YAML text; with `testDefaults: false`, `input` alone. */
export function configYaml(
  input: GatewayConfigInput = {},
  { testDefaults = true }: WriteConfigOptions = {},
): string {
  return YAML.stringify(testDefaults ? testConfig(input) : input);
}

export interface WriteConfigOptions {
  /** false: only what `input` says, for tests of the built-in defaults; default true. */
  readonly testDefaults?: boolean;
}

export interface ConfigFile {
  readonly dir: TempDir;
  /** `<dir>/leafgate.yaml` */
  readonly file: string;
}

/** Writes `testConfig(input)` to leafgate.yaml in a fresh temp dir (data_dir `./data` in it). */
export function writeConfig(
  input: GatewayConfigInput = {},
  options: WriteConfigOptions = {},
): ConfigFile {
  return writeRawConfig(configYaml(input, options));
}

/** Writes the config to `file` (a test that places it itself: modes, owners). */
export function writeConfigAt(
  file: string,
  input: GatewayConfigInput = {},
  options: WriteConfigOptions = {},
): void {
  writeFileSync(file, configYaml(input, options));
}

/** Writes `yaml` as it is: for tests about the text (malformed, unknown keys, comments). */
export function writeRawConfig(yaml: string): ConfigFile {
  const dir = tempDir("gw");
  const file = join(dir.path, "leafgate.yaml");
  writeFileSync(file, yaml);
  return { dir, file };
}
