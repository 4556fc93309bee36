// `npm run bench`'s table (bench/lib/summary-rows.ts): which row is found where, how a bench
// that failed, a missing row or a failed check shows, and whether a target is met.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  type BenchRun,
  NO_SUCH_BENCH,
  readResult,
  summarize,
  summaryCells,
} from "../../bench/lib/summary-rows.js";
import { type BenchRow, EXPECTED_ROWS, targetMet } from "../../bench/lib/summary-schema.js";

const expected = (id: string) => EXPECTED_ROWS.find((e) => e.id === id)!;

const rate = (over: Partial<BenchRow>): BenchRow => ({
  scenario: "?",
  unit: "msgs/s",
  leafgate: 41_000,
  peer: "mosquitto",
  peerValue: 60_000,
  ratio: 0.68,
  target: 1.2,
  rounds: { leafgate: [41_000], peer: [60_000] },
  checks: { exactlyOnce: true, inOrder: true },
  ...over,
});

const idleRss: BenchRow = {
  id: "idle-rss",
  scenario: "idle RSS",
  unit: "MiB",
  leafgate: 44.5,
  peer: "bare Node",
  peerValue: 39.5,
  ratio: 1.13,
  target: 45,
  targetOf: "leafgate",
  better: "lower",
  rounds: { leafgate: [44, 44.5, 45.1], peer: [39.5, 39.5, 39.6] },
  checks: {},
  others: [{ peer: "mosquitto", peerValue: 8.4, ratio: 5.3, rounds: [8.4, 8.4, 8.4] }],
};

const run = (bench: string, rows: BenchRow[] | undefined, exitCode: number | null = 0) =>
  ({
    bench,
    exitCode,
    seconds: 1,
    ...(rows ? { result: { bench, rows } } : { error: "wrote no JSON" }),
  }) satisfies BenchRun;

describe("the expected rows", () => {
  it("follow issue 14's table, each id once", () => {
    expect(EXPECTED_ROWS.map((e) => e.id)).toEqual([
      "fanin-qos1",
      "fanin-qos0-raw",
      "fanin-qos0-mqttjs",
      "drain-300k",
      "drain-1m",
      "live-mqtt-hub",
      "idle-rss",
      "rss-load",
      "spawn-listening",
    ]);
  });
});

describe("targetMet", () => {
  it("bounds a rate's ratio from below and a size from above, by default", () => {
    expect(targetMet(rate({ ratio: 1.2 }))).toBe(true);
    expect(targetMet(rate({ ratio: 1.19 }))).toBe(false);
    expect(targetMet({ ...idleRss, targetOf: undefined, better: undefined })).toBe(true);
    expect(targetMet({ ...idleRss, leafgate: 45.01 })).toBe(false);
  });

  it("has no answer without a target or a figure", () => {
    expect(targetMet(rate({ target: null }))).toBeUndefined();
    expect(targetMet(rate({ ratio: null }))).toBeUndefined();
  });
});

describe("summarize", () => {
  it("finds a row by id, else by its scenario, and judges its target", () => {
    const runs = [
      run("mqtt-fan-in", [
        rate({ id: "fanin-qos1", scenario: "QoS 1 fan-in" }),
        rate({ scenario: "QoS 0  fan-in (mqtt.js)", ratio: 1.64, target: 1.5 }),
      ]),
      run("footprint", [idleRss]),
    ];
    const qos1 = summarize(runs, expected("fanin-qos1"));
    expect([qos1.status, qos1.met, qos1.problems]).toEqual(["ok", false, []]);
    const mqttjs = summarize(runs, expected("fanin-qos0-mqttjs"));
    expect([mqttjs.status, mqttjs.met, mqttjs.row?.ratio]).toEqual(["ok", true, 1.64]);
    const idle = summarize(runs, expected("idle-rss"));
    expect([idle.status, idle.met]).toEqual(["ok", true]);
  });

  it("finds a row in another bench's results by its id", () => {
    const runs = [
      run("drain", [rate({ id: "drain-300k", scenario: "drain 300k" })]),
      run("mqtt-fan-in", [rate({ id: "live-mqtt-hub", scenario: "live MQTT → hub" })]),
    ];
    expect(summarize(runs, expected("live-mqtt-hub")).row?.scenario).toBe("live MQTT → hub");
  });

  it("calls a row its bench did not write missing, and one of a failed bench failed", () => {
    const ran = summarize([run("drain", [])], expected("drain-1m"));
    expect([ran.status, ran.problems]).toEqual(["missing", []]);
    const failed = summarize([run("drain", undefined, 1)], expected("drain-1m"));
    expect([failed.status, failed.problems]).toEqual([
      "failed",
      ["drain exited 1", "drain: wrote no JSON"],
    ]);
    const absent = summarize(
      [{ bench: "drain", exitCode: 1, seconds: 0, error: NO_SUCH_BENCH }],
      expected("drain-1m"),
    );
    expect([absent.status, absent.problems]).toEqual(["failed", ["drain: no such bench"]]);
  });

  it("fails a row whose checks failed, or whose bench exited non-zero", () => {
    const runs = [
      run("drain", [
        rate({ id: "drain-300k", checks: { exactlyOnce: true, inOrder: false, counted: false } }),
      ]),
    ];
    const r = summarize(runs, expected("drain-300k"));
    expect([r.status, r.problems]).toEqual(["failed", ["checks failed: inOrder, counted"]]);
    const exited = summarize(
      [run("drain", [rate({ id: "drain-300k" })], 1)],
      expected("drain-300k"),
    );
    expect([exited.status, exited.problems]).toEqual(["failed", ["drain exited 1"]]);
  });

  it("takes rows without ids by their scenarios, the one with a target leading the other peers", () => {
    const fanin = (qos: 0 | 1, clients: string, peer: string, ratio: number) =>
      rate({
        scenario: `QoS ${qos} fan-in, 50 publishers -> 1 subscriber (${clients})`,
        peer,
        ratio,
        peerValue: 41_000 / ratio,
        target: peer === "mosquitto" ? [1.5, 1.2][qos]! : null,
        checks: { exactlyOnce: true, inOrder: true, ...(qos === 0 ? { qos0Lost: [0, 3] } : {}) },
      });
    const drain = (n: number, ratio: number) =>
      rate({ scenario: `backlog drain into JetStream, exactly once, ${n} buffered`, ratio });
    const runs = [
      run("mqtt-fan-in", [
        fanin(1, "raw-socket clients", "aedes", 1.5),
        fanin(1, "raw-socket clients", "mosquitto", 0.7),
        fanin(1, "mqtt.js clients", "mosquitto", 0.6),
        fanin(0, "raw-socket clients", "mosquitto", 1.4),
        fanin(0, "mqtt.js clients", "mosquitto", 0.5),
        fanin(0, "mqtt.js clients", "aedes", 2),
      ]),
      run("drain", [
        drain(50_000, 0.62),
        drain(200_000, 0.22),
        rate({ scenario: "live MQTT -> hub stream, exactly once", peer: "ceiling", ratio: 0.36 }),
        rate({
          scenario: "live MQTT -> hub stream, exactly once",
          peer: "nats MQTT",
          target: null,
        }),
      ]),
    ];
    const found = (id: string) => {
      const s = summarize(runs, expected(id));
      return [
        s.status,
        s.row?.scenario,
        s.row?.peer,
        s.row?.ratio,
        s.row?.others?.map((o) => o.peer),
      ];
    };
    const qos1 = "QoS 1 fan-in, 50 publishers -> 1 subscriber (raw-socket clients)";
    expect(found("fanin-qos1")).toEqual(["ok", qos1, "mosquitto", 0.7, ["aedes"]]);
    const raw = "QoS 0 fan-in, 50 publishers -> 1 subscriber (raw-socket clients)";
    expect(found("fanin-qos0-raw")).toEqual(["ok", raw, "mosquitto", 1.4, undefined]);
    const mqttjs = "QoS 0 fan-in, 50 publishers -> 1 subscriber (mqtt.js clients)";
    expect(found("fanin-qos0-mqttjs")).toEqual(["ok", mqttjs, "mosquitto", 0.5, ["aedes"]]);
    const small = "backlog drain into JetStream, exactly once, 50000 buffered";
    expect(found("drain-300k")).toEqual(["ok", small, "mosquitto", 0.62, undefined]);
    const large = "backlog drain into JetStream, exactly once, 200000 buffered";
    expect(found("drain-1m")).toEqual(["ok", large, "mosquitto", 0.22, undefined]);
    const live = "live MQTT -> hub stream, exactly once";
    expect(found("live-mqtt-hub")).toEqual(["ok", live, "ceiling", 0.36, ["nats MQTT"]]);
    // Printed under the short names.
    const cells = summaryCells([summarize(runs, expected("live-mqtt-hub"))]);
    expect(cells.map((c) => c.slice(0, 3))).toEqual([
      ["live MQTT -> hub", "41,000 msgs/s", "ceiling"],
      ["", "", "nats MQTT"],
    ]);
  });

  it("tells a bench left out (--only) apart", () => {
    const r = summarize([run("footprint", undefined, null)], expected("idle-rss"));
    expect(r.status).toBe("not run");
  });
});

describe("summaryCells", () => {
  it("prints each figure in its unit, the target, whether met, and a line per further peer", () => {
    const runs = [
      run("mqtt-fan-in", [rate({ id: "fanin-qos1", scenario: "QoS 1 fan-in" })]),
      run("footprint", [idleRss]),
    ];
    const rows = ["fanin-qos1", "drain-1m", "idle-rss"].map((id) =>
      summarize([...runs, run("drain", undefined, 1)], expected(id)),
    );
    expect(summaryCells(rows)).toEqual([
      ["QoS 1 fan-in", "41,000 msgs/s", "mosquitto", "60,000 msgs/s", "0.68", "ratio >= 1.2", "no"],
      ["drain 1M", "failed", "", "", "", "", ""],
      ["idle RSS", "44.5 MiB", "bare Node", "39.5 MiB", "1.13", "<= 45 MiB", "yes"],
      ["", "", "mosquitto", "8.4 MiB", "5.30", "", ""],
    ]);
  });
});

describe("readResult", () => {
  const dir = mkdtempSync(join(tmpdir(), "leafgate-summary-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("reads a bench's JSON and says why there is none", () => {
    const good = join(dir, "good.json");
    writeFileSync(good, JSON.stringify({ bench: "footprint", rows: [idleRss] }));
    expect(readResult(good).result?.rows).toEqual([idleRss]);
    expect(readResult(join(dir, "none.json"))).toEqual({ error: "wrote no JSON" });
    const noRows = join(dir, "no-rows.json");
    writeFileSync(noRows, JSON.stringify({ bench: "x" }));
    expect(readResult(noRows)).toEqual({ error: "JSON has no rows" });
    const bad = join(dir, "bad.json");
    writeFileSync(bad, "{");
    expect(readResult(bad).error).toMatch(/^unreadable JSON: /);
  });
});
