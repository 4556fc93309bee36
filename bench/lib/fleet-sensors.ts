// The fleet bench's simulated sensors: one MQTT 3.1.1 connection each, publishing at QoS 1 at
// a fixed rate with at most `window` PUBLISHes unacknowledged. Packets are built by hand and
// PUBACKs read with a 4-byte match: a few hundred sensors in one process cost little CPU, so
// the generator is not what limits a run (the bench reports its share of a core).
import { connect as netConnect, type Socket } from "node:net";

const CONNECT = 0x10;
const CONNACK = 0x20;
const PUBLISH_QOS1 = 0x32;
const PUBACK = 0x40;
const PINGREQ = Buffer.from([0xc0, 0x00]);
const PINGRESP = 0xd0;
const PROTOCOL_LEVEL_311 = 4;
const CLEAN_SESSION = 0x02;
/** Keep alive asked for; a PINGREQ goes out at half of it, so long settles stay connected. */
export const KEEPALIVE_S = 60;
const MAX_PACKET_ID = 0xffff;
const CONNECT_TIMEOUT_MS = 10_000;

/** MQTT's Remaining Length: 7 bits a byte, low first, high bit = more follows. */
function remainingLength(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

const utf8 = (s: string): Buffer => {
  const b = Buffer.from(s, "utf8");
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([len, b]);
};

function connectPacket(clientId: string): Buffer {
  const body = Buffer.concat([
    utf8("MQTT"),
    Buffer.from([PROTOCOL_LEVEL_311, CLEAN_SESSION, KEEPALIVE_S >> 8, KEEPALIVE_S & 0xff]),
    utf8(clientId),
  ]);
  return Buffer.concat([Buffer.from([CONNECT]), remainingLength(body.length), body]);
}

/** A QoS 1 PUBLISH of `payload` on a topic encoded once (`topic` = its 2-byte-length form). */
function publishPacket(topic: Buffer, packetId: number, payload: Buffer): Buffer {
  const length = topic.length + 2 + payload.length;
  const head = remainingLength(length);
  const out = Buffer.allocUnsafe(1 + head.length + length);
  out[0] = PUBLISH_QOS1;
  head.copy(out, 1);
  let at = 1 + head.length;
  at += topic.copy(out, at);
  out.writeUInt16BE(packetId, at);
  payload.copy(out, at + 2);
  return out;
}

export interface SensorOptions {
  port: number;
  clientId: string;
  topic: string;
  /** Messages this sensor publishes in all. */
  count: number;
  /** Messages per second. */
  rate: number;
  /** PUBLISHes unacknowledged at most. */
  window: number;
  /** The payload of message `seq`, built when it is sent (it carries the send time). */
  payload: (seq: number) => Buffer;
}

/**
 * One paced QoS 1 publisher. `pump(elapsedMs)` sends what is due by then within the window;
 * a PUBACK pumps again. `acked` reaches `count` when the gateway has committed every message.
 */
export class Sensor {
  readonly #o: SensorOptions;
  readonly #topic: Buffer;
  #socket: Socket | undefined;
  #pending = Buffer.alloc(0);
  #elapsedMs = 0;
  #nextId = 1;
  sent = 0;
  acked = 0;
  /** The largest number of messages due and not yet sent (the window was full). */
  maxBehind = 0;
  /** A PUBACK for no message in flight, or a connection lost: the run is void. */
  error: string | undefined;
  onDone: (() => void) | undefined;

  constructor(o: SensorOptions) {
    this.#o = o;
    this.#topic = utf8(o.topic);
  }

  /** Connects and resolves on CONNACK (return code 0). */
  async connect(): Promise<void> {
    const socket = netConnect({ host: "127.0.0.1", port: this.#o.port, noDelay: true });
    this.#socket = socket;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${this.#o.clientId}: no CONNACK`)),
        CONNECT_TIMEOUT_MS,
      );
      socket.once("error", reject);
      socket.once("connect", () => socket.write(connectPacket(this.#o.clientId)));
      this.#onConnack = (code) => {
        clearTimeout(timer);
        socket.off("error", reject);
        if (code === 0) resolve();
        else reject(new Error(`${this.#o.clientId}: CONNACK return code ${code}`));
      };
      socket.on("data", (chunk: Buffer) => this.#read(chunk));
    });
    socket.on("error", (err) => {
      this.error ??= `${this.#o.clientId}: ${err.message}`;
    });
    socket.on("close", () => {
      if (this.acked < this.#o.count) this.error ??= `${this.#o.clientId}: connection closed`;
      this.onDone?.();
    });
  }

  #onConnack: (code: number) => void = () => {};

  /** Splits the bytes into packets (fixed header, Remaining Length) and handles each. */
  #read(chunk: Buffer): void {
    let buf = this.#pending.length > 0 ? Buffer.concat([this.#pending, chunk]) : chunk;
    for (;;) {
      if (buf.length < 2) break;
      let length = 0;
      let mult = 1;
      let i = 1;
      for (; i < buf.length && i <= 4; i++) {
        length += (buf[i]! & 0x7f) * mult;
        mult *= 128;
        if ((buf[i]! & 0x80) === 0) break;
      }
      if (i >= buf.length || buf.length < i + 1 + length) break;
      const type = buf[0]! & 0xf0;
      const body = buf.subarray(i + 1, i + 1 + length);
      buf = buf.subarray(i + 1 + length);
      if (type === CONNACK) this.#onConnack(body[1]!);
      else if (type === PUBACK) this.#puback();
      else if (type !== PINGRESP) this.error ??= `${this.#o.clientId}: unexpected packet ${type}`;
    }
    this.#pending = buf.length > 0 ? Buffer.from(buf) : Buffer.alloc(0);
  }

  #puback(): void {
    // The broker acknowledges in order on one connection; the count is what the check needs.
    if (this.acked >= this.sent) {
      this.error ??= `${this.#o.clientId}: PUBACK with nothing in flight`;
      return;
    }
    this.acked++;
    if (this.acked === this.#o.count) this.onDone?.();
    else this.pump(this.#elapsedMs);
  }

  /** Sends what is due `elapsedMs` into the run, as far as the window allows, in one write. */
  pump(elapsedMs: number): void {
    this.#elapsedMs = elapsedMs;
    const due = Math.min(this.#o.count, Math.floor((this.#o.rate * elapsedMs) / 1000));
    const packets: Buffer[] = [];
    while (this.sent < due && this.sent - this.acked < this.#o.window) {
      packets.push(publishPacket(this.#topic, this.#nextId, this.#o.payload(this.sent)));
      this.#nextId = this.#nextId === MAX_PACKET_ID ? 1 : this.#nextId + 1;
      this.sent++;
    }
    if (packets.length > 0) this.#socket!.write(Buffer.concat(packets));
    this.maxBehind = Math.max(this.maxBehind, due - this.sent);
  }

  ping(): void {
    this.#socket?.write(PINGREQ);
  }

  get done(): boolean {
    return this.acked === this.#o.count;
  }

  close(): void {
    this.onDone = undefined;
    this.#socket?.end();
  }
}
