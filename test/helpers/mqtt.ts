// Real MQTT clients that no one here wrote: mosquitto_pub/sub (Debian mosquitto-clients)
// and mqtt.js.
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { type RunResult, runToCompletion, spawnTracked } from "./procs.js";
import { waitFor } from "./wait.js";

/**
 * Publishes each line of `lines` as one message with `mosquitto_pub -l`.
 *
 * mosquitto_pub 2.0.11 in line mode exits at end of input without sending what it still
 * holds queued behind a full inflight window (seen: 20,049 of 100,000 reached a plain
 * mosquitto broker). So the inflight window is raised to its maximum (nothing queues
 * below 65,535 messages) and, with `until`, stdin stays open until the receiving side
 * confirms it has everything.
 */
export async function mosquittoPubLines(
  port: number,
  topic: string,
  lines: readonly string[],
  options: {
    qos?: 0 | 1 | 2;
    timeoutMs?: number;
    extraArgs?: string[];
    /** Keep stdin open until this holds (e.g. the gateway counted every message). */
    until?: () => boolean | Promise<boolean>;
  } = {},
): Promise<RunResult> {
  const args = [
    "-h",
    "127.0.0.1",
    "-p",
    String(port),
    "-t",
    topic,
    "-q",
    String(options.qos ?? 1),
    "-M",
    "65535",
    "-l",
    ...(options.extraArgs ?? []),
  ];
  const input = `${lines.join("\n")}\n`;
  const timeoutMs = options.timeoutMs ?? 60_000;
  if (options.until === undefined) {
    const result = await runToCompletion("mosquitto_pub", args, { input, timeoutMs });
    if (result.code !== 0) throw new Error(`mosquitto_pub exited ${result.code}: ${result.stderr}`);
    return result;
  }
  const proc = await spawnTracked("mosquitto_pub", args, { stdin: "pipe" });
  proc.child.stdin!.write(input);
  await waitFor(options.until, { timeoutMs, message: () => `mosquitto_pub: ${proc.describe()}` });
  proc.child.stdin!.end();
  const exit = await proc.exited;
  if (exit.code !== 0) throw new Error(`mosquitto_pub exited ${exit.code}: ${proc.describe()}`);
  return { ...exit, stdout: proc.stdout(), stderr: proc.stderr() };
}

/** Connects mqtt.js (MQTT 3.1.1) and resolves once CONNACK arrived. */
export async function connectMqttJs(
  port: number,
  options: IClientOptions = {},
): Promise<MqttClient> {
  const client = mqtt.connect({
    host: "127.0.0.1",
    port,
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 5_000,
    ...options,
  });
  await new Promise<void>((resolve, reject) => {
    client.once("connect", () => resolve());
    client.once("error", reject);
    client.once("close", () => reject(new Error("mqtt.js: connection closed before CONNACK")));
  });
  return client;
}
