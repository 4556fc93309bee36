// TCP keepalive on every accepted MQTT socket (issue 10, finding 10): a peer that vanished
// without a FIN or RST (power cut, cable pulled) is noticed by the kernel's probes, so a
// half-open socket does not hold a connection slot forever. `mqtt.tcp_keepalive` (60s by
// default, 0 = off) is the idle time before the first probe. The kernel is asked: `ss -o`
// shows a socket's keepalive timer, `timer:(keepalive,<time left>,<probes>)`.
import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { runToCompletion } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";

const sockets: Socket[] = [];

async function openSocket(port: number): Promise<Socket> {
  const socket = connect({ host: "127.0.0.1", port });
  sockets.push(socket);
  socket.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve());
    socket.once("error", reject);
  });
  return socket;
}

/** The timer `ss -o` shows for the gateway's end of the connection from `client`. */
async function serverTimer(port: number, client: Socket): Promise<string> {
  const filter = `( sport = :${port} and dport = :${client.localPort} )`;
  const { stdout } = await runToCompletion("ss", ["-tnoH", "state", "established", filter]);
  const lines = stdout.trim().split("\n").filter(Boolean);
  expect(lines, stdout).toHaveLength(1);
  return /timer:\(([^)]*)\)/.exec(lines[0]!)?.[1] ?? "none";
}

/** `keepalive,<n>sec,0` or `keepalive,<n>min<m>sec,0`... as seconds left. */
function keepaliveSecondsLeft(timer: string): number {
  const m = /^keepalive,(?:(\d+)min)?(?:(\d+)sec)?(?:\d+ms)?,0$/.exec(timer);
  if (m === null) throw new Error(`not a keepalive timer: ${timer}`);
  return Number(m[1] ?? 0) * 60 + Number(m[2] ?? 0);
}

describe("TCP keepalive on MQTT sockets", () => {
  let gw: TestGateway | undefined;

  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    await gw?.dispose();
    gw = undefined;
  });

  const listeners = [
    { host: "127.0.0.1", port: 0 },
    { host: "127.0.0.1", port: 0, websocket: true },
  ];

  it("is on by default (60 s) for TCP and WebSocket listeners, before any CONNECT", async () => {
    gw = await startGateway({ mqtt: { listeners } });
    const ports = gw.gateway.addresses().mqtt.map((a) => a.port);
    expect(ports).toHaveLength(2);
    for (const port of ports) {
      const client = await openSocket(port);
      const timer = await waitFor(() => serverTimer(port, client));
      const left = keepaliveSecondsLeft(timer);
      expect(left, timer).toBeGreaterThan(50);
      expect(left, timer).toBeLessThanOrEqual(60);
    }
  });

  it("takes mqtt.tcp_keepalive", async () => {
    gw = await startGateway({ mqtt: { listeners, tcp_keepalive: "17s" } });
    for (const { port } of gw.gateway.addresses().mqtt) {
      const client = await openSocket(port);
      const left = keepaliveSecondsLeft(await serverTimer(port, client));
      expect(left).toBeGreaterThan(10);
      expect(left).toBeLessThanOrEqual(17);
    }
  });

  it("tcp_keepalive: 0 turns it off", async () => {
    gw = await startGateway({ mqtt: { listeners, tcp_keepalive: 0 } });
    for (const { port } of gw.gateway.addresses().mqtt) {
      const client = await openSocket(port);
      expect(await serverTimer(port, client)).toBe("none");
    }
  });
});
