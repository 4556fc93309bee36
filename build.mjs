// Bundles the CLI into dist/leafgate.mjs. Native addons cannot be bundled: they stay
// external and dist/package.json names them so `npm install` in dist/ fetches them.
import { cp, mkdir, readFile, rename, stat, writeFile } from "node:fs/promises";
import { build } from "esbuild";

const NATIVE_ADDONS = ["better-sqlite3", "serialport"];

// mqtt-packet traces every parse step through `debug`, which leafgate never enables: a
// no-op in its place saves loading tty at start-up and a call per step on the hot path.
const debugOff = {
  name: "debug-off",
  setup(b) {
    b.onResolve({ filter: /^debug$/ }, () => ({ path: "debug", namespace: "debug-off" }));
    b.onLoad({ filter: /.*/, namespace: "debug-off" }, () => ({
      contents:
        "const off = () => {}; off.enabled = false; off.extend = () => off; module.exports = () => off;",
      loader: "js",
    }));
  },
};

const pkg = JSON.parse(await readFile(new URL("./package.json", import.meta.url), "utf8"));
const outdir = new URL("./dist/", import.meta.url);
await mkdir(outdir, { recursive: true });

// Built in memory and renamed into place, so a concurrent run (another test process
// starting the bundle) never sees a missing or half-written file.
const { outputFiles } = await build({
  write: false,
  entryPoints: ["src/cli.ts"],
  outfile: "dist/leafgate.mjs",
  bundle: true,
  platform: "node",
  target: "node20",
  format: "esm",
  minify: true,
  sourcemap: "linked",
  legalComments: "none",
  external: NATIVE_ADDONS,
  plugins: [debugOff],
  define: { LEAFGATE_VERSION: JSON.stringify(pkg.version) },
  // ESM output still meets CommonJS dependencies that call require(). A 1 MB young
  // generation keeps RSS 25-35 MB lower; it costs throughput only under heavy load. An
  // old generation grown by 20% per collection rather than V8's up to 4x took the peak
  // RSS of a 200k drain from 134 to 90 MiB at the same CPU per message
  // (docs/performance.md).
  banner: {
    js: "#!/usr/bin/env -S node --max-semi-space-size=1 --heap-growing-percent=20\nimport { createRequire as __lgCreateRequire } from 'node:module'; const require = __lgCreateRequire(import.meta.url);",
  },
  logLevel: "warning",
});

// Shipped device profiles, found beside the bundle at run time.
await cp(new URL("./devices/", import.meta.url), new URL("devices/", outdir), { recursive: true });

const dependencies = Object.fromEntries(
  NATIVE_ADDONS.filter((name) => pkg.dependencies?.[name]).map((name) => [
    name,
    pkg.dependencies[name],
  ]),
);
await writeFile(
  new URL("package.json", outdir),
  `${JSON.stringify(
    {
      name: "leafgate",
      version: pkg.version,
      type: "module",
      bin: { leafgate: "leafgate.mjs" },
      engines: pkg.engines,
      dependencies,
    },
    null,
    2,
  )}\n`,
);

for (const file of outputFiles) {
  const tmp = `${file.path}.${process.pid}.tmp`;
  await writeFile(tmp, file.contents, { mode: file.path.endsWith(".mjs") ? 0o755 : 0o644 });
  await rename(tmp, file.path);
}
const { size } = await stat(new URL("leafgate.mjs", outdir));
console.log(`dist/leafgate.mjs ${(size / 1024).toFixed(0)} KiB`);
