// The guard around event-loop callbacks (src/core/guard.ts): a throw or a rejection is
// counted by where, logged once per where with its stack, and followed by the recovery;
// nothing escapes to the caller (the event loop, then the process-level handler).
import { describe, expect, it } from "vitest";
import { Guard } from "../../src/core/index.js";
import { MetricsRegistry } from "../../src/observe/metrics.js";
import { recordingLogger } from "../helpers/recording.js";

const COUNTER = "leafgate_internal_errors_total";

describe("Guard", () => {
  it("passes arguments through and reports nothing when the callback succeeds", () => {
    const { log, lines } = recordingLogger();
    const metrics = new MetricsRegistry();
    const guard = new Guard(log, metrics);
    const seen: unknown[] = [];
    const cb = guard.wrap("t.ok", (a: number, b: string) => {
      seen.push(a, b);
    });
    cb(1, "x");
    guard.run("t.ok", () => seen.push("run"));
    expect(seen).toEqual([1, "x", "run"]);
    expect(metrics.value(COUNTER, { where: "t.ok" })).toBe(0);
    expect(lines).toEqual([]);
  });

  it("catches a throw: counts every one, logs the first per where with its stack, recovers each time", () => {
    const { log, lines } = recordingLogger();
    const metrics = new MetricsRegistry();
    const guard = new Guard(log, metrics);
    const recovered: unknown[] = [];
    const boom = new Error("boom");
    const cb = guard.wrap(
      "t.timer",
      () => {
        throw boom;
      },
      (err) => recovered.push(err),
    );
    expect(() => cb()).not.toThrow();
    cb();
    cb();
    guard.run("t.other", () => {
      throw "not an Error";
    });
    expect(metrics.value(COUNTER, { where: "t.timer" })).toBe(3);
    expect(metrics.value(COUNTER, { where: "t.other" })).toBe(1);
    expect(recovered).toEqual([boom, boom, boom]);
    expect(lines.map(([level, , fields]) => [level, fields.where])).toEqual([
      ["error", "t.timer"],
      ["error", "t.other"],
    ]);
    expect(lines[0]![2].err).toBe(boom);
    expect((lines[0]![2].err as Error).stack).toContain("guard.test.ts");
    expect((lines[1]![2].err as Error).message).toBe("not an Error");
  });

  it("catches a stack overflow, the failure deep input used to cause", () => {
    const { log } = recordingLogger();
    const metrics = new MetricsRegistry();
    const guard = new Guard(log, metrics);
    const down = (n: number): number => (n === 0 ? 0 : 1 + down(n - 1));
    guard.run("t.deep", () => down(10_000_000));
    expect(metrics.value(COUNTER, { where: "t.deep" })).toBe(1);
  });

  it("reports a promise the callback returns that rejects", async () => {
    const { log, lines } = recordingLogger();
    const metrics = new MetricsRegistry();
    const guard = new Guard(log, metrics);
    let recovered = 0;
    let rejectIt: (err: Error) => void = () => {};
    const pending = new Promise<void>((_, reject) => {
      rejectIt = reject;
    });
    guard.wrap(
      "t.async",
      () => pending,
      () => recovered++,
    )();
    rejectIt(new Error("later"));
    await pending.catch(() => {});
    await Promise.resolve();
    expect(metrics.value(COUNTER, { where: "t.async" })).toBe(1);
    expect(recovered).toBe(1);
    expect(lines.map(([, , fields]) => (fields.err as Error).message)).toEqual(["later"]);
  });

  it("never throws when the recovery itself fails, and reports that once", () => {
    const { log, lines } = recordingLogger();
    const metrics = new MetricsRegistry();
    const guard = new Guard(log, metrics);
    const cb = guard.wrap(
      "t.cut",
      () => {
        throw new Error("first");
      },
      () => {
        throw new Error("second");
      },
    );
    expect(() => cb()).not.toThrow();
    expect(() => cb()).not.toThrow();
    expect(metrics.value(COUNTER, { where: "t.cut" })).toBe(2);
    expect(lines.map(([, , fields]) => [fields.where, (fields.err as Error).message])).toEqual([
      ["t.cut", "first"],
      ["t.cut:recover", "second"],
    ]);
  });

  it("two guards on one registry count into the same series", () => {
    const metrics = new MetricsRegistry();
    const a = new Guard(recordingLogger().log, metrics);
    const b = new Guard(recordingLogger().log, metrics);
    const fail = (): void => {
      throw new Error("x");
    };
    a.run("t.shared", fail);
    b.run("t.shared", fail);
    expect(metrics.value(COUNTER, { where: "t.shared" })).toBe(2);
  });
});
