// Builds dist/leafgate.mjs once per `vitest run` so e2e tests exercise the shipped bundle,
// not the sources.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../", import.meta.url));

export default async function setup(): Promise<void> {
  // While the CLI is being written there is nothing to bundle; tests that need the bundle
  // will fail on their own, the others should still run.
  if (!existsSync(`${root}src/cli.ts`)) {
    console.warn("global-setup: src/cli.ts does not exist yet, skipping `node build.mjs`");
    return;
  }
  const { status, signal, error } = spawnSync(process.execPath, ["build.mjs"], {
    cwd: root,
    stdio: "inherit",
  });
  if (error || status !== 0) {
    throw new Error(`global-setup: node build.mjs failed (status ${status}, signal ${signal})`, {
      cause: error,
    });
  }
}
