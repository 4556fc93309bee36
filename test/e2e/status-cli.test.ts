// `/readyz`, the optional bearer token and `leafgate status`, with the shipped bundle as
// child processes (the gateway and the command), as an operator runs them:
// - hub away: /readyz 503 with the reason, `leafgate status` exits 1 and shows it and the
//   backlog; once a hub with the stream is up: /readyz 200, exit 0; gateway gone: exit 3;
//   a listener that never answers: exit 3 after the 3 s timeout;
// - http.token: every route 401 (with WWW-Authenticate) without it or with a wrong one,
//   each refusal counted, one log line a minute; the command finds the token in --token,
//   LEAFGATE_HTTP_TOKEN or the config; the token is masked in `leafgate check` and logs.
import { createServer, type Socket } from "node:net";
import { describe, expect } from "vitest";
import { createEdgeStream, it } from "../helpers/fixtures.js";
import { BUNDLE, childEnv } from "../helpers/gateway.js";
import { mosquittoPubLines } from "../helpers/mqtt.js";
import { connectClient } from "../helpers/nats-server.js";
import { closedPort } from "../helpers/net.js";
import { runToCompletion, stopProcess } from "../helpers/procs.js";
import { once, waitFor } from "../helpers/wait.js";

/** How long the gateway may take to see a hub that just came up (backoff max 2 s). */
const HUB_SEEN_MS = 20_000;
const TOKEN = "s3cret-token-0123456789";

function leafgate(args: string[], env: NodeJS.ProcessEnv = {}) {
  return runToCompletion(process.execPath, [BUNDLE, ...args], {
    env: childEnv(env),
    timeoutMs: 15_000,
  });
}

async function get(port: number, path: string, token?: string) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  });
  return { status: res.status, headers: res.headers, body: await res.text() };
}

describe("readiness", () => {
  it("is 503 with the reason while the hub is away, 200 once a hub with the stream is up", async ({
    gateway,
    startHub,
  }) => {
    const port = await closedPort();
    const hubUrl = `nats://127.0.0.1:${port}`;
    const gw = await gateway.spawn({ upstream: { servers: [hubUrl], stream: "EDGE" } });
    const url = `http://127.0.0.1:${gw.httpPort}`;

    // Until the gateway has dialled once, it says "not connected yet"; then the dial's error
    // (no server has answered: the configured ones are named as dialed).
    const away = await waitFor(
      async () => {
        const r = await get(gw.httpPort, "/readyz");
        return r.body.includes("connection refused") ? r : undefined;
      },
      { timeoutMs: HUB_SEEN_MS },
    );
    expect(away.status).toBe(503);
    expect(JSON.parse(away.body)).toEqual({
      ready: false,
      reasons: [`hub unreachable (dialing ${hubUrl}): connection refused; messages are buffered`],
    });
    // /healthz is as before: the process runs, so 200.
    expect((await get(gw.httpPort, "/healthz")).status).toBe(200);

    await mosquittoPubLines(gw.mqttPort, "sensors/a", ["m1", "m2", "m3"], { qos: 1 });
    const down = await leafgate(["status", "--url", url]);
    expect({ code: down.code, stderr: down.stderr }).toEqual({ code: 1, stderr: "" });
    const downLines = down.stdout.split("\n");
    expect(downLines.slice(0, 3)).toEqual([
      `leafgate gw1 at ${url}: NOT READY`,
      `  - hub unreachable (dialing ${hubUrl}): connection refused; messages are buffered`,
      "state:    running",
    ]);
    expect(downLines[3]).toMatch(
      new RegExp(
        `^uplink: connecting \\(never connected; servers nats://127\\.0\\.0\\.1:${port}\\), down since \\S+Z \\(\\d+ s\\), 0 connects$`,
      ),
    );
    expect(downLines[4]).toBe("  last error: connection refused");
    expect(downLines.find((l) => l.startsWith("backlog:"))).toMatch(/^backlog: 3 messages, \d/);
    // The class: its messages, the oldest's age, the limits as configured (the defaults).
    expect(downLines.find((l) => l.startsWith("  default"))).toMatch(
      /^ {2}default {2}3 messages, \d+ B, oldest \d+ s \(max 953\.7 MiB, 10000000 messages, 7 d, drop_oldest\)$/,
    );
    expect(downLines.find((l) => l.startsWith("disk:"))).toMatch(
      /^disk: {5}ok, \d+\.\d [KMGT]iB free \(reserve 16\.0 MiB\)$/,
    );
    expect(downLines).toContain("clients:  MQTT 0, NATS 0");
    expect(downLines.slice(-3)).toEqual(["serial:   no devices configured", "drops:    none", ""]);

    const hub = await startHub({ port });
    const nc = await connectClient(hub.url);
    await createEdgeStream(nc);
    const up = await waitFor(
      async () => {
        const r = await get(gw.httpPort, "/readyz");
        return r.status === 200 ? r : undefined;
      },
      { timeoutMs: HUB_SEEN_MS },
    );
    expect(up.body).toBe('{"ready":true}\n');

    const ready = await leafgate(["status", "--url", url]);
    expect({ code: ready.code, stderr: ready.stderr }).toEqual({ code: 0, stderr: "" });
    const readyLines = ready.stdout.split("\n");
    expect(readyLines.slice(0, 2)).toEqual([`leafgate gw1 at ${url}: READY`, "state:    running"]);
    expect(readyLines[2]).toMatch(
      new RegExp(
        `^uplink: forwarding \\(127\\.0\\.0\\.1:${port}, stream EDGE\\), up since \\S+Z \\(\\d+ s\\), 1 connect$`,
      ),
    );
    // The refusals from before the hub came up are not shown as news (the backlog may
    // still be draining: only the line's kind is certain).
    expect(readyLines[3]).toMatch(/^backlog: \d+ messages?, /);

    const json = await leafgate(["status", "--url", url, "--json"]);
    expect(json.code).toBe(0);
    const combined = JSON.parse(json.stdout) as {
      url: string;
      ready: unknown;
      status: {
        gateway: string;
        upstream: { state: string; connects: number; servers: string[] };
      };
      drops: unknown;
    };
    expect([combined.url, combined.ready, combined.status.gateway, combined.drops]).toEqual([
      url,
      { ready: true },
      "gw1",
      [],
    ]);
    expect(combined.status.upstream.state).toBe("forwarding");
    // The fleet fields are in --json as in /status: one connect, the server as dialed.
    expect(combined.status.upstream).toMatchObject({ connects: 1, servers: [hubUrl] });

    await stopProcess(gw.proc);
    const gone = await leafgate(["status", "--url", url]);
    expect(gone).toMatchObject({
      code: 3,
      stdout: "",
      stderr:
        `leafgate: status: no gateway answers at ${url}: is it running? is http.enabled true? ` +
        `(connect ECONNREFUSED 127.0.0.1:${gw.httpPort})\n`,
    });
  });

  it("exits 2 on a bad URL or option; 0 for --help", async ({ gateway }) => {
    const bad = await leafgate(["status", "--url", "ftp://pi"]);
    expect(bad).toMatchObject({
      code: 2,
      stderr: 'leafgate: status: --url: expected http://HOST:PORT, got "ftp://pi"\n',
    });
    // The URL comes from the config's http.host and http.port, unless the port is 0.
    const { file } = gateway.writeConfig();
    expect(await leafgate(["status", "-c", file])).toMatchObject({
      code: 2,
      stderr: `leafgate: status: http.port is 0 in ${file} (a port chosen at start): give --url\n`,
    });
    const help = await leafgate(["status", "--help"]);
    expect([help.code, help.stdout.split("\n")[0]]).toEqual([
      0,
      "Usage: leafgate status [--url URL] [--token TOKEN] [--json] [-c FILE]",
    ]);
    const unknown = await leafgate(["status", "--bogus"]);
    expect(unknown).toMatchObject({ code: 2, stderr: "leafgate: Unknown option '--bogus'\n" });
  });
});

describe("no usable answer", () => {
  it("exits 3 when something takes the connection but does not answer within 3 s", async ({
    defer,
  }) => {
    const sockets: Socket[] = [];
    const mute = createServer((s) => void sockets.push(s)).listen(0, "127.0.0.1");
    await once(mute, "listening");
    defer(async () => {
      for (const s of sockets) s.destroy();
      mute.close();
      await once(mute, "close");
    });
    const url = `http://127.0.0.1:${(mute.address() as { port: number }).port}`;
    const started = Date.now();
    const r = await leafgate(["status", "--url", url]);
    expect(r).toMatchObject({
      code: 3,
      stdout: "",
      stderr: `leafgate: status: no gateway answers at ${url}: is it running? is http.enabled true? (no answer within 3 s)\n`,
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(3000);
  });
});

describe("http.token", () => {
  it("refuses every route without the bearer token, counts and rate-limits the refusals", async ({
    gateway,
  }) => {
    const gw = await gateway.spawn({ http: { token: TOKEN } });
    const routes = ["/healthz", "/readyz", "/status", "/metrics", "/"];
    for (const route of routes) {
      for (const token of [undefined, "wrong-token-0123456789"]) {
        const r = await get(gw.httpPort, route, token);
        expect([route, r.status, r.headers.get("www-authenticate"), r.body]).toEqual([
          route,
          401,
          'Bearer realm="leafgate"',
          '{"error":"unauthorized: this endpoint needs the header Authorization: Bearer <http.token>"}\n',
        ]);
      }
    }
    const authorized = await Promise.all(routes.map((r) => get(gw.httpPort, r, TOKEN)));
    expect(authorized.map((r) => r.status)).toEqual([200, 503, 200, 200, 200]);

    const text = (await get(gw.httpPort, "/metrics", TOKEN)).body;
    expect(text).toContain("\nleafgate_http_unauthorized_total 10\n");

    const refusals = gw.proc
      .stdout()
      .split("\n")
      .filter((l) => l.includes("http request refused"));
    expect(refusals).toHaveLength(1);
    expect(JSON.parse(refusals[0]!)).toMatchObject({
      level: 40, // warn
      part: "http",
      path: "/healthz",
      remote: "127.0.0.1",
    });
    expect(gw.proc.stdout()).not.toContain(TOKEN);

    const url = `http://127.0.0.1:${gw.httpPort}`;
    const without = await leafgate(["status", "--url", url]);
    expect(without).toMatchObject({
      code: 3,
      stdout: "",
      stderr:
        `leafgate: status: the gateway at ${url} wants a bearer token: ` +
        "give --token, LEAFGATE_HTTP_TOKEN, or -c with the config that sets http.token\n",
    });
    // Each way of giving the token: the hub is closed, so not ready (1), with the reason.
    for (const [args, env] of [
      [["--url", url, "--token", TOKEN], {}],
      [["--url", url], { LEAFGATE_HTTP_TOKEN: TOKEN }],
      [["-c", gw.file, "--url", url], {}],
    ] as const) {
      const r = await leafgate(["status", ...args], env);
      expect([r.code, r.stderr, r.stdout.split("\n")[0]]).toEqual([
        1,
        "",
        `leafgate gw1 at ${url}: NOT READY`,
      ]);
    }
    const wrong = await leafgate(["status", "--url", url, "--token", "nope"]);
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toContain("wants a bearer token and refused this one");

    const check = await leafgate(["check", "-c", gw.file]);
    expect(check.code).toBe(0);
    expect(check.stdout).toContain('token: "***"');
    expect(check.stdout).not.toContain(TOKEN);
  });

  it("is refused by check when shorter than 16 characters", async ({ gateway }) => {
    const { file } = gateway.writeConfig({ http: { token: "short" } });
    const r = await leafgate(["check", "-c", file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("http.token");
    expect(r.stderr).toContain("a token of at least 16 characters (e.g. openssl rand -hex 16)");
    expect(r.stderr).not.toContain("short");
  });
});
