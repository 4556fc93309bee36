// The one fake socket for unit tests that drive an MQTT Connection without a network: it
// records what the server writes, decoded back by mqtt-packet (a parser we did not write)
// at the client's protocol version, and what the server asks of the socket.
import mqtt from "mqtt-packet";
import type { Transport } from "../../src/mqtt/index.js";

/** One line per packet the server wrote, e.g. `publish q1 #3 dup a/b m1 ids=1,2`. */
export function describePacket(p: mqtt.Packet): string {
  switch (p.cmd) {
    case "connack":
      return `connack rc=${p.reasonCode ?? p.returnCode}${p.sessionPresent ? " sp" : ""}`;
    case "suback":
      return `suback ${p.messageId} [${p.granted.join(",")}]`;
    case "publish": {
      const payload = Buffer.from(p.payload as Buffer).toString();
      const raw = (p.properties as { subscriptionIdentifier?: number | number[] } | undefined)
        ?.subscriptionIdentifier;
      const ids = raw === undefined ? [] : Array.isArray(raw) ? [...raw] : [raw];
      // Their order is not significant [MQTT-3.3.4-3].
      ids.sort((a, b) => a - b);
      return [
        `publish q${p.qos}`,
        ...(p.qos > 0 ? [`#${p.messageId}`] : []),
        ...(p.dup ? ["dup"] : []),
        ...(p.retain ? ["retain"] : []),
        p.topic,
        payload,
        ...(ids.length > 0 ? [`ids=${ids.join(",")}`] : []),
      ].join(" ");
    }
    case "disconnect":
      return `disconnect 0x${(p.reasonCode ?? 0).toString(16)}`;
    case "puback":
    case "pubrec":
    case "pubrel":
    case "pubcomp":
    case "unsuback":
      return `${p.cmd} ${p.messageId}`;
    default:
      return p.cmd;
  }
}

export class FakeTransport implements Transport {
  readonly remote: string;
  /** Set by a test to play a client that does not read. */
  writableLength = 0;
  /** Packets written (`> connack rc=0`) and socket calls (`pause`, `end`...), in order. */
  readonly events: string[] = [];
  readonly chunks: Buffer[] = [];
  readonly parseErrors: string[] = [];
  #ended = false;
  readonly #parser: ReturnType<typeof mqtt.parser>;

  constructor(options: { version?: 4 | 5; remote?: string } = {}) {
    this.remote = options.remote ?? "fake:1";
    this.#parser = mqtt.parser({ protocolVersion: options.version ?? 4 });
    this.#parser.on("packet", (p: mqtt.Packet) => this.events.push(`> ${describePacket(p)}`));
    this.#parser.on("error", (e: Error) => this.parseErrors.push(e.message));
  }

  write(bytes: Uint8Array): boolean {
    // A real socket refuses writes after end() (ERR_STREAM_WRITE_AFTER_END): the bytes are lost.
    if (this.#ended) {
      this.events.push("write-after-end");
      return false;
    }
    const copy = Buffer.from(bytes);
    this.chunks.push(copy);
    this.#parser.parse(copy);
    return true;
  }
  end(): void {
    this.#ended = true;
    this.events.push("end");
  }
  destroy(): void {
    this.#ended = true;
    this.events.push("destroy");
  }
  pause(): void {
    this.events.push("pause");
  }
  resume(): void {
    this.events.push("resume");
  }

  /** The decoded packets written, in order. */
  sent(): string[] {
    return this.events.filter((e) => e.startsWith("> ")).map((e) => e.slice(2));
  }
  /** Every byte written. */
  bytes(): number[] {
    return [...Buffer.concat(this.chunks)];
  }
  /** Forgets what was recorded so far (a test's setup, say). */
  clear(): void {
    this.events.length = 0;
    this.chunks.length = 0;
  }
  get ended(): boolean {
    return this.events.includes("end") || this.events.includes("destroy");
  }
}
