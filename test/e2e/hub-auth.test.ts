// Every way leafgate can authenticate to the hub, each against a real nats-server that
// requires it: user/password, token, nkey, a .creds file (operator mode), TLS and mutual
// TLS. Wrong credentials must leave the gateway up and buffering; no secret may reach the
// gateway's output, its monitoring endpoints or `leafgate check`.
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createAccount, createOperator, createUser, type KeyPair } from "@nats-io/nkeys";
import {
  credsAuthenticator,
  type NatsConnection,
  type NodeConnectionOptions,
  nkeyAuthenticator,
  type TlsOptions,
} from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect } from "vitest";
import type { UpstreamInput } from "../helpers/config.js";
import { createEdgeStream, type Fixtures, it } from "../helpers/fixtures.js";
import { BUNDLE, type ChildGateway, childEnv } from "../helpers/gateway.js";
import { mosquittoPubLines } from "../helpers/mqtt.js";
import {
  connectClient,
  type NatsServer,
  streamInfo,
  streamMessages,
} from "../helpers/nats-server.js";
import { runToCompletion } from "../helpers/procs.js";
import { type TempDir, tempDir, waitFor } from "../helpers/wait.js";

const STREAM = "EDGE";
const MESSAGES = 100;
const PASSWORD = "s3cret-pw";
const TOKEN = "t0ken-s3cret";
/** Short retries, so a refused gateway is seen to retry several times within a second. */
const FAST_RETRY = { reconnect_delay_max: "250ms" } as const;
/** Failed dials the hub must have refused before "never connected" is believed. */
const REFUSED_DIALS = 3;
const DEBUG_LOG = { level: "debug" } as const;

const decoder = new TextDecoder();
const text = (b: Uint8Array): string => decoder.decode(b);

/** A scratch directory, removed after the test. */
function scratch(defer: Fixtures["defer"], prefix: string): string {
  const dir = tempDir(prefix);
  defer(() => dir.cleanup());
  return dir.path;
}

/** A JetStream hub with `config`, and an authenticated admin client that made the stream. */
async function hubWithStream(
  startHub: Fixtures["startHub"],
  config: string,
  admin: Partial<NodeConnectionOptions>,
  scheme: "nats" | "tls" = "nats",
  host = "127.0.0.1",
): Promise<{ hub: NatsServer; url: string; nc: NatsConnection }> {
  const hub = await startHub({ config });
  const url = `${scheme}://${host}:${hub.port}`;
  const nc = await connectClient(url, admin);
  await createEdgeStream(nc);
  return { hub, url, nc };
}

const lines = (tag: string): string[] =>
  Array.from({ length: MESSAGES }, (_, i) => `${tag}-${String(i).padStart(3, "0")}`);

/** Publishes 100 QoS 1 messages and expects exactly those in the stream, in order. */
async function expectForwarded(mqttPort: number, nc: NatsConnection, tag: string): Promise<void> {
  const sent = lines(tag);
  await mosquittoPubLines(mqttPort, `auth/${tag}`, sent);
  await waitFor(async () => (await streamInfo(nc, STREAM)).state.messages >= sent.length, {
    timeoutMs: 15_000,
    message: () => `stream ${STREAM} did not reach ${sent.length} messages`,
  });
  const messages = await streamMessages(nc, STREAM);
  expect(messages.map((m) => text(m.data))).toEqual(sent);
  expect(new Set(messages.map((m) => m.headers["Nats-Msg-Id"]?.[0])).size).toBe(sent.length);
  for (const m of messages) expect(m.subject).toBe(`edge.gw1.auth.${tag}`);
}

function expectNoSecret(where: string, output: string, secrets: readonly string[]): void {
  for (const secret of secrets) {
    expect(output.includes(secret), `${where} contains the secret "${secret}"`).toBe(false);
  }
}

/** `leafgate check -c FILE` from the bundle: exits 0 and shows `key: "***"`, never the secret. */
async function expectCheckMasks(file: string, key: string, secret: string): Promise<void> {
  const r = await runToCompletion(process.execPath, [BUNDLE, "check", "-c", file], {
    env: childEnv(),
    timeoutMs: 15_000,
  });
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout).toContain(`${key}: "***"`);
  expectNoSecret("leafgate check", r.stdout + r.stderr, [secret]);
}

/** The hub at `url` with `upstream` settings, debug logging: the bundle on that config. */
async function startChild(
  gateway: Fixtures["gateway"],
  url: string,
  upstream: UpstreamInput,
): Promise<{ child: ChildGateway; file: string }> {
  const child = await gateway.spawn({
    upstream: { servers: [url], stream: STREAM, ...upstream },
    log: DEBUG_LOG,
  });
  return { child, file: child.file };
}

async function httpGet(child: ChildGateway, path: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${child.httpPort}${path}`);
  return res.text();
}

// --- key material ----------------------------------------------------------------------

const seedOf = (kp: KeyPair): string => text(kp.getSeed());

/**
 * A JWT as nats-server's jwt/v2 library checks it: ed25519-nkey over `header.claims`,
 * both base64url JSON, signed by the issuer's nkey. `jti` is only an id to the server.
 */
function encodeJwt(issuer: KeyPair, subject: string, nats: Record<string, unknown>): string {
  const part = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString("base64url");
  const header = part({ typ: "JWT", alg: "ed25519-nkey" });
  const claims = part({
    jti: randomBytes(16).toString("hex").toUpperCase(),
    iat: Math.floor(Date.now() / 1000),
    iss: issuer.getPublicKey(),
    name: "leafgate-test",
    sub: subject,
    nats: { ...nats, version: 2 },
  });
  const sig = issuer.sign(new TextEncoder().encode(`${header}.${claims}`));
  return `${header}.${claims}.${Buffer.from(sig).toString("base64url")}`;
}

/**
 * Operator mode without `nsc`: an operator, a system account (JetStream needs one), an
 * account with unlimited JetStream, and a user whose .creds file is written to `dir`.
 */
function operatorSetup(dir: string): { serverConfig: string; credsFile: string; seed: string } {
  const operator = createOperator();
  const system = createAccount();
  const account = createAccount();
  const user = createUser();
  const unlimited = { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, conn: -1 };
  const jetstream = { mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 };
  const operatorJwt = encodeJwt(operator, operator.getPublicKey(), {
    type: "operator",
    system_account: system.getPublicKey(),
  });
  const systemJwt = encodeJwt(operator, system.getPublicKey(), { type: "account" });
  const accountJwt = encodeJwt(operator, account.getPublicKey(), {
    type: "account",
    limits: { ...unlimited, wildcards: true, leaf: -1, ...jetstream },
  });
  const userJwt = encodeJwt(account, user.getPublicKey(), {
    type: "user",
    subs: -1,
    data: -1,
    payload: -1,
  });
  const credsFile = join(dir, "gateway.creds");
  writeFileSync(
    credsFile,
    `-----BEGIN NATS USER JWT-----\n${userJwt}\n------END NATS USER JWT------\n\n` +
      `-----BEGIN USER NKEY SEED-----\n${seedOf(user)}\n------END USER NKEY SEED------\n`,
  );
  const serverConfig = `operator: ${operatorJwt}
system_account: ${system.getPublicKey()}
resolver: MEMORY
resolver_preload: {
  ${system.getPublicKey()}: ${systemJwt}
  ${account.getPublicKey()}: ${accountJwt}
}
`;
  return { serverConfig, credsFile, seed: seedOf(user) };
}

interface Pki {
  ca: string;
  /** Server certificate and key for `DNS:localhost`. */
  dnsCert: string;
  dnsKey: string;
  /** Server certificate and key for `IP:127.0.0.1` only. */
  ipCert: string;
  ipKey: string;
  clientCert: string;
  clientKey: string;
}

/** A throwaway CA, server certificates (by name and by IP) and a client certificate. */
async function makePki(dir: string): Promise<Pki> {
  // Names only (run in `dir`), so splitting on spaces is safe.
  const openssl = async (command: string): Promise<void> => {
    const args = command.split(" ");
    const r = await runToCompletion("/usr/bin/openssl", args, { cwd: dir });
    if (r.code !== 0) throw new Error(`openssl ${command}: ${r.stderr}`);
  };
  const key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  await openssl(`req -x509 ${key} -days 1 -subj /CN=leafgate-test-ca -keyout ca.key -out ca.pem`);
  const leaf = async (name: string, ext: string): Promise<void> => {
    writeFileSync(join(dir, `${name}.ext`), ext);
    await openssl(`req ${key} -subj /CN=leafgate-${name} -keyout ${name}.key -out ${name}.csr`);
    await openssl(
      `x509 -req -in ${name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 ` +
        `-extfile ${name}.ext -out ${name}.pem`,
    );
  };
  await leaf("dns", "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n");
  await leaf("ip", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  await leaf("client", "extendedKeyUsage=clientAuth\n");
  const at = (f: string): string => join(dir, f);
  return {
    ca: at("ca.pem"),
    dnsCert: at("dns.pem"),
    dnsKey: at("dns.key"),
    ipCert: at("ip.pem"),
    ipKey: at("ip.key"),
    clientCert: at("client.pem"),
    clientKey: at("client.key"),
  };
}

// --- tests -----------------------------------------------------------------------------

interface Method {
  serverConfig: string;
  admin: Partial<NodeConnectionOptions>;
  upstream: UpstreamInput;
  /** The config key `check` must mask, when the secret is in the config itself. */
  maskedKey?: string;
  secret: string;
}

/** Built per test: key pairs and files are fresh, and temp dirs die with the test. */
const METHODS: { name: string; make: (defer: Fixtures["defer"]) => Method }[] = [
  {
    name: "user/password",
    make: () => ({
      serverConfig: `authorization { user: edge, password: "${PASSWORD}" }\n`,
      admin: { user: "edge", pass: PASSWORD },
      upstream: { user: "edge", password: PASSWORD },
      maskedKey: "password",
      secret: PASSWORD,
    }),
  },
  {
    name: "token",
    make: () => ({
      serverConfig: `authorization { token: "${TOKEN}" }\n`,
      admin: { token: TOKEN },
      upstream: { token: TOKEN },
      maskedKey: "token",
      secret: TOKEN,
    }),
  },
  {
    name: "nkey",
    make: () => {
      const kp = createUser();
      return {
        serverConfig: `authorization { users = [ { nkey: ${kp.getPublicKey()} } ] }\n`,
        admin: { authenticator: nkeyAuthenticator(kp.getSeed()) },
        upstream: { nkey_seed: seedOf(kp) },
        maskedKey: "nkey_seed",
        secret: seedOf(kp),
      };
    },
  },
  {
    name: "credentials (.creds, operator mode)",
    make: (defer) => {
      const { serverConfig, credsFile, seed } = operatorSetup(scratch(defer, "creds"));
      return {
        serverConfig,
        admin: { authenticator: credsAuthenticator(readFileSync(credsFile)) },
        upstream: { credentials: credsFile },
        secret: seed,
      };
    },
  },
];

describe("hub authentication, through the built bundle with debug logs", () => {
  it.for(METHODS)(
    "$name: forwards 100 QoS 1 messages and never prints the secret",
    async ({ name, make }, { defer, startHub, gateway }) => {
      const m = make(defer);
      const { url, nc } = await hubWithStream(startHub, m.serverConfig, m.admin);
      const { child, file } = await startChild(gateway, url, m.upstream);
      await expectForwarded(child.mqttPort, nc, "in");
      const status = await httpGet(child, "/status");
      expect(JSON.parse(status).upstream.state).toBe("forwarding");
      // Debug records must be there, or "no secret in the output" would say little.
      expect(child.proc.stdout()).toContain('"level":20');
      expectNoSecret(`${name}: gateway stdout`, child.proc.stdout(), [m.secret]);
      expectNoSecret(`${name}: gateway stderr`, child.proc.stderr(), [m.secret]);
      expectNoSecret(`${name}: /status`, status, [m.secret]);
      expectNoSecret(`${name}: /metrics`, await httpGet(child, "/metrics"), [m.secret]);
      if (m.maskedKey !== undefined) await expectCheckMasks(file, m.maskedKey, m.secret);
    },
  );
});

describe("wrong credentials: the gateway stays up and buffers", () => {
  /** Waits until the hub has refused several dials. */
  async function refusedRepeatedly(hub: NatsServer): Promise<void> {
    await waitFor(() => hub.proc.stderr().split("authentication error").length > REFUSED_DIALS, {
      message: () => `hub did not refuse ${REFUSED_DIALS} dials\n${hub.proc.describe()}`,
    });
  }

  it("wrong password (in process): connecting, authorization error, never connected", async ({
    startHub,
    gateway,
  }) => {
    const { hub, url, nc } = await hubWithStream(
      startHub,
      `authorization { user: edge, password: "${PASSWORD}" }\n`,
      { user: "edge", pass: PASSWORD },
    );
    const gw = await gateway.start({
      upstream: {
        servers: [url],
        stream: STREAM,
        user: "edge",
        password: `not-${PASSWORD}`,
        ...FAST_RETRY,
      },
    });
    const g = gw.gateway;
    await refusedRepeatedly(hub);
    const upstream = () =>
      g.status().upstream as { state: string; server?: string; lastError?: string };
    expect(upstream().state).toBe("connecting");
    expect(upstream().lastError).toMatch(/authorization/i);

    await mosquittoPubLines(gw.mqttPort, "auth/refused", lines("refused"));
    expect(g.status().healthy).toBe(true);
    expect((g.status().outbox as { pending: number }).pending).toBe(MESSAGES);
    // Never connected, not even briefly: the server is named in the status only once a
    // dial succeeded, and it stays named.
    expect(upstream().server).toBeUndefined();
    expect(g.metrics.value("leafgate_upstream_connected")).toBe(0);
    expect(g.metrics.value("leafgate_upstream_forwarded_total")).toBe(0);
    expect((await streamInfo(nc, STREAM)).state.messages).toBe(0);
  });

  it("wrong token (bundle): buffering, /status says why, no token anywhere", async ({
    startHub,
    gateway,
  }) => {
    const wrong = `wr0ng-${TOKEN}`;
    const { hub, url, nc } = await hubWithStream(
      startHub,
      `authorization { token: "${TOKEN}" }\n`,
      {
        token: TOKEN,
      },
    );
    const { child, file } = await startChild(gateway, url, { token: wrong, ...FAST_RETRY });
    await refusedRepeatedly(hub);
    await mosquittoPubLines(child.mqttPort, "auth/refused", lines("refused"));

    const statusText = await httpGet(child, "/status");
    const status = JSON.parse(statusText) as {
      healthy: boolean;
      upstream: { state: string; server?: string; lastError?: string };
      outbox: { pending: number };
    };
    expect(status.upstream.state).toBe("connecting");
    // Never connected: no server named (only a successful dial names one), no log line.
    expect(status.upstream.server).toBeUndefined();
    expect(child.proc.stdout()).not.toContain('"msg":"hub connected"');
    expect(status.upstream.lastError).toMatch(/authorization/i);
    expect(status.outbox.pending).toBe(MESSAGES);
    expect(child.proc.exitInfo).toBeUndefined();
    expect((await streamInfo(nc, STREAM)).state.messages).toBe(0);
    const metrics = await httpGet(child, "/metrics");
    expect(metrics).not.toMatch(/^leafgate_upstream_connected 1$/m);

    const secrets = [wrong, TOKEN];
    expectNoSecret("gateway stdout", child.proc.stdout(), secrets);
    expectNoSecret("gateway stderr", child.proc.stderr(), secrets);
    expectNoSecret("/status", statusText, secrets);
    expectNoSecret("/metrics", metrics, secrets);
    await expectCheckMasks(file, "token", wrong);

    // Last, as it is a separate defect: an alert on `leafgate_upstream_connected == 0`
    // must fire for a gateway that never got in, so the series must read 0, not be absent.
    expect(metrics).toMatch(/^leafgate_upstream_connected 0$/m);
  });
});

describe("hub over TLS", () => {
  let pki: Pki;
  let pkiDir: TempDir;

  beforeAll(async () => {
    pkiDir = tempDir("pki");
    pki = await makePki(pkiDir.path);
  });

  afterAll(async () => {
    await pkiDir.cleanup();
  });

  const tlsServer = (cert: string, key: string, verify = false): string =>
    `tls {
  cert_file: ${JSON.stringify(cert)}
  key_file: ${JSON.stringify(key)}
${verify ? `  ca_file: ${JSON.stringify(pki.ca)}\n  verify: true\n` : ""}}
`;
  /** The gateway in this process, to the hub at `url` with `upstream` settings. */
  const tlsGateway = (gateway: Fixtures["gateway"], url: string, upstream: UpstreamInput) =>
    gateway.start({ upstream: { servers: [url], stream: STREAM, ...upstream } });

  it("verifies the hub (tls://localhost) against the configured CA and forwards", async ({
    startHub,
    gateway,
  }) => {
    const { hub, nc } = await hubWithStream(
      startHub,
      tlsServer(pki.dnsCert, pki.dnsKey),
      { tls: { caFile: pki.ca } },
      "tls",
      "localhost",
    );
    const gw = await tlsGateway(gateway, `tls://localhost:${hub.port}`, { tls: { ca: pki.ca } });
    await expectForwarded(gw.mqttPort, nc, "tls");
  });

  it("presents its client certificate to a hub that requires one (verify: true)", async ({
    startHub,
    gateway,
  }) => {
    const { hub, nc } = await hubWithStream(
      startHub,
      tlsServer(pki.dnsCert, pki.dnsKey, true),
      { tls: { caFile: pki.ca, certFile: pki.clientCert, keyFile: pki.clientKey } },
      "tls",
      "localhost",
    );
    const gw = await tlsGateway(gateway, `tls://localhost:${hub.port}`, {
      tls: { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey },
    });
    await expectForwarded(gw.mqttPort, nc, "mtls");
  });

  it("verifies a hub addressed by IP (tls://127.0.0.1, certificate for IP:127.0.0.1)", async ({
    startHub,
    gateway,
  }) => {
    // nats.js leaves the TLS server name empty for an IP host, so Node checks the
    // certificate against "localhost". The extra Node TLS option `host` (passed through
    // by nats.js, though not in its types) makes the check use the address dialed.
    const admin = { caFile: pki.ca, host: "127.0.0.1" } as TlsOptions;
    const { hub, nc } = await hubWithStream(
      startHub,
      tlsServer(pki.ipCert, pki.ipKey),
      { tls: admin },
      "tls",
    );
    const gw = await tlsGateway(gateway, `tls://127.0.0.1:${hub.port}`, {
      tls: { ca: pki.ca },
      ...FAST_RETRY,
    });
    const sent = lines("tls-ip");
    await mosquittoPubLines(gw.mqttPort, "auth/tls-ip", sent);
    const g = gw.gateway;
    const upstream = () => g.status().upstream as { state: string; lastError?: string };
    const pending = () => (g.status().outbox as { pending: number }).pending;
    // Either it forwards everything, or a dial fails and says why.
    await waitFor(() => pending() === 0 || upstream().lastError !== undefined, {
      message: () => `neither forwarded nor failed: ${JSON.stringify(upstream())}`,
    });
    expect(upstream().lastError).toBeUndefined();
    await waitFor(() => pending() === 0);
    const messages = await streamMessages(nc, STREAM);
    expect(messages.map((m) => text(m.data))).toEqual(sent);
  });
});
