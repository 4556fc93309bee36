/**
 * A token bucket for the upstream rate cap: `ratePerSecond` tokens accrue up to one
 * second's worth. A take larger than the bucket is allowed when the bucket is full and
 * leaves it in debt, so a message bigger than a second's budget is slowed, never stuck.
 */
const MS_PER_SECOND = 1_000;

export class TokenBucket {
  readonly #rate: number;
  readonly #capacity: number;
  readonly #now: () => number;
  #tokens: number;
  #updatedMs: number;

  constructor(ratePerSecond: number, now: () => number = Date.now) {
    this.#rate = ratePerSecond;
    this.#capacity = ratePerSecond;
    this.#now = now;
    this.#tokens = ratePerSecond;
    this.#updatedMs = now();
  }

  #refill(): void {
    const now = this.#now();
    const elapsed = now - this.#updatedMs;
    if (elapsed > 0) {
      this.#tokens = Math.min(
        this.#capacity,
        this.#tokens + (elapsed * this.#rate) / MS_PER_SECOND,
      );
      this.#updatedMs = now;
    }
  }

  /** Whole tokens available now. */
  available(): number {
    this.#refill();
    return Math.max(0, Math.floor(this.#tokens));
  }

  /** Takes `n` tokens if there are enough (or the bucket is full); false leaves it as it was. */
  tryTake(n: number): boolean {
    this.#refill();
    if (this.#tokens < Math.min(n, this.#capacity)) return false;
    this.#tokens -= n;
    return true;
  }

  /** Milliseconds until `n` tokens (at most a full bucket) are available. */
  msUntil(n: number): number {
    this.#refill();
    const missing = Math.min(n, this.#capacity) - this.#tokens;
    return missing <= 0 ? 0 : Math.ceil((missing * MS_PER_SECOND) / this.#rate);
  }
}

/** The upstream rate cap: messages and bytes per second, 0 meaning no cap. */
export class RateCap {
  readonly #messages: TokenBucket | undefined;
  readonly #bytes: TokenBucket | undefined;

  constructor(
    limits: { messagesPerSecond: number; bytesPerSecond: number },
    now: () => number = Date.now,
  ) {
    if (limits.messagesPerSecond > 0)
      this.#messages = new TokenBucket(limits.messagesPerSecond, now);
    if (limits.bytesPerSecond > 0) this.#bytes = new TokenBucket(limits.bytesPerSecond, now);
  }

  /** How many of `wanted` messages may go now (0: wait `waitMs(…)` first). */
  allowed(wanted: number): number {
    return this.#messages === undefined ? wanted : Math.min(wanted, this.#messages.available());
  }

  /** Takes one message of `bytes`; false (nothing taken) when the byte budget is spent. */
  take(bytes: number): boolean {
    if (this.#bytes !== undefined && !this.#bytes.tryTake(bytes)) return false;
    this.#messages?.tryTake(1);
    return true;
  }

  /** Milliseconds until one more message of `bytes` may go. */
  waitMs(bytes = 0): number {
    return Math.max(this.#messages?.msUntil(1) ?? 0, this.#bytes?.msUntil(bytes) ?? 0);
  }
}
