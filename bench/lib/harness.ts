// What every bench shares: the repository's paths, a fresh bundle, a work directory removed at
// exit, and Ctrl-C as a clean exit. Benches run through bench/run.mjs (see docs/bench.md).
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
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
  const built = spawnSync(process.execPath, [join(ROOT, "build.mjs")], { stdio: "inherit" });
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

/** Resolves with `undefined` after `ms`, without keeping the process alive: for races. */
export const timeout = (ms: number): Promise<undefined> => delay(ms, undefined, { ref: false });
