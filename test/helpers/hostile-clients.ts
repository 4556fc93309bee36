// Clients that try to hurt a gateway, for soak and chaos tests: one that never reads
// what it is sent, and a fuzzer that opens connection after connection with random bytes
// or random valid-looking packets. Both follow the gateway across restarts (they are told
// its port) and bound their own memory: neither writes past its socket's backpressure.
import { connect as netConnect, type Socket } from "node:net";
import mqtt from "mqtt-packet";
import { rng } from "./seed.js";

/** A PINGREQ: two bytes the gateway answers with two bytes, whether we read them or not. */
const PINGREQ = Buffer.from([0xc0, 0x00]);

export interface NeverReaderOptions {
  /** PINGREQs written per second (in bursts every BURST_INTERVAL_MS). */
  readonly pingsPerSecond: number;
  /** QoS 1 PUBLISHes per second on `topic`, whose PUBACKs are never read. */
  readonly publishesPerSecond: number;
  readonly topic: string;
  /** What it subscribes to (QoS 1), so deliveries pile up behind its unread socket too. */
  readonly subscribe: string;
  readonly localAddress?: string;
}

export interface HostileStats {
  connections: number;
  /** Connections the gateway closed (a never-reader cut as a slow consumer, a fuzz run). */
  closedByServer: number;
  bytesWritten: number;
}

export interface HostileClient {
  readonly stats: HostileStats;
  /** Where the gateway listens now (after a restart); it (re)connects there. */
  setPort(port: number): void;
  stop(): void;
}

const BURST_INTERVAL_MS = 50;
/** After the gateway closed on it, a hostile client comes back after this. */
const RECONNECT_DELAY_MS = 250;

function encode(packet: mqtt.Packet, version: 4 | 5): Buffer {
  return mqtt.generate(packet, { protocolVersion: version });
}

/**
 * A client that connects, subscribes, then floods PINGREQs and QoS 1 PUBLISHes and never
 * reads a byte (its socket's reading is stopped at the kernel level, as aedes does to
 * freeze a slow client). Everything the gateway writes to it stays in the gateway.
 */
export function startNeverReader(options: NeverReaderOptions): HostileClient {
  const stats: HostileStats = { connections: 0, closedByServer: 0, bytesWritten: 0 };
  let port = 0;
  let socket: Socket | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let packetId = 1;

  const open = (): void => {
    if (stopped || port === 0) return;
    const s = netConnect({
      host: "127.0.0.1",
      port,
      ...(options.localAddress !== undefined ? { localAddress: options.localAddress } : {}),
    });
    socket = s;
    let connected = false;
    s.on("error", () => {});
    s.on("connect", () => {
      connected = true;
      stats.connections++;
      // Never read: not into Node's buffer, not from the kernel.
      s.pause();
      (s as unknown as { _handle?: { readStop?: () => void } })._handle?.readStop?.();
      const hello = Buffer.concat([
        encode(
          {
            cmd: "connect",
            protocolId: "MQTT",
            protocolVersion: 4,
            clientId: `never-reads-${stats.connections}`,
            clean: true,
            keepalive: 0,
          },
          4,
        ),
        encode(
          { cmd: "subscribe", messageId: 1, subscriptions: [{ topic: options.subscribe, qos: 1 }] },
          4,
        ),
      ]);
      s.write(hello);
    });
    s.on("close", () => {
      if (socket !== s) return;
      socket = undefined;
      if (stopped) return;
      if (connected) stats.closedByServer++;
      setTimeout(open, RECONNECT_DELAY_MS).unref();
    });
  };

  const pingsPerBurst = Math.ceil((options.pingsPerSecond * BURST_INTERVAL_MS) / 1000);
  const publishesPerBurst = Math.ceil((options.publishesPerSecond * BURST_INTERVAL_MS) / 1000);
  const pings = Buffer.concat(Array.from({ length: pingsPerBurst }, () => PINGREQ));
  const burst = (): void => {
    const s = socket;
    // Only what the socket takes without queueing in this process: the point is the
    // gateway's memory, not ours.
    if (s === undefined || s.connecting || s.writableNeedDrain) return;
    const chunks: Buffer[] = [pings];
    for (let i = 0; i < publishesPerBurst; i++) {
      packetId = packetId === 0xffff ? 2 : packetId + 1;
      chunks.push(
        encode(
          {
            cmd: "publish",
            topic: options.topic,
            payload: Buffer.from(`never-reads ${packetId}`),
            qos: 1,
            retain: false,
            dup: false,
            messageId: packetId,
          },
          4,
        ),
      );
    }
    const bytes = Buffer.concat(chunks);
    stats.bytesWritten += bytes.length;
    s.write(bytes);
  };
  timer = setInterval(burst, BURST_INTERVAL_MS);

  return {
    stats,
    setPort(p) {
      port = p;
      const old = socket;
      socket = undefined;
      old?.destroy();
      open();
    },
    stop() {
      stopped = true;
      clearInterval(timer);
      timer = undefined;
      socket?.destroy();
    },
  };
}

export interface FuzzerOptions {
  readonly seed: number;
  /** A new connection this often. */
  readonly intervalMs: number;
  /** Topics the fuzzer publishes on start with this (kept apart from real traffic). */
  readonly topicPrefix: string;
  /** Source addresses to rotate through (per-address limits), e.g. 127.0.2.1..20. */
  readonly localAddresses?: readonly string[];
}

/** How long a fuzz connection is kept, at most, before the fuzzer drops it. */
const FUZZ_CONNECTION_MS = 300;
const MAX_RANDOM_BYTES = 256;

/**
 * Opens a connection every `intervalMs`, writes either random bytes or a CONNECT followed
 * by a few random valid-looking packets (some with one byte flipped), reads whatever comes
 * back, and drops the connection after FUZZ_CONNECTION_MS. What it sends comes from `seed`.
 */
export function startListenerFuzzer(options: FuzzerOptions): HostileClient {
  const stats: HostileStats = { connections: 0, closedByServer: 0, bytesWritten: 0 };
  const random = rng(options.seed);
  const int = (n: number): number => Math.floor(random() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  let port = 0;
  let stopped = false;
  let n = 0;

  const topics = [
    `${options.topicPrefix}/a`,
    `${options.topicPrefix}/b/c`,
    `${options.topicPrefix}/${"x/".repeat(50)}y`,
    "",
    "#",
    "+/+",
    "$SYS/x",
    "a\u0000b",
  ];
  const randomPacket = (version: 4 | 5, id: string): Buffer => {
    const kind = int(7);
    const messageId = 1 + int(0xfffe);
    let packet: mqtt.Packet;
    if (kind === 0 || kind === 1) {
      packet = {
        cmd: "publish",
        topic: pick(topics),
        payload: Buffer.from(`fuzz ${id} ${int(1e6)}`),
        qos: pick([0, 1, 2] as const),
        retain: random() < 0.2,
        dup: random() < 0.1,
        messageId,
      };
    } else if (kind === 2) {
      packet = {
        cmd: "subscribe",
        messageId,
        subscriptions: [
          { topic: pick([...topics, `${options.topicPrefix}/#`]), qos: pick([0, 1, 2] as const) },
        ],
      };
    } else if (kind === 3) {
      packet = { cmd: "unsubscribe", messageId, unsubscriptions: [pick(topics)] };
    } else if (kind === 4) {
      packet = { cmd: pick(["puback", "pubrec", "pubrel", "pubcomp"] as const), messageId };
    } else if (kind === 5) {
      packet = { cmd: "pingreq" };
    } else {
      packet = { cmd: "disconnect" };
    }
    let bytes: Buffer;
    try {
      bytes = encode(packet, version);
    } catch {
      return Buffer.from([0xc0, 0x00]); // mqtt-packet refused it (an invalid topic): a PINGREQ
    }
    if (random() < 0.3 && bytes.length > 0) {
      bytes = Buffer.from(bytes);
      bytes[int(bytes.length)]! ^= 1 << int(8);
    }
    return bytes;
  };

  const once = (): void => {
    if (stopped || port === 0) return;
    const id = `fz${n++}`;
    const localAddress =
      options.localAddresses === undefined ? undefined : pick(options.localAddresses);
    const s = netConnect({
      host: "127.0.0.1",
      port,
      ...(localAddress !== undefined ? { localAddress } : {}),
    });
    let byUs = false;
    s.on("error", () => {});
    s.on("data", () => {}); // read and drop whatever comes
    const drop = setTimeout(() => {
      byUs = true;
      s.destroy();
    }, FUZZ_CONNECTION_MS);
    s.on("close", () => {
      clearTimeout(drop);
      if (!byUs) stats.closedByServer++;
    });
    s.on("connect", () => {
      stats.connections++;
      let bytes: Buffer;
      if (random() < 0.3) {
        bytes = Buffer.from(Array.from({ length: 1 + int(MAX_RANDOM_BYTES) }, () => int(256)));
      } else {
        const version = pick([4, 5] as const);
        // An empty client id needs a clean session (mqtt-packet will not encode it otherwise).
        const clientId = random() < 0.1 ? "" : id;
        const parts = [
          encode(
            {
              cmd: "connect",
              protocolId: "MQTT",
              protocolVersion: version,
              clientId,
              clean: clientId === "" || random() < 0.8,
              keepalive: int(120),
            },
            version,
          ),
        ];
        for (let i = 1 + int(5); i > 0; i--) parts.push(randomPacket(version, id));
        bytes = Buffer.concat(parts);
      }
      stats.bytesWritten += bytes.length;
      s.write(bytes);
    });
  };
  const timer = setInterval(once, options.intervalMs);

  return {
    stats,
    setPort(p) {
      port = p;
    },
    stop() {
      stopped = true;
      clearInterval(timer);
    },
  };
}
