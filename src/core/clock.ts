/**
 * Time as a seam: parts whose behaviour depends on time (expiry, backoff, keepalive, log
 * windows) take a Clock, so unit tests move time instead of waiting for it.
 */
export interface Clock {
  /** Milliseconds since the epoch, like Date.now(). */
  now(): number;
  setTimeout(fn: () => void, ms: number): ClockTimer;
  clearTimeout(timer: ClockTimer | undefined): void;
}

/** An opaque timer handle; `unref` so that a pending timer never keeps the process up. */
export interface ClockTimer {
  unref?(): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (timer) => clearTimeout(timer as NodeJS.Timeout | undefined),
};

/** A clock that moves only when told to: for unit tests of time-driven logic. */
export class ManualClock implements Clock {
  #nowMs: number;
  #nextId = 1;
  readonly #timers = new Map<number, { atMs: number; fn: () => void }>();

  constructor(startMs = 0) {
    this.#nowMs = startMs;
  }

  now(): number {
    return this.#nowMs;
  }

  setTimeout(fn: () => void, ms: number): ClockTimer {
    const id = this.#nextId++;
    this.#timers.set(id, { atMs: this.#nowMs + Math.max(0, ms), fn });
    return { id } as ClockTimer;
  }

  clearTimeout(timer: ClockTimer | undefined): void {
    if (timer !== undefined) this.#timers.delete((timer as { id: number }).id);
  }

  /** Timers not yet fired. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Moves time on by `ms`, firing each timer due on the way, in due order. */
  advance(ms: number): void {
    const endMs = this.#nowMs + ms;
    for (;;) {
      let nextId: number | undefined;
      let nextAt = Number.POSITIVE_INFINITY;
      for (const [id, t] of this.#timers) {
        if (t.atMs <= endMs && t.atMs < nextAt) {
          nextAt = t.atMs;
          nextId = id;
        }
      }
      if (nextId === undefined) break;
      const timer = this.#timers.get(nextId)!;
      this.#timers.delete(nextId);
      this.#nowMs = timer.atMs;
      timer.fn();
    }
    this.#nowMs = endMs;
  }
}
