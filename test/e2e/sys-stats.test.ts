// $SYS-style stats on the bus (docs/sys.md), through the bundle: what mosquitto_sub and a
// nats.js client see of `$SYS.leafgate.gw1.*`, what a `#` subscriber and a user without the
// permission do not see, and what the outbox stores under the default and an explicit export.
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { describe, expect } from "vitest";
import { hashPassword } from "../../src/mqtt/index.js";
import { it } from "../helpers/fixtures.js";
import { gatewayStatus } from "../helpers/gateway-http.js";
import { connectClient, streamMessages } from "../helpers/nats-server.js";
import {
  runToCompletion,
  spawnTracked,
  type TrackedProcess,
  waitForLine,
} from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";

const decoder = new TextDecoder();
/** One round, in publication order. */
const NAMES = [
  "uptime",
  "clients/mqtt",
  "clients/nats",
  "outbox/pending",
  "outbox/bytes",
  "uplink/state",
  "messages/stored",
  "messages/forwarded",
  "messages/dropped",
  "stats",
];
const TOPICS = NAMES.map((n) => `$SYS/leafgate/gw1/${n}`);
const SUBJECTS = TOPICS.map((t) => t.replaceAll("/", "."));
const SYS = { interval: "200ms" };

/** mosquitto_sub on `topics`, resolved once its SUBACK arrived; prints `MSG|topic|payload`. */
async function mosquittoSub(
  port: number,
  topics: string[],
  args: string[] = [],
): Promise<TrackedProcess> {
  const proc = await spawnTracked("stdbuf", [
    ...["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", String(port), "-V", "mqttv311", "-d"],
    ...["-F", "MSG|%t|%p", ...topics.flatMap((t) => ["-t", t]), ...args],
  ]);
  await waitForLine(proc, (l) => l.includes("received SUBACK"));
  return proc;
}

/** The [topic, payload] pairs printed so far. */
function printed(proc: TrackedProcess): string[][] {
  return [...proc.stdout().matchAll(/^MSG\|([^|\n]*)\|(.*)$/gm)].map((m) => [m[1]!, m[2]!]);
}

/** Collects what a NATS subscription receives, as [subject, payload]. */
function collect(sub: Subscription): [string, string][] {
  const got: [string, string][] = [];
  void (async () => {
    for await (const m of sub) got.push([m.subject, decoder.decode(m.data)]);
  })();
  return got;
}

/** The first whole round in `got` (from the first `uptime` on), if one is there. */
function firstRound<T extends [string, string] | string[]>(got: T[], first: string): T[] {
  const at = got.findIndex((m) => m[0] === first);
  return at < 0 ? [] : got.slice(at, at + NAMES.length);
}

describe("$SYS.leafgate stats", () => {
  it("reach $SYS/# and NATS $SYS.leafgate.> subscribers, never # nor the outbox by default", async ({
    gateway,
  }) => {
    const gw = await gateway.spawn({ sys: SYS });
    const all = await mosquittoSub(gw.mqttPort, ["#"]);
    const sys = await mosquittoSub(gw.mqttPort, ["$SYS/#"], ["-C", "20"]);
    const nc: NatsConnection = await connectClient(`nats://127.0.0.1:${gw.natsPort}`);
    const natsSys = collect(nc.subscribe("$SYS.leafgate.>"));
    const natsAll = collect(nc.subscribe(">"));
    await nc.flush();

    await waitFor(() => sys.exitInfo, { message: () => `no $SYS round\n${sys.describe()}` });
    const round = firstRound(printed(sys), TOPICS[0]!);
    expect(round.map((m) => m[0])).toEqual(TOPICS);
    const value = (name: string) => round[NAMES.indexOf(name)]![1]!;
    // Both mosquitto_subs were connected (the other may just have left: -C ends it).
    expect(value("clients/mqtt")).toBe("2");
    expect(Number(value("uptime"))).toBeGreaterThanOrEqual(0);
    expect(value("outbox/pending")).toBe("0");
    expect(value("outbox/bytes")).toBe("0");
    expect(value("messages/stored")).toBe("0");
    expect(value("uplink/state")).toBe("connecting");
    expect(JSON.parse(value("stats"))).toMatchObject({
      clients: { mqtt: 2 },
      outbox: { pending: 0, bytes: 0 },
      uplink: "connecting",
      messages: { stored: 0, forwarded: 0, dropped: 0 },
    });

    // NATS: `$SYS.leafgate.>` gets whole rounds, and so does `>` (NATS wildcards match `$`
    // tokens, as in nats-server within one account).
    await waitFor(() => firstRound(natsSys, SUBJECTS[0]!).length === NAMES.length);
    const natsRound = firstRound(natsSys, SUBJECTS[0]!);
    expect(natsRound.map(([s]) => s)).toEqual(SUBJECTS);
    expect(natsRound[2]![1]).toBe("1");
    await waitFor(() => firstRound(natsAll, SUBJECTS[0]!).length === NAMES.length);
    expect(firstRound(natsAll, SUBJECTS[0]!).map(([s]) => s)).toEqual(SUBJECTS);

    // Several rounds later: `#` saw none of them [MQTT-4.7.2-1], only the marker after them,
    // and the default export `>` stored none.
    await waitFor(() => natsSys.length >= 5 * NAMES.length);
    const marker = await runToCompletion("mosquitto_pub", [
      ...["-h", "127.0.0.1", "-p", String(gw.mqttPort), "-t", "m/x", "-m", "fence"],
    ]);
    expect(marker.code, marker.stderr).toBe(0);
    await waitFor(() => printed(all).length > 0, { message: () => all.describe() });
    expect(printed(all)).toEqual([["m/x", "fence"]]);
    const status = await gatewayStatus(gw);
    // The marker is the outbox's only row ever.
    expect(status.outbox).toMatchObject({ pending: 1, lastId: 1 });
  });

  it("are not delivered to a user whose subscribe permissions do not cover them", async ({
    gateway,
  }) => {
    const user = async (name: string, subscribe: string[]) => ({
      user: name,
      password: await hashPassword(`${name}-secret-1`),
      permissions: { subscribe: { allow: subscribe } },
    });
    const gw = await gateway.spawn({
      sys: SYS,
      mqtt: { allow_anonymous: false },
      authorization: {
        users: [await user("ops", [">", "$SYS.>"]), await user("dev", ["sensors.>"])],
      },
    });
    const creds = (u: string) => ["-u", u, "-P", `${u}-secret-1`];
    const dev = await mosquittoSub(gw.mqttPort, ["$SYS/#", "sensors/#"], creds("dev"));
    const ops = await mosquittoSub(gw.mqttPort, ["$SYS/#"], creds("ops"));
    await waitFor(() => printed(ops).length >= 2 * NAMES.length, { message: () => ops.describe() });
    const fence = await runToCompletion("mosquitto_pub", [
      ...["-h", "127.0.0.1", "-p", String(gw.mqttPort), ...creds("dev")],
      ...["-t", "sensors/t", "-m", "fence"],
    ]);
    expect(fence.code, fence.stderr).toBe(0);
    await waitFor(() => printed(dev).length > 0, { message: () => dev.describe() });
    expect(printed(dev)).toEqual([["sensors/t", "fence"]]);
  });

  it("give each account its own figures on its own bus", async ({ gateway }) => {
    const gw = await gateway.start({
      sys: SYS,
      nats: { allow_anonymous: true },
      accounts: {
        t1: { users: [{ user: "t1-user", password: await hashPassword("t1-secret-1") }] },
      },
    });
    const url = `nats://127.0.0.1:${gw.natsPort}`;
    const tenant = await connectClient(url, { user: "t1-user", pass: "t1-secret-1" });
    const other = await connectClient(url, { user: "t1-user", pass: "t1-secret-1" });
    const global = await connectClient(url);
    other.publish("sensors.t", "one");
    await other.flush();
    const stats = (nc: NatsConnection) => collect(nc.subscribe(SUBJECTS.at(-1)!));
    const [inTenant, inGlobal] = [stats(tenant), stats(global)];
    await Promise.all([tenant.flush(), global.flush()]);
    await waitFor(() => inTenant.length > 0 && inGlobal.length > 0);
    // Tenant: two NATS clients and its one stored message; $G: one client, nothing stored.
    expect(JSON.parse(inTenant[0]![1])).toMatchObject({
      clients: { mqtt: 0, nats: 2 },
      outbox: { pending: 1 },
      messages: { stored: 1 },
    });
    expect(JSON.parse(inGlobal[0]![1])).toMatchObject({
      clients: { mqtt: 0, nats: 1 },
      outbox: { pending: 0 },
      messages: { stored: 0 },
    });
  });

  it("are stored and forwarded to the hub under an export naming $SYS.leafgate.>", async ({
    gateway,
    hub,
    nc,
    stream,
  }) => {
    await gateway.spawn({
      sys: SYS,
      upstream: { servers: [hub.url], stream, export: [">", "$SYS.leafgate.>"] },
    });
    const hubSubjects = SUBJECTS.map((s) => `edge.gw1.${s}`);
    const uplink = hubSubjects[NAMES.indexOf("uplink/state")];
    // Until a round stored while the link was up has arrived (the first may predate it).
    const messages = await waitFor(
      async () => {
        const got = await streamMessages(nc, stream);
        const up = got.some((m) => m.subject === uplink && decoder.decode(m.data) === "forwarding");
        return up ? got : undefined;
      },
      { timeoutMs: 20_000, message: () => "no round stored while forwarding reached the hub" },
    );
    // Whole rounds, in order, from the first on (the last may still be arriving), each once.
    const subjects = messages.map((m) => m.subject);
    const rounds = Math.ceil(subjects.length / NAMES.length);
    const expected = Array.from({ length: rounds }, () => hubSubjects).flat();
    expect(subjects).toEqual(expected.slice(0, subjects.length));
    const ids = messages.map((m) => m.headers["Nats-Msg-Id"]?.[0]);
    expect(new Set(ids).size).toBe(messages.length);
    const stats = messages.find((m) => m.subject === hubSubjects[NAMES.indexOf("stats")]);
    expect(Object.keys(JSON.parse(decoder.decode(stats!.data)))).toEqual([
      "uptime",
      "clients",
      "outbox",
      "uplink",
      "messages",
    ]);
  });
});
