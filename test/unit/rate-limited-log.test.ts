// The one rate-limited log (src/core/rate-limited-log.ts) and the manual clock it is
// tested with: time moves only when the test moves it.
import { describe, expect, it } from "vitest";
import { ManualClock, RateLimitedLog } from "../../src/core/index.js";
import { recordingLogger } from "../helpers/recording.js";

describe("RateLimitedLog", () => {
  it("burst lines per key per window; the next line says how many were held back", () => {
    const clock = new ManualClock(1_000);
    const { log, lines } = recordingLogger();
    const limited = new RateLimitedLog(log, { burst: 2, windowMs: 10_000, clock });
    const logged = Array.from({ length: 5 }, (_, i) => limited.log("a", { i }, "bad"));
    expect(logged).toEqual([true, true, false, false, false]);
    clock.advance(9_999);
    expect(limited.log("a", { i: 5 }, "bad")).toBe(false);
    clock.advance(1);
    limited.log("a", { i: 6 }, "bad");
    limited.log("a", { i: 7 }, "bad");
    expect(lines).toEqual([
      ["warn", "bad", { i: 0 }],
      ["warn", "bad", { i: 1 }],
      ["warn", "bad", { i: 6, suppressed: 4 }],
      ["warn", "bad", { i: 7 }],
    ]);
  });

  it("keys are apart: one key's flood does not silence another", () => {
    const clock = new ManualClock();
    const { log, lines } = recordingLogger();
    const limited = new RateLimitedLog(log, { burst: 1, windowMs: 1_000, clock, level: "info" });
    for (let i = 0; i < 3; i++) limited.log("flood", {}, "flood");
    limited.log("rare", {}, "rare");
    expect(lines.map(([level, msg]) => `${level} ${msg}`)).toEqual(["info flood", "info rare"]);
  });

  it("tracks at most 1,000 keys: a key beyond them evicts a quiet one, and still logs", () => {
    const clock = new ManualClock();
    const { log, lines } = recordingLogger();
    const limited = new RateLimitedLog(log, { burst: 1, windowMs: 1_000, clock });
    for (let i = 0; i < 5_000; i++) limited.log(`k${i}`, {}, "x");
    expect(lines).toHaveLength(5_000);
  });
});

describe("ManualClock", () => {
  it("fires due timers in due order as time advances, and not cleared ones", () => {
    const clock = new ManualClock(100);
    const fired: string[] = [];
    clock.setTimeout(() => fired.push(`b@${clock.now()}`), 20);
    clock.setTimeout(() => fired.push(`a@${clock.now()}`), 10);
    const c = clock.setTimeout(() => fired.push("c"), 15);
    clock.clearTimeout(c);
    clock.advance(19);
    expect(fired).toEqual(["a@110"]);
    clock.advance(1);
    expect(fired).toEqual(["a@110", "b@120"]);
    expect(clock.now()).toBe(120);
    expect(clock.pending).toBe(0);
  });

  it("a timer set by a timer within the same advance fires too", () => {
    const clock = new ManualClock();
    const fired: number[] = [];
    clock.setTimeout(() => {
      fired.push(clock.now());
      clock.setTimeout(() => fired.push(clock.now()), 5);
    }, 5);
    clock.advance(10);
    expect(fired).toEqual([5, 10]);
  });
});
