// Python paho-mqtt 1.6.1 (Debian, /usr/bin/python3) driven from tests: test/helpers/paho.py
// runs one client from a JSON plan and prints every step as a JSON line; each of its waits
// is bounded by the plan's timeout.
import { fileURLToPath } from "node:url";
import { expect } from "vitest";
import { spawnTracked, type TrackedProcess, waitForLine } from "./procs.js";
import { waitFor } from "./wait.js";

const PAHO = fileURLToPath(new URL("./paho.py", import.meta.url));
/** Seconds for each wait inside Python; shorter than the test's own deadlines. */
export const PY_TIMEOUT_S = 8;

export type Protocol = 4 | 5;
export type Props = Record<string, unknown>;

export interface Publish {
  topic: string;
  payload?: string;
  qos?: 0 | 1 | 2;
  retain?: boolean;
  props?: Props;
}

export interface Plan {
  port: number;
  protocol: Protocol;
  client_id?: string;
  clean?: boolean;
  connect_props?: Props;
  keepalive?: number;
  transport?: "tcp" | "websockets";
  will?: Publish;
  subscribe?: [string, number][];
  publish?: Publish[];
  expect?: number;
  stall_after?: number;
  hold?: boolean;
  timeout?: number;
  disconnect?: "clean" | "none";
  /** Load, then wait for a line on stdin before connecting (see `release`). */
  wait_before_connect?: boolean;
  /** Report each packet paho wrote (e.g. a PUBACK) as an event. */
  report_writes?: boolean;
}

export interface PahoEvent {
  event: string;
  [field: string]: unknown;
}

export interface Msg {
  topic: string;
  payload: string;
  qos: number;
  retain: boolean;
  dup: boolean;
  props: Props | null;
}

/** Starts a paho client; with `hold` it stays connected until `release()`. */
export async function paho(plan: Plan): Promise<TrackedProcess> {
  return spawnTracked(
    "/usr/bin/python3",
    [PAHO, JSON.stringify({ timeout: PY_TIMEOUT_S, ...plan })],
    {
      stdin: "pipe",
    },
  );
}

export function events(proc: TrackedProcess): PahoEvent[] {
  return proc
    .stdout()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as PahoEvent);
}

/** Received messages with their packet identifiers. */
export const withMids = (proc: TrackedProcess): (Msg & { mid: number })[] =>
  events(proc)
    .filter((e) => e.event === "msg")
    .map(({ event: _, ...m }) => m as unknown as Msg & { mid: number });

/** Received messages; packet identifiers are the broker's choice, so left out. */
export const messages = (proc: TrackedProcess): Msg[] =>
  withMids(proc).map(({ mid: _, ...m }) => m);

export const connack = (proc: TrackedProcess): PahoEvent =>
  events(proc).find((e) => e.event === "connack")!;

/** Resolves once the client is connected and subscribed (rejects if it exits first). */
export async function ready(proc: TrackedProcess): Promise<TrackedProcess> {
  await waitForLine(proc, (l) => l.includes('"event": "ready"'), PY_TIMEOUT_S * 1000 + 2000);
  return proc;
}

/** Waits for the script to end by itself, successfully, and returns its messages. */
export async function done(proc: TrackedProcess): Promise<Msg[]> {
  const exit = await waitFor(() => proc.exitInfo, {
    timeoutMs: PY_TIMEOUT_S * 1000 + 5000,
    message: () => `paho did not finish\n${proc.describe()}`,
  });
  expect(exit, proc.describe()).toEqual({ code: 0, signal: null });
  return messages(proc);
}

export function release(proc: TrackedProcess): void {
  proc.child.stdin!.write("end\n");
}

export async function run(plan: Plan): Promise<TrackedProcess> {
  const proc = await paho(plan);
  await done(proc);
  return proc;
}

export const msg = (
  topic: string,
  payload: string,
  qos: number,
  extra: Partial<Msg> = {},
): Msg => ({
  topic,
  payload,
  qos,
  retain: false,
  dup: false,
  props: null,
  ...extra,
});

export const texts = (n: number, tag: string): string[] =>
  Array.from({ length: n }, (_, i) => `${tag}-${i + 1}`);
