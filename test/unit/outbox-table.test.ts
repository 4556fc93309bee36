// The outbox table's two read/delete plans (by primary key, by the (account, id) index)
// return and remove exactly the same rows whatever the accounts' interleaving, and
// deletes count what left per class. Real SQLite files.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { idRanges, OutboxTable } from "../../src/store/outbox-table.js";
import { tempDatabases } from "../helpers/temp-db.js";

const { open } = tempDatabases("outbox-table");
const ACCOUNTS = ["$G", "b", "c"] as const;

/** Row `i` to insert: subject `s.<i>`, payload `p<i>`, received at 1000 + i. */
function newRow(i: number, className: string, size: number, headers?: Map<string, string[]>) {
  return {
    message: {
      subject: `s.${i}`,
      payload: Buffer.from(`p${i}`),
      receivedAtMs: 1000 + i,
      origin: "nats",
      qos: 0,
      ...(headers === undefined ? {} : { headers }),
    } as never,
    cls: { name: className },
    size,
  };
}

function fill(db: ReturnType<typeof open>, owners: readonly number[]): void {
  const tables = ACCOUNTS.map((a) => new OutboxTable(db, a, true));
  db.transaction(() => {
    owners.forEach((owner, i) => {
      tables[owner]!.insert([newRow(i, i % 3 === 0 ? "alarms" : "default", 10 + i)]);
    });
  })();
}

describe("OutboxTable plans", () => {
  it("read and delete the same rows by primary key and by index, counted per class", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 1, maxLength: 60 }),
        fc.integer({ min: 0, max: 70 }),
        fc.integer({ min: 1, max: 20 }),
        (owners, after, limit) => {
          const dbs = [open(), open()];
          for (const db of dbs) fill(db, owners);
          const last = owners.length;
          for (const account of ACCOUNTS) {
            const byKey = new OutboxTable(dbs[0]!, account, true);
            const byIndex = new OutboxTable(dbs[1]!, account, false);
            const a = byKey.readAfter(after, limit, last);
            const b = byIndex.readAfter(after, limit, last);
            expect(a).toEqual(b);
            const mine = owners
              .map((o, i) => [o, i + 1] as const)
              .filter(([o, id]) => ACCOUNTS[o] === account && id > after)
              .map(([, id]) => id);
            expect(a.map((r) => r.id)).toEqual(mine.slice(0, limit));
            // Bounded by the queue's last id: nothing above it is read.
            expect(byKey.readAfter(0, 100, 3).every((r) => r.id <= 3)).toBe(true);
            const ranges = idRanges([after + 1, after + 5, after + 6]);
            const gone = byKey.deleteRanges(ranges);
            expect(byIndex.deleteRanges(ranges)).toEqual(gone);
            const counted = gone.reduce((n, g) => n + g.n, 0);
            expect(counted).toBe(
              mine.filter((id) => ranges.some(([f, t]) => id >= f && id <= t)).length,
            );
            // Per class, over every range: rows and bytes of the rows that went.
            const perClass = new Map<string, { n: number; bytes: number }>();
            for (const g of gone) {
              const c = perClass.get(g.class) ?? { n: 0, bytes: 0 };
              perClass.set(g.class, { n: c.n + g.n, bytes: c.bytes + g.bytes });
            }
            const want = new Map<string, { n: number; bytes: number }>();
            for (const id of mine) {
              if (!ranges.some(([f, t]) => id >= f && id <= t)) continue;
              const name = (id - 1) % 3 === 0 ? "alarms" : "default";
              const c = want.get(name) ?? { n: 0, bytes: 0 };
              want.set(name, { n: c.n + 1, bytes: c.bytes + 10 + id - 1 });
            }
            expect(perClass).toEqual(want);
            expect(byKey.readAfter(0, 1000, last)).toEqual(byIndex.readAfter(0, 1000, last));
          }
          for (const db of dbs) db.close();
        },
      ),
      { numRuns: 40 },
    );
  });

  it("inserts a batch in order, 16 rows a statement and the rest one by one", () => {
    const db = open();
    const table = new OutboxTable(db, "$G", true);
    const rows = Array.from({ length: 37 }, (_, i) =>
      newRow(i, "default", i, i === 20 ? new Map([["k", ["v"]]]) : undefined),
    );
    expect(table.insert(rows.slice(0, 2))).toBe(2);
    expect(table.insert(rows.slice(2))).toBe(37);
    const read = table.readAfter(0, 100);
    expect(read.map((r) => [r.id, r.subject, r.payload.toString(), r.receivedAtMs])).toEqual(
      rows.map((_, i) => [i + 1, `s.${i}`, `p${i}`, 1000 + i]),
    );
    expect(read[20]!.headers).toEqual(new Map([["k", ["v"]]]));
    expect(read.filter((r) => r.headers !== undefined)).toHaveLength(1);
  });

  it("idRanges takes sorted and unsorted ids alike", () => {
    expect(idRanges([1, 2, 3, 7, 8, 10])).toEqual([
      [1, 3],
      [7, 8],
      [10, 10],
    ]);
    expect(idRanges([8, 1, 3, 2, 10, 7, 3])).toEqual([
      [1, 3],
      [7, 8],
      [10, 10],
    ]);
  });
});
