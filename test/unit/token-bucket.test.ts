import { describe, expect, it } from "vitest";
import { TokenBucket } from "../../src/upstream/token-bucket.js";

describe("TokenBucket", () => {
  it("starts full, refills at the rate, and never holds more than one second's worth", () => {
    let now = 0;
    const bucket = new TokenBucket(100, () => now);
    expect(bucket.available()).toBe(100);
    expect(bucket.tryTake(100)).toBe(true);
    expect(bucket.available()).toBe(0);
    expect(bucket.tryTake(1)).toBe(false);
    expect(bucket.msUntil(1)).toBe(10);
    now += 250;
    expect(bucket.available()).toBe(25);
    now += 10_000;
    expect(bucket.available()).toBe(100);
  });

  it("lets a take larger than the bucket through when full, then waits off the debt", () => {
    let now = 0;
    const bucket = new TokenBucket(1000, () => now);
    expect(bucket.tryTake(5000)).toBe(true);
    expect(bucket.available()).toBe(0);
    // 4000 tokens of debt plus one full bucket before the next large take.
    expect(bucket.msUntil(5000)).toBe(5000);
    expect(bucket.msUntil(1)).toBe(4001);
    now += 5000;
    expect(bucket.tryTake(5000)).toBe(true);
  });
});
