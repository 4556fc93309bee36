// Retained messages in SQLite (src/store/retained.ts): bounded in count and bytes (a new
// topic refused past either, replacing and clearing always allowed), sizes the same
// counted live and after a reopen, and payloads read from disk on match rather than held.
import type Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { type Logger, ManualClock } from "../../src/core/index.js";
import { MetricsRegistry } from "../../src/observe/index.js";
import { closeDatabase, RetainedStore } from "../../src/store/index.js";
import { tempDatabases } from "../helpers/temp-db.js";

const { newDir, open: openIn } = tempDatabases("retained");

function open(): { dir: string; db: Database.Database } {
  const dir = newDir();
  return { dir, db: openIn(dir) };
}

const p = (s: string) => Buffer.from(s);

describe("RetainedStore bounds", () => {
  it("refuses a new topic past maxMessages, counted; replacing and clearing work at the bound", () => {
    const { db } = open();
    const metrics = new MetricsRegistry();
    const store = new RetainedStore(db, { maxMessages: 2, metrics });
    const refused = () =>
      metrics.value("leafgate_mqtt_retained_refused_total", { reason: "max-retained-messages" });
    expect([store.set("a", p("1"), 0, 1), store.set("b", p("1"), 0, 1)]).toEqual([true, true]);
    expect(store.set("c", p("1"), 0, 1)).toBe(false);
    expect(refused()).toBe(1);
    expect(store.set("a", p("2"), 1, 2)).toBe(true);
    expect(store.set("b", p(""), 0, 2)).toBe(true);
    expect(store.set("c", p("1"), 0, 3)).toBe(true);
    expect(store.match([">"]).map((m) => [m.subject, m.payload.toString()])).toEqual([
      ["a", "2"],
      ["c", "1"],
    ]);
    expect(refused()).toBe(1);
    expect(metrics.value("leafgate_mqtt_retained_messages")).toBe(2);
  });

  it("counts bytes as topic + payload + properties, the same live and after a reopen", () => {
    const { dir, db } = open();
    const store = new RetainedStore(db, { maxBytes: 1000 });
    store.set("t.ü", p("x".repeat(100)), 1, 1, {
      contentType: "tëxt/ü",
      userProperties: [["k", "ü"]],
    });
    store.set("t.b", p("y"), 0, 1, undefined, 9_999_999_999_999);
    const live = store.bytes;
    expect(live).toBeGreaterThan(100 + 4 + 3 + 1);
    closeDatabase(db);
    const again = new RetainedStore(openIn(dir));
    expect(again.bytes).toBe(live);
    expect(again.size).toBe(2);
  });

  it("refuses a new topic past maxBytes; a replacement may grow an existing one", () => {
    const { db } = open();
    const metrics = new MetricsRegistry();
    const store = new RetainedStore(db, { maxBytes: 20, metrics });
    expect(store.set("a", p("123456789"), 0, 1)).toBe(true); // 10
    expect(store.set("b", p("12345678901"), 0, 1)).toBe(false); // 22
    expect(store.set("b", p("123456789"), 0, 1)).toBe(true); // 20
    expect(store.set("a", p("1234567890123"), 0, 1)).toBe(true); // replaced: 24
    expect(store.bytes).toBe(24);
    expect(
      metrics.value("leafgate_mqtt_retained_refused_total", { reason: "max-retained-bytes" }),
    ).toBe(1);
  });

  it("an expired message is dropped on match and its bytes freed", () => {
    const { db } = open();
    const store = new RetainedStore(db);
    store.set("gone", p("abc"), 0, 1, undefined, 1000);
    store.set("kept", p("abc"), 0, 1);
    expect(store.match([">"], 1000).map((m) => m.subject)).toEqual(["kept"]);
    expect([store.size, store.bytes]).toEqual([1, 7]);
    expect(db.prepare("SELECT count(*) AS n FROM retained").get()).toEqual({ n: 1 });
  });

  it("payloads are read from the database on match, not held in memory", () => {
    const { db } = open();
    const store = new RetainedStore(db);
    store.set("s", p("old"), 0, 1);
    db.prepare("UPDATE retained SET payload = ? WHERE subject = 's'").run(p("on disk"));
    expect(store.match(["s"])[0]!.payload.toString()).toBe("on disk");
  });

  it("logs a refusal at most once per bound every 10 s, the next line saying how many were held back", () => {
    const { db } = open();
    const clock = new ManualClock(1_000);
    const lines: [string, Record<string, unknown>][] = [];
    const warn = (fields: Record<string, unknown>, msg: string): void => {
      lines.push([msg, fields]);
    };
    const log: Logger = { debug: warn, info: warn, warn, error: warn, child: () => log };
    const store = new RetainedStore(db, { maxMessages: 1, log, clock });
    store.set("a", p("1"), 0, 1);
    for (const topic of ["b", "c", "d"]) expect(store.set(topic, p("1"), 0, 1)).toBe(false);
    clock.advance(9_999);
    expect(store.set("e", p("1"), 0, 1)).toBe(false);
    clock.advance(1);
    expect(store.set("f", p("1"), 0, 1)).toBe(false);
    const reached =
      "retained message for a new topic not stored: mqtt.max_retained_messages reached";
    expect(lines).toEqual([
      [reached, { bound: "max-retained-messages", messages: 1, bytes: 2 }],
      [reached, { bound: "max-retained-messages", messages: 1, bytes: 2, suppressed: 3 }],
    ]);
  });

  it("expires by its clock when match is given no time", () => {
    const { db } = open();
    const clock = new ManualClock(1_000);
    const store = new RetainedStore(db, { clock });
    store.set("gone", p("abc"), 0, 1, undefined, 2_000);
    expect(store.match([">"]).map((m) => m.subject)).toEqual(["gone"]);
    clock.advance(1_000);
    expect(store.match([">"])).toEqual([]);
  });
});
