import { describe, expect, it } from "vitest";
import {
  type Def,
  duration,
  int,
  list,
  mapOf,
  nullable,
  obj,
  oneOf,
  resolveNode,
  str,
  stringOr,
  union,
} from "../../src/config/index.js";
import { toFileShape } from "../../src/config/schema-engine.js";

function resolve(node: Def, raw: unknown): { value: unknown; problems: string[] } {
  const problems: string[] = [];
  const value = resolveNode(node, raw, "", {
    defaults: { hostname: "h" },
    problems,
    label: (at) => `f.yaml: ${at || "top level"}`,
    baseDir: () => "/",
  });
  return { value, problems };
}

const SHAPE = union("type", {
  circle: obj({ r: int(1, 10, { required: "a radius" }) }),
  square: obj({ side: int(1, 10, { default: 2 }), every: duration({ default: "1s" }) }),
});

describe("the schema engine", () => {
  it("picks a union's variant by its key and fills that variant's defaults", () => {
    expect(resolve(SHAPE, { type: "square" })).toStrictEqual({
      value: { type: "square", side: 2, every: 1000 },
      problems: [],
    });
    expect(resolve(SHAPE, { type: "circle", r: 3 }).value).toStrictEqual({ type: "circle", r: 3 });
  });

  it("reports every problem with its label and path", () => {
    expect(resolve(SHAPE, { type: "circle", side: 2 }).problems).toStrictEqual([
      "f.yaml: r: expected a radius, got nothing",
      "f.yaml: side: unknown key (expected one of type, r)",
    ]);
    expect(resolve(SHAPE, { type: "oval" }).problems).toStrictEqual([
      'f.yaml: type: expected one of circle, square, got "oval"',
    ]);
    expect(resolve(SHAPE, 5).problems).toStrictEqual([
      "f.yaml: top level: expected a mapping with type: circle, square, got 5",
    ]);
    const node = obj({ xs: list(oneOf([1, 2]), { default: [] }) });
    expect(resolve(node, { xs: [1, 3, null] }).problems).toStrictEqual([
      "f.yaml: xs[1]: expected one of 1, 2, got 3",
      "f.yaml: xs[2]: expected one of 1, 2, got null",
    ]);
  });

  it("takes a string or a mapping where an entry has a short form, each checked as itself", () => {
    const entry = stringOr(
      str({ rule: { expected: "a word", test: (s) => /^\w+$/.test(s) } }),
      obj({ name: str({ required: "a name" }), every: duration({ default: "1s" }) }),
    );
    expect(resolve(entry, "abc")).toStrictEqual({ value: "abc", problems: [] });
    expect(resolve(entry, { name: "x" })).toStrictEqual({
      value: { name: "x", every: 1000 },
      problems: [],
    });
    expect(resolve(entry, "a b").problems).toStrictEqual([
      'f.yaml: top level: expected a word, got "a b"',
    ]);
    expect(resolve(entry, { nme: "x" }).problems).toStrictEqual([
      "f.yaml: name: expected a name, got nothing",
      'f.yaml: nme: unknown key (did you mean "name"?)',
    ]);
    expect(resolve(entry, 5).problems).toStrictEqual([
      "f.yaml: top level: expected a word or a mapping, got 5",
    ]);
    expect(toFileShape(entry, "abc")).toBe("abc");
    expect(toFileShape(entry, { name: "x", every: 1000 })).toStrictEqual({
      name: "x",
      every: "1s",
    });
  });

  it("reads a bare duration as seconds, or refuses it where a unit is required", () => {
    expect(resolve(duration(), 2).value).toBe(2000);
    expect(resolve(duration(), "250ms").value).toBe(250);
    expect(resolve(duration({ unitRequired: true }), "2m").value).toBe(120_000);
    expect(resolve(duration({ unitRequired: true }), 250).problems).toStrictEqual([
      'f.yaml: top level: expected a duration with its unit, like "250ms" or "250s", got 250 (a bare number here once meant milliseconds; everywhere else it means seconds)',
    ]);
  });

  it("maps names the file chooses to entries, each name checked by the key rule", () => {
    const word = { expected: "a word", test: (s: string) => /^\w+$/.test(s) };
    const node = obj({ m: mapOf(word, obj({ every: duration({ default: "1s" }) })) });
    expect(resolve(node, {})).toStrictEqual({ value: { m: {} }, problems: [] });
    // `name:` with nothing after it is an entry with its defaults.
    expect(resolve(node, { m: { a: { every: "2s" }, b: null } })).toStrictEqual({
      value: { m: { a: { every: 2000 }, b: { every: 1000 } } },
      problems: [],
    });
    expect(resolve(node, { m: { "a b": {}, c: { evry: 1 } } }).problems).toStrictEqual([
      'f.yaml: m.a b: expected a word, got "a b"',
      'f.yaml: m.c.evry: unknown key (did you mean "every"?)',
    ]);
    expect(resolve(node, { m: [] }).problems).toStrictEqual([
      "f.yaml: m: expected a mapping, got an empty list",
    ]);
    // A name is the entry's own key, whatever it is: never the object's prototype.
    const proto = resolve(node, { m: JSON.parse('{"__proto__": {"every": "3s"}}') }).value as {
      m: Record<string, unknown>;
    };
    expect(Object.getPrototypeOf(proto.m)).toBe(Object.prototype);
    expect(Object.entries(proto.m)).toStrictEqual([["__proto__", { every: 3000 }]]);
    expect(toFileShape(node, { m: { a: { every: 60_000 } } })).toStrictEqual({
      m: { a: { every: "1m" } },
    });
  });

  it("keeps null for a nullable key and writes values back in the file's shape", () => {
    const node = obj({ name: nullable(str()), every: duration({ default: "90s" }) });
    const { value } = resolve(node, { name: null });
    expect(value).toStrictEqual({ name: null, every: 90_000 });
    expect(toFileShape(node, value)).toStrictEqual({ name: null, every: "90s" });
    expect(toFileShape(SHAPE, { type: "square", side: 2, every: 60_000 })).toStrictEqual({
      type: "square",
      side: 2,
      every: "1m",
    });
  });
});
