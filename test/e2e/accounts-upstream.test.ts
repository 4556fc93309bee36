// One hub link per account (issue 13), against a real nats-server with two accounts
// (`accounts {}`), each with its own user and JetStream stream. The gateway's global
// account $G forwards as `g` into hub account HUB_G, its account `tenant` as `t` into
// HUB_T. Each stream captures everything its hub account could get from this gateway
// (`edge.gw1.>`), so a message in the wrong hub account would show.
//
// $G's messages come in through MQTT. The tenant's are published on the tenant's bus
// through the gateway's test seam `accountBus` (until the core's accounts land, nothing
// local publishes in an account but $G): they take the same path from there, the outbox
// sink subscribed to the account's export patterns, its queue, its link.
//
// Proves, across a hub outage (SIGKILL, restart): each account's messages arrive only in
// its own hub account's stream, exactly once and in order; $G's message ids keep the form
// from before accounts (`gw1-<row>`), the tenant's carry the account (`gw1.tenant.<row>`);
// each account's queue and link show in /status.
import { describe, expect } from "vitest";
import type { Envelope } from "../../src/core/index.js";
import { it } from "../helpers/fixtures.js";
import { mosquittoPubLines } from "../helpers/mqtt.js";
import { connectClient, createStream, streamInfo, streamMessages } from "../helpers/nats-server.js";
import { waitFor } from "../helpers/wait.js";

const G_PASSWORD = "g-pw-1";
const T_PASSWORD = "t-pw-2";
const HUB_CONFIG = `
accounts {
  HUB_G: { jetstream: enabled, users: [{ user: g, password: "${G_PASSWORD}" }] }
  HUB_T: { jetstream: enabled, users: [{ user: t, password: "${T_PASSWORD}" }] }
}
`;
const BEFORE = 40;
const DURING = 60;
const TOTAL = BEFORE + DURING;

const decoder = new TextDecoder();
const lines = (tag: string, from: number, n: number): string[] =>
  Array.from({ length: n }, (_, i) => `${tag}-${String(from + i).padStart(3, "0")}`);

describe("accounts: one hub link per account", () => {
  it("forwards each account into its own hub account and stream, exactly once, in order, across a hub outage", async ({
    startHub,
    gateway,
    defer,
  }) => {
    const hub = await startHub({ config: HUB_CONFIG });
    const asG = { user: "g", pass: G_PASSWORD };
    const asT = { user: "t", pass: T_PASSWORD };
    const ncG = await connectClient(hub.url, asG);
    const ncT = await connectClient(hub.url, asT);
    await createStream(ncG, "EDGE_G", ["edge.gw1.>"]);
    await createStream(ncT, "EDGE_T", ["edge.gw1.>"]);

    const gw = await gateway.start({
      upstream: {
        servers: [hub.url],
        user: "g",
        password: G_PASSWORD,
        stream: "EDGE_G",
        reconnect_delay_max: "200ms",
      },
      accounts: { tenant: { upstream: { user: "t", password: T_PASSWORD, stream: "EDGE_T" } } },
    });
    const g = gw.gateway;
    const accountState = (name: string) => g.status().accounts[name]!;
    const forwarding = () =>
      ["$G", "tenant"].every((a) => accountState(a).upstream.state === "forwarding");
    await waitFor(forwarding, { message: () => JSON.stringify(g.status().accounts) });

    const tenantBus = g.accountBus("tenant")!;
    const publishTenant = async (payloads: readonly string[]): Promise<void> => {
      await Promise.all(
        payloads.map((p) => {
          const m: Envelope = {
            subject: "t.x",
            payload: Buffer.from(p),
            receivedAtMs: Date.now(),
            origin: "nats",
            qos: 1,
          };
          return tenantBus.publish(m);
        }),
      );
    };
    const count = async (nc: typeof ncG, stream: string) =>
      (await streamInfo(nc, stream)).state.messages;

    // Before the outage.
    const gSent = lines("g", 0, BEFORE);
    const tSent = lines("t", 0, BEFORE);
    await Promise.all([mosquittoPubLines(gw.mqttPort, "g/t", gSent), publishTenant(tSent)]);
    await waitFor(async () => (await count(ncG, "EDGE_G")) === BEFORE, { timeoutMs: 20_000 });
    await waitFor(async () => (await count(ncT, "EDGE_T")) === BEFORE, { timeoutMs: 20_000 });

    // The hub dies; both accounts buffer in their own queues.
    await ncG.close();
    await ncT.close();
    await hub.kill();
    await waitFor(
      () => ["$G", "tenant"].every((a) => accountState(a).upstream.state !== "forwarding"),
      { timeoutMs: 20_000 },
    );
    const gLater = lines("g", BEFORE, DURING);
    const tLater = lines("t", BEFORE, DURING);
    await Promise.all([mosquittoPubLines(gw.mqttPort, "g/t", gLater), publishTenant(tLater)]);
    expect(accountState("$G").outbox.pending).toBe(DURING);
    expect(accountState("tenant").outbox.pending).toBe(DURING);
    expect(g.status().outbox.pending).toBe(DURING);

    // Back: each queue drains into its own hub account.
    await hub.restart();
    await waitFor(() => ["$G", "tenant"].every((a) => accountState(a).outbox.pending === 0), {
      timeoutMs: 30_000,
      message: () => JSON.stringify(g.status().accounts),
    });
    const ncG2 = await connectClient(hub.url, asG);
    const ncT2 = await connectClient(hub.url, asT);
    defer(() => Promise.all([ncG2.close(), ncT2.close()]));
    await waitFor(async () => (await count(ncG2, "EDGE_G")) === TOTAL, { timeoutMs: 20_000 });
    await waitFor(async () => (await count(ncT2, "EDGE_T")) === TOTAL, { timeoutMs: 20_000 });

    const inG = await streamMessages(ncG2, "EDGE_G");
    const inT = await streamMessages(ncT2, "EDGE_T");
    expect(inG.map((m) => decoder.decode(m.data))).toEqual([...gSent, ...gLater]);
    expect(inT.map((m) => decoder.decode(m.data))).toEqual([...tSent, ...tLater]);
    expect(new Set(inG.map((m) => m.subject))).toEqual(new Set(["edge.gw1.g.t"]));
    expect(new Set(inT.map((m) => m.subject))).toEqual(new Set(["edge.gw1.tenant.t.x"]));

    // Message ids: $G's as before accounts, the tenant's with the account; row ids ascend
    // within each, and the two never share one (one id sequence for the table).
    const rows = (ids: string[], form: RegExp): number[] =>
      ids.map((id) => {
        const m = form.exec(id);
        expect(m, id).not.toBeNull();
        return Number(m![1]);
      });
    const gRows = rows(
      inG.map((m) => m.headers["Nats-Msg-Id"]![0]!),
      /^gw1-(\d+)$/,
    );
    const tRows = rows(
      inT.map((m) => m.headers["Nats-Msg-Id"]![0]!),
      /^gw1\.tenant\.(\d+)$/,
    );
    for (const r of [gRows, tRows]) expect(r).toEqual([...r].sort((a, b) => a - b));
    expect(new Set([...gRows, ...tRows]).size).toBe(2 * TOTAL);

    // Counted per account: $G's series without a label, as before accounts.
    const forwarded = (labels?: Record<string, string>) =>
      g.metrics.value("leafgate_upstream_forwarded_total", labels);
    expect(forwarded()).toBe(TOTAL);
    expect(forwarded({ account: "tenant" })).toBe(TOTAL);
    const status = g.status();
    expect(Object.keys(status.accounts)).toEqual(["$G", "tenant"]);
    expect(status.accounts.tenant!.upstream).toMatchObject({
      state: "forwarding",
      stream: "EDGE_T",
    });
    expect(status.accounts.$G!.upstream).toMatchObject({ state: "forwarding", stream: "EDGE_G" });
  });
});
