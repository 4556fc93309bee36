// The `accounts` configuration (issue 13): the DESIGN.md example resolved to the one list
// every part reads, the defaults an account takes from the top level, each rule between
// accounts word for word, and secrets in accounts masked like the top level's.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import YAML from "yaml";
import {
  type AccountConfig,
  accountsOf,
  bufferLimits,
  ConfigError,
  formatConfig,
  insecureChoices,
  type LeafgateConfig,
  loadConfig,
  secretsOf,
  type UpstreamConfig,
} from "../../src/config/index.js";
import { secretPaths } from "../../src/config/security.js";

const CWD = "/srv/leafgate";
/** A well-formed `leafgate passwd` hash per user (what they hash does not matter here). */
const hash = (n: number): string => `$scrypt$N=16384,r=8,p=1$AAAAAAAAAAAAAAAAAAAAA${n}==$AAAA`;

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "leafgate-accounts-"));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function load(text: string, env: Record<string, string> = {}): LeafgateConfig {
  const file = path.join(dir, "leafgate.yaml");
  fs.writeFileSync(file, text);
  return loadConfig({ file, env, hostname: "pi.local", cwd: CWD });
}

function problemsOf(text: string): readonly string[] {
  try {
    load(text);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error("expected a ConfigError");
}

/** The Configuration shape of DESIGN.md, as written there (hashes made well-formed). */
const DESIGN = `
gateway:
  id: gw-kitchen
  data_dir: ./data
mqtt:
  listeners:
    - { host: 127.0.0.1, port: 1883 }
    - { host: 0.0.0.0, port: 8883, tls: { cert: c.pem, key: k.pem } }
    - { host: 127.0.0.1, port: 8080, websocket: true }
  allow_anonymous: true
  max_keepalive: 60
authorization:
  default_permissions:
    subscribe: { deny: [ "admin.>" ] }
  users:
    - user: sensor-1
      password: "${hash(1)}"
      permissions:
        publish: { allow: [ "sensors.sensor-1.>" ] }
        subscribe: { allow: [ "cmd.sensor-1.>" ] }
nats:
  listeners: [ { host: 127.0.0.1, port: 4222 } ]
serial:
  ports:
    - { path: /dev/ttyUSB0, baud_rate: 9600, profile: pms5003, device: air-1 }
upstream:
  servers: [ "nats://hub-1:4222", "nats://hub-2:4222" ]
  mode: jetstream
  stream: EDGE
  prefix: "edge.{gateway}"
  export: [ ">" ]
  import: [ "cmd.{gateway}.>" ]
  credentials: ./gw.creds
buffer:
  durability: normal
  max_bytes: 1GB
  max_age: 7d
  classes:
    - { name: alarms, subjects: [ "alarms.>" ], on_full: reject }
    - { name: telemetry, subjects: [ ">" ], on_full: drop_oldest }
http:
  host: 127.0.0.1
  port: 8222
accounts:
  building:
    users: [ { user: hvac-1, password: "${hash(2)}" } ]
    exports: [ { stream: "energy.>" } ]
    upstream: { prefix: "edge.{gateway}.building", credentials: ./building.creds }
  tenant-b:
    users: [ { user: meter-1, password: "${hash(3)}" } ]
    imports: [ { stream: "energy.>", account: building, prefix: "shared" } ]
`;

/** The built-in defaults (config.test.ts pins them); accounts inherit from them here. */
const DEFAULTS = loadConfig({ env: {}, hostname: "h", cwd: CWD });
/** What every hub connection takes from `upstream`: mode and timings. */
const {
  servers: _servers,
  stream: _stream,
  domain: _domain,
  prefix: _prefix,
  export: _export,
  import: _import,
  ...HUB
} = DEFAULTS.upstream;

const NO_LIMITS = { max_bytes: null, max_messages: null, max_age: null };
const DESIGN_BUFFER = {
  ...DEFAULTS.buffer,
  classes: [
    { name: "alarms", subjects: ["alarms.>"], on_full: "reject", ...NO_LIMITS },
    { name: "telemetry", subjects: [">"], on_full: "drop_oldest", ...NO_LIMITS },
  ],
} as const;
const DESIGN_SERVERS = ["nats://hub-1:4222", "nats://hub-2:4222"];

describe("accounts resolved", () => {
  it("the DESIGN.md example is the global account and two others, each complete", () => {
    const c = load(DESIGN);
    const expected: AccountConfig[] = [
      {
        name: "$G",
        users: [
          {
            user: "sensor-1",
            password: hash(1),
            permissions: {
              publish: { allow: ["sensors.sensor-1.>"], deny: [] },
              subscribe: { allow: ["cmd.sensor-1.>"], deny: [] },
            },
          },
        ],
        exports: [],
        imports: [],
        upstream: {
          ...HUB,
          servers: DESIGN_SERVERS,
          stream: "EDGE",
          domain: null,
          prefix: "edge.gw-kitchen",
          export: [">"],
          import: [
            {
              subject: "cmd.gw-kitchen.>",
              local: "cmd.gw-kitchen.>",
              durable: null,
              stream: null,
            },
          ],
          credentials: path.join(dir, "gw.creds"),
        },
        buffer: DESIGN_BUFFER,
        serialPorts: [
          {
            path: "/dev/ttyUSB0",
            device: "air-1",
            profile: "pms5003",
            baud_rate: 9600,
            data_bits: null,
            parity: null,
            stop_bits: null,
            account: "$G",
            silent_after: null,
          },
        ],
      },
      {
        name: "building",
        users: [{ user: "hvac-1", password: hash(2), permissions: null }],
        exports: [{ stream: "energy.>" }],
        imports: [],
        upstream: {
          ...HUB,
          servers: DESIGN_SERVERS,
          // Its own hub account's stream is found by its prefix.
          stream: null,
          domain: null,
          prefix: "edge.gw-kitchen.building",
          export: [">"],
          import: [],
          credentials: path.join(dir, "building.creds"),
        },
        buffer: DESIGN_BUFFER,
        serialPorts: [],
      },
      {
        name: "tenant-b",
        users: [{ user: "meter-1", password: hash(3), permissions: null }],
        exports: [],
        imports: [{ stream: "energy.>", account: "building", prefix: "shared" }],
        upstream: {
          ...HUB,
          servers: DESIGN_SERVERS,
          stream: null,
          domain: null,
          prefix: "edge.gw-kitchen.tenant-b",
          export: [">"],
          import: [],
          // No credentials of its own: never the global account's.
        },
        buffer: DESIGN_BUFFER,
        serialPorts: [],
      },
    ];
    expect(accountsOf(c)).toStrictEqual(expected);
    // The global account is the top level itself, not a copy.
    expect(accountsOf(c)[0]?.upstream).toBe(c.upstream);
    expect(accountsOf(c)[0]?.buffer).toBe(c.buffer);
    expect(Object.isFrozen(c.accounts.building?.upstream.export)).toBe(true);
  });

  it("without accounts: one account, $G, holding every user and port", () => {
    const c = load(
      `authorization: { users: [ { user: u, password: "${hash(1)}" } ] }\n` +
        "serial: { ports: [ { path: /dev/a, device: d, profile: p } ] }",
    );
    expect(c.accounts).toStrictEqual({});
    expect(c.serial.ports[0]?.account).toBe("$G");
    expect(accountsOf(c)).toStrictEqual([
      {
        name: "$G",
        users: c.authorization.users,
        exports: [],
        imports: [],
        upstream: c.upstream,
        buffer: c.buffer,
        serialPorts: c.serial.ports,
      },
    ]);
  });

  it("an account left empty takes the top level's hub (without its credentials) and buffer", () => {
    const c = load(`
gateway: { id: gw1 }
upstream:
  servers: [ "nats://edge:pw@hub:4222", "tls://tok@hub-2" ]
  mode: core
  domain: hub
  tls: { ca: /etc/ca.pem }
  user: edge
  password: pw
  ack_timeout: 3s
buffer: { max_bytes: 10MB, on_full: reject, classes: [ { name: alarms, subjects: [ "alarms.>" ] } ] }
serial: { ports: [ { path: /dev/a, device: d, profile: p, account: solo }, { path: /dev/b, device: e, profile: p } ] }
accounts:
  solo:
  other: {}
`);
    const solo = accountsOf(c).find((a) => a.name === "solo");
    const hub: UpstreamConfig = {
      ...HUB,
      mode: "core",
      ack_timeout: 3000,
      servers: ["nats://hub:4222", "tls://hub-2"],
      stream: null,
      domain: "hub",
      prefix: "edge.gw1.solo",
      export: [">"],
      import: [],
      tls: { ca: "/etc/ca.pem" },
    };
    expect(solo).toStrictEqual({
      name: "solo",
      users: [],
      exports: [],
      imports: [],
      upstream: hub,
      buffer: c.buffer,
      serialPorts: [c.serial.ports[0]],
    });
    expect(c.accounts.other?.upstream).toStrictEqual({ ...hub, prefix: "edge.gw1.other" });
    expect(accountsOf(c).map((a) => [a.name, a.serialPorts.map((p) => p.device)])).toStrictEqual([
      ["$G", ["e"]],
      ["solo", ["d"]],
      ["other", []],
    ]);
  });

  it("an account's own keys win; {gateway} and {account} are substituted in its upstream", () => {
    const c = load(`
gateway: { id: gw1 }
upstream: { servers: [ "nats://hub:4222" ] }
buffer: { max_messages: 1000, classes: [ { name: alarms, subjects: [ "alarms.>" ] } ] }
accounts:
  fleet:
    upstream:
      servers: [ "nats://fleet-hub:4222" ]
      stream: FLEET
      domain: fleet
      prefix: "t.{account}.{gateway}"
      export: [ "{account}.>" ]
      import:
        - "cmd.{gateway}.{account}.>"
        - { subject: "cfg.{account}.>", local: "config.>", durable: "cfg-{account}-{gateway}" }
      token: s3cret-token
      tls: { ca: ./fleet-ca.pem }
    buffer:
      max_bytes: 5MB
      max_age: 1h
      on_full: reject
      classes: [ { name: bulk, subjects: [ "bulk.>" ], on_full: drop_oldest }, { name: rest, subjects: [ ">" ] } ]
  quiet:
    buffer: { classes: [] }
`);
    expect(c.accounts.fleet?.upstream).toStrictEqual({
      ...HUB,
      servers: ["nats://fleet-hub:4222"],
      stream: "FLEET",
      domain: "fleet",
      prefix: "t.fleet.gw1",
      export: ["fleet.>"],
      import: [
        { subject: "cmd.gw1.fleet.>", local: "cmd.gw1.fleet.>", durable: null, stream: null },
        { subject: "cfg.fleet.>", local: "config.>", durable: "cfg-fleet-gw1", stream: null },
      ],
      token: "s3cret-token",
      tls: { ca: path.join(dir, "fleet-ca.pem") },
    });
    expect(c.accounts.fleet?.buffer).toStrictEqual({
      ...c.buffer,
      max_bytes: 5_000_000,
      max_messages: 1000,
      max_age: 3_600_000,
      on_full: "reject",
      classes: [
        { name: "bulk", subjects: ["bulk.>"], on_full: "drop_oldest", ...NO_LIMITS },
        // Unset on_full: the account's.
        { name: "rest", subjects: [">"], on_full: "reject", ...NO_LIMITS },
      ],
    });
    // The outbox reads an account's queue limits as it reads the top level's.
    const fleet = accountsOf(c).find((a) => a.name === "fleet");
    expect(fleet && bufferLimits(fleet.buffer)).toStrictEqual({
      maxBytes: 5_000_000,
      maxMessages: 1000,
      maxAgeMs: 3_600_000,
      onFull: "reject",
      classes: [
        {
          name: "bulk",
          subjects: ["bulk.>"],
          onFull: "drop_oldest",
          maxBytes: null,
          maxMessages: null,
          maxAgeMs: null,
        },
        {
          name: "rest",
          subjects: [">"],
          onFull: "reject",
          maxBytes: null,
          maxMessages: null,
          maxAgeMs: null,
        },
      ],
    });
    expect(c.accounts.quiet?.buffer.classes).toStrictEqual([]);
    expect(c.buffer.classes.map((k) => k.on_full)).toStrictEqual(["drop_oldest"]);
  });

  it("inherited classes take the account's on_full where they leave it unset", () => {
    const c = load(
      "buffer: { classes: [ { name: a, subjects: [ a ] }, { name: b, subjects: [ b ], on_full: drop_oldest } ] }\n" +
        "accounts: { x: { buffer: { on_full: reject } } }",
    );
    expect(c.accounts.x?.buffer.classes.map((k) => [k.name, k.on_full])).toStrictEqual([
      ["a", "reject"],
      ["b", "drop_oldest"],
    ]);
  });

  it("users in accounts count for allow_anonymous as authorization.users do", () => {
    const c = load(`accounts: { a: { users: [ { user: u, password: "${hash(1)}" } ] } }`);
    expect([c.mqtt.allow_anonymous, c.nats.allow_anonymous]).toStrictEqual([false, false]);
  });

  it("LEAFGATE_ACCOUNTS merges into the file's accounts, key by key", () => {
    const c = load("accounts: { a: { exports: [ { stream: x.> } ] } }", {
      LEAFGATE_ACCOUNTS: "{a: {upstream: {token: from-env}}, b: {}}",
    });
    expect(Object.keys(c.accounts)).toStrictEqual(["a", "b"]);
    expect(c.accounts.a?.exports).toStrictEqual([{ stream: "x.>" }]);
    expect(c.accounts.a?.upstream.token).toBe("from-env");
  });
});

describe("accounts checked", () => {
  it.each([
    [
      "accounts: { tenant b: {} }",
      'accounts.tenant b: expected an account name: letters, digits, "_" or "-" ("$G" is the global account\'s), got "tenant b"',
    ],
    [
      "accounts: { $G: {} }",
      'accounts.$G: expected an account name: letters, digits, "_" or "-" ("$G" is the global account\'s), got "$G"',
    ],
    ["accounts: [ a ]", "accounts: expected a mapping, got a list"],
    ["accounts: { a: { user: [] } }", 'accounts.a.user: unknown key (did you mean "users"?)'],
    [
      "accounts: { a: { upstream: { mode: core } } }",
      "accounts.a.upstream.mode: unknown key (expected one of servers, stream, domain, prefix, export, import, user, password, token, credentials, nkey_seed, tls)",
    ],
    [
      "accounts: { a: { imports: [ { stream: x } ] } }",
      "accounts.a.imports[0].account: expected the name of the exporting account, got nothing",
    ],
    [
      "accounts: { a: { imports: [ { stream: x, account: $G } ] } }",
      'accounts.a.imports[0].account: expected the name of an account under accounts (the global account $G exports nothing), got "$G"',
    ],
    [
      "accounts: { a: { imports: [ { stream: x, account: a } ] } }",
      "accounts.a.imports[0].account: an account cannot import from itself (its own subjects need no import): name another account, or remove the import",
    ],
    [
      "accounts: { a: { imports: [ { stream: 'energy.>', account: bulding } ] }, building: {} }",
      'accounts.a.imports[0].account: no account "bulding" (accounts: a, building): name one of them, or add accounts.bulding exporting "energy.>"',
    ],
    [
      "accounts: { a: { exports: [ { stream: 'energy.*' }, { stream: 'water.>' } ] }, b: { imports: [ { stream: 'energy.>', account: a } ] } }",
      'accounts.b.imports[0].stream: import without a matching export: account a exports "energy.*", "water.>" only; add { stream: "energy.>" } to accounts.a.exports, or import a subject it exports',
    ],
    [
      "accounts: { a: {}, b: { imports: [ { stream: x, account: a } ] } }",
      'accounts.b.imports[0].stream: import without a matching export: account a exports nothing; add { stream: "x" } to accounts.a.exports, or import a subject it exports',
    ],
    [
      "accounts: { a: { exports: [ { stream: 'x.>' } ] }, b: { imports: [ { stream: x.y, account: a, prefix: 'p.*' } ] } }",
      'accounts.b.imports[0].prefix: expected a subject without wildcards, got "p.*"',
    ],
    [
      `authorization: { users: [ { user: u, password: "${hash(1)}" } ] }\naccounts: { a: { users: [ { user: u, password: "${hash(2)}" } ] } }`,
      'accounts.a.users[0].user: "u" is in authorization.users (the global account $G) too; a user belongs to one account only: rename it in one of them, or remove it from one',
    ],
    [
      `accounts: { a: { users: [ { user: u, password: "${hash(1)}" } ] }, b: { users: [ { user: v, password: "${hash(2)}" }, { user: u, password: "${hash(3)}" } ] } }`,
      'accounts.b.users[1].user: "u" is a user of account a (accounts.a.users[0]) too; a user belongs to one account only: rename it in one of them, or remove it from one',
    ],
    [
      `accounts: { a: { users: [ { user: u, password: "${hash(1)}" }, { user: u, password: "${hash(2)}" } ] } }`,
      'accounts.a.users[1].user: "u" is listed twice',
    ],
    [
      "serial: { ports: [ { path: /dev/a, device: d, profile: p, account: nope } ] }\naccounts: { a: {} }",
      'serial.ports[0].account: no account "nope" (accounts: $G, a): name one of them, or add accounts.nope',
    ],
    [
      "serial: { ports: [ { path: /dev/a, device: d, profile: p, account: 'a.b' } ] }",
      'serial.ports[0].account: expected an account name, or "$G" for the global account, got "a.b"',
    ],
    [
      "upstream: { servers: [ 'nats://hub:4222' ] }\naccounts: { a: { upstream: { prefix: 'edge.{gateway}' } } }",
      'accounts.a.upstream.prefix: "edge.pi-local" is the global account\'s (upstream.prefix) too, on the same hub (nats://hub:4222): their messages would mix there; give each account a prefix of its own (the default, edge.{gateway}.{account}, is)',
    ],
    [
      "upstream: { servers: [ 'nats://hub-1:4222' ] }\naccounts:\n  a: { upstream: { prefix: shared, servers: [ 'nats://hub-2', 'nats://u:p@HUB-3:4222' ] } }\n  b: { upstream: { prefix: shared, servers: [ 'tls://t@hub-3' ] } }",
      'accounts.b.upstream.prefix: "shared" is account a\'s (accounts.a.upstream.prefix) too, on the same hub (tls://hub-3): their messages would mix there; give each account a prefix of its own (the default, edge.{gateway}.{account}, is)',
    ],
    [
      "upstream: { import: [ { subject: 'cfg.>', durable: 'cfg-{gateway}' } ] }\naccounts: { a: { upstream: { import: [ { subject: 'x.>', durable: 'cfg-{gateway}' } ] } } }",
      'accounts.a.upstream.import[0].durable: "cfg-pi-local" is upstream.import[0].durable too; each durable import needs a consumer of its own',
    ],
    [
      "accounts:\n  a: { upstream: { import: [ { subject: 'x.>', durable: 'd-{gateway}' } ] } }\n  b: { upstream: { import: [ 'y.>', { subject: 'x.>', durable: 'd-{gateway}' } ] } }",
      'accounts.b.upstream.import[1].durable: "d-pi-local" is accounts.a.upstream.import[0].durable too; each durable import needs a consumer of its own',
    ],
    [
      "upstream: { mode: core }\naccounts: { a: { upstream: { import: [ { subject: 'x.>', durable: 'd-{account}-{gateway}' } ] } } }",
      "accounts.a.upstream.import[0].durable: a durable import needs JetStream on the hub, but upstream.mode is core; set upstream.mode: jetstream, or remove durable for a core subscription",
    ],
    [
      "accounts: { a: { upstream: { user: u } } }",
      "accounts.a.upstream.user: set without accounts.a.upstream.password",
    ],
    [
      "accounts: { a: { upstream: { token: t, credentials: a.creds } } }",
      "accounts.a.upstream: expected at most one of user/password, token, credentials, nkey_seed, got token, credentials",
    ],
    [
      "accounts: { a: { buffer: { classes: [ { name: default, subjects: [ x ] } ] } } }",
      'accounts.a.buffer.classes[0].name: "default" is reserved for subjects no class names',
    ],
    [
      "accounts: { a: { buffer: { max_bytes: 10 } } }",
      "accounts.a.buffer.max_bytes: expected a size from 1024 to 9007199254740991 bytes, got 10",
    ],
  ])("%s", (text, problem) => {
    expect(problemsOf(text)).toStrictEqual([problem]);
  });

  it("the same prefix on other hubs, or a prefix under another, is no clash", () => {
    const c = load(
      "upstream: { servers: [ 'nats://hub:4222' ] }\n" +
        "accounts:\n" +
        "  a: { upstream: { prefix: 'edge.{gateway}', servers: [ 'nats://other:4222' ] } }\n" +
        "  b: { upstream: { prefix: 'edge.{gateway}.b' } }",
    );
    expect(accountsOf(c).map((a) => a.upstream.prefix)).toStrictEqual([
      "edge.pi-local",
      "edge.pi-local",
      "edge.pi-local.b",
    ]);
  });

  it("reports every problem at once, each with its path and fix", () => {
    expect(
      problemsOf(`
authorization: { users: [ { user: sensor-1, password: "${hash(1)}" } ] }
serial: { ports: [ { path: /dev/a, device: d, profile: p, account: tenant-c } ] }
accounts:
  building:
    users: [ { user: sensor-1, password: "${hash(2)}" } ]
    exports: [ { stream: "energy.>" } ]
    upstream: { prefix: "edge.{gateway}", user: b }
  tenant-b:
    imports: [ { stream: "water.>", account: building }, { stream: x, account: tenant-b } ]
`),
    ).toStrictEqual([
      'accounts.building.users[0].user: "sensor-1" is in authorization.users (the global account $G) too; a user belongs to one account only: rename it in one of them, or remove it from one',
      "accounts.building.upstream.user: set without accounts.building.upstream.password",
      'accounts.tenant-b.imports[0].stream: import without a matching export: account building exports "energy.>" only; add { stream: "water.>" } to accounts.building.exports, or import a subject it exports',
      "accounts.tenant-b.imports[1].account: an account cannot import from itself (its own subjects need no import): name another account, or remove the import",
      'serial.ports[0].account: no account "tenant-c" (accounts: $G, building, tenant-b): name one of them, or add accounts.tenant-c',
      'accounts.building.upstream.prefix: "edge.pi-local" is the global account\'s (upstream.prefix) too, on the same hub (nats://127.0.0.1:4223): their messages would mix there; give each account a prefix of its own (the default, edge.{gateway}.{account}, is)',
    ]);
  });
});

describe("secrets in accounts", () => {
  const SECRET = `
upstream: { servers: [ "nats://hub:4222" ] }
accounts:
  a:
    users: [ { user: u, password: "${hash(7)}" } ]
    upstream: { servers: [ "nats://alice:hunter2@hub-a:4222" ], user: alice, password: hunter2 }
  b:
    upstream: { token: tok-b-secret }
  c:
    upstream: { nkey_seed: SUAMK2FG4MI6UE3ACF3FK3OIQBCEIEZV7NSWFFEW63UXMRLFM2XLAXK4GY }
`;

  it("leafgate check's output shows the accounts section with every secret masked", () => {
    const c = load(SECRET);
    const text = formatConfig(c);
    expect(text).not.toMatch(/hunter2|tok-b-secret|SUAMK2|AAAAAAA7/);
    const doc = YAML.parse(text);
    expect(doc.accounts.a).toStrictEqual({
      users: [{ user: "u", password: "***", permissions: null }],
      exports: [],
      imports: [],
      upstream: {
        servers: ["nats://alice:***@hub-a:4222"],
        stream: null,
        domain: null,
        prefix: "edge.pi-local.a",
        export: [">"],
        import: [],
        user: "alice",
        password: "***",
      },
      buffer: {
        max_bytes: 1_000_000_000,
        max_messages: 10_000_000,
        max_age: "7d",
        on_full: "drop_oldest",
        classes: [],
      },
    });
    expect(doc.accounts.b.upstream.token).toBe("***");
    expect(doc.accounts.c.upstream.nkey_seed).toBe("***");
  });

  it("round-trips through leafgate check's output once secrets are restored", () => {
    const c = load(`${SECRET}\nbuffer: { classes: [ { name: k, subjects: [ k.> ] } ] }`);
    const doc = YAML.parse(formatConfig(c));
    doc.accounts.a.users[0].password = hash(7);
    doc.accounts.a.upstream.servers = c.accounts.a?.upstream.servers;
    doc.accounts.a.upstream.password = "hunter2";
    doc.accounts.b.upstream.token = "tok-b-secret";
    doc.accounts.c.upstream.nkey_seed = c.accounts.c?.upstream.nkey_seed;
    expect(load(YAML.stringify(doc))).toStrictEqual(c);
  });

  it("are known to the log scrubber and to the readable-file warning", () => {
    const c = load(SECRET);
    expect(secretsOf(c)).toEqual(
      expect.arrayContaining([
        "hunter2",
        "tok-b-secret",
        "SUAMK2FG4MI6UE3ACF3FK3OIQBCEIEZV7NSWFFEW63UXMRLFM2XLAXK4GY",
        hash(7),
      ]),
    );
    const creds = path.join(dir, "a.creds");
    fs.writeFileSync(
      creds,
      "-----BEGIN NATS USER JWT-----\neyJhbGciOi.account-a-jwt\n------END NATS USER JWT------\n",
      { mode: 0o644 },
    );
    const withCreds = load("accounts: { a: { upstream: { credentials: ./a.creds } } }");
    expect(secretsOf(withCreds)).toContain("eyJhbGciOi.account-a-jwt");
    expect(
      insecureChoices(withCreds).filter((w) => w.code === "LG_WARN_SECRET_FILE_READABLE"),
    ).toStrictEqual([
      {
        code: "LG_WARN_SECRET_FILE_READABLE",
        message: `accounts.a.upstream.credentials ${creds} is readable by other users (mode 0644): chmod 600 it`,
        details: { key: "accounts.a.upstream.credentials", file: creds, mode: "0644" },
      },
    ]);
    expect(secretPaths(YAML.parse(SECRET))).toStrictEqual([
      "accounts.a.users[0].password",
      "accounts.a.upstream.servers[0]",
      "accounts.a.upstream.password",
      "accounts.b.upstream.token",
      "accounts.c.upstream.nkey_seed",
    ]);
  });
});
