// The fleet bench's simulated sensors: one MQTT 3.1.1 connection each, publishing at QoS 1 at
// a fixed rate with at most `window` PUBLISHes unacknowledged. Packets are encoded and parsed
// with mqtt-packet (the library mqtt.js and aedes use) straight on a socket, without mqtt.js's
// client machinery: a few hundred sensors in one process cost little CPU, so the generator is
// not what limits a run (the bench reports its share of a core).
import { connect as netConnect, type Socket } from "node:net";
import mqtt from "mqtt-packet";

const PROTOCOL_LEVEL_311 = 4;
/** Keep alive asked for; a PINGREQ goes out at half of it, so long settles stay connected. */
export const KEEPALIVE_S = 60;
const MAX_PACKET_ID = 0xffff;
const CONNECT_TIMEOUT_MS = 10_000;
const PINGREQ = mqtt.generate({ cmd: "pingreq" });

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
  #socket: Socket | undefined;
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
      socket.once("connect", () =>
        socket.write(
          mqtt.generate({
            cmd: "connect",
            protocolId: "MQTT",
            protocolVersion: PROTOCOL_LEVEL_311,
            clean: true,
            keepalive: KEEPALIVE_S,
            clientId: this.#o.clientId,
          }),
        ),
      );
      this.#onConnack = (code) => {
        clearTimeout(timer);
        socket.off("error", reject);
        if (code === 0) resolve();
        else reject(new Error(`${this.#o.clientId}: CONNACK return code ${code}`));
      };
      const parser = mqtt.parser({ protocolVersion: PROTOCOL_LEVEL_311 });
      parser.on("packet", (p: mqtt.Packet) => this.#handle(p));
      parser.on("error", (err: Error) => {
        this.error ??= `${this.#o.clientId}: ${err.message}`;
      });
      socket.on("data", (chunk: Buffer) => parser.parse(chunk));
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

  #handle(p: mqtt.Packet): void {
    if (p.cmd === "connack") this.#onConnack(p.returnCode ?? 0);
    else if (p.cmd === "puback") this.#puback();
    else if (p.cmd !== "pingresp") this.error ??= `${this.#o.clientId}: unexpected ${p.cmd}`;
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
      packets.push(
        mqtt.generate({
          cmd: "publish",
          topic: this.#o.topic,
          payload: this.#o.payload(this.sent),
          qos: 1,
          messageId: this.#nextId,
          dup: false,
          retain: false,
        }),
      );
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
