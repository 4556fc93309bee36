import type { AddressInfo } from "node:net";
import { createServer, type Server, type Socket } from "node:net";
import { createServer as createTlsServer, type TLSSocket } from "node:tls";
import type { Admission, Bus, Counter, Guard, Logger } from "../core/index.js";
import {
  Admissions,
  attachSocket,
  errorMessage,
  RateLimitedLog,
  readTlsFiles,
  ServerLifecycle,
  socketTransport,
  sourceAddress,
} from "../core/index.js";
import { NatsConnection, type NatsConnectionOptions } from "./connection.js";
import { encodeErr } from "./encode.js";

/** Slow consumer lines: this many per window, then one line saying how many were held back. */
const SLOW_CONSUMER_LOG_BURST = 5;
const SLOW_CONSUMER_LOG_WINDOW_MS = 60_000;
/** nats-server's words for a connection over max_connections (sent, then closed). */
const ERR_MAX_CONNECTIONS = "maximum connections exceeded";

export interface NatsListenerLimits {
  /** Open connections (0 = no limit), nats-server's max_connections. */
  readonly maxConnections: number;
  /** Sockets that have not sent an accepted CONNECT (0 = no limit). */
  readonly maxPendingConnections: number;
  /** Sockets from one address (0 = no limit). */
  readonly maxConnectionsPerAddress: number;
}

export interface NatsListenerCounters {
  readonly slowConsumers?: Counter;
  /** Sockets refused at accept, by `reason`: max-connections, max-pending, per-address. */
  readonly refused?: Counter;
  readonly tlsHandshakeFailures?: Counter;
}

export interface NatsListenerOptions {
  readonly connection: NatsConnectionOptions;
  readonly limits?: NatsListenerLimits;
  /** TLS files: the socket is upgraded after INFO, as nats-server does. */
  readonly tls?: { readonly cert?: string; readonly key?: string; readonly ca?: string };
  readonly counters?: NatsListenerCounters;
}

const NO_LIMITS: NatsListenerLimits = {
  maxConnections: 0,
  maxPendingConnections: 0,
  maxConnectionsPerAddress: 0,
};

/** A NATS client listener on TCP (TLS after INFO when configured), over the bus. */
export class NatsListener {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #connections = new Set<NatsConnection>();
  readonly #log: Logger;
  readonly #lifecycle = new ServerLifecycle();
  readonly #admissions: Admissions;
  /** nats-server numbers its clients from 1; nats.js shows it as `client_id`. */
  #nextClientId = 1;

  constructor(bus: Bus, guard: Guard, log: Logger, options: NatsListenerOptions) {
    this.#log = log;
    const { connection: base, counters = {} } = options;
    const limits = options.limits ?? NO_LIMITS;
    this.#admissions = new Admissions(
      { maxPending: limits.maxPendingConnections, maxPerAddress: limits.maxConnectionsPerAddress },
      { refused: (reason) => counters.refused?.inc({ reason }), pending: () => {} },
    );
    const slowLog = new RateLimitedLog(log, {
      burst: SLOW_CONSUMER_LOG_BURST,
      windowMs: SLOW_CONSUMER_LOG_WINDOW_MS,
      level: "warn",
      ...(base.clock === undefined ? {} : { clock: base.clock }),
    });
    const onSlowConsumer = (remote: string): void => {
      counters.slowConsumers?.inc();
      slowLog.log(
        "slow-consumer",
        { remote, maxOutboundBytes: base.maxOutboundBytes },
        "nats slow consumer cut",
      );
    };
    const tlsFiles = options.tls === undefined ? undefined : readTlsFiles(options.tls, "nats");
    // The handshake counts against the auth timeout, as the CONNECT after it does.
    const secure =
      tlsFiles === undefined
        ? undefined
        : createTlsServer({ ...tlsFiles, handshakeTimeout: base.connectTimeoutMs });
    const connectionOptions: NatsConnectionOptions = {
      ...base,
      log,
      onSlowConsumer,
      ...(tlsFiles === undefined ? {} : { tls: true, tlsVerify: tlsFiles.ca !== undefined }),
    };

    /** A socket ready for NATS (plain, or its TLS handshake done) gets its connection. */
    const open = (socket: Socket, admission: Admission, clientId: number, infoSent: boolean) => {
      const connection = new NatsConnection(socketTransport(socket, guard, "nats"), bus, clientId, {
        ...connectionOptions,
        infoSent,
        onOpen: () => admission.established(),
      });
      this.#connections.add(connection);
      attachSocket(socket, connection, guard, "nats", () => {
        this.#sockets.delete(socket);
        this.#connections.delete(connection);
        admission.release();
      });
    };

    /** Sockets between INFO and their TLS handshake's end, by remote address. */
    const upgrading = new Map<string, { admission: Admission; clientId: number }>();
    const accept = (socket: Socket): void => {
      const remote = `${socket.remoteAddress}:${socket.remotePort}`;
      if (limits.maxConnections > 0 && this.#connections.size >= limits.maxConnections) {
        counters.refused?.inc({ reason: "max-connections" });
        socket.end(encodeErr(ERR_MAX_CONNECTIONS));
        socket.destroySoon();
        return;
      }
      const admission = this.#admissions.admit(sourceAddress(remote), () => socket.destroy());
      if (admission === undefined) {
        socket.destroy();
        return;
      }
      this.#sockets.add(socket);
      const clientId = this.#nextClientId++;
      if (secure === undefined) {
        open(socket, admission, clientId, false);
        return;
      }
      // INFO goes out in plain text; the client then starts TLS on the same socket,
      // which the TLS server (never listening itself) takes over.
      socket.write(NatsConnection.info(connectionOptions, clientId));
      upgrading.set(remote, { admission, clientId });
      socket.once("close", () => {
        if (upgrading.get(remote)?.admission === admission) {
          upgrading.delete(remote);
          this.#sockets.delete(socket);
          admission.release();
        }
      });
      secure.emit("connection", socket);
    };
    secure?.on("secureConnection", (tlsSocket: TLSSocket) => {
      const remote = `${tlsSocket.remoteAddress}:${tlsSocket.remotePort}`;
      const place = upgrading.get(remote);
      upgrading.delete(remote);
      if (place === undefined) {
        tlsSocket.destroy();
        return;
      }
      guard.run(
        "nats.tls-accept",
        () => open(tlsSocket, place.admission, place.clientId, true),
        () => tlsSocket.destroy(),
      );
    });
    secure?.on("tlsClientError", (err: Error) => {
      counters.tlsHandshakeFailures?.inc();
      log.debug({ err: errorMessage(err) }, "nats tls handshake failed");
    });
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
      {
        code: "LG_ERR_NATS_PORT_IN_USE",
        what: "the NATS listener",
        fix: "a nats-server? leafgate's hub belongs on another port, see README: stop it, or set nats.listeners to another port",
      },
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

  /** Logged-in connections by account (accounts without one are absent). */
  connectedByAccount(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const c of this.#connections) {
      if (c.state.phase !== "open") continue;
      counts.set(c.account, (counts.get(c.account) ?? 0) + 1);
    }
    return counts;
  }

  /** Bytes written to clients and not yet taken by the kernel, across connections. */
  get unsentBytes(): number {
    let bytes = 0;
    for (const c of this.#connections) bytes += c.unsentBytes;
    return bytes;
  }
}
