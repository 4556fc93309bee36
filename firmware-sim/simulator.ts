import { PtyPair } from "./pty.js";

/** What the simulator put on the line, so tests can compare with what was decoded. */
export interface SentFrame {
  readonly kind: "good" | "garbage" | "bad_checksum" | "truncated";
  readonly values?: Readonly<Record<string, number>>;
  readonly bytes: number;
}

/** A device kind the simulator can play: makes frames from a sequence number. */
export interface DeviceModel {
  readonly name: string;
  /** A good frame and the values a decoder must find in it. */
  good(n: number): { bytes: Buffer; values: Record<string, number> };
  /** The same frame with its checksum broken, when the framing has one. */
  badChecksum?(n: number): Buffer;
}

/**
 * Plays a device on a pty pair: good frames at a steady rate (ptys ignore baud rates,
 * so the simulator paces itself), plus fault modes on request.
 */
export class Simulator {
  readonly model: DeviceModel;
  readonly pty: PtyPair;
  readonly sent: SentFrame[] = [];
  #n = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(model: DeviceModel, devicePath: string, simPath: string) {
    this.model = model;
    this.pty = new PtyPair(devicePath, simPath);
  }

  get devicePath(): string {
    return this.pty.devicePath;
  }

  async open(): Promise<void> {
    await this.pty.open();
  }

  /** Sends `count` good frames at `ratePerSecond` (bounded), resolving when done. */
  run(ratePerSecond: number, count: number): Promise<void> {
    const every = Math.max(1, Math.round(1000 / ratePerSecond));
    let left = count;
    return new Promise((resolve) => {
      const tick = (): void => {
        if (left-- <= 0) {
          this.#timer = undefined;
          resolve();
          return;
        }
        this.sendGood();
        this.#timer = setTimeout(tick, every);
      };
      tick();
    });
  }

  sendGood(): Record<string, number> {
    const { bytes, values } = this.model.good(this.#n++);
    if (this.pty.write(bytes)) this.sent.push({ kind: "good", values, bytes: bytes.length });
    return values;
  }

  sendGarbage(length: number, byte?: number): void {
    const bytes = Buffer.alloc(length);
    for (let i = 0; i < length; i++) bytes[i] = byte ?? (i * 37 + 11) & 0xff;
    if (this.pty.write(bytes)) this.sent.push({ kind: "garbage", bytes: length });
  }

  sendTruncated(): void {
    const { bytes } = this.model.good(this.#n++);
    const cut = bytes.subarray(0, Math.max(1, bytes.length >> 1));
    if (this.pty.write(cut)) this.sent.push({ kind: "truncated", bytes: cut.length });
  }

  sendBadChecksum(): void {
    const bytes = this.model.badChecksum?.(this.#n++);
    if (bytes && this.pty.write(bytes))
      this.sent.push({ kind: "bad_checksum", bytes: bytes.length });
  }

  async unplug(): Promise<void> {
    await this.pty.close();
  }

  async replug(): Promise<void> {
    await this.pty.open();
  }

  async close(): Promise<void> {
    clearTimeout(this.#timer);
    await this.pty.close();
  }

  goodValues(): Record<string, number>[] {
    return this.sent.flatMap((f) => (f.kind === "good" && f.values ? [f.values] : []));
  }
}
