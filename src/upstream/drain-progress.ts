import type { Clock, Logger } from "../core/index.js";

/** While a backlog drains, report progress this often. */
const DRAIN_PROGRESS_INTERVAL_MS = 5_000;
/** Below this many pending rows there is no backlog worth reporting. */
const DRAIN_PROGRESS_MIN_ROWS = 1_000;
const MS_PER_SECOND = 1_000;

/**
 * Every few seconds while a backlog drains: remaining rows, rate and ETA. `forwarded` is
 * the running count of rows the hub took; the returned function stops the reports.
 */
export function reportDrainProgress(options: {
  readonly pending: () => number;
  readonly forwarded: () => number;
  readonly log: Logger;
  readonly clock: Clock;
}): () => void {
  const { pending, forwarded, log, clock } = options;
  let lastForwarded = forwarded();
  let lastMs = clock.now();
  const report = (): void => {
    const now = clock.now();
    const rate = ((forwarded() - lastForwarded) * MS_PER_SECOND) / (now - lastMs);
    lastForwarded = forwarded();
    lastMs = now;
    const remaining = pending();
    if (remaining < DRAIN_PROGRESS_MIN_ROWS) return;
    log.info(
      {
        remaining,
        ratePerSecond: Math.round(rate),
        etaSeconds: rate > 0 ? Math.ceil(remaining / rate) : null,
      },
      "draining backlog to the hub",
    );
  };
  let timer = clock.setTimeout(function tick() {
    timer = clock.setTimeout(tick, DRAIN_PROGRESS_INTERVAL_MS);
    report();
  }, DRAIN_PROGRESS_INTERVAL_MS);
  return () => clock.clearTimeout(timer);
}
