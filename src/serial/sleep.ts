import type { Clock } from "../core/index.js";

/**
 * Waits `ms` on `clock`: true when the time passed, false as soon as any of `signals`
 * aborts (at once if one already has). Never rejects, and leaves no timer or listener
 * behind either way, so a stopped device holds nothing that keeps the process up.
 * (`timers/promises` takes a signal but not a clock; tests move a ManualClock instead.)
 */
export function sleep(clock: Clock, ms: number, ...signals: AbortSignal[]): Promise<boolean> {
  if (signals.some((s) => s.aborted)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (elapsed: boolean): void => {
      clock.clearTimeout(timer);
      for (const s of signals) s.removeEventListener("abort", onAbort);
      resolve(elapsed);
    };
    const onAbort = (): void => done(false);
    // Not unref'd: a running device is meant to keep the process up; stopping clears it.
    const timer = clock.setTimeout(() => done(true), ms);
    for (const s of signals) s.addEventListener("abort", onAbort, { once: true });
  });
}
