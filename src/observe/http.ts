import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { type Logger, ServerLifecycle } from "../core/index.js";

export interface HttpSources {
  /** Prometheus text exposition. */
  metrics(): string;
  /** A JSON-serialisable snapshot of the gateway's state. */
  status(): { readonly healthy: boolean };
}

/**
 * Read-only monitoring endpoint: `/healthz` (200 or 503), `/metrics`, `/status`.
 * It serves nothing that changes state, so it needs no auth on loopback.
 */
export class HttpEndpoint {
  readonly #server: Server;
  readonly #log: Logger;
  readonly #lifecycle = new ServerLifecycle();

  constructor(sources: HttpSources, log: Logger) {
    this.#log = log;
    this.#server = createServer((req, res) => {
      const path = (req.url ?? "/").split("?")[0];
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.writeHead(405, { allow: "GET, HEAD" }).end();
        return;
      }
      if (path === "/metrics") {
        res.writeHead(200, { "content-type": "text/plain; version=0.0.4" }).end(sources.metrics());
      } else if (path === "/healthz" || path === "/status") {
        const status = sources.status();
        const code = path === "/healthz" && !status.healthy ? 503 : 200;
        res
          .writeHead(code, { "content-type": "application/json" })
          .end(`${JSON.stringify(status)}\n`);
      } else {
        res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      }
    });
    // Monitoring must never keep the process alive on shutdown.
    this.#server.keepAliveTimeout = 1000;
  }

  /** Starts serving; an abort of `signal` closes the endpoint as `close` does. */
  async listen(host: string, port: number, signal?: AbortSignal): Promise<AddressInfo> {
    const address = await this.#lifecycle.listen(
      this.#server,
      { host, port },
      () => void this.close(),
      signal,
      {
        code: "LG_ERR_HTTP_PORT_IN_USE",
        what: "HTTP monitoring",
        fix: "another leafgate, or a nats-server's monitoring port? set http.port to another port, or http.enabled: false",
      },
    );
    this.#log.info({ host: address.address, port: address.port }, "http monitoring listening");
    return address;
  }

  /**
   * Resolves once the server has closed (with an error it hit, if any); at once when it
   * never listened. Never rejects.
   */
  closed(): Promise<Error | undefined> {
    return this.#lifecycle.closed();
  }

  async close(): Promise<void> {
    if (!this.#server.listening) return;
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }
}
