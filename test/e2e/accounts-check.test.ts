// `leafgate check` and `leafgate run` on configs with accounts, as users run the bundle:
// a good one is printed with the accounts section complete and its secrets masked; a bad
// one is refused by both, every account mistake named with its path and fix, before
// anything starts.
import { chmodSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { hashPassword } from "../../src/mqtt/index.js";
import { type ConfigFile, writeConfig, writeRawConfig } from "../helpers/config.js";
import { BUNDLE, childEnv } from "../helpers/gateway.js";
import { runToCompletion } from "../helpers/procs.js";

const files: ConfigFile[] = [];
afterEach(async () => {
  for (const f of files.splice(0)) await f.dir.cleanup();
});

function leafgate(args: string[]) {
  return runToCompletion(process.execPath, [BUNDLE, ...args], {
    env: childEnv(),
    timeoutMs: 15_000,
  });
}

/** An account's upstream export and import as printed, left at their defaults. */
const EXPORT_ALL = ["      export:", '        - ">"', "      import: []"];
/** An account's buffer as printed, all the top level's defaults. */
const DEFAULT_BUFFER = [
  "    buffer:",
  "      max_bytes: 1000000000",
  "      max_messages: 10000000",
  "      max_age: 7d",
  "      on_full: drop_oldest",
  "      classes: []",
];

describe("leafgate check with accounts", () => {
  it("prints every account complete, with its secrets masked", async () => {
    const hash = await hashPassword("meter-password");
    const config = writeConfig({
      upstream: { servers: ["nats://hub:4222"] },
      serial: { ports: [{ path: "/dev/ttyUSB7", profile: "pms5003", device: "air-1" }] },
      accounts: {
        building: {
          exports: [{ stream: "energy.>" }],
          upstream: { user: "building", password: "hub-secret-1" },
        },
        "tenant-b": {
          users: [{ user: "meter-1", password: hash }],
          imports: [{ stream: "energy.>", account: "building", prefix: "shared" }],
          upstream: { servers: ["nats://tenant:tok-secret-2@hub-b:4222"] },
        },
      },
    });
    files.push(config);
    chmodSync(config.file, 0o644);
    const r = await leafgate(["check", "-c", config.file]);
    expect(r.code).toBe(0);
    // The warnings run would give know the accounts' secrets and hubs too.
    const wire =
      "is not loopback and is reached without TLS: every message and the hub's commands cross the network in clear, and anyone on the path can forge commands";
    expect(r.stderr.split("\n")).toStrictEqual([
      `leafgate: warning: config file ${config.file} holds secrets (accounts.building.upstream.password, accounts.tenant-b.users[0].password, accounts.tenant-b.upstream.servers[0]) and is readable by other users (mode 0644): chmod 600 it, or pass the secrets as LEAFGATE_* environment variables [LG_WARN_CONFIG_READABLE]`,
      `leafgate: warning: hub nats://hub:4222 ${wire}: use tls://hub:4222 (with upstream.tls.ca for a private CA) [LG_WARN_HUB_PLAINTEXT]`,
      `leafgate: warning: hub nats://hub-b:4222 ${wire.replace("TLS: ", "TLS: the gateway's password or token, ")}: use tls://hub-b:4222 (with accounts.tenant-b.upstream.tls.ca for a private CA) [LG_WARN_HUB_PLAINTEXT]`,
      "",
    ]);
    for (const secret of [hash, "hub-secret-1", "tok-secret-2"]) {
      expect(r.stdout).not.toContain(secret);
    }
    const accounts = r.stdout.slice(r.stdout.indexOf("\naccounts:\n") + 1);
    expect(accounts).toBe(
      [
        "accounts:",
        "  building:",
        "    users: []",
        "    exports:",
        "      - stream: energy.>",
        "    imports: []",
        "    upstream:",
        "      servers:",
        "        - nats://hub:4222",
        "      stream: null",
        "      domain: null",
        "      prefix: edge.gw1.building",
        ...EXPORT_ALL,
        "      user: building",
        '      password: "***"',
        ...DEFAULT_BUFFER,
        "  tenant-b:",
        "    users:",
        "      - user: meter-1",
        '        password: "***"',
        "        permissions: null",
        "    exports: []",
        "    imports:",
        "      - stream: energy.>",
        "        account: building",
        "        prefix: shared",
        "    upstream:",
        "      servers:",
        "        - nats://tenant:***@hub-b:4222",
        "      stream: null",
        "      domain: null",
        "      prefix: edge.gw1.tenant-b",
        ...EXPORT_ALL,
        ...DEFAULT_BUFFER,
        "",
      ].join("\n"),
    );
    expect(r.stdout).toContain("      account: $G\n");
  });

  it("check and run refuse account mistakes, all at once, with exit 2", async () => {
    const config = writeRawConfig(
      [
        "gateway: { id: gw9 }",
        "upstream: { servers: [ 'nats://127.0.0.1:1' ] }",
        "http: { port: 0 }",
        "mqtt: { listeners: [ { port: 0 } ] }",
        "nats: { listeners: [ { port: 0 } ] }",
        "serial: { ports: [ { path: /dev/ttyUSB7, profile: pms5003, device: d, account: tenant-c } ] }",
        "accounts:",
        "  a: { upstream: { prefix: 'edge.{gateway}.x' } }",
        "  b: { imports: [ { stream: 'energy.>', account: a } ], upstream: { prefix: 'edge.{gateway}.x' } }",
      ].join("\n"),
    );
    files.push(config);
    for (const command of ["check", "run"]) {
      const r = await leafgate([command, "-c", config.file]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr).toContain(
        [
          `invalid configuration in ${config.file}:`,
          '  accounts.b.imports[0].stream: import without a matching export: account a exports nothing; add { stream: "energy.>" } to accounts.a.exports, or import a subject it exports',
          '  serial.ports[0].account: no account "tenant-c" (accounts: $G, a, b): name one of them, or add accounts.tenant-c',
          `  accounts.b.upstream.prefix: "edge.gw9.x" is account a's (accounts.a.upstream.prefix) too, on the same hub (nats://127.0.0.1:1): their messages would mix there; give each account a prefix of its own (the default, edge.{gateway}.{account}, is)`,
        ].join("\n"),
      );
    }
  });
});
