/** Sensor frames are tens of bytes: most queues never grow past this. */
const INITIAL_CAPACITY_BYTES = 256;

/**
 * A FIFO of bytes over one reusable buffer, so feeding a frame one byte at a time costs
 * amortised O(1) per byte instead of a `Buffer.concat` of everything pending.
 */
export class ByteQueue {
  #buf = Buffer.allocUnsafe(INITIAL_CAPACITY_BYTES);
  #start = 0;
  #end = 0;

  get length(): number {
    return this.#end - this.#start;
  }

  /** The queued bytes; a view that is only valid until the next append, consume or clear. */
  bytes(): Buffer {
    return this.#buf.subarray(this.#start, this.#end);
  }

  append(chunk: Uint8Array): void {
    this.#reserve(chunk.length);
    this.#buf.set(chunk, this.#end);
    this.#end += chunk.length;
  }

  appendByte(byte: number): void {
    this.#reserve(1);
    this.#buf[this.#end++] = byte;
  }

  consume(count: number): void {
    this.#start += count;
    if (this.#start >= this.#end) this.clear();
  }

  clear(): void {
    this.#start = 0;
    this.#end = 0;
  }

  #reserve(extra: number): void {
    if (this.#end + extra <= this.#buf.length) return;
    const needed = this.length + extra;
    // Compacting only while at most half full keeps the copying amortised O(1) per byte.
    if (needed * 2 <= this.#buf.length) {
      this.#buf.copyWithin(0, this.#start, this.#end);
    } else {
      const bigger = Buffer.allocUnsafe(needed * 2);
      this.#buf.copy(bigger, 0, this.#start, this.#end);
      this.#buf = bigger;
    }
    this.#end = this.length;
    this.#start = 0;
  }
}
