// The data dir is private whatever the umask: the bundle runs under umask 000 (checked in
// /proc), and the data dir must be 0700 and every file in it (database, WAL, disk reserve)
// 0600, while it runs and after it stopped. A data dir or files left wider (an older
// leafgate, a copy) are tightened, each with a warning; a data dir shared with other files
// is not changed, with a warning that says what to do.
import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { BUNDLE, childEnv, writeConfig } from "../helpers/gateway.js";
import { mosquittoPubLines } from "../helpers/mqtt.js";
import {
  spawnTracked,
  stopAll,
  stopProcess,
  type TrackedProcess,
  waitForLine,
} from "../helpers/procs.js";
import type { TempDir } from "../helpers/wait.js";

const RESERVE_BYTES = 16 * 1024 * 1024;
const MESSAGES = 50;

const dirs: TempDir[] = [];
afterEach(async () => {
  await stopAll();
  for (const d of dirs.splice(0)) await d.cleanup();
});

const octal = (mode: number): string => (mode & 0o7777).toString(8).padStart(4, "0");

/** Every entry of `dir` with its permission bits, by name. */
function modes(dir: string): Record<string, string> {
  return Object.fromEntries(
    readdirSync(dir)
      .sort()
      .map((name) => [name, octal(statSync(join(dir, name)).mode)]),
  );
}

/** The bundle under umask 000, so nothing it makes is private by the umask's grace. */
async function runUnderUmask0(file: string): Promise<TrackedProcess> {
  const proc = await spawnTracked(
    "/bin/sh",
    ["-c", 'umask 000 && exec "$0" "$@"', process.execPath, BUNDLE, "run", "-c", file],
    { env: childEnv() },
  );
  await waitForLine(proc, (l) => l.includes('"msg":"ready"'), 15_000);
  // The shell exec'd node: same PID, and the umask it runs with is 0.
  const status = readFileSync(`/proc/${proc.pid}/status`, "utf8");
  expect(status).toMatch(/^Umask:\s+0000$/m);
  return proc;
}

function setUp(): { file: string; dataDir: string } {
  const { dir, file } = writeConfig();
  dirs.push(dir);
  return { file, dataDir: join(dir.path, "data") };
}

/** The store's warnings about modes: [message] in order. */
const storeWarnings = (proc: TrackedProcess): string[] =>
  proc
    .stdout()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as { level: number; part?: string; msg: string })
    .filter((r) => r.level === 40 && r.part === "store")
    .map((r) => r.msg);

describe("file modes under umask 000", () => {
  it("a new data dir is 0700 and the database, its WAL and the reserve 0600, running and after", async () => {
    const { file, dataDir } = setUp();
    const proc = await runUnderUmask0(file);
    // Messages stay in the outbox (no hub), so the WAL holds them.
    const port = (
      JSON.parse(await waitForLine(proc, (l) => l.includes('"msg":"mqtt listening"'))) as {
        port: number;
      }
    ).port;
    await mosquittoPubLines(
      port,
      "modes/t",
      Array.from({ length: MESSAGES }, (_, i) => `m${i}`),
    );
    expect(octal(statSync(dataDir).mode)).toBe("0700");
    expect(modes(dataDir)).toStrictEqual({
      "leafgate.db": "0600",
      "leafgate.db-wal": "0600",
      "leafgate.reserve": "0600",
    });
    expect(statSync(join(dataDir, "leafgate.reserve")).size).toBe(RESERVE_BYTES);
    expect(storeWarnings(proc)).toStrictEqual([]);

    expect((await stopProcess(proc)).code).toBe(0);
    expect(octal(statSync(dataDir).mode)).toBe("0700");
    // Whatever is left after the close (the WAL is checkpointed away), all of it is 0600.
    const after = modes(dataDir);
    expect(after["leafgate.db"]).toBe("0600");
    for (const [name, mode] of Object.entries(after)) expect(mode, name).toBe("0600");
  });

  it("a data dir and files left wider are tightened, each with a warning", async () => {
    const { file, dataDir } = setUp();
    mkdirSync(dataDir);
    chmodSync(dataDir, 0o755);
    // An empty database and WAL, and a whole reserve, as an older leafgate left them.
    for (const name of ["leafgate.db", "leafgate.db-wal"]) writeFileSync(join(dataDir, name), "");
    writeFileSync(join(dataDir, "leafgate.reserve"), Buffer.alloc(RESERVE_BYTES, 1));
    for (const name of ["leafgate.db", "leafgate.db-wal", "leafgate.reserve"]) {
      chmodSync(join(dataDir, name), 0o644);
    }
    const proc = await runUnderUmask0(file);
    expect(storeWarnings(proc)).toStrictEqual([
      `data dir ${dataDir} was 0755: set to 0700, as the buffered messages are for the gateway's user alone`,
      `${dataDir}/leafgate.db was 0644: set to 0600`,
      `${dataDir}/leafgate.db-wal was 0644: set to 0600`,
      `${dataDir}/leafgate.reserve was 0644: set to 0600`,
    ]);
    expect(octal(statSync(dataDir).mode)).toBe("0700");
    for (const [name, mode] of Object.entries(modes(dataDir))) expect(mode, name).toBe("0600");
  });

  it("a data dir shared with other files keeps its mode, with a warning; the gateway's files are 0600", async () => {
    const { file, dataDir } = setUp();
    mkdirSync(dataDir);
    chmodSync(dataDir, 0o755);
    writeFileSync(join(dataDir, "notes.txt"), "not the gateway's");
    chmodSync(join(dataDir, "notes.txt"), 0o644);
    const proc = await runUnderUmask0(file);
    expect(storeWarnings(proc)).toStrictEqual([
      `data dir ${dataDir} is 0755 and holds other files, so leafgate leaves its mode alone: give gateway.data_dir a directory of its own, or chmod 700 it`,
    ]);
    expect(octal(statSync(dataDir).mode)).toBe("0755");
    expect(modes(dataDir)).toStrictEqual({
      "leafgate.db": "0600",
      "leafgate.db-wal": "0600",
      "leafgate.reserve": "0600",
      "notes.txt": "0644",
    });
  });
});
