// DrainCursor's account of which rows it has sent (the Leafgate-Sent header that
// reconciliation reads after a crash): absent while rows go out in id order (fifo, or
// fresh_first before live rows overtake the backlog or after the backlog is through);
// exact, as `..<backlog>,<from>..<to>`, while live rows are ahead of an unsent backlog;
// and never claiming a rewound row. On a real outbox (SQLite in a temp dir).
import { describe, expect, it } from "vitest";
import type { Outbox } from "../../src/store/index.js";
import { DrainCursor, parseSentRows } from "../../src/upstream/drain-cursor.js";
import { tempOutboxes } from "../helpers/temp-outbox.js";

describe("DrainCursor.sentSoFar", () => {
  const outbox = tempOutboxes("cursor");

  async function append(box: Outbox, count: number): Promise<void> {
    const appended = [];
    for (let i = 0; i < count; i++) {
      appended.push(
        box.append({
          subject: "s",
          payload: new Uint8Array([i]),
          receivedAtMs: Date.now(),
          origin: "mqtt",
          qos: 1,
        }),
      );
    }
    await Promise.all(appended);
  }

  /** Reads up to `limit` rows and marks them sent one by one; returns [id, sentSoFar] pairs. */
  function send(cursor: DrainCursor, limit: number): [number, string | undefined][] {
    return cursor.read(limit).map((row) => {
      cursor.advance(row.id);
      return [row.id, cursor.sentSoFar()];
    });
  }

  it("fifo: rows go in id order, so there is nothing to say", async () => {
    const box = outbox();
    await append(box, 3);
    const cursor = new DrainCursor(box, "fifo");
    expect(send(cursor, 10)).toEqual([
      [1, undefined],
      [2, undefined],
      [3, undefined],
    ]);
    await append(box, 2);
    expect(send(cursor, 10)).toEqual([
      [4, undefined],
      [5, undefined],
    ]);
  });

  it("fresh_first: says which rows were sent while live rows are ahead of the backlog", async () => {
    const box = outbox();
    await append(box, 4); // backlog: rows 1-4
    const cursor = new DrainCursor(box, "fresh_first");
    // Backlog rows alone, in order: every row up to the last one sent.
    expect(send(cursor, 2)).toEqual([
      [1, undefined],
      [2, undefined],
    ]);
    await append(box, 2); // live: rows 5, 6
    expect(send(cursor, 10)).toEqual([
      [5, "..2,5..5"],
      [6, "..2,5..6"],
    ]);
    expect(send(cursor, 1)).toEqual([[3, "..3,5..6"]]);
    // The backlog is through: in order again.
    expect(send(cursor, 10)).toEqual([[4, undefined]]);
    await append(box, 1);
    expect(send(cursor, 10)).toEqual([[7, undefined]]);
    expect(cursor.caughtUp()).toBe(true);
  });

  it("fresh_first: a rewound row is not claimed as sent until it goes again", async () => {
    const box = outbox();
    await append(box, 4);
    const cursor = new DrainCursor(box, "fresh_first");
    send(cursor, 2);
    await append(box, 2);
    send(cursor, 10); // 5, 6
    // Rows 2, 5 and 6 unacknowledged: back to before 2 and before 5.
    cursor.rewind([2, 5, 6]);
    expect(cursor.sentSoFar()).toBeUndefined();
    expect(send(cursor, 10)).toEqual([
      [5, "..1,5..5"],
      [6, "..1,5..6"],
    ]);
    expect(send(cursor, 10)).toEqual([
      [2, "..2,5..6"],
      [3, "..3,5..6"],
      [4, undefined],
    ]);
  });
});

describe("parseSentRows", () => {
  it("reads what sentSoFar writes", () => {
    expect(parseSentRows("..2,5..6")).toEqual({ upTo: 2, from: 5, to: 6 });
    expect(parseSentRows("..0,9..9")).toEqual({ upTo: 0, from: 9, to: 9 });
  });

  it.each(["", "..5", "1..2,5..6", "..5,5..6", "..1,6..5", "..a,2..3", "..1, 5..6", "..1,5..6 "])(
    "refuses %j",
    (text) => {
      expect(parseSentRows(text)).toBeUndefined();
    },
  );
});
