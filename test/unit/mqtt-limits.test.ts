// Pure rules behind issue 10's limits: failed logins per address (backoff, bounded memory),
// sockets per address and before CONNECT, the import subjects only the hub may write, and
// the $SYS namespace no client may.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  Admissions,
  ALLOW_ALL,
  compilePermissions,
  LoginGuard,
  subjectMatches,
} from "../../src/core/index.js";

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

/** N failed logins from `address` at `nowMs`, each checked and failed; the last lockout. */
function fail(guard: LoginGuard, address: string, n: number, nowMs: number) {
  let lockout: ReturnType<LoginGuard["end"]>;
  for (let i = 0; i < n; i++) {
    expect(guard.begin(address, nowMs)).toBe(true);
    lockout = guard.end(address, false, nowMs);
  }
  return lockout;
}

describe("LoginGuard", () => {
  it("locks an address out after N failures in the window, for the window, then twice as long each time", () => {
    const g = new LoginGuard({ maxFailures: 3, windowMs: MINUTE });
    expect(fail(g, "10.0.0.1", 2, 0)).toBeUndefined();
    expect(g.lockedOut("10.0.0.1", 0)).toBe(false);
    expect(fail(g, "10.0.0.1", 1, 1000)).toEqual({
      address: "10.0.0.1",
      failures: 3,
      forMs: MINUTE,
    });
    expect(g.lockedOut("10.0.0.1", 1000 + MINUTE - 1)).toBe(true);
    expect(g.begin("10.0.0.1", 1000 + MINUTE - 1)).toBe(false);
    expect(g.lockedOut("10.0.0.1", 1000 + MINUTE)).toBe(false);
    // Back at once: the next lockout lasts 2, then 4 windows.
    let t = 1000 + MINUTE;
    expect(fail(g, "10.0.0.1", 3, t)?.forMs).toBe(2 * MINUTE);
    t += 2 * MINUTE;
    expect(fail(g, "10.0.0.1", 3, t)?.forMs).toBe(4 * MINUTE);
    // Others are not affected.
    expect(g.lockedOut("10.0.0.2", t)).toBe(false);
  });

  it("caps the backoff at an hour and forgets the streak after an hour of quiet", () => {
    const g = new LoginGuard({ maxFailures: 1, windowMs: 20 * MINUTE });
    let t = 0;
    const lengths: number[] = [];
    for (let i = 0; i < 4; i++) {
      const lockout = fail(g, "a", 1, t)!;
      lengths.push(lockout.forMs);
      t += lockout.forMs;
    }
    expect(lengths).toEqual([20 * MINUTE, 40 * MINUTE, HOUR, HOUR]);
    expect(fail(g, "a", 1, t + HOUR)?.forMs).toBe(20 * MINUTE);
  });

  it("counts failures in a window: spread out they never lock", () => {
    const g = new LoginGuard({ maxFailures: 3, windowMs: MINUTE });
    for (let i = 0; i < 10; i++) expect(fail(g, "a", 2, i * MINUTE)).toBeUndefined();
    expect(g.lockedOut("a", 10 * MINUTE)).toBe(false);
  });

  it("counts checks still running, so a burst starts at most N of them", () => {
    const g = new LoginGuard({ maxFailures: 10, windowMs: MINUTE });
    const started = Array.from({ length: 200 }, () => g.begin("a", 0)).filter(Boolean);
    expect(started).toHaveLength(10);
    // One of them succeeds: the address is clear again, and a new check may begin.
    expect(g.end("a", true, 0)).toBeUndefined();
    expect(g.begin("a", 0)).toBe(true);
  });

  it("a successful login clears the failures", () => {
    const g = new LoginGuard({ maxFailures: 3, windowMs: MINUTE });
    fail(g, "a", 2, 0);
    expect(g.begin("a", 0)).toBe(true);
    g.end("a", true, 0);
    expect(fail(g, "a", 2, 0)).toBeUndefined();
    expect(g.size).toBe(1);
  });

  it("0 failures: no limit, nothing remembered", () => {
    const g = new LoginGuard({ maxFailures: 0, windowMs: MINUTE });
    expect(fail(g, "a", 1000, 0)).toBeUndefined();
    expect(g.size).toBe(0);
  });

  it("remembers a bounded number of addresses, quiet ones forgotten first", () => {
    const g = new LoginGuard({ maxFailures: 2, windowMs: MINUTE, maxAddresses: 100 });
    fail(g, "locked", 2, 0);
    for (let i = 0; i < 10_000; i++) fail(g, `10.0.${i >> 8}.${i & 255}`, 1, 0);
    expect(g.size).toBe(100);
    expect(g.lockedOut("locked", 1)).toBe(true);
  });
});

describe("Admissions", () => {
  function track(maxPending: number, maxPerAddress: number) {
    const refused: string[] = [];
    let pending = 0;
    const admissions = new Admissions(
      { maxPending, maxPerAddress },
      { refused: (r) => refused.push(r), pending: (n) => (pending = n) },
    );
    const closed: string[] = [];
    const admit = (address: string, name: string) =>
      admissions.admit(address, () => closed.push(name));
    return { admissions, admit, refused, closed, pending: () => pending };
  }

  it("counts sockets per address, pending or not, and frees them on release", () => {
    const t = track(0, 2);
    const a = t.admit("a", "a1")!;
    t.admit("a", "a2")!.established();
    expect(t.admit("a", "a3")).toBeUndefined();
    expect(t.admit("b", "b1")).toBeDefined();
    expect(t.refused).toEqual(["per-address"]);
    a.release();
    a.release();
    expect(t.admissions.openFrom("a")).toBe(1);
    expect(t.admit("a", "a4")).toBeDefined();
  });

  it("bounds pending sockets; a new address takes the oldest place of the address holding most", () => {
    const t = track(4, 0);
    const places = ["a1", "a2", "a3"].map((n) => t.admit("a", n));
    t.admit("b", "b1");
    expect(t.pending()).toBe(4);
    // "a" holds the most: another of its own is refused, it never pushes out its own.
    expect(t.admit("a", "a4")).toBeUndefined();
    // "c" holds none: a1 (a's oldest) is closed and c takes its place.
    expect(t.admit("c", "c1")).toBeDefined();
    expect(t.closed).toEqual(["a1"]);
    expect(t.refused).toEqual(["max-pending", "max-pending"]);
    expect(t.pending()).toBe(4);
    // a1's socket closing later does not count twice.
    places[0]!.release();
    expect(t.pending()).toBe(4);
    // Established sockets are not pending: room again.
    places[1]!.established();
    expect(t.pending()).toBe(3);
    expect(t.admit("b", "b2")).toBeDefined();
    // b holds two of the four: d takes b's oldest.
    expect(t.admit("d", "d1")).toBeDefined();
    expect(t.closed).toEqual(["a1", "b1"]);
    // One each now: nothing gets fairer, the next one is refused.
    expect(t.admit("e", "e1")).toBeUndefined();
    expect(t.closed).toEqual(["a1", "b1"]);
  });
});

describe("the $SYS namespace is the gateway's", () => {
  it("no client may publish into it, whatever its permissions allow", () => {
    const rules = (allow: string[]) => ({
      publish: { allow, deny: [] },
      subscribe: { allow: [">"], deny: [] },
    });
    const everything = compilePermissions(rules([">"]), "u", "c");
    expect(everything).toBe(ALLOW_ALL);
    for (const p of [
      everything,
      compilePermissions(rules(["$SYS.>"]), "u", "c"),
      compilePermissions(rules(["$SYS.leafgate.gw1.uptime", ">"]), "u", "c", ["cmd.>"]),
    ]) {
      expect(p.canPublish("$SYS.leafgate.gw1.uptime")).toBe(false);
      expect(p.canPublish("$SYS.x")).toBe(false);
      expect(p.canSubscribe("$SYS.>")).toBe(true);
    }
    // Only the namespace itself: other $ subjects, and SYS without its $, stay open.
    expect(everything.canPublish("$SYSTEM.x")).toBe(true);
    expect(everything.canPublish("$app.x")).toBe(true);
    expect(everything.canPublish("SYS.x")).toBe(true);
  });
});

describe("import subjects are the hub's", () => {
  const rules = (allow: string[]) => ({
    publish: { allow, deny: [] },
    subscribe: { allow: [">"], deny: [] },
  });
  const hubOnly = ["cmd.gw1.>"];

  it("a bare > or wildcard-only pattern does not grant them; a pattern naming them does", () => {
    expect(compilePermissions(rules([">"]), "u", "c", hubOnly).canPublish("cmd.gw1.x")).toBe(false);
    expect(compilePermissions(rules(["*.>"]), "u", "c", hubOnly).canPublish("cmd.gw1.x")).toBe(
      false,
    );
    expect(compilePermissions(rules([">"]), "u", "c", hubOnly).canPublish("cmd.gw2.x")).toBe(true);
    for (const grant of ["cmd.gw1.>", "cmd.>", "cmd.*.x", "*.gw1.x"]) {
      const p = compilePermissions(rules([grant]), "u", "c", hubOnly);
      expect([grant, p.canPublish("cmd.gw1.x")]).toEqual([grant, true]);
    }
    // Named, but not this subject: still the hub's.
    expect(
      compilePermissions(rules([">", "cmd.*.y"]), "u", "c", hubOnly).canPublish("cmd.gw1.x"),
    ).toBe(false);
  });

  it("without import subjects everything-allowed stays everything-allowed", () => {
    expect(compilePermissions(rules([">"]), "u", "c").canPublish("cmd.gw1.x")).toBe(true);
  });
});

describe("compiled permissions match as subjectMatches does", () => {
  const token = fc.constantFrom("a", "b", "ab", "*");
  const pattern = fc
    .tuple(fc.array(token, { minLength: 1, maxLength: 4 }), fc.boolean())
    .map(([ts, tail]) => (tail ? [...ts, ">"] : ts).join("."));
  const subject = fc.array(fc.constantFrom("a", "b", "ab", "x"), { minLength: 1, maxLength: 5 });

  it("for allow, deny and the hub's subjects alike (fast-check)", () => {
    fc.assert(
      fc.property(pattern, pattern, subject, (allow, deny, tokens) => {
        const s = tokens.join(".");
        const rules = {
          publish: { allow: [allow], deny: [deny] },
          subscribe: { allow: [">"], deny: [deny] },
        };
        const p = compilePermissions(rules, "u", "c", ["zz.>"]);
        expect(p.canPublish(s)).toBe(subjectMatches(allow, s) && !subjectMatches(deny, s));
        expect(p.mayReceive(s)).toBe(!subjectMatches(deny, s));
        // As a hub subject: only a pattern naming something grants it.
        const hub = compilePermissions(rules, "u", "c", [allow]);
        const named = allow.split(".").some((t) => t !== "*" && t !== ">");
        expect(hub.canPublish(s)).toBe(named && p.canPublish(s));
      }),
      { seed: 10, numRuns: 2000 },
    );
  });

  it("a > pattern needs a token after its prefix", () => {
    const p = compilePermissions(
      { publish: { allow: [">"], deny: [] }, subscribe: { allow: [">"], deny: [] } },
      "u",
      "c",
      ["cmd.gw1.>"],
    );
    expect(["cmd.gw1", "cmd.gw1.x", "cmd.gw10.x"].map((s) => p.canPublish(s))).toEqual([
      true,
      false,
      true,
    ]);
  });
});
