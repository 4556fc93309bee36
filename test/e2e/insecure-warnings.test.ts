// A warning at start for every insecure choice, each saying what to do, and none for a
// secure config: the bundle's own log lines, exactly, and `leafgate check`'s stderr.
//
// No socket leaves loopback: the non-loopback MQTT and HTTP listeners are on 192.0.2.1
// (TEST-NET-1, RFC 5737: documentation only, never configured here), so binding them
// fails (the warnings come before anything opens), and the non-loopback hub is
// nats://0.0.0.0, which Linux dials as this machine, on a port nothing listens on.
// The secure config runs as an unprivileged user (nobody) when the tests run as root, so
// that "none" means none; the running-as-root warning is expected exactly when the runner
// is root (test/unit/security.test.ts checks its text for any user).
import { chmodSync, chownSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createUser } from "@nats-io/nkeys";
import { afterEach, describe, expect, it } from "vitest";
import { hashPassword } from "../../src/mqtt/index.js";
import { writeConfigAt } from "../helpers/config.js";
import { BUNDLE, childEnv } from "../helpers/gateway.js";
import { closedPort } from "../helpers/net.js";
import {
  runToCompletion,
  spawnTracked,
  stopAll,
  type TrackedProcess,
  waitForLine,
} from "../helpers/procs.js";
import { type TempDir, tempDir } from "../helpers/wait.js";

const ROOT = process.getuid?.() === 0;
/** nobody:nogroup on Debian. */
const UNPRIVILEGED = { uid: 65534, gid: 65534 };

const dirs: TempDir[] = [];
afterEach(async () => {
  await stopAll();
  for (const d of dirs.splice(0)) await d.cleanup();
});

function scratch(): string {
  const d = tempDir("warnings");
  dirs.push(d);
  return d.path;
}

interface Record {
  level: number;
  msg: string;
  part?: string;
  warning?: string;
}

const records = (proc: TrackedProcess): Record[] =>
  proc
    .stdout()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record);

/** [code, message] of every start-up security warning, in order. */
const securityLines = (proc: TrackedProcess): [string, string][] =>
  records(proc)
    .filter((r) => r.part === "security")
    .map((r) => [r.warning!, r.msg]);

async function runBundle(
  file: string,
  user?: { uid: number; gid: number },
): Promise<TrackedProcess> {
  return spawnTracked(process.execPath, [BUNDLE, "run", "-c", file], {
    env: childEnv(),
    ...(user ?? {}),
  });
}

const ROOT_WARNING: [string, string] = [
  "LG_WARN_RUNNING_AS_ROOT",
  "running as root: a flaw in the gateway or a library it uses would give the whole machine away: run it as an unprivileged user that owns gateway.data_dir (systemd: User=, with AmbientCapabilities=CAP_NET_BIND_SERVICE for ports below 1024)",
];

describe("start-up warnings", () => {
  it("every insecure choice at once: one exact line each, in order, and the same from check", async () => {
    const dir = scratch();
    const creds = join(dir, "gw.creds");
    writeFileSync(
      creds,
      `-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJVQSJ9.c2ln\n------END NATS USER JWT------\n\n` +
        `-----BEGIN USER NKEY SEED-----\n${new TextDecoder().decode(createUser().getSeed())}\n------END USER NKEY SEED------\n`,
    );
    chmodSync(creds, 0o644);
    const hub = `nats://0.0.0.0:${await closedPort()}`;
    const file = join(dir, "leafgate.yaml");
    writeConfigAt(
      file,
      {
        gateway: { id: "gw1", data_dir: "./data" },
        mqtt: {
          allow_anonymous: true,
          listeners: [
            { host: "192.0.2.1", port: 0 },
            { host: "192.0.2.1", port: 0, websocket: true },
          ],
        },
        authorization: { users: [{ user: "sensor-1", password: await hashPassword("pw-123456") }] },
        upstream: { servers: [hub], credentials: creds },
        http: { host: "192.0.2.1", port: 0 },
      },
      { testDefaults: false },
    );
    chmodSync(file, 0o666);
    const proc = await runBundle(file);
    // The start fails at the first listener (192.0.2.1 is not ours): after the warnings.
    await waitForLine(
      proc,
      (l) => l.includes('"msg":"cannot start') || l.includes('"msg":"ready"'),
    );
    const anonymous = (listener: string) =>
      `${listener} is not loopback and accepts clients without a password (mqtt.allow_anonymous: true): anyone who reaches it may publish and subscribe as authorization.default_permissions allow: configure authorization.users and set mqtt.allow_anonymous: false`;
    const plaintext = (listener: string) =>
      `${listener} is not loopback and has no TLS: anyone on the network can read the passwords and messages of its clients, and change them: add tls: { cert, key } to it, or listen on 127.0.0.1`;
    const expected: [string, string][] = [
      [
        "LG_WARN_CONFIG_READABLE",
        `config file ${file} holds secrets (authorization.users[0].password) and is readable by other users (mode 0666): chmod 600 it, or pass the secrets as LEAFGATE_* environment variables`,
      ],
      [
        "LG_WARN_CONFIG_WRITABLE",
        `config file ${file} is writable by other users (mode 0666), who could point the gateway at their own hub or open it to anyone: chmod 600 it (or 644 if it holds no secret)`,
      ],
      [
        "LG_WARN_SECRET_FILE_READABLE",
        `upstream.credentials ${creds} is readable by other users (mode 0644): chmod 600 it`,
      ],
      ["LG_WARN_MQTT_PLAINTEXT", plaintext("MQTT listener 192.0.2.1:0")],
      ["LG_WARN_MQTT_ANONYMOUS", anonymous("MQTT listener 192.0.2.1:0")],
      ["LG_WARN_MQTT_PLAINTEXT", plaintext("MQTT WebSocket listener 192.0.2.1:0")],
      ["LG_WARN_MQTT_ANONYMOUS", anonymous("MQTT WebSocket listener 192.0.2.1:0")],
      [
        "LG_WARN_HTTP_EXPOSED",
        "HTTP monitoring 192.0.2.1:0 is not loopback: /status and /metrics are open to anyone who reaches it, without TLS or a password: set http.host: 127.0.0.1 (and scrape through a tunnel or a proxy), or http.enabled: false",
      ],
      [
        "LG_WARN_HUB_PLAINTEXT",
        `hub ${hub} is not loopback and is reached without TLS: every message and the hub's commands cross the network in clear, and anyone on the path can forge commands: use tls://${hub.slice("nats://".length)} (with upstream.tls.ca for a private CA)`,
      ],
      ...(ROOT ? [ROOT_WARNING] : []),
    ];
    expect(securityLines(proc), proc.describe()).toStrictEqual(expected);
    // Warnings, not errors: each at level 40, once.
    for (const r of records(proc).filter((x) => x.part === "security")) expect(r.level).toBe(40);

    const check = await runToCompletion(process.execPath, [BUNDLE, "check", "-c", file], {
      env: childEnv(),
      timeoutMs: 15_000,
    });
    expect(check.code, check.stderr).toBe(0);
    expect(check.stderr.trimEnd().split("\n")).toStrictEqual(
      expected
        .filter(([code]) => code !== "LG_WARN_RUNNING_AS_ROOT")
        .map(([code, msg]) => `leafgate: warning: ${msg} [${code}]`),
    );
  });

  it("a secure config: no warning at all (as an unprivileged user)", async () => {
    const dir = scratch();
    const file = join(dir, "leafgate.yaml");
    writeConfigAt(
      file,
      {
        gateway: { id: "gw1", data_dir: "./data" },
        mqtt: { listeners: [{ host: "127.0.0.1", port: 0 }] },
        authorization: { users: [{ user: "sensor-1", password: await hashPassword("pw-123456") }] },
        upstream: {
          servers: [`nats://127.0.0.1:${await closedPort()}`],
          user: "edge",
          password: "hub-pa55word",
        },
        http: { host: "127.0.0.1", port: 0 },
      },
      { testDefaults: false },
    );
    chmodSync(file, 0o600);
    if (ROOT) {
      chownSync(dir, UNPRIVILEGED.uid, UNPRIVILEGED.gid);
      chownSync(file, UNPRIVILEGED.uid, UNPRIVILEGED.gid);
    }
    const proc = await runBundle(file, ROOT ? UNPRIVILEGED : undefined);
    await waitForLine(proc, (l) => l.includes('"msg":"ready"'));
    // The hub is away, which is a warning of its own, and the last of the start.
    await waitForLine(proc, (l) => l.includes('"msg":"hub unreachable'));
    const warnings = records(proc).filter(
      (r) => r.level >= 40 && !r.msg.startsWith("hub unreachable"),
    );
    expect(warnings, proc.describe()).toStrictEqual([]);

    const check = await runToCompletion(process.execPath, [BUNDLE, "check", "-c", file], {
      env: childEnv(),
      timeoutMs: 15_000,
      ...(ROOT ? UNPRIVILEGED : {}),
    });
    expect(check.code, check.stderr).toBe(0);
    expect(check.stderr).toBe("");
  });
});
