import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, writeSync } from "node:fs";
import { setTimeout as delay } from "node:timers/promises";
import { ReadStream } from "node:tty";

/** How long socat gets to create both pty links. */
const PTY_READY_TIMEOUT_MS = 5_000;

/**
 * A pty pair made by `socat`: leafgate opens `devicePath` like a serial port; the
 * simulator writes into `simPath`. Closing the pair (unplug) removes both links, as
 * unplugging a USB adapter removes its device node.
 */
export class PtyPair {
  readonly devicePath: string;
  readonly simPath: string;
  #socat: ChildProcess | undefined;
  #fd: number | undefined;

  constructor(devicePath: string, simPath: string) {
    this.devicePath = devicePath;
    this.simPath = simPath;
  }

  async open(): Promise<void> {
    const socat = spawn(
      "socat",
      [`pty,raw,echo=0,link=${this.devicePath}`, `pty,raw,echo=0,link=${this.simPath}`],
      { stdio: "ignore" },
    );
    this.#socat = socat;
    const exited = new Promise<never>((_, reject) =>
      socat.once("exit", (code) => reject(new Error(`socat exited with ${code}`))),
    );
    exited.catch(() => {});
    const until = Date.now() + PTY_READY_TIMEOUT_MS;
    while (!(existsSync(this.devicePath) && existsSync(this.simPath))) {
      if (Date.now() > until) throw new Error("socat did not create the pty pair in time");
      await Promise.race([delay(10), exited]);
    }
    this.#fd = openSync(this.simPath, "r+");
  }

  /** Writes bytes into the simulator's end; false when unplugged. */
  write(bytes: Uint8Array): boolean {
    if (this.#fd === undefined) return false;
    try {
      writeSync(this.#fd, bytes);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Reads what the gateway writes, from a descriptor of its own: a tty stream is
   * non-blocking, unlike fs reads of a tty. `onGone` hears of an error (EIO when socat
   * went away). Returns what stops reading; the next `open()` needs a new reader.
   */
  read(onData: (chunk: Buffer) => void, onGone: () => void): () => void {
    const fd = openSync(this.simPath, "r+");
    const stream = new ReadStream(fd);
    stream.on("data", onData);
    stream.on("error", onGone);
    let reading = true;
    return () => {
      if (!reading) return;
      reading = false;
      stream.destroy();
      // libuv reopened the tty for its stream; this descriptor is still ours to close.
      try {
        closeSync(fd);
      } catch {
        // already gone
      }
    };
  }

  /** Closes both ends: the device node disappears. */
  async close(): Promise<void> {
    if (this.#fd !== undefined) {
      try {
        closeSync(this.#fd);
      } catch {
        // already gone
      }
      this.#fd = undefined;
    }
    const socat = this.#socat;
    this.#socat = undefined;
    if (socat === undefined || socat.exitCode !== null) return;
    const gone = new Promise((resolve) => socat.once("exit", resolve));
    socat.kill("SIGTERM");
    await Promise.race([gone, delay(2_000)]);
    if (socat.exitCode === null) socat.kill("SIGKILL");
  }

  get pid(): number | undefined {
    return this.#socat?.pid;
  }
}
