// MQTT 3.1.1 clients on a bare socket, packets built by hand: a load generator that costs far
// less CPU than mqtt.js (no packet objects, no per-message callbacks or promises, one write
// per batch), so that on a shared two-core machine the broker, not the generator, is what a
// run measures. Only what the fan-in bench needs: CONNECT, SUBSCRIBE, PUBLISH QoS 0/1 with
// fixed topics, PUBACK both ways, DISCONNECT.
import { connect as netConnect, type Socket } from "node:net";

const CONNECT = 0x10;
const CONNACK = 0x20;
const PUBLISH = 0x30;
const PUBACK = 0x40;
const SUBSCRIBE = 0x82; // reserved flags 0b0010 [MQTT-3.8.1-1]
const SUBACK = 0x90;
const DISCONNECT = Buffer.from([0xe0, 0]);
const PROTOCOL_LEVEL_311 = 4;
const CLEAN_SESSION = 0x02;
/** Packet ids run 1..65535 [MQTT-2.3.1-1]. */
const MAX_PACKET_ID = 0xffff;

/** The "remaining length" variable byte integer (section 2.2.3). */
function remainingLength(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return out;
}

function withHeader(first: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([first, ...remainingLength(body.length)]), body]);
}

function utf8Field(s: string): Buffer {
  const b = Buffer.from(s);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([len, b]);
}

export function connectPacket(clientId: string, keepaliveS: number): Buffer {
  const flagsAndKeepalive = Buffer.from([
    PROTOCOL_LEVEL_311,
    CLEAN_SESSION,
    keepaliveS >> 8,
    keepaliveS & 0xff,
  ]);
  return withHeader(
    CONNECT,
    Buffer.concat([utf8Field("MQTT"), flagsAndKeepalive, utf8Field(clientId)]),
  );
}

export function subscribePacket(packetId: number, filter: string, qos: 0 | 1): Buffer {
  const id = Buffer.from([packetId >> 8, packetId & 0xff]);
  return withHeader(SUBSCRIBE, Buffer.concat([id, utf8Field(filter), Buffer.from([qos])]));
}

export function pubackPacket(packetId: number): Buffer {
  return Buffer.from([PUBACK, 2, packetId >> 8, packetId & 0xff]);
}

/**
 * PUBLISHes of one topic and payload size: the fixed header and topic are encoded once and
 * copied in front of each message; the caller fills the payload in place.
 */
export class PublishTemplate {
  readonly #head: Buffer;
  readonly #qos: 0 | 1;
  /** Bytes of one whole PUBLISH. */
  readonly size: number;

  constructor(topic: string, qos: 0 | 1, payloadBytes: number) {
    const topicField = utf8Field(topic);
    const remaining = topicField.length + (qos === 1 ? 2 : 0) + payloadBytes;
    this.#head = Buffer.concat([
      Buffer.from([PUBLISH | (qos << 1), ...remainingLength(remaining)]),
      topicField,
    ]);
    this.#qos = qos;
    this.size = this.#head.length + (qos === 1 ? 2 : 0) + payloadBytes;
  }

  /** Writes one PUBLISH at `at` in `into`; returns where its payload starts. */
  write(into: Buffer, at: number, packetId: number): number {
    this.#head.copy(into, at);
    let p = at + this.#head.length;
    if (this.#qos === 1) {
      into[p++] = packetId >> 8;
      into[p++] = packetId & 0xff;
    }
    return p;
  }
}

/** The next packet id after `id`, wrapping past 65535 to 1. */
export const nextPacketId = (id: number): number => (id % MAX_PACKET_ID) + 1;

/**
 * One client connection: `onPacket(first byte, bytes, start, end)` hears of each whole
 * packet received (its body is `bytes[start..end)`); `onReadDone` after each socket read,
 * so that answers to a read's packets can be written in one go.
 */
export class RawMqttClient {
  readonly socket: Socket;
  onPacket: (first: number, bytes: Buffer, start: number, end: number) => void = () => {};
  onReadDone: () => void = () => {};
  #rest: Buffer | undefined;
  #closed = false;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.#read(chunk));
    socket.on("close", () => {
      this.#closed = true;
    });
  }

  /** Connects and resolves after a CONNACK that accepts (return code 0). */
  static connect(port: number, clientId: string, timeoutMs: number): Promise<RawMqttClient> {
    return new Promise((resolve, reject) => {
      const socket = netConnect({ host: "127.0.0.1", port });
      const client = new RawMqttClient(socket);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`${clientId}: no CONNACK in ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      socket.once("close", () => reject(new Error(`${clientId}: closed before CONNACK`)));
      client.onPacket = (first, bytes, start) => {
        clearTimeout(timer);
        if (first !== CONNACK || bytes[start + 1] !== 0) {
          socket.destroy();
          reject(new Error(`${clientId}: refused (packet 0x${first.toString(16)})`));
          return;
        }
        client.onPacket = () => {};
        socket.removeAllListeners("error");
        socket.on("error", (err) => console.error(`${clientId}: ${err.message}`));
        resolve(client);
      };
      socket.write(connectPacket(clientId, 60));
    });
  }

  /** SUBSCRIBE one filter; resolves with the granted QoS (0x80: refused). */
  subscribe(filter: string, qos: 0 | 1): Promise<number> {
    return new Promise((resolve, reject) => {
      const before = this.onPacket;
      this.onPacket = (first, bytes, start) => {
        this.onPacket = before;
        if (first !== SUBACK) reject(new Error(`expected SUBACK, got 0x${first.toString(16)}`));
        else resolve(bytes[start + 2]!);
      };
      this.socket.write(subscribePacket(1, filter, qos));
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** DISCONNECT, then the socket closes. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.socket.once("close", () => resolve());
      this.socket.end(DISCONNECT);
    });
  }

  #read(chunk: Buffer): void {
    let data = chunk;
    if (this.#rest !== undefined) {
      data = Buffer.concat([this.#rest, chunk]);
      this.#rest = undefined;
    }
    let at = 0;
    while (at + 2 <= data.length) {
      let length = 0;
      let multiplier = 1;
      let i = at + 1;
      let complete = false;
      while (i < data.length) {
        const byte = data[i++]!;
        length += (byte & 0x7f) * multiplier;
        multiplier *= 128;
        if ((byte & 0x80) === 0) {
          complete = true;
          break;
        }
      }
      if (!complete || i + length > data.length) break;
      this.onPacket(data[at]!, data, i, i + length);
      at = i + length;
    }
    if (at < data.length) this.#rest = Buffer.from(data.subarray(at));
    this.onReadDone();
  }
}

export const PACKET = { publish: PUBLISH, puback: PUBACK } as const;
