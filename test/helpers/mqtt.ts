// Real MQTT clients that no one here wrote: mosquitto_pub/sub (Debian mosquitto-clients)
// and mqtt.js.
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { type RunResult, runToCompletion } from "./procs.js";

/** Publishes each line of `lines` as one message with `mosquitto_pub -l`. */
export async function mosquittoPubLines(
  port: number,
  topic: string,
  lines: readonly string[],
  options: { qos?: 0 | 1 | 2; timeoutMs?: number; extraArgs?: string[] } = {},
): Promise<RunResult> {
  const result = await runToCompletion(
    "mosquitto_pub",
    [
      "-h",
      "127.0.0.1",
      "-p",
      String(port),
      "-t",
      topic,
      "-q",
      String(options.qos ?? 1),
      "-l",
      ...(options.extraArgs ?? []),
    ],
    { input: `${lines.join("\n")}\n`, timeoutMs: options.timeoutMs ?? 60_000 },
  );
  if (result.code !== 0) {
    throw new Error(`mosquitto_pub exited ${result.code}: ${result.stderr}`);
  }
  return result;
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
