// Synchronisation helpers for tests: poll a condition or wait for an event, always with a
// deadline, so a broken expectation fails with a message instead of hanging the run.
import type { EventEmitter } from "node:events";
import { mkdtempSync } from "node:fs";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { inspect } from "node:util";

export interface WaitOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** Prefix of the rejection; a function is evaluated only on failure (e.g. to dump logs). */
  message?: string | (() => string);
}

/**
 * Polls `fn` until it returns a truthy value without throwing and resolves with that value.
 * At the deadline it rejects with `message` plus the last error or value seen.
 */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  opts: WaitOptions = {},
): Promise<NonNullable<T>> {
  const { timeoutMs = 10_000, intervalMs = 20 } = opts;
  const deadline = Date.now() + timeoutMs;
  let last: { error: unknown } | { value: unknown } = { value: undefined };
  let attempts = 0;
  // Always runs fn at least once, and once more at (or just after) the deadline.
  for (;;) {
    attempts++;
    try {
      const value = await fn();
      if (value) return value as NonNullable<T>;
      last = { value };
    } catch (error) {
      last = { error };
    }
    const left = deadline - Date.now();
    if (left <= 0) break;
    await delay(Math.min(intervalMs, left));
  }
  const prefix = typeof opts.message === "function" ? opts.message() : opts.message;
  const detail =
    "error" in last
      ? `last error: ${last.error instanceof Error ? last.error.stack : inspect(last.error)}`
      : `last value: ${inspect(last.value)}`;
  throw new Error(
    `${prefix ?? "waitFor: condition not met"} (after ${timeoutMs} ms, ${attempts} attempts; ${detail})`,
    "error" in last ? { cause: last.error } : undefined,
  );
}

/**
 * Resolves with the arguments of the next `event` on `emitter`; rejects on its "error" event
 * (unless that is the awaited event) or when `timeoutMs` passes. Listeners are always removed.
 */
export function once(emitter: EventEmitter, event: string, timeoutMs = 10_000): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      clearTimeout(timer);
      emitter.off(event, onEvent);
      if (event !== "error") emitter.off("error", onError);
    };
    const onEvent = (...args: unknown[]) => {
      cleanup();
      resolve(args);
    };
    const onError = (err: unknown) => {
      cleanup();
      reject(err);
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`once: no "${event}" event within ${timeoutMs} ms`));
    }, timeoutMs);
    emitter.on(event, onEvent);
    if (event !== "error") emitter.on("error", onError);
  });
}

export interface TempDir {
  path: string;
  cleanup(): Promise<void>;
}

/** Creates a fresh directory under os.tmpdir(); `cleanup()` removes it recursively. */
export function tempDir(prefix: string): TempDir {
  const path = mkdtempSync(join(tmpdir(), `leafgate-${prefix}-`));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}
