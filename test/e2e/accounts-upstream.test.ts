// One hub link per account (issue 13), against a real nats-server with two accounts
// (`accounts {}`), each with its own user and JetStream stream. The gateway's global
// account $G forwards as `g` into hub account HUB_G, its account `tenant` as `t` into
// HUB_T. Each stream captures everything its hub account could get from this gateway
// (`edge.gw1.>`), so a message in the wrong hub account would show.
//
// $G's messages come in through MQTT (mosquitto_pub, anonymous, so $G). Across the outage
// the tenant's come through mosquitto_pub too, logged in as a user of the tenant account;
// the other tests publish on the tenant's bus through the gateway's `accountBus`, for exact
// control: the same path from there, the outbox sink on the account's export patterns, its
// queue, its link.
//
// Proves, across a hub outage (SIGKILL, restart): each account's messages arrive only in
// its own hub account's stream, exactly once and in order; $G's message ids keep the form
// from before accounts (`gw1-<row>`), the tenant's carry the account (`gw1.tenant.<row>`);
// each account's queue and link show in /status. And reconciliation is the account's own:
// rows of the tenant the stream stored without the gateway hearing (PubAcks dropped by a
// proxy), older than the stream's duplicate window after an outage, are dropped by the
// tenant's link from the tenant's queue, proven by the tenant's message id form. And a
// flood over the tenant's own buffer limit evicts only the tenant's oldest rows.
import { jetstreamManager, type StreamConfig } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { describe, expect } from "vitest";
import type { Envelope } from "../../src/core/index.js";
import type { Gateway } from "../../src/gateway.js";
import type { GatewayConfigInput } from "../helpers/config.js";
import { it } from "../helpers/fixtures.js";
import { mosquittoPubLines } from "../helpers/mqtt.js";
import { cheapPasswordHash } from "../helpers/mqtt-sequence.js";
import { PubAckFilter } from "../helpers/nats-ack-filter.js";
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

/** Publishes `payloads` on `subject` in `account`'s bus, through the gateway's test seam. */
async function publishIn(
  gateway: Gateway,
  account: string,
  subject: string,
  payloads: readonly string[],
): Promise<void> {
  const bus = gateway.accountBus(account)!;
  await Promise.all(
    payloads.map((p) => {
      const m: Envelope = {
        subject,
        payload: Buffer.from(p),
        receivedAtMs: Date.now(),
        origin: "nats",
        qos: 1,
      };
      return bus.publish(m);
    }),
  );
}

/**
 * $G forwarding as `g` into EDGE_G, account `tenant` as `t` into EDGE_T (on `tenantServer`,
 * by default the same hub: an account without servers takes the top level's).
 */
function twoAccounts(
  hubUrl: string,
  opts: { tenantServer?: string; ackTimeout?: string; tenantMaxMessages?: number } = {},
): GatewayConfigInput {
  const tenant = { user: "t", password: T_PASSWORD, stream: "EDGE_T" };
  return {
    upstream: {
      servers: [hubUrl],
      user: "g",
      password: G_PASSWORD,
      stream: "EDGE_G",
      reconnect_delay_max: "200ms",
      ...(opts.ackTimeout === undefined ? {} : { ack_timeout: opts.ackTimeout }),
    },
    accounts: {
      tenant: {
        upstream:
          opts.tenantServer === undefined ? tenant : { ...tenant, servers: [opts.tenantServer] },
        ...(opts.tenantMaxMessages === undefined
          ? {}
          : { buffer: { max_messages: opts.tenantMaxMessages } }),
      },
    },
  };
}

const AS_G = { user: "g", pass: G_PASSWORD };
const AS_T = { user: "t", pass: T_PASSWORD };

/**
 * A client in each hub account (closed after the test) and, with `streams`, each account's
 * stream capturing everything this gateway could send it (`edge.gw1.>`).
 */
async function hubClients(
  url: string,
  defer: (cleanup: () => unknown) => void,
  streams?: { tenant?: Partial<StreamConfig> },
): Promise<{ ncG: NatsConnection; ncT: NatsConnection }> {
  const ncG = await connectClient(url, AS_G);
  const ncT = await connectClient(url, AS_T);
  defer(() => Promise.all([ncG.close(), ncT.close()]));
  if (streams !== undefined) {
    await createStream(ncG, "EDGE_G", ["edge.gw1.>"]);
    await createStream(ncT, "EDGE_T", ["edge.gw1.>"], streams.tenant);
  }
  return { ncG, ncT };
}

const lines = (tag: string, from: number, n: number): string[] =>
  Array.from({ length: n }, (_, i) => `${tag}-${String(from + i).padStart(3, "0")}`);

describe("accounts: one hub link per account", () => {
  it("forwards each account into its own hub account and stream, exactly once, in order, across a hub outage", async ({
    startHub,
    gateway,
    defer,
  }) => {
    const hub = await startHub({ config: HUB_CONFIG });
    const { ncG, ncT } = await hubClients(hub.url, defer, {});

    const config = twoAccounts(hub.url);
    const gw = await gateway.start({
      ...config,
      // Anonymous MQTT clients ($G) beside the tenant's user.
      mqtt: { allow_anonymous: true },
      accounts: {
        tenant: {
          ...config.accounts!.tenant,
          users: [{ user: "tenant-pub", password: cheapPasswordHash("tenant-pw") }],
        },
      },
    });
    const g = gw.gateway;
    const accountState = (name: string) => g.status().accounts[name]!;
    const forwarding = () =>
      ["$G", "tenant"].every((a) => accountState(a).upstream.state === "forwarding");
    await waitFor(forwarding, { message: () => JSON.stringify(g.status().accounts) });

    const publishTenant = (payloads: readonly string[]) =>
      mosquittoPubLines(gw.mqttPort, "t/x", payloads, {
        extraArgs: ["-u", "tenant-pub", "-P", "tenant-pw"],
      });
    const count = async (nc: NatsConnection, stream: string) =>
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
    const { ncG: ncG2, ncT: ncT2 } = await hubClients(hub.url, defer);
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

describe("accounts: reconciling is per account", () => {
  it.override({ hubOptions: { config: HUB_CONFIG } });

  it("drops the tenant's rows its own stream proves stored beyond the window, and nothing of $G", async ({
    hub,
    hubProxy,
    gateway,
    defer,
  }) => {
    const WINDOW_MS = 1_000;
    const SENT = ["m1", "m2", "m3", "m4", "m5", "m6"];
    const STORED = 4;
    const { ncG, ncT } = await hubClients(hub.url, defer, {
      tenant: { duplicate_window: WINDOW_MS * 1_000_000 },
    });
    // The tenant's link goes through a proxy that drops its PubAcks and passes only its
    // first STORED publishes; $G's goes straight to the hub.
    const filter = new PubAckFilter((subject) => subject.startsWith("edge.gw1.tenant."));
    filter.acks = "drop";
    filter.publishLimit = STORED;
    const proxy = await hubProxy({ filter: filter.link });
    // No resend on an ack timeout: the outage alone is the fault.
    const gw = await gateway.start(
      twoAccounts(hub.url, { tenantServer: proxy.url, ackTimeout: "10m" }),
    );
    const g = gw.gateway;
    const metric = (name: string, labels?: Record<string, string>): number =>
      g.metrics.value(name, labels);
    const TENANT = { account: "tenant" };
    await waitFor(() => metric("leafgate_upstream_connected", TENANT) === 1);
    await waitFor(() => g.status().upstream?.state === "forwarding");
    await publishIn(g, "tenant", "t", SENT);
    await mosquittoPubLines(gw.mqttPort, "g", ["g1", "g2"]);
    await waitFor(
      () =>
        filter.publishesForwarded + filter.publishesDropped === SENT.length &&
        filter.acksDropped === STORED,
    );
    await waitFor(() => g.status().outbox.pending === 0);

    proxy.cut();
    await waitFor(() => metric("leafgate_upstream_connected", TENANT) === 0);
    const jsm = await jetstreamManager(ncT);
    const last = await jsm.streams.getMessage("EDGE_T", { last_by_subj: "edge.gw1.tenant.>" });
    await waitFor(() => Date.now() > last!.time.getTime() + WINDOW_MS, {
      timeoutMs: WINDOW_MS * 10,
    });
    filter.acks = "pass";
    filter.publishLimit = Number.POSITIVE_INFINITY;
    proxy.restore();
    await waitFor(() => g.status().accounts.tenant!.outbox.pending === 0, { timeoutMs: 20_000 });

    const inT = await streamMessages(ncT, "EDGE_T");
    expect(inT.map((m) => [m.subject, decoder.decode(m.data)])).toEqual(
      SENT.map((p) => ["edge.gw1.tenant.t", p]),
    );
    for (const m of inT) expect(m.headers["Nats-Msg-Id"]![0]).toMatch(/^gw1\.tenant\.\d+$/);
    const inG = await streamMessages(ncG, "EDGE_G");
    expect(inG.map((m) => [m.subject, decoder.decode(m.data)])).toEqual([
      ["edge.gw1.g", "g1"],
      ["edge.gw1.g", "g2"],
    ]);
    expect(metric("leafgate_upstream_reconciled_total", TENANT)).toBe(STORED);
    expect(metric("leafgate_upstream_reconciled_total")).toBe(0);
    expect(metric("leafgate_upstream_resent_total", TENANT)).toBe(SENT.length - STORED);
    expect(metric("leafgate_upstream_forwarded_total", TENANT)).toBe(SENT.length - STORED);
    expect(metric("leafgate_upstream_forwarded_total")).toBe(2);
    expect(metric("leafgate_upstream_duplicates_total", TENANT)).toBe(0);
    expect(filter.errors).toEqual([]);
  });
});

describe("accounts: buffer limits are per account", () => {
  it.override({ hubOptions: { config: HUB_CONFIG } });

  it("a flood in the tenant evicts only the tenant's oldest rows; $G forwards everything", async ({
    hub,
    gateway,
    defer,
  }) => {
    const { ncG, ncT } = await hubClients(hub.url, defer, {});
    const gw = await gateway.start(twoAccounts(hub.url, { tenantMaxMessages: 10 }));
    const g = gw.gateway;
    // One commit of 50 against the tenant's 10: the 40 oldest go in the same transaction
    // (1% headroom of 10 is 0), before any forwarder can read them.
    const flood = lines("t", 0, 50);
    const gSent = lines("g", 0, 30);
    await Promise.all([
      publishIn(g, "tenant", "t", flood),
      mosquittoPubLines(gw.mqttPort, "g", gSent),
    ]);
    await waitFor(
      async () =>
        (await streamInfo(ncT, "EDGE_T")).state.messages === 10 &&
        (await streamInfo(ncG, "EDGE_G")).state.messages === 30,
      { timeoutMs: 20_000 },
    );
    await waitFor(() => g.status().accounts.tenant!.outbox.pending === 0);
    const payloads = async (nc: NatsConnection, stream: string) =>
      (await streamMessages(nc, stream)).map((m) => decoder.decode(m.data));
    expect(await payloads(ncT, "EDGE_T")).toEqual(flood.slice(40));
    expect(await payloads(ncG, "EDGE_G")).toEqual(gSent);
    const dropped = (labels: Record<string, string>) =>
      g.metrics.value("leafgate_buffer_dropped_total", labels);
    expect(dropped({ class: "default", reason: "evicted", account: "tenant" })).toBe(40);
    expect(dropped({ class: "default", reason: "evicted" })).toBe(0);

    // /metrics: $G's series as before accounts, the tenant's with its label.
    const http = g.addresses().http!;
    const exposition = await (await fetch(`http://127.0.0.1:${http.port}/metrics`)).text();
    const series = exposition.split("\n");
    expect(series).toContain("leafgate_outbox_pending 0");
    expect(series).toContain('leafgate_outbox_pending{account="tenant"} 0');
    expect(series).toContain(
      'leafgate_buffer_dropped_total{account="tenant",class="default",reason="evicted"} 40',
    );
    expect(series).toContain('leafgate_upstream_forwarded_total{account="tenant"} 10');
    expect(series).toContain("leafgate_upstream_forwarded_total 30");
    // /status: every account's queue and link, $G first.
    const status = (await (await fetch(`http://127.0.0.1:${http.port}/status`)).json()) as {
      accounts: Record<string, { outbox: { pending: number }; upstream: { state: string } }>;
    };
    expect(Object.keys(status.accounts)).toEqual(["$G", "tenant"]);
    for (const a of Object.values(status.accounts)) {
      expect(a.outbox.pending).toBe(0);
      expect(a.upstream.state).toBe("forwarding");
    }
  });
});

describe("accounts: imports from the hub are per account", () => {
  it("a command from the tenant's hub account reaches only the tenant's clients", async ({
    startHub,
    gateway,
    defer,
  }) => {
    const hub = await startHub({ config: HUB_CONFIG });
    const { ncG, ncT } = await hubClients(hub.url, defer, {});
    const config = twoAccounts(hub.url);
    const password = cheapPasswordHash("pw");
    const gw = await gateway.start({
      ...config,
      // $G imports cmd.gw1.> (the default) from HUB_G; the tenant imports the same subjects
      // from its own hub account.
      authorization: { users: [{ user: "g-app", password }] },
      accounts: {
        tenant: {
          ...config.accounts!.tenant,
          upstream: {
            ...config.accounts!.tenant!.upstream,
            import: [{ subject: "cmd.{gateway}.>" }],
          },
          users: [{ user: "t-app", password }],
        },
      },
    });
    const g = gw.gateway;
    await waitFor(
      () => ["$G", "tenant"].every((a) => g.status().accounts[a]!.upstream.state === "forwarding"),
      { message: () => JSON.stringify(g.status().accounts) },
    );
    const listen = async (user: string) => {
      const nc = await connect({
        servers: `127.0.0.1:${gw.natsPort}`,
        user,
        pass: "pw",
        reconnect: false,
      });
      defer(() => nc.close());
      const got: string[] = [];
      nc.subscribe("cmd.>", { callback: (_e, m) => void got.push(`${m.subject}=${m.string()}`) });
      await nc.flush();
      return got;
    };
    const [inG, inT] = [await listen("g-app"), await listen("t-app")];
    // Each account's import subscription on its hub link is up once a publish comes through.
    await waitFor(
      async () => {
        ncT.publish("cmd.gw1.valve", "tenant-1");
        await ncT.flush();
        return inT.length > 0;
      },
      { timeoutMs: 15_000 },
    );
    await waitFor(
      async () => {
        ncG.publish("cmd.gw1.valve", "global-1");
        await ncG.flush();
        return inG.length > 0;
      },
      { timeoutMs: 15_000 },
    );
    ncT.publish("cmd.gw1.valve", "tenant-2");
    ncG.publish("cmd.gw1.valve", "global-2");
    await Promise.all([ncT.flush(), ncG.flush()]);
    // Repeats of the probes above may still be on their way: wait for the last of each.
    await waitFor(
      () => inT.at(-1) === "cmd.gw1.valve=tenant-2" && inG.at(-1) === "cmd.gw1.valve=global-2",
      { message: () => JSON.stringify({ inT, inG }) },
    );
    expect(inT.every((m) => m.startsWith("cmd.gw1.valve=tenant-"))).toBe(true);
    expect(inG.every((m) => m.startsWith("cmd.gw1.valve=global-"))).toBe(true);
    expect(inT.at(-1)).toBe("cmd.gw1.valve=tenant-2");
    expect(inG.at(-1)).toBe("cmd.gw1.valve=global-2");
  });
});
