// A raw MQTT client for packet-sequence fuzzing: it knows which user it logged in as,
// answers the server's deliveries by itself (PUBACK, PUBREC then PUBCOMP) unless told not
// to, and never throws when the server closes on it — a closed socket is an outcome the
// fuzzer records, not an error. Packets are encoded and parsed with mqtt-packet.
import { connect as netConnect, type Socket } from "node:net";
import mqtt from "mqtt-packet";

export type Version = 4 | 5;

/** What `next` resolves with when the socket closed before a matching packet arrived. */
export const CLOSED = "closed" as const;
/** ... or when neither happened within its deadline. */
export const TIMEOUT = "timeout" as const;

interface Waiter {
  readonly match: (p: mqtt.Packet) => boolean;
  readonly resolve: (p: mqtt.Packet | typeof CLOSED | typeof TIMEOUT) => void;
}

export interface SequenceClientOptions {
  /** The user this connection logs in as (recorded with every delivery it receives). */
  readonly user: string;
  /** Answer deliveries (QoS 1 PUBACK, QoS 2 PUBREC/PUBCOMP); false: never read them. */
  readonly acks: boolean;
  /** Source address on loopback (127.x.y.z), for per-address limits; default the kernel's. */
  readonly localAddress?: string;
}

/** Every raw client opened and not yet closed, so a run can always clean up. */
const openClients = new Set<SequenceClient>();

export class SequenceClient {
  readonly socket: Socket;
  readonly version: Version;
  readonly user: string;
  readonly acks: boolean;
  /** Deliveries (PUBLISH from the server), in arrival order. */
  readonly deliveries: mqtt.IPublishPacket[] = [];
  /** A parse error on the server's bytes: the server sent something that is not MQTT. */
  parseError: Error | undefined;
  readonly closed: Promise<void>;
  #isClosed = false;
  readonly #unread: mqtt.Packet[] = [];
  readonly #waiters = new Set<Waiter>();

  private constructor(socket: Socket, version: Version, options: SequenceClientOptions) {
    this.socket = socket;
    this.version = version;
    this.user = options.user;
    this.acks = options.acks;
    const parser = mqtt.parser({ protocolVersion: version });
    parser.on("packet", (p: mqtt.Packet) => this.#onPacket(p));
    parser.on("error", (err: Error) => {
      this.parseError ??= err;
    });
    socket.on("data", (chunk: Buffer) => parser.parse(chunk));
    socket.on("error", () => {}); // a reset is a close like any other here
    this.closed = new Promise((resolve) =>
      socket.once("close", () => {
        this.#isClosed = true;
        openClients.delete(this);
        for (const w of this.#waiters) w.resolve(CLOSED);
        this.#waiters.clear();
        resolve();
      }),
    );
  }

  /** Opens a TCP connection (nothing sent yet); undefined when the server refuses it. */
  static async open(
    port: number,
    version: Version,
    options: SequenceClientOptions,
  ): Promise<SequenceClient | undefined> {
    const socket = netConnect({
      host: "127.0.0.1",
      port,
      ...(options.localAddress !== undefined ? { localAddress: options.localAddress } : {}),
    });
    const client = new SequenceClient(socket, version, options);
    openClients.add(client);
    const ok = await new Promise<boolean>((resolve) => {
      socket.once("connect", () => resolve(true));
      socket.once("close", () => resolve(false));
    });
    return ok ? client : undefined;
  }

  get isClosed(): boolean {
    return this.#isClosed;
  }

  send(packet: mqtt.Packet): void {
    if (this.#isClosed) return;
    this.socket.write(mqtt.generate(packet, { protocolVersion: this.version }));
  }

  write(bytes: Uint8Array): void {
    if (!this.#isClosed) this.socket.write(bytes);
  }

  /**
   * The first unread packet satisfying `match` (now or later), removed from the unread
   * queue; CLOSED if the socket closes first, TIMEOUT after `timeoutMs`.
   */
  next(
    match: (p: mqtt.Packet) => boolean,
    timeoutMs: number,
  ): Promise<mqtt.Packet | typeof CLOSED | typeof TIMEOUT> {
    const i = this.#unread.findIndex(match);
    if (i >= 0) return Promise.resolve(this.#unread.splice(i, 1)[0]!);
    if (this.#isClosed) return Promise.resolve(CLOSED);
    return new Promise((resolve) => {
      const waiter: Waiter = {
        match,
        resolve: (p) => {
          clearTimeout(timer);
          this.#waiters.delete(waiter);
          resolve(p);
        },
      };
      const timer = setTimeout(() => waiter.resolve(TIMEOUT), timeoutMs);
      this.#waiters.add(waiter);
    });
  }

  /** Drops the connection without DISCONNECT: a vanished client. */
  async destroy(): Promise<void> {
    this.socket.destroy();
    await this.closed;
  }

  #onPacket(p: mqtt.Packet): void {
    if (p.cmd === "publish") {
      this.deliveries.push(p);
      if (this.acks && p.qos === 1) this.send({ cmd: "puback", messageId: p.messageId! });
      if (this.acks && p.qos === 2) this.send({ cmd: "pubrec", messageId: p.messageId! });
      return;
    }
    if (p.cmd === "pubrel" && this.acks) {
      // The server's half of an outbound QoS 2 delivery; ours (PUBREL after our PUBREC
      // of a client publish) never comes this way.
      this.send({ cmd: "pubcomp", messageId: p.messageId! });
      return;
    }
    for (const w of this.#waiters) {
      if (w.match(p)) {
        w.resolve(p);
        return;
      }
    }
    this.#unread.push(p);
  }
}

/** Destroys every sequence client still open. */
export async function closeSequenceClients(): Promise<void> {
  await Promise.all([...openClients].map((c) => c.destroy()));
}
