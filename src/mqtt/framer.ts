/**
 * Cuts a byte stream into whole MQTT packets (section 2.1: a type byte, then the
 * remaining length as a variable byte integer of at most four bytes). A packet over the
 * size limit is refused as soon as its length is known, before its bytes are buffered;
 * whole packets go to the parser one at a time, with their raw bytes at hand.
 */
export type FrameError = "malformed" | "tooLarge" | "firstTooLarge";

const MAX_LENGTH_BYTES = 4;

/**
 * Whether a fixed header's first byte is a packet type with the flags the spec fixes
 * for it (section 2.1.3): PUBREL, SUBSCRIBE and UNSUBSCRIBE carry 0b0010, PUBLISH any
 * flags but QoS 3, every other type 0; type 0 is reserved [MQTT-2.1.3-1].
 */
export function validFirstByte(byte: number): boolean {
  const type = byte >> 4;
  const flags = byte & 0x0f;
  if (type === 0) return false;
  if (type === 3) return (flags & 0x06) !== 0x06;
  if (type === 6 || type === 8 || type === 10) return flags === 0x02;
  return flags === 0;
}

/**
 * Whether a remaining length is possible for a packet type. Acknowledgements and PINGREQ
 * have (almost) fixed lengths, so a client that declares more is refused at its header
 * rather than held open while it trickles in a body no such packet has. Before CONNECT
 * the version is unknown and only what holds in both versions is checked.
 */
export function lengthFits(byte: number, length: number, version: 3 | 4 | 5 | undefined): boolean {
  const type = byte >> 4;
  const lenient = version === 5 || version === undefined;
  // PINGREQ, PINGRESP: nothing after the fixed header, in any version.
  if (type === 12 || type === 13) return length === 0;
  // PUBACK, PUBREC, PUBREL, PUBCOMP: a packet id; 5.0 may add a reason code and properties.
  if (type >= 4 && type <= 7) return lenient ? length >= 2 : length === 2;
  if (lenient) return true;
  // 3.1.1: UNSUBACK is a packet id alone, DISCONNECT is empty.
  if (type === 11) return length === 2;
  if (type === 14) return length === 0;
  return true;
}

export class PacketFramer {
  #chunks: Buffer[] = [];
  #buffered = 0;
  /** Bytes the first buffered packet needs in all; 0 while its header is incomplete. */
  #needed = 0;
  #stopped = false;
  #version: 3 | 4 | 5 | undefined;
  readonly #maxPacketBytes: number;
  /** The first packet's limit (CONNECT, from a client not yet known), then #maxPacketBytes. */
  #limit: number;
  readonly #onPacket: (raw: Buffer) => void;
  readonly #onError: (error: FrameError, detail: string) => void;

  constructor(
    maxPacketBytes: number,
    onPacket: (raw: Buffer) => void,
    onError: (error: FrameError, detail: string) => void,
    firstPacketMaxBytes = maxPacketBytes,
  ) {
    this.#maxPacketBytes = maxPacketBytes;
    this.#limit = Math.min(firstPacketMaxBytes, maxPacketBytes);
    this.#onPacket = onPacket;
    this.#onError = onError;
  }

  /** The protocol version CONNECT named: lengths are checked by its rules from now on. */
  setVersion(version: 3 | 4 | 5): void {
    this.#version = version;
  }

  /** No more packets are delivered (the connection is closing). */
  stop(): void {
    this.#stopped = true;
    this.#chunks = [];
    this.#buffered = 0;
  }

  push(chunk: Buffer): void {
    if (this.#stopped) return;
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    if (this.#needed > 0 && this.#buffered < this.#needed) return;
    const data = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    this.#chunks = [];
    this.#buffered = 0;
    this.#needed = 0;
    let at = 0;
    while (at < data.length && !this.#stopped) {
      // Bad flags are known at the first byte: garbage is refused without waiting.
      if (!validFirstByte(data[at]!)) {
        this.#fail(
          "malformed",
          `bad packet type or flags 0x${data[at]!.toString(16)} [MQTT-2.2.2-2]`,
        );
        return;
      }
      let length = 0;
      let multiplier = 1;
      let i = at + 1;
      let complete = false;
      for (let n = 0; n < MAX_LENGTH_BYTES && i < data.length; n++) {
        const byte = data[i++]!;
        length += (byte & 0x7f) * multiplier;
        multiplier *= 128;
        if ((byte & 0x80) === 0) {
          complete = true;
          // The fewest bytes that hold the length [MQTT-1.5.5-1].
          if (n > 0 && byte === 0) {
            this.#fail("malformed", "remaining length not in fewest bytes [MQTT-1.5.5-1]");
            return;
          }
          break;
        }
      }
      if (!complete) {
        if (i - at - 1 >= MAX_LENGTH_BYTES) {
          this.#fail("malformed", "remaining length longer than 4 bytes");
          return;
        }
        break;
      }
      if (!lengthFits(data[at]!, length, this.#version)) {
        this.#fail(
          "malformed",
          `remaining length ${length} impossible for packet type ${data[at]! >> 4} [MQTT-2.1.4]`,
        );
        return;
      }
      const total = i - at + length;
      if (total > this.#limit) {
        const first = this.#limit !== this.#maxPacketBytes;
        this.#fail(first ? "firstTooLarge" : "tooLarge", `${total} bytes, limit ${this.#limit}`);
        return;
      }
      if (data.length - at < total) {
        this.#needed = total;
        break;
      }
      this.#limit = this.#maxPacketBytes;
      this.#onPacket(data.subarray(at, at + total));
      at += total;
    }
    if (this.#stopped || at >= data.length) return;
    // Keep the partial packet; copy so the large chunk it came in can be collected.
    const rest = Buffer.from(data.subarray(at));
    this.#chunks.push(rest);
    this.#buffered = rest.length;
  }

  #fail(error: FrameError, detail: string): void {
    this.stop();
    this.#onError(error, detail);
  }
}
