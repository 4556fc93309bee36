// Starts leafgate in this process (fast, direct access to metrics) or as a child process
// from the built bundle (what users run). Both use a real config file in a temp dir.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadConfig } from "../../src/config/index.js";
import { silentLogger } from "../../src/core/index.js";
import { Gateway } from "../../src/gateway.js";
import { spawnTracked, type TrackedProcess, waitForLine } from "./procs.js";
import { type TempDir, tempDir } from "./wait.js";

export const BUNDLE = fileURLToPath(new URL("../../dist/leafgate.mjs", import.meta.url));

export interface GatewayConfigOptions {
  /** Hub URL; default a closed port, so the gateway buffers. */
  hub?: string;
  id?: string;
  mode?: "jetstream" | "core";
  stream?: string;
  /** Extra YAML appended verbatim (top-level sections not otherwise written). */
  extra?: string;
  /** Lines added under `upstream:`. */
  upstream?: string;
  /** Lines added under `mqtt:`. */
  mqtt?: string;
}

/** Writes a leafgate.yaml on ephemeral ports into a fresh temp dir. */
export function writeConfig(options: GatewayConfigOptions = {}): { dir: TempDir; file: string } {
  const dir = tempDir("gw");
  const file = join(dir.path, "leafgate.yaml");
  const yaml = `gateway:
  id: ${options.id ?? "gw1"}
  data_dir: ./data
mqtt:
${options.mqtt?.includes("listeners:") ? "" : "  listeners: [ { host: 127.0.0.1, port: 0 } ]\n"}${options.mqtt ?? ""}
upstream:
  servers: [ "${options.hub ?? "nats://127.0.0.1:1"}" ]
  mode: ${options.mode ?? "jetstream"}
${options.stream ? `  stream: ${options.stream}\n` : ""}${options.upstream ?? ""}
http:
  host: 127.0.0.1
  port: 0
${options.extra ?? ""}
`;
  writeFileSync(file, yaml);
  return { dir, file };
}

export interface TestGateway {
  readonly gateway: Gateway;
  readonly mqttPort: number;
  readonly dataDir: string;
  readonly dir: TempDir;
  stop(): Promise<void>;
  /** Stops and removes the temp dir. */
  dispose(): Promise<void>;
}

export async function startGateway(options: GatewayConfigOptions = {}): Promise<TestGateway> {
  const { dir, file } = writeConfig(options);
  const config = loadConfig({ file, env: {}, hostname: "test-host" });
  const gateway = new Gateway({ config, log: silentLogger });
  await gateway.start();
  const mqttPort = gateway.addresses().mqtt[0]!.port;
  return {
    gateway,
    mqttPort,
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
}

/** Runs `node dist/leafgate.mjs run -c FILE` and waits for its listening lines. */
export async function startGatewayProcess(
  file: string,
  env: NodeJS.ProcessEnv = {},
): Promise<ChildGateway> {
  // The gateway treats every LEAFGATE_* variable as a setting (a typo is an error), so
  // the runner's own (LEAFGATE_CHAOS_FULL…) must not leak into it.
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("LEAFGATE_")),
  );
  const proc = await spawnTracked(process.execPath, [BUNDLE, "run", "-c", file], {
    env: { ...inherited, ...env },
  });
  const portOf = async (msg: string): Promise<number> => {
    const line = await waitForLine(proc, (l) => l.includes(`"msg":"${msg}"`), 15_000);
    return (JSON.parse(line) as { port: number }).port;
  };
  const mqttPort = await portOf("mqtt listening");
  const httpPort = await portOf("http monitoring listening");
  return { proc, mqttPort, httpPort };
}
