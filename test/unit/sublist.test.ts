import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { LeafgateError } from "../../src/core/errors.js";
import { subjectMatches } from "../../src/core/subject.js";
import { Sublist, type SublistEntry, type SublistMatch } from "../../src/core/sublist.js";

/** A match in a comparable form: values sorted, queue groups sorted. */
function normalize<T>(m: SublistMatch<T>): { plain: T[]; queues: T[][] } {
  const byString = (a: T, b: T) => String(a).localeCompare(String(b));
  return {
    plain: [...m.plain].sort(byString),
    queues: m.queues
      .map((g) => [...g].sort(byString))
      .sort((a, b) => a.join().localeCompare(b.join())),
  };
}

describe("Sublist", () => {
  it("matches literal patterns", () => {
    const sl = new Sublist<string>();
    sl.insert("foo", "A");
    sl.insert("foo.bar", "B");
    sl.insert("foo.bar.baz", "C");
    expect(sl.match("foo")).toEqual({ plain: ["A"], queues: [] });
    expect(sl.match("foo.bar")).toEqual({ plain: ["B"], queues: [] });
    expect(sl.match("foo.bar.baz")).toEqual({ plain: ["C"], queues: [] });
    expect(sl.match("foo.baz")).toEqual({ plain: [], queues: [] });
    expect(sl.match("bar")).toEqual({ plain: [], queues: [] });
    expect(sl.size).toBe(3);
  });

  it("matches * for exactly one token", () => {
    const sl = new Sublist<string>();
    sl.insert("foo.*", "A");
    sl.insert("*.bar", "B");
    sl.insert("*.*.baz", "C");
    expect(normalize(sl.match("foo.bar"))).toEqual({ plain: ["A", "B"], queues: [] });
    expect(sl.match("foo.baz")).toEqual({ plain: ["A"], queues: [] });
    expect(sl.match("x.bar")).toEqual({ plain: ["B"], queues: [] });
    expect(sl.match("foo")).toEqual({ plain: [], queues: [] });
    expect(sl.match("foo.bar.baz")).toEqual({ plain: ["C"], queues: [] });
    expect(sl.match("foo.bar.baz.qux")).toEqual({ plain: [], queues: [] });
  });

  it("matches > for one or more tokens", () => {
    const sl = new Sublist<string>();
    sl.insert(">", "ALL");
    sl.insert("foo.>", "A");
    sl.insert("foo.*.>", "B");
    expect(sl.match("foo")).toEqual({ plain: ["ALL"], queues: [] });
    expect(normalize(sl.match("foo.bar"))).toEqual({ plain: ["A", "ALL"], queues: [] });
    expect(normalize(sl.match("foo.bar.baz"))).toEqual({ plain: ["A", "ALL", "B"], queues: [] });
    expect(sl.match("bar.baz")).toEqual({ plain: ["ALL"], queues: [] });
  });

  it("treats tokens that merely contain * or > as literals", () => {
    const sl = new Sublist<string>();
    sl.insert("a*.b>", "A");
    expect(sl.match("a*.b>")).toEqual({ plain: ["A"], queues: [] });
    expect(sl.match("ax.b>")).toEqual({ plain: [], queues: [] });
  });

  it("returns a value once however many of its patterns match", () => {
    const sl = new Sublist<object>();
    const a = { name: "a" };
    const b = { name: "b" };
    sl.insert("foo.bar", a);
    sl.insert("foo.*", a);
    sl.insert("foo.>", a);
    sl.insert(">", a);
    sl.insert("foo.bar", a);
    sl.insert("foo.*", b);
    const m = sl.match("foo.bar");
    expect(m.plain.length).toBe(2);
    expect(new Set(m.plain)).toEqual(new Set([a, b]));
    expect(m.plain.includes(a) && m.plain.includes(b)).toBe(true);
    expect(sl.size).toBe(6);
  });

  it("groups queue members by queue name, deduplicated", () => {
    const sl = new Sublist<string>();
    sl.insert("jobs.*", "w1", "workers");
    sl.insert("jobs.>", "w2", "workers");
    sl.insert("jobs.new", "w1", "workers");
    sl.insert("jobs.new", "a1", "auditors");
    sl.insert("jobs.new", "plain");
    sl.insert("jobs.new", "w1"); // the same value outside any group is a plain subscriber
    expect(normalize(sl.match("jobs.new"))).toEqual({
      plain: ["plain", "w1"],
      queues: [["a1"], ["w1", "w2"]],
    });
    expect(normalize(sl.match("jobs.old.x"))).toEqual({ plain: [], queues: [["w2"]] });
  });

  it("removes entries and prunes the trie", () => {
    const sl = new Sublist<string>();
    const e1 = sl.insert("foo.bar", "A");
    const e2 = sl.insert("foo.*", "B");
    const e3 = sl.insert("foo.>", "C", "q");
    const e4 = sl.insert("foo.bar", "A");
    expect(e1).toEqual({ pattern: "foo.bar", value: "A", queue: undefined });
    expect(e3).toEqual({ pattern: "foo.>", value: "C", queue: "q" });
    expect(sl.size).toBe(4);

    expect(sl.remove(e1)).toBe(true);
    expect(sl.remove(e1)).toBe(false);
    expect(sl.size).toBe(3);
    // e4 still holds "A" on foo.bar.
    expect(normalize(sl.match("foo.bar"))).toEqual({ plain: ["A", "B"], queues: [["C"]] });

    expect(sl.remove(e4)).toBe(true);
    expect(sl.remove(e2)).toBe(true);
    expect(normalize(sl.match("foo.bar"))).toEqual({ plain: [], queues: [["C"]] });
    expect(sl.remove(e3)).toBe(true);
    expect(sl.match("foo.bar")).toEqual({ plain: [], queues: [] });
    expect(sl.size).toBe(0);

    // An entry from another Sublist, or a look-alike, is not ours.
    const other = new Sublist<string>().insert("foo.bar", "A");
    expect(sl.remove(other)).toBe(false);
    const lookAlike: SublistEntry<string> = { pattern: "foo.bar", value: "A", queue: undefined };
    sl.insert("foo.bar", "A");
    expect(sl.remove(lookAlike)).toBe(false);
    expect(sl.match("foo.bar")).toEqual({ plain: ["A"], queues: [] });
  });

  it("serves repeated matches from the cache and invalidates it on insert and remove", () => {
    const sl = new Sublist<string>();
    sl.insert("foo.*", "A");
    const first = sl.match("foo.bar");
    expect(sl.match("foo.bar")).toBe(first);
    expect(first).toEqual({ plain: ["A"], queues: [] });

    const e = sl.insert("foo.bar", "B");
    const second = sl.match("foo.bar");
    expect(second).not.toBe(first);
    expect(normalize(second)).toEqual({ plain: ["A", "B"], queues: [] });
    // The old result is unchanged: results are snapshots.
    expect(first).toEqual({ plain: ["A"], queues: [] });

    sl.remove(e);
    expect(sl.match("foo.bar")).toEqual({ plain: ["A"], queues: [] });

    sl.insert("foo.bar", "C", "q");
    expect(normalize(sl.match("foo.bar"))).toEqual({ plain: ["A"], queues: [["C"]] });

    // A miss caches too, and an insert that makes it a hit invalidates it.
    expect(sl.match("nobody.home")).toEqual({ plain: [], queues: [] });
    sl.insert("nobody.>", "D");
    expect(sl.match("nobody.home")).toEqual({ plain: ["D"], queues: [] });
  });

  it("keeps the cache bounded and still answers correctly past the bound", () => {
    const sl = new Sublist<string>();
    sl.insert("s.*", "A");
    const early = sl.match("s.0");
    const wrong: string[] = [];
    for (let i = 1; i < 3000; i++) {
      const m = sl.match(`s.${i}`);
      if (m.plain.length !== 1 || m.plain[0] !== "A" || m.queues.length !== 0) wrong.push(`s.${i}`);
    }
    expect(wrong).toEqual([]);
    // "s.0" was evicted: a new (equal) result, not the cached object.
    const again = sl.match("s.0");
    expect(again).toEqual(early);
    expect(again).not.toBe(early);
  });

  it("returns results callers cannot change", () => {
    const sl = new Sublist<string>();
    sl.insert("foo", "A");
    sl.insert("foo", "Q", "q");
    const m = sl.match("foo");
    expect(Object.isFrozen(m)).toBe(true);
    expect(Object.isFrozen(m.plain)).toBe(true);
    expect(Object.isFrozen(m.queues)).toBe(true);
    expect(Object.isFrozen(m.queues[0])).toBe(true);
    expect(() => (m.plain as string[]).push("X")).toThrow(TypeError);
    expect(() => (m.queues[0] as unknown as string[]).push("X")).toThrow(TypeError);
    expect(normalize(sl.match("foo"))).toEqual({ plain: ["A"], queues: [["Q"]] });
    expect(m.queues[0]!.queue).toBe("q");
    const empty = sl.match("bar");
    expect(Object.isFrozen(empty.plain)).toBe(true);
    expect(Object.isFrozen(empty.queues)).toBe(true);
  });

  it("refuses invalid patterns, queue names and subjects", () => {
    const sl = new Sublist<string>();
    for (const pattern of ["", "foo.", ".foo", "foo..bar", "foo.>.bar", "foo bar", "a.\tb"]) {
      expect(() => sl.insert(pattern, "A")).toThrow(LeafgateError);
      expect(() => sl.insert(pattern, "A")).toThrow(
        expect.objectContaining({ code: "LG_ERR_SUBJECT_INVALID" }),
      );
    }
    for (const queue of ["", "a.b", "*", ">", "a b"]) {
      expect(() => sl.insert("foo", "A", queue)).toThrow(
        expect.objectContaining({ code: "LG_ERR_SUBJECT_INVALID" }),
      );
    }
    for (const subject of ["", "foo.", "foo..bar", "foo.*", ">", "foo bar"]) {
      expect(() => sl.match(subject)).toThrow(
        expect.objectContaining({ code: "LG_ERR_SUBJECT_INVALID" }),
      );
    }
    expect(sl.size).toBe(0);
  });

  it("agrees with brute-force subjectMatches over every live entry", () => {
    const token = fc.constantFrom("a", "b", "c");
    const patternArb = fc
      .tuple(
        fc.array(fc.oneof(token, token, fc.constant("*")), { minLength: 0, maxLength: 4 }),
        fc.boolean(),
      )
      .map(([tokens, full]) => (full ? [...tokens, ">"] : tokens))
      .filter((tokens) => tokens.length > 0)
      .map((tokens) => tokens.join("."));
    const subjectArb = fc.array(token, { minLength: 1, maxLength: 5 }).map((t) => t.join("."));
    const opArb = fc.oneof(
      fc.record({
        kind: fc.constant("insert" as const),
        pattern: patternArb,
        value: fc.integer({ min: 0, max: 5 }),
        queue: fc.option(fc.constantFrom("q1", "q2"), { nil: undefined }),
      }),
      fc.record({ kind: fc.constant("remove" as const), index: fc.nat() }),
      fc.record({ kind: fc.constant("match" as const), subject: subjectArb }),
    );

    fc.assert(
      fc.property(
        fc.array(opArb, { maxLength: 60 }),
        fc.array(subjectArb, { maxLength: 10 }),
        (ops, finals) => {
          const sl = new Sublist<number>();
          const live: SublistEntry<number>[] = [];
          const check = (subject: string) => {
            const plain = new Set<number>();
            const groups = new Map<string, Set<number>>();
            for (const e of live) {
              if (!subjectMatches(e.pattern, subject)) continue;
              if (e.queue === undefined) plain.add(e.value);
              else {
                const g = groups.get(e.queue) ?? new Set<number>();
                g.add(e.value);
                groups.set(e.queue, g);
              }
            }
            const expected = {
              plain: [...plain].sort(),
              queues: [...groups.values()]
                .map((g) => [...g].sort())
                .sort((x, y) => x.join().localeCompare(y.join())),
            };
            expect(normalize(sl.match(subject))).toEqual(expected);
            // A second call (from the cache) gives the same answer.
            expect(normalize(sl.match(subject))).toEqual(expected);
          };
          for (const op of ops) {
            if (op.kind === "insert") {
              live.push(sl.insert(op.pattern, op.value, op.queue));
            } else if (op.kind === "remove") {
              if (live.length === 0) continue;
              const [entry] = live.splice(op.index % live.length, 1);
              expect(sl.remove(entry!)).toBe(true);
            } else {
              check(op.subject);
            }
            expect(sl.size).toBe(live.length);
          }
          for (const subject of finals) check(subject);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("holds patterns far deeper than the stack: insert, match and remove walk with loops", () => {
    // Deeper than any call stack (the recursive trie overflowed at ~10,000 levels).
    const DEPTH = 200_000;
    const deep = (token: string, n = DEPTH) => Array.from({ length: n }, () => token).join(".");
    const sl = new Sublist<string>();
    const literal = sl.insert(deep("a"), "literal");
    const stars = sl.insert(deep("*"), "stars");
    const tail = sl.insert(`${deep("a", DEPTH - 1)}.>`, "tail", "q");
    const mixed = sl.insert(`${deep("*", DEPTH / 2)}.${deep("a", DEPTH / 2)}`, "mixed");
    expect(normalize(sl.match(deep("a")))).toEqual({
      plain: ["literal", "mixed", "stars"],
      queues: [["tail"]],
    });
    expect(normalize(sl.match(deep("b")))).toEqual({ plain: ["stars"], queues: [] });
    expect(normalize(sl.match(`${deep("a", DEPTH - 1)}.b`))).toEqual({
      plain: ["stars"],
      queues: [["tail"]],
    });
    expect(normalize(sl.match(deep("a", DEPTH + 1)))).toEqual({ plain: [], queues: [["tail"]] });
    expect(sl.match(deep("a", DEPTH - 1))).toEqual({ plain: [], queues: [] });

    for (const entry of [stars, literal, mixed, tail]) expect(sl.remove(entry)).toBe(true);
    expect(sl.size).toBe(0);
    expect(sl.nodes).toBe(0);
    expect(sl.match(deep("a"))).toEqual({ plain: [], queues: [] });
  });

  it("matches long * chains ending anywhere, beside literal chains", () => {
    // A * chain with a literal leaf at every level, and a literal chain: every level of the
    // subject has two branches to follow, each one level deeper.
    const DEPTH = 2_000;
    const sl = new Sublist<number>();
    const entries: SublistEntry<number>[] = [];
    const chain = (n: number, last: string, fill: string) =>
      Array.from({ length: n }, (_, j) => (j === n - 1 ? last : fill)).join(".");
    for (let i = 1; i <= DEPTH; i++) {
      entries.push(sl.insert(chain(i, "a", "*"), i));
      entries.push(sl.insert(chain(i, "a", "a"), -i));
    }
    entries.push(sl.insert(`${chain(DEPTH, "*", "*")}.>`, 0));
    for (const n of [1, 2, DEPTH / 2, DEPTH]) {
      expect(normalize(sl.match(chain(n, "a", "a")))).toEqual(
        normalize({ plain: [n, -n], queues: [] }),
      );
      // Another last token: only the * chain's leaves end in `a`, so nothing matches.
      expect(sl.match(chain(n, "b", "a"))).toEqual({ plain: [], queues: [] });
    }
    expect(sl.match(chain(DEPTH + 1, "b", "x"))).toEqual({ plain: [0], queues: [] });
    for (const e of entries) sl.remove(e);
    expect(sl.size).toBe(0);
    expect(sl.nodes).toBe(0);
  });

  it("prunes exactly the nodes no other pattern needs", () => {
    const sl = new Sublist<string>();
    const ab = sl.insert("a.b", "1");
    expect(sl.nodes).toBe(2);
    const abcd = sl.insert("a.b.c.d", "2");
    expect(sl.nodes).toBe(4);
    const star = sl.insert("a.*.c", "3");
    expect(sl.nodes).toBe(6);
    const rest = sl.insert("a.b.c.>", "4");
    expect(sl.nodes).toBe(6);
    sl.remove(abcd);
    // a.b.c stays for a.b.c.> (its `>` hangs there); d goes.
    expect(sl.nodes).toBe(5);
    sl.remove(rest);
    expect(sl.nodes).toBe(4);
    sl.remove(ab);
    expect(sl.nodes).toBe(3);
    expect(sl.match("a.x.c")).toEqual({ plain: ["3"], queues: [] });
    sl.remove(star);
    expect(sl.nodes).toBe(0);
  });

  it("agrees with subjectMatches on deep patterns and long * chains (fast-check)", () => {
    // A few levels repeated: deep, with long runs of * and literals, and > after them.
    const token = fc.constantFrom("a", "b", "*");
    const deepArb = fc
      .tuple(
        fc.array(token, { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 1, max: 1_500 }),
        fc.array(token, { maxLength: 3 }),
        fc.boolean(),
      )
      .map(([unit, times, end, full]) => {
        const tokens: string[] = Array.from({ length: times }, () => unit).flat();
        tokens.push(...end);
        if (full) tokens.push(">");
        return tokens.join(".");
      });
    const literal = (pattern: string, fill: string) =>
      pattern
        .split(".")
        .map((t) => (t === "*" ? fill : t === ">" ? `${fill}.${fill}` : t))
        .join(".");
    fc.assert(
      fc.property(
        fc.array(deepArb, { minLength: 1, maxLength: 6 }),
        fc.constantFrom("a", "b", "c"),
        fc.nat(),
        (patterns, fill, drop) => {
          const sl = new Sublist<number>();
          const live = patterns.map((p, i) => sl.insert(p, i));
          // Subjects near each pattern: its own literal form, one token more, one less.
          const subjects = patterns.flatMap((p) => {
            const s = literal(p, fill);
            return [s, `${s}.${fill}`, s.includes(".") ? s.slice(0, s.lastIndexOf(".")) : s];
          });
          const check = () => {
            for (const subject of subjects) {
              const expected = live
                .filter((e) => subjectMatches(e.pattern, subject))
                .map((e) => e.value)
                .sort();
              expect([...sl.match(subject).plain].sort()).toEqual(expected);
            }
          };
          check();
          const [gone] = live.splice(drop % live.length, 1);
          expect(sl.remove(gone!)).toBe(true);
          check();
          for (const e of live) sl.remove(e);
          expect(sl.nodes).toBe(0);
        },
      ),
      { numRuns: 100 },
    );
  });
});
