import { type ClockTimer, ManualClock } from "../../src/core/index.js";

/** One turn of the event loop: every promise continuation queued so far has run. */
export const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * A ManualClock for code that awaits between timers (a poll loop, a reopen loop):
 * `advanceAsync` stops at each due time and lets the awaits run before the next, so a
 * timer a continuation sets is due when it would be on a real clock, to the millisecond.
 */
export class SteppedClock extends ManualClock {
  readonly #due = new Map<ClockTimer, number>();

  override setTimeout(fn: () => void, ms: number): ClockTimer {
    const timer = super.setTimeout(() => {
      this.#due.delete(timer);
      fn();
    }, ms);
    this.#due.set(timer, this.now() + Math.max(0, ms));
    return timer;
  }

  override clearTimeout(timer: ClockTimer | undefined): void {
    if (timer !== undefined) this.#due.delete(timer);
    super.clearTimeout(timer);
  }

  /** Moves time on by `ms`, one due time at a time, with a turn of the loop after each. */
  async advanceAsync(ms: number): Promise<void> {
    const endMs = this.now() + ms;
    await turn();
    for (;;) {
      let nextMs = Number.POSITIVE_INFINITY;
      for (const atMs of this.#due.values()) nextMs = Math.min(nextMs, atMs);
      if (nextMs > endMs) break;
      this.advance(nextMs - this.now());
      await turn();
    }
    this.advance(endMs - this.now());
    await turn();
  }
}
