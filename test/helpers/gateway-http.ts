// A gateway child process seen through its monitoring endpoint: /status and /metrics.
import type { ChildGateway } from "./gateway.js";

export interface GatewayStatus {
  upstream: { state: string; server?: string };
  outbox: { pending: number; lastId: number };
}

export async function gatewayStatus(gw: ChildGateway): Promise<GatewayStatus> {
  const res = await fetch(`http://127.0.0.1:${gw.httpPort}/status`);
  return (await res.json()) as GatewayStatus;
}

/**
 * Every sample of the Prometheus text from /metrics, keyed `name` or `name{labels}` exactly
 * as exposed (e.g. `leafgate_upstream_publish_errors_total{reason="400"}`).
 */
export async function gatewayMetrics(gw: ChildGateway): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${gw.httpPort}/metrics`)).text();
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

/** The sum of every sample of `name`, whatever its labels; 0 when there is none. */
export function metricTotal(samples: ReadonlyMap<string, number>, name: string): number {
  let total = 0;
  for (const [key, value] of samples) {
    if (key === name || key.startsWith(`${name}{`)) total += value;
  }
  return total;
}
