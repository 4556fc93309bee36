// `leafgate hub check` and `leafgate hub create-stream` (docs/hub.md) from the shipped bundle,
// against a real nats-server with JetStream: from a hub without a stream to messages in the
// stream with our tools alone; an unreachable hub; an existing stream never changed.
import { jetstreamManager } from "@nats-io/jetstream";
import { describe, expect } from "vitest";
import { CLOSED_HUB } from "../helpers/config.js";
import { it } from "../helpers/fixtures.js";
import { BUNDLE, childEnv } from "../helpers/gateway.js";
import { mosquittoPubLines } from "../helpers/mqtt.js";
import { createStream, streamInfo, streamMessages } from "../helpers/nats-server.js";
import { runToCompletion } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";

/** A command of `hub` must end within this (the connect timeout is 5 s). */
const COMMAND_DEADLINE_MS = 15_000;

function leafgate(args: string[]) {
  return runToCompletion(process.execPath, [BUNDLE, ...args], {
    env: childEnv(),
    timeoutMs: COMMAND_DEADLINE_MS,
  });
}

const decoder = new TextDecoder();

describe("leafgate hub", () => {
  it("check finds no stream, create-stream plans then creates it, check passes, a gateway forwards into it", async ({
    hub,
    nc,
    gateway,
  }) => {
    const { file } = gateway.writeConfig({ upstream: { servers: [hub.url] } });
    const jsm = await jetstreamManager(nc);
    const streamNames = async () => {
      const names: string[] = [];
      for await (const s of jsm.streams.list()) names.push(s.config.name);
      return names;
    };

    const missing = await leafgate(["hub", "check", "-c", file]);
    expect(missing.code).toBe(1);
    expect(missing.stdout.split("\n")).toEqual([
      "account $G: prefix edge.gw1, export >",
      `  hub       ${hub.url} reachable (nats-server ${nc.info?.version})`,
      "  jetstream enabled",
      "  fail  no stream captures edge.gw1.>",
      `        fix: leafgate hub create-stream -c ${file} --yes`,
      "",
    ]);

    const plan = [
      `will create on ${hub.url}:`,
      "  stream    EDGE_GW1",
      "  subjects  edge.gw1.>",
      "  storage   file, replicas 1",
      "  duplicate window 2m",
      "  discard   old",
      "  limits    max_msgs unlimited, max_bytes unlimited, max_age unlimited",
    ];
    const planned = await leafgate(["hub", "create-stream", "-c", file]);
    expect(planned.code).toBe(2);
    expect(planned.stdout.split("\n")).toEqual([
      "account $G: prefix edge.gw1",
      ...plan,
      "add --yes to create it",
      "",
    ]);
    expect(await streamNames()).toEqual([]);

    const created = await leafgate(["hub", "create-stream", "-c", file, "--yes"]);
    expect(created.code).toBe(0);
    expect(created.stdout.split("\n")).toEqual([
      "account $G: prefix edge.gw1",
      ...plan,
      `created stream EDGE_GW1; check it with: leafgate hub check -c ${file}`,
      "",
    ]);
    const info = await streamInfo(nc, "EDGE_GW1");
    expect(info.config).toMatchObject({
      subjects: ["edge.gw1.>"],
      storage: "file",
      discard: "old",
      num_replicas: 1,
      duplicate_window: 120_000_000_000,
      max_bytes: -1,
      max_msgs: -1,
      max_age: 0,
    });

    // Once more: it exists and captures the prefix; nothing changes.
    const again = await leafgate(["hub", "create-stream", "-c", file, "--yes"]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(
      `stream EDGE_GW1 already exists on ${hub.url} and captures edge.gw1.>; nothing to do`,
    );

    const checkLines = (messages: string) => [
      "account $G: prefix edge.gw1, export >",
      `  hub       ${hub.url} reachable (nats-server ${nc.info?.version})`,
      "  jetstream enabled",
      "  stream    EDGE_GW1 (found by subject)",
      "  subjects  edge.gw1.>",
      "  storage   file, replicas 1",
      "  duplicate window 2m",
      "  limits    max_msgs unlimited, max_bytes unlimited, max_age unlimited, discard old",
      `  messages  ${messages}`,
      "  ok    captures edge.gw1.>",
      "  ok    duplicate window 2m is longer than upstream.ack_timeout 10s",
      "  ok    discard old",
      "",
    ];
    const good = await leafgate(["hub", "check", "-c", file]);
    expect(good.code).toBe(0);
    expect(good.stdout.split("\n")).toEqual(checkLines("0 (0 B)"));

    // The gateway on the same config forwards into the stream, exactly once, in order.
    const gw = await gateway.spawnFile(file);
    const sent = ["m-1", "m-2", "m-3"];
    await mosquittoPubLines(gw.mqttPort, "sensors/a", sent);
    await waitFor(async () => (await streamInfo(nc, "EDGE_GW1")).state.messages === 3);
    const stored = await streamMessages(nc, "EDGE_GW1");
    expect(stored.map((m) => [m.subject, decoder.decode(m.data)])).toEqual(
      sent.map((s) => ["edge.gw1.sensors.a", s]),
    );
    const after = await leafgate(["hub", "check", "-c", file]);
    expect(after.code).toBe(0);
    expect(after.stdout.split("\n")[8]).toMatch(/^ {2}messages {2}3 \(\d+ B\)$/);
  });

  it("an unreachable hub: exit 3 naming the server and the error, its password masked", async ({
    gateway,
  }) => {
    const server = CLOSED_HUB.replace("nats://", "nats://edge:s3cret-pw@");
    const { file } = gateway.writeConfig({ upstream: { servers: [server] } });
    for (const args of [
      ["hub", "check", "-c", file],
      ["hub", "create-stream", "-c", file, "--yes"],
    ]) {
      const r = await leafgate(args);
      expect(r.code).toBe(3);
      expect(r.stdout).toContain(
        "  hub       unreachable: nats://edge:***@127.0.0.1:1: connection refused\n",
      );
      expect(r.stdout + r.stderr).not.toContain("s3cret-pw");
    }
  });

  it("a blackholed hub (accepts, never answers): exit 3 after the gateway's connect timeout, the next server tried", async ({
    hub,
    hubProxy,
    gateway,
  }) => {
    const silent = await hubProxy();
    silent.blackhole();
    // The silent one first, then the real hub: a server that does not answer costs its
    // connect timeout, then the next is dialed.
    const both = gateway.writeConfig({ upstream: { servers: [silent.url, hub.url] } });
    const reached = await leafgate(["hub", "check", "-c", both.file]);
    expect(reached.code).toBe(1);
    expect(reached.stdout).toContain(`  hub       ${hub.url} reachable`);

    const { file } = gateway.writeConfig({ upstream: { servers: [silent.url] } });
    const r = await leafgate(["hub", "check", "-c", file]);
    expect(r.code).toBe(3);
    expect(r.stdout).toContain(
      `  hub       unreachable: ${silent.url}: timeout (connected, but no answer from a NATS server)\n`,
    );
  });

  it("an existing stream that does not capture the prefix is reported and left unchanged", async ({
    hub,
    nc,
    gateway,
  }) => {
    await createStream(nc, "EDGE_GW1", ["other.>"]);
    const { file } = gateway.writeConfig({ upstream: { servers: [hub.url], stream: "EDGE_GW1" } });

    const r = await leafgate(["hub", "create-stream", "-c", file, "--yes"]);
    expect(r.code).toBe(1);
    expect(r.stdout.split("\n").slice(1, 2)).toEqual([
      `stream EDGE_GW1 already exists on ${hub.url} with subjects other.>: it does not capture edge.gw1.>`,
    ]);
    expect((await streamInfo(nc, "EDGE_GW1")).config.subjects).toEqual(["other.>"]);

    const check = await leafgate(["hub", "check", "-c", file]);
    expect(check.code).toBe(1);
    expect(check.stdout).toContain("  stream    EDGE_GW1 (named in upstream.stream)\n");
    expect(check.stdout).toContain(
      "  fail  does not capture edge.gw1.> (its subjects: other.>)\n" +
        "        fix: add edge.gw1.> to stream EDGE_GW1's subjects, or name a stream that captures it in upstream.stream\n",
    );
  });

  it("another stream capturing overlapping subjects: refused, with the stream named", async ({
    hub,
    nc,
    gateway,
  }) => {
    await createStream(nc, "EDGE", ["edge.>"]);
    const { file } = gateway.writeConfig({ upstream: { servers: [hub.url] } });
    const r = await leafgate(["hub", "create-stream", "-c", file, "--name", "MINE", "--yes"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(
      "the hub refused to create stream MINE: subjects overlap with an existing stream\n" +
        "  a subject is captured by one stream only, and EDGE (edge.>) already captures subjects of edge.gw1.>",
    );
    const names: string[] = [];
    for await (const s of (await jetstreamManager(nc)).streams.list()) names.push(s.config.name);
    expect(names).toEqual(["EDGE"]);
  });

  it("reaches the hub with the gateway's credentials, never printing them; a hub without JetStream is a problem", async ({
    startHub,
    gateway,
  }) => {
    const hub = await startHub({ config: 'authorization { user: edge, password: "s3cret-pw" }' });
    const withPassword = gateway.writeConfig({
      upstream: { servers: [hub.url], user: "edge", password: "s3cret-pw" },
    });
    const ok = await leafgate(["hub", "create-stream", "-c", withPassword.file, "--yes"]);
    expect(ok.code).toBe(0);
    const check = await leafgate(["hub", "check", "-c", withPassword.file]);
    expect(check.code).toBe(0);
    expect(check.stdout).toContain(`  hub       ${hub.url} reachable`);
    expect(check.stdout + check.stderr + ok.stdout + ok.stderr).not.toContain("s3cret-pw");

    const wrong = gateway.writeConfig({
      upstream: { servers: [hub.url], user: "edge", password: "wrong-pw" },
    });
    const refused = await leafgate(["hub", "check", "-c", wrong.file]);
    expect(refused.code).toBe(3);
    expect(refused.stdout).toMatch(
      new RegExp(`^ {2}hub {7}unreachable: ${hub.url}: .*authorization`, "im"),
    );
    expect(refused.stdout).not.toContain("wrong-pw");

    const plain = await startHub({ jetstream: false });
    const noJs = gateway.writeConfig({ upstream: { servers: [plain.url] } });
    const r = await leafgate(["hub", "check", "-c", noJs.file]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^ {2}fail {2}JetStream is not enabled on the hub \(.+\)$/m);
    expect(r.stdout).toContain(
      "        fix: run nats-server with -js (or jetstream {} in its config), or set upstream.mode: core\n",
    );
  });

  it("accounts: check covers each account's prefix; create-stream needs --account and names the stream after it", async ({
    hub,
    nc,
    gateway,
  }) => {
    const { file } = gateway.writeConfig({
      upstream: { servers: [hub.url] },
      accounts: { tenant: { upstream: { prefix: "tenant.gw1" } } },
    });
    const needsAccount = await leafgate(["hub", "create-stream", "-c", file, "--yes"]);
    expect(needsAccount.code).toBe(2);
    expect(needsAccount.stderr.split("\n")[0]).toBe(
      "leafgate: hub: the config has accounts $G, tenant: name one with --account",
    );
    const created = await leafgate([
      "hub",
      "create-stream",
      "-c",
      file,
      "--account",
      "tenant",
      "--yes",
    ]);
    expect(created.code).toBe(0);
    expect((await streamInfo(nc, "EDGE_GW1_TENANT")).config.subjects).toEqual(["tenant.gw1.>"]);

    // $G has no stream yet: the problem is its, with the command for it.
    const check = await leafgate(["hub", "check", "-c", file]);
    expect(check.code).toBe(1);
    const lines = check.stdout.split("\n");
    expect(
      lines.filter(
        (l) => l.startsWith("account ") || /^ {2}(fail|ok) /.test(l) || l.includes("fix:"),
      ),
    ).toEqual([
      "account $G: prefix edge.gw1, export >",
      "  fail  no stream captures edge.gw1.>",
      `        fix: leafgate hub create-stream -c ${file} --account '$G' --yes`,
      "account tenant: prefix tenant.gw1, export >",
      "  ok    captures tenant.gw1.>",
      "  ok    duplicate window 2m is longer than upstream.ack_timeout 10s",
      "  ok    discard old",
    ]);
    const tenantOnly = await leafgate(["hub", "check", "-c", file, "--account", "tenant"]);
    expect(tenantOnly.code).toBe(0);
  });

  it("usage: an unknown subcommand or account, a bad flag, create-stream flags on check: exit 2", async ({
    gateway,
  }) => {
    const { file } = gateway.writeConfig({});
    const cases: [string[], string][] = [
      [["hub"], "leafgate: hub: expected check or create-stream, got nothing"],
      [["hub", "check", "-c", file, "--yes"], "leafgate: hub: --yes is for create-stream only"],
      [
        ["hub", "check", "-c", file, "--account", "nope"],
        "leafgate: --account nope: no such account (accounts: $G)",
      ],
      [
        ["hub", "create-stream", "-c", file, "--replicas", "9"],
        'leafgate: hub: --replicas: expected 1 to 5, got "9"',
      ],
    ];
    for (const [args, first] of cases) {
      const r = await leafgate(args);
      expect(r.code).toBe(2);
      expect(r.stderr.split("\n")[0]).toBe(first);
    }
  });
});
