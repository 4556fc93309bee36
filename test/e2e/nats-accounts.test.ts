// Accounts on the NATS endpoint: the official nats.js client, unmodified, against a
// NatsListener over an AccountSpace of two accounts with users, the shared Authenticator
// deciding each login's account. A client works in its account's subject space only; a
// declared stream export/import pair is the one way across.
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountSpace, Authenticator, Guard, Replies, silentLogger } from "../../src/core/index.js";
import { DEFAULT_NATS_CONNECTION_OPTIONS, NatsListener, natsAuth } from "../../src/nats/index.js";
import { MetricsRegistry } from "../../src/observe/index.js";
import { cheapPasswordHash } from "../helpers/mqtt-sequence.js";
import { waitFor } from "../helpers/wait.js";

const ALL = { publish: { allow: [">"], deny: [] }, subscribe: { allow: [">"], deny: [] } };
let space: AccountSpace;
let listener: NatsListener;
let servers: string;
const open: NatsConnection[] = [];

beforeAll(async () => {
  space = new AccountSpace({
    accounts: [
      { name: "meters", exports: [{ stream: "energy.>" }] },
      { name: "hvac", imports: [{ stream: "energy.>", account: "meters", prefix: "shared" }] },
    ],
    makeReplies: (bus) => new Replies({ bus, maxRoutes: 100, ttlMs: 5_000 }),
  });
  const authenticator = new Authenticator({
    users: [
      { user: "meter-1", password: cheapPasswordHash("m"), permissions: null, account: "meters" },
      { user: "hvac-1", password: cheapPasswordHash("h"), permissions: null, account: "hvac" },
      { user: "ops", password: cheapPasswordHash("o"), permissions: null },
    ],
    defaultPermissions: ALL,
    allowAnonymous: false,
  });
  const { bus, replies } = space.account("$G");
  listener = new NatsListener(bus, new Guard(silentLogger, new MetricsRegistry()), silentLogger, {
    connection: {
      ...DEFAULT_NATS_CONNECTION_OPTIONS,
      serverId: "ACCOUNTS",
      serverName: "accounts",
      version: "2.10.0",
      auth: natsAuth(authenticator, false),
      ...(replies === undefined ? {} : { replies }),
      accounts: space,
    },
  });
  servers = `127.0.0.1:${(await listener.listen("127.0.0.1", 0)).port}`;
});

afterAll(async () => {
  await Promise.all(open.map((nc) => (nc.isClosed() ? undefined : nc.close())));
  const stopping = listener.stopAccepting();
  listener.destroyAll();
  await stopping;
  space.close();
});

async function as(user: string, pass: string): Promise<NatsConnection> {
  const nc = await connect({ servers, user, pass, reconnect: false });
  open.push(nc);
  return nc;
}

const text = (d: Uint8Array): string => Buffer.from(d).toString();

describe("accounts on the NATS endpoint", () => {
  it("a client sees its own account only; the declared import crosses, with its prefix", async () => {
    const meter = await as("meter-1", "m");
    const hvac = await as("hvac-1", "h");
    const ops = await as("ops", "o");
    const seen: Record<string, string[]> = { meters: [], hvac: [], $G: [] };
    for (const [nc, name] of [
      [meter, "meters"],
      [hvac, "hvac"],
      [ops, "$G"],
    ] as const) {
      nc.subscribe(">", {
        callback: (_e, m) => void seen[name]!.push(`${m.subject}=${text(m.data)}`),
      });
      await nc.flush();
    }
    meter.publish("energy.m1.kwh", "12");
    meter.publish("private.m1", "not exported");
    hvac.publish("hvac.ahu1.temp", "19");
    ops.publish("energy.gw", "global");
    for (const nc of [meter, hvac, ops]) await nc.flush();
    await waitFor(
      () => seen.meters!.length === 2 && seen.hvac!.length === 2 && seen.$G!.length === 1,
      {
        message: () => JSON.stringify(seen),
      },
    );
    // Settle: another round trip each, so nothing more is on its way.
    for (const nc of [meter, hvac, ops]) await nc.flush();
    expect(seen).toEqual({
      meters: ["energy.m1.kwh=12", "private.m1=not exported"],
      hvac: ["shared.energy.m1.kwh=12", "hvac.ahu1.temp=19"],
      $G: ["energy.gw=global"],
    });
    // Their `>` subscriptions would count as responders in the next test.
    await Promise.all([meter.close(), hvac.close(), ops.close()]);
  });

  it("requests stay in their account: a responder in another account does not count", async () => {
    const meter = await as("meter-1", "m");
    const hvac = await as("hvac-1", "h");
    hvac.subscribe("svc.time", { callback: (_e, m) => void m.respond("from hvac") });
    await hvac.flush();
    await expect(meter.request("svc.time", "", { timeout: 2_000 })).rejects.toThrow(
      /no responders/i,
    );
    meter.subscribe("svc.time", { callback: (_e, m) => void m.respond("from meters") });
    await meter.flush();
    const other = await as("meter-1", "m");
    expect(text((await other.request("svc.time", "", { timeout: 2_000 })).data)).toBe(
      "from meters",
    );
  });
});
