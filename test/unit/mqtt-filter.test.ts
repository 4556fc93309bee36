// SUBSCRIBE topic filters (src/mqtt/filter.ts), shared subscriptions included (MQTT 5
// section 4.8.2): the group, the bus patterns (nats-server's mapping: `/` → `.`, `+` → `*`,
// `#` → `>` plus the parent level), and whether the filter starts with a wildcard (such
// filters must not match `$` topics [MQTT-4.7.2-1]).
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { filterToPatterns, TopicError } from "../../src/core/index.js";
import { parseFilter } from "../../src/mqtt/filter.js";

describe("parseFilter", () => {
  it.each<[string, string | undefined, string[], boolean]>([
    // filter, share, patterns, leadingWildcard
    ["$share/g/a/+", "g", ["a.*"], false],
    ["$share/g/a/#", "g", ["a", "a.>"], false],
    ["$share/g/#", "g", [">"], true],
    ["$share/g/+/+", "g", ["*.*"], true],
    ["$share/group-1_x/sensors/+/temp", "group-1_x", ["sensors.*.temp"], false],
    ["$share/g/$SYS/#", "g", ["$SYS", "$SYS.>"], false],
    // The group is everything up to the next slash; the rest, slashes and all, is the filter.
    ["$share/g/a/b/c", "g", ["a.b.c"], false],
    ["$share/ü/x", "ü", ["x"], false],
    ["a/+", undefined, ["a.*"], false],
    ["a/#", undefined, ["a", "a.>"], false],
    ["+/a", undefined, ["*.a"], true],
    ["#", undefined, [">"], true],
    ["+", undefined, ["*"], true],
    ["a", undefined, ["a"], false],
    // Not the `$share/<group>/` form: an ordinary filter on a `$` topic.
    ["$share", undefined, ["$share"], false],
    ["$sharex/g/a", undefined, ["$sharex.g.a"], false],
    ["$SHARE/g/a", undefined, ["$SHARE.g.a"], false],
    ["$SYS/#", undefined, ["$SYS", "$SYS.>"], false],
  ])("%s → share %s, patterns %j, leadingWildcard %s", (filter, share, patterns, leading) => {
    expect(parseFilter(filter)).toEqual({ share, patterns, leadingWildcard: leading });
  });

  it.each([
    ["$share/", "no group, no filter"],
    ["$share/g", "no filter [MQTT-4.8.2-2]"],
    ["$share/g/", "an empty filter"],
    ["$share//a", "an empty group [MQTT-4.8.2-1]"],
    ["$share/g+/a", "+ in the group [MQTT-4.8.2-2]"],
    ["$share/+/a", "the group is +"],
    ["$share/#/a", "the group is #"],
    ["$share/g#x/a", "# in the group"],
    ["$share/g/a/#/b", "# not last in the filter"],
    ["$share/g/a+", "+ not a whole level in the filter"],
    ["$share/g/a\u0000", "U+0000 in the filter"],
    ["a/#/b", "# not last"],
    ["a+/b", "+ not a whole level"],
    ["", "empty [MQTT-4.7.3-1]"],
  ])("%j (%s) throws TopicError", (filter) => {
    expect(() => parseFilter(filter)).toThrow(TopicError);
  });

  it("a shared filter has the patterns of its filter part (fast-check)", () => {
    const level = fc.oneof(
      fc.constantFrom("+", "a", "b", "temp", "ü", "x-y"),
      fc.stringMatching(/^[a-z0-9]{1,6}$/),
    );
    const group = fc.stringMatching(/^[A-Za-z0-9_-]{1,8}$/);
    fc.assert(
      fc.property(
        group,
        fc.array(level, { minLength: 1, maxLength: 6 }),
        fc.boolean(),
        (g, levels, hash) => {
          const filter = [...levels, ...(hash ? ["#"] : [])].join("/");
          const plain = parseFilter(filter);
          expect(plain.share).toBeUndefined();
          expect(plain.patterns).toEqual(filterToPatterns(filter));
          expect(parseFilter(`$share/${g}/${filter}`)).toEqual({ ...plain, share: g });
        },
      ),
      { numRuns: 300 },
    );
  });
});
