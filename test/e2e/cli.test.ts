// The shipped bundle as users run it: `node dist/leafgate.mjs ...` as a child process.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import Database from "better-sqlite3";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { writeConfig, writeConfigAt } from "../helpers/config.js";
import { createEdgeStream } from "../helpers/fixtures.js";
import { BUNDLE, childEnv, startGatewayProcess } from "../helpers/gateway.js";
import { mosquittoPubLines } from "../helpers/mqtt.js";
import {
  closeClients,
  connectClient,
  type NatsServer,
  startNatsServer,
  streamInfo,
  streamMessages,
} from "../helpers/nats-server.js";
import { runToCompletion, stopAll, stopProcess, waitForLine } from "../helpers/procs.js";
import { type TempDir, tempDir, waitFor } from "../helpers/wait.js";

const node = process.execPath;
const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8"));
const sqlite = new Database(":memory:").prepare("select sqlite_version()").pluck().get();
const dirs: TempDir[] = [];

afterEach(async () => {
  await stopAll();
  for (const d of dirs.splice(0)) await d.cleanup();
});

function leafgate(args: string[], env: NodeJS.ProcessEnv = {}) {
  return runToCompletion(node, [BUNDLE, ...args], {
    env: childEnv(env),
    timeoutMs: 15_000,
  });
}

/** The `msg` of every JSON log line printed so far. */
const logMessages = (stdout: string): string[] =>
  stdout
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => (JSON.parse(l) as { msg: string }).msg);

describe("leafgate CLI", () => {
  it("prints its version, Node's, SQLite's from the loaded addon, and the platform", async () => {
    const r = await leafgate(["version"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      `leafgate ${pkg.version} (node ${process.version}, sqlite ${sqlite}, linux-${process.arch})\n`,
    );
  });

  it("prints help for each command", async () => {
    for (const command of ["run", "check", "version"]) {
      const r = await leafgate([command, "--help"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`Usage: leafgate ${command}`);
    }
    const unknown = await leafgate(["frobnicate"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
  });

  it("check prints the effective config with secrets masked", async () => {
    const dir = tempDir("cli");
    dirs.push(dir);
    const file = join(dir.path, "leafgate.yaml");
    writeConfigAt(
      file,
      { gateway: { id: "gw-7" }, upstream: { user: "edge", password: "hunter2" } },
      { testDefaults: false },
    );
    const r = await leafgate(["check", "-c", file], {
      LEAFGATE_UPSTREAM_SERVERS: "nats://hub-1:4222,nats://hub-2:4222",
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("id: gw-7");
    expect(r.stdout).toContain("nats://hub-2:4222");
    expect(r.stdout).toContain("prefix: edge.gw-7");
    expect(r.stdout).not.toContain("hunter2");
    expect(r.stdout).toContain('password: "***"');
  });

  it("rejects a bad config with exit 2, every problem named, and no stack trace", async () => {
    const dir = tempDir("cli");
    dirs.push(dir);
    const file = join(dir.path, "bad.yaml");
    writeFileSync(file, "mqtt:\n  listners: []\nupstream:\n  servers: [ localhost ]\n  mode: js\n");
    for (const command of ["check", "run"]) {
      const r = await leafgate([command, "-c", file]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('mqtt.listners: unknown key (did you mean "listeners"?)');
      expect(r.stderr).toContain('upstream.servers[0]: expected nats://host:port, got "localhost"');
      expect(r.stderr).toContain('upstream.mode: expected one of jetstream, core, got "js"');
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    const missing = await leafgate(["run", "-c", join(dir.path, "nope.yaml")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("nope.yaml");
  });
});

describe("device profiles", () => {
  it("check names the profile file, the field path and what is wrong, and exits 2", async () => {
    const dir = tempDir("cli");
    dirs.push(dir);
    const profile = join(dir.path, "thermo.yaml");
    writeFileSync(
      profile,
      "name: thermo\nserial: { baud_rate: 1234 }\nframing: { type: lines }\ndecoder: { type: json_lines }\nfields:\n  - { name: t, type: double }\n",
    );
    const file = join(dir.path, "leafgate.yaml");
    writeConfigAt(
      file,
      { serial: { ports: [{ path: "/dev/ttyUSB9", profile, device: "thermo-1" }] } },
      { testDefaults: false },
    );
    const r = await leafgate(["check", "-c", file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`invalid device profile ${profile}`);
    expect(r.stderr).toContain("serial.baud_rate: expected one of 1200,");
    expect(r.stderr).toContain(
      'framing.type: expected one of line, fixed, length_prefixed, header, slip, idle, got "lines"',
    );
    expect(r.stderr).toContain(
      'fields[0].type: expected one of int, float, bool, string, got "double"',
    );
    expect(r.stderr).not.toMatch(/\n\s+at /);

    const missing = join(dir.path, "missing.yaml");
    writeConfigAt(
      missing,
      { serial: { ports: [{ path: "/dev/ttyUSB9", profile: "nope", device: "d" }] } },
      { testDefaults: false },
    );
    const r2 = await leafgate(["check", "-c", missing]);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toContain('no profile named "nope"');
  });

  it("check accepts the shipped profiles", async () => {
    const dir = tempDir("cli");
    dirs.push(dir);
    const file = join(dir.path, "leafgate.yaml");
    writeConfigAt(
      file,
      {
        serial: {
          ports: [
            { path: "/dev/ttyUSB0", profile: "pms5003", device: "air-1" },
            { path: "/dev/ttyUSB1", profile: "env-sensor", device: "env-1", baud_rate: 9600 },
          ],
        },
      },
      { testDefaults: false },
    );
    const r = await leafgate(["check", "-c", file]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("profile: pms5003");
  });
});

describe("leafgate run", () => {
  let hub: NatsServer;
  let nc: NatsConnection;

  beforeAll(async () => {
    hub = await startNatsServer();
    nc = await connectClient(hub.url);
    await createEdgeStream(nc);
  });

  afterAll(async () => {
    await closeClients();
    await hub.stop();
  });

  it("says what is where, forwards, and stops cleanly on SIGTERM", async () => {
    const { dir, file } = writeConfig({
      gateway: { id: "cli-gw" },
      upstream: { servers: [hub.url] },
    });
    dirs.push(dir);
    const gw = await startGatewayProcess(file);
    const ready = JSON.parse(await waitForLine(gw.proc, (l) => l.includes('"msg":"ready"'))) as {
      startupMs: unknown;
    };
    expect(typeof ready.startupMs).toBe("number");
    // One line each, in start order, ending with "ready" (hub lines may come in between).
    const startup = [
      "leafgate starting",
      "data dir open",
      "hub",
      "mqtt listening",
      "http monitoring listening",
      "ready",
    ];
    expect(logMessages(gw.proc.stdout()).filter((m) => startup.includes(m))).toEqual(startup);

    const health = await fetch(`http://127.0.0.1:${gw.httpPort}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ healthy: true, gateway: "cli-gw" });

    const sent = Array.from({ length: 1000 }, (_, i) => `reading ${i}`);
    await mosquittoPubLines(gw.mqttPort, "plant/boiler/pressure", sent);
    await waitFor(async () => (await streamInfo(nc, "EDGE")).state.messages === 1000);

    const metrics = await (await fetch(`http://127.0.0.1:${gw.httpPort}/metrics`)).text();
    expect(metrics).toMatch(/^leafgate_outbox_appended_total 1000$/m);
    expect(metrics).toMatch(/^leafgate_mqtt_messages_received_total\{qos="1"\} 1000$/m);

    const started = Date.now();
    const exit = await stopProcess(gw.proc, { signal: "SIGTERM", graceMs: 5_000 });
    expect(exit).toEqual({ code: 0, signal: null });
    expect(Date.now() - started).toBeLessThan(5_000);
    // Everything was forwarded before the stop: nothing pending.
    const stopped = gw.proc
      .stdout()
      .split("\n")
      .filter((l) => l.includes('"msg":"stopped"'));
    expect(stopped.map((l) => (JSON.parse(l) as { pending: unknown }).pending)).toEqual([0]);

    // A restart on the same data dir sends nothing again: every row was acknowledged.
    const again = await startGatewayProcess(file);
    await waitFor(() => again.proc.stdout().includes('"msg":"hub stream found"'));
    const status = (await (await fetch(`http://127.0.0.1:${again.httpPort}/status`)).json()) as {
      outbox: { pending: number; lastId: number };
    };
    expect(status.outbox).toMatchObject({ pending: 0, lastId: 1000 });
    // New rows continue the id sequence and are forwarded after the restart.
    await mosquittoPubLines(again.mqttPort, "plant/boiler/pressure", ["after restart"]);
    await waitFor(async () => (await streamInfo(nc, "EDGE")).state.messages === 1001);
    await stopProcess(again.proc);
    const messages = await streamMessages(nc, "EDGE");
    expect(messages.map((m) => new TextDecoder().decode(m.data))).toEqual([
      ...sent,
      "after restart",
    ]);
    expect(messages.at(-1)!.headers["Nats-Msg-Id"]).toEqual(["cli-gw-1001"]);
  });

  it("starts without a hub, keeps what it accepted across a restart, and stops within 5 s", async () => {
    const { dir, file } = writeConfig({ gateway: { id: "offline-gw" } }); // hub: a closed port
    dirs.push(dir);
    const gw = await startGatewayProcess(file);
    await mosquittoPubLines(gw.mqttPort, "t", ["a", "b", "c"]);
    const started = Date.now();
    expect(await stopProcess(gw.proc, { signal: "SIGINT" })).toEqual({ code: 0, signal: null });
    expect(Date.now() - started).toBeLessThan(5_000);

    const again = await startGatewayProcess(file);
    const status = (await (await fetch(`http://127.0.0.1:${again.httpPort}/status`)).json()) as {
      outbox: unknown;
      upstream: { state: string };
    };
    // (The class also carries its limits and oldest message: docs/status.md.)
    expect(status.outbox).toMatchObject({
      pending: 3,
      lastId: 3,
      classes: [{ name: "default", messages: 3, bytes: 6, onFull: "drop_oldest" }],
    });
    expect(status.upstream.state).toBe("connecting");
  });

  it("refuses a second gateway on the same data dir", async () => {
    const { dir, file } = writeConfig({ gateway: { id: "locked-gw" } });
    dirs.push(dir);
    await startGatewayProcess(file);
    const second = await leafgate(["run", "-c", file]);
    expect(second.code).toBe(1);
    expect(second.stdout).toContain("in use by another process");
  });
});
