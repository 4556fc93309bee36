// Secrets never leak: the bundle runs with debug logs against real nats-servers, and the
// whole of its stdout and stderr (and /status, /metrics, `leafgate check`) is searched for
// every secret it was given. Credentials in server URLs (`nats://user:pass@host`,
// `nats://token@host`) must both work and never be printed, also where the NATS client's
// errors could quote them: a wrong password, a refused port, a name that does not
// resolve, a `tls://` hub that offers no TLS. And `tls://` must mean TLS: a hub (or
// anyone in the middle) that offers none never sees the CONNECT with the password.
// The hub's own credentials (user/password, token, nkey, .creds) are covered the same way
// in hub-auth.test.ts.
import { chmodSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import type { NatsConnection } from "@nats-io/transport-node";
import { describe, expect } from "vitest";
import { hashPassword } from "../../src/mqtt/index.js";
import type { UpstreamInput } from "../helpers/config.js";
import { createEdgeStream, type Fixtures, it } from "../helpers/fixtures.js";
import { BUNDLE, type ChildGateway, childEnv } from "../helpers/gateway.js";
import { connectMqttJs, mosquittoPubLines } from "../helpers/mqtt.js";
import {
  connectClient,
  type NatsServer,
  streamInfo,
  streamMessages,
} from "../helpers/nats-server.js";
import { closedPort } from "../helpers/net.js";
import { runToCompletion } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";

const STREAM = "EDGE";
const MESSAGES = 50;
const PASSWORD = "url-pa55-s3cret";
const TOKEN = "url-t0ken-s3cret";
const DEBUG_LOG = { level: "debug" } as const;
const FAST_RETRY = { reconnect_delay_max: "100ms" } as const;

function expectNoSecret(where: string, text: string, secrets: readonly string[]): void {
  for (const secret of secrets) {
    expect(text.includes(secret), `${where} contains the secret "${secret}"`).toBe(false);
  }
}

/** A JetStream hub requiring `auth` (nats-server config text), with the stream made. */
async function hubWithStream(
  startHub: Fixtures["startHub"],
  auth: string,
  admin: { user?: string; pass?: string; token?: string },
): Promise<{ hub: NatsServer; nc: NatsConnection }> {
  const hub = await startHub({ config: auth });
  const nc = await connectClient(hub.url, admin);
  await createEdgeStream(nc);
  return { hub, nc };
}

/** A config (debug logs, ephemeral ports) with these hub servers, and the bundle on it. */
async function startChild(
  gateway: Fixtures["gateway"],
  hubServers: readonly string[],
  upstream: UpstreamInput = {},
): Promise<{ child: ChildGateway; file: string }> {
  const child = await gateway.spawn({
    upstream: { servers: hubServers, stream: STREAM, ...upstream },
    log: DEBUG_LOG,
  });
  return { child, file: child.file };
}

async function httpGet(child: ChildGateway, path: string): Promise<string> {
  return (await fetch(`http://127.0.0.1:${child.httpPort}${path}`)).text();
}

/** Everything the bundle printed and serves, for the secret search. */
async function everything(child: ChildGateway): Promise<Record<string, string>> {
  return {
    stdout: child.proc.stdout(),
    stderr: child.proc.stderr(),
    "/status": await httpGet(child, "/status"),
    "/metrics": await httpGet(child, "/metrics"),
  };
}

async function check(file: string): Promise<{ stdout: string; stderr: string }> {
  const r = await runToCompletion(process.execPath, [BUNDLE, "check", "-c", file], {
    env: childEnv(),
    timeoutMs: 15_000,
  });
  expect(r.code, r.stderr).toBe(0);
  return r;
}

describe("credentials in server URLs", () => {
  it.for([
    {
      name: "user:password",
      auth: `authorization { user: edge, password: "${PASSWORD}" }\n`,
      admin: { user: "edge", pass: PASSWORD },
      userInfo: `edge:${PASSWORD}`,
      masked: "edge:***",
      secret: PASSWORD,
    },
    {
      name: "token",
      auth: `authorization { token: "${TOKEN}" }\n`,
      admin: { token: TOKEN },
      userInfo: TOKEN,
      masked: "***",
      secret: TOKEN,
    },
  ])("$name in the URL: used to authenticate, never printed", async (c, { startHub, gateway }) => {
    const { hub, nc } = await hubWithStream(startHub, c.auth, c.admin);
    const { child, file } = await startChild(gateway, [
      `nats://${c.userInfo}@127.0.0.1:${hub.port}`,
    ]);
    const sent = Array.from({ length: MESSAGES }, (_, i) => `m-${i}`);
    await mosquittoPubLines(child.mqttPort, "secret/url", sent);
    await waitFor(async () => (await streamInfo(nc, STREAM)).state.messages >= MESSAGES, {
      message: () =>
        `the gateway did not forward with the URL's credentials\n${child.proc.describe()}`,
    });
    expect((await streamMessages(nc, STREAM)).map((m) => new TextDecoder().decode(m.data))).toEqual(
      sent,
    );
    // Debug records are there, and the URL is named (masked), or the search says little.
    const out = await everything(child);
    expect(out.stdout).toContain('"level":20');
    expect(out.stdout).toContain(`nats://${c.masked}@127.0.0.1:${hub.port}`);
    for (const [where, text] of Object.entries(out)) expectNoSecret(where, text, [c.secret]);
    const r = await check(file);
    expect(r.stdout).toContain(`nats://${c.masked}@127.0.0.1:${hub.port}`);
    expectNoSecret("leafgate check", r.stdout + r.stderr, [c.secret]);
  });

  it("errors that could quote the URL: wrong password, refused, unresolvable, tls:// without TLS", async ({
    startHub,
    gateway,
  }) => {
    const { hub } = await hubWithStream(
      startHub,
      `authorization { user: edge, password: "${PASSWORD}" }\n`,
      { user: "edge", pass: PASSWORD },
    );
    const wrong = `wr0ng-${PASSWORD}`;
    const closed = await closedPort();
    const { child } = await startChild(
      gateway,
      [
        `nats://edge:${wrong}@127.0.0.1:${hub.port}`,
        `nats://edge:${PASSWORD}@127.0.0.1:${closed}`,
        `nats://edge:${PASSWORD}@no-such-hub.invalid:4222`,
        `tls://edge:${PASSWORD}@127.0.0.1:${hub.port}`,
      ],
      FAST_RETRY,
    );
    // Every server has been dialed and failed: four different errors were reported.
    const errors = new Set<string>();
    await waitFor(
      async () => {
        const { upstream } = JSON.parse(await httpGet(child, "/status")) as {
          upstream: { lastError?: string };
        };
        if (upstream.lastError !== undefined) errors.add(upstream.lastError);
        return errors.size >= 4;
      },
      { timeoutMs: 20_000, message: () => `errors seen: ${[...errors].join(" | ")}` },
    );
    expect([...errors].some((e) => /authorization/i.test(e))).toBe(true);
    expect([...errors].some((e) => /tls/i.test(e))).toBe(true);
    await waitFor(() => child.proc.stdout().includes('"msg":"hub unreachable'));
    const out = await everything(child);
    for (const [where, text] of Object.entries(out)) {
      expectNoSecret(where, text, [PASSWORD, wrong]);
    }
    expect(hub.proc.stderr()).toContain("authentication error");
  });
});

describe("tls:// means TLS", () => {
  it("a hub that offers no TLS (or a man in the middle who strips it) never gets the CONNECT", async ({
    defer,
    gateway,
  }) => {
    // Speaks just enough NATS to be dialed: an INFO without tls_required or tls_available,
    // as a plain nats-server or an attacker rewriting the INFO would send.
    const received: Buffer[] = [];
    const sockets: Socket[] = [];
    let connections = 0;
    const fake = createServer((socket) => {
      connections++;
      sockets.push(socket);
      socket.on("data", (d) => received.push(d));
      socket.on("error", () => {});
      socket.write(
        `INFO {"server_id":"FAKE","server_name":"fake","version":"2.9.0","proto":1,"headers":true,"max_payload":1048576,"auth_required":true}\r\n`,
      );
    });
    defer(() => new Promise((r) => fake.close(r)));
    await new Promise<void>((r) => fake.listen(0, "127.0.0.1", r));
    const { port } = fake.address() as { port: number };
    const { child } = await startChild(gateway, [`tls://127.0.0.1:${port}`], {
      user: "edge",
      password: PASSWORD,
      ...FAST_RETRY,
    });
    await waitFor(() => connections >= 3, {
      message: () => `the gateway dialed ${connections} times\n${child.proc.describe()}`,
    });
    const { upstream } = JSON.parse(await httpGet(child, "/status")) as {
      upstream: { state: string; lastError?: string };
    };
    expect(upstream.state).toBe("connecting");
    expect(upstream.lastError).toMatch(/tls/i);
    const wire = Buffer.concat(received).toString("latin1");
    expect(wire).not.toContain("CONNECT");
    expectNoSecret("what the fake hub received", wire, [PASSWORD]);
    for (const s of sockets) s.destroy();
  });
});

describe("MQTT passwords and their hashes", () => {
  it("a client's right and wrong passwords and the configured hash never reach the log", async ({
    gateway,
  }) => {
    const right = "dev1ce-pa55word";
    const wrong = "wr0ng-dev1ce-pa55word";
    const hash = await hashPassword(right);
    const { file } = gateway.writeConfig({
      log: DEBUG_LOG,
      authorization: { users: [{ user: "sensor-1", password: hash }] },
    });
    chmodSync(file, 0o600);
    const child = await gateway.spawnFile(file);
    const ok = await connectMqttJs(child.mqttPort, { username: "sensor-1", password: right });
    await ok.publishAsync("sensors/sensor-1/t", "21.5", { qos: 1 });
    await ok.endAsync();
    await expect(
      connectMqttJs(child.mqttPort, { username: "sensor-1", password: wrong }),
    ).rejects.toThrow();
    await waitFor(() => child.proc.stdout().includes("sensor-1"));
    const out = await everything(child);
    for (const [where, text] of Object.entries(out))
      expectNoSecret(where, text, [right, wrong, hash]);
    const r = await check(file);
    expectNoSecret("leafgate check", r.stdout + r.stderr, [hash]);
  });
});

describe("a bad config on stderr", () => {
  it("an invalid server URL from the environment is reported with its password masked", async () => {
    const r = await runToCompletion(process.execPath, [BUNDLE, "check"], {
      env: childEnv({ LEAFGATE_UPSTREAM_SERVERS: `nats://edge:${PASSWORD}@bad host:4222` }),
      timeoutMs: 15_000,
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('got "nats://edge:***@bad host:4222"');
    expectNoSecret("stderr", r.stdout + r.stderr, [PASSWORD]);
  });
});
