// Proves the test helpers against the real programs they drive.
import { existsSync } from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";
import { jetstream } from "@nats-io/jetstream";
import { headers } from "@nats-io/transport-node";
import { afterAll, afterEach, describe, expect } from "vitest";
import { loadConfig } from "../../src/config/index.js";
import { testConfig, writeConfig } from "../helpers/config.js";
import { it } from "../helpers/fixtures.js";
import {
  closeClients,
  connectClient,
  createStream,
  type NatsServer,
  startNatsServer,
  streamInfo,
  streamMessages,
} from "../helpers/nats-server.js";
import { closedPort } from "../helpers/net.js";
import {
  runToCompletion,
  spawnTracked,
  stopAll,
  stopProcess,
  waitForLine,
} from "../helpers/procs.js";
import { once } from "../helpers/wait.js";

const COUNT = 500;
const DUPLICATES = [0, 1, 250, 499];

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw err;
  }
}

afterEach(async () => {
  await closeClients();
});

afterAll(async () => {
  await stopAll();
});

describe("nats-server helper", () => {
  let server: NatsServer | undefined;
  afterAll(async () => {
    await server?.stop();
  });

  it("stores, reads back and survives a restart on the same port", async () => {
    server = await startNatsServer();
    expect(server.url).toBe(`nats://127.0.0.1:${server.port}`);

    let nc = await connectClient(server.url);
    await createStream(nc, "EDGE", ["edge.>"]);
    const js = jetstream(nc);
    const payload = (i: number) => new TextEncoder().encode(`message ${i}`);
    const publish = (i: number) => {
      const h = headers();
      h.set("Nats-Msg-Id", `id-${i}`);
      return js.publish(`edge.dev${i % 5}.temp`, payload(i), { headers: h });
    };
    for (let i = 0; i < COUNT; i++) {
      expect((await publish(i)).duplicate).toBe(false);
    }
    for (const i of DUPLICATES) {
      expect((await publish(i)).duplicate).toBe(true);
    }

    const expectAll = async () => {
      const messages = await streamMessages(nc, "EDGE");
      expect(messages).toHaveLength(COUNT);
      messages.forEach((m, i) => {
        expect(m.seq).toBe(i + 1);
        expect(m.subject).toBe(`edge.dev${i % 5}.temp`);
        expect(new TextDecoder().decode(m.data)).toBe(`message ${i}`);
        expect(m.headers["Nats-Msg-Id"]).toEqual([`id-${i}`]);
      });
    };
    await expectAll();

    const { port, pid } = server;
    await server.restart();
    expect(server.port).toBe(port);
    expect(server.pid).not.toBe(pid);
    expect(isAlive(pid)).toBe(false);

    nc = await connectClient(server.url);
    expect((await streamInfo(nc, "EDGE")).state.messages).toBe(COUNT);
    await expectAll();
  });

  it("rejects with the server's output when it cannot start", async () => {
    await expect(startNatsServer({ config: "this is { not valid" })).rejects.toThrow(
      /nats-server exited during startup/,
    );
  });
});

describe("process helpers", () => {
  it("runToCompletion reports a failing tool's exit code and output", async () => {
    const port = await closedPort();
    const result = await runToCompletion(
      "mosquitto_sub",
      ["-h", "127.0.0.1", "-p", String(port), "-t", "edge/#", "-C", "1"],
      { timeoutMs: 10_000 },
    );
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/refused/i);
  });

  it("runToCompletion feeds stdin", async () => {
    const result = await runToCompletion("cat", [], { input: "a\nb\n" });
    expect(result).toMatchObject({ code: 0, stdout: "a\nb\n" });
  });

  it("waitForLine and stopProcess end a real process", async () => {
    const proc = await spawnTracked(process.execPath, [
      "-e",
      'console.log("ready"); setInterval(() => {}, 1000);',
    ]);
    expect(await waitForLine(proc, (line) => line === "ready")).toBe("ready");
    expect(isAlive(proc.pid)).toBe(true);

    expect(await stopProcess(proc)).toEqual({ code: null, signal: "SIGTERM" });
    expect(isAlive(proc.pid)).toBe(false);
  });

  it("stopProcess escalates to SIGKILL when the grace period runs out", async () => {
    const proc = await spawnTracked(process.execPath, [
      "-e",
      'process.on("SIGTERM", () => console.log("ignored")); console.log("ready"); setInterval(() => {}, 1000);',
    ]);
    await waitForLine(proc, (line) => line === "ready");
    expect(await stopProcess(proc, { graceMs: 200 })).toEqual({ code: null, signal: "SIGKILL" });
    expect(proc.stdout()).toContain("ignored");
    expect(isAlive(proc.pid)).toBe(false);
  });

  it("waitForLine rejects with the output when the process exits first", async () => {
    const proc = await spawnTracked(process.execPath, [
      "-e",
      'console.error("boom"); process.exit(3)',
    ]);
    await expect(waitForLine(proc, (line) => line === "never")).rejects.toThrow(
      /exited[\s\S]*boom/,
    );
    expect(proc.exitInfo).toEqual({ code: 3, signal: null });
  });
});

describe("config helper", () => {
  it("writes typed input over the test defaults, YAML the gateway reads back", async () => {
    const { dir, file } = writeConfig({
      mqtt: { max_inflight: 3, allow_anonymous: true },
      upstream: { servers: ["nats://127.0.0.1:4999"], stream: "EDGE", ack_timeout: "10m" },
      buffer: { classes: [{ name: "alarms", subjects: ["alarms.>"], on_full: "reject" }] },
    });
    try {
      const config = loadConfig({ file, env: {}, hostname: "test-host" });
      expect(config.gateway).toEqual({ id: "gw1", data_dir: join(dir.path, "data") });
      expect(config.mqtt.listeners).toEqual([{ host: "127.0.0.1", port: 0, websocket: false }]);
      expect([config.mqtt.max_inflight, config.mqtt.allow_anonymous]).toEqual([3, true]);
      expect(config.upstream).toMatchObject({
        servers: ["nats://127.0.0.1:4999"],
        stream: "EDGE",
        mode: "jetstream",
        ack_timeout: 600_000,
      });
      expect(config.buffer.classes.map((c) => [c.name, c.on_full])).toEqual([["alarms", "reject"]]);
      expect([config.http.host, config.http.port]).toEqual(["127.0.0.1", 0]);
    } finally {
      await dir.cleanup();
    }
  });

  it("replaces lists and leaves the defaults alone", () => {
    const listeners = [{ host: "127.0.0.1", port: 0, websocket: true }];
    expect(testConfig({ mqtt: { listeners } }).mqtt).toEqual({ listeners });
    expect(testConfig().mqtt).toEqual({ listeners: [{ host: "127.0.0.1", port: 0 }] });
    expect(testConfig({ gateway: { id: "gw7" } }).gateway).toEqual({
      id: "gw7",
      data_dir: "./data",
    });
  });
});

describe("fixtures", () => {
  /** What the first test started, for the second to find stopped. */
  const started: { hubPid?: number; gatewayPid?: number; proxyPort?: number; dir?: string } = {};

  it("start a hub with the EDGE stream, a proxy and gateways on demand", async ({
    hub,
    nc,
    stream,
    hubProxy,
    gateway,
  }) => {
    expect(stream).toBe("EDGE");
    expect((await streamInfo(nc, stream)).config.subjects).toEqual(["edge.>"]);
    const proxy = await hubProxy();
    const child = await gateway.spawn({ upstream: { servers: [proxy.url], stream } });
    const inProcess = await gateway.start({ gateway: { id: "gw2" } });
    expect(inProcess.mqttPort).toBeGreaterThan(0);
    Object.assign(started, {
      hubPid: hub.pid,
      gatewayPid: child.proc.pid,
      proxyPort: proxy.port,
      dir: child.dir.path,
    });
    expect(isAlive(hub.pid) && isAlive(child.proc.pid)).toBe(true);
  });

  it("stop all of it after the test, processes by PID", async () => {
    expect(started.hubPid).toBeDefined();
    expect(isAlive(started.hubPid!)).toBe(false);
    expect(isAlive(started.gatewayPid!)).toBe(false);
    expect(existsSync(started.dir!)).toBe(false);
    const refused = createConnection({ host: "127.0.0.1", port: started.proxyPort! });
    await expect(once(refused, "connect", 5_000)).rejects.toThrow(/ECONNREFUSED/);
  });
});
