// Proves the test helpers against the real programs they drive.
import { createServer } from "node:net";
import { jetstream } from "@nats-io/jetstream";
import { headers } from "@nats-io/transport-node";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import {
  closeClients,
  connectClient,
  createStream,
  type NatsServer,
  startNatsServer,
  streamInfo,
  streamMessages,
} from "../helpers/nats-server.js";
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

/** A port nothing listens on: bound by us, then released. */
async function closedPort(): Promise<number> {
  const server = createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  server.close();
  await once(server, "close");
  if (address === null || typeof address === "string") throw new Error("no TCP address");
  return address.port;
}

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
