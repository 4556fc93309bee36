// Runs a bench written in TypeScript: `node bench/run.mjs <name> [args...]`. esbuild (as in
// build.mjs) bundles every bench/*.ts into a directory of this run under node_modules/.cache
// (so packages resolve as from the source), then bench/<name> runs there with this Node.
// Benches start their siblings and themselves (aedes, publishers, writer) as these plain .mjs
// files: the processes measured carry no TypeScript loader. See docs/bench.md.
import { spawn } from "node:child_process";
import { readdirSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = fileURLToPath(new URL("../", import.meta.url));
const benchDir = fileURLToPath(new URL("./", import.meta.url));
const names = readdirSync(benchDir)
  .filter((f) => f.endsWith(".ts"))
  .map((f) => f.slice(0, -".ts".length));
const [name, ...args] = process.argv.slice(2);
if (!name || !names.includes(name)) {
  console.error(`usage: node bench/run.mjs <${names.join(" | ")}> [args...]`);
  process.exit(2);
}

const outdir = `${root}node_modules/.cache/leafgate-bench/${process.pid}`;
const removeOutdir = () => rmSync(outdir, { recursive: true, force: true });
process.on("exit", removeOutdir);
await build({
  entryPoints: names.map((n) => `${benchDir}${n}.ts`),
  outdir,
  outExtension: { ".js": ".mjs" },
  bundle: true,
  packages: "external",
  platform: "node",
  target: "node20",
  format: "esm",
  define: { BENCH_ROOT: JSON.stringify(root) },
  logLevel: "warning",
});

// Ctrl-C reaches the bench too (same process group): wait for it to clean up, then exit as it did.
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => bench.kill(sig));
const bench = spawn(process.execPath, [`${outdir}/${name}.mjs`, ...args], { stdio: "inherit" });
bench.on("exit", (code, signal) => {
  removeOutdir();
  process.exit(code ?? (signal ? 128 : 1));
});
