// Waiting for wills without a timing window: the gateway's own counter says when a will was
// published, and a reading is timed after it is taken, so a slow machine can only make an
// on-time will look late, never early.
import { expect } from "vitest";
import type { Gateway } from "../../src/gateway.js";
import { waitFor } from "./wait.js";

/**
 * Node arms a timer on the event loop's cached monotonic clock and tests read the wall
 * clock, both in whole milliseconds: a timer may fire this much "early" by Date.now().
 */
export const TIMER_SLACK_MS = 5;

/**
 * Waits until `g` has published `count` wills in all (`leafgate_mqtt_wills_published_total`),
 * and fails if a reading showed them before `notBeforeMs`; an early will is caught unless it
 * came within one polling interval of `notBeforeMs`.
 */
export async function willsPublished(
  g: Gateway,
  count: number,
  { notBeforeMs = 0, timeoutMs = 5_000 }: { notBeforeMs?: number; timeoutMs?: number } = {},
): Promise<void> {
  const wills = () => g.metrics.value("leafgate_mqtt_wills_published_total");
  let seenEarlyAt: number | undefined;
  await waitFor(
    () => {
      const n = wills();
      const at = Date.now();
      if (n >= count && at < notBeforeMs - TIMER_SLACK_MS) seenEarlyAt ??= at;
      return n >= count;
    },
    { timeoutMs, intervalMs: 10, message: `the gateway did not publish ${count} will(s)` },
  );
  expect(
    seenEarlyAt === undefined ? "on time" : `${notBeforeMs - seenEarlyAt} ms early`,
    "will published before it was due",
  ).toBe("on time");
  expect(wills()).toBe(count);
}
