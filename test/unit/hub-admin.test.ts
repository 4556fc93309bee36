// The rules of `leafgate hub check` and `create-stream` (src/upstream/hub-admin.ts), on
// plain facts about a stream: no hub.
import { describe, expect, it } from "vitest";
import {
  createWindowMs,
  defaultStreamName,
  describePlan,
  exportedSubjects,
  type StreamFacts,
  streamFindings,
  windowLongEnough,
  worst,
} from "../../src/upstream/index.js";

const GOOD: StreamFacts = {
  name: "EDGE_GW1",
  subjects: ["edge.gw1.>"],
  storage: "file",
  replicas: 1,
  duplicateWindowMs: 120_000,
  maxMsgs: -1,
  maxBytes: -1,
  maxAgeMs: 0,
  discard: "old",
  messages: 0,
  bytes: 0,
};
const GW = {
  upstream: { prefix: "edge.gw1", export: [">"], ack_timeout: 10_000 },
  buffer: { max_bytes: 1_000_000_000, max_messages: 10_000_000 },
};

describe("streamFindings", () => {
  it("passes a stream made by create-stream", () => {
    const findings = streamFindings(GOOD, GW);
    expect(findings).toEqual([
      { verdict: "ok", text: "captures edge.gw1.>" },
      { verdict: "ok", text: "duplicate window 2m is longer than upstream.ack_timeout 10s" },
      { verdict: "ok", text: "discard old" },
    ]);
    expect(worst(findings)).toBe("ok");
  });

  it("a wider stream (edge.>) captures the prefix too", () => {
    expect(worst(streamFindings({ ...GOOD, subjects: ["edge.>"] }, GW))).toBe("ok");
  });

  it("fails a stream that misses the prefix or an exported subject, naming what it misses", () => {
    const narrow = { ...GOOD, subjects: ["edge.gw1.sensors.>"] };
    const gw = { ...GW, upstream: { ...GW.upstream, export: ["sensors.>", "alarms.*"] } };
    const [capture] = streamFindings(narrow, gw);
    expect(capture).toEqual({
      verdict: "fail",
      text: "does not capture edge.gw1.>, edge.gw1.alarms.* (its subjects: edge.gw1.sensors.>)",
      fix: "add edge.gw1.> to stream EDGE_GW1's subjects, or name a stream that captures it in upstream.stream",
    });
  });

  it("fails a duplicate window not longer than the ack timeout (the gateway's own rule)", () => {
    const findings = streamFindings({ ...GOOD, duplicateWindowMs: 10_000 }, GW);
    expect(findings[1]).toEqual({
      verdict: "fail",
      text: "duplicate window 10s is not longer than upstream.ack_timeout 10s: a row resent after an ack timeout may be stored twice",
      fix: "lengthen the stream's duplicate_window to 2m or shorten upstream.ack_timeout",
    });
    expect(worst(findings)).toBe("fail");
    expect(windowLongEnough(10_001, 10_000)).toBe(true);
    expect(windowLongEnough(10_000, 10_000)).toBe(false);
  });

  it("warns on discard new, limits below the buffer's, and memory storage, in that order", () => {
    const findings = streamFindings(
      { ...GOOD, discard: "new", maxBytes: 1_000_000, maxMsgs: 1000, storage: "memory" },
      GW,
    );
    expect(findings.map((f) => [f.verdict, f.text.split(":")[0]])).toEqual([
      ["ok", "captures edge.gw1.>"],
      ["ok", "duplicate window 2m is longer than upstream.ack_timeout 10s"],
      ["warn", "discard new"],
      ["warn", "max_bytes 1000000 is below the gateway's buffer.max_bytes 1000000000"],
      ["warn", "max_msgs 1000 is below the gateway's buffer.max_messages 10000000"],
      ["warn", "memory storage"],
    ]);
    expect(worst(findings)).toBe("warn");
  });

  it("limits at or above the buffer's are not warned about", () => {
    const big = { ...GOOD, maxBytes: 1_000_000_000, maxMsgs: 10_000_000 };
    expect(streamFindings(big, GW)).toHaveLength(3);
  });
});

describe("create-stream's plan", () => {
  it("the window is 2 minutes, or twice an ack timeout longer than one minute", () => {
    expect(createWindowMs(10_000)).toBe(120_000);
    expect(createWindowMs(60_000)).toBe(120_000);
    expect(createWindowMs(90_000)).toBe(180_000);
    expect(windowLongEnough(createWindowMs(90_000), 90_000)).toBe(true);
  });

  it("the default name is EDGE_<GATEWAY>[_<ACCOUNT>], upper-cased, stream-name-safe", () => {
    expect(defaultStreamName("gw1", undefined)).toBe("EDGE_GW1");
    expect(defaultStreamName("pi-7", "tenant-a")).toBe("EDGE_PI-7_TENANT-A");
    expect(defaultStreamName("box.1 *>", undefined)).toBe("EDGE_BOX_1___");
  });

  it("exported subjects are each export under the prefix", () => {
    expect(exportedSubjects({ prefix: "edge.gw1", export: [">", "a.*"] })).toEqual([
      "edge.gw1.>",
      "edge.gw1.a.*",
    ]);
  });

  it("prints every setting it will create", () => {
    expect(
      describePlan({
        name: "EDGE_GW1",
        subjects: ["edge.gw1.>"],
        replicas: 3,
        duplicateWindowMs: 120_000,
        maxAgeMs: 7 * 86_400_000,
        maxBytes: -1,
      }),
    ).toEqual([
      "stream    EDGE_GW1",
      "subjects  edge.gw1.>",
      "storage   file, replicas 3",
      "duplicate window 2m",
      "discard   old",
      "limits    max_msgs unlimited, max_bytes unlimited, max_age 7d",
    ]);
  });
});
