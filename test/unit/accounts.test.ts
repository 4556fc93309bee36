// Accounts (src/core/accounts.ts): each account its own Bus; only declared stream
// export/import pairs cross, through bridges, once, never further. Real Buses and Replies.
import { describe, expect, it } from "vitest";
import {
  type AccountOptions,
  AccountSpace,
  AccountsError,
  type Bus,
  type BusSubscriber,
  type Crossing,
  type Envelope,
  Replies,
} from "../../src/core/index.js";

const message = (subject: string, extra: Partial<Envelope> = {}): Envelope => ({
  subject,
  payload: Buffer.from(`p:${subject}`),
  receivedAtMs: 1,
  origin: "mqtt",
  qos: 1,
  ...extra,
});

/** Everything a bus delivers on `pattern`, as "subject=payload". */
function record(bus: Bus, pattern = ">"): { got: string[]; envelopes: Envelope[] } {
  const got: string[] = [];
  const envelopes: Envelope[] = [];
  bus.subscribe(pattern, {
    deliver: (m) => {
      got.push(`${m.subject}=${Buffer.from(m.payload).toString()}`);
      envelopes.push(m);
      return undefined;
    },
  });
  return { got, envelopes };
}

/** A durable subscriber whose commits the test settles one by one. */
function durable(bus: Bus, pattern = ">") {
  const commits: { subject: string; resolve: () => void; reject: (e: Error) => void }[] = [];
  const subscriber: BusSubscriber = {
    passive: true,
    deliver: (m) =>
      new Promise<void>((resolve, reject) => commits.push({ subject: m.subject, resolve, reject })),
  };
  bus.subscribe(pattern, subscriber);
  return commits;
}

const settledState = (p: Promise<void>) => {
  const state = { value: "pending" };
  p.then(
    () => (state.value = "resolved"),
    (e: Error) => (state.value = `rejected: ${e.message}`),
  );
  return state;
};

const turn = () => new Promise((r) => setImmediate(r));

const ENERGY: readonly AccountOptions[] = [
  { name: "building", exports: [{ stream: "energy.>" }, { stream: "hvac.*.status" }] },
  {
    name: "tenant",
    imports: [{ stream: "energy.>", account: "building", prefix: "shared" }],
  },
  { name: "other", imports: [{ stream: "energy.*", account: "building" }] },
];

describe("AccountSpace", () => {
  it("gives each account its own bus: a > subscriber in one sees nothing of another", async () => {
    const space = new AccountSpace({ accounts: [{ name: "A" }, { name: "B" }] });
    expect(space.accounts.map((a) => a.name)).toEqual(["$G", "A", "B"]);
    const a = record(space.account("A").bus);
    const b = record(space.account("B").bus);
    const g = record(space.account("$G").bus);
    for (const s of ["x", "energy.m1", "_INBOX.abc.1", "a.b.c.d"]) {
      await space.account("A").bus.publish(message(s));
    }
    await space.account("$G").bus.publish(message("g.1"));
    expect(a.got).toEqual([
      "x=p:x",
      "energy.m1=p:energy.m1",
      "_INBOX.abc.1=p:_INBOX.abc.1",
      "a.b.c.d=p:a.b.c.d",
    ]);
    expect(b.got).toEqual([]);
    expect(g.got).toEqual(["g.1=p:g.1"]);
    expect(space.account("A").bus).not.toBe(space.account("B").bus);
    expect(space.account("A").replies).toBeUndefined();
  });

  it("delivers what an import names, with and without prefix, and nothing else", async () => {
    const space = new AccountSpace({ accounts: ENERGY });
    const building = record(space.account("building").bus);
    const tenant = record(space.account("tenant").bus);
    const other = record(space.account("other").bus);
    const g = record(space.account("$G").bus);
    for (const s of ["energy.m1", "energy.m2.kwh", "energy", "power.m1", "hvac.1.status"]) {
      await space.account("building").bus.publish(message(s));
    }
    expect(building.got).toEqual([
      "energy.m1=p:energy.m1",
      "energy.m2.kwh=p:energy.m2.kwh",
      "energy=p:energy",
      "power.m1=p:power.m1",
      "hvac.1.status=p:hvac.1.status",
    ]);
    // Exported but not imported (hvac), not exported (power), not matched (bare "energy"):
    // none of them crosses.
    expect(tenant.got).toEqual([
      "shared.energy.m1=p:energy.m1",
      "shared.energy.m2.kwh=p:energy.m2.kwh",
    ]);
    expect(other.got).toEqual(["energy.m1=p:energy.m1"]);
    expect(g.got).toEqual([]);
    expect(tenant.envelopes.map((m) => m.crossedFrom)).toEqual(["building", "building"]);
    expect(building.envelopes.every((m) => m.crossedFrom === undefined)).toBe(true);
    expect(space.bridges).toEqual([
      { from: "building", to: "tenant", crossed: 2, failed: 0 },
      { from: "building", to: "other", crossed: 1, failed: 0 },
    ]);
  });

  it("flows one way: the importer's own publishes stay home", async () => {
    const space = new AccountSpace({ accounts: ENERGY });
    const building = record(space.account("building").bus);
    const other = record(space.account("other").bus);
    await space.account("tenant").bus.publish(message("energy.m1"));
    await space.account("tenant").bus.publish(message("shared.energy.m1"));
    expect(building.got).toEqual([]);
    expect(other.got).toEqual([]);
  });

  it("keeps the payload, headers, QoS and origin, and leaves reply, publisher and retain behind", async () => {
    const space = new AccountSpace({ accounts: ENERGY });
    const tenant = record(space.account("tenant").bus);
    const headers = new Map([["k", ["v"]]]);
    await space.account("building").bus.publish(
      message("energy.m1", {
        headers,
        qos: 2,
        origin: "serial",
        reply: "_INBOX.building.7",
        publisher: "meter-1",
        retain: true,
        properties: { contentType: "text/plain" },
        expiresAtMs: 99,
      }),
    );
    expect(tenant.envelopes).toEqual([
      {
        subject: "shared.energy.m1",
        payload: Buffer.from("p:energy.m1"),
        headers,
        receivedAtMs: 1,
        origin: "serial",
        qos: 2,
        properties: { contentType: "text/plain" },
        expiresAtMs: 99,
        crossedFrom: "building",
      },
    ]);
  });

  it("never bridges request-reply inboxes, even under an import of >", async () => {
    const space = new AccountSpace({
      accounts: [
        { name: "A", exports: [{ stream: ">" }] },
        { name: "B", imports: [{ stream: ">", account: "A" }] },
      ],
    });
    const b = record(space.account("B").bus);
    await space.account("A").bus.publish(message("_INBOX.x.1"));
    await space.account("A").bus.publish(message("_INBOXED.1"));
    expect(b.got).toEqual(["_INBOXED.1=p:_INBOXED.1"]);
  });

  it("is passive: a request in the exporter is not served by an importer's copy", () => {
    const space = new AccountSpace({ accounts: ENERGY });
    record(space.account("tenant").bus, "shared.>");
    expect(space.account("building").bus.hasInterest("energy.m1")).toBe(false);
    record(space.account("building").bus, "energy.*");
    expect(space.account("building").bus.hasInterest("energy.m1")).toBe(true);
  });

  it("does not ping-pong between two accounts importing each other, nor chain onwards", async () => {
    const space = new AccountSpace({
      accounts: [
        {
          name: "A",
          exports: [{ stream: ">" }],
          imports: [{ stream: ">", account: "B" }],
        },
        {
          name: "B",
          exports: [{ stream: ">" }],
          imports: [{ stream: ">", account: "A" }],
        },
        { name: "C", imports: [{ stream: ">", account: "B", prefix: "from-b" }] },
      ],
    });
    const a = record(space.account("A").bus);
    const b = record(space.account("B").bus);
    const c = record(space.account("C").bus);
    await space.account("A").bus.publish(message("x.1"));
    await space.account("B").bus.publish(message("y.1"));
    expect(a.got).toEqual(["x.1=p:x.1", "y.1=p:y.1"]);
    expect(b.got).toEqual(["x.1=p:x.1", "y.1=p:y.1"]);
    // C imports from B: B's own message, not the one B imported from A.
    expect(c.got).toEqual(["from-b.y.1=p:y.1"]);
    expect(space.bridges).toEqual([
      { from: "B", to: "A", crossed: 1, failed: 0 },
      { from: "A", to: "B", crossed: 1, failed: 0 },
      { from: "B", to: "C", crossed: 1, failed: 0 },
    ]);
  });

  it("sends one copy per subject in the importer, however many imports match", async () => {
    const space = new AccountSpace({
      accounts: [
        { name: "A", exports: [{ stream: "energy.>" }] },
        {
          name: "B",
          imports: [
            { stream: "energy.>", account: "A", prefix: "s" },
            { stream: "energy.m1", account: "A", prefix: "s" },
            { stream: "energy.*", account: "A", prefix: "t.u" },
            { stream: "energy.>", account: "A", prefix: "v" },
          ],
        },
      ],
    });
    const b = record(space.account("B").bus);
    await space.account("A").bus.publish(message("energy.m1"));
    await space.account("A").bus.publish(message("energy.m2.x"));
    expect(b.got).toEqual([
      "s.energy.m1=p:energy.m1",
      "t.u.energy.m1=p:energy.m1",
      "v.energy.m1=p:energy.m1",
      "s.energy.m2.x=p:energy.m2.x",
      "v.energy.m2.x=p:energy.m2.x",
    ]);
    expect(space.bridges).toEqual([{ from: "A", to: "B", crossed: 5, failed: 0 }]);
  });

  it("crosses an account's $SYS figures only under an import naming $SYS, not under >", async () => {
    const space = new AccountSpace({
      accounts: [
        { name: "site", exports: [{ stream: ">" }] },
        { name: "all", imports: [{ stream: ">", account: "site" }] },
        {
          name: "both",
          imports: [
            { stream: ">", account: "site", prefix: "site" },
            { stream: "$SYS.>", account: "site", prefix: "site" },
          ],
        },
        { name: "stats", imports: [{ stream: "$SYS.leafgate.>", account: "site" }] },
      ],
    });
    const all = record(space.account("all").bus);
    const both = record(space.account("both").bus);
    const stats = record(space.account("stats").bus);
    await space.account("site").bus.publish(message("$SYS.leafgate.gw1.uptime"));
    await space.account("site").bus.publish(message("energy.m1"));
    expect(all.got).toEqual(["energy.m1=p:energy.m1"]);
    expect(both.got).toEqual([
      "site.$SYS.leafgate.gw1.uptime=p:$SYS.leafgate.gw1.uptime",
      "site.energy.m1=p:energy.m1",
    ]);
    expect(stats.got).toEqual(["$SYS.leafgate.gw1.uptime=p:$SYS.leafgate.gw1.uptime"]);
  });

  it("makes the exporter's publish wait for the importer's durable copies", async () => {
    const space = new AccountSpace({ accounts: ENERGY });
    const buildingOutbox = durable(space.account("building").bus);
    const tenantOutbox = durable(space.account("tenant").bus);
    const otherOutbox = durable(space.account("other").bus);
    const published = settledState(space.account("building").bus.publish(message("energy.m1")));
    expect(buildingOutbox.map((c) => c.subject)).toEqual(["energy.m1"]);
    expect(tenantOutbox.map((c) => c.subject)).toEqual(["shared.energy.m1"]);
    expect(otherOutbox.map((c) => c.subject)).toEqual(["energy.m1"]);
    buildingOutbox[0]!.resolve();
    otherOutbox[0]!.resolve();
    await turn();
    expect(published.value).toBe("pending");
    tenantOutbox[0]!.resolve();
    await turn();
    expect(published.value).toBe("resolved");
  });

  it("reports an importer's failed commit without failing the exporter's publish", async () => {
    const failures: { err: string; crossing: Crossing }[] = [];
    const space = new AccountSpace({
      accounts: ENERGY,
      onBridgeError: (err, crossing) => failures.push({ err: String(err), crossing }),
    });
    const tenantOutbox = durable(space.account("tenant").bus);
    const published = settledState(space.account("building").bus.publish(message("energy.m1")));
    tenantOutbox[0]!.reject(new Error("buffer full"));
    await turn();
    expect(published.value).toBe("resolved");
    expect(failures).toEqual([
      {
        err: "Error: buffer full",
        crossing: { from: "building", to: "tenant", subject: "shared.energy.m1" },
      },
    ]);
    expect(space.bridges[0]).toEqual({ from: "building", to: "tenant", crossed: 1, failed: 1 });
    // The exporter's own durable copy still decides its publisher's answer.
    const own = durable(space.account("building").bus);
    const second = settledState(space.account("building").bus.publish(message("power.1")));
    own[0]!.reject(new Error("disk full"));
    await turn();
    expect(second.value).toBe("rejected: disk full");
  });

  it("gives each account its own request-reply routes", async () => {
    const space = new AccountSpace({
      accounts: [
        { name: "A", exports: [{ stream: ">" }] },
        { name: "B", imports: [{ stream: ">", account: "A" }] },
      ],
      makeReplies: (bus) => new Replies({ bus, maxRoutes: 4, ttlMs: 1_000 }),
    });
    const a = space.account("A").replies!;
    const b = space.account("B").replies!;
    expect(a.prefix).not.toBe(b.prefix);
    const got: string[] = [];
    const route = a.mint((m) => got.push(`A:${m.subject}`))!;
    // The route's subject published in B is B's: A's route never hears of it.
    await space.account("B").bus.publish(message(route));
    expect(got).toEqual([]);
    await space.account("A").bus.publish(message(route));
    expect(got).toEqual([`A:${route}`]);
  });

  it("close() removes the bridges and the routes it made; the buses stay usable", async () => {
    const space = new AccountSpace({
      accounts: ENERGY,
      makeReplies: (bus) => new Replies({ bus, maxRoutes: 4, ttlMs: 1_000 }),
    });
    const building = space.account("building").bus;
    // Two bridges on building's bus and each account's routes subscription.
    expect(building.subscriptionCount).toBe(1 + 1 + 1);
    const tenant = record(space.account("tenant").bus);
    const here = record(building);
    space.close();
    space.close();
    expect(building.subscriptionCount).toBe(1);
    await building.publish(message("energy.m1"));
    expect(tenant.got).toEqual([]);
    expect(here.got).toEqual(["energy.m1=p:energy.m1"]);
    expect(space.bridges.map((b) => b.crossed)).toEqual([0, 0]);
  });

  it("lets $G be listed to give it exports and imports", async () => {
    const space = new AccountSpace({
      accounts: [
        { name: "$G", exports: [{ stream: "public.>" }] },
        { name: "A", imports: [{ stream: "public.>", account: "$G", prefix: "g" }] },
      ],
    });
    expect(space.accounts.map((a) => a.name)).toEqual(["$G", "A"]);
    const a = record(space.account("A").bus);
    await space.account("$G").bus.publish(message("public.news"));
    expect(a.got).toEqual(["g.public.news=p:public.news"]);
  });

  it("builds each account's bus and routes with the factories it is given", () => {
    const made: string[] = [];
    const space = new AccountSpace({
      accounts: [{ name: "A" }],
      makeReplies: (bus, name) => {
        made.push(name);
        return new Replies({ bus, maxRoutes: 1, ttlMs: 1 });
      },
    });
    expect(made).toEqual(["$G", "A"]);
    expect(space.account("A").replies).toBeInstanceOf(Replies);
  });
});

describe("AccountSpace refuses what the config must not allow", () => {
  const refuses = (accounts: readonly AccountOptions[], message: string) => {
    let thrown: unknown;
    try {
      new AccountSpace({ accounts });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(AccountsError);
    expect((thrown as AccountsError).code).toBe("LG_ERR_ACCOUNTS_INVALID");
    expect((thrown as AccountsError).message).toBe(message);
  };

  it("an unknown account asked for", () => {
    const space = new AccountSpace({ accounts: [{ name: "A" }] });
    expect(() => space.account("B")).toThrow(
      new AccountsError('no account "B" (accounts: "$G", "A")'),
    );
  });

  it("an invalid or repeated account name", () => {
    refuses(
      [{ name: "a.b" }],
      'account name "a.b" is invalid: use letters, digits, "_" and "-" ($G is the default account\'s)',
    );
    refuses(
      [{ name: "" }],
      'account name "" is invalid: use letters, digits, "_" and "-" ($G is the default account\'s)',
    );
    refuses([{ name: "A" }, { name: "A" }], 'account "A" is declared twice');
  });

  it("an export that is no pattern", () => {
    refuses(
      [{ name: "A", exports: [{ stream: "energy.>.x" }] }],
      'account "A": export "energy.>.x" is not a subject pattern (tokens separated by ".", "*" for one token, ">" last for the rest, no spaces)',
    );
  });

  it("an import that is no pattern, from nowhere, or from itself", () => {
    refuses(
      [
        { name: "A", exports: [{ stream: ">" }] },
        { name: "B", imports: [{ stream: "a..b", account: "A" }] },
      ],
      'account "B": import of "a..b" from "A": "a..b" is not a subject pattern (tokens separated by ".", "*" for one token, ">" last for the rest, no spaces)',
    );
    refuses(
      [{ name: "B", imports: [{ stream: "x.>", account: "C" }] }],
      'account "B": import of "x.>" from "C": there is no account "C" (accounts: "$G", "B")',
    );
    refuses(
      [
        {
          name: "B",
          exports: [{ stream: ">" }],
          imports: [{ stream: "x.>", account: "B", prefix: "p" }],
        },
      ],
      'account "B": import of "x.>" from "B": an account cannot import from itself; its own subjects are already its own',
    );
  });

  it("a prefix that is not a subject", () => {
    for (const prefix of ["", "a.*", "a.>", "a..b", "a b", ".a"]) {
      refuses(
        [
          { name: "A", exports: [{ stream: ">" }] },
          { name: "B", imports: [{ stream: "x.>", account: "A", prefix }] },
        ],
        `account "B": import of "x.>" from "A": prefix "${prefix}" is not a subject (tokens separated by ".", no wildcards, no spaces), e.g. "shared"`,
      );
    }
  });

  it("an import without a matching export", () => {
    refuses(
      [{ name: "A" }, { name: "B", imports: [{ stream: "energy.>", account: "A" }] }],
      'account "B": import of "energy.>" from "A": import without a matching export: "A" exports nothing; add an export to "A" that covers "energy.>", or narrow the import',
    );
    // Covered means every subject of the import is exported: "energy.*" does not cover "energy.>".
    refuses(
      [
        { name: "A", exports: [{ stream: "energy.*" }, { stream: "power.>" }] },
        { name: "B", imports: [{ stream: "energy.>", account: "A" }] },
      ],
      'account "B": import of "energy.>" from "A": import without a matching export: "A" exports "energy.*", "power.>"; add an export to "A" that covers "energy.>", or narrow the import',
    );
  });
});
