import { createHash, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import {
  type Counter,
  type Logger,
  type Metrics,
  RateLimitedLog,
  ServerLifecycle,
} from "../core/index.js";
import { type ReadinessInput, readiness } from "./readiness.js";
import { pageData, STATUS_PAGE } from "./status-page.js";

export interface HttpSources {
  /** Prometheus text exposition. */
  metrics(): string;
  /** A JSON-serialisable snapshot of the gateway's state. */
  status(): ReadinessInput;
}

export interface HttpOptions {
  /** `http.token`: when set, every route needs `Authorization: Bearer <token>`. */
  readonly token?: string | undefined;
  /** Where refusals are counted (`leafgate_http_unauthorized_total`). */
  readonly metrics?: Metrics;
}

/** Refusals logged per minute; the rest are only counted. */
const REFUSAL_LOG_BURST = 1;
const REFUSAL_LOG_WINDOW_MS = 60_000;
const UNAUTHORIZED_BODY = `${JSON.stringify({
  error: "unauthorized: this endpoint needs the header Authorization: Bearer <http.token>",
})}\n`;

/** A fixed-length digest, so comparing two tokens takes the same time whatever they are. */
const digest = (s: string): Buffer => createHash("sha256").update(s).digest();

/**
 * Read-only monitoring endpoint: `/healthz` (200 or 503), `/readyz` (200 or 503 with the
 * reasons), `/metrics`, `/status`, the status page `/` and its data `/api/status`. It serves nothing that changes state; with
 * `http.token` set, every route needs the bearer token (docs/status.md).
 */
export class HttpEndpoint {
  readonly #server: Server;
  readonly #log: Logger;
  readonly #lifecycle = new ServerLifecycle();
  readonly #token: Buffer | undefined;
  readonly #refused: Counter | undefined;
  readonly #refusalLog: RateLimitedLog;

  constructor(sources: HttpSources, log: Logger, options: HttpOptions = {}) {
    this.#log = log;
    this.#token = options.token === undefined ? undefined : digest(options.token);
    this.#refused = options.metrics?.counter(
      "leafgate_http_unauthorized_total",
      "HTTP requests refused for a missing or wrong bearer token",
    );
    this.#refusalLog = new RateLimitedLog(log, {
      burst: REFUSAL_LOG_BURST,
      windowMs: REFUSAL_LOG_WINDOW_MS,
    });
    this.#server = createServer((req, res) => {
      const path = (req.url ?? "/").split("?")[0];
      if (!this.#authorized(req)) {
        this.#refused?.inc();
        this.#refusalLog.log(
          "unauthorized",
          { remote: req.socket.remoteAddress, path },
          "http request refused: missing or wrong bearer token",
        );
        // A browser gets the page itself (it holds no data): it asks for the token, or
        // takes it from `/#token=...`, which the browser never sends.
        const page = path === "/" && (req.headers.accept ?? "").includes("text/html");
        res
          .writeHead(401, {
            "content-type": page ? "text/html; charset=utf-8" : "application/json",
            "www-authenticate": 'Bearer realm="leafgate"',
          })
          .end(page ? STATUS_PAGE : UNAUTHORIZED_BODY);
        return;
      }
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.writeHead(405, { allow: "GET, HEAD" }).end();
        return;
      }
      if (path === "/readyz") {
        const ready = readiness(sources.status());
        res
          .writeHead(ready.ready ? 200 : 503, { "content-type": "application/json" })
          .end(`${JSON.stringify(ready)}\n`);
      } else if (path === "/") {
        res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(STATUS_PAGE);
      } else if (path === "/api/status") {
        const body = pageData(sources.status(), sources.metrics(), Date.now());
        res
          .writeHead(200, { "content-type": "application/json", "cache-control": "no-store" })
          .end(`${JSON.stringify(body)}\n`);
      } else if (path === "/metrics") {
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

  /** True without a token; else the request's bearer token matches, compared in constant time. */
  #authorized(req: IncomingMessage): boolean {
    if (this.#token === undefined) return true;
    const match = /^Bearer +(\S+) *$/i.exec(req.headers.authorization ?? "");
    return match !== null && timingSafeEqual(digest(match[1]!), this.#token);
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
