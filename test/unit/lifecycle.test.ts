// The lifecycle of the parts that serve a socket or run a timer (STYLE.md "Lifecycle"):
// an abort of the signal they were started with ends them, and `closed()` says so.
import { connect, createServer, type Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { Bus, Guard, ManualClock, silentLogger } from "../../src/core/index.js";
import { Broker, MqttListener } from "../../src/mqtt/index.js";
import { DEFAULT_NATS_CONNECTION_OPTIONS, NatsListener } from "../../src/nats/index.js";
import { HttpEndpoint, MetricsRegistry } from "../../src/observe/index.js";
import { Outbox } from "../../src/store/index.js";
import { tempDatabases } from "../helpers/temp-db.js";

const LOOPBACK = "127.0.0.1";
const { open } = tempDatabases("lifecycle");

function newListener(): MqttListener {
  const broker = new Broker({
    bus: new Bus(),
    log: silentLogger,
    metrics: new MetricsRegistry(),
    clock: new ManualClock(0),
  });
  return new MqttListener(broker, silentLogger);
}

function newNatsListener(): NatsListener {
  return new NatsListener(new Bus(), new Guard(silentLogger, new MetricsRegistry()), silentLogger, {
    connection: {
      ...DEFAULT_NATS_CONNECTION_OPTIONS,
      serverId: "LIFECYCLE",
      serverName: "lifecycle",
      version: "0.0.0",
    },
  });
}

function newEndpoint(): HttpEndpoint {
  return new HttpEndpoint({ metrics: () => "", status: () => ({ healthy: true }) }, silentLogger);
}

/** A connected client socket and a promise of its close. */
async function dial(port: number): Promise<{ socket: Socket; closed: Promise<void> }> {
  const socket = connect({ host: LOOPBACK, port });
  socket.on("error", () => {});
  // Reads (and drops) what the server sends first (NATS: INFO), so its close is seen.
  socket.resume();
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  return { socket, closed };
}

/** The error a connect to `port` fails with, or undefined when it succeeds. */
function connectError(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ host: LOOPBACK, port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(undefined);
    });
    socket.once("error", (err: NodeJS.ErrnoException) => resolve(err.code));
  });
}

/** A port some other server holds, and that server's close. */
async function takenPort(): Promise<{ port: number; release: () => Promise<void> }> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, LOOPBACK, resolve));
  const { port } = server.address() as { port: number };
  return { port, release: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** What the MQTT and NATS listeners and the HTTP endpoint have in common. */
interface ListeningPart {
  listen(host: string, port: number, signal?: AbortSignal): Promise<{ port: number }>;
  closed(): Promise<Error | undefined>;
}

const LISTENING_PARTS: readonly [string, () => ListeningPart][] = [
  ["MqttListener", newListener],
  ["NatsListener", newNatsListener],
  ["HttpEndpoint", newEndpoint],
];

describe.each(LISTENING_PARTS)("%s lifecycle", (_name, make) => {
  it("an abort of its signal stops accepting and closes every connection; closed() resolves", async () => {
    const part = make();
    const stop = new AbortController();
    const { port } = await part.listen(LOOPBACK, 0, stop.signal);
    const client = await dial(port);
    stop.abort();
    await client.closed;
    await expect(part.closed()).resolves.toBeUndefined();
    expect(await connectError(port)).toBe("ECONNREFUSED");
  });

  it("closed() resolves at once when it never listened; a listen on an aborted signal rejects", async () => {
    const part = make();
    await expect(part.closed()).resolves.toBeUndefined();
    await expect(part.listen(LOOPBACK, 0, AbortSignal.abort())).rejects.toThrow(/abort/i);
    await expect(part.closed()).resolves.toBeUndefined();
  });

  it("a listen that fails rejects, and closed() resolves with its error (never rejects)", async () => {
    const taken = await takenPort();
    try {
      const part = make();
      // Said as which part cannot take which address, the system's error as its cause.
      await expect(part.listen(LOOPBACK, taken.port)).rejects.toMatchObject({
        code: expect.stringMatching(/^LG_ERR_(MQTT|HTTP|NATS)_PORT_IN_USE$/),
        message: expect.stringContaining(`cannot take ${LOOPBACK}:${taken.port}`),
        cause: { code: "EADDRINUSE" },
      });
      expect(await part.closed()).toMatchObject({ code: "EADDRINUSE" });
    } finally {
      await taken.release();
    }
  });
});

describe("the explicit stops settle closed() too", () => {
  it("MqttListener: after stopAccepting and destroyAll, without a signal", async () => {
    const listener = newListener();
    const { port } = await listener.listen(LOOPBACK, 0);
    const client = await dial(port);
    const stopped = listener.stopAccepting();
    listener.destroyAll();
    await stopped;
    await client.closed;
    await expect(listener.closed()).resolves.toBeUndefined();
  });

  it("HttpEndpoint: after close(), with a request served before", async () => {
    const http = newEndpoint();
    const { port } = await http.listen(LOOPBACK, 0);
    const res = await fetch(`http://${LOOPBACK}:${port}/healthz`);
    expect(res.status).toBe(200);
    await res.text();
    await http.close();
    await expect(http.closed()).resolves.toBeUndefined();
  });
});

describe("Outbox lifecycle", () => {
  const MAINTENANCE_MS = 1_000;

  function newOutbox(clock: ManualClock): Outbox {
    return new Outbox(open(), {
      commitIntervalMs: 0,
      commitMaxRows: 1000,
      log: silentLogger,
      metrics: new MetricsRegistry(),
      clock,
    });
  }

  it("an abort of the maintenance signal stops its timer; the outbox stays open", async () => {
    const clock = new ManualClock(0);
    const outbox = newOutbox(clock);
    const stop = new AbortController();
    outbox.startMaintenance(MAINTENANCE_MS, stop.signal);
    expect(clock.pending).toBe(1);
    clock.advance(MAINTENANCE_MS);
    expect(clock.pending).toBe(1);
    stop.abort();
    expect(clock.pending).toBe(0);
    clock.advance(MAINTENANCE_MS);
    expect(clock.pending).toBe(0);
    const settled = await Promise.race([outbox.closed().then(() => "closed"), "open"]);
    expect(settled).toBe("open");
    outbox.close();
  });

  it("maintenance started on an aborted signal sets no timer", () => {
    const clock = new ManualClock(0);
    const outbox = newOutbox(clock);
    outbox.startMaintenance(MAINTENANCE_MS, AbortSignal.abort());
    expect(clock.pending).toBe(0);
    outbox.close();
  });

  it("closed() resolves at close() with no error", async () => {
    const clock = new ManualClock(0);
    const outbox = newOutbox(clock);
    outbox.startMaintenance(MAINTENANCE_MS);
    const closed = outbox.closed();
    outbox.close();
    expect(clock.pending).toBe(0);
    await expect(closed).resolves.toBeUndefined();
  });
});
