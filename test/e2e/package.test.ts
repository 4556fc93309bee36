// The release tarballs (`npm run package`) as a user gets them. The x64 one is unpacked into
// an empty directory and installed by its own install.sh with no node_modules above it and
// no compiler, Node or npm on PATH; the gateway it installs, started by the systemd unit's
// command line, forwards MQTT and serial messages to a real hub, and survives an upgrade
// with its config and buffer. The arm64 one runs under qemu-user and forwards to a hub on
// this machine. Needs root (install.sh refuses otherwise) or passwordless sudo, and
// Debian's qemu-user-static, libc6-arm64-cross, libstdc++6-arm64-cross, g++-aarch64-linux-gnu
// and systemd (for systemd-analyze).
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { weatherCsv } from "../../firmware-sim/models-text.js";
import { Simulator } from "../../firmware-sim/simulator.js";
import { mosquittoPubLines } from "../helpers/mqtt.js";
import {
  closeClients,
  connectClient,
  type NatsServer,
  startNatsServer,
  streamMessages,
} from "../helpers/nats-server.js";
import {
  liveProcesses,
  runToCompletion,
  spawnTracked,
  stopAll,
  stopProcess,
  type TrackedProcess,
  waitForLine,
} from "../helpers/procs.js";
import { type TempDir, tempDir, waitFor } from "../helpers/wait.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
/** Packaging compiles better-sqlite3 twice when its cache is cold (about 2 minutes). */
const PACKAGE_TIMEOUT_MS = 15 * 60_000;
/** Node under qemu-user starts in seconds, not milliseconds. */
const EMULATED_TIMEOUT_MS = 120_000;
const MESSAGES = 50;
const WEATHER_ROWS = 5;
const decoder = new TextDecoder();

/** What install.sh and the launcher may use: no compiler, no Node, no npm. */
const TOOLS = [
  "sh",
  "cat",
  "chmod",
  "chown",
  "cp",
  "dirname",
  "getent",
  "id",
  "ln",
  "ls",
  "mkdir",
  "mv",
  "readlink",
  "rm",
  "sed",
  "tail",
  "uname",
  "useradd",
  "usermod",
  "userdel",
];
/** Root runs install.sh itself; anyone else needs passwordless sudo. */
const AS_ROOT = process.getuid?.() === 0 ? [] : ["sudo", "-n"];

const dirs: TempDir[] = [];
let release: string;
let hub: NatsServer;
let nc: NatsConnection;

beforeAll(async () => {
  const out = tempDir("release");
  dirs.push(out);
  const r = await runToCompletion(
    process.execPath,
    // The global setup built dist/ for this run.
    [join(ROOT, "packaging/package.mjs"), "--out", out.path, "--no-build"],
    {
      cwd: ROOT,
      timeoutMs: PACKAGE_TIMEOUT_MS,
    },
  );
  expect(r.code, r.stderr).toBe(0);
  release = out.path;
  hub = await startNatsServer();
  nc = await connectClient(hub.url, { maxReconnectAttempts: -1 });
}, PACKAGE_TIMEOUT_MS + 30_000);

afterEach(async () => {
  await Promise.all(
    liveProcesses()
      .filter((p) => p.pid !== hub?.pid)
      .map((p) => stopProcess(p)),
  );
});

afterAll(async () => {
  await closeClients();
  await hub?.stop();
  await stopAll();
  for (const d of dirs.splice(0)) await d.cleanup();
});

const tarball = (target: string) => join(release, `leafgate-${pkg.version}-${target}.tar.gz`);

function unpack(target: string, into: string): string {
  mkdirSync(into, { recursive: true });
  execFileSync("tar", ["-xzf", tarball(target), "-C", into]);
  return join(into, `leafgate-${pkg.version}-${target}`);
}

/** The ELF machine of a binary: 62 is x86-64, 183 is AArch64. */
function elfMachine(file: string): number {
  const header = readFileSync(file).subarray(0, 20);
  expect(header.subarray(0, 4).toString("latin1")).toBe("\x7fELF");
  return header.readUInt16LE(18);
}

function files(dir: string, prefix = ""): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name), `${prefix}${e.name}/`) : [`${prefix}${e.name}`],
  );
}

/** A directory of links to TOOLS only, to be the whole PATH. */
function restrictedPath(dir: string): string {
  mkdirSync(dir);
  for (const tool of TOOLS) {
    const found = execFileSync("sh", ["-c", `command -v ${tool}`])
      .toString()
      .trim();
    symlinkSync(found, join(dir, tool));
  }
  return dir;
}

/** The ports a gateway process logged as listening on. */
async function listening(proc: TrackedProcess, timeoutMs: number) {
  const portOf = async (msg: string) => {
    const line = await waitForLine(proc, (l) => l.includes(`"msg":"${msg}"`), timeoutMs);
    return (JSON.parse(line) as { port: number }).port;
  };
  return { mqtt: await portOf("mqtt listening"), http: await portOf("http monitoring listening") };
}

async function ready(httpPort: number): Promise<boolean> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/readyz`).catch(() => undefined);
  return res?.status === 200;
}

async function pending(httpPort: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/status`);
  return ((await res.json()) as { outbox: { pending: number } }).outbox.pending;
}

/** The config a user would write: this hub, free ports, `extra` on top. */
function configure(file: string, gatewayId: string, extra: Record<string, unknown> = {}): void {
  const config = parse(readFileSync(file, "utf8")) as Record<string, Record<string, unknown>>;
  config.gateway = { ...config.gateway, id: gatewayId };
  config.upstream = { servers: [hub.url] };
  config.mqtt = { listeners: [{ host: "127.0.0.1", port: 0 }] };
  config.nats = { listeners: [{ host: "127.0.0.1", port: 0 }] };
  config.http = { host: "127.0.0.1", port: 0 };
  writeFileSync(file, stringify({ ...config, ...extra }));
}

/** Every message on `subject`'s stream under `edge.<gatewayId>.`, in stream order. */
async function forwarded(gatewayId: string): Promise<{ subject: string; data: string }[]> {
  const jsm = await jetstreamManager(nc);
  const stream = await jsm.streams.find(`edge.${gatewayId}.x`);
  return (await streamMessages(nc, stream))
    .filter((m) => m.subject.startsWith(`edge.${gatewayId}.`))
    .map((m) => ({ subject: m.subject, data: decoder.decode(m.data) }));
}

describe("release tarballs", () => {
  it("hold the bundle, the target's Node and addons, install.sh and the unit, nothing else built", () => {
    for (const [target, machine] of [
      ["linux-x64", 62],
      ["linux-arm64", 183],
    ] as const) {
      const work = tempDir(`contents-${target}`);
      dirs.push(work);
      const dir = unpack(target, work.path);
      const all = files(dir);
      for (const f of [
        "bin/leafgate",
        "install.sh",
        "leafgate.service",
        "leafgate.yaml",
        "lib/leafgate.mjs",
        "lib/devices/weather-csv.yaml",
        "node/bin/node",
        "node/LICENSE",
        "VERSION",
      ]) {
        expect(all, `${target}: ${f}`).toContain(f);
      }
      expect(elfMachine(join(dir, "node/bin/node"))).toBe(machine);
      const natives = all.filter((f) => f.endsWith(".node"));
      expect(natives.length, natives.join(", ")).toBeGreaterThanOrEqual(2);
      for (const f of natives) expect(elfMachine(join(dir, f)), f).toBe(machine);
      expect(natives).toContain(
        "lib/node_modules/better-sqlite3/build/Release/better_sqlite3.node",
      );
      // Only this target's serialport prebuilds; no sources, no build leftovers.
      const prebuilds = natives.filter((f) => f.includes("/prebuilds/"));
      expect(prebuilds.length).toBeGreaterThan(0);
      for (const f of prebuilds) expect(f).toContain(`/prebuilds/${target}/`);
      expect(
        all.filter((f) => /\.(c|cc|cpp|h|gyp|o|a)$/.test(f) || f.includes("/obj.target/")),
      ).toEqual([]);
      expect(all.some((f) => f.includes("prebuild-install"))).toBe(false);
      expect(statSync(join(dir, "install.sh")).mode & 0o111).not.toBe(0);
      expect(readFileSync(join(dir, "VERSION"), "utf8")).toMatch(
        new RegExp(`^${pkg.version.replaceAll(".", "\\.")} ${target} node-\\d+\\.\\d+\\.\\d+\\n$`),
      );
    }
  });

  it(
    "x64: installs into an empty directory with no node_modules, compiler or Node on PATH, forwards, upgrades with its data, uninstalls",
    async () => {
      const work = tempDir("install");
      dirs.push(work);
      const root = work.path;
      // As /opt and /etc are: others may traverse it (mkdtemp made it 0700).
      chmodSync(root, 0o755);
      for (let d = root; d !== "/"; d = dirname(d)) {
        expect(existsSync(join(d, "node_modules")), `${d}/node_modules`).toBe(false);
      }
      const PATH = restrictedPath(join(root, "path"));
      const env = { PATH };
      for (const tool of ["node", "npm", "gcc", "cc", "g++", "c++", "make", "python3"]) {
        const r = await runToCompletion("/bin/sh", ["-c", `command -v ${tool}`], { env });
        expect(r.code, `${tool} on the restricted PATH: ${r.stdout}`).not.toBe(0);
      }

      const unpacked = unpack("linux-x64", join(root, "unpack"));
      const dirsOf = {
        prefix: join(root, "opt/leafgate"),
        bin: join(root, "usr/local/bin"),
        config: join(root, "etc/leafgate"),
        data: join(root, "var/lib/leafgate"),
        unit: join(root, "etc/systemd/system"),
      };
      const user = execFileSync("id", ["-un"]).toString().trim();
      const install = (from: string, ...more: string[]) =>
        runToCompletion(
          AS_ROOT[0] ?? join(from, "install.sh"),
          [
            ...AS_ROOT.slice(1),
            ...(AS_ROOT.length > 0 ? ["env", `PATH=${PATH}`, join(from, "install.sh")] : []),
            "--prefix",
            dirsOf.prefix,
            "--bin-dir",
            dirsOf.bin,
            "--config-dir",
            dirsOf.config,
            "--data-dir",
            dirsOf.data,
            "--unit-dir",
            dirsOf.unit,
            "--user",
            user,
            "--no-systemd",
            ...more,
          ],
          { env, timeoutMs: 60_000 },
        );

      const first = await install(unpacked);
      expect(first.code, first.stderr + first.stdout).toBe(0);
      expect(first.stderr).toBe("");
      expect(first.stdout).toContain(`installed leafgate ${pkg.version} (linux-x64, node-`);
      const config = join(dirsOf.config, "leafgate.yaml");
      expect(statSync(config).mode & 0o777).toBe(0o640);
      expect(statSync(dirsOf.data).mode & 0o777).toBe(0o700);
      expect(parse(readFileSync(config, "utf8")).gateway.data_dir).toBe(dirsOf.data);

      // The unit names this install's paths and passes systemd's own check.
      const unitFile = join(dirsOf.unit, "leafgate.service");
      const unit = readFileSync(unitFile, "utf8");
      expect(unit).toContain(`ReadWritePaths=${dirsOf.data}\n`);
      expect(unit).toContain(`User=${user}\n`);
      expect(unit).toContain("ProtectSystem=strict\n");
      expect(unit).toContain("Restart=on-failure\n");
      const verify = await runToCompletion("systemd-analyze", ["verify", unitFile], {
        timeoutMs: 30_000,
      });
      expect(verify.code, verify.stderr).toBe(0);
      const execStart = /^ExecStart=(.+)$/m.exec(unit)![1]!.split(" ");
      expect(execStart).toEqual([join(dirsOf.prefix, "current/bin/leafgate"), "run", "-c", config]);

      // The installed command, on the restricted PATH, knows its runtime and addon.
      const version = await runToCompletion(join(dirsOf.bin, "leafgate"), ["version"], { env });
      expect(version.code, version.stderr).toBe(0);
      expect(version.stdout).toMatch(
        new RegExp(
          `^leafgate ${pkg.version.replaceAll(".", "\\.")} \\(node v22\\.\\d+\\.\\d+, sqlite 3\\.\\d+\\.\\d+, linux-x64\\)\\n$`,
        ),
      );

      // The command reads the installed config unless told otherwise.
      const effective = await runToCompletion(join(dirsOf.bin, "leafgate"), ["check"], { env });
      expect(effective.code, effective.stderr).toBe(0);
      expect(parse(effective.stdout).gateway.data_dir).toBe(dirsOf.data);

      // Someone else may not read it (it may hold secrets), and is told how to.
      if (AS_ROOT.length === 0) {
        const other = await runToCompletion(
          execFileSync("sh", ["-c", "command -v runuser"]).toString().trim(),
          ["-u", "nobody", "--", join(dirsOf.bin, "leafgate"), "check"],
          { env },
        );
        expect(other.code).toBe(2);
        expect(other.stderr).toContain(
          `cannot read config file ${config}: EACCES: permission denied, open '${config}'; run as root (sudo) or as a member of the file's group`,
        );
      }

      // The next release: same files, a newer version (made below).
      const next = join(root, "next");

      // A weather station on a serial pty, beside MQTT.
      const sim = new Simulator(weatherCsv, join(root, "tty-dev"), join(root, "tty-sim"));
      await sim.open();
      try {
        configure(config, "pi1", {
          serial: { ports: [{ path: sim.devicePath, profile: "weather-csv", device: "ws1" }] },
        });
        const create = await runToCompletion(
          join(dirsOf.bin, "leafgate"),
          ["hub", "create-stream", "--yes", "-c", config],
          { env, timeoutMs: 30_000 },
        );
        expect(create.code, create.stderr + create.stdout).toBe(0);

        const gw = await spawnTracked(execStart[0]!, execStart.slice(1), { env });
        const ports = await listening(gw, 30_000);
        await waitFor(() => ready(ports.http), { timeoutMs: 30_000, message: () => gw.describe() });
        const lines = Array.from({ length: MESSAGES }, (_, i) => `reading ${i}`);
        await mosquittoPubLines(ports.mqtt, "sensors/kitchen/temp", lines);
        const rows = Array.from({ length: WEATHER_ROWS }, () => sim.sendGood());
        const want = [
          ...lines.map((data) => ({ subject: "edge.pi1.sensors.kitchen.temp", data })),
          ...rows.map((v) => ({
            subject: "edge.pi1.sensors.ws1.temperature",
            data: JSON.stringify({ value: v.temp_c, unit: "°C" }),
          })),
        ];
        const temperatureAndMqtt = async () =>
          (await forwarded("pi1")).filter(
            (m) => m.subject.endsWith(".kitchen.temp") || m.subject.endsWith(".ws1.temperature"),
          );
        await waitFor(async () => (await temperatureAndMqtt()).length >= want.length, {
          timeoutMs: 30_000,
          message: () => gw.describe(),
        });
        expect(await temperatureAndMqtt()).toEqual(want);
        expect((await forwarded("pi1")).length).toBe(MESSAGES + WEATHER_ROWS * 7);

        // Messages taken while the hub is away stay in the data dir across the upgrade.
        await hub.kill();
        await mosquittoPubLines(ports.mqtt, "sensors/kitchen/temp", [
          "while away 1",
          "while away 2",
        ]);
        await waitFor(async () => (await pending(ports.http)) === 2);
        expect((await stopProcess(gw)).code).toBe(0);

        execFileSync("cp", ["-a", unpacked, next]);
        const [, target, runtime] = readFileSync(join(next, "VERSION"), "utf8").trim().split(" ");
        writeFileSync(join(next, "VERSION"), `9.9.9 ${target} ${runtime}\n`);
        const configBefore = readFileSync(config, "utf8");
        const upgrade = await install(next);
        expect(upgrade.code, upgrade.stderr + upgrade.stdout).toBe(0);
        expect(upgrade.stdout).not.toContain("wrote ");
        expect(readFileSync(config, "utf8")).toBe(configBefore);
        expect(readdirSync(join(dirsOf.prefix, "releases")).sort()).toEqual([pkg.version, "9.9.9"]);
        expect(readFileSync(join(dirsOf.prefix, "current/VERSION"), "utf8")).toMatch(/^9\.9\.9 /);

        await hub.restart();
        const again = await spawnTracked(execStart[0]!, execStart.slice(1), { env });
        const after = await listening(again, 30_000);
        await waitFor(async () => (await pending(after.http)) === 0, {
          timeoutMs: 30_000,
          message: () => again.describe(),
        });
        // Read once this test's client is back on the restarted hub and JetStream answers
        // (a request before that times out).
        const kitchen = async () =>
          (await forwarded("pi1")).filter((m) => m.subject.endsWith(".kitchen.temp"));
        const mqtt = await waitFor(
          async () => {
            const got = await kitchen();
            return got.length >= MESSAGES + 2 ? got : undefined;
          },
          { timeoutMs: 30_000 },
        );
        expect(mqtt.map((m) => m.data)).toEqual([...lines, "while away 1", "while away 2"]);
        expect((await stopProcess(again)).code).toBe(0);
      } finally {
        await sim.close();
      }

      // A data dir the unit would not let the service write is pointed out.
      const elsewhere = join(root, "elsewhere");
      writeFileSync(config, stringify({ gateway: { data_dir: elsewhere } }));
      const moved = await install(unpacked);
      expect(moved.code, moved.stderr).toBe(0);
      expect(moved.stderr).toContain(
        `install.sh: warning: ${config} keeps its data in ${elsewhere}, but the service may write only to ${dirsOf.data}: run install.sh with --data-dir ${elsewhere}, or set gateway.data_dir to ${dirsOf.data}`,
      );

      // A config the new version refuses stops an upgrade before it switches.
      writeFileSync(config, "mqtt:\n  listners: []\n");
      const refused = await install(next);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain("is not valid for leafgate 9.9.9");
      expect(readFileSync(join(dirsOf.prefix, "current/VERSION"), "utf8")).toMatch(
        new RegExp(`^${pkg.version.replaceAll(".", "\\.")} `),
      );

      const uninstall = await install(unpacked, "--uninstall");
      expect(uninstall.code, uninstall.stderr).toBe(0);
      expect(existsSync(dirsOf.prefix)).toBe(false);
      expect(existsSync(join(dirsOf.bin, "leafgate"))).toBe(false);
      expect(existsSync(unitFile)).toBe(false);
      expect(existsSync(config)).toBe(true);
      expect(readdirSync(dirsOf.data)).toContain("leafgate.db");
      const purge = await install(unpacked, "--uninstall", "--purge");
      expect(purge.code, purge.stderr).toBe(0);
      expect(existsSync(dirsOf.config)).toBe(false);
      expect(existsSync(dirsOf.data)).toBe(false);
    },
    5 * 60_000,
  );

  it(
    "arm64 under qemu-user: the tarball's gateway forwards MQTT messages to a hub stream on this machine",
    async () => {
      const work = tempDir("arm64");
      dirs.push(work);
      const dir = unpack("linux-arm64", work.path);
      const qemu = ["-L", "/usr/aarch64-linux-gnu", join(dir, "node/bin/node")];
      // The launcher's own line, with qemu in front of its Node.
      const launcher = readFileSync(join(dir, "bin/leafgate"), "utf8");
      const flags = /"\$here\/\.\.\/node\/bin\/node" (.*) "\$here\/\.\.\/lib\/leafgate\.mjs"/
        .exec(launcher)![1]!
        .split(" ");
      const leafgate = (...args: string[]) => [
        ...qemu,
        ...flags,
        join(dir, "lib/leafgate.mjs"),
        ...args,
      ];

      const version = await runToCompletion("qemu-aarch64-static", leafgate("version"), {
        timeoutMs: EMULATED_TIMEOUT_MS,
      });
      expect(version.code, version.stderr).toBe(0);
      expect(version.stdout).toMatch(/, sqlite 3\.\d+\.\d+, linux-arm64\)\n$/);

      const config = join(work.path, "leafgate.yaml");
      writeFileSync(config, readFileSync(join(dir, "leafgate.yaml"), "utf8"));
      configure(config, "pi64", { gateway: { id: "pi64", data_dir: join(work.path, "data") } });
      const create = await runToCompletion(
        "qemu-aarch64-static",
        leafgate("hub", "create-stream", "--yes", "-c", config),
        { timeoutMs: EMULATED_TIMEOUT_MS },
      );
      expect(create.code, create.stderr + create.stdout).toBe(0);

      const started = performance.now();
      const gw = await spawnTracked("qemu-aarch64-static", leafgate("run", "-c", config));
      const ports = await listening(gw, EMULATED_TIMEOUT_MS);
      const listeningMs = performance.now() - started;
      await waitFor(() => ready(ports.http), {
        timeoutMs: EMULATED_TIMEOUT_MS,
        message: () => gw.describe(),
      });
      const readyMs = performance.now() - started;
      const rssOf = () =>
        Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${gw.pid}/status`, "utf8"))![1]) / 1024;
      const idleMiB = rssOf();

      const lines = Array.from({ length: MESSAGES }, (_, i) => `arm64 reading ${i}`);
      await mosquittoPubLines(ports.mqtt, "sensors/shed/temp", lines, {
        timeoutMs: EMULATED_TIMEOUT_MS,
      });
      await waitFor(async () => (await pending(ports.http)) === 0, {
        timeoutMs: EMULATED_TIMEOUT_MS,
        message: () => gw.describe(),
      });
      const got = await forwarded("pi64");
      expect(got).toEqual(lines.map((data) => ({ subject: "edge.pi64.sensors.shed.temp", data })));

      const forwardedMiB = rssOf();
      const figures = {
        emulated: "qemu-aarch64-static on x86-64: timings are the emulator's, not a Pi's",
        tarballMiB: Number((statSync(tarball("linux-arm64")).size / 2 ** 20).toFixed(1)),
        spawnToMqttListeningMs: Math.round(listeningMs),
        spawnToReadyMs: Math.round(readyMs),
        rssIdleMiB: Number(idleMiB.toFixed(1)),
        rssAfterForwardingMiB: Number(forwardedMiB.toFixed(1)),
      };
      mkdirSync(join(ROOT, "test-artifacts"), { recursive: true });
      writeFileSync(
        join(ROOT, "test-artifacts/package-arm64.json"),
        `${JSON.stringify(figures, null, 2)}\n`,
      );
      console.log("arm64 under emulation:", figures);
      expect((await stopProcess(gw, { graceMs: 20_000 })).code).toBe(0);
    },
    5 * 60_000,
  );
});
