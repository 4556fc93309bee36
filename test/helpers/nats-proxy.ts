// A TCP proxy between leafgate and the hub that understands the NATS protocol: it splits
// each direction into whole frames and asks the test, frame by frame, whether to pass it.
// Faults that must land at an exact protocol event are built on it ("the hub has read N
// publishes", "the hub's acks never arrive"). Loopback only, ephemeral port.
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { type NatsFrame, NatsFrameSplitter } from "./nats-frames.js";

/** What happens to one frame: forwarded, or silently swallowed. */
export type FrameVerdict = "pass" | "drop";

export interface NatsProxyFilters {
  /** Frames from the gateway (client) to the hub; default: pass all. */
  toHub?: (frame: NatsFrame) => FrameVerdict;
  /** Frames from the hub to the gateway; default: pass all. */
  toClient?: (frame: NatsFrame) => FrameVerdict;
}

export interface NatsProxy {
  readonly port: number;
  /** nats://127.0.0.1:PORT */
  readonly url: string;
  /**
   * New connections wait, unconnected to the hub, until release(); the NATS client sends
   * nothing before the hub's INFO, so nothing is lost meanwhile.
   */
  hold(): void;
  /** Connects every held connection to the hub, and new ones at once. */
  release(): void;
  /** Frames swallowed so far, by direction. */
  dropped(): { toHub: number; toClient: number };
  /** Open connection pairs. */
  connections(): number;
  /** Stops listening and destroys every socket. */
  close(): Promise<void>;
}

/** Starts a proxy on 127.0.0.1 (ephemeral port) to 127.0.0.1:`targetPort`. */
export async function startNatsProxy(
  targetPort: number,
  filters: NatsProxyFilters = {},
): Promise<NatsProxy> {
  const dropped = { toHub: 0, toClient: 0 };
  const sockets = new Set<Socket>();
  const pipe = (
    src: Socket,
    dst: Socket,
    filter: ((f: NatsFrame) => FrameVerdict) | undefined,
    direction: keyof typeof dropped,
  ): void => {
    const splitter = new NatsFrameSplitter();
    src.on("data", (chunk: Buffer) => {
      let frames: NatsFrame[];
      try {
        frames = splitter.push(chunk);
      } catch {
        src.destroy();
        dst.destroy();
        return;
      }
      const passed: Buffer[] = [];
      for (const frame of frames) {
        if (filter === undefined || filter(frame) === "pass") passed.push(frame.bytes);
        else dropped[direction]++;
      }
      if (passed.length === 0 || dst.destroyed) return;
      // Flow control: a destination that does not drain stops the source.
      if (!dst.write(Buffer.concat(passed))) {
        src.pause();
        dst.once("drain", () => src.resume());
      }
    });
  };
  let held: Socket[] | undefined;
  const connect = (client: Socket): void => {
    if (client.destroyed) return;
    const hub = createConnection({ host: "127.0.0.1", port: targetPort, noDelay: true });
    for (const s of [client, hub]) {
      sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => {
        sockets.delete(s);
        client.destroy();
        hub.destroy();
      });
    }
    pipe(client, hub, filters.toHub, "toHub");
    pipe(hub, client, filters.toClient, "toClient");
  };
  const server: Server = createServer({ noDelay: true }, (client) => {
    if (held === undefined) return connect(client);
    client.on("error", () => {});
    held.push(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("nats proxy: no port");
  const { port } = address;
  return {
    port,
    url: `nats://127.0.0.1:${port}`,
    hold() {
      held ??= [];
    },
    release() {
      const waiting = held ?? [];
      held = undefined;
      for (const client of waiting) connect(client);
    },
    dropped: () => ({ ...dropped }),
    connections: () => sockets.size / 2,
    async close() {
      for (const s of [...sockets, ...(held ?? [])]) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
