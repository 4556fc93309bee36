// A hub that accepts TCP but never answers (a hung nats-server, a load balancer in front of
// a dead one): every connect attempt that times out must end its socket, in our `connect`
// and in the gateway's reconnect loop (the bundle, counted from both ends), and the gateway
// must still connect and forward once a real hub takes the port.
import { readdirSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { describe, expect } from "vitest";
import { connect } from "../../src/upstream/dial.js";
import { createEdgeStream, it } from "../helpers/fixtures.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { connectClient, streamMessages } from "../helpers/nats-server.js";
import { waitFor } from "../helpers/wait.js";

interface HungHub {
  readonly port: number;
  readonly url: string;
  /** Connections accepted so far. */
  readonly attempts: number;
  /** Connections open now, and the most ever open at once. */
  readonly open: number;
  readonly maxOpen: number;
  close(): Promise<void>;
}

/**
 * A TCP server that accepts and then says nothing more than `greeting`, counting the
 * sockets open at once (+1 on accept, -1 on close). `onAccept` runs at each accept.
 */
async function startHungHub(greeting = "", onAccept: () => void = () => {}): Promise<HungHub> {
  const sockets = new Set<Socket>();
  let attempts = 0;
  let maxOpen = 0;
  const server = createServer((socket) => {
    attempts++;
    sockets.add(socket);
    maxOpen = Math.max(maxOpen, sockets.size);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    // Reads (and drops) what the client sends, a TLS hello say: unread data would hold
    // back the end of the stream, and with it the close that is counted.
    socket.resume();
    if (greeting !== "") socket.write(greeting);
    onAccept();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no TCP address");
  return {
    port: address.port,
    url: `nats://127.0.0.1:${address.port}`,
    get attempts() {
      return attempts;
    },
    get open() {
      return sockets.size;
    },
    get maxOpen() {
      return maxOpen;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Connect attempts per case, each given this long for INFO. */
const ATTEMPTS = 5;
const TIMEOUT_MS = 300;

describe("our connect against a hub that never answers", () => {
  const cases = [
    { name: "no INFO", greeting: "", tls: undefined },
    { name: "TLS first, no handshake", greeting: "", tls: { handshakeFirst: true } },
    {
      name: "INFO asks for TLS, no handshake",
      greeting: 'INFO {"server_id":"hung","tls_required":true}\r\n',
      tls: {},
    },
  ];
  for (const c of cases) {
    it(`${c.name}: each timed-out attempt closes its socket`, async ({ defer }) => {
      const hub = await startHungHub(c.greeting);
      defer(() => hub.close());
      for (let n = 1; n <= ATTEMPTS; n++) {
        await expect(
          connect({ servers: hub.url, reconnect: false, timeout: TIMEOUT_MS, tls: c.tls }),
        ).rejects.toThrow("timeout");
        await waitFor(() => hub.open === 0, {
          timeoutMs: 5_000,
          message: () => `attempt ${n}: ${hub.open} socket(s) still open`,
        });
      }
      expect(hub.attempts).toBe(ATTEMPTS);
      expect(hub.maxOpen).toBe(1);
    });
  }
});

describe("the gateway against a hung hub", () => {
  it("keeps one socket open at a time, then forwards once a real hub takes the port", async ({
    defer,
    gateway,
    startHub,
  }) => {
    // The gateway's open descriptors, sampled as the hub accepts each attempt (from the
    // second on: the first may come before the spawn has returned the PID).
    const fds: number[] = [];
    let pid: number | undefined;
    const hung = await startHungHub("", () => {
      if (pid !== undefined) fds.push(readdirSync(`/proc/${pid}/fd`).length);
    });
    defer(() => hung.close());
    const gw = await gateway.spawn({
      upstream: { servers: [hung.url], stream: "EDGE", reconnect_delay_max: "200ms" },
    });
    pid = gw.proc.pid;
    // Each attempt waits out the 5 s connect timeout: six samples take about 30 s.
    const wanted = 6;
    await waitFor(() => fds.length >= wanted, {
      timeoutMs: 60_000,
      message: () => `the hub saw ${hung.attempts} attempt(s), fds ${fds.join(",")}`,
    });
    // Only the attempt in progress is open: the previous one was closed before the next.
    expect(hung.maxOpen).toBe(1);
    expect(hung.open).toBeLessThanOrEqual(1);
    // The gateway holds no more descriptors at the last sample than at the first (one of
    // slack for whatever else it opens meanwhile; the leak added one per attempt: +5).
    expect(fds[wanted - 1]! - fds[0]!).toBeLessThanOrEqual(1);

    // A message published while the hub hangs is kept, and forwarded once one answers.
    const mqtt = await connectMqttJs(gw.mqttPort, { clientId: "hung-pub" });
    defer(() => mqtt.endAsync());
    await mqtt.publishAsync("sensors/hall/temp", "21.5", { qos: 1 });
    await hung.close();
    const hub = await startHub({ port: hung.port });
    const nc = await connectClient(hub.url);
    defer(() => nc.close());
    await createEdgeStream(nc);
    const messages = await waitFor(
      async () => {
        const m = await streamMessages(nc, "EDGE");
        return m.length > 0 ? m : undefined;
      },
      { timeoutMs: 30_000, message: "the message never reached the real hub" },
    );
    expect(messages.map((m) => [m.subject, new TextDecoder().decode(m.data)])).toEqual([
      ["edge.gw1.sensors.hall.temp", "21.5"],
    ]);
  }, 120_000);
});
