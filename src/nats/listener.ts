import type { AddressInfo } from "node:net";
import { createServer, type Server, type Socket } from "node:net";
import type { Bus, Counter, Guard, Logger, Transport } from "../core/index.js";
import { attachSocket, RateLimitedLog, ServerLifecycle } from "../core/index.js";
import { NatsConnection, type NatsConnectionOptions } from "./connection.js";

/** Slow consumer lines: this many per window, then one line saying how many were held back. */
const SLOW_CONSUMER_LOG_BURST = 5;
const SLOW_CONSUMER_LOG_WINDOW_MS = 60_000;

/** A socket that is done with but whose peer does not read is destroyed after this. */
const END_TIMEOUT_MS = 5_000;

/** Adapts a TCP socket to the Transport seam; its timer runs under `guard`. */
function socketTransport(socket: Socket, guard: Guard): Transport {
  const cut = guard.wrap("nats.socket-end-timeout", () => {
    socket.destroy();
  });
  return {
    write: (bytes) => socket.write(bytes),
    end: (readOn = true) => {
      if (readOn) socket.resume();
      socket.end();
      // A deadline, not an idle timeout: a peer that never reads must not hold the socket.
      const deadline = setTimeout(cut, END_TIMEOUT_MS).unref();
      socket.once("close", () => clearTimeout(deadline));
    },
    destroy: () => {
      socket.destroy();
    },
    pause: () => socket.pause(),
    resume: () => socket.resume(),
    get writableLength() {
      return socket.writableLength;
    },
    remote: `${socket.remoteAddress}:${socket.remotePort}`,
  };
}

/** A NATS client listener on TCP, over the bus. */
export class NatsListener {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #connections = new Set<NatsConnection>();
  readonly #log: Logger;
  readonly #lifecycle = new ServerLifecycle();
  /** nats-server numbers its clients from 1; nats.js shows it as `client_id`. */
  #nextClientId = 1;

  /**
   * `slowConsumers` counts the clients cut for not reading (logged at most
   * SLOW_CONSUMER_LOG_BURST a minute: many at once must not flood the log).
   */
  constructor(
    bus: Bus,
    guard: Guard,
    log: Logger,
    options: NatsConnectionOptions,
    slowConsumers?: Counter,
  ) {
    this.#log = log;
    const slowLog = new RateLimitedLog(log, {
      burst: SLOW_CONSUMER_LOG_BURST,
      windowMs: SLOW_CONSUMER_LOG_WINDOW_MS,
      level: "warn",
      ...(options.clock === undefined ? {} : { clock: options.clock }),
    });
    const onSlowConsumer = (remote: string): void => {
      slowConsumers?.inc();
      slowLog.log(
        "slow-consumer",
        { remote, maxOutboundBytes: options.maxOutboundBytes },
        "nats slow consumer cut",
      );
    };
    const accept = (socket: Socket): void => {
      this.#sockets.add(socket);
      const transport = socketTransport(socket, guard);
      const connection = new NatsConnection(transport, bus, this.#nextClientId++, {
        ...options,
        log,
        onSlowConsumer,
      });
      this.#connections.add(connection);
      attachSocket(socket, connection, guard, "nats", () => {
        this.#sockets.delete(socket);
        this.#connections.delete(connection);
      });
    };
    this.#server = createServer({ noDelay: true }, (socket) =>
      guard.run(
        "nats.accept",
        () => accept(socket),
        () => socket.destroy(),
      ),
    );
  }

  /** Starts accepting; an abort of `signal` stops accepting and destroys every connection. */
  async listen(host: string, port: number, signal?: AbortSignal): Promise<AddressInfo> {
    const address = await this.#lifecycle.listen(
      this.#server,
      { host, port },
      () => {
        void this.stopAccepting();
        this.destroyAll();
      },
      signal,
    );
    this.#log.info({ host: address.address, port: address.port }, "nats listening");
    return address;
  }

  /** Stops accepting; resolves once the last open connection has closed too (net.Server). */
  stopAccepting(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.#server.listening) resolve();
      else this.#server.close(() => resolve());
    });
  }

  /** Closes every open connection from the server side (their queued bytes flushed). */
  closeAll(): void {
    for (const connection of this.#connections) connection.close();
  }

  /** Resolves once the server has closed (with an error it hit, if any). Never rejects. */
  closed(): Promise<Error | undefined> {
    return this.#lifecycle.closed();
  }

  /** Last resort after the drain deadline. */
  destroyAll(): void {
    for (const socket of this.#sockets) socket.destroy();
  }

  get connectionCount(): number {
    return this.#connections.size;
  }
}
