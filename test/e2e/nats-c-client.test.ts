// A second-language client on the gateway's NATS endpoint: the official NATS C client
// (nats.c, Debian's libnats-dev), unmodified, through a small program of ours
// (test/clients/nats-c-client.c) compiled here at run time. It talks to nats.js clients
// through the gateway: pub/sub with wildcards, a queue group, request-reply both ways, no
// responders, headers both ways, auto-unsubscribe, max payload, user/password auth. The C
// program prints one line per result; `ready` once its subscriptions are flushed.
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { connect, headers, type NatsConnection, RequestError } from "@nats-io/transport-node";
import { beforeAll, expect } from "vitest";
import { type Defer, type GatewayLauncher, it } from "../helpers/fixtures.js";
import type { GatewayConfigInput, TestGateway } from "../helpers/gateway.js";
import { cheapPasswordHash } from "../helpers/mqtt-sequence.js";
import {
  runToCompletion,
  spawnTracked,
  stopProcess,
  type TrackedProcess,
  waitForLine,
} from "../helpers/procs.js";
import { tempDir } from "../helpers/wait.js";

const SOURCE = fileURLToPath(new URL("../clients/nats-c-client.c", import.meta.url));
const COMPILE_TIMEOUT_MS = 60_000;
/** The C program's own waits are 10 s; a run is given more than that to report them. */
const RUN_TIMEOUT_MS = 30_000;
const INSTALL_HINT =
  "the NATS C client library is missing: install it with `apt-get install -y libnats-dev` " +
  "(Debian's package of nats.c; .ci/run installs it)";

let binary: string;

beforeAll(async () => {
  const dir = tempDir("nats-c-client");
  binary = join(dir.path, "nats-c-client");
  const cc = await runToCompletion("cc", ["-O1", "-Wall", "-o", binary, SOURCE, "-lnats"], {
    timeoutMs: COMPILE_TIMEOUT_MS,
  });
  if (cc.code !== 0) {
    await dir.cleanup();
    const missing = /nats\.h|-lnats|libnats/.test(cc.stderr);
    throw new Error(`${missing ? INSTALL_HINT : "cc failed"}\n${cc.stderr}`);
  }
  return () => dir.cleanup();
}, COMPILE_TIMEOUT_MS);

const url = (gw: TestGateway) => `nats://127.0.0.1:${gw.natsPort}`;
const text = (data: Uint8Array): string => Buffer.from(data).toString();

/** Runs the C client to completion: its stdout lines and exit code. */
async function c(gw: TestGateway, ...args: string[]): Promise<{ code: number; lines: string[] }> {
  return cAs(gw, [], ...args);
}

async function cAs(
  gw: TestGateway,
  credentials: string[],
  ...args: string[]
): Promise<{ code: number; lines: string[] }> {
  const r = await runToCompletion(binary, [...credentials, url(gw), ...args], {
    timeoutMs: RUN_TIMEOUT_MS,
  });
  return { code: r.code ?? -1, lines: r.stdout.split("\n").filter((l) => l !== "") };
}

/** Starts the C client and resolves once it said `ready` (its subscriptions are flushed). */
async function cReady(gw: TestGateway, ...args: string[]): Promise<TrackedProcess> {
  const proc = await spawnTracked(binary, [url(gw), ...args], { stdin: "pipe" });
  await waitForLine(proc, (l) => l === "ready", RUN_TIMEOUT_MS);
  return proc;
}

/** Waits for a started C client to exit; its stdout lines after `ready`, and exit code. */
async function finished(proc: TrackedProcess): Promise<{ code: number; lines: string[] }> {
  proc.child.stdin?.end();
  const exit = await Promise.race([
    proc.exited,
    delay(RUN_TIMEOUT_MS, undefined, { ref: false }), // a deadline for the race, not a wait
  ]);
  if (!exit) {
    await stopProcess(proc, { signal: "SIGKILL" });
    throw new Error(`the C client did not finish\n${proc.describe()}`);
  }
  const lines = proc
    .stdout()
    .split("\n")
    .filter((l) => l !== "");
  return { code: exit.code ?? -1, lines: lines.slice(lines.indexOf("ready") + 1) };
}

async function nats(gw: TestGateway, options: Record<string, unknown> = {}) {
  return connect({ servers: `127.0.0.1:${gw.natsPort}`, reconnect: false, ...options });
}

/** A gateway on `input` and a nats.js client on it, closed after the test. */
async function gatewayAndNatsJs(
  { gateway, defer }: { gateway: GatewayLauncher; defer: Defer },
  input?: GatewayConfigInput,
  options?: Record<string, unknown>,
): Promise<{ gw: TestGateway; js: NatsConnection }> {
  const gw = await gateway.start(input);
  const js = await nats(gw, options);
  defer(() => js.close());
  return { gw, js };
}

/** Subscribes nats.js to `subject` (flushed: the gateway has it) and collects what arrives. */
async function collect(nc: NatsConnection, subject: string) {
  const got: { subject: string; data: string; headers: Record<string, string[]> }[] = [];
  nc.subscribe(subject, {
    callback: (_e, m) => {
      const h: Record<string, string[]> = {};
      for (const [k, v] of m.headers ?? []) h[k] = v;
      got.push({ subject: m.subject, data: text(m.data), headers: h });
    },
  });
  await nc.flush();
  return got;
}

it("pub/sub with wildcards: nats.js to C subscribers, C publisher to nats.js", async ({
  gateway,
  defer,
}) => {
  const { gw, js } = await gatewayAndNatsJs({ gateway, defer });
  const fromC = await collect(js, "wild.>");
  const temps = await cReady(gw, "sub", "wild.*.temp", "4");
  const all = await cReady(gw, "sub", "wild.>", "5");
  js.publish("wild.a.temp", "t1");
  js.publish("wild.b.hum", "h1");
  js.publish("wild.c.temp", "t2");
  await js.flush();
  expect(await c(gw, "pub", "wild.d.temp", "x1", "x2")).toEqual({
    code: 0,
    lines: ["published 2"],
  });
  expect(await finished(temps)).toEqual({
    code: 0,
    lines: ["msg wild.a.temp t1", "msg wild.c.temp t2", "msg wild.d.temp x1", "msg wild.d.temp x2"],
  });
  expect(await finished(all)).toEqual({
    code: 0,
    lines: [
      "msg wild.a.temp t1",
      "msg wild.b.hum h1",
      "msg wild.c.temp t2",
      "msg wild.d.temp x1",
      "msg wild.d.temp x2",
    ],
  });
  await js.flush();
  // Its own three first (echo is on), then the C publisher's two.
  expect(fromC.map((m) => `${m.subject} ${m.data}`)).toEqual([
    "wild.a.temp t1",
    "wild.b.hum h1",
    "wild.c.temp t2",
    "wild.d.temp x1",
    "wild.d.temp x2",
  ]);
});

it("a queue group of three C members takes 30 jobs, 10 each, each job once", async ({
  gateway,
  defer,
}) => {
  const { gw, js } = await gatewayAndNatsJs({ gateway, defer });
  const members = [];
  for (let i = 0; i < 3; i++) members.push(await cReady(gw, "queue", "jobs.*", "workers", "10"));
  for (let i = 0; i < 30; i++) js.publish(`jobs.j${i}`, String(i));
  await js.flush();
  const results = await Promise.all(members.map(finished));
  const taken: number[] = [];
  for (const r of results) {
    expect(r.code).toBe(0);
    expect(r.lines).toHaveLength(10);
    for (const l of r.lines) {
      const [, subject, data] = l.split(" ");
      expect(subject).toBe(`jobs.j${data}`);
      taken.push(Number(data));
    }
  }
  expect(taken.sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, i) => i));
});

it("request-reply: a C requester to a nats.js service, a nats.js requester to a C service, headers kept", async ({
  gateway,
  defer,
}) => {
  const { gw, js } = await gatewayAndNatsJs({ gateway, defer });
  js.subscribe("svc.js", {
    callback: (_e, m) => {
      const h = headers();
      const trace = m.headers?.get("Trace");
      if (trace) h.set("Trace", trace);
      m.respond(`js:${text(m.data)}`, { headers: h });
    },
  });
  await js.flush();
  expect(await c(gw, "request", "svc.js", "a", "b", "c")).toEqual({
    code: 0,
    lines: ["reply js:a trace a", "reply js:b trace b", "reply js:c trace c"],
  });

  const service = await cReady(gw, "respond", "svc.c", "3");
  const answers: string[] = [];
  for (let i = 0; i < 3; i++) {
    const h = headers();
    h.set("Trace", `t${i}`);
    const reply = await js.request("svc.c", `q${i}`, { timeout: 10_000, headers: h });
    answers.push(`${text(reply.data)} ${reply.headers?.get("Trace")}`);
  }
  expect(answers).toEqual(["echo q0 t0", "echo q1 t1", "echo q2 t2"]);
  expect(await finished(service)).toEqual({ code: 0, lines: ["answered 3"] });
});

it("a C request nobody serves returns NATS_NO_RESPONDERS at once", async ({ gateway }) => {
  const gw = await gateway.start();
  expect(await c(gw, "request", "svc.nobody", "q")).toEqual({
    code: 0,
    lines: ["status NATS_NO_RESPONDERS"],
  });
});

it("headers both ways: natsMsgHeader_Set/Add to nats.js, nats.js headers to natsMsgHeader_Get/Values", async ({
  gateway,
  defer,
}) => {
  const { gw, js } = await gatewayAndNatsJs({ gateway, defer });
  const got = await collect(js, "h.c2js");
  expect(await c(gw, "hpub", "h.c2js")).toEqual({ code: 0, lines: ["published 1"] });
  await js.flush();
  expect(got).toEqual([
    { subject: "h.c2js", data: "21.5", headers: { Site: ["north"], Unit: ["C", "K"] } },
  ]);

  const reader = await cReady(gw, "hsub", "h.js2c");
  const h = headers();
  h.append("Site", "south");
  h.append("Shift", "a");
  h.append("Shift", "b");
  js.publish("h.js2c", "on", { headers: h });
  await js.flush();
  expect(await finished(reader)).toEqual({
    code: 0,
    lines: ["msg h.js2c on", "header Shift get=a values=a,b", "header Site get=south values=south"],
  });
});

it("auto-unsubscribe: the C subscription ends after its max, and the server drops its interest", async ({
  gateway,
  defer,
}) => {
  const { gw, js } = await gatewayAndNatsJs({ gateway, defer });
  const sub = await cReady(gw, "autounsub", "au.x", "3");
  for (let i = 0; i < 5; i++) js.publish("au.x", `m${i}`);
  await js.flush();
  await waitForLine(sub, (l) => l.startsWith("valid "), RUN_TIMEOUT_MS);
  // The C client is still connected: a request finds nobody, so the gateway removed the
  // subscription after 3 deliveries (UNSUB <sid> 3), not just the library.
  const err = await js.request("au.x", "anyone?", { timeout: 10_000 }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RequestError);
  expect((err as RequestError).isNoResponders()).toBe(true);
  expect(await finished(sub)).toEqual({
    code: 0,
    lines: [
      "msg au.x m0",
      "msg au.x m1",
      "msg au.x m2",
      "status NATS_MAX_DELIVERED_MSGS",
      "valid false",
    ],
  });
});

it("max payload: the C client reads INFO's max_payload and refuses a larger publish; one at the limit arrives", async ({
  gateway,
  defer,
}) => {
  const { gw, js } = await gatewayAndNatsJs({ gateway, defer }, { nats: { max_payload: "1KiB" } });
  const got = await collect(js, "big.x");
  expect(await c(gw, "maxpayload", "big.x")).toEqual({
    code: 0,
    lines: [
      "max_payload 1024",
      "publish 1025: NATS_MAX_PAYLOAD",
      "publish 1024: NATS_OK",
      "flushed",
    ],
  });
  await js.flush();
  expect(got.map((m) => m.data)).toEqual(["x".repeat(1024)]);
});

it("user/password auth: the right password connects and publishes, a wrong one or none is refused", async ({
  gateway,
  defer,
}) => {
  const { gw, js } = await gatewayAndNatsJs(
    { gateway, defer },
    { authorization: { users: [{ user: "app", password: cheapPasswordHash("app-pw") }] } },
    { user: "app", pass: "app-pw" },
  );
  const got = await collect(js, "auth.>");
  expect(await cAs(gw, ["-u", "app", "-p", "app-pw"], "pub", "auth.ok", "hello")).toEqual({
    code: 0,
    lines: ["published 1"],
  });
  await js.flush();
  expect(got.map((m) => `${m.subject} ${m.data}`)).toEqual(["auth.ok hello"]);

  const wrong = await cAs(gw, ["-u", "app", "-p", "nope"], "connect");
  const none = await c(gw, "connect");
  for (const refused of [wrong, none]) {
    expect(refused.code).toBe(1);
    expect(refused.lines).toHaveLength(1);
    expect(refused.lines[0]).toMatch(
      /^error NATS_CONNECTION_AUTH_FAILED .*Authorization Violation/i,
    );
  }
});
