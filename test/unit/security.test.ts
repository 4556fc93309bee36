// The pure parts of "secrets never leak, insecure choices are warned about": which config
// keys hold secrets, how text is scrubbed, the credentials a server URL carries, every
// start-up warning (exact text) and none for a secure config, and how buffer.max_file_size
// is shared between the database and its WAL. The bundle-level proofs are in
// test/e2e/secrets-in-logs.test.ts, insecure-warnings.test.ts and file-modes.test.ts.
import { chmodSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  insecureChoices,
  type LeafgateConfig,
  loadConfig,
  maskUrls,
  secretRedactor,
  secretsOf,
  urlCredentials,
  withoutCredentials,
} from "../../src/config/index.js";
import { secretPaths } from "../../src/config/security.js";
import { silentLogger } from "../../src/core/index.js";
import { createLogger } from "../../src/observe/index.js";
import { fileCap } from "../../src/store/database.js";
import { tightenFile } from "../../src/store/file-modes.js";
import { type TempDir, tempDir } from "../helpers/wait.js";

const SEED = "SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU";

let dirs: TempDir[] = [];
afterEach(async () => {
  for (const d of dirs) await d.cleanup();
  dirs = [];
});

function scratch(): string {
  const d = tempDir("security");
  dirs.push(d);
  return d.path;
}

/** Writes `yaml` as leafgate.yaml with `mode`, loads it; returns the config and the file. */
function configFile(yaml: string, mode = 0o600): { config: LeafgateConfig; file: string } {
  const file = join(scratch(), "leafgate.yaml");
  writeFileSync(file, yaml);
  chmodSync(file, mode);
  return { config: loadConfig({ file, env: {}, hostname: "h" }), file };
}

const codesAndMessages = (warnings: ReturnType<typeof insecureChoices>) =>
  warnings.map((w) => [w.code, w.message]);

describe("secretPaths: which keys of a config file hold secrets", () => {
  it("names secret keys, and server URLs with user info, and nothing else", () => {
    const raw = {
      gateway: { id: "gw" },
      upstream: {
        servers: ["nats://hub:4222", "nats://u:p@hub:4222", "tls://tok@hub"],
        user: "edge",
        password: "pw",
        token: "t",
        nkey_seed: SEED,
        credentials: "/etc/gw.creds",
      },
      authorization: { users: [{ user: "a", password: "$scrypt$..." }, { user: "b" }] },
    };
    expect(secretPaths(raw)).toStrictEqual([
      "upstream.servers[1]",
      "upstream.servers[2]",
      "upstream.password",
      "upstream.token",
      "upstream.nkey_seed",
      "authorization.users[0].password",
    ]);
    expect(secretPaths({ upstream: { servers: ["nats://hub:4222"], user: "edge" } })).toEqual([]);
  });
});

describe("scrubbing text", () => {
  it("masks URL user info anywhere, keeping the user name", () => {
    expect(maskUrls('{"err":"dial nats://edge:pw@hub:4222 and tls://tok@h2 failed"}')).toBe(
      '{"err":"dial nats://edge:***@hub:4222 and tls://***@h2 failed"}',
    );
    expect(maskUrls("nats://hub:4222 plain")).toBe("nats://hub:4222 plain");
  });

  it("masks known secrets as written and as escaped inside JSON, and any nkey seed", () => {
    const scrub = secretRedactor(['pa"ss\\word', "t0ken-xyz"]);
    const line = JSON.stringify({ a: 'pa"ss\\word', b: "x t0ken-xyz y", c: SEED, d: "ok" });
    expect(scrub(line)).toBe('{"a":"***","b":"x *** y","c":"***","d":"ok"}');
    expect(scrub('raw pa"ss\\word')).toBe("raw ***");
  });

  it("does not search free text for secrets shorter than 4 characters", () => {
    expect(secretRedactor(["abc"])("abc abcdef")).toBe("abc abcdef");
  });
});

describe("the logger: secrets masked in every line", () => {
  function capture(secrets: string[]): { log: ReturnType<typeof createLogger>; lines: string[] } {
    const lines: string[] = [];
    const log = createLogger({
      level: "debug",
      pretty: false,
      scrub: secretRedactor(secrets),
      destination: { write: (line: string) => lines.push(line) },
    });
    return { log, lines };
  }

  it("by key, at any of the first three levels, whatever the value", () => {
    const { log, lines } = capture([]);
    log.info({ password: "a1", nested: { token: "b2", deeper: { nkey_seed: "c3" } } }, "keys");
    log.info({ pass: "d4", jwt: "e5", seed: "f6" }, "more keys");
    const records = lines.map((l) => JSON.parse(l));
    expect(records[0]).toMatchObject({
      password: "***",
      nested: { token: "***", deeper: { nkey_seed: "***" } },
    });
    expect(records[1]).toMatchObject({ pass: "***", jwt: "***", seed: "***" });
  });

  it("by value, in messages, fields and errors (message and stack), and URLs and seeds unknown to it", () => {
    const { log, lines } = capture(["hub-pass-1234"]);
    const err = new Error("connect to nats://edge:hub-pass-1234@hub:4222 refused");
    log.error({ err, server: "nats://tok-unknown@hub2:4222", seed: undefined }, "dial failed");
    log.warn({ detail: `seed ${SEED} in text` }, "the password is hub-pass-1234");
    const text = lines.join("");
    expect(text).not.toContain("hub-pass-1234");
    expect(text).not.toContain("tok-unknown");
    expect(text).not.toContain(SEED);
    const [first, second] = lines.map((l) => JSON.parse(l));
    expect(first.err.message).toBe("connect to nats://edge:***@hub:4222 refused");
    expect(first.server).toBe("nats://***@hub2:4222");
    expect(second.msg).toBe("the password is ***");
  });

  it("a secret that is also part of the JSON (digits in a number) leaves valid JSON", () => {
    const { log, lines } = capture(["4222"]);
    log.info({ port: 14222, note: "pin 4222" }, "digits");
    const record = JSON.parse(lines[0]!);
    expect(record.port).toBe(14222);
    expect(record.note).toBe("pin ***");
  });
});

describe("credentials in server URLs", () => {
  it("user:password and a bare token, percent-decoded; the URL without them", () => {
    expect(urlCredentials("nats://edge:p%40ss@hub:4222")).toStrictEqual({
      user: "edge",
      password: "p@ss",
    });
    expect(urlCredentials("tls://s3cr3t@hub:4222")).toStrictEqual({ token: "s3cr3t" });
    expect(urlCredentials("nats://hub:4222")).toBeUndefined();
    expect(withoutCredentials("nats://edge:p%40ss@hub:4222")).toBe("nats://hub:4222");
  });

  it("secretsOf: hub password, token, seed, URL secrets, .creds lines, user hashes", () => {
    const dir = scratch();
    const creds = join(dir, "gw.creds");
    writeFileSync(
      creds,
      `-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJVQSJ9.c2ln\n------END NATS USER JWT------\n\n` +
        `************************* IMPORTANT *************************\nNKEY Seed printed below can be used to sign and prove identity.\n\n` +
        `-----BEGIN USER NKEY SEED-----\n${SEED}\n------END USER NKEY SEED------\n`,
    );
    const { config } = configFile(`upstream:
  servers: [ "nats://edge:p%40ssword@hub:4222", "nats://t0ken-abc@hub2:4222" ]
  credentials: ${creds}
authorization:
  users: [ { user: a, password: "$scrypt$N=16384,r=8,p=1$c2FsdA==$aGFzaA==" } ]
`);
    expect(secretsOf(config)).toStrictEqual([
      SEED,
      "$scrypt$N=16384,r=8,p=1$c2FsdA==$aGFzaA==",
      "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJVQSJ9.c2ln",
      "p%40ssword",
      "t0ken-abc",
      "p@ssword",
    ]);
  });
});

describe("insecureChoices: one exact warning per insecure choice", () => {
  it("a secure config: none (loopback listeners, TLS hub, private files, not root)", () => {
    const { config, file } = configFile(
      `upstream: { servers: [ "tls://hub.example:4222", "nats://127.0.0.1:4223" ], user: edge, password: pw-123456 }\n`,
    );
    expect(insecureChoices(config, { configFile: file, uid: 1000 })).toStrictEqual([]);
  });

  it("a readable config file holding secrets, a writable one", () => {
    const readable = configFile(`upstream: { token: t0ken-123 }\n`, 0o644);
    expect(
      codesAndMessages(insecureChoices(readable.config, { configFile: readable.file })),
    ).toStrictEqual([
      [
        "LG_WARN_CONFIG_READABLE",
        `config file ${readable.file} holds secrets (upstream.token) and is readable by other users (mode 0644): chmod 600 it, or pass the secrets as LEAFGATE_* environment variables`,
      ],
    ]);
    // Readable without secrets is fine; writable by others is not, secrets or not.
    const writable = configFile(`gateway: { id: gw }\n`, 0o666);
    expect(
      codesAndMessages(insecureChoices(writable.config, { configFile: writable.file })),
    ).toStrictEqual([
      [
        "LG_WARN_CONFIG_WRITABLE",
        `config file ${writable.file} is writable by other users (mode 0666), who could point the gateway at their own hub or open it to anyone: chmod 600 it (or 644 if it holds no secret)`,
      ],
    ]);
  });

  it("key and credentials files readable by others", () => {
    const dir = scratch();
    const creds = join(dir, "gw.creds");
    const key = join(dir, "server.key");
    writeFileSync(creds, "x");
    writeFileSync(key, "x");
    chmodSync(creds, 0o640);
    chmodSync(key, 0o604);
    const { config } = configFile(`mqtt:
  listeners: [ { host: 127.0.0.1, port: 8883, tls: { cert: ${key}, key: ${key} } } ]
upstream: { credentials: ${creds} }
`);
    expect(codesAndMessages(insecureChoices(config))).toStrictEqual([
      [
        "LG_WARN_SECRET_FILE_READABLE",
        `upstream.credentials ${creds} is readable by other users (mode 0640): chmod 600 it`,
      ],
      [
        "LG_WARN_SECRET_FILE_READABLE",
        `mqtt.listeners[0].tls.key ${key} is readable by other users (mode 0604): chmod 600 it`,
      ],
    ]);
  });

  it("plain TCP and anonymous access on non-loopback MQTT listeners; not on loopback or TLS", () => {
    const dir = scratch();
    const key = join(dir, "k.pem");
    writeFileSync(key, "x");
    chmodSync(key, 0o600);
    const { config } = configFile(`mqtt:
  allow_anonymous: true
  listeners:
    - { host: 127.0.0.1, port: 1883 }
    - { host: 0.0.0.0, port: 1883 }
    - { host: "::", port: 8080, websocket: true }
    - { host: 0.0.0.0, port: 8883, tls: { cert: ${key}, key: ${key} } }
`);
    expect(codesAndMessages(insecureChoices(config))).toStrictEqual([
      [
        "LG_WARN_MQTT_PLAINTEXT",
        "MQTT listener 0.0.0.0:1883 is not loopback and has no TLS: anyone on the network can read the passwords and messages of its clients, and change them: add tls: { cert, key } to it, or listen on 127.0.0.1",
      ],
      [
        "LG_WARN_MQTT_ANONYMOUS",
        "MQTT listener 0.0.0.0:1883 is not loopback and accepts clients without a password (mqtt.allow_anonymous: true): anyone who reaches it may publish and subscribe as authorization.default_permissions allow: configure authorization.users and set mqtt.allow_anonymous: false",
      ],
      [
        "LG_WARN_MQTT_PLAINTEXT",
        "MQTT WebSocket listener [::]:8080 is not loopback and has no TLS: anyone on the network can read the passwords and messages of its clients, and change them: add tls: { cert, key } to it, or listen on 127.0.0.1",
      ],
      [
        "LG_WARN_MQTT_ANONYMOUS",
        "MQTT WebSocket listener [::]:8080 is not loopback and accepts clients without a password (mqtt.allow_anonymous: true): anyone who reaches it may publish and subscribe as authorization.default_permissions allow: configure authorization.users and set mqtt.allow_anonymous: false",
      ],
      [
        "LG_WARN_MQTT_ANONYMOUS",
        "MQTT listener 0.0.0.0:8883 is not loopback and accepts clients without a password (mqtt.allow_anonymous: true): anyone who reaches it may publish and subscribe as authorization.default_permissions allow: configure authorization.users and set mqtt.allow_anonymous: false",
      ],
    ]);
  });

  it("plain TCP and anonymous access on non-loopback NATS listeners; not on loopback or TLS", () => {
    const dir = scratch();
    const key = join(dir, "k.pem");
    writeFileSync(key, "x");
    chmodSync(key, 0o600);
    const { config } = configFile(`nats:
  listeners:
    - { host: 127.0.0.1, port: 4222 }
    - { host: 0.0.0.0, port: 4222 }
    - { host: 0.0.0.0, port: 4443, tls: { cert: ${key}, key: ${key} } }
  allow_anonymous: true
`);
    expect(codesAndMessages(insecureChoices(config))).toStrictEqual([
      [
        "LG_WARN_NATS_PLAINTEXT",
        "NATS listener 0.0.0.0:4222 is not loopback and has no TLS: anyone on the network can read the passwords and messages of its clients, and change them: add tls: { cert, key } to it, or listen on 127.0.0.1",
      ],
      [
        "LG_WARN_NATS_ANONYMOUS",
        "NATS listener 0.0.0.0:4222 is not loopback and accepts clients without a password (nats.allow_anonymous: true): anyone who reaches it may publish and subscribe as authorization.default_permissions allow: configure authorization.users and set nats.allow_anonymous: false",
      ],
      [
        "LG_WARN_NATS_ANONYMOUS",
        "NATS listener 0.0.0.0:4443 is not loopback and accepts clients without a password (nats.allow_anonymous: true): anyone who reaches it may publish and subscribe as authorization.default_permissions allow: configure authorization.users and set nats.allow_anonymous: false",
      ],
    ]);
  });

  it("HTTP monitoring on a non-loopback address", () => {
    const { config } = configFile("http: { host: 0.0.0.0, port: 8222 }\n");
    expect(codesAndMessages(insecureChoices(config))).toStrictEqual([
      [
        "LG_WARN_HTTP_EXPOSED",
        "HTTP monitoring 0.0.0.0:8222 is not loopback: /status and /metrics are open to anyone who reaches it, without TLS or a password: set http.host: 127.0.0.1 (and scrape through a tunnel or a proxy), or http.enabled: false",
      ],
    ]);
  });

  it("a non-loopback hub without TLS, with and without a password; never the password itself", () => {
    const plain = configFile(`upstream:
  servers: [ "nats://hub-1:4222", "nats://edge:pw-secret@10.0.0.2:4222", "nats://localhost:4223", "tls://hub-3:4222" ]
`);
    expect(codesAndMessages(insecureChoices(plain.config))).toStrictEqual([
      [
        "LG_WARN_HUB_PLAINTEXT",
        "hub nats://hub-1:4222 is not loopback and is reached without TLS: every message and the hub's commands cross the network in clear, and anyone on the path can forge commands: use tls://hub-1:4222 (with upstream.tls.ca for a private CA)",
      ],
      [
        "LG_WARN_HUB_PLAINTEXT",
        "hub nats://10.0.0.2:4222 is not loopback and is reached without TLS: the gateway's password or token, every message and the hub's commands cross the network in clear, and anyone on the path can forge commands: use tls://10.0.0.2:4222 (with upstream.tls.ca for a private CA)",
      ],
    ]);
    // upstream.tls makes every server TLS (nats.js then refuses a hub without it).
    const dir = scratch();
    const ca = join(dir, "ca.pem");
    writeFileSync(ca, "x");
    const tls = configFile(`upstream: { servers: [ "nats://hub-1:4222" ], tls: { ca: ${ca} } }\n`);
    expect(insecureChoices(tls.config)).toStrictEqual([]);
  });

  it("running as root", () => {
    const { config } = configFile("gateway: { id: gw }\n");
    expect(codesAndMessages(insecureChoices(config, { uid: 0 }))).toStrictEqual([
      [
        "LG_WARN_RUNNING_AS_ROOT",
        "running as root: a flaw in the gateway or a library it uses would give the whole machine away: run it as an unprivileged user that owns gateway.data_dir (systemd: User=, with AmbientCapabilities=CAP_NET_BIND_SERVICE for ports below 1024)",
      ],
    ]);
  });
});

describe("tightenFile: a gateway file wider than 0600", () => {
  it("is set to 0600 with a warning; a symbolic link is never followed", () => {
    const dir = scratch();
    const file = join(dir, "leafgate.db");
    const elsewhere = join(dir, "not-ours");
    const link = join(dir, "leafgate.db-wal");
    writeFileSync(file, "");
    writeFileSync(elsewhere, "");
    chmodSync(file, 0o644);
    chmodSync(elsewhere, 0o644);
    symlinkSync(elsewhere, link);
    const warnings: string[] = [];
    const log = { ...silentLogger, warn: (_: unknown, msg: string) => warnings.push(msg) };
    tightenFile(file, log);
    tightenFile(link, log);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(elsewhere).mode & 0o777).toBe(0o644);
    expect(warnings).toStrictEqual([`${file} was 0644: set to 0600`]);
  });
});

describe("fileCap: buffer.max_file_size shared between the database and its WAL", () => {
  it("the database at its cap plus the largest WAL never exceed max_file_size", () => {
    for (const max of [1024 ** 2, 3_000_000, 16 * 1024 ** 2, 1e9, 64 * 1024 ** 3]) {
      for (const pageSize of [1024, 4096, 8192, 65536]) {
        const cap = fileCap(max, pageSize);
        const frame = pageSize + 24;
        // Frames left by earlier commits (fewer than the checkpoint interval), plus one
        // transaction that rewrites every page of the database.
        const worstWal = 32 + (cap.checkpointFrames - 1 + cap.databasePages) * frame;
        expect(cap.walBytes).toBe(worstWal);
        expect(cap.databasePages * pageSize + worstWal).toBeLessThanOrEqual(max);
        // ... and nearly all of the cap is used: one more page would not fit.
        expect((cap.databasePages + 1) * pageSize + worstWal + frame).toBeGreaterThan(max);
      }
    }
  });

  it("1 MiB with 4 KiB pages: 120 pages of database, a checkpoint every 15 frames", () => {
    expect(fileCap(1024 ** 2, 4096)).toStrictEqual({
      maxFileBytes: 1048576,
      pageSize: 4096,
      databasePages: 120,
      checkpointFrames: 15,
      walBytes: 32 + (14 + 120) * 4120,
    });
    // Large caps keep SQLite's default checkpoint interval.
    expect(fileCap(1e9, 4096).checkpointFrames).toBe(1000);
  });
});
