import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { createServer, type Server, type Socket } from "node:net";
import { createServer as createTlsServer } from "node:tls";
import type { Logger } from "../core/index.js";
import { errorMessage, LeafgateError } from "../core/index.js";
import type { Broker } from "./broker.js";
import type { Transport } from "./transport.js";

/** Adapts a TCP socket to the protocol's Transport. */
function socketTransport(socket: Socket): Transport {
  let corked = false;
  const uncork = (): void => {
    corked = false;
    socket.uncork();
  };
  return {
    write: (bytes) => {
      // Acks for one group commit go out in one write, not one syscall each.
      if (!corked) {
        corked = true;
        socket.cork();
        process.nextTick(uncork);
      }
      return socket.write(bytes);
    },
    end: () => {
      socket.end();
      // A peer that never reads must not hold the socket open after we are done.
      socket.setTimeout(5_000, () => socket.destroy());
    },
    destroy: () => socket.destroy(),
    pause: () => socket.pause(),
    resume: () => socket.resume(),
    get writableLength() {
      return socket.writableLength;
    },
    remote: `${socket.remoteAddress}:${socket.remotePort}`,
  };
}

/** A plain TCP MQTT listener. */
export class TcpListener {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #log: Logger;

  readonly #tls: boolean;

  constructor(
    broker: Broker,
    log: Logger,
    tls?: { readonly cert?: string; readonly key?: string; readonly ca?: string },
  ) {
    this.#log = log;
    this.#tls = tls !== undefined;
    const accept = (socket: Socket): void => {
      this.#sockets.add(socket);
      const handler = broker.accept(socketTransport(socket));
      socket.on("data", (chunk: Buffer) => handler.onData(chunk));
      socket.on("error", (err) => handler.onClose(err));
      socket.on("close", () => {
        this.#sockets.delete(socket);
        handler.onClose();
      });
    };
    if (tls === undefined) {
      this.#server = createServer({ noDelay: true }, accept);
      return;
    }
    const read = (what: string, file: string | undefined): Buffer | undefined => {
      if (file === undefined) return undefined;
      try {
        return readFileSync(file);
      } catch (err) {
        throw new LeafgateError(
          "LG_ERR_MQTT_TLS",
          `cannot read the MQTT listener's TLS ${what} ${file}: ${errorMessage(err)}`,
          { cause: err },
        );
      }
    };
    const ca = read("ca", tls.ca);
    const server = createTlsServer({
      cert: read("cert", tls.cert),
      key: read("key", tls.key),
      ...(ca ? { ca, requestCert: true, rejectUnauthorized: true } : {}),
    });
    server.on("secureConnection", (socket) => {
      socket.setNoDelay(true);
      accept(socket);
    });
    // A failed handshake is the client's problem: counted by nothing, logged at debug.
    server.on("tlsClientError", (err) =>
      log.debug({ err: errorMessage(err) }, "mqtt tls handshake failed"),
    );
    this.#server = server;
  }

  async listen(host: string, port: number): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen({ host, port }, () => {
        this.#server.off("error", reject);
        resolve();
      });
    });
    const address = this.#server.address() as AddressInfo;
    this.#log.info({ host: address.address, port: address.port, tls: this.#tls }, "mqtt listening");
    return address;
  }

  /** Stops accepting; open connections are closed by the broker. */
  stopAccepting(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.#server.listening) resolve();
      else this.#server.close(() => resolve());
    });
  }

  /** Last resort after the drain deadline. */
  destroyAll(): void {
    for (const socket of this.#sockets) socket.destroy();
  }
}
