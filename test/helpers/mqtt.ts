// Real MQTT clients that no one here wrote: mosquitto_pub/sub (Debian mosquitto-clients)
// and mqtt.js.
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { type RunResult, spawnTracked, stopProcess, type TrackedProcess } from "./procs.js";
import { waitFor } from "./wait.js";

export interface MosquittoPubOptions {
  qos?: 0 | 1 | 2;
  extraArgs?: string[];
}

/** A running `mosquitto_pub -l`: each line written is published as one message. */
export interface MosquittoPub {
  readonly proc: TrackedProcess;
  /** Hands `lines` to mosquitto_pub, which publishes them in order as it reads them. */
  write(lines: readonly string[]): void;
  /**
   * Closes its input and resolves once it exited, after its last PUBACK; rejects on a
   * non-zero exit or after `timeoutMs`.
   */
  end(timeoutMs?: number): Promise<RunResult>;
}

/**
 * Starts `mosquitto_pub -l` with nothing to publish yet, so a test can publish part of
 * its messages, cause a fault, and publish the rest: the fault then lands mid-publish by
 * construction.
 *
 * mosquitto_pub 2.0.11 in line mode exits at end of input without sending what it still
 * holds queued behind a full inflight window (seen: 20,049 of 100,000 reached a plain
 * mosquitto broker). So the inflight window is raised to its maximum (nothing queues
 * below 65,535 messages).
 */
export async function startMosquittoPub(
  port: number,
  topic: string,
  options: MosquittoPubOptions = {},
): Promise<MosquittoPub> {
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
  const proc = await spawnTracked("mosquitto_pub", args, { stdin: "pipe" });
  return {
    proc,
    write(lines) {
      if (lines.length > 0) proc.child.stdin!.write(`${lines.join("\n")}\n`);
    },
    async end(timeoutMs = 60_000) {
      proc.child.stdin!.end();
      const exit = await waitFor(() => proc.exitInfo, {
        timeoutMs,
        message: () => `mosquitto_pub did not finish: ${proc.describe()}`,
      });
      if (exit.code !== 0) throw new Error(`mosquitto_pub exited ${exit.code}: ${proc.describe()}`);
      return { ...exit, stdout: proc.stdout(), stderr: proc.stderr() };
    },
  };
}

/**
 * Publishes each line of `lines` as one message with `mosquitto_pub -l` (see
 * startMosquittoPub). With `until`, stdin stays open until the receiving side confirms
 * it has everything.
 */
export async function mosquittoPubLines(
  port: number,
  topic: string,
  lines: readonly string[],
  options: MosquittoPubOptions & {
    timeoutMs?: number;
    /** Keep stdin open until this holds (e.g. the gateway counted every message). */
    until?: () => boolean | Promise<boolean>;
  } = {},
): Promise<RunResult> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const pub = await startMosquittoPub(port, topic, options);
  try {
    pub.write(lines);
    if (options.until !== undefined) {
      await waitFor(options.until, {
        timeoutMs,
        message: () => `mosquitto_pub: ${pub.proc.describe()}`,
      });
    }
    return await pub.end(timeoutMs);
  } catch (err) {
    await stopProcess(pub.proc, { signal: "SIGKILL" });
    throw err;
  }
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
