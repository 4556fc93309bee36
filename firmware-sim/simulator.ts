import type { CommandModel } from "./commands.js";
import { PtyPair } from "./pty.js";

/**
 * A device takes a moment to act on a command; ptys ignore baud rates, so the simulator
 * paces its answers itself.
 */
const ANSWER_DELAY_MS = 5;
/** Bytes of a request not yet complete that the simulator keeps: line noise beyond it. */
const MAX_REQUEST_BYTES = 1024;
/** The request log keeps the most recent entries only. */
const MAX_REQUEST_RECORDS = 10_000;

/** A command the simulator read, and what it did with it. */
export interface RequestRecord {
  /** The request as text (a binary one as hex). */
  readonly request: string;
  /**
   * "answered"; "silent": the model answers nothing; "silenced": a fault kept the answer
   * back; "held": its answer waits (paced, or held); "unsent": unplugged before it went.
   */
  outcome: "answered" | "silent" | "silenced" | "held" | "unsent";
}

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
  /** How it takes commands, when it does. */
  readonly commands?: CommandModel;
}

/**
 * Plays a device on a pty pair: good frames at a steady rate (ptys ignore baud rates,
 * so the simulator paces itself), plus fault modes on request.
 */
export class Simulator {
  readonly model: DeviceModel;
  readonly pty: PtyPair;
  readonly sent: SentFrame[] = [];
  /** Every command read, oldest first (the last MAX_REQUEST_RECORDS). */
  readonly requests: RequestRecord[] = [];
  /** Bytes of requests dropped because they did not line up (binary requests). */
  badRequests = 0;
  /** Per-model state commands change (an interval, a mode). */
  readonly state = new Map<string, number>();
  #n = 0;
  #timer: NodeJS.Timeout | undefined;
  #stopReading: (() => void) | undefined;
  #rx = Buffer.alloc(0);
  /** Answers written one after another, each ANSWER_DELAY_MS after the one before. */
  #answers: { readonly record: RequestRecord; readonly write: () => void }[] = [];
  #answerTimer: NodeJS.Timeout | undefined;
  #holding = false;
  #silence = 0;
  #garbageBeforeAnswer: Buffer | undefined;

  constructor(model: DeviceModel, devicePath: string, simPath: string) {
    this.model = model;
    this.pty = new PtyPair(devicePath, simPath);
  }

  get devicePath(): string {
    return this.pty.devicePath;
  }

  async open(): Promise<void> {
    await this.pty.open();
    this.#attach();
  }

  /** Answers wait (the device is busy) until `release()`; requests are still read. */
  hold(): void {
    this.#holding = true;
  }

  /** Writes the held answers, paced, and answers as usual again. */
  release(): void {
    this.#holding = false;
    this.#schedule();
  }

  /** The next `count` requests get no answer (the gateway times out). */
  silence(count: number): void {
    this.#silence = count;
  }

  /** The next answer is preceded by these bytes (line noise). */
  garbageBeforeAnswer(bytes: Buffer): void {
    this.#garbageBeforeAnswer = bytes;
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
    this.#detach();
    await this.pty.close();
  }

  async replug(): Promise<void> {
    await this.pty.open();
    this.#attach();
  }

  async close(): Promise<void> {
    clearTimeout(this.#timer);
    this.#detach();
    await this.pty.close();
  }

  goodValues(): Record<string, number>[] {
    return this.sent.flatMap((f) => (f.kind === "good" && f.values ? [f.values] : []));
  }

  /** Reads what the gateway writes; an error (socat gone) stops it until the next replug. */
  #attach(): void {
    if (this.model.commands === undefined) return;
    this.#stopReading = this.pty.read(
      (chunk) => this.#onData(chunk),
      () => this.#detach(),
    );
    this.#rx = Buffer.alloc(0);
  }

  #detach(): void {
    clearTimeout(this.#answerTimer);
    this.#answerTimer = undefined;
    for (const a of this.#answers.splice(0)) a.record.outcome = "unsent";
    const stop = this.#stopReading;
    this.#stopReading = undefined;
    stop?.();
  }

  #onData(chunk: Buffer): void {
    const commands = this.model.commands;
    if (commands === undefined) return;
    this.#rx = Buffer.concat([this.#rx, chunk]);
    if (this.#rx.length > MAX_REQUEST_BYTES) {
      this.badRequests += this.#rx.length - MAX_REQUEST_BYTES;
      this.#rx = this.#rx.subarray(this.#rx.length - MAX_REQUEST_BYTES);
    }
    const cut = commands.requests;
    if (cut.type === "line") {
      for (let end = this.#rx.indexOf(0x0a); end >= 0; end = this.#rx.indexOf(0x0a)) {
        let line = this.#rx.subarray(0, end);
        if (line.at(-1) === 0x0d) line = line.subarray(0, -1);
        this.#rx = this.#rx.subarray(end + 1);
        this.#handle(Buffer.from(line), line.toString("utf8"));
      }
      return;
    }
    const { header, length } = cut;
    while (this.#rx.length >= length) {
      const frame = this.#rx.subarray(0, length);
      let sum = 0;
      for (let i = 0; i < length - 2; i++) sum += frame[i]!;
      const lined = header.every((b, i) => frame[i] === b);
      if (!lined || (sum & 0xffff) !== frame.readUInt16BE(length - 2)) {
        this.badRequests++;
        this.#rx = this.#rx.subarray(1);
        continue;
      }
      this.#rx = this.#rx.subarray(length);
      this.#handle(Buffer.from(frame), frame.toString("hex"));
    }
  }

  #handle(request: Buffer, shown: string): void {
    const record: RequestRecord = { request: shown, outcome: "silent" };
    this.requests.push(record);
    if (this.requests.length > MAX_REQUEST_RECORDS) this.requests.shift();
    const answer = this.model.commands?.answer(request, this.state);
    if (answer === undefined) return;
    if (this.#silence > 0) {
      this.#silence--;
      record.outcome = "silenced";
      return;
    }
    record.outcome = "held";
    this.#answers.push({
      record,
      write: () => {
        const garbage = this.#garbageBeforeAnswer;
        this.#garbageBeforeAnswer = undefined;
        if (garbage !== undefined && this.pty.write(garbage)) {
          this.sent.push({ kind: "garbage", bytes: garbage.length });
        }
        if (answer === "good_frame") {
          const before = this.sent.length;
          this.sendGood();
          record.outcome = this.sent.length > before ? "answered" : "unsent";
          return;
        }
        record.outcome = this.pty.write(answer) ? "answered" : "unsent";
      },
    });
    this.#schedule();
  }

  /** Writes the next waiting answer ANSWER_DELAY_MS from now, unless held. */
  #schedule(): void {
    if (this.#holding || this.#answerTimer !== undefined || this.#answers.length === 0) return;
    this.#answerTimer = setTimeout(() => {
      this.#answerTimer = undefined;
      if (this.#holding) return;
      this.#answers.shift()?.write();
      this.#schedule();
    }, ANSWER_DELAY_MS);
  }
}
