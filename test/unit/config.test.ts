import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import YAML from "yaml";
import {
  authorizationOptions,
  brokerLimits,
  ConfigError,
  formatConfig,
  type LeafgateConfig,
  loadConfig,
  mqttListeners,
  outboxOptions,
  retainedLimits,
} from "../../src/config/index.js";

const CWD = "/srv/leafgate";

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "leafgate-config-"));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function writeFile(text: string, name = "leafgate.yaml"): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

function load(text: string | undefined, env: Record<string, string> = {}): LeafgateConfig {
  const file = text === undefined ? undefined : writeFile(text);
  return loadConfig({ file, env, hostname: "pi.local", cwd: CWD });
}

/** The problems of the ConfigError that `fn` throws. */
function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error("expected a ConfigError");
}

const DEFAULTS: LeafgateConfig = {
  gateway: { id: "pi-local", data_dir: "/srv/leafgate/data" },
  mqtt: {
    listeners: [{ host: "127.0.0.1", port: 1883, websocket: false }],
    allow_anonymous: true,
    max_keepalive: 60,
    connect_timeout: 10_000,
    max_packet_size: 1_000_000,
    max_connections: 1000,
    max_pending_connections: 100,
    max_connect_size: 65_536,
    max_connections_per_address: 256,
    max_inflight: 1000,
    max_queued_messages: 1000,
    max_session_queued_bytes: 16 * 1024 ** 2,
    max_session_expiry: 7 * 24 * 3600 * 1000,
    max_sessions: 10_000,
    session_store_max_bytes: 256 * 1024 ** 2,
    max_subscriptions_per_client: 100,
    max_retained_messages: 10_000,
    max_retained_bytes: 64 * 1024 ** 2,
    topic_alias_maximum: 64,
    max_topic_length: 1024,
    max_topic_levels: 64,
    max_outbound_bytes: 8 * 1024 * 1024,
    receive_maximum: 100,
    tcp_keepalive: 60_000,
  },
  nats: {
    listeners: [{ host: "127.0.0.1", port: 4222 }],
    allow_anonymous: true,
    max_payload: 1_000_000,
    max_control_line: 4096,
    max_connections: 1000,
    max_pending_connections: 100,
    max_connections_per_address: 256,
    max_subscriptions_per_client: 1000,
    max_outbound_bytes: 8 * 1024 * 1024,
    ping_interval: 120_000,
    max_pings_out: 2,
    auth_timeout: 2000,
  },
  upstream: {
    servers: ["nats://127.0.0.1:4223"],
    mode: "jetstream",
    stream: null,
    domain: null,
    prefix: "edge.pi-local",
    export: [">"],
    import: [{ subject: "cmd.pi-local.>", local: "cmd.pi-local.>", durable: null, stream: null }],
    max_in_flight: 4096,
    ack_timeout: 10_000,
    reconnect_delay_max: 2000,
    ping_interval: 10_000,
    drain: "fifo",
    rate_limit: { messages_per_second: 0, bytes_per_second: 0 },
  },
  buffer: {
    durability: "normal",
    commit_interval: 0,
    commit_max_rows: 2000,
    max_bytes: 1_000_000_000,
    max_messages: 10_000_000,
    max_age: 7 * 86_400_000,
    max_file_size: null,
    on_full: "drop_oldest",
    classes: [],
  },
  authorization: {
    default_permissions: {
      publish: { allow: [">"], deny: [] },
      subscribe: { allow: [">"], deny: [] },
    },
    users: [],
    token: null,
    failed_logins_per_address: 10,
    failed_login_window: 60_000,
  },
  serial: { ports: [], profiles_dir: null },
  requests: { timeout: 30_000, max_pending: 10_000 },
  http: { enabled: true, host: "127.0.0.1", port: 8222 },
  sys: { interval: 10_000 },
  log: { level: "info" },
  accounts: {},
};

const FULL = `
gateway:
  id: gw-kitchen
  data_dir: ./data
mqtt:
  listeners:
    - { host: 127.0.0.1, port: 1883 }
    - { host: 0.0.0.0, port: 0 }
  max_keepalive: 120
  connect_timeout: 250ms
  max_packet_size: 512KiB
  max_outbound_bytes: 4MiB
  receive_maximum: 20
  tcp_keepalive: 2h
nats:
  listeners: [ { host: 127.0.0.1, port: 4222 } ]
upstream:
  servers: [ "nats://hub-1:4222", "tls://hub-2" ]
  mode: core
  stream: EDGE
  domain: hub
  prefix: "edge.{gateway}"
  export: [ "sensors.>", "alarms.*" ]
  import: [ "cmd.{gateway}.>" ]
  credentials: ./gw.creds
  tls: { ca: /etc/ssl/ca.pem, cert: certs/c.pem }
  max_in_flight: 8000
  ack_timeout: 5s
  reconnect_delay_max: 1m
buffer:
  durability: fsync
  commit_interval: 0.005
  commit_max_rows: 500
  max_bytes: 2GB
  max_age: 30d
  classes:
    - { name: alarms, subjects: [ "alarms.>" ], on_full: reject, max_messages: 100000 }
    - { name: telemetry, subjects: [ ">" ], max_bytes: 512MiB }
http:
  enabled: false
  host: 0.0.0.0
  port: 9000
log:
  level: debug
`;

describe("loadConfig", () => {
  it("gives the defaults without a file", () => {
    expect(load(undefined)).toStrictEqual(DEFAULTS);
  });

  it("treats an empty file as defaults", () => {
    expect(load("")).toStrictEqual(DEFAULTS);
    expect(load("# nothing\n")).toStrictEqual(DEFAULTS);
  });

  it("sanitises the host name into one subject token", () => {
    const c = loadConfig({ env: {}, hostname: "my host.lan*>", cwd: CWD });
    expect(c.gateway.id).toBe("my-host-lan--");
  });

  it("resolves a full file in the DESIGN shape", () => {
    const c = load(FULL);
    expect(c).toStrictEqual({
      gateway: { id: "gw-kitchen", data_dir: path.join(dir, "data") },
      mqtt: {
        ...DEFAULTS.mqtt,
        listeners: [
          { host: "127.0.0.1", port: 1883, websocket: false },
          { host: "0.0.0.0", port: 0, websocket: false },
        ],
        // A listener off loopback: anonymous access is off unless the file says so.
        allow_anonymous: false,
        max_keepalive: 120,
        connect_timeout: 250,
        max_packet_size: 524_288,
        max_outbound_bytes: 4 * 1024 * 1024,
        receive_maximum: 20,
        tcp_keepalive: 7_200_000,
      },
      upstream: {
        servers: ["nats://hub-1:4222", "tls://hub-2"],
        mode: "core",
        domain: "hub",
        stream: "EDGE",
        prefix: "edge.gw-kitchen",
        export: ["sensors.>", "alarms.*"],
        import: [
          { subject: "cmd.gw-kitchen.>", local: "cmd.gw-kitchen.>", durable: null, stream: null },
        ],
        credentials: path.join(dir, "gw.creds"),
        tls: { ca: "/etc/ssl/ca.pem", cert: path.join(dir, "certs/c.pem") },
        max_in_flight: 8000,
        ack_timeout: 5000,
        reconnect_delay_max: 60_000,
        ping_interval: 10_000,
        drain: "fifo",
        rate_limit: { messages_per_second: 0, bytes_per_second: 0 },
      },
      buffer: {
        durability: "fsync",
        commit_interval: 5,
        commit_max_rows: 500,
        max_bytes: 2_000_000_000,
        max_messages: 10_000_000,
        max_age: 30 * 86_400_000,
        max_file_size: null,
        on_full: "drop_oldest",
        classes: [
          {
            name: "alarms",
            subjects: ["alarms.>"],
            on_full: "reject",
            max_bytes: null,
            max_messages: 100_000,
            max_age: null,
          },
          {
            name: "telemetry",
            subjects: [">"],
            // Unset: the buffer's on_full.
            on_full: "drop_oldest",
            max_bytes: 536_870_912,
            max_messages: null,
            max_age: null,
          },
        ],
      },
      authorization: DEFAULTS.authorization,
      nats: DEFAULTS.nats,
      serial: DEFAULTS.serial,
      requests: DEFAULTS.requests,
      http: { enabled: false, host: "0.0.0.0", port: 9000 },
      sys: { interval: 10_000 },
      log: { level: "debug" },
      accounts: {},
    });
  });

  it("parses durations and sizes in every unit", () => {
    const c = load(
      "upstream: { reconnect_delay_max: 2h, ack_timeout: 7d }\n" +
        "mqtt: { max_packet_size: 0.25GB, max_outbound_bytes: 0.5GB }",
    );
    expect(c.upstream.reconnect_delay_max).toBe(7_200_000);
    expect(c.upstream.ack_timeout).toBe(604_800_000);
    expect(c.mqtt.max_packet_size).toBe(250_000_000);
    expect(load("mqtt: { max_packet_size: 2MiB }").mqtt.max_packet_size).toBe(2_097_152);
    expect(load("mqtt: { max_packet_size: 4096 }").mqtt.max_packet_size).toBe(4096);
    expect(load("mqtt: { connect_timeout: 3 }").mqtt.connect_timeout).toBe(3000);
    const topics = load("mqtt: { max_topic_length: 1KiB, max_topic_levels: 8 }").mqtt;
    expect([topics.max_topic_length, topics.max_topic_levels]).toEqual([1024, 8]);
    expect(c.mqtt.max_outbound_bytes).toBe(500_000_000);
    expect(load("mqtt: { tcp_keepalive: 2m }").mqtt.tcp_keepalive).toBe(120_000);
  });

  it("max_outbound_bytes holds two of the largest packet; tcp_keepalive is 0 or whole seconds", () => {
    expect(problemsOf(() => load("mqtt: { max_packet_size: 5MB }"))).toStrictEqual([
      "mqtt.max_outbound_bytes: expected at least twice mqtt.max_packet_size (10000000 bytes), got 8388608",
    ]);
    expect(
      load("mqtt: { max_packet_size: 5MB, max_outbound_bytes: 10MB }").mqtt.max_packet_size,
    ).toBe(5_000_000);
    expect(problemsOf(() => load("mqtt: { tcp_keepalive: 500ms }"))).toStrictEqual([
      "mqtt.tcp_keepalive: expected 0 (off) or at least 1s, got 500 ms",
    ]);
    expect(load("mqtt: { tcp_keepalive: 0 }").mqtt.tcp_keepalive).toBe(0);
    expect(problemsOf(() => load("mqtt: { receive_maximum: 0 }"))).toHaveLength(1);
    expect(problemsOf(() => load("mqtt: { max_outbound_bytes: 512KiB }"))).toHaveLength(1);
  });

  it("resolves relative paths against the file's directory, defaults against cwd", () => {
    const c = load("upstream: { credentials: ../x.creds }");
    expect(c.upstream.credentials).toBe(path.resolve(dir, "../x.creds"));
    expect(c.gateway.data_dir).toBe(path.join(CWD, "data"));
    const fromEnv = load("gateway: { data_dir: ./here }", { LEAFGATE_GATEWAY_DATA_DIR: "there" });
    expect(fromEnv.gateway.data_dir).toBe(path.join(CWD, "there"));
  });

  it("deep-freezes the result", () => {
    const c = load(FULL);
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.mqtt.listeners)).toBe(true);
    expect(Object.isFrozen(c.mqtt.listeners[0])).toBe(true);
    expect(Object.isFrozen(c.upstream.tls)).toBe(true);
    expect(() => {
      (c.mqtt.listeners[0] as { port: number }).port = 1;
    }).toThrow(TypeError);
  });
});

describe("validation", () => {
  it.each([
    [
      "upstream: { servers: [localhost] }",
      'upstream.servers[0]: expected nats://host:port, got "localhost"',
    ],
    [
      "mqtt: { listeners: [ { port: 1 }, { port: abc } ] }",
      'mqtt.listeners[1].port: expected an integer from 0 to 65535, got "abc"',
    ],
    ["upstream: { mode: js }", 'upstream.mode: expected one of jetstream, core, got "js"'],
    ["mqtt: { listners: [] }", 'mqtt.listners: unknown key (did you mean "listeners"?)'],
    [
      "mqtt: { foo: 1 }",
      "mqtt.foo: unknown key (expected one of listeners, allow_anonymous, max_keepalive, connect_timeout, max_packet_size, max_connections, max_pending_connections, max_connect_size, max_connections_per_address, max_inflight, max_queued_messages, max_session_queued_bytes, max_session_expiry, max_sessions, session_store_max_bytes, max_subscriptions_per_client, max_retained_messages, max_retained_bytes, topic_alias_maximum, max_topic_length, max_topic_levels, max_outbound_bytes, receive_maximum, tcp_keepalive)",
    ],
    ["upstream: { servers: [] }", "upstream.servers: expected at least 1 entry, got an empty list"],
    [
      "upstream: { export: [ 'a.>.b' ] }",
      'upstream.export[0]: expected a NATS subject pattern, got "a.>.b"',
    ],
    [
      "upstream: { import: [ 'a..b' ] }",
      'upstream.import[0]: expected a NATS subject pattern, got "a..b"',
    ],
    [
      "upstream: { prefix: 'edge.*' }",
      'upstream.prefix: expected a subject without wildcards, got "edge.*"',
    ],
    [
      "upstream: { stream: A.B }",
      'upstream.stream: expected a stream name: one subject token (no ".", "*", ">" or whitespace), got "A.B"',
    ],
    [
      "gateway: { id: pi.local }",
      'gateway.id: expected one subject token (no ".", "*", ">" or whitespace), got "pi.local"',
    ],
    [
      "buffer: { classes: [ { subjects: [ a ] } ] }",
      "buffer.classes[0].name: expected a class name, got nothing",
    ],
    [
      "buffer: { classes: [ { name: default, subjects: [ b ] } ] }",
      'buffer.classes[0].name: "default" is reserved for subjects no class names',
    ],
    [
      "buffer: { classes: [ { name: x, subjects: [] } ] }",
      "buffer.classes[0].subjects: expected at least 1 entry, got an empty list",
    ],
    [
      "buffer: { classes: [ { name: x, subjects: [ a ] }, { name: x, subjects: [ b ] } ] }",
      'buffer.classes[1].name: "x" is named twice',
    ],
    [
      "buffer: { commit_interval: 2s }",
      'buffer.commit_interval: expected a duration of at most 1s, got "2s"',
    ],
    [
      "mqtt: { connect_timeout: soon }",
      'mqtt.connect_timeout: expected a duration like 250ms, 10s, 5m, 2h, 7d (or a number of seconds), got "soon"',
    ],
    [
      "mqtt: { max_packet_size: 1XB }",
      'mqtt.max_packet_size: expected a size like 512KiB, 1MB, 1GB (or a number of bytes), got "1XB"',
    ],
    [
      "mqtt: { max_packet_size: 1GB }",
      'mqtt.max_packet_size: expected a size from 1 to 268435460 bytes, got "1GB"',
    ],
    [
      "mqtt: { max_topic_length: 64KiB }",
      'mqtt.max_topic_length: expected a size from 1 to 65535 bytes, got "64KiB"',
    ],
    [
      "mqtt: { max_topic_levels: 0 }",
      "mqtt.max_topic_levels: expected an integer from 1 to 65535, got 0",
    ],
    ["http: { enabled: yes }", 'http.enabled: expected true or false, got "yes"'],
    ["upstream: { user: bob }", "upstream.user: set without upstream.password"],
    ["upstream: { password: pw }", "upstream.password: set without upstream.user"],
    [
      "upstream: { token: t, nkey_seed: SU }",
      "upstream: expected at most one of user/password, token, credentials, nkey_seed, got token, nkey_seed",
    ],
    ["upstream: { token: 42 }", "upstream.token: expected a non-empty string, got a number"],
    ["[1, 2]", "top level: expected a mapping, got a list"],
    ["mqtt: 5", "mqtt: expected a mapping, got 5"],
  ])("%s", (text, problem) => {
    expect(problemsOf(() => load(text))).toStrictEqual([problem]);
  });

  it("checks server URLs", () => {
    const ok = [
      "nats://h",
      "tls://h:4222",
      "nats://u:p@h:1",
      "nats://tok@10.0.0.1:65535",
      "nats://[::1]:4222",
    ];
    expect(load(`upstream: { servers: ${JSON.stringify(ok)} }`).upstream.servers).toStrictEqual(ok);
    const bad = ["http://h:4222", "nats://:4222", "nats://h:0", "nats://h:65536", "nats://h:x"];
    expect(problemsOf(() => load(`upstream: { servers: ${JSON.stringify(bad)} }`))).toHaveLength(5);
  });

  it("masks the password of a server URL in problems", () => {
    expect(
      problemsOf(() => load("upstream: { servers: [ 'nats://u:hunter2@h:99999' ] }")),
    ).toStrictEqual(['upstream.servers[0]: expected nats://host:port, got "nats://u:***@h:99999"']);
  });

  it("reports every problem at once, in the file's message", () => {
    const file = writeFile(
      "mqtt: { max_keepalive: -1 }\nupstream: { mode: js, servers: [x] }\nlog: { lvl: 1 }",
    );
    let error: ConfigError | undefined;
    try {
      loadConfig({ file, env: {}, hostname: "h", cwd: CWD });
    } catch (err) {
      error = err as ConfigError;
    }
    expect(error?.code).toBe("LG_ERR_CONFIG_INVALID");
    expect(error?.message).toBe(
      `invalid configuration in ${file}:\n` +
        "  mqtt.max_keepalive: expected an integer from 0 to 65535, got -1\n" +
        '  upstream.servers[0]: expected nats://host:port, got "x"\n' +
        '  upstream.mode: expected one of jetstream, core, got "js"\n' +
        '  log.lvl: unknown key (did you mean "level"?)',
    );
  });
});

describe("environment overrides", () => {
  it("matches names greedily against keys with underscores", () => {
    const c = load("upstream: { max_in_flight: 10 }", {
      LEAFGATE_GATEWAY_DATA_DIR: "/var/lib/lg",
      LEAFGATE_UPSTREAM_MAX_IN_FLIGHT: "20",
      LEAFGATE_BUFFER_DURABILITY: "fsync",
      LEAFGATE_BUFFER_COMMIT_INTERVAL: "20ms",
      LEAFGATE_HTTP_ENABLED: "false",
      LEAFGATE_UPSTREAM_TLS_CA: "ca.pem",
      LEAFGATE_CONFIG: "/ignored.yaml",
    });
    expect(c.gateway.data_dir).toBe("/var/lib/lg");
    expect(c.upstream.max_in_flight).toBe(20);
    expect(c.buffer.durability).toBe("fsync");
    expect(c.buffer.commit_interval).toBe(20);
    expect(c.http.enabled).toBe(false);
    expect(c.upstream.tls).toStrictEqual({ ca: path.join(CWD, "ca.pem") });
  });

  it("takes comma lists and YAML flow values", () => {
    const c = load(undefined, {
      LEAFGATE_UPSTREAM_SERVERS: "nats://a:4222, nats://b:4222",
      LEAFGATE_MQTT_LISTENERS: "[{host: 0.0.0.0, port: 1883}, {port: 1884}]",
      LEAFGATE_UPSTREAM: "{mode: core}",
    });
    expect(c.upstream.servers).toStrictEqual(["nats://a:4222", "nats://b:4222"]);
    expect(c.mqtt.listeners).toStrictEqual([
      { host: "0.0.0.0", port: 1883, websocket: false },
      { host: "127.0.0.1", port: 1884, websocket: false },
    ]);
    expect(c.upstream.mode).toBe("core");
  });

  it("merges mappings, lets a specific variable win, and unsets on an empty value", () => {
    const c = load("upstream: { stream: S, servers: [ 'nats://f:4222' ] }", {
      LEAFGATE_UPSTREAM: "{mode: core, stream: X}",
      LEAFGATE_UPSTREAM_MODE: "jetstream",
      LEAFGATE_UPSTREAM_STREAM: "",
    });
    expect(c.upstream.servers).toStrictEqual(["nats://f:4222"]);
    expect(c.upstream.mode).toBe("jetstream");
    expect(c.upstream.stream).toBeNull();
    expect(
      problemsOf(() =>
        load("http: { port: 1 }", { LEAFGATE_HTTP: "{hots: x}", LEAFGATE_HTTP_PORT: "x" }),
      ),
    ).toStrictEqual([
      'LEAFGATE_HTTP_PORT: expected an integer from 0 to 65535, got "x"',
      'LEAFGATE_HTTP.hots: unknown key (did you mean "host"?)',
    ]);
  });

  it("names the variable in its problems", () => {
    expect(
      problemsOf(() =>
        load("mqtt: { max_keepalive: 5 }", {
          LEAFGATE_MQTT_PROT: "1",
          LEAFGATE_UPSTREAM_MODE: "js",
          LEAFGATE_MQTT_LISTENERS: "[{port: abc}]",
          LEAFGATE_UPSTREAM_SERVERS: "nats://a:4222,localhost",
          LEAFGATE_HTTP: "{hots: x}",
          LEAFGATE_LOG: "[oops",
        }),
      ),
    ).toStrictEqual([
      expect.stringMatching(/^LEAFGATE_LOG: invalid YAML: /),
      "LEAFGATE_MQTT_PROT: no such setting",
      'LEAFGATE_MQTT_LISTENERS[0].port: expected an integer from 0 to 65535, got "abc"',
      'LEAFGATE_UPSTREAM_SERVERS[1]: expected nats://host:port, got "localhost"',
      'LEAFGATE_UPSTREAM_MODE: expected one of jetstream, core, got "js"',
      'LEAFGATE_HTTP.hots: unknown key (did you mean "host"?)',
    ]);
  });
});

describe("file errors", () => {
  it("reports a syntax error with file, line and column", () => {
    const file = writeFile("mqtt:\n  max_keepalive: 60\nupstream: [a, b\nlog: {}\n");
    try {
      loadConfig({ file, env: {} });
      expect.unreachable();
    } catch (err) {
      expect((err as ConfigError).code).toBe("LG_ERR_CONFIG_SYNTAX");
      expect((err as ConfigError).message).toMatch(
        new RegExp(`^syntax error in ${file} at line 4, column 1: `),
      );
    }
  });

  it("reports a missing file", () => {
    const file = path.join(dir, "missing.yaml");
    expect(() => loadConfig({ file, env: {} })).toThrow(
      expect.objectContaining({
        code: "LG_ERR_CONFIG_NOT_FOUND",
        message: expect.stringContaining(file),
      }),
    );
  });

  it("names defaults/environment when there is no file", () => {
    expect(() => loadConfig({ env: { LEAFGATE_LOG_LEVEL: "loud" }, hostname: "h" })).toThrow(
      'invalid configuration in defaults/environment:\n  LEAFGATE_LOG_LEVEL: expected one of debug, info, warn, error, got "loud"',
    );
  });
});

describe("options for the parts", () => {
  it("maps snake_case keys to each part's camelCase options", () => {
    const c = load(FULL);
    expect(brokerLimits(c)).toMatchObject({
      maxKeepaliveS: 120,
      connectTimeoutMs: 250,
      maxPacketSize: 524_288,
      allowAnonymous: false,
      maxQueued: 1000,
      maxSessionExpiryMs: 7 * 86_400_000,
      maxTopicBytes: 1024,
      maxOutboundBytes: 4 * 1024 * 1024,
      receiveMaximum: 20,
    });
    const { limits, ...commit } = outboxOptions(c);
    expect(commit).toStrictEqual({ commitIntervalMs: 5, commitMaxRows: 500 });
    expect([limits.maxBytes, limits.maxMessages, limits.maxAgeMs, limits.onFull]).toStrictEqual([
      2_000_000_000,
      10_000_000,
      30 * 86_400_000,
      "drop_oldest",
    ]);
    // name, subjects, onFull, maxBytes, maxMessages, maxAgeMs
    expect(limits.classes.map((k) => Object.values(k))).toStrictEqual([
      ["alarms", ["alarms.>"], "reject", null, 100_000, null],
      ["telemetry", [">"], "drop_oldest", 536_870_912, null, null],
    ]);
    expect(limits.classes.map((k) => Object.keys(k).join())).toStrictEqual([
      "name,subjects,onFull,maxBytes,maxMessages,maxAgeMs",
      "name,subjects,onFull,maxBytes,maxMessages,maxAgeMs",
    ]);
    expect(retainedLimits(c)).toStrictEqual({ maxMessages: 10_000, maxBytes: 64 * 1024 ** 2 });
    expect(authorizationOptions(c)).toMatchObject({
      users: [],
      allowAnonymous: false,
      hubOnly: ["cmd.gw-kitchen.>"],
      failedLoginsPerAddress: 10,
      failedLoginWindowMs: 60_000,
    });
    expect(mqttListeners(c)).toStrictEqual([
      {
        host: "127.0.0.1",
        port: 1883,
        transport: { websocket: false, tcpKeepaliveMs: 7_200_000 },
      },
      { host: "0.0.0.0", port: 0, transport: { websocket: false, tcpKeepaliveMs: 7_200_000 } },
    ]);
  });
});

describe("formatConfig", () => {
  const SECRETS =
    "upstream:\n  servers: [ 'nats://alice:pw@hub:4222', 'nats://tok@hub2' ]\n  token: s3cret\n";

  it("masks secrets and renders durations with units", () => {
    const text = formatConfig(load(`${SECRETS}mqtt: { connect_timeout: 250ms }`));
    expect(text).not.toMatch(/s3cret|pw@|tok@/);
    const doc = YAML.parse(text);
    expect(doc.upstream.token).toBe("***");
    expect(doc.upstream.servers).toStrictEqual(["nats://alice:***@hub:4222", "nats://***@hub2"]);
    expect(doc.mqtt.connect_timeout).toBe("250ms");
    expect(doc.upstream.ack_timeout).toBe("10s");
  });

  it("round-trips once secrets are restored", () => {
    for (const text of [FULL, SECRETS, "upstream: { user: u, password: p }"]) {
      const config = load(text);
      const doc = YAML.parse(formatConfig(config));
      doc.upstream.servers = config.upstream.servers;
      for (const key of ["password", "token", "nkey_seed"] as const) {
        if (config.upstream[key] !== undefined) doc.upstream[key] = config.upstream[key];
      }
      expect(load(YAML.stringify(doc))).toStrictEqual(config);
    }
  });
});

/** A well-formed `leafgate passwd` hash (its password does not matter here). */
const HASH = "$scrypt$N=16384,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA";

describe("mqtt.allow_anonymous", () => {
  it("defaults to true only without users and with every listener on loopback", () => {
    expect(
      load("mqtt: { listeners: [ { host: 127.0.0.2 }, { host: localhost } ] }").mqtt
        .allow_anonymous,
    ).toBe(true);
    expect(
      load("mqtt: { listeners: [ { host: 127.0.0.1 }, { host: 0.0.0.0 } ] }").mqtt.allow_anonymous,
    ).toBe(false);
    // Once anyone has a password, no one gets in without one unless the file says so.
    const users = `authorization: { users: [ { user: u, password: "${HASH}" } ] }`;
    expect(load(users).mqtt.allow_anonymous).toBe(false);
    expect(load(`${users}\nmqtt: { allow_anonymous: true }`).mqtt.allow_anonymous).toBe(true);
  });

  it("follows the file when set", () => {
    expect(
      load("mqtt: { listeners: [ { host: 0.0.0.0 } ], allow_anonymous: true }").mqtt
        .allow_anonymous,
    ).toBe(true);
    expect(load("mqtt: { allow_anonymous: false }").mqtt.allow_anonymous).toBe(false);
  });
});

describe("nats", () => {
  it("allow_anonymous defaults to true only without users or a token and with every NATS listener on loopback", () => {
    expect(load("").nats.allow_anonymous).toBe(true);
    expect(load("nats: { listeners: [ { host: 0.0.0.0 } ] }").nats.allow_anonymous).toBe(false);
    expect(load(`authorization: { token: "${HASH}" }`).nats.allow_anonymous).toBe(false);
    const users = `authorization: { users: [ { user: u, password: "${HASH}" } ] }`;
    expect(load(users).nats.allow_anonymous).toBe(false);
    expect(load(`${users}\nnats: { allow_anonymous: true }`).nats.allow_anonymous).toBe(true);
    // Each protocol has its own switch.
    expect(load("mqtt: { listeners: [ { host: 0.0.0.0 } ] }").nats.allow_anonymous).toBe(true);
  });

  it("refuses a hub on the gateway's own NATS listener, by default port or any-address", () => {
    expect(() => load('upstream: { servers: [ "nats://127.0.0.1:4222" ] }')).toThrow(
      "upstream.servers[0]: nats://127.0.0.1:4222 is this gateway's own NATS listener (nats.listeners, 127.0.0.1:4222): point upstream.servers at the hub, or move the listener to another port",
    );
    expect(() => load('upstream: { servers: [ "nats://localhost" ] }')).toThrow(
      /upstream.servers\[0\]: nats:\/\/localhost is this gateway's own NATS listener/,
    );
    expect(() =>
      load(
        'nats: { listeners: [ { host: 0.0.0.0, port: 5222 } ] }\nupstream: { servers: [ "nats://hub:4222", "nats://127.0.0.1:5222" ] }',
      ),
    ).toThrow(/upstream.servers\[1\]: nats:\/\/127.0.0.1:5222 is this gateway's own NATS listener/);
    // Another port, or no NATS listener at all: fine.
    expect(load('upstream: { servers: [ "nats://127.0.0.1:4223" ] }').upstream.servers).toEqual([
      "nats://127.0.0.1:4223",
    ]);
    expect(
      load('nats: { listeners: [] }\nupstream: { servers: [ "nats://127.0.0.1:4222" ] }').nats
        .listeners,
    ).toEqual([]);
  });
});

describe("serial.ports[].silent_after", () => {
  const ports = (extra: string) =>
    loadConfig({
      env: { LEAFGATE_SERIAL_PORTS: `[{path: /dev/a, device: d, profile: p${extra}}]` },
      hostname: "h",
    }).serial.ports;

  it("is a duration in ms, null unless given", () => {
    expect(ports("")[0]!.silent_after).toBeNull();
    expect(ports(", silent_after: 3s")[0]!.silent_after).toBe(3000);
    expect(ports(", silent_after: 2m")[0]!.silent_after).toBe(120_000);
  });

  it("refuses what is no positive duration", () => {
    expect(() => ports(", silent_after: soon")).toThrow(
      'LEAFGATE_SERIAL_PORTS[0].silent_after: expected a duration like 250ms, 10s, 5m, 2h, 7d (or a number of seconds), got "soon"',
    );
    expect(() => ports(", silent_after: 0")).toThrow(/LEAFGATE_SERIAL_PORTS\[0\]\.silent_after: /);
  });
});
