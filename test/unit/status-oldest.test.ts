// The outbox's part of `/status`: each class's limits as resolved (its own, else the
// buffer's; unlimited as null), and when its oldest committed row was received, per class
// and per account, found by one walk down the (account, class, id) index, never a scan.
// Also the disk guard's state and the hub link's servers as dialed.
import { describe, expect, it } from "vitest";
import { type Envelope, silentLogger } from "../../src/core/index.js";
import { MetricsRegistry } from "../../src/observe/index.js";
import { type BufferLimits, Outboxes, UNLIMITED } from "../../src/store/index.js";
import { dialedServer } from "../../src/upstream/connect-options.js";
import { tempDatabases } from "../helpers/temp-db.js";

const T0 = 1_700_000_000_000;
const DAY = 86_400_000;
const { open } = tempDatabases("oldest");

const limits: BufferLimits = {
  maxBytes: 1e9,
  maxMessages: Number.POSITIVE_INFINITY,
  maxAgeMs: 7 * DAY,
  onFull: "drop_oldest",
  classes: [
    {
      name: "alarms",
      subjects: ["alarms.>"],
      onFull: "reject",
      maxBytes: 4096,
      maxMessages: 10,
      maxAgeMs: null,
    },
  ],
};

function msg(subject: string, receivedAtMs: number): Envelope {
  return { subject, payload: Buffer.from("x"), receivedAtMs, origin: "mqtt", qos: 1 };
}

function outboxes() {
  const db = open();
  const all = new Outboxes(db, {
    commitIntervalMs: 0,
    commitMaxRows: 100,
    log: silentLogger,
    metrics: new MetricsRegistry(),
    accounts: [
      { name: "$G", limits },
      { name: "acme", limits: UNLIMITED },
    ],
  });
  return { db, all };
}

const oldest = (classes: { name: string; oldestAt: number | null }[]) =>
  Object.fromEntries(classes.map((c) => [c.name, c.oldestAt]));

describe("the oldest row of each class", () => {
  it("is the first row of the class in each account; null when none; the next once it goes", async () => {
    const { all } = outboxes();
    const g = all.of("$G");
    const acme = all.of("acme");
    expect(oldest(g.classStatus())).toEqual({ alarms: null, default: null });
    // Interleaved accounts and classes; ids ascend, received times need not.
    await Promise.all([
      acme.append(msg("t.a", T0 - 500)),
      g.append(msg("t.b", T0 - 300)),
      g.append(msg("alarms.x", T0 - 200)),
      g.append(msg("t.c", T0 - 400)),
      acme.append(msg("t.d", T0 - 100)),
      g.append(msg("alarms.y", T0 - 50)),
    ]);
    expect(oldest(g.classStatus())).toEqual({ alarms: T0 - 200, default: T0 - 300 });
    expect(oldest(acme.classStatus())).toEqual({ default: T0 - 500 });

    // The hub took $G's first default row and first alarm: the next of each is the oldest.
    const rows = g.readAfter(0, 10);
    expect(rows.map((r) => r.subject)).toEqual(["t.b", "alarms.x", "t.c", "alarms.y"]);
    g.delete([rows[0]!.id, rows[1]!.id]);
    expect(oldest(g.classStatus())).toEqual({ alarms: T0 - 50, default: T0 - 400 });
    g.delete([rows[2]!.id, rows[3]!.id]);
    expect(oldest(g.classStatus())).toEqual({ alarms: null, default: null });
    expect(oldest(acme.classStatus())).toEqual({ default: T0 - 500 });
    all.close();
  });

  it("carries each class's limits as resolved, unlimited as null", () => {
    const { all } = outboxes();
    expect(all.of("$G").classStatus()).toEqual([
      {
        name: "alarms",
        messages: 0,
        bytes: 0,
        onFull: "reject",
        maxBytes: 4096,
        maxMessages: 10,
        maxAgeMs: 7 * DAY,
        oldestAt: null,
      },
      {
        name: "default",
        messages: 0,
        bytes: 0,
        onFull: "drop_oldest",
        maxBytes: 1e9,
        maxMessages: null,
        maxAgeMs: 7 * DAY,
        oldestAt: null,
      },
    ]);
    expect(all.of("acme").classStatus()).toEqual([
      {
        name: "default",
        messages: 0,
        bytes: 0,
        onFull: "drop_oldest",
        maxBytes: null,
        maxMessages: null,
        maxAgeMs: null,
        oldestAt: null,
      },
    ]);
    all.close();
  });

  it("is found through the (account, class, id) index: no scan, no sort", () => {
    const { db, all } = outboxes();
    const plan = db
      .prepare(
        "EXPLAIN QUERY PLAN SELECT received_at_ms FROM outbox WHERE account = ? AND class = ? ORDER BY id LIMIT 1",
      )
      .all("$G", "default") as { detail: string }[];
    expect(plan.map((p) => p.detail)).toEqual([
      "SEARCH outbox USING INDEX outbox_account_class_id (account=? AND class=?)",
    ]);
    all.close();
  });
});

describe("the disk guard's state", () => {
  it("is ok with the reserve held on a real data dir, with its thresholds", () => {
    const { all } = outboxes();
    all.startMaintenance(60_000);
    const disk = all.diskStatus();
    expect({ ...disk, freeBytes: typeof disk.freeBytes }).toEqual({
      state: "ok",
      reserveBytes: 16 * 1024 * 1024,
      resumeAtFreeBytes: 20 * 1024 * 1024,
      freeBytes: "number",
    });
    all.close();
  });
});

describe("dialedServer", () => {
  it("is the scheme, the masked user info, the host and the port nats.js dials", () => {
    expect(
      [
        "nats://127.0.0.1:4222",
        "nats://hub",
        "hub-2:4333",
        "tls://user:s3cret@hub.example:4443",
        "nats://T0KEN@[::1]:4222",
        "NATS://Hub:4222/",
        "nats://hub:80",
      ].map(dialedServer),
    ).toEqual([
      "nats://127.0.0.1:4222",
      "nats://hub:4222",
      "nats://hub-2:4333",
      "tls://user:***@hub.example:4443",
      "nats://***@[::1]:4222",
      "nats://hub:4222",
      "nats://hub:80",
    ]);
  });
});
