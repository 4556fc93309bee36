import { createConnection, type Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import {
  type ConnectionOptions,
  errors,
  hasWsProtocol,
  type NatsConnection,
  NatsConnectionImpl,
  setTransportFactory,
} from "@nats-io/transport-node";
// No exports map in the package: the transport class is reachable only by its file.
import { NodeTransport, nodeResolveHost } from "@nats-io/transport-node/lib/node_transport.js";

type HostPort = Parameters<NodeTransport["dial"]>[0];

/**
 * nats.js' Node transport, except that closing it before it connected ends its socket.
 * nats.js (3.4.0) ignores `close()` until the transport has connected: a connect attempt
 * that times out (a hub that accepts TCP but never sends INFO, a TLS handshake that never
 * completes) leaves its socket open for good, one per attempt. Connected transports behave
 * exactly as in nats.js. docs/upstream.md, "Dialing".
 */
class HubTransport extends NodeTransport {
  /** The TCP socket of a dial still in progress (not yet `this.socket`). */
  #dialing: Socket | undefined;

  override dial(hp: HostPort): Promise<Socket> {
    // As NodeTransport.dial, but the socket is kept so that an abandoned attempt can end it.
    return new Promise((resolve, reject) => {
      let dialError: Error | undefined;
      const socket = createConnection(hp.port, hp.hostname, () => {
        socket.removeAllListeners();
        this.#dialing = undefined;
        resolve(socket);
      });
      this.#dialing = socket;
      socket.on("error", (err) => {
        dialError = err;
      });
      socket.on("close", () => {
        socket.removeAllListeners();
        if (this.#dialing === socket) this.#dialing = undefined;
        reject(dialError);
      });
      socket.setNoDelay(true);
    });
  }

  override async tlsFirst(hp: HostPort): Promise<TLSSocket> {
    // nats.js runs TLS over `this.socket` when there is one: dialing it here makes the
    // handshake's socket one that `close()` can reach.
    this.socket = await this.dial(hp);
    return super.tlsFirst(hp);
  }

  override close(err?: Error): Promise<void> {
    if (this.connected) return super.close(err);
    // Not connected: nats.js would return without touching the socket. `done` makes a dial
    // that completes later destroy its socket; the closed notification stays unresolved, as
    // in nats.js (resolving it would start a reconnect).
    this.done = true;
    this.#destroy();
    return Promise.resolve();
  }

  override discard(): void {
    super.discard();
    this.#destroy();
  }

  #destroy(): void {
    this.#dialing?.destroy();
    this.#dialing = undefined;
    // `socket` is typed as always set, but it is undefined until a dial completes.
    (this.socket as Socket | undefined)?.destroy();
  }
}

/**
 * nats.js' `connect`, with transports that end the socket of an abandoned attempt. All of
 * our hub dialing goes through it: the transport factory is global in nats.js and its own
 * `connect` resets it (reconnects within a connection use the factory of that moment).
 */
export function connect(options: ConnectionOptions): Promise<NatsConnection> {
  if (hasWsProtocol(options)) {
    return Promise.reject(
      errors.InvalidArgumentError.format("servers", "websocket URLs are not supported"),
    );
  }
  setTransportFactory({ factory: () => new HubTransport(), dnsResolveFn: nodeResolveHost });
  return NatsConnectionImpl.connect(options);
}
