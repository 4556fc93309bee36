import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import { jetstreamManager } from "@nats-io/jetstream";
import {
  type ConnectionOptions,
  connect,
  credsAuthenticator,
  type NatsConnection,
  nkeyAuthenticator,
} from "@nats-io/transport-node";
import { maskUrls, urlCredentials, withoutCredentials } from "../config/index.js";
import type { Bus, Envelope, Gauge, Logger, Metrics } from "../core/index.js";
import { errorMessage } from "../core/index.js";
import type { Outbox } from "../store/index.js";
import { backoffDelayMs } from "./backoff.js";
import { parseSentRows } from "./drain-cursor.js";
import { UpstreamError } from "./errors.js";
import {
  CoreForwarder,
  type Forwarder,
  type ForwarderMetrics,
  JetStreamForwarder,
  SENT_ROWS_HEADER,
} from "./forwarder.js";
import { checkStream } from "./stream-check.js";
import { RateCap } from "./token-bucket.js";

/** How often a missing stream is looked for again. */
const STREAM_RECHECK_MS = 5_000;
/** Connect attempt timeout. */
const CONNECT_TIMEOUT_MS = 5_000;
/** Unanswered client PINGs before a silent (blackholed) link is declared dead. */
const MAX_PINGS_OUT = 2;
/** While a backlog drains, report progress this often. */
const DRAIN_PROGRESS_INTERVAL_MS = 5_000;
/** Below this many pending rows there is no backlog worth reporting. */
const DRAIN_PROGRESS_MIN_ROWS = 1_000;
/** A session shorter than this does not reset the reconnect backoff. */
const HEALTHY_SESSION_MS = 10_000;
/** Rows read per step while reconciling a range. */
const RECONCILE_READ_ROWS = 1_000;
/** Repeat the "hub unreachable" warning at most this often. */
const UNREACHABLE_LOG_INTERVAL_MS = 60_000;

export interface UpstreamConfig {
  readonly servers: readonly string[];
  readonly mode: "jetstream" | "core";
  readonly stream: string | null;
  readonly domain: string | null;
  readonly prefix: string;
  readonly export: readonly string[];
  readonly import: readonly string[];
  readonly user?: string;
  readonly password?: string;
  readonly token?: string;
  readonly credentials?: string;
  readonly nkey_seed?: string;
  readonly tls?: { readonly ca?: string; readonly cert?: string; readonly key?: string };
  readonly max_in_flight: number;
  readonly ack_timeout: number;
  readonly reconnect_delay_max: number;
  readonly ping_interval: number;
  readonly drain: "fifo" | "fresh_first";
  readonly rate_limit: { readonly messages_per_second: number; readonly bytes_per_second: number };
}

/** Opens a hub connection; a seam so tests can fail dialing without a network. */
export type Dialer = (options: ConnectionOptions) => Promise<NatsConnection>;

export type UpstreamState =
  | "idle"
  | "connecting"
  | "waiting-for-stream"
  | "forwarding"
  | "stopping"
  | "stopped";

export interface UpstreamStatus {
  readonly state: UpstreamState;
  readonly server: string | undefined;
  readonly stream: string | undefined;
  readonly lastError: string | undefined;
}

export interface UpstreamOptions {
  readonly config: UpstreamConfig;
  readonly gatewayId: string;
  readonly outbox: Outbox;
  readonly bus: Bus;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly dial?: Dialer;
}

/**
 * The hub link: connects (and reconnects forever, with jittered backoff), checks the
 * stream, forwards the outbox and delivers imports onto the bus. Each connection is a
 * fresh session; anything in flight when one dies is resent on the next.
 */
export class Upstream {
  readonly #options: UpstreamOptions;
  readonly #dial: Dialer;
  readonly #stop = new AbortController();
  readonly #connected: Gauge;
  readonly #forwarderMetrics: ForwarderMetrics;
  readonly #imported;
  readonly #reconciled;
  readonly #connectOptions: ConnectionOptions;
  #state: UpstreamState = "idle";
  #server: string | undefined;
  #stream: string | undefined;
  #lastError: string | undefined;
  #loop: Promise<Error | undefined> | undefined;
  #nc: NatsConnection | undefined;
  #forwarder: Forwarder | undefined;
  /** Rows the last connection sent without hearing back; they go again on the next. */
  #unacknowledged: number[] = [];
  #forwardedTotal = 0;
  #windowWarned = false;
  readonly #rate: RateCap;

  constructor(options: UpstreamOptions) {
    this.#options = options;
    this.#dial = options.dial ?? connect;
    // Built now so a bad credentials file fails at start, not on every reconnect.
    this.#connectOptions = this.#buildConnectOptions();
    this.#rate = new RateCap({
      messagesPerSecond: options.config.rate_limit.messages_per_second,
      bytesPerSecond: options.config.rate_limit.bytes_per_second,
    });
    const { metrics } = options;
    this.#connected = metrics.gauge("leafgate_upstream_connected", "1 while connected to the hub");
    // Present from the start: an alert on 0 must fire for a gateway that never connected.
    this.#connected.set(0);
    const forwarded = metrics.counter(
      "leafgate_upstream_forwarded_total",
      "Messages the hub acknowledged (JetStream) or received (core)",
    );
    this.#forwarderMetrics = {
      forwarded: {
        inc: (labels, by = 1) => {
          this.#forwardedTotal += by;
          forwarded.inc(labels, by);
        },
      },
      tooLarge: metrics.counter(
        "leafgate_upstream_dropped_too_large_total",
        "Messages dropped because the hub can never take them: larger than its max_payload, or a subject longer than its control line",
      ),
      duplicates: metrics.counter(
        "leafgate_upstream_duplicates_total",
        "Rows whose first PubAck said the stream already held them (a resend of a stored row); later duplicate acks of a row are not counted",
      ),
      publishErrors: metrics.counter(
        "leafgate_upstream_publish_errors_total",
        "Publishes the hub refused, by status or error code",
      ),
      resends: metrics.counter(
        "leafgate_upstream_resent_total",
        "Messages sent again after an error, an ack timeout or a reconnect",
      ),
    };
    this.#reconciled = metrics.counter(
      "leafgate_upstream_reconciled_total",
      "Rows older than the duplicate window found already stored in the stream, not resent",
    );
    this.#imported = metrics.counter(
      "leafgate_upstream_imported_total",
      "Messages received from the hub and delivered onto the bus",
    );
  }

  start(): void {
    this.#loop ??= this.#supervise().then(
      () => undefined,
      (err: unknown) => {
        this.#options.log.error({ err }, "upstream supervisor failed");
        return err instanceof Error ? err : new Error(String(err));
      },
    );
  }

  status(): UpstreamStatus {
    return {
      state: this.#state,
      server: this.#server,
      stream: this.#stream,
      // An error may quote what it was given; /status is not scrubbed as log lines are.
      lastError: this.#lastError === undefined ? undefined : maskUrls(this.#lastError),
    };
  }

  /** Resolves when the supervisor has ended; never rejects. */
  closed(): Promise<Error | undefined> {
    return this.#loop ?? Promise.resolve(undefined);
  }

  /**
   * Stops forwarding, waits up to `deadlineMs` for outstanding acks, then closes the
   * hub connection. Unacknowledged rows stay in the outbox for the next start.
   */
  async stop(deadlineMs: number): Promise<void> {
    this.#state = "stopping";
    this.#stop.abort();
    const until = Date.now() + deadlineMs;
    await this.#forwarder?.settle(Math.max(0, until - Date.now() - 200));
    const nc = this.#nc;
    if (nc !== undefined && !nc.isClosed()) await nc.close().catch(() => {});
    // A dial in progress (a blackholed hub) cannot be interrupted; it is closed as soon
    // as it settles, but shutdown does not wait for it past the deadline.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.closed(),
      new Promise((resolve) => {
        timer = setTimeout(resolve, Math.max(0, until - Date.now()));
      }),
    ]);
    clearTimeout(timer);
    this.#state = "stopped";
  }

  #buildConnectOptions(): ConnectionOptions {
    const c = this.#options.config;
    const options: ConnectionOptions = {
      servers: c.servers.map(withoutCredentials),
      name: `leafgate ${this.#options.gatewayId}`,
      // Each connection is a session of ours: reconnects are decided here, so nothing
      // the client buffered during an outage is replayed out of order behind our back.
      reconnect: false,
      timeout: CONNECT_TIMEOUT_MS,
      pingInterval: c.ping_interval,
      maxPingOut: MAX_PINGS_OUT,
      noEcho: true,
    };
    if (c.user !== undefined) {
      options.user = c.user;
      options.pass = c.password;
    }
    if (c.token !== undefined) options.token = c.token;
    if (c.credentials !== undefined) {
      let creds: Uint8Array;
      try {
        creds = readFileSync(c.credentials);
      } catch (err) {
        throw new UpstreamError(
          "LG_ERR_UPSTREAM_CREDENTIALS",
          `cannot read upstream.credentials ${c.credentials}: ${errorMessage(err)}`,
          { cause: err },
        );
      }
      options.authenticator = credsAuthenticator(creds);
    }
    if (c.nkey_seed !== undefined) {
      options.authenticator = nkeyAuthenticator(new TextEncoder().encode(c.nkey_seed));
    }
    if (c.tls !== undefined) {
      options.tls = { caFile: c.tls.ca, certFile: c.tls.cert, keyFile: c.tls.key };
    }
    // Servers are dialed one per attempt (see #dialOptions), so that TLS verifies the
    // certificate against the address actually dialed, an IP address included.
    return options;
  }

  /**
   * Options for one dial: one server, in turn. nats.js ignores what a URL carries besides
   * host and port, so it is applied here: user info (`user:password@`, or a bare
   * `token@`) becomes that server's credentials, in place of upstream.user/password/token
   * (nats.js would otherwise send none, silently), and `tls://` requires TLS (nats.js
   * would otherwise talk in clear to a hub that does not offer it, or to anyone in the
   * middle who strips the offer). nats.js leaves the TLS server name empty for an IP
   * address, so Node would check the certificate against "localhost"; naming the host
   * explicitly makes an IP-addressed hub verifiable.
   */
  #dialOptions(n: number): ConnectionOptions {
    const servers = this.#options.config.servers;
    const server = servers[n % servers.length]!;
    const options: ConnectionOptions = {
      ...this.#connectOptions,
      servers: [withoutCredentials(server)],
    };
    const credentials = urlCredentials(server);
    if (credentials !== undefined) {
      delete options.user;
      delete options.pass;
      delete options.token;
      if ("token" in credentials) options.token = credentials.token;
      else {
        options.user = credentials.user;
        options.pass = credentials.password;
      }
    }
    if (server.toLowerCase().startsWith("tls://")) options.tls ??= {};
    if (options.tls) {
      const host = hostOf(server);
      if (host !== undefined && isIP(host) !== 0) {
        options.tls = { ...options.tls, host } as ConnectionOptions["tls"];
      }
    }
    return options;
  }

  async #supervise(): Promise<void> {
    const { log } = this.#options;
    const signal = this.#stop.signal;
    let attempt = 0;
    let lastUnreachableLogMs = 0;
    let lastLostLogMs = 0;
    // Start at a random seed, so a fleet does not crowd the first server.
    let dials = Math.floor(Math.random() * this.#options.config.servers.length);
    while (!signal.aborted) {
      this.#state = "connecting";
      let nc: NatsConnection;
      try {
        nc = await this.#dial(this.#dialOptions(dials++));
      } catch (err) {
        this.#lastError = errorMessage(err);
        const now = Date.now();
        if (now - lastUnreachableLogMs >= UNREACHABLE_LOG_INTERVAL_MS) {
          lastUnreachableLogMs = now;
          log.warn(
            { servers: this.#options.config.servers.map(maskUrls), err: this.#lastError },
            "hub unreachable; buffering locally and retrying",
          );
        }
        await delay(
          backoffDelayMs(attempt++, this.#options.config.reconnect_delay_max),
          undefined,
          {
            signal,
          },
        ).catch(() => {});
        continue;
      }
      if (signal.aborted) {
        await nc.close().catch(() => {});
        return;
      }
      lastUnreachableLogMs = 0;
      this.#nc = nc;
      this.#server = nc.getServer();
      this.#connected.set(1);
      const quiet = Date.now() - lastLostLogMs < UNREACHABLE_LOG_INTERVAL_MS;
      if (!quiet) {
        log.info({ server: this.#server, pending: this.#options.outbox.size }, "hub connected");
      }
      const sessionStartMs = Date.now();
      try {
        await this.#session(nc, signal);
      } catch (err) {
        this.#lastError = errorMessage(err);
        if (!quiet) log.warn({ err: this.#lastError }, "hub session failed");
      }
      if (signal.aborted) return;
      this.#connected.set(0);
      this.#forwarder = undefined;
      if (!nc.isClosed()) await nc.close().catch(() => {});
      // A hub that accepts and then drops us at once must not be redialed in a hot loop:
      // only a session that lasted counts as recovery and resets the backoff.
      if (Date.now() - sessionStartMs >= HEALTHY_SESSION_MS) attempt = 0;
      const now = Date.now();
      if (now - lastLostLogMs >= UNREACHABLE_LOG_INTERVAL_MS || !quiet) {
        lastLostLogMs = now;
        log.warn(
          { server: this.#server, err: this.#lastError },
          "hub connection lost; reconnecting",
        );
      }
      await delay(backoffDelayMs(attempt++, this.#options.config.reconnect_delay_max), undefined, {
        signal,
      }).catch(() => {});
      this.#nc = undefined;
    }
  }

  /** One connection's life: imports, stream check, forwarding. */
  async #session(nc: NatsConnection, stopSignal: AbortSignal): Promise<void> {
    const session = new AbortController();
    const end = (): void => session.abort();
    stopSignal.addEventListener("abort", end, { once: true });
    nc.closed().then((err) => {
      if (err) this.#lastError = errorMessage(err);
      end();
    });
    try {
      this.#subscribeImports(nc);
      const { config, gatewayId, outbox, log } = this.#options;
      if (config.mode === "jetstream") {
        const exported = config.export.map((p) => `${config.prefix}.${p}`);
        let lastProblem: string | undefined;
        while (!session.signal.aborted) {
          const check = await checkStream(nc, config.stream, exported, config.domain);
          // A check cut short by a stop or a lost link is no finding about the hub.
          if (session.signal.aborted) break;
          if (check.ok) {
            this.#stream = check.stream;
            log.info({ stream: check.stream, subjects: exported }, "hub stream found");
            this.#checkWindow(check.stream, check.duplicateWindowMs);
            await this.#reconcile(nc, check.stream, check.duplicateWindowMs);
            break;
          }
          this.#state = "waiting-for-stream";
          this.#lastError = check.problem;
          if (check.problem !== lastProblem) {
            lastProblem = check.problem;
            log.error({}, `cannot forward yet: ${check.problem}; buffering and checking again`);
          }
          await delay(STREAM_RECHECK_MS, undefined, { signal: session.signal }).catch(() => {});
        }
      }
      if (session.signal.aborted) return;
      this.#state = "forwarding";
      const options = {
        gatewayId,
        prefix: config.prefix,
        maxInFlight: config.max_in_flight,
        ackTimeoutMs: config.ack_timeout,
        drain: config.drain,
        rate: this.#rate,
        log,
        metrics: this.#forwarderMetrics,
        unacknowledged: this.#stillPending(this.#unacknowledged),
      };
      this.#forwarder =
        config.mode === "jetstream"
          ? new JetStreamForwarder(nc, outbox, options)
          : new CoreForwarder(nc, outbox, options);
      const progress = this.#reportDrainProgress();
      try {
        await this.#forwarder.run(session.signal);
      } finally {
        clearInterval(progress);
        this.#unacknowledged = this.#forwarder.unacknowledged();
      }
    } finally {
      stopSignal.removeEventListener("abort", end);
    }
  }

  /**
   * A row resent after an ack timeout is recognised by the stream only within its
   * duplicate window (reconciliation runs on a new connection, not on an ack timeout):
   * warn once if the window is not longer than the timeout.
   */
  #checkWindow(stream: string, duplicateWindowMs: number): void {
    const ackTimeoutMs = this.#options.config.ack_timeout;
    if (this.#windowWarned || duplicateWindowMs > ackTimeoutMs) return;
    this.#windowWarned = true;
    this.#options.log.warn(
      { stream, duplicateWindowMs, ackTimeoutMs },
      "the stream's duplicate_window is not longer than upstream.ack_timeout: a row resent after an ack timeout may be stored twice; lengthen the window or shorten ack_timeout",
    );
  }

  /** The ids not below the oldest row left: rows gone since (reconciled, evicted) are forgotten. */
  #stillPending(ids: readonly number[]): number[] {
    const oldest = this.#options.outbox.readAfter(0, 1)[0]?.id;
    return oldest === undefined ? [] : ids.filter((id) => id >= oldest);
  }

  /** Every few seconds while a backlog drains: remaining rows, rate and ETA. */
  #reportDrainProgress(): NodeJS.Timeout {
    const { outbox, log } = this.#options;
    let lastForwarded = this.#forwardedTotal;
    let lastMs = Date.now();
    return setInterval(() => {
      const now = Date.now();
      const rate = ((this.#forwardedTotal - lastForwarded) * 1000) / (now - lastMs);
      lastForwarded = this.#forwardedTotal;
      lastMs = now;
      const remaining = outbox.size;
      if (remaining < DRAIN_PROGRESS_MIN_ROWS) return;
      log.info(
        {
          remaining,
          ratePerSecond: Math.round(rate),
          etaSeconds: rate > 0 ? Math.ceil(remaining / rate) : null,
        },
        "draining backlog to the hub",
      );
    }, DRAIN_PROGRESS_INTERVAL_MS);
  }

  /**
   * Beyond the duplicate window the stream no longer recognises a resent row, so before
   * resending rows older than the window, ask the stream for the last message under our
   * prefix (only this gateway writes there) and drop the rows it proves stored: those sent
   * before it on its connection (a connection delivers in order), which is every row up
   * to its id, or, for a message sent out of id order (`fresh_first`), the rows its
   * Leafgate-Sent header names. Younger rows are resent as usual; the window covers them.
   */
  async #reconcile(nc: NatsConnection, stream: string, duplicateWindowMs: number): Promise<void> {
    const { outbox, config, gatewayId, log } = this.#options;
    const oldest = outbox.readAfter(0, 1)[0];
    const receivedBeforeMs = Date.now() - duplicateWindowMs;
    if (oldest === undefined || oldest.receivedAtMs >= receivedBeforeMs) return;
    let last: { seq: number; header?: { get(k: string): string } } | null;
    try {
      const jsm = await jetstreamManager(nc, {
        timeout: 5000,
        ...(config.domain ? { domain: config.domain } : {}),
      });
      last = await jsm.streams.getMessage(stream, { last_by_subj: `${config.prefix}.>` });
    } catch (err) {
      log.warn(
        { err: errorMessage(err) },
        "cannot read the stream's last message; resending old rows, which may duplicate",
      );
      return;
    }
    const id = last?.header?.get("Nats-Msg-Id") ?? "";
    const mine = `${gatewayId}-`;
    const rowId = id.startsWith(mine) ? Number(id.slice(mine.length)) : Number.NaN;
    if (!Number.isSafeInteger(rowId)) return;
    const sentText = last?.header?.get(SENT_ROWS_HEADER) ?? "";
    const sent = sentText === "" ? { upTo: rowId, from: 0, to: -1 } : parseSentRows(sentText);
    if (sent === undefined) {
      log.warn(
        { lastStoredRow: rowId, [SENT_ROWS_HEADER]: sentText },
        "cannot tell which rows the stream holds; resending old rows, which may duplicate",
      );
      return;
    }
    const dropped =
      outbox.deleteStored(sent.upTo, receivedBeforeMs) +
      this.#deleteStoredRange(sent.from, sent.to, receivedBeforeMs);
    this.#reconciled.inc(undefined, dropped);
    if (dropped > 0) {
      log.info(
        { rows: dropped, lastStoredRow: rowId, duplicateWindowMs },
        "rows older than the stream's duplicate window were already stored; not resent",
      );
    }
  }

  /** Deletes the rows with ids from..to received before `receivedBeforeMs`; returns how many. */
  #deleteStoredRange(from: number, to: number, receivedBeforeMs: number): number {
    const { outbox } = this.#options;
    const ids: number[] = [];
    let after = from - 1;
    while (after < to) {
      const rows = outbox.readAfter(after, RECONCILE_READ_ROWS);
      for (const row of rows) {
        if (row.id > to) break;
        if (row.receivedAtMs < receivedBeforeMs) ids.push(row.id);
      }
      if (rows.length < RECONCILE_READ_ROWS) break;
      after = rows.at(-1)!.id;
    }
    outbox.delete(ids);
    return ids.length;
  }

  #subscribeImports(nc: NatsConnection): void {
    const { config, bus, log } = this.#options;
    for (const pattern of config.import) {
      nc.subscribe(pattern, {
        callback: (err, msg) => {
          if (err) {
            log.warn({ pattern, err: errorMessage(err) }, "import subscription failed");
            return;
          }
          let headers: Map<string, string[]> | undefined;
          if (msg.headers !== undefined) {
            headers = new Map();
            for (const [k, v] of msg.headers) headers.set(k, v);
          }
          const message: Envelope = {
            subject: msg.subject,
            payload: msg.data,
            headers,
            receivedAtMs: Date.now(),
            origin: "upstream",
            // Commands reach QoS 1 subscribers at QoS 1.
            qos: 1,
          };
          this.#imported.inc();
          bus.publish(message).catch((e) => {
            log.warn({ subject: msg.subject, err: errorMessage(e) }, "import not delivered");
          });
        },
      });
    }
  }
}

/** The host of a `nats://` or `tls://` URL (brackets removed from IPv6), if it parses. */
function hostOf(server: string): string | undefined {
  try {
    return new URL(server).hostname.replace(/^\[|\]$/g, "");
  } catch {
    return undefined;
  }
}
