// What every bench shares: the repository's paths, a fresh bundle, a work directory removed at
// exit, and Ctrl-C as a clean exit. Benches run through bench/run.mjs (see docs/bench.md).
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";

/** The repository root, set by bench/run.mjs when it bundles the bench. */
declare const BENCH_ROOT: string;
export const ROOT = BENCH_ROOT;
export const BUNDLE = join(ROOT, "dist/leafgate.mjs");
export const DEVICES_DIR = join(ROOT, "devices");
/** Exit status of a bench stopped by Ctrl-C or SIGTERM (128 + SIGINT). */
const INTERRUPTED = 130;

/** A bench bundled beside this one (bench/<name>.ts), as a script to run with node. */
export function benchScript(name: string): string {
  return join(dirname(process.argv[1]!), `${name}.mjs`);
}

/**
 * Builds dist/leafgate.mjs as `npm run build` does. With `orExisting`, a failed build measures
 * the bundle already there (if any) instead of giving up.
 */
export function buildBundle({ orExisting = false } = {}): void {
  const built = spawnSync(process.execPath, [join(ROOT, "build.mjs")], {
    cwd: ROOT,
    stdio: "inherit",
  });
  if (built.status === 0) return;
  if (!orExisting || !existsSync(BUNDLE)) throw new Error("build failed");
  console.error("bench: build failed; measuring the existing dist/leafgate.mjs");
}

/**
 * A temp directory for this run, removed at exit; SIGINT and SIGTERM exit (and so run the exit
 * hooks, which also SIGKILL every child process test/helpers/procs.ts still tracks).
 */
export function benchWorkDir(name: string): string {
  const work = mkdtempSync(join(tmpdir(), `leafgate-${name}-`));
  process.on("exit", () => rmSync(work, { recursive: true, force: true }));
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => process.exit(INTERRUPTED));
  }
  return work;
}

/**
 * The Node flags of dist/leafgate.mjs's shebang (`#!/usr/bin/env -S node --flag ...`): the bundle
 * run as a user runs it, whatever flags the build gives it.
 */
export function bundleNodeFlags(): string[] {
  const first = readFileSync(BUNDLE, "utf8").slice(0, 200).split("\n", 1)[0]!;
  const words = first.replace(/^#!\S*env\s+(-S\s+)?/, "").split(/\s+/);
  if (!/^(.*\/)?node$/.test(words[0] ?? "")) throw new Error(`${BUNDLE}: no node shebang`);
  return words.slice(1).filter((w) => w !== "");
}

/** The options every bench takes: `--quick` (about a minute) and `--json <file>`. */
export interface BenchArgs {
  readonly quick: boolean;
  /** Where to write the results as JSON (bench/lib/summary-schema.ts). */
  readonly json: string | undefined;
}

export function benchArgs(argv: readonly string[] = process.argv.slice(2)): BenchArgs {
  const at = argv.indexOf("--json");
  const json = at >= 0 ? argv[at + 1] : undefined;
  if (at >= 0 && (json === undefined || json.startsWith("--"))) {
    throw new Error("--json needs a file name");
  }
  return { quick: argv.includes("--quick"), json };
}

/** Writes `value` as JSON to `file` (pretty, a newline at the end). */
export function writeJson(file: string, value: unknown): void {
  writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);
}

/** Resolves with `undefined` after `ms`, without keeping the process alive: for races. */
export const timeout = (ms: number): Promise<undefined> => delay(ms, undefined, { ref: false });
