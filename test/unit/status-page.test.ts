import { describe, expect, it } from "vitest";
import {
  clockOf,
  formatRate,
  pageData,
  rateOf,
  STATUS_PAGE,
  sumMetric,
} from "../../src/observe/status-page.js";

const METRICS = [
  "# HELP leafgate_outbox_appended_total messages appended",
  "# TYPE leafgate_outbox_appended_total counter",
  'leafgate_outbox_appended_total{account="$G"} 7',
  'leafgate_outbox_appended_total{account="acme"} 5',
  "leafgate_outbox_appended_totals_not_this 100",
  "leafgate_upstream_forwarded_total 4",
  'leafgate_buffer_dropped_total{class="telemetry",reason="oldest"} 2',
  "leafgate_serial_dropped_total 0",
  "",
].join("\n");

describe("sumMetric", () => {
  it("sums every label set of one metric, and only that metric", () => {
    expect(sumMetric(METRICS, "leafgate_outbox_appended_total")).toBe(12);
    expect(sumMetric(METRICS, "leafgate_upstream_forwarded_total")).toBe(4);
    expect(sumMetric(METRICS, "leafgate_absent_total")).toBe(0);
  });
});

describe("pageData", () => {
  it("is the status, the drops above zero and the two totals at the gateway's time", () => {
    expect(pageData({ gateway: "gw1" }, METRICS, 1234)).toEqual({
      time: 1234,
      status: { gateway: "gw1" },
      drops: [{ what: "buffer_dropped", labels: 'class="telemetry",reason="oldest"', count: 2 }],
      totals: { ingested: 12, forwarded: 4 },
    });
  });
});

describe("rateOf", () => {
  it("is messages a second between two readings", () => {
    expect(rateOf({ t: 1000, n: 10 }, { t: 3000, n: 15 })).toBe(2.5);
    expect(rateOf({ t: 1000, n: 10 }, { t: 1500, n: 10 })).toBe(0);
  });
  it("is undefined for the first reading, a clock that did not advance, a counter reset", () => {
    expect(rateOf(undefined, { t: 1000, n: 10 })).toBeUndefined();
    expect(rateOf({ t: 1000, n: 10 }, { t: 1000, n: 12 })).toBeUndefined();
    expect(rateOf({ t: 1000, n: 10 }, { t: 3000, n: 3 })).toBeUndefined();
  });
});

describe("formatRate", () => {
  it("shows integers as such, one decimal under 10, k from 1000", () => {
    expect([0, 2, 0.25, 9.96, 12.4, 999, 1250].map(formatRate)).toEqual([
      "0",
      "2",
      "0.3",
      "10.0",
      "12",
      "999",
      "1.3k",
    ]);
  });
});

describe("clockOf", () => {
  it("is hh:mm:ss, zero-padded, in the local zone", () => {
    expect(clockOf(new Date(2026, 0, 2, 3, 4, 5).getTime())).toBe("03:04:05");
    expect(clockOf(new Date(2026, 0, 2, 23, 59, 9).getTime())).toBe("23:59:09");
  });
});

describe("STATUS_PAGE", () => {
  it("is one self-contained document for phones, with no data put in as HTML", () => {
    expect(STATUS_PAGE.startsWith("<!doctype html>")).toBe(true);
    expect(STATUS_PAGE).toContain(
      '<meta name="viewport" content="width=device-width, initial-scale=1">',
    );
    expect(STATUS_PAGE.match(/<script>/g)).toHaveLength(1);
    expect(STATUS_PAGE.match(/<\/script>/g)).toHaveLength(1);
    expect(STATUS_PAGE).not.toMatch(/src=|href=|innerHTML|insertAdjacentHTML|document\.write/);
  });
  it("ships helpers that work from their source text", () => {
    const script = STATUS_PAGE.slice(
      STATUS_PAGE.indexOf("<script>") + 8,
      STATUS_PAGE.indexOf("const POLL_MS"),
    );
    const helpers = new Function(
      `${script}; return { formatBytes, clockOf, rateOf, formatRate };`,
    )();
    expect(helpers.formatBytes(2048)).toBe("2.0 KiB");
    expect(helpers.rateOf({ t: 0, n: 0 }, { t: 2000, n: 5 })).toBe(2.5);
    expect(helpers.formatRate(0.25)).toBe("0.3");
    expect(helpers.clockOf(new Date(2026, 0, 2, 3, 4, 5).getTime())).toBe("03:04:05");
  });
});
