import type { AddressInfo } from "node:net";
import { createServer, type Server, type Socket } from "node:net";
import type { Bus, Guard, Logger, Transport } from "../core/index.js";
import { attachSocket, ServerLifecycle } from "../core/index.js";
import { NatsConnection, type NatsConnectionOptions } from "./connection.js";

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

  constructor(bus: Bus, guard: Guard, log: Logger, options: NatsConnectionOptions) {
    this.#log = log;
    const accept = (socket: Socket): void => {
      this.#sockets.add(socket);
      const transport = socketTransport(socket, guard);
      const connection = new NatsConnection(transport, bus, this.#nextClientId++, {
        ...options,
        log,
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

  /** Stops accepting; open connections stay until closed or destroyed. */
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
