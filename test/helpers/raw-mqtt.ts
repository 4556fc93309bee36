// A raw MQTT client for tests that must see what mqtt.js hides: DUP flags, packet ids,
// reason codes, topic aliases, a server DISCONNECT. Packets are encoded and parsed with
// mqtt-packet (the library mqtt.js and aedes use); the test decides every byte sent.
import { connect as netConnect, type Socket } from "node:net";
import mqtt from "mqtt-packet";
import { waitFor } from "./wait.js";

export type ProtocolLevel = 4 | 5;
export type PacketOf<C extends mqtt.PacketCmd> = Extract<mqtt.Packet, { cmd: C }>;

const DEFAULT_TIMEOUT_MS = 5_000;

/** Every raw client opened and not yet closed, so `closeRawClients` can clean up. */
const openClients = new Set<RawMqtt>();

interface Waiter {
  readonly match: (p: mqtt.Packet) => boolean;
  readonly resolve: (p: mqtt.Packet) => void;
}

export class RawMqtt {
  readonly socket: Socket;
  readonly version: ProtocolLevel;
  /** Every packet received, in arrival order (consumed or not). */
  readonly packets: mqtt.Packet[] = [];
  /** Resolves when the socket closed, by either side; never rejects. */
  readonly closed: Promise<void>;
  /** A parse error on the server's bytes (the test fails on it in `next`). */
  parseError: Error | undefined;
  readonly #unread: mqtt.Packet[] = [];
  readonly #waiters = new Set<Waiter>();
  #isClosed = false;
  #closedByClient = false;

  private constructor(socket: Socket, version: ProtocolLevel) {
    this.socket = socket;
    this.version = version;
    const parser = mqtt.parser({ protocolVersion: version });
    parser.on("packet", (p: mqtt.Packet) => this.#deliver(p));
    parser.on("error", (err: Error) => {
      this.parseError ??= err;
    });
    socket.on("data", (chunk: Buffer) => parser.parse(chunk));
    // Writing to a socket the server closed may fail; tests look at `closed`.
    socket.on("error", () => {});
    this.closed = new Promise((resolve) =>
      socket.once("close", () => {
        this.#isClosed = true;
        openClients.delete(this);
        resolve();
      }),
    );
  }

  /**
   * Opens a TCP connection (no CONNECT sent yet); `localAddress` picks the source address
   * (any of 127.0.0.0/8 on Linux), for limits kept per source address.
   */
  static async open(
    port: number,
    version: ProtocolLevel = 5,
    localAddress?: string,
  ): Promise<RawMqtt> {
    const socket = netConnect({
      host: "127.0.0.1",
      port,
      ...(localAddress ? { localAddress } : {}),
    });
    const client = new RawMqtt(socket, version);
    openClients.add(client);
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", () => resolve());
      socket.once("error", reject);
    });
    return client;
  }

  /** Opens a connection, sends CONNECT with `fields` and returns the CONNACK. */
  static async connect(
    port: number,
    fields: Partial<mqtt.IConnectPacket> = {},
    version: ProtocolLevel = (fields.protocolVersion as ProtocolLevel | undefined) ?? 5,
    localAddress?: string,
  ): Promise<{ client: RawMqtt; connack: mqtt.IConnackPacket }> {
    const client = await RawMqtt.open(port, version, localAddress);
    const connack = await client.sendConnect(fields);
    return { client, connack };
  }

  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** Sends CONNECT (clean start, keepalive 60 unless given) and awaits CONNACK. */
  async sendConnect(
    fields: Partial<mqtt.IConnectPacket> = {},
    timeoutMs = DEFAULT_TIMEOUT_MS,
  ): Promise<mqtt.IConnackPacket> {
    this.send({
      cmd: "connect",
      clientId: "",
      protocolVersion: this.version,
      protocolId: "MQTT",
      clean: true,
      keepalive: 60,
      ...fields,
    } as mqtt.IConnectPacket);
    return this.next("connack", undefined, timeoutMs);
  }

  send(packet: mqtt.Packet): void {
    this.socket.write(mqtt.generate(packet, { protocolVersion: this.version }));
  }

  /** Writes bytes as they are (for packets mqtt-packet refuses to encode). */
  write(bytes: Uint8Array | readonly number[]): void {
    this.socket.write(Buffer.from(bytes as Uint8Array));
  }

  subscribe(
    messageId: number,
    subscriptions: mqtt.ISubscription[],
    properties?: mqtt.ISubscribePacket["properties"],
  ): Promise<mqtt.ISubackPacket> {
    this.send({
      cmd: "subscribe",
      messageId,
      subscriptions,
      ...(properties ? { properties } : {}),
    });
    return this.next("suback", (p) => p.messageId === messageId);
  }

  /**
   * The first packet of kind `cmd` not yet returned by `next` that satisfies `match`
   * (received earlier or later), removed from the unread queue. Rejects at the deadline,
   * listing what did arrive.
   */
  next<C extends mqtt.PacketCmd>(
    cmd: C,
    match?: (p: PacketOf<C>) => boolean,
    timeoutMs = DEFAULT_TIMEOUT_MS,
  ): Promise<PacketOf<C>> {
    const test = (p: mqtt.Packet): boolean =>
      p.cmd === cmd && (match === undefined || match(p as PacketOf<C>));
    const i = this.#unread.findIndex(test);
    if (i >= 0) return Promise.resolve(this.#unread.splice(i, 1)[0] as PacketOf<C>);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        match: test,
        resolve: (p) => {
          clearTimeout(timer);
          resolve(p as PacketOf<C>);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(
          new Error(
            `raw mqtt: no ${cmd} within ${timeoutMs} ms; received ${this.describe()}` +
              `${this.#isClosed ? " (socket closed)" : ""}` +
              `${this.parseError ? ` (parse error: ${this.parseError.message})` : ""}`,
          ),
        );
      }, timeoutMs);
      this.#waiters.add(waiter);
    });
  }

  /** Unread packets of kind `cmd`, removed from the unread queue. */
  take<C extends mqtt.PacketCmd>(cmd: C): PacketOf<C>[] {
    const taken: PacketOf<C>[] = [];
    for (let i = 0; i < this.#unread.length; ) {
      if (this.#unread[i]!.cmd === cmd) taken.push(this.#unread.splice(i, 1)[0] as PacketOf<C>);
      else i++;
    }
    return taken;
  }

  /** Every received packet of kind `cmd` (consumed or not), in order. */
  all<C extends mqtt.PacketCmd>(cmd: C): PacketOf<C>[] {
    return this.packets.filter((p) => p.cmd === cmd) as PacketOf<C>[];
  }

  /** Waits, with a deadline, for the server to close the socket. */
  async closedByServer(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<void> {
    await waitFor(() => this.#isClosed, {
      timeoutMs,
      message: () => `raw mqtt: the server did not close the socket; received ${this.describe()}`,
    });
    if (this.#closedByClient) throw new Error("raw mqtt: the client closed the socket itself");
  }

  /** Half-closes after sending what is queued and waits for the socket to close. */
  async end(): Promise<void> {
    if (this.#isClosed) return;
    this.#closedByClient = true;
    this.socket.end();
    await Promise.race([
      this.closed,
      new Promise<void>((r) => setTimeout(r, DEFAULT_TIMEOUT_MS).unref()),
    ]);
    this.socket.destroy();
    await this.closed;
  }

  /** Drops the connection without DISCONNECT (a vanished client). */
  async destroy(): Promise<void> {
    this.#closedByClient = true;
    this.socket.destroy();
    await this.closed;
  }

  describe(): string {
    return JSON.stringify(
      this.packets.map((p) => {
        const { cmd, messageId } = p;
        const extra: Record<string, unknown> = {};
        if ("reasonCode" in p) extra.reasonCode = p.reasonCode;
        if ("returnCode" in p) extra.returnCode = p.returnCode;
        if ("granted" in p) extra.granted = p.granted;
        if (p.cmd === "publish") {
          extra.topic = p.topic;
          extra.payload = p.payload.toString();
          extra.qos = p.qos;
          extra.dup = p.dup;
          extra.retain = p.retain;
          if (p.properties) extra.properties = p.properties;
        }
        return { cmd, messageId, ...extra };
      }),
    );
  }

  #deliver(p: mqtt.Packet): void {
    this.packets.push(p);
    for (const w of this.#waiters) {
      if (w.match(p)) {
        this.#waiters.delete(w);
        w.resolve(p);
        return;
      }
    }
    this.#unread.push(p);
  }
}

/** Destroys every raw client still open (call in afterEach). */
export async function closeRawClients(): Promise<void> {
  await Promise.all([...openClients].map((c) => c.destroy()));
}

/** A PUBLISH's Subscription Identifiers as a sorted array (mqtt-packet gives one as a number). */
export function subscriptionIds(p: mqtt.IPublishPacket): number[] {
  const ids = p.properties?.subscriptionIdentifier;
  if (ids === undefined) return [];
  return (Array.isArray(ids) ? [...ids] : [ids]).sort((a, b) => a - b);
}
