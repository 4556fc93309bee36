// Bounded buffer and priority classes against real SQLite files in temp dirs: per-class
// message and byte limits (drop_oldest with 1% headroom, reject), the global limits,
// max_age expiry, disk full, accounting across a reopen, and the v1 -> v2 migration.
import { join } from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { type Envelope, type Logger, ManualClock, silentLogger } from "../../src/core/index.js";
import { MetricsRegistry } from "../../src/observe/index.js";
import {
  type BufferClassSpec,
  type BufferLimits,
  closeDatabase,
  DATABASE_FILE,
  type OnFull,
  Outbox,
  type StoreError,
} from "../../src/store/index.js";
import { tempDatabases } from "../helpers/temp-db.js";

const DROPPED = "leafgate_buffer_dropped_total";
const MESSAGES = "leafgate_buffer_messages";
const BYTES = "leafgate_buffer_bytes";
const FAILURES = "leafgate_outbox_commit_failures_total";
const T0 = 1_700_000_000_000;
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

// The gateway's defaults (src/config/schema.ts): limits a test does not set are these,
// finite, exactly as a user who sets only one limit gets them.
const DEFAULT_MAX_BYTES = 1e9;
const DEFAULT_MAX_MESSAGES = 10_000_000;
const DEFAULT_MAX_AGE_MS = 7 * 24 * HOUR;

const { newDir, open } = tempDatabases("limits");

function cls(
  name: string,
  subjects: string[],
  onFull: OnFull,
  opts: { maxBytes?: number; maxMessages?: number; maxAgeMs?: number } = {},
): BufferClassSpec {
  return {
    name,
    subjects,
    onFull,
    maxBytes: opts.maxBytes ?? null,
    maxMessages: opts.maxMessages ?? null,
    maxAgeMs: opts.maxAgeMs ?? null,
  };
}

function limits(opts: Partial<BufferLimits> = {}): BufferLimits {
  return {
    maxBytes: DEFAULT_MAX_BYTES,
    maxMessages: DEFAULT_MAX_MESSAGES,
    maxAgeMs: DEFAULT_MAX_AGE_MS,
    onFull: "drop_oldest",
    classes: [],
    ...opts,
  };
}

function newOutbox(
  db: Database.Database,
  bufferLimits: BufferLimits,
  seams: { clock?: ManualClock; log?: Logger } = {},
): { outbox: Outbox; metrics: MetricsRegistry } {
  const metrics = new MetricsRegistry();
  const outbox = new Outbox(db, {
    commitIntervalMs: 0,
    commitMaxRows: 10_000,
    limits: bufferLimits,
    log: seams.log ?? silentLogger,
    metrics,
    ...(seams.clock === undefined ? {} : { clock: seams.clock }),
  });
  return { outbox, metrics };
}

function msg(subject: string, payload: string | Buffer = subject, receivedAtMs = T0): Envelope {
  return {
    subject,
    payload: typeof payload === "string" ? Buffer.from(payload) : payload,
    receivedAtMs,
    origin: "mqtt",
    qos: 1,
  };
}

/** Appends all of `messages` in the same turn (one group commit) and waits for it. */
async function batch(outbox: Outbox, messages: readonly Envelope[]): Promise<void> {
  await Promise.all(messages.map((m) => outbox.append(m)));
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/** Ids of the rows of `klass` in the table, ascending. */
function idsOf(db: Database.Database, klass: string): number[] {
  return (
    db.prepare("SELECT id FROM outbox WHERE class = ? ORDER BY id").all(klass) as { id: number }[]
  ).map((r) => r.id);
}

function subjectsOf(db: Database.Database, klass: string): string[] {
  return (
    db.prepare("SELECT subject FROM outbox WHERE class = ? ORDER BY id").all(klass) as {
      subject: string;
    }[]
  ).map((r) => r.subject);
}

/** The table's truth: rows and bytes per class. */
function table(db: Database.Database): Map<string, { messages: number; bytes: number }> {
  const rows = db
    .prepare(
      "SELECT class, count(*) AS n, coalesce(sum(size), 0) AS bytes FROM outbox GROUP BY class",
    )
    .all() as { class: string; n: number; bytes: number }[];
  return new Map(rows.map((r) => [r.class, { messages: r.n, bytes: r.bytes }]));
}

/**
 * The outbox's accounting, its gauges and `size` all agree with the table, for every
 * configured class (absent from the table = 0), and no row belongs to an unknown class.
 */
function expectAccountingMatchesTable(
  db: Database.Database,
  outbox: Outbox,
  metrics: MetricsRegistry,
): void {
  const truth = table(db);
  const classes = outbox.classes();
  for (const c of classes) {
    const t = truth.get(c.name) ?? { messages: 0, bytes: 0 };
    expect({ class: c.name, messages: c.messages, bytes: c.bytes }).toEqual({
      class: c.name,
      ...t,
    });
    expect(metrics.value(MESSAGES, { class: c.name })).toBe(t.messages);
    expect(metrics.value(BYTES, { class: c.name })).toBe(t.bytes);
  }
  for (const name of truth.keys()) expect(classes.map((c) => c.name)).toContain(name);
  const { n } = db.prepare("SELECT count(*) AS n FROM outbox").get() as { n: number };
  expect(outbox.size).toBe(n);
}

async function refusal(p: Promise<void>): Promise<StoreError> {
  return p.then(
    () => {
      throw new Error("expected the append to be refused");
    },
    (e: unknown) => e as StoreError,
  );
}

describe("drop_oldest class over its own max_messages", () => {
  it("evicts exactly its oldest rows (excess + 1% of max_messages), keeps the newest in order", async () => {
    const db = open(newDir());
    const MAX = 2000;
    const HEADROOM = Math.floor(MAX * 0.01); // 20
    const { outbox, metrics } = newOutbox(
      db,
      limits({ classes: [cls("telemetry", ["telemetry.>"], "drop_oldest", { maxMessages: MAX })] }),
    );
    const tel = (i: number) => msg(`telemetry.t${i}`, `v${i}`);

    // Other classes' rows are never touched by telemetry's eviction.
    await batch(outbox, [msg("other.1"), msg("other.2"), msg("other.3")]);
    // Exactly at the limit: nothing evicted. Ids 4..2003.
    await batch(
      outbox,
      range(1, MAX).map((i) => tel(i)),
    );
    expect(metrics.value(DROPPED, { class: "telemetry", reason: "evicted" })).toBe(0);
    expect(idsOf(db, "telemetry")).toEqual(range(4, 2003));
    expectAccountingMatchesTable(db, outbox, metrics);

    // 700 over in one commit (more than one eviction chunk of 512 rows): the excess plus
    // the headroom go, oldest first. Ids 2004..2703; ids 4..(4+720-1) are evicted.
    await batch(
      outbox,
      range(MAX + 1, MAX + 700).map((i) => tel(i)),
    );
    let evicted = 700 + HEADROOM;
    expect(metrics.value(DROPPED, { class: "telemetry", reason: "evicted" })).toBe(evicted);
    expect(idsOf(db, "telemetry")).toEqual(range(4 + evicted, 2703));
    expect(subjectsOf(db, "telemetry")).toEqual(
      range(1 + evicted, MAX + 700).map((i) => `telemetry.t${i}`),
    );
    expect(subjectsOf(db, "default")).toEqual(["other.1", "other.2", "other.3"]);
    expectAccountingMatchesTable(db, outbox, metrics);
    expect(outbox.classes().find((c) => c.name === "telemetry")!.messages).toBe(MAX - HEADROOM);

    // The headroom is refilled one commit at a time without evicting...
    for (let i = 1; i <= HEADROOM; i++) await outbox.append(tel(MAX + 700 + i));
    expect(metrics.value(DROPPED, { class: "telemetry", reason: "evicted" })).toBe(evicted);
    expect(idsOf(db, "telemetry").length).toBe(MAX);
    // ...and the first row over evicts 1 + headroom again.
    await outbox.append(tel(MAX + 700 + HEADROOM + 1));
    evicted += 1 + HEADROOM;
    expect(metrics.value(DROPPED, { class: "telemetry", reason: "evicted" })).toBe(evicted);
    expect(idsOf(db, "telemetry")).toEqual(range(4 + evicted, 2703 + HEADROOM + 1));
    expect(metrics.value(DROPPED, { class: "default", reason: "evicted" })).toBe(0);
    expectAccountingMatchesTable(db, outbox, metrics);
  });
});

describe("drop_oldest class over its own max_bytes", () => {
  it("counts payload bytes plus subject length and evicts the excess plus 1% of max_bytes", async () => {
    const db = open(newDir());
    const MAX_BYTES = 10_000;
    const { outbox, metrics } = newOutbox(
      db,
      limits({ classes: [cls("blobs", ["blobs.>"], "drop_oldest", { maxBytes: MAX_BYTES })] }),
    );
    // "blobs.NNN" is 9 characters; 91 payload bytes make a 100-byte row.
    const blob = (i: number, payloadBytes = 91) =>
      msg(`blobs.${String(i).padStart(3, "0")}`, Buffer.alloc(payloadBytes, i % 256));

    await batch(
      outbox,
      range(1, 100).map((i) => blob(i)),
    );
    const sizes = db.prepare("SELECT DISTINCT size FROM outbox").all() as { size: number }[];
    expect(sizes).toEqual([{ size: 100 }]);
    expect(outbox.classes().find((c) => c.name === "blobs")!.bytes).toBe(10_000);
    expect(metrics.value(DROPPED, { class: "blobs", reason: "evicted" })).toBe(0);

    // 250 bytes over: 250 + 100 headroom = 350 bytes must go, i.e. 4 rows of 100.
    await outbox.append(blob(101, 241));
    expect(metrics.value(DROPPED, { class: "blobs", reason: "evicted" })).toBe(4);
    expect(idsOf(db, "blobs")).toEqual(range(5, 101));
    expect(outbox.classes().find((c) => c.name === "blobs")!.bytes).toBe(96 * 100 + 250);
    expectAccountingMatchesTable(db, outbox, metrics);

    // 9,850 bytes now: a 150-byte row fits exactly; the next row ("blobs.103" + 1 byte)
    // is 10 bytes over: 10 + 100 bytes must go, the 2 oldest rows (ids 5 and 6).
    await outbox.append(blob(102, 141));
    expect(metrics.value(DROPPED, { class: "blobs", reason: "evicted" })).toBe(4);
    await outbox.append(blob(103, 1));
    expect(outbox.classes().find((c) => c.name === "blobs")!.bytes).toBe(10_000 - 200 + 10);
    expect(metrics.value(DROPPED, { class: "blobs", reason: "evicted" })).toBe(6);
    expect(idsOf(db, "blobs")).toEqual(range(7, 103));
    expectAccountingMatchesTable(db, outbox, metrics);
  });
});

describe("reject class", () => {
  it("refuses at once the append that does not fit, counts it, and accepts again once rows are deleted", async () => {
    const db = open(newDir());
    const { outbox, metrics } = newOutbox(
      db,
      limits({
        classes: [cls("alarms", ["alarms.>"], "reject", { maxMessages: 5, maxBytes: 1024 })],
      }),
    );
    // Five appends in one turn: the pending ones count, so the sixth is refused before
    // anything is committed.
    const accepted = range(1, 5).map((i) => outbox.append(msg(`alarms.a${i}`)));
    const sixth = outbox.append(msg("alarms.a6"));
    expect(outbox.lastId).toBe(0);
    expect(metrics.value(DROPPED, { class: "alarms", reason: "rejected" })).toBe(1);
    const err = await refusal(sixth);
    expect(err.code).toBe("LG_ERR_BUFFER_FULL");
    expect(err.message).toContain("buffer class alarms is full");
    await Promise.all(accepted);
    expect(idsOf(db, "alarms")).toEqual([1, 2, 3, 4, 5]);

    // Committed and full: refused again, nothing written, nothing evicted.
    await expect(outbox.append(msg("alarms.a7"))).rejects.toMatchObject({
      code: "LG_ERR_BUFFER_FULL",
    });
    expect(metrics.value(DROPPED, { class: "alarms", reason: "rejected" })).toBe(2);
    expect(metrics.value(DROPPED, { class: "alarms", reason: "evicted" })).toBe(0);
    expect(subjectsOf(db, "alarms")).toEqual(range(1, 5).map((i) => `alarms.a${i}`));
    expect(outbox.lastId).toBe(5);
    expectAccountingMatchesTable(db, outbox, metrics);

    // Other classes are not affected by alarms being full.
    await outbox.append(msg("status.ok"));

    // The forwarder deletes two acked rows: two appends fit again, a third does not.
    outbox.delete([1, 2]);
    expectAccountingMatchesTable(db, outbox, metrics);
    await outbox.append(msg("alarms.a8"));
    await outbox.append(msg("alarms.a9"));
    await expect(outbox.append(msg("alarms.a10"))).rejects.toMatchObject({
      code: "LG_ERR_BUFFER_FULL",
    });
    expect(metrics.value(DROPPED, { class: "alarms", reason: "rejected" })).toBe(3);
    expect(idsOf(db, "alarms")).toEqual([3, 4, 5, 7, 8]);
    expectAccountingMatchesTable(db, outbox, metrics);

    // The class's byte limit refuses too: 3 free rows but a 1,000-byte row does not fit.
    outbox.delete([3, 4, 5]);
    const bytesBefore = outbox.classes().find((c) => c.name === "alarms")!.bytes;
    expect(bytesBefore).toBe(2 * "alarms.a8".length * 2);
    await expect(
      outbox.append(msg("alarms.big", Buffer.alloc(1024 - "alarms.big".length - bytesBefore + 1))),
    ).rejects.toMatchObject({ code: "LG_ERR_BUFFER_FULL" });
    await outbox.append(msg("alarms.big", Buffer.alloc(1024 - "alarms.big".length - bytesBefore)));
    expect(outbox.classes().find((c) => c.name === "alarms")!.bytes).toBe(1024);
    expect(metrics.value(DROPPED, { class: "alarms", reason: "rejected" })).toBe(4);
    expectAccountingMatchesTable(db, outbox, metrics);
  });
});

describe("alarms are never evicted by telemetry", () => {
  const alarmsAndTelemetry = (alarmMax?: number) =>
    limits({
      maxMessages: 100,
      classes: [
        cls(
          "alarms",
          ["alarms.>"],
          "reject",
          alarmMax === undefined ? {} : { maxMessages: alarmMax },
        ),
        cls("telemetry", [">"], "drop_oldest"),
      ],
    });

  // Telemetry at 69 after every batch: a batch of 50 on top of 69 is 19 over telemetry's
  // own limit (100, inherited) -> 19 + 1 evicted -> 99; then 30 alarms + 99 = 29 over the
  // global limit -> 29 + 1 evicted from telemetry (the only drop_oldest class in the batch).
  it("keeps all 30 alarms while 1,000 telemetry messages arrive in batches of 50", async () => {
    const db = open(newDir());
    const { outbox, metrics } = newOutbox(db, alarmsAndTelemetry());
    await batch(
      outbox,
      range(1, 30).map((i) => msg(`alarms.a${i}`)),
    );
    for (let b = 0; b < 20; b++) {
      await batch(
        outbox,
        range(b * 50 + 1, b * 50 + 50).map((i) => msg(`tele.t${i}`)),
      );
      const counts = table(db);
      const telemetry = counts.get("telemetry")?.messages ?? 0;
      expect(counts.get("alarms")?.messages).toBe(30);
      expect(telemetry).toBeLessThanOrEqual(70);
      expect(outbox.size).toBeLessThanOrEqual(100);
      // Exactly: the newest telemetry, as many as the rule leaves (50, then 69 every time).
      const last = b * 50 + 50;
      const kept = b === 0 ? 50 : 69;
      expect({ batch: b + 1, telemetry }).toEqual({ batch: b + 1, telemetry: kept });
      expect(subjectsOf(db, "telemetry")).toEqual(
        range(last - kept + 1, last).map((i) => `tele.t${i}`),
      );
    }
    expect(subjectsOf(db, "alarms")).toEqual(range(1, 30).map((i) => `alarms.a${i}`));
    expect(idsOf(db, "alarms")).toEqual(range(1, 30));
    expect(subjectsOf(db, "telemetry")).toEqual(range(932, 1000).map((i) => `tele.t${i}`));
    expect(metrics.value(DROPPED, { class: "telemetry", reason: "evicted" })).toBe(931);
    expect(metrics.value(DROPPED, { class: "alarms", reason: "evicted" })).toBe(0);
    expectAccountingMatchesTable(db, outbox, metrics);

    // The rule (BufferPolicy.fits): an alarm is accepted iff the alarm class stays within
    // its own limits AND the rows nothing may evict (reject classes') stay within the
    // global ones; telemetry gives way in the alarm's commit. 99 + a31 = 100: no eviction;
    // a32 is 1 over -> 1 + 1 headroom telemetry evicted (67 + 32 = 99); a33 -> 100; a34 ->
    // 2 more evicted (65 + 34 = 99); a35 -> 100.
    for (const i of [31, 32, 33, 34, 35]) await outbox.append(msg(`alarms.a${i}`));
    expect(table(db).get("alarms")?.messages).toBe(35);
    expect(table(db).get("telemetry")?.messages).toBe(65);
    expect(subjectsOf(db, "telemetry")).toEqual(range(936, 1000).map((i) => `tele.t${i}`));
    expect(metrics.value(DROPPED, { class: "telemetry", reason: "evicted" })).toBe(935);
    expect(metrics.value(DROPPED, { class: "alarms", reason: "rejected" })).toBe(0);
    expect(outbox.size).toBe(100);
    expectAccountingMatchesTable(db, outbox, metrics);
  });

  it("refuses alarms once reject classes alone fill the buffer; telemetry then drops itself", async () => {
    const db = open(newDir());
    const { outbox, metrics } = newOutbox(
      db,
      limits({
        maxMessages: 10,
        classes: [cls("alarms", ["alarms.>"], "reject"), cls("telemetry", [">"], "drop_oldest")],
      }),
    );
    await batch(
      outbox,
      range(1, 10).map((i) => msg(`alarms.a${i}`)),
    );
    await expect(outbox.append(msg("alarms.a11"))).rejects.toMatchObject({
      code: "LG_ERR_BUFFER_FULL",
    });
    // Accepted (telemetry never pushes back), then evicted in its own commit: nothing else
    // may give way.
    await outbox.append(msg("tele.t1"));
    expect(table(db).get("alarms")?.messages).toBe(10);
    expect(table(db).get("telemetry")?.messages ?? 0).toBe(0);
    expect(metrics.value(DROPPED, { class: "alarms", reason: "rejected" })).toBe(1);
    expect(metrics.value(DROPPED, { class: "telemetry", reason: "evicted" })).toBe(1);
    expectAccountingMatchesTable(db, outbox, metrics);
  });

  // Rows of drop_oldest classes (pending or committed) give way to alarms, so they must
  // not make an alarm look like it does not fit: the alarm is refused only when the alarm
  // class itself (40) is full, or reject classes alone fill the buffer.
  it("does not refuse alarms because telemetry is pending in the same commit", async () => {
    const db = open(newDir());
    const { outbox, metrics } = newOutbox(db, alarmsAndTelemetry(40));
    await batch(
      outbox,
      range(1, 30).map((i) => msg(`alarms.a${i}`)),
    );
    await batch(
      outbox,
      range(1, 60).map((i) => msg(`tele.t${i}`)),
    );
    expect(outbox.size).toBe(90);

    const pending = [
      ...range(61, 110).map((i) => outbox.append(msg(`tele.t${i}`))),
      ...range(31, 40).map((i) => outbox.append(msg(`alarms.a${i}`))),
    ];
    const eleventh = refusal(outbox.append(msg("alarms.a41")));
    const results = await Promise.allSettled(pending);
    const refused = results.flatMap((r) => (r.status === "rejected" ? [String(r.reason)] : []));
    expect(refused).toEqual([]);
    expect((await eleventh).code).toBe("LG_ERR_BUFFER_FULL");
    expect(metrics.value(DROPPED, { class: "alarms", reason: "rejected" })).toBe(1);
    expect(subjectsOf(db, "alarms")).toEqual(range(1, 40).map((i) => `alarms.a${i}`));
    // 110 telemetry within telemetry's own 100: 10 + 1 evicted -> 99; 40 + 99 is 39 over
    // the global 100 -> 39 + 1 more -> 59.
    expect(subjectsOf(db, "telemetry")).toEqual(range(52, 110).map((i) => `tele.t${i}`));
    expect(outbox.size).toBe(99);
    expectAccountingMatchesTable(db, outbox, metrics);
  });
});

describe("global limits", () => {
  it("make room only from the drop_oldest classes in the committing batch, in order of arrival", async () => {
    const db = open(newDir());
    const { outbox, metrics } = newOutbox(
      db,
      limits({
        maxMessages: 100,
        classes: [cls("a", ["a.>"], "drop_oldest"), cls("b", ["b.>"], "drop_oldest")],
      }),
    );
    await batch(
      outbox,
      range(1, 60).map((i) => msg(`a.${i}`)),
    ); // ids 1..60
    await batch(
      outbox,
      range(1, 40).map((i) => msg(`b.${i}`)),
    ); // ids 61..100
    expect(outbox.size).toBe(100);
    expect(metrics.value(DROPPED, { class: "a", reason: "evicted" })).toBe(0);

    // Only b commits: b pays for the 10 over (+1 headroom), though a's rows are older.
    await batch(
      outbox,
      range(41, 50).map((i) => msg(`b.${i}`)),
    ); // ids 101..110
    expect(metrics.value(DROPPED, { class: "b", reason: "evicted" })).toBe(11);
    expect(metrics.value(DROPPED, { class: "a", reason: "evicted" })).toBe(0);
    expect(idsOf(db, "a")).toEqual(range(1, 60));
    expect(idsOf(db, "b")).toEqual(range(72, 110));
    expect(outbox.size).toBe(99);
    expectAccountingMatchesTable(db, outbox, metrics);

    // Both commit, a first: a, the first drop_oldest class of the batch, makes all the
    // room (9 over + 1), b keeps its rows.
    await batch(outbox, [
      ...range(61, 65).map((i) => msg(`a.${i}`)), // ids 111..115
      ...range(51, 55).map((i) => msg(`b.${i}`)), // ids 116..120
    ]);
    expect(metrics.value(DROPPED, { class: "a", reason: "evicted" })).toBe(10);
    expect(metrics.value(DROPPED, { class: "b", reason: "evicted" })).toBe(11);
    expect(idsOf(db, "a")).toEqual([...range(11, 60), ...range(111, 115)]);
    expect(idsOf(db, "b")).toEqual([...range(72, 110), ...range(116, 120)]);
    expect(outbox.size).toBe(99);
    expectAccountingMatchesTable(db, outbox, metrics);
  });

  it("the global byte limit evicts from the committing drop_oldest class", async () => {
    const db = open(newDir());
    const { outbox, metrics } = newOutbox(
      db,
      limits({
        maxBytes: 10_000,
        classes: [cls("a", ["a.>"], "drop_oldest"), cls("b", ["b.>"], "drop_oldest")],
      }),
    );
    // "a.NN" / "b.NN": 4 characters + 96 payload bytes = 100 bytes a row.
    const row = (c: string, i: number) =>
      msg(`${c}.${String(i).padStart(2, "0")}`, Buffer.alloc(96));
    await batch(
      outbox,
      range(1, 50).map((i) => row("a", i)),
    );
    await batch(
      outbox,
      range(1, 50).map((i) => row("b", i)),
    );
    expect(metrics.value(DROPPED, { class: "a", reason: "evicted" })).toBe(0);
    // 100 bytes over + 1% of 10,000 = 200 bytes: b's 2 oldest rows.
    await outbox.append(row("b", 51));
    expect(metrics.value(DROPPED, { class: "b", reason: "evicted" })).toBe(2);
    expect(idsOf(db, "a")).toEqual(range(1, 50));
    expect(idsOf(db, "b")).toEqual(range(53, 101));
    expectAccountingMatchesTable(db, outbox, metrics);
  });
});

describe("max_age", () => {
  it("maintain(now) expires exactly the rows older than their class's max_age", async () => {
    const db = open(newDir());
    const { outbox, metrics } = newOutbox(
      db,
      limits({
        maxAgeMs: HOUR,
        classes: [cls("short", ["short.>"], "drop_oldest", { maxAgeMs: MINUTE })],
      }),
    );
    // short: one row every 10 s from T0 (ids 1..10). default: 1,200 rows, one every
    // 3 s from T0 (ids 11..1210), more than two expiry chunks of 512 rows.
    await batch(
      outbox,
      range(0, 9).map((i) => msg(`short.${i}`, "s", T0 + i * 10_000)),
    );
    await batch(
      outbox,
      range(0, 1199).map((i) => msg(`long.${i}`, "l", T0 + i * 3_000)),
    );

    // Nothing is old enough yet.
    outbox.maintain(T0 + MINUTE);
    expect(metrics.value(DROPPED, { class: "short", reason: "expired" })).toBe(0);
    expect(outbox.size).toBe(1210);

    // Cutoff for short: T0 + 70 s. The row received at exactly the cutoff is 60 s old,
    // not older than max_age, and stays; the 7 before it go. default's cutoff is before T0.
    outbox.maintain(T0 + 130_000);
    expect(metrics.value(DROPPED, { class: "short", reason: "expired" })).toBe(7);
    expect(metrics.value(DROPPED, { class: "default", reason: "expired" })).toBe(0);
    expect(subjectsOf(db, "short")).toEqual(["short.7", "short.8", "short.9"]);
    expectAccountingMatchesTable(db, outbox, metrics);

    // default's cutoff: T0 + 1 h + 30 min + 1 ms - 1 h = T0 + 1,800,001 ms: rows 0..600
    // (received up to T0 + 1,800,000) expire, 601.. stay. short's rows all expire.
    outbox.maintain(T0 + HOUR + 30 * MINUTE + 1);
    expect(metrics.value(DROPPED, { class: "default", reason: "expired" })).toBe(601);
    expect(metrics.value(DROPPED, { class: "short", reason: "expired" })).toBe(10);
    expect(idsOf(db, "short")).toEqual([]);
    expect(idsOf(db, "default")).toEqual(range(11 + 601, 1210));
    expect(metrics.value(DROPPED, { class: "default", reason: "evicted" })).toBe(0);
    expectAccountingMatchesTable(db, outbox, metrics);
    expect(outbox.readAfter(0, 1)[0]!.subject).toBe("long.601");
  });
});

describe("upkeep and the drop log on the clock", () => {
  it("startMaintenance expires every tenth of the shortest max_age, as the clock moves", async () => {
    const db = open(newDir());
    const clock = new ManualClock(T0);
    const { outbox, metrics } = newOutbox(
      db,
      limits({
        maxAgeMs: HOUR,
        classes: [cls("short", ["short.>"], "drop_oldest", { maxAgeMs: MINUTE })],
      }),
      { clock },
    );
    // One short row every 10 s from T0 (ids 1..10).
    await batch(
      outbox,
      range(0, 9).map((i) => msg(`short.${i}`, "s", T0 + i * 10_000)),
    );
    const expired = () => metrics.value(DROPPED, { class: "short", reason: "expired" });
    // maintain() without a time asks the clock: at T0 + 70 s the cutoff is T0 + 10 s, so
    // only the row of T0 goes (the one received at the cutoff is not older than max_age).
    clock.advance(70_000);
    outbox.maintain();
    expect(expired()).toBe(1);

    // Rounds every 6 s (a tenth of a minute) from now: the round at T0 + 76 s (cutoff
    // T0 + 16 s) takes the row of T0 + 10 s; the next, at T0 + 82 s, the row of T0 + 20 s.
    outbox.startMaintenance();
    expect(clock.pending).toBe(1);
    clock.advance(6_000);
    expect(expired()).toBe(2);
    clock.advance(5_999);
    expect(expired()).toBe(2);
    clock.advance(1);
    expect(expired()).toBe(3);
    expect(subjectsOf(db, "short")).toEqual(range(3, 9).map((i) => `short.${i}`));
    expectAccountingMatchesTable(db, outbox, metrics);

    // Closing stops the rounds.
    outbox.close();
    expect(clock.pending).toBe(0);
    clock.advance(HOUR);
    expect(expired()).toBe(3);
  });

  it("logs drops once per class and reason every 10 s, counting the messages in between", async () => {
    const db = open(newDir());
    const clock = new ManualClock(T0);
    const lines: [string, Record<string, unknown>][] = [];
    const log: Logger = { ...silentLogger, warn: (fields, m) => lines.push([m, fields]) };
    const { outbox, metrics } = newOutbox(
      db,
      limits({ classes: [cls("telemetry", [">"], "drop_oldest", { maxMessages: 100 })] }),
      { clock, log },
    );
    const evicted = () => metrics.value(DROPPED, { class: "telemetry", reason: "evicted" });
    // 101 rows received at T0 - 5 s: 1 over, + 1 headroom = 2 evicted, logged at once.
    await batch(
      outbox,
      range(1, 101).map((i) => msg(`t.${i}`, "x", T0 - 5_000)),
    );
    expect(evicted()).toBe(2);
    const line = { class: "telemetry", oldestAgeS: 5, onFull: "drop_oldest" };
    expect(lines).toEqual([["buffer full: evicted the oldest messages", { ...line, messages: 2 }]]);

    // 99 left: the 2nd row over evicts 2 more, held back within the window...
    await outbox.append(msg("t.102", "x", T0));
    await outbox.append(msg("t.103", "x", T0));
    expect(evicted()).toBe(4);
    clock.advance(9_999);
    await outbox.append(msg("t.104", "x", T0));
    await outbox.append(msg("t.105", "x", T0));
    expect(evicted()).toBe(6);
    expect(lines.length).toBe(1);
    // ...and the first drop after it says how many messages went since the last line.
    clock.advance(1);
    await outbox.append(msg("t.106", "x", T0));
    await outbox.append(msg("t.107", "x", T0));
    expect(evicted()).toBe(8);
    expect(lines).toEqual([
      ["buffer full: evicted the oldest messages", { ...line, messages: 2 }],
      [
        "buffer full: evicted the oldest messages",
        { ...line, oldestAgeS: 15, messages: 6, suppressed: 2 },
      ],
    ]);
  });
});

describe("disk full (max_page_count)", () => {
  it("drop_oldest rows give way, alarms and telemetry commit, and it recovers", async () => {
    const db = open(newDir());
    const { outbox, metrics } = newOutbox(
      db,
      limits({
        classes: [
          cls("alarms", ["alarms.>"], "reject"),
          cls("telemetry", ["telemetry.>"], "drop_oldest"),
        ],
      }),
    );
    await batch(outbox, [msg("alarms.1", "a1"), msg("alarms.2", "a2")]); // ids 1, 2
    // Many small telemetry rows: "telemetry.NNNN" (14) + 40 bytes = 54 bytes, ids 3..2002.
    const small = (i: number) =>
      msg(`telemetry.${String(i).padStart(4, "0")}`, Buffer.alloc(40, i % 256));
    await batch(
      outbox,
      range(1, 2000).map((i) => small(i)),
    );
    expect(outbox.lastId).toBe(2002);
    const pages = db.pragma("page_count", { simple: true }) as number;
    expect(db.pragma(`max_page_count = ${pages}`, { simple: true })).toBe(pages);

    // An alarm that needs new pages: telemetry gives way — twice the batch's rows and
    // bytes, oldest first — and the alarm commits.
    const alarm = msg("alarms.big", Buffer.alloc(16 * 1024, 1));
    const wantBytes = 2 * (alarm.payload.length + alarm.subject.length);
    const firstEviction = Math.max(2, Math.ceil(wantBytes / 54));
    expect(firstEviction).toBe(608);
    await outbox.append(alarm);
    expect(metrics.value(DROPPED, { class: "telemetry", reason: "evicted" })).toBe(firstEviction);
    expect(metrics.value(DROPPED, { class: "alarms", reason: "disk_full" })).toBe(0);
    expect(idsOf(db, "alarms")).toEqual([1, 2, 2003]);
    expect(idsOf(db, "telemetry")).toEqual(range(3 + firstEviction, 2002));
    expectAccountingMatchesTable(db, outbox, metrics);

    // A telemetry batch: committed, evicting its own class's oldest rows if it must.
    const bigTelemetry = range(1, 10).map((i) =>
      msg(`telemetry.big${i}`, Buffer.alloc(1000 - `telemetry.big${i}`.length, i)),
    );
    await batch(outbox, bigTelemetry);
    const telemetryIds = idsOf(db, "telemetry");
    expect(telemetryIds.slice(-10)).toEqual(range(2004, 2013));
    const oldestLeft = telemetryIds[0]!;
    expect(oldestLeft).toBeGreaterThanOrEqual(3 + firstEviction);
    expect(telemetryIds.slice(0, -10)).toEqual(range(oldestLeft, 2002));
    expect(metrics.value(DROPPED, { class: "telemetry", reason: "evicted" })).toBe(oldestLeft - 3);
    expect(idsOf(db, "alarms")).toEqual([1, 2, 2003]);
    expect(db.pragma("page_count", { simple: true })).toBeLessThanOrEqual(pages);
    expectAccountingMatchesTable(db, outbox, metrics);

    // Room again: ids continue and never reuse evicted ones.
    db.pragma("max_page_count = 1073741823");
    await outbox.append(msg("alarms.after", "a"));
    await outbox.append(small(2001));
    expect(idsOf(db, "alarms")).toEqual([1, 2, 2003, 2014]);
    expect(idsOf(db, "telemetry").at(-1)).toBe(2015);
    expect(metrics.value(FAILURES, { code: "SQLITE_FULL" })).toBe(0);
    expectAccountingMatchesTable(db, outbox, metrics);
  });

  it("refuses an alarm when nothing may give way, and changes nothing", async () => {
    const db = open(newDir());
    const { outbox, metrics } = newOutbox(
      db,
      limits({ classes: [cls("alarms", ["alarms.>"], "reject")] }),
    );
    await batch(outbox, [msg("alarms.1", "a1"), msg("alarms.2", "a2")]);
    const pages = db.pragma("page_count", { simple: true }) as number;
    db.pragma(`max_page_count = ${pages}`);
    const before = db.prepare("SELECT id, subject, size FROM outbox ORDER BY id").all();
    const err = await refusal(outbox.append(msg("alarms.big", Buffer.alloc(16 * 1024, 1))));
    expect(err.code).toBe("LG_ERR_BUFFER_FULL");
    expect(err.sqliteCode).toBe("SQLITE_FULL");
    expect(metrics.value(DROPPED, { class: "alarms", reason: "disk_full" })).toBe(1);
    expect(db.prepare("SELECT id, subject, size FROM outbox ORDER BY id").all()).toEqual(before);
    expect(outbox.lastId).toBe(2);
    expectAccountingMatchesTable(db, outbox, metrics);
  });
});

describe("accounting across a reopen", () => {
  it("a new Outbox with the same limits reads per-class counts and bytes from the table", async () => {
    const dir = newDir();
    const bufferLimits = limits({
      maxMessages: 100,
      classes: [
        cls("alarms", ["alarms.>"], "reject", { maxMessages: 20 }),
        cls("telemetry", ["telemetry.>"], "drop_oldest"),
      ],
    });
    let db = open(dir);
    let { outbox, metrics } = newOutbox(db, bufferLimits);
    await batch(
      outbox,
      range(1, 20).map((i) => msg(`alarms.${i}`, "x".repeat(i))),
    );
    await batch(
      outbox,
      range(1, 150).map((i) => msg(`telemetry.${i}`, "y".repeat(i % 7))),
    );
    await batch(
      outbox,
      range(1, 5).map((i) => msg(`misc.${i}`)),
    );
    outbox.delete([1, 2, 3]);
    const beforeClasses = outbox.classes();
    const lastId = outbox.lastId;
    expectAccountingMatchesTable(db, outbox, metrics);
    outbox.close();
    closeDatabase(db);

    db = open(dir);
    ({ outbox, metrics } = newOutbox(db, bufferLimits));
    expect(outbox.classes()).toEqual(beforeClasses);
    expect(outbox.lastId).toBe(lastId);
    expectAccountingMatchesTable(db, outbox, metrics);
    // The limits hold against the reloaded counts: alarms has room for exactly 3.
    for (let i = 21; i <= 23; i++) await outbox.append(msg(`alarms.${i}`));
    await expect(outbox.append(msg("alarms.24"))).rejects.toMatchObject({
      code: "LG_ERR_BUFFER_FULL",
    });
    expectAccountingMatchesTable(db, outbox, metrics);
  });
});

describe("schema v1 -> v2 migration", () => {
  // SCHEMA_V1 from src/store/database.ts (not exported), as the v1 gateway created it.
  const SCHEMA_V1 = `
    CREATE TABLE IF NOT EXISTS outbox (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      subject TEXT NOT NULL,
      payload BLOB NOT NULL,
      headers TEXT,
      received_at_ms INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
  `;

  it("adds class = 'default' and size = length(payload) + length(subject), keeping every row", async () => {
    const dir = newDir();
    const v1 = new Database(join(dir, DATABASE_FILE));
    v1.exec(SCHEMA_V1);
    const insert = v1.prepare(
      "INSERT INTO outbox (subject, payload, headers, received_at_ms) VALUES (?, ?, ?, ?)",
    );
    const rows = range(1, 8).map((i) => ({
      subject: `legacy.sensor.${i}`,
      payload: Buffer.alloc(i * 10, i),
      headers: i % 2 === 0 ? JSON.stringify([["k", [`v${i}`]]]) : null,
      received_at_ms: T0 + i,
    }));
    for (const r of rows) insert.run(r.subject, r.payload, r.headers, r.received_at_ms);
    v1.prepare("DELETE FROM outbox WHERE id IN (2, 8)").run(); // sqlite_sequence stays at 8
    v1.prepare("INSERT INTO meta (key, value) VALUES ('k', 'v')").run();
    v1.pragma("user_version = 1");
    v1.close();

    const db = open(dir);
    expect(db.pragma("user_version", { simple: true })).toBe(7);
    const migrated = db
      .prepare(
        "SELECT id, subject, payload, headers, received_at_ms, class, size FROM outbox ORDER BY id",
      )
      .all();
    const kept = [1, 3, 4, 5, 6, 7];
    expect(migrated).toEqual(
      kept.map((id) => {
        const r = rows[id - 1]!;
        return { id, ...r, class: "default", size: r.payload.length + r.subject.length };
      }),
    );
    expect(db.prepare("SELECT value FROM meta WHERE key = 'k'").get()).toEqual({ value: "v" });
    const index = db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'outbox_class_id'")
      .all();
    expect(index).toEqual([{ name: "outbox_class_id" }]);

    const { outbox, metrics } = newOutbox(db, limits());
    expect(outbox.size).toBe(6);
    const expectedBytes = kept.reduce(
      (n, id) => n + rows[id - 1]!.payload.length + rows[id - 1]!.subject.length,
      0,
    );
    expect(outbox.classes()).toEqual([
      { name: "default", messages: 6, bytes: expectedBytes, onFull: "drop_oldest" },
    ]);
    expectAccountingMatchesTable(db, outbox, metrics);
    expect(outbox.readAfter(0, 100).map((r) => r.id)).toEqual(kept);
    expect(outbox.readAfter(3, 1)[0]!.headers).toEqual(new Map([["k", ["v4"]]]));
    // AUTOINCREMENT survives: the next id is 9, not a reused 8.
    expect(outbox.lastId).toBe(8);
    await outbox.append(msg("new.one"));
    expect(outbox.readAfter(7, 10).map((r) => r.id)).toEqual([9]);
  });
});
