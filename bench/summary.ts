// `npm run bench`: runs each bench that owns a row of issue 14's table, one after the other,
// each with `--json` (and `--quick` when given), and prints their rows as one table in the
// issue's order; writes them all to bench-results.json (or `--json <file>`). A bench that
// fails, or a row missing or failing its checks, shows in the table and makes the exit 1,
// after everything is printed. `--from <dir>` reprints a table from <dir>/<bench>.json
// instead of running; `--only a,b` runs only those benches. See docs/bench.md "summary".
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { benchArgs, benchScript, benchWorkDir, writeJson } from "./lib/harness.js";
import {
  type BenchRun,
  NO_SUCH_BENCH,
  printSummary,
  readResult,
  summarize,
} from "./lib/summary-rows.js";
import { EXPECTED_ROWS } from "./lib/summary-schema.js";
import { fmt } from "./lib/table.js";

const DEFAULT_OUT = "bench-results.json";

const argv = process.argv.slice(2);
const { quick, json } = benchArgs(argv);
const optionOf = (name: string) => {
  const at = argv.indexOf(name);
  return at >= 0 ? argv[at + 1] : undefined;
};
const from = optionOf("--from");
const only = optionOf("--only")?.split(",");
const out = resolve(json ?? DEFAULT_OUT);
const benches = [...new Set(EXPECTED_ROWS.map((r) => r.bench))];
const unknown = only?.filter((b) => !benches.includes(b)) ?? [];
if (unknown.length > 0) {
  console.error(`summary: --only ${unknown.join(",")}: not one of ${benches.join(", ")}`);
  process.exit(2);
}

/** Runs `bench` (bundled beside this script by bench/run.mjs) with --json into `file`. */
function runBench(bench: string, file: string): Promise<number> {
  const script = benchScript(bench);
  if (!existsSync(script)) return Promise.resolve(Number.NaN);
  const args = [script, "--json", file, ...(quick ? ["--quick"] : [])];
  console.log(`\n=== ${bench}: node bench/run.mjs ${args.slice(1).join(" ")}\n`);
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { stdio: "inherit" });
    child.on("error", () => resolve(Number.NaN));
    child.on("exit", (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

const startedAt = new Date();
const t0 = performance.now();
const work = from ? undefined : benchWorkDir("summary");
const runs: BenchRun[] = [];
for (const bench of benches) {
  if (only && !only.includes(bench)) {
    runs.push({ bench, exitCode: null, seconds: 0, result: undefined, error: "not run (--only)" });
    continue;
  }
  const file = join(from ?? work!, `${bench}.json`);
  const tb = performance.now();
  const exitCode = from ? 0 : await runBench(bench, file);
  const seconds = (performance.now() - tb) / 1000;
  if (Number.isNaN(exitCode)) {
    runs.push({ bench, exitCode: 1, seconds, result: undefined, error: NO_SUCH_BENCH });
    continue;
  }
  runs.push({ bench, exitCode, seconds, ...readResult(file) });
}

const rows = EXPECTED_ROWS.map((e) => summarize(runs, e));

// --- the table ----------------------------------------------------------------------------

console.log(
  `\n=== summary${quick ? " (--quick)" : ""}: medians; ratio = leafgate / peer, in the same run\n`,
);
printSummary(rows);

const problems = rows.filter((s) => s.status === "failed" || s.status === "missing");
const badRuns = runs.filter((r) => r.exitCode !== null && r.exitCode !== 0);
for (const s of problems) {
  const why = s.problems.length > 0 ? s.problems.join("; ") : "no such row in its results";
  console.log(`!!! ${s.expected.scenario} (${s.expected.id}): ${s.status}: ${why}`);
}
for (const r of badRuns) {
  if (!problems.some((s) => s.expected.bench === r.bench)) {
    console.log(`!!! ${r.bench} exited ${r.exitCode}`);
  }
}

writeJson(out, {
  bench: "summary",
  quick,
  startedAt: startedAt.toISOString(),
  node: process.version,
  seconds: (performance.now() - t0) / 1000,
  benches: runs,
  rows: rows.map((s) => ({
    id: s.expected.id,
    scenario: s.expected.scenario,
    bench: s.expected.bench,
    status: s.status,
    met: s.met ?? null,
    problems: s.problems,
    row: s.row ?? null,
  })),
});
console.log(
  `\nresults, with each bench's CPU figures (also in its output above): ${out} (${fmt((performance.now() - t0) / 1000)} s)`,
);
process.exit(problems.length > 0 || badRuns.length > 0 ? 1 : 0);
