// Requests from the hub into the edge (docs/upstream.md, "Imports"), on the hub link
// itself: a real nats-server, nats.js requesters on it, and the gateway's Upstream with a
// bus and the Replies table, answered by a responder on the bus (where an MQTT, NATS or
// serial responder's answer lands). The answer goes back on the link that is up when it
// comes; with none it is dropped and counted.
import { connect, createInbox, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { describe, expect } from "vitest";
import { type ImportConfig, loadConfig } from "../../src/config/index.js";
import { Bus, type Envelope, Replies, silentLogger } from "../../src/core/index.js";
import { MetricsRegistry } from "../../src/observe/index.js";
import { closeDatabase, ImportCursors, openDatabase } from "../../src/store/index.js";
import { Upstream } from "../../src/upstream/index.js";
import { writeConfig } from "../helpers/config.js";
import { type Defer, it } from "../helpers/fixtures.js";
import { testOutbox } from "../helpers/temp-outbox.js";
import { tempDir, waitFor } from "../helpers/wait.js";

const text = new TextDecoder();
const bytes = new TextEncoder();

const entry = (subject: string, local = subject): ImportConfig => ({
  subject,
  local,
  durable: null,
  stream: null,
});

/** The hub link of gateway gw1 with `imports`, on its own bus and store; stopped after the test. */
function hubLink(hubUrl: string, imports: ImportConfig[], defer: Defer, maxRoutes = 100) {
  const dir = tempDir("hub-requests");
  defer(() => dir.cleanup());
  const db = openDatabase(dir.path, "normal");
  defer(() => closeDatabase(db));
  const metrics = new MetricsRegistry();
  const outbox = testOutbox(db, metrics);
  const bus = new Bus();
  const replies = new Replies({ bus, maxRoutes, ttlMs: 30_000 });
  // The resolved config of a core-mode link to the hub (only the imports matter here).
  const { file, dir: configDir } = writeConfig({
    upstream: { servers: [hubUrl], mode: "core", reconnect_delay_max: "200ms" },
  });
  defer(() => configDir.cleanup());
  const config = loadConfig({ file, env: {}, hostname: "h" }).upstream;
  const upstream = new Upstream({
    config: { ...config, import: imports },
    gatewayId: "gw1",
    outbox,
    bus,
    log: silentLogger,
    metrics,
    replies,
    importCursors: new ImportCursors(db),
    dial: async (options) => {
      const nc = await connect(options);
      links++;
      return nc;
    },
  });
  let links = 0;
  upstream.start(new AbortController().signal);
  defer(async () => {
    await upstream.stop(0);
    replies.close();
    outbox.close();
  });
  const replied = (result: string) => metrics.value("leafgate_upstream_replies_total", { result });
  const connected = () => metrics.value("leafgate_upstream_connected") === 1;
  /** Connections made to the hub so far. */
  const connections = () => links;
  return { bus, replies, metrics, replied, connected, connections };
}

/** An answer on the bus to `request`, as a local responder publishes it. */
function answer(bus: Bus, replies: Replies, request: Envelope, payload: string): void {
  const subject = replies.replyTo(request);
  if (subject === undefined) throw new Error(`no reply subject on ${request.subject}`);
  void bus.publish({
    subject,
    payload: bytes.encode(payload),
    headers: new Map([["answered-by", ["bus"]]]),
    receivedAtMs: Date.now(),
    origin: "internal",
    qos: 0,
  });
}

/** A responder that keeps the requests it is given, unanswered until the test says. */
function hold(bus: Bus, subject: string): Envelope[] {
  const held: Envelope[] = [];
  bus.subscribe(subject, {
    deliver: (m) => {
      held.push(m);
      return undefined;
    },
  });
  return held;
}

/** A hub request, sent again until the gateway's subscription is in place on the hub. */
function request(nc: NatsConnection, subject: string, data: string): Promise<Msg> {
  return waitFor(() => nc.request(subject, data, { timeout: 5_000 }), { timeoutMs: 20_000 });
}

/**
 * Waits until the link's import subscription is on the hub: a ping, answered at once by a
 * responder on the bus, is sent until its answer comes back.
 */
async function subscribed(nc: NatsConnection, bus: Bus, replies: Replies): Promise<void> {
  const sub = bus.subscribe("cmd.gw1.ping", {
    deliver: (m) => {
      answer(bus, replies, m, "pong");
      return undefined;
    },
  });
  expect((await request(nc, "cmd.gw1.ping", "ping")).string()).toBe("pong");
  sub.unsubscribe();
}

describe("hub requests", () => {
  it("are answered by a local responder, headers and all, on the hub link", async ({
    hub,
    nc,
    defer,
  }) => {
    const { bus, replies, replied } = hubLink(hub.url, [entry("cmd.gw1.>")], defer);
    const seen: Envelope[] = [];
    bus.subscribe("cmd.gw1.echo", {
      deliver: (m) => {
        seen.push(m);
        answer(bus, replies, m, `echo ${text.decode(m.payload)}`);
        return undefined;
      },
    });
    const reply = await request(nc, "cmd.gw1.echo", "hello");
    expect(reply.string()).toBe("echo hello");
    expect(reply.headers?.get("answered-by")).toBe("bus");
    expect(seen).toHaveLength(1);
    expect(seen[0]!.origin).toBe("upstream");
    expect(seen[0]!.reply?.startsWith(`${replies.prefix}.`)).toBe(true);
    expect(replied("sent")).toBe(1);
    expect(replied("dropped")).toBe(0);
  });

  it("reach a local subject through a local mapping", async ({ hub, nc, defer }) => {
    const { bus, replies } = hubLink(hub.url, [entry("cmd.gw1.devices.>", "devices.>")], defer);
    bus.subscribe("devices.*.cmd.read", {
      deliver: (m) => {
        answer(bus, replies, m, `${m.subject}: ${text.decode(m.payload)}`);
        return undefined;
      },
    });
    const reply = await request(nc, "cmd.gw1.devices.air-1.cmd.read", "pm25");
    expect(reply.string()).toBe("devices.air-1.cmd.read: pm25");
  });

  it("get their answer on the link up when it comes: a new one after the hub restarted, none while it is down", async ({
    hub,
    nc,
    defer,
  }) => {
    const { bus, replies, replied, connected, connections } = hubLink(
      hub.url,
      [entry("cmd.gw1.>")],
      defer,
    );
    const held = hold(bus, "cmd.gw1.slow");
    await subscribed(nc, bus, replies);
    // Held by the responder while the hub restarts; answered on the new link. (A reply
    // subscription of its own: nats.js fails a request() in flight when its link drops,
    // while a subscription is made again on the new one.)
    const inbox = createInbox();
    const answers = nc.subscribe(inbox, { max: 1 });
    nc.publish("cmd.gw1.slow", "a", { reply: inbox });
    await waitFor(() => held.length > 0);
    const firstRequest = held[0]!;
    await hub.restart();
    await waitFor(() => connections() === 2 && connected());
    // The requester's reply subscription is on the new hub too.
    await waitFor(() => nc.flush().then(() => true));
    answer(bus, replies, firstRequest, "after the restart");
    for await (const m of answers) expect(m.string()).toBe("after the restart");
    expect(answers.getReceived()).toBe(1);
    const sent = replied("sent");

    // Held while the hub is down: its answer has no link to go on.
    const before = held.length;
    const lost = nc.request("cmd.gw1.slow", "b", { timeout: 1_000 }).catch(() => "timed out");
    await waitFor(() => held.length > before);
    await hub.kill();
    await waitFor(() => !connected());
    answer(bus, replies, held.at(-1)!, "too late");
    expect(replied("dropped")).toBe(1);
    expect(replied("sent")).toBe(sent);
    await hub.restart();
    await lost;
  });

  it("beyond requests.max_pending are delivered without a reply subject (the requester times out)", async ({
    hub,
    nc,
    defer,
  }) => {
    const { bus, replies } = hubLink(hub.url, [entry("cmd.gw1.>")], defer, 1);
    const held = hold(bus, "cmd.gw1.hold");
    await subscribed(nc, bus, replies);
    // The first holds the one route; the second finds the table full.
    const first = nc.request("cmd.gw1.hold", "first", { timeout: 1_000 }).catch(() => {});
    await waitFor(() => held.length > 0);
    const second = nc.request("cmd.gw1.hold", "second", { timeout: 1_000 }).catch(() => {});
    await waitFor(() => held.some((m) => text.decode(m.payload) === "second"));
    await Promise.all([first, second]);
    expect(held.map((m) => text.decode(m.payload))).toEqual(["first", "second"]);
    expect(held[0]!.reply).toBeDefined();
    expect(held.at(-1)!.reply).toBeUndefined();
  });
});
