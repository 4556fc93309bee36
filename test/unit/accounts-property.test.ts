// Accounts, property: random accounts (2-5), random export/import pairs among them, random
// subscribers (patterns with * and >, and a > in every account), random queue groups, and
// random publishes in random accounts, on a real AccountSpace. Every subscriber's
// deliveries (a queue group's: its members' together) must equal, as a multiset, what a
// simple model says: its own account's matching messages, plus exactly what its account's
// declared imports map (prefix + subject) from the publisher's account, one copy per
// distinct subject. So no delivery ever crosses accounts except through a declared
// export/import, and nothing crossed ever crosses again.
//
// Under CI the seed is fixed (CI_SEED): a red CI means a change broke something, not that a
// fresh seed found something old; every local run draws a new seed and explores. The seed
// is printed; LEAFGATE_FUZZ_SEED=<seed> replays it.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type AccountOptions, AccountSpace, type Envelope } from "../../src/core/index.js";
import { fuzzSeed } from "../helpers/seed.js";

/** The seed CI runs: its cases passed when it was chosen. */
const CI_SEED = 20_261_208;
const RUNS = 500;

const NAMES = ["$G", "A", "B", "C", "D"] as const;
/** Few tokens, so random subjects and patterns meet often; "p" is also a prefix token. */
const TOKENS = ["a", "b", "p"] as const;
const PREFIXES = [undefined, "p", "x.y", "a"] as const;

/** Independent of src/core/subject.ts: the model must not share the code it checks. */
function matches(pattern: string, subject: string): boolean {
  const p = pattern.split(".");
  const s = subject.split(".");
  const go = (i: number): boolean => {
    if (i === p.length) return i === s.length;
    if (p[i] === ">") return s.length > i;
    if (i === s.length) return false;
    return (p[i] === "*" || p[i] === s[i]) && go(i + 1);
  };
  return go(0);
}

const subjectArb = fc
  .array(fc.constantFrom(...TOKENS), { minLength: 1, maxLength: 3 })
  .map((t) => t.join("."));
/** Wildcards weigh as much as the literal tokens together, so patterns meet subjects. */
const patternArb = fc
  .tuple(
    fc.array(fc.oneof(fc.constantFrom(...TOKENS), fc.constant("*")), { maxLength: 3 }),
    fc.boolean(),
  )
  .filter(([tokens, tail]) => tokens.length > 0 || tail)
  .map(([tokens, tail]) => (tail ? [...tokens, ">"] : tokens).join("."));

interface Import {
  readonly from: number;
  readonly to: number;
  readonly stream: string;
  readonly prefix: string | undefined;
}
interface Scenario {
  readonly accounts: number;
  /** Per account: patterns it exports besides those its importers need. */
  readonly exports: readonly (readonly string[])[];
  readonly imports: readonly Import[];
  readonly subscribers: readonly { readonly account: number; readonly pattern: string }[];
  /** Queue groups of two members: together they get what one subscriber would. */
  readonly groups: readonly { readonly account: number; readonly pattern: string }[];
  readonly publishes: readonly { readonly account: number; readonly subject: string }[];
}

const scenarioArb: fc.Arbitrary<Scenario> = fc.integer({ min: 2, max: 5 }).chain((n) => {
  const account = fc.nat(n - 1);
  const importArb = fc
    .record({
      from: account,
      to: account,
      stream: patternArb,
      prefix: fc.constantFrom(...PREFIXES),
    })
    .filter((i) => i.from !== i.to);
  return fc.record({
    accounts: fc.constant(n),
    exports: fc.array(fc.array(patternArb, { maxLength: 2 }), { minLength: n, maxLength: n }),
    // Without imports a run checks isolation alone: a few of those, mostly bridges.
    imports: fc.oneof(
      { arbitrary: fc.constant([]), weight: 1 },
      { arbitrary: fc.array(importArb, { minLength: 1, maxLength: 6 }), weight: 9 },
    ),
    subscribers: fc.array(fc.record({ account, pattern: patternArb }), {
      minLength: 1,
      maxLength: 10,
    }),
    groups: fc.array(fc.record({ account, pattern: patternArb }), { maxLength: 3 }),
    publishes: fc.array(fc.record({ account, subject: subjectArb }), {
      minLength: 1,
      maxLength: 20,
    }),
  });
});

/** Every import gets an export that covers it: its own pattern, when none of the others do. */
function declare(s: Scenario): AccountOptions[] {
  const exports = s.exports.map((list) => [...list]);
  for (const imp of s.imports) {
    const list = exports[imp.from]!;
    if (!list.some((e) => covers(e, imp.stream))) list.push(imp.stream);
  }
  return exports.map((list, i) => ({
    name: NAMES[i]!,
    exports: list.map((stream) => ({ stream })),
    imports: s.imports
      .filter((imp) => imp.to === i)
      .map((imp) => ({ stream: imp.stream, account: NAMES[imp.from]!, prefix: imp.prefix })),
  }));
}

/** Conservative cover test for building the scenario: equal, or a bare `>`. */
const covers = (outer: string, inner: string): boolean => outer === inner || outer === ">";

/** What subscriber (or queue group) `sub` must receive: "<publish index>@<subject>", sorted. */
function expected(s: Scenario, sub: Scenario["subscribers"][number]): string[] {
  const out: string[] = [];
  s.publishes.forEach((pub, index) => {
    if (pub.account === sub.account && matches(sub.pattern, pub.subject)) {
      out.push(`${index}@${pub.subject}`);
    }
    const crossed = new Set<string>();
    for (const imp of s.imports) {
      if (imp.from !== pub.account || imp.to !== sub.account) continue;
      if (!matches(imp.stream, pub.subject)) continue;
      crossed.add(imp.prefix === undefined ? pub.subject : `${imp.prefix}.${pub.subject}`);
    }
    for (const subject of crossed) {
      if (matches(sub.pattern, subject)) out.push(`${index}@${subject}`);
    }
  });
  return out.sort();
}

/** Runs one scenario; returns how many deliveries came across a bridge. */
async function run(s: Scenario): Promise<number> {
  const space = new AccountSpace({ accounts: declare(s) });
  let crossed = 0;
  // Besides the random subscribers, a ">" in every account sees all that reaches it.
  const watchers = Array.from({ length: s.accounts }, (_, account) => ({ account, pattern: ">" }));
  const subscribers = [...s.subscribers, ...watchers];
  const recorder = (into: string[]) => ({
    deliver: (m: Envelope) => {
      if (m.crossedFrom !== undefined) crossed++;
      into.push(`${Buffer.from(m.payload).toString()}@${m.subject}`);
      return undefined;
    },
  });
  const got: string[][] = subscribers.map((sub) => {
    const into: string[] = [];
    space.account(NAMES[sub.account]!).bus.subscribe(sub.pattern, recorder(into));
    return into;
  });
  const groupGot: string[][][] = s.groups.map((group, g) =>
    [0, 1].map(() => {
      const into: string[] = [];
      space.account(NAMES[group.account]!).bus.subscribe(group.pattern, recorder(into), `g${g}`);
      return into;
    }),
  );
  for (const [index, pub] of s.publishes.entries()) {
    await space.account(NAMES[pub.account]!).bus.publish({
      subject: pub.subject,
      payload: Buffer.from(String(index)),
      receivedAtMs: 0,
      origin: "nats",
      qos: 0,
    });
  }
  subscribers.forEach((sub, i) => {
    expect(got[i]!.sort(), `subscriber ${i} (${NAMES[sub.account]} ${sub.pattern})`).toEqual(
      expected(s, sub),
    );
  });
  s.groups.forEach((group, g) => {
    const members = groupGot[g]!;
    expect(members.flat().sort(), `group ${g} (${NAMES[group.account]} ${group.pattern})`).toEqual(
      expected(s, group),
    );
  });
  space.close();
  return crossed;
}

describe("accounts (fast-check)", () => {
  it("no delivery crosses accounts except through a declared export/import", async () => {
    const seed = fuzzSeed(CI_SEED);
    console.log(`accounts-property: seed ${seed} (replay: LEAFGATE_FUZZ_SEED=${seed})`);
    let runs = 0;
    let crossedIn = 0;
    await fc.assert(
      fc.asyncProperty(scenarioArb, async (s) => {
        runs++;
        if ((await run(s)) > 0) crossedIn++;
      }),
      { seed, numRuns: RUNS },
    );
    // The runs exercised bridges, not only isolation.
    expect(runs).toBe(RUNS);
    expect(crossedIn).toBeGreaterThan(RUNS / 4);
    console.log(`accounts-property: ${crossedIn} of ${runs} runs delivered across a bridge`);
  });

  it("the model's matcher agrees with nats-server's rules on known cases", () => {
    const table: [string, string, boolean][] = [
      ["a", "a", true],
      ["a", "a.b", false],
      ["a.*", "a.b", true],
      ["a.*", "a", false],
      ["a.>", "a", false],
      ["a.>", "a.b.c", true],
      [">", "a", true],
      ["*.>", "a", false],
      ["*.b", "a.b", true],
    ];
    for (const [pattern, subject, want] of table) expect(matches(pattern, subject)).toBe(want);
  });
});
