// An in-process TCP proxy between leafgate and the hub that can cut, blackhole, delay and
// throttle the link, or reset a connection in the middle of a frame — after nats-server's
// `netProxy` (test/norace_test.go). Loopback only, ephemeral port. A LinkFilter sees the
// bytes on their way and may withhold some (test/helpers/nats-ack-filter.ts reads the NATS
// protocol and drops or holds the hub's PubAcks).
//
// Memory is bounded: each direction queues at most QUEUE_HIGH_WATER_BYTES before it stops
// reading its source (TCP flow control then pushes back on the sender), and a destination
// that does not drain pauses the queue instead of growing it.
import { createConnection, createServer, type Server, type Socket } from "node:net";

/** Bytes queued per direction before the source socket is paused. */
const QUEUE_HIGH_WATER_BYTES = 256 * 1024;
/** Below this the paused source is read again. */
const QUEUE_LOW_WATER_BYTES = 64 * 1024;
/** Token-bucket depth for throttle(): a tenth of a second of traffic, so bursts stay short. */
const THROTTLE_BURST_S = 0.1;
/** Shortest wait between throttled writes; finer timers only burn CPU. */
const THROTTLE_MIN_WAIT_MS = 5;

export type FaultMode = "pass" | "cut" | "blackhole";

/**
 * Sees every chunk of one connection pair before it is forwarded (after a blackhole has
 * had its say, before delay and throttle) and decides what goes on: all of it, part of
 * it, or something else, now or later, by calling `forward`. One per connection pair.
 */
export interface LinkFilter {
  /** Bytes from the client (leafgate) towards the target (hub). */
  toTarget(chunk: Buffer, forward: (data: Buffer) => void): void;
  /** Bytes from the target towards the client. */
  toClient(chunk: Buffer, forward: (data: Buffer) => void): void;
}

export interface FaultProxyOptions {
  /** Called for each new connection pair; by default bytes pass unchanged. */
  filter?: () => LinkFilter;
}

export interface FaultProxy {
  readonly port: number;
  /** nats://127.0.0.1:PORT */
  readonly url: string;
  readonly mode: FaultMode;
  /** Destroys every open connection pair with RST and refuses (RSTs) new ones until restore(). */
  cut(): void;
  /**
   * Keeps sockets open but silently drops every byte both ways (no RST, no FIN); new
   * connections are accepted and blackholed too. A side that closes meanwhile is not
   * reported to the other side, as a partition would not.
   */
  blackhole(): void;
  /** Adds `ms` of latency to every chunk, both ways (0 removes it). */
  delay(ms: number): void;
  /** Limits each direction of each connection to `bytesPerSecond` (0 removes the limit). */
  throttle(bytesPerSecond: number): void;
  /**
   * Arms a one-shot fault: the next chunk forwarded (either way, any connection) is cut in
   * half; its first half is written, then both sockets of that connection are reset.
   */
  resetMidFrame(): void;
  /** How many resetMidFrame() faults have fired. */
  readonly midFrameResets: number;
  /** Bytes a blackhole swallowed, by direction (client → target, target → client). */
  blackholedBytes(): { toTarget: number; toClient: number };
  /**
   * Back to "pass"; delay and throttle are cleared. Connections that lost bytes to a
   * blackhole are reset (their byte streams are corrupt and could not resume).
   */
  restore(): void;
  /** Open connection pairs. */
  connections(): number;
  /** Stops listening and destroys every socket. */
  close(): Promise<void>;
}

interface Chunk {
  data: Buffer;
  /** Not before this time (delay). */
  releaseAtMs: number;
  /** resetMidFrame: reset the pair once this chunk is written. */
  resetAfter: boolean;
}

/** One direction of one connection pair. */
class Pipe {
  readonly #queue: Chunk[] = [];
  #queuedBytes = 0;
  #timer: NodeJS.Timeout | undefined;
  #waitingForDrain = false;
  #tokens = 0;
  #tokensAtMs = Date.now();
  #sourcePaused = false;

  constructor(
    private readonly proxy: ProxyState,
    private readonly pair: Pair,
    private readonly src: Socket,
    private readonly dst: Socket,
    private readonly toTarget: boolean,
    private readonly filter: LinkFilter | undefined,
  ) {
    src.on("data", (data: Buffer) => this.#onData(data));
    dst.on("drain", () => {
      this.#waitingForDrain = false;
      this.pump();
    });
  }

  #onData(data: Buffer): void {
    if (this.pair.closed || this.pair.closing) return;
    if (this.proxy.mode === "blackhole") {
      this.pair.lostBytes = true;
      this.#swallowed(data.length);
      return;
    }
    if (this.filter === undefined) {
      this.#enqueue(data);
    } else if (this.toTarget) {
      this.filter.toTarget(data, (d) => this.#enqueue(d));
    } else {
      this.filter.toClient(data, (d) => this.#enqueue(d));
    }
  }

  #enqueue(data: Buffer): void {
    // A filter may forward later, when the pair is gone or the link blackholed.
    if (this.pair.closed || this.pair.closing || data.length === 0) return;
    if (this.proxy.mode === "blackhole") {
      this.pair.lostBytes = true;
      this.#swallowed(data.length);
      return;
    }
    let resetAfter = false;
    if (this.proxy.resetArmed && data.length >= 2) {
      this.proxy.resetArmed = false;
      data = data.subarray(0, Math.floor(data.length / 2));
      resetAfter = true;
    }
    this.#queue.push({ data, releaseAtMs: Date.now() + this.proxy.delayMs, resetAfter });
    this.#queuedBytes += data.length;
    if (this.#queuedBytes > QUEUE_HIGH_WATER_BYTES && !this.#sourcePaused) {
      this.#sourcePaused = true;
      this.src.pause();
    }
    this.pump();
  }

  #swallowed(bytes: number): void {
    if (this.toTarget) this.proxy.blackholed.toTarget += bytes;
    else this.proxy.blackholed.toClient += bytes;
  }

  /** Drops everything queued (blackhole) and keeps reading, so bytes go nowhere. */
  discard(): void {
    if (this.#queue.length > 0) this.pair.lostBytes = true;
    this.#swallowed(this.#queuedBytes);
    this.#queue.length = 0;
    this.#queuedBytes = 0;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#resumeSource();
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#queue.length = 0;
    this.#queuedBytes = 0;
  }

  #resumeSource(): void {
    if (!this.#sourcePaused) return;
    this.#sourcePaused = false;
    if (!this.pair.closed) this.src.resume();
  }

  /** Writes what delay, throttle and the destination allow; reschedules itself for the rest. */
  pump(): void {
    if (this.#timer !== undefined || this.#waitingForDrain) return;
    while (
      this.#queue.length > 0 &&
      !this.pair.closed &&
      !this.pair.closing &&
      this.proxy.mode === "pass"
    ) {
      const head = this.#queue[0]!;
      const now = Date.now();
      if (head.releaseAtMs > now) {
        this.#schedule(head.releaseAtMs - now);
        return;
      }
      let data = head.data;
      const rate = this.proxy.bytesPerSecond;
      if (rate > 0) {
        const burst = Math.max(1, rate * THROTTLE_BURST_S);
        this.#tokens = Math.min(burst, this.#tokens + ((now - this.#tokensAtMs) * rate) / 1000);
        this.#tokensAtMs = now;
        if (this.#tokens < 1) {
          this.#schedule(Math.max(THROTTLE_MIN_WAIT_MS, ((1 - this.#tokens) * 1000) / rate));
          return;
        }
        const n = Math.min(data.length, Math.floor(this.#tokens));
        this.#tokens -= n;
        if (n < data.length) {
          head.data = data.subarray(n);
          data = data.subarray(0, n);
        }
      }
      if (data === head.data) this.#queue.shift();
      this.#queuedBytes -= data.length;
      if (data === head.data && head.resetAfter) {
        this.proxy.midFrameResets++;
        this.pair.closing = true;
        // RST only once the partial chunk has reached the kernel (and so the peer).
        this.dst.write(data, () => this.pair.reset());
        return;
      }
      const flushed = this.dst.write(data);
      if (this.#queuedBytes < QUEUE_LOW_WATER_BYTES) this.#resumeSource();
      if (!flushed) {
        this.#waitingForDrain = true;
        return;
      }
    }
  }

  #schedule(ms: number): void {
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.pump();
    }, ms);
  }
}

class Pair {
  closed = false;
  /** A reset is on its way (resetMidFrame); no more bytes either way. */
  closing = false;
  /** Bytes were dropped by a blackhole: the streams cannot resume. */
  lostBytes = false;
  readonly #pipes: Pipe[] = [];

  constructor(
    private readonly proxy: ProxyState,
    readonly client: Socket,
    readonly upstream: Socket,
    filter: LinkFilter | undefined,
  ) {
    this.#pipes.push(
      new Pipe(proxy, this, client, upstream, true, filter),
      new Pipe(proxy, this, upstream, client, false, filter),
    );
    for (const s of [client, upstream]) {
      s.on("error", () => this.reset());
      s.on("close", () => this.#peerClosed());
    }
  }

  #peerClosed(): void {
    // A partition hides a close from the other side: keep it open (and silent) until
    // restore() or close() resets it.
    if (this.proxy.mode === "blackhole" && !this.closing) {
      this.lostBytes = true;
      return;
    }
    this.reset();
  }

  pump(): void {
    for (const p of this.#pipes) p.pump();
  }

  discard(): void {
    for (const p of this.#pipes) p.discard();
  }

  /** Destroys both sockets with RST. */
  reset(): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.#pipes) p.stop();
    for (const s of [this.client, this.upstream]) {
      if (s.destroyed) continue;
      // resetAndDestroy() throws on a socket that never connected.
      if (s.connecting) s.destroy();
      else s.resetAndDestroy();
    }
    this.proxy.pairs.delete(this);
  }
}

interface ProxyState {
  mode: FaultMode;
  delayMs: number;
  bytesPerSecond: number;
  resetArmed: boolean;
  midFrameResets: number;
  readonly blackholed: { toTarget: number; toClient: number };
  readonly pairs: Set<Pair>;
}

/** Starts a proxy on 127.0.0.1 (ephemeral port) forwarding to 127.0.0.1:`targetPort`. */
export async function startFaultProxy(
  targetPort: number,
  options: FaultProxyOptions = {},
): Promise<FaultProxy> {
  const state: ProxyState = {
    mode: "pass",
    delayMs: 0,
    bytesPerSecond: 0,
    resetArmed: false,
    midFrameResets: 0,
    blackholed: { toTarget: 0, toClient: 0 },
    pairs: new Set(),
  };
  const server: Server = createServer({ allowHalfOpen: false, noDelay: true }, (client) => {
    if (state.mode === "cut") {
      client.on("error", () => {});
      client.resetAndDestroy();
      return;
    }
    const upstream = createConnection({ host: "127.0.0.1", port: targetPort, noDelay: true });
    state.pairs.add(new Pair(state, client, upstream, options.filter?.()));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("fault proxy: no port");
  const { port } = address;

  const resetAll = (): void => {
    for (const pair of [...state.pairs]) pair.reset();
  };

  return {
    port,
    url: `nats://127.0.0.1:${port}`,
    get mode() {
      return state.mode;
    },
    get midFrameResets() {
      return state.midFrameResets;
    },
    blackholedBytes() {
      return { ...state.blackholed };
    },
    cut() {
      state.mode = "cut";
      resetAll();
    },
    blackhole() {
      state.mode = "blackhole";
      for (const pair of state.pairs) pair.discard();
    },
    delay(ms) {
      state.delayMs = Math.max(0, ms);
    },
    throttle(bytesPerSecond) {
      state.bytesPerSecond = Math.max(0, bytesPerSecond);
    },
    resetMidFrame() {
      state.resetArmed = true;
    },
    restore() {
      state.mode = "pass";
      state.delayMs = 0;
      state.bytesPerSecond = 0;
      for (const pair of [...state.pairs]) {
        if (pair.lostBytes) pair.reset();
        else pair.pump();
      }
    },
    connections() {
      return state.pairs.size;
    },
    async close() {
      state.mode = "cut";
      resetAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
