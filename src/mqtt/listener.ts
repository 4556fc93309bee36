import { createServer as createHttpServer, type IncomingMessage } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { createServer, type Server, type Socket } from "node:net";
import { createServer as createTlsServer } from "node:tls";
import type { WebSocket, WebSocketServer } from "ws";
import type { Admission, Counter, Logger } from "../core/index.js";
import {
  attachSocket,
  errorMessage,
  readTlsFiles,
  ServerLifecycle,
  socketTransport,
} from "../core/index.js";
import type { Broker } from "./broker.js";
import { sourceAddress } from "./client-text.js";
import { webSocketTransport } from "./transports.js";

/** The MQTT subprotocol names a WebSocket client may offer (section 6, and 3.1's). */
const WS_PROTOCOLS = ["mqtt", "mqttv3.1"];
/** Room beyond max_packet_size for a WebSocket message that batches small packets. */
const WS_BATCH_SLACK_BYTES = 64 * 1024;
export interface ListenerOptions {
  /** With `ca`, clients must present a certificate signed by it, checked in the handshake. */
  readonly tls?: { readonly cert?: string; readonly key?: string; readonly ca?: string };
  /** MQTT over WebSocket (section 6) instead of bare TCP. */
  readonly websocket?: boolean;
  /** Counts TLS handshakes that failed (no or an untrusted client certificate, bad TLS). */
  readonly tlsHandshakeFailures?: Counter;
  /** Idle time before the first TCP keepalive probe on accepted sockets; 0 = off. */
  readonly tcpKeepaliveMs?: number;
}

/**
 * TCP keepalive on every socket the server accepts, from its first byte on (before TLS or
 * the WebSocket upgrade): a peer gone without FIN or RST (power cut, cable pulled) is
 * found by the kernel's probes instead of holding its slot forever.
 */
function setTcpKeepalive(server: Server, idleMs: number): void {
  if (idleMs <= 0) return;
  server.on("connection", (socket: Socket) => socket.setKeepAlive(true, idleMs));
}

/** An MQTT listener: TCP, TLS, or WebSocket over either. */
export class MqttListener {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #broker: Broker;
  /**
   * Places taken at accept, by `address:port`, until the MQTT connection on top (after a
   * TLS or WebSocket handshake) claims its own. Unique among open TCP connections.
   */
  readonly #admitted = new Map<string, Admission>();
  /** Raw sockets refused at accept: their TLS layer's reset is not a handshake failure. */
  readonly #refused = new WeakSet<Socket>();
  readonly #log: Logger;
  readonly #tls: boolean;
  readonly #websocket: boolean;
  #wss: WebSocketServer | undefined;
  /** Set by a WebSocket listener until `listen` has loaded ws. */
  #attachWebSocket: ((ws: typeof import("ws")) => void) | undefined;
  readonly #lifecycle = new ServerLifecycle();

  constructor(broker: Broker, log: Logger, options: ListenerOptions = {}) {
    const { tls } = options;
    this.#log = log;
    this.#broker = broker;
    this.#tls = tls !== undefined;
    this.#websocket = options.websocket === true;
    // Socket events run under the broker's guard: a bug reached from one client's bytes
    // cuts that client's socket, never the process.
    const { guard } = broker;
    const accept = (socket: Socket): void => {
      // Refused at admission (see #admitFirst), which runs first.
      if (socket.destroyed) return;
      this.#sockets.add(socket);
      const handler = broker.accept(socketTransport(socket, guard, "mqtt"), this.#claim(socket));
      attachSocket(socket, handler, guard, "mqtt", () => this.#sockets.delete(socket));
    };
    const acceptGuarded = (socket: Socket): void =>
      guard.run(
        "mqtt.accept",
        () => accept(socket),
        () => socket.destroy(),
      );
    const tlsOptions = tls === undefined ? undefined : readTlsFiles(tls, "mqtt");
    const keepaliveMs = options.tcpKeepaliveMs ?? 0;
    if (this.#websocket) {
      this.#server = this.#webSocketServer(broker, tlsOptions);
      if (tlsOptions !== undefined) {
        this.#countHandshakeFailures(this.#server, options.tlsHandshakeFailures);
      }
      this.#admitFirst(this.#server);
      setTcpKeepalive(this.#server, keepaliveMs);
      return;
    }
    if (tlsOptions === undefined) {
      this.#server = createServer({ noDelay: true }, acceptGuarded);
      this.#admitFirst(this.#server);
      setTcpKeepalive(this.#server, keepaliveMs);
      return;
    }
    // A TLS handshake is part of the time before CONNECT: held to the same limit.
    const server = createTlsServer({
      ...tlsOptions,
      handshakeTimeout: broker.options.connectTimeoutMs,
    });
    server.on("secureConnection", (socket) => {
      socket.setNoDelay(true);
      acceptGuarded(socket);
    });
    this.#countHandshakeFailures(server, options.tlsHandshakeFailures);
    this.#admitFirst(server);
    setTcpKeepalive(server, keepaliveMs);
    this.#server = server;
  }

  /**
   * Counts every socket the moment it is accepted, before a TLS or WebSocket handshake
   * spends anything on it, and closes the ones over a limit (see admission.ts). Runs
   * ahead of the server's own `connection` listeners.
   */
  #admitFirst(server: Server): void {
    server.prependListener("connection", (socket: Socket) => {
      const remote = `${socket.remoteAddress}:${socket.remotePort}`;
      const admission = this.#broker.admissions.admit(sourceAddress(remote), () =>
        socket.destroy(),
      );
      if (admission === undefined) {
        this.#refused.add(socket);
        socket.destroy();
        return;
      }
      this.#admitted.set(remote, admission);
      socket.once("close", () => {
        admission.release();
        if (this.#admitted.get(remote) === admission) this.#admitted.delete(remote);
      });
    });
  }

  /** The place `socket` (or the raw socket under it) took at accept. */
  #claim(socket: { remoteAddress?: string; remotePort?: number }): Admission | undefined {
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    const admission = this.#admitted.get(remote);
    this.#admitted.delete(remote);
    return admission;
  }

  /**
   * A failed handshake (a client without a certificate the CA signed, or no TLS at all)
   * never reaches MQTT: it is the client's problem, counted, and logged at debug.
   */
  #countHandshakeFailures(server: Server, failures: Counter | undefined): void {
    server.on("tlsClientError", (err: Error, tlsSocket: { _parent?: unknown }) => {
      // `_parent` is the raw socket under the TLS one (Node internal, long-standing).
      if (this.#refused.has(tlsSocket._parent as Socket)) return;
      failures?.inc();
      this.#log.debug({ err: errorMessage(err) }, "mqtt tls handshake failed");
    });
  }

  #webSocketServer(
    broker: Broker,
    tlsOptions: Parameters<typeof createHttpsServer>[0] | undefined,
  ): Server {
    const http = tlsOptions === undefined ? createHttpServer() : createHttpsServer(tlsOptions);
    http.on("connection", (socket: Socket) => {
      socket.setNoDelay(true);
      this.#sockets.add(socket);
      socket.on("close", () => this.#sockets.delete(socket));
    });
    this.#attachWebSocket = (ws) => this.#webSocketAccept(broker, http, ws);
    return http;
  }

  #webSocketAccept(
    broker: Broker,
    http: ReturnType<typeof createHttpServer> | ReturnType<typeof createHttpsServer>,
    { WebSocketServer }: typeof import("ws"),
  ): void {
    const wss = new WebSocketServer({
      server: http,
      // A message may carry several packets; each is held to the limit by the framer.
      maxPayload: broker.options.maxPacketSize + WS_BATCH_SLACK_BYTES,
      perMessageDeflate: false,
      // The server selects "mqtt" [MQTT-6.0.0-4]; a client offering none is let in.
      handleProtocols: (offered: Set<string>) => WS_PROTOCOLS.find((p) => offered.has(p)) ?? false,
    });
    this.#wss = wss;
    const { guard } = broker;
    const accept = (ws: WebSocket, req: IncomingMessage): void => {
      const cut = (): void => ws.terminate();
      const remote = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
      const handler = broker.accept(webSocketTransport(ws, remote, guard), this.#claim(req.socket));
      // ws writes straight to the socket: its drain is the WebSocket's.
      req.socket.on(
        "drain",
        guard.wrap("mqtt.ws-drain", () => handler.onDrain(), cut),
      );
      ws.on(
        "message",
        guard.wrap(
          "mqtt.ws-message",
          (data: Buffer, isBinary: boolean) => {
            // MQTT travels in binary messages only; anything else closes [MQTT-6.0.0-1].
            if (!isBinary) {
              ws.terminate();
              return;
            }
            handler.onData(data);
          },
          cut,
        ),
      );
      ws.on(
        "error",
        guard.wrap("mqtt.ws-error", (err: Error) => handler.onClose(err), cut),
      );
      ws.on(
        "close",
        guard.wrap("mqtt.ws-close", () => handler.onClose()),
      );
    };
    wss.on("connection", (ws: WebSocket, req: IncomingMessage) =>
      guard.run(
        "mqtt.accept",
        () => accept(ws, req),
        () => ws.terminate(),
      ),
    );
    wss.on("error", (err) => this.#log.warn({ err: errorMessage(err) }, "mqtt websocket error"));
  }

  /**
   * Starts accepting. An abort of `signal` stops accepting and destroys every connection
   * (the gateway's backstop; its `stop` calls `stopAccepting` and `destroyAll` itself).
   */
  async listen(host: string, port: number, signal?: AbortSignal): Promise<AddressInfo> {
    // ws is loaded only by a WebSocket listener: about 4 MB and 5 ms of start-up otherwise.
    if (this.#attachWebSocket !== undefined) {
      this.#attachWebSocket(await import("ws"));
      this.#attachWebSocket = undefined;
    }
    const address = await this.#lifecycle.listen(
      this.#server,
      { host, port },
      () => {
        void this.stopAccepting();
        this.destroyAll();
      },
      signal,
      {
        code: "LG_ERR_MQTT_PORT_IN_USE",
        what: "the MQTT listener",
        fix: "another MQTT broker, such as mosquitto? stop it, or set mqtt.listeners to another port",
      },
    );
    this.#log.info(
      { host: address.address, port: address.port, tls: this.#tls, websocket: this.#websocket },
      "mqtt listening",
    );
    return address;
  }

  /** Stops accepting; open connections are closed by the broker. */
  stopAccepting(): Promise<void> {
    this.#wss?.close();
    return new Promise((resolve) => {
      if (!this.#server.listening) resolve();
      else this.#server.close(() => resolve());
    });
  }

  /**
   * Resolves once the server has closed and its connections have ended (with an error the
   * server hit, if any); at once when it never listened. Never rejects.
   */
  closed(): Promise<Error | undefined> {
    return this.#lifecycle.closed();
  }

  /** Last resort after the drain deadline. */
  destroyAll(): void {
    for (const socket of this.#sockets) socket.destroy();
  }
}
