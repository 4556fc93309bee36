import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { LeafgateError } from "../../src/core/errors.js";
import { isValidPattern, isValidSubject, subjectMatches } from "../../src/core/subject.js";
import { filterToPatterns, TopicError, toSubject, toTopic } from "../../src/core/topic.js";

/** nats-server server/mqtt_test.go TestMQTTTopicAndSubjectConversion: [topic, subject]. */
const NATS_TOPIC_TABLE: ReadonlyArray<readonly [string, string]> = [
  ["/", "/./"],
  ["//", "/././"],
  ["///", "/./././"],
  ["////", "/././././"],
  ["foo", "foo"],
  ["/foo", "/.foo"],
  ["//foo", "/./.foo"],
  ["///foo", "/././.foo"],
  ["///foo/", "/././.foo./"],
  ["///foo//", "/././.foo././"],
  ["///foo///", "/././.foo./././"],
  ["//.foo.//", "/././/foo//././"],
  ["foo/bar", "foo.bar"],
  ["/foo/bar", "/.foo.bar"],
  ["/foo/bar/", "/.foo.bar./"],
  ["foo/bar/baz", "foo.bar.baz"],
  ["/foo/bar/baz", "/.foo.bar.baz"],
  ["/foo/bar/baz/", "/.foo.bar.baz./"],
  ["bar/", "bar./"],
  ["bar//", "bar././"],
  ["bar///", "bar./././"],
  ["foo//bar", "foo./.bar"],
  ["foo///bar", "foo././.bar"],
  ["foo////bar", "foo./././.bar"],
  [".", "//"],
  ["..", "////"],
  ["...", "//////"],
  ["./", "//./"],
  [".//.", "//././/"],
  ["././.", "//.//.//"],
  ["././/.", "//.//././/"],
  [".foo", "//foo"],
  ["foo.", "foo//"],
  [".foo.", "//foo//"],
  ["foo../bar/", "foo////.bar./"],
  ["foo../bar/.", "foo////.bar.//"],
  ["/foo/", "/.foo./"],
  ["./foo/.", "//.foo.//"],
  ["foo.bar/baz", "foo//bar.baz"],
];

/**
 * nats-server TestMQTTFilterConversion: [filter, the subscribed subject]. Where the filter
 * ends in `/#`, nats-server also subscribes the parent (mqttProcessSubs,
 * mqttNeedSubForLevelUp), so filterToPatterns returns both.
 */
const NATS_FILTER_TABLE: ReadonlyArray<readonly [string, readonly string[]]> = [
  ["+", ["*"]],
  ["/+", ["/.*"]],
  ["+/", ["*./"]],
  ["/+/", ["/.*./"]],
  ["foo/+", ["foo.*"]],
  ["foo/+/", ["foo.*./"]],
  ["foo/+/bar", ["foo.*.bar"]],
  ["foo/+/+", ["foo.*.*"]],
  ["foo/+/+/", ["foo.*.*./"]],
  ["foo/+/+/bar", ["foo.*.*.bar"]],
  ["foo//+", ["foo./.*"]],
  ["foo//+/", ["foo./.*./"]],
  ["foo//+//", ["foo./.*././"]],
  ["foo//+//bar", ["foo./.*./.bar"]],
  ["foo///+///bar", ["foo././.*././.bar"]],
  ["foo.bar///+///baz", ["foo//bar././.*././.baz"]],
  ["#", [">"]],
  ["/#", ["/", "/.>"]],
  ["/foo/#", ["/.foo", "/.foo.>"]],
  ["foo/#", ["foo", "foo.>"]],
  ["foo//#", ["foo./", "foo./.>"]],
  ["foo///#", ["foo././", "foo././.>"]],
  ["foo/bar/#", ["foo.bar", "foo.bar.>"]],
  ["foo/bar.baz/#", ["foo.bar//baz", "foo.bar//baz.>"]],
  ["+/#", ["*", "*.>"]],
  ["a/+/b", ["a.*.b"]],
  ["a", ["a"]],
];

const LONG_ASCII = "a".repeat(65_536);
/** 21,846 three-byte characters: 65,538 bytes in only 21,846 UTF-16 units. */
const LONG_CJK = "日".repeat(21_846);
/** 16,384 four-byte characters (surrogate pairs): exactly 65,536 bytes. */
const LONG_EMOJI = "😀".repeat(16_384);

/** Invalid as a topic name and as a filter, with the rule broken. */
const INVALID_BOTH: ReadonlyArray<readonly [string, string]> = [
  ["", "[MQTT-4.7.3-1]"],
  ["\0", "[MQTT-4.7.3-2]"],
  ["a/b\0c", "[MQTT-4.7.3-2]"],
  [LONG_ASCII, "[MQTT-4.7.3-3]"],
  [LONG_CJK, "[MQTT-4.7.3-3]"],
  [LONG_EMOJI, "[MQTT-4.7.3-3]"],
  ["foo bar", "nats-subject"],
  ["foo\tbar", "nats-subject"],
  ["foo\r", "nats-subject"],
  ["\nfoo", "nats-subject"],
  ["a/\v", "nats-subject"],
  ["a/\f", "nats-subject"],
  ["a/\u00a0", "nats-subject"],
  ["a/\u2028/b", "nats-subject"],
  ["a/\u3000", "nats-subject"],
  ["a/\ufeff", "nats-subject"],
  ["a\u007fb", "nats-subject"],
  ["*", "nats-subject"],
  [">", "nats-subject"],
  ["a/*", "nats-subject"],
  ["a/>/b", "nats-subject"],
  ["*/a", "nats-subject"],
];

/** Valid filters, invalid topic names. */
const INVALID_NAMES: ReadonlyArray<readonly [string, string]> = [
  ["+", "[MQTT-3.3.2-2]"],
  ["#", "[MQTT-3.3.2-2]"],
  ["foo/+", "[MQTT-3.3.2-2]"],
  ["foo/#", "[MQTT-3.3.2-2]"],
  ["+/foo", "[MQTT-3.3.2-2]"],
];

/** Invalid filters. */
const INVALID_FILTERS: ReadonlyArray<readonly [string, string]> = [
  ["a/#/b", "[MQTT-4.7.1-2]"],
  ["#/", "[MQTT-4.7.1-2]"],
  ["##", "[MQTT-4.7.1-2]"],
  ["a#", "[MQTT-4.7.1-2]"],
  ["a/b#", "[MQTT-4.7.1-2]"],
  ["a/#b", "[MQTT-4.7.1-2]"],
  ["a/+b", "[MQTT-4.7.1-3]"],
  ["a/b+", "[MQTT-4.7.1-3]"],
  ["++", "[MQTT-4.7.1-3]"],
  ["+a/b", "[MQTT-4.7.1-3]"],
  ["a/b/c+", "[MQTT-4.7.1-3]"],
  ["a+/#", "[MQTT-4.7.1-3]"],
];

function ruleOf(run: () => unknown): string {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(TopicError);
    expect(err).toBeInstanceOf(LeafgateError);
    const topicError = err as TopicError;
    expect(topicError.code).toBe("LG_ERR_TOPIC_INVALID");
    const suffix = topicError.rule.startsWith("[") ? topicError.rule : `(${topicError.rule})`;
    expect(topicError.message.endsWith(` ${suffix}`)).toBe(true);
    return topicError.rule;
  }
  throw new Error("expected a TopicError");
}

describe("toSubject / toTopic: nats-server conversion table", () => {
  it.each(NATS_TOPIC_TABLE)("%j <-> %j", (topic, subject) => {
    expect(toSubject(topic)).toBe(subject);
    expect(toTopic(subject)).toBe(topic);
    expect(isValidSubject(subject)).toBe(true);
  });

  it("maps topics that need no conversion to the same string", () => {
    expect(toSubject("sensors")).toBe("sensors");
    expect(toSubject("$SYS")).toBe("$SYS");
    expect(toSubject("a*b>c")).toBe("a*b>c");
    expect(toSubject("température")).toBe("température");
    expect(toSubject("sensors/gw1/kitchen/temp")).toBe("sensors.gw1.kitchen.temp");
    expect(toTopic("sensors.gw1.kitchen.temp")).toBe("sensors/gw1/kitchen/temp");
    expect(toTopic("sensors")).toBe("sensors");
  });

  it("maps subjects not made by toSubject as nats-server does", () => {
    // A lone "/" is dropped; "/." is "/"; "//" is ".".
    expect(toTopic("a/b")).toBe("ab");
    expect(toTopic("a/")).toBe("a");
    expect(toTopic("a/.b")).toBe("a/b");
    expect(toTopic("a//b.c")).toBe("a.b/c");
  });

  it("refuses subjects that make an invalid topic name", () => {
    expect(ruleOf(() => toTopic("/"))).toBe("[MQTT-4.7.3-1]");
    expect(ruleOf(() => toTopic("metrics.#all"))).toBe("[MQTT-3.3.2-2]");
    expect(ruleOf(() => toTopic("a.+"))).toBe("[MQTT-3.3.2-2]");
    expect(ruleOf(() => toTopic("a.b\0"))).toBe("[MQTT-4.7.3-2]");
    expect(ruleOf(() => toTopic("a".repeat(65_536)))).toBe("[MQTT-4.7.3-3]");
  });

  it("accepts a topic of exactly 65535 UTF-8 bytes", () => {
    const topic = `${"😀".repeat(16_383)}abc`;
    expect(toSubject(topic)).toBe(topic);
    expect(toTopic(topic)).toBe(topic);
  });
});

describe("filterToPatterns: nats-server filter table", () => {
  it.each(NATS_FILTER_TABLE)("%j -> %j", (filter, patterns) => {
    expect(filterToPatterns(filter)).toEqual(patterns);
    for (const pattern of patterns) expect(isValidPattern(pattern)).toBe(true);
  });

  it("converts topic-name rules in filters the same way", () => {
    for (const [topic, subject] of NATS_TOPIC_TABLE) {
      expect(filterToPatterns(topic)).toEqual([subject]);
    }
  });
});

describe("invalid topics and filters", () => {
  it.each(INVALID_BOTH.map(([s, rule]) => [s.length > 40 ? `${s.slice(0, 8)}…` : s, s, rule]))(
    "%j breaks %s",
    (_label, s, rule) => {
      expect(ruleOf(() => toSubject(s))).toBe(rule);
      expect(ruleOf(() => filterToPatterns(s))).toBe(rule);
    },
  );

  it.each(INVALID_NAMES)("topic name %j breaks %s", (topic, rule) => {
    expect(ruleOf(() => toSubject(topic))).toBe(rule);
    expect(() => filterToPatterns(topic)).not.toThrow();
  });

  it.each(INVALID_FILTERS)("filter %j breaks %s", (filter, rule) => {
    expect(ruleOf(() => filterToPatterns(filter))).toBe(rule);
    expect(ruleOf(() => toSubject(filter))).toBe("[MQTT-3.3.2-2]");
  });

  it("says what is wrong with which topic", () => {
    expect(() => filterToPatterns("a/+b")).toThrow(
      'topic "a/+b": "+" must occupy a whole level [MQTT-4.7.1-3]',
    );
    expect(() => filterToPatterns("a/#/b")).toThrow(
      'topic "a/#/b": "#" must be alone in the last level [MQTT-4.7.1-2]',
    );
    expect(() => toSubject("a b")).toThrow(
      'topic "a b": contains whitespace U+0020, which a NATS subject cannot carry (nats-subject)',
    );
    expect(() => toSubject("a/#")).toThrow(
      'topic "a/#": wildcard "#" is not allowed in a topic name [MQTT-3.3.2-2]',
    );
    expect(() => toSubject(LONG_CJK)).toThrow(
      `topic "${"日".repeat(80)}…": encodes to 65538 UTF-8 bytes, more than 65535 [MQTT-4.7.3-3]`,
    );
  });

  it("rejects exactly the characters \\s matches, as isValidSubject does", () => {
    const special = new Set(["\0", "+", "#", "\u007f"]);
    const wrong: string[] = [];
    const rejected: string[] = [];
    for (let c = 0; c <= 0xffff; c++) {
      const ch = String.fromCharCode(c);
      if (special.has(ch)) continue;
      const topic = `a${ch}`;
      let ok: boolean;
      try {
        ok = toTopic(toSubject(topic)) === topic;
      } catch (err) {
        ok = false;
        if ((err as TopicError).rule === "nats-subject") rejected.push(ch);
      }
      if (ok === /\s/.test(ch)) wrong.push(ch);
    }
    expect(wrong).toEqual([]);
    expect(rejected).toEqual(
      [..."\t\n\v\f\r \u00a0\u1680"].concat(
        Array.from({ length: 11 }, (_, i) => String.fromCharCode(0x2000 + i)),
        [..."\u2028\u2029\u202f\u205f\u3000\ufeff"],
      ),
    );
  });
});

// ---------------------------------------------------------------------------
// Properties

/** Levels drawn from characters that matter to the mapping, plus plain and unicode ones. */
const levelArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 1, arbitrary: fc.constantFrom("", ".", "..", "$SYS", "a.b", "*x", "y>", "日本", "😀") },
  {
    weight: 4,
    arbitrary: fc
      .string({
        unit: fc.constantFrom("a", "b", ".", "$", "-", "_", "*", ">", "é", "日", "😀", "\u0001"),
        maxLength: 4,
      })
      .filter((level) => level !== "*" && level !== ">"),
  },
);

const levelsArb = fc.array(levelArb, { minLength: 1, maxLength: 6 });

/** A valid topic name: levels joined by `/`, so empty levels give leading/trailing `/`. */
const topicArb = levelsArb.map((levels) => levels.join("/")).filter((t) => t.length > 0);

/** Reference matcher: MQTT 3.1.1 section 4.7 semantics, ignoring the `$` rule. */
function mqttMatch(filter: string, topic: string): boolean {
  const f = filter.split("/");
  const t = topic.split("/");
  for (let i = 0; i < f.length; i++) {
    // "#" matches the parent level and any number of children [MQTT-4.7.1-2].
    if (f[i] === "#") return true;
    if (i >= t.length) return false;
    if (f[i] !== "+" && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/** A filter derived from `levels`: some levels become `+`, and maybe a tail becomes `#`. */
const filterCaseArb = fc
  .record({
    levels: levelsArb,
    plus: fc.array(fc.boolean(), { minLength: 6, maxLength: 6 }),
    hashAt: fc.option(fc.nat({ max: 6 }), { nil: undefined }),
  })
  .map(({ levels, plus, hashAt }) => {
    const filterLevels = levels.map((level, i) => (plus[i] ? "+" : level));
    if (hashAt !== undefined) {
      filterLevels.splice(Math.min(hashAt, filterLevels.length), filterLevels.length, "#");
    }
    return { levels, filter: filterLevels.join("/") };
  })
  .filter(({ filter }) => filter.length > 0);

/** Topics near `levels`: equal, cut short, extended, or with one level changed. */
function nearbyTopicArb(levels: readonly string[]): fc.Arbitrary<string> {
  return fc
    .oneof(
      fc.constant([...levels]),
      fc.nat({ max: levels.length }).map((n) => levels.slice(0, n)),
      levelsArb.map((more) => [...levels, ...more]),
      fc
        .tuple(fc.nat({ max: levels.length - 1 }), levelArb)
        .map(([i, level]) => levels.map((l, j) => (j === i ? level : l))),
      levelsArb,
    )
    .map((ls) => ls.join("/"))
    .filter((t) => t.length > 0);
}

const pairArb = filterCaseArb.chain(({ levels, filter }) =>
  nearbyTopicArb(levels).map((topic) => ({ filter, topic })),
);

describe("properties", () => {
  it("toTopic(toSubject(t)) === t and the subject is valid", () => {
    fc.assert(
      fc.property(topicArb, (topic) => {
        const subject = toSubject(topic);
        expect(isValidSubject(subject)).toBe(true);
        expect(toTopic(subject)).toBe(topic);
      }),
      { numRuns: 2000 },
    );
  });

  it("a topic name is its own filter, with the same subject", () => {
    fc.assert(
      fc.property(topicArb, (topic) => {
        expect(filterToPatterns(topic)).toEqual([toSubject(topic)]);
      }),
    );
  });

  it("every pattern of a valid filter is a valid pattern", () => {
    fc.assert(
      fc.property(filterCaseArb, ({ filter }) => {
        const patterns = filterToPatterns(filter);
        expect(patterns.length).toBe(filter.endsWith("/#") ? 2 : 1);
        for (const pattern of patterns) expect(isValidPattern(pattern)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it("the patterns match exactly the subjects of the topics the filter matches", () => {
    let matches = 0;
    let misses = 0;
    fc.assert(
      fc.property(pairArb, ({ filter, topic }) => {
        const expected = mqttMatch(filter, topic);
        if (expected) matches++;
        else misses++;
        const subject = toSubject(topic);
        expect(filterToPatterns(filter).some((p) => subjectMatches(p, subject))).toBe(expected);
      }),
      { numRuns: 5000 },
    );
    // The generator is built so that matches are common, not a rarity.
    expect(matches).toBeGreaterThan(1000);
    expect(misses).toBeGreaterThan(1000);
  });
});
