import type { Clock } from "../core/index.js";

/**
 * Resolves after `ms` on `clock`, or at once when `signal` aborts (already aborted: at
 * once); never rejects, so a backoff cut short by a stop needs no catch.
 */
export function sleep(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const done = (): void => {
      clock.clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = clock.setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
