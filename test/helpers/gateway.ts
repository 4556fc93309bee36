// Starts leafgate in this process (fast, direct access to metrics) or as a child process
// from the built bundle (what users run). Both use a real config file in a temp dir,
// written from a typed object (test/helpers/config.ts).
import { fileURLToPath } from "node:url";
import { loadConfig } from "../../src/config/index.js";
import { silentLogger } from "../../src/core/index.js";
import { Gateway } from "../../src/gateway.js";
import { type GatewayConfigInput, writeConfig } from "./config.js";
import { spawnTracked, type TrackedProcess, waitForLine } from "./procs.js";
import type { TempDir } from "./wait.js";

export { type GatewayConfigInput, writeConfig } from "./config.js";

export const BUNDLE = fileURLToPath(new URL("../../dist/leafgate.mjs", import.meta.url));

/** How long a child gateway may take to print each of its listening lines. */
const LISTENING_TIMEOUT_MS = 15_000;

export interface TestGateway {
  readonly gateway: Gateway;
  readonly mqttPort: number;
  /** The first NATS listener's port (undefined when the config has none). */
  readonly natsPort: number | undefined;
  readonly dataDir: string;
  readonly dir: TempDir;
  stop(): Promise<void>;
  /** Stops and removes the temp dir. */
  dispose(): Promise<void>;
}

export async function startGateway(input: GatewayConfigInput = {}): Promise<TestGateway> {
  const { dir, file } = writeConfig(input);
  const config = loadConfig({ file, env: {}, hostname: "test-host" });
  const gateway = new Gateway({ config, log: silentLogger });
  await gateway.start();
  const mqttPort = gateway.addresses().mqtt[0]!.port;
  return {
    gateway,
    mqttPort,
    natsPort: gateway.addresses().nats[0]?.port,
    dataDir: config.gateway.data_dir,
    dir,
    stop: () => gateway.stop(),
    dispose: async () => {
      await gateway.stop();
      await dir.cleanup();
    },
  };
}

export interface ChildGateway {
  readonly proc: TrackedProcess;
  readonly mqttPort: number;
  readonly httpPort: number;
  /** The first NATS listener's port (undefined when the config has none). */
  readonly natsPort: number | undefined;
}

/**
 * The environment for a child gateway: ours without LEAFGATE_* (the gateway treats every
 * such variable as a setting, a typo being an error, so the runner's own, like
 * LEAFGATE_CHAOS_FULL, must not leak into it), plus `env`.
 */
export function childEnv(env: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("LEAFGATE_")),
  );
  return { ...inherited, ...env };
}

/** Runs `node dist/leafgate.mjs run -c FILE` and waits for its listening lines. */
export async function startGatewayProcess(
  file: string,
  env: NodeJS.ProcessEnv = {},
): Promise<ChildGateway> {
  const proc = await spawnTracked(process.execPath, [BUNDLE, "run", "-c", file], {
    env: childEnv(env),
  });
  const portOf = async (msg: string): Promise<number> => {
    const line = await waitForLine(proc, (l) => l.includes(`"msg":"${msg}"`), LISTENING_TIMEOUT_MS);
    return (JSON.parse(line) as { port: number }).port;
  };
  const mqttPort = await portOf("mqtt listening");
  const httpPort = await portOf("http monitoring listening");
  // NATS listeners start before HTTP, so their line is already out if there is one.
  const natsLine = proc
    .stdout()
    .split("\n")
    .find((l) => l.includes('"msg":"nats listening"'));
  const natsPort =
    natsLine === undefined ? undefined : (JSON.parse(natsLine) as { port: number }).port;
  return { proc, mqttPort, httpPort, natsPort };
}
