// The Authenticator (src/core/auth.ts) and accounts: a user's result names its account
// ($G unless it says otherwise), anonymous and token clients are in $G, and the rest of
// what it decides is unchanged. Real scrypt hashes.
import { beforeAll, describe, expect, it } from "vitest";
import {
  AccountsError,
  Authenticator,
  type AuthResult,
  hashPassword,
  type PermissionsConfig,
  type UserConfig,
} from "../../src/core/index.js";

const OPEN: PermissionsConfig = {
  publish: { allow: [">"], deny: [] },
  subscribe: { allow: [">"], deny: [] },
};
const METER_ONLY: PermissionsConfig = {
  publish: { allow: ["energy.%u.>"], deny: [] },
  subscribe: { allow: ["cmd.%u.>"], deny: [] },
};

let users: UserConfig[];
let tokenHash: string;

beforeAll(async () => {
  const hash = await hashPassword("secret");
  tokenHash = await hashPassword("tok");
  users = [
    { user: "plain", password: hash, permissions: null },
    { user: "hvac-1", password: hash, permissions: null, account: "building" },
    { user: "meter-1", password: hash, permissions: METER_ONLY, account: "tenant" },
  ];
});

const auth = () =>
  new Authenticator({ users, defaultPermissions: OPEN, allowAnonymous: true, tokenHash });

const accepted = (r: AuthResult) => {
  if (!r.ok) throw new Error(`refused: ${r.reason}`);
  return r;
};

describe("Authenticator with accounts", () => {
  it("puts each user in its account, and a user without one in $G", async () => {
    const a = auth();
    const secret = Buffer.from("secret");
    const plain = accepted(await a.user("plain", secret, "c1", "10.0.0.1"));
    const hvac = accepted(await a.user("hvac-1", secret, "c2", "10.0.0.1"));
    const meter = accepted(await a.user("meter-1", secret, "c3", "10.0.0.1"));
    expect([plain.account, hvac.account, meter.account]).toEqual(["$G", "building", "tenant"]);
    expect([plain.user, hvac.user, meter.user]).toEqual(["plain", "hvac-1", "meter-1"]);
    // Permissions are the user's own, %u substituted, as before accounts.
    expect(meter.permissions.canPublish("energy.meter-1.kwh")).toBe(true);
    expect(meter.permissions.canPublish("energy.meter-2.kwh")).toBe(false);
    expect(hvac.permissions.canPublish("anything")).toBe(true);
  });

  it("puts anonymous and token clients in $G", async () => {
    const a = auth();
    expect(accepted(a.anonymous("c1")).account).toBe("$G");
    const token = accepted(await a.token("tok", "c2", "10.0.0.1"));
    expect(token).toMatchObject({ ok: true, user: undefined, account: "$G" });
  });

  it("still refuses unknown users, wrong passwords and wrong tokens, whatever the account", async () => {
    const a = auth();
    const refusal = {
      ok: false,
      returnCode: 4,
      reason: "bad user name or password",
      refusal: "bad-credentials",
    };
    expect(await a.user("nobody", Buffer.from("secret"), "c", "10.0.0.2")).toEqual(refusal);
    expect(await a.user("meter-1", Buffer.from("wrong"), "c", "10.0.0.2")).toEqual(refusal);
    expect(await a.user("tenant", Buffer.from("secret"), "c", "10.0.0.2")).toEqual(refusal);
    expect(await a.token("nope", "c", "10.0.0.2")).toEqual({
      ok: false,
      returnCode: 4,
      reason: "bad token",
      refusal: "bad-credentials",
    });
  });

  it("keeps permissionsFor, and says which account an owner is in today", () => {
    const a = auth();
    expect(a.permissionsFor("meter-1", "c").canPublish("energy.meter-1.x")).toBe(true);
    expect(a.permissionsFor("meter-1", "c").canPublish("energy.other.x")).toBe(false);
    expect(a.permissionsFor("gone", "c").canPublish("energy.meter-1.x")).toBe(false);
    expect(a.accountFor("meter-1")).toBe("tenant");
    expect(a.accountFor("plain")).toBe("$G");
    expect(a.accountFor("")).toBe("$G");
    expect(a.accountFor(undefined)).toBe("$G");
    expect(a.accountFor("gone")).toBeUndefined();
  });

  it("refuses a user name listed twice (two accounts, or the same one)", () => {
    const twice = [...users, { ...users[2]!, account: "building" }];
    expect(
      () => new Authenticator({ users: twice, defaultPermissions: OPEN, allowAnonymous: false }),
    ).toThrow(
      new AccountsError(
        'user "meter-1" is listed twice (accounts "tenant" and "building"): a user name must be unique across accounts',
      ),
    );
  });
});
