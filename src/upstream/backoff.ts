/** First retry delay after a failed connect. */
export const RECONNECT_DELAY_MIN_MS = 100;
/** Spread of each delay (±), so a fleet of gateways does not reconnect in lockstep. */
const JITTER = 0.2;
/** Doublings counted at most: past the cap they change nothing, and 2 ** n must stay finite. */
const MAX_DOUBLINGS = 30;

/** Exponential backoff with jitter, capped at `maxMs`; `attempt` counts from 0. */
export function backoffDelayMs(attempt: number, maxMs: number, random = Math.random): number {
  const base = Math.min(maxMs, RECONNECT_DELAY_MIN_MS * 2 ** Math.min(attempt, MAX_DOUBLINGS));
  return Math.round(base * (1 - JITTER + 2 * JITTER * random()));
}
