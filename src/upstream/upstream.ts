import type { ConnectionOptions, NatsConnection } from "@nats-io/transport-node";
import { maskUrls } from "../config/index.js";
import type { Bus, Clock, Logger, Metrics, Replies } from "../core/index.js";
import { DEFAULT_ACCOUNT, errorMessage, RateLimitedLog, systemClock } from "../core/index.js";
import { accountLabels, type ImportCursors, type Outbox } from "../store/index.js";
import { backoffDelayMs } from "./backoff.js";
import { connectOptions, dialedServer, dialOptions } from "./connect-options.js";
import { connect } from "./dial.js";
import { reportDrainProgress } from "./drain-progress.js";
import { type DurableImportConfig, runDurableImport } from "./durable-import.js";
import { CoreForwarder, type Forwarder, JetStreamForwarder } from "./forwarder.js";
import { type ImportContext, subscribeCoreImports } from "./imports.js";
import { reconcile } from "./reconcile.js";
import { sleep } from "./sleep.js";
import { checkStream } from "./stream-check.js";
import { RateCap } from "./token-bucket.js";
import type { UpstreamConfig } from "./upstream-config.js";
import { type UpstreamMetrics, upstreamMetrics } from "./upstream-metrics.js";

/** How often a missing stream is looked for again. */
const STREAM_RECHECK_MS = 5_000;
/** A session shorter than this does not reset the reconnect backoff. */
const HEALTHY_SESSION_MS = 10_000;
/**
 * "hub unreachable" at most once a minute while the hub stays away; and after a lost
 * connection the connect, failure and loss lines of a link that flaps within the minute
 * are held back likewise.
 */
const LINK_LOG_INTERVAL_MS = 60_000;
const LINK_LOG_BURST = 1;
/** Kept back from the stop deadline for closing the connection after the acks settle. */
const CLOSE_MARGIN_MS = 200;
/** Import warnings input can cause (failed deliveries, refused answers): per kind, a minute. */
const IMPORT_LOG_INTERVAL_MS = 60_000;
const IMPORT_LOG_BURST = 1;

/** Opens a hub connection; a seam so tests can fail dialing without a network. */
export type Dialer = (options: ConnectionOptions) => Promise<NatsConnection>;

/** What the link last saw, kept across states and shown in /status. */
interface LastSeen {
  /** The server of the latest connection. */
  readonly server: string | undefined;
  /** The stream the latest check found. */
  readonly stream: string | undefined;
  /** The latest failure: a dial, a lost connection, a missing stream. */
  readonly lastError: string | undefined;
}

/** The hub link's state, with what it knows in that state. */
export type LinkState =
  | (LastSeen & { readonly state: "idle" | "connecting" | "stopping" | "stopped" })
  | (LastSeen & {
      readonly state: "waiting-for-stream";
      readonly server: string;
      /** Why forwarding waits: the stream is missing or does not capture the prefix. */
      readonly lastError: string;
    })
  | (LastSeen & { readonly state: "forwarding"; readonly server: string });

/** What the link counts and knows whatever its state. */
export interface LinkHistory {
  /** The configured servers as dials reach them, credentials masked (`dialedServer`). */
  readonly servers: readonly string[];
  /** Connections made: the first one and every reconnect. */
  readonly connects: number;
  /**
   * When the link came up (`waiting-for-stream`, `forwarding`: this connection was made)
   * or went down (any other state: the link started, or its last connection was lost);
   * ms since the epoch.
   */
  readonly since: number;
}

/** The hub link in `/status`: its state and its history. */
export type UpstreamStatus = LinkState & LinkHistory;

export type UpstreamState = UpstreamStatus["state"];

export interface UpstreamOptions {
  readonly config: UpstreamConfig;
  readonly gatewayId: string;
  /**
   * The account this link is (its message ids, metrics label); `$G` when absent. `config`,
   * `outbox` and `bus` are that account's.
   */
  readonly account?: string;
  /** The account's queue. */
  readonly outbox: Outbox;
  /** The account's bus: imports are delivered onto it. */
  readonly bus: Bus;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** Routes local answers back to hub requests (the gateway's one `Replies`). */
  readonly replies: Replies;
  /** Durable imports' delivered sequences. */
  readonly importCursors: ImportCursors;
  readonly dial?: Dialer;
  /** Backoff waits, stream rechecks, log windows and the stop deadline run on it. */
  readonly clock?: Clock;
  /** Backoff jitter and the first server, in [0, 1); tests fix it. */
  readonly random?: () => number;
}

/**
 * The hub link: connects (and reconnects forever, with jittered backoff), checks the
 * stream, forwards the outbox and delivers imports onto the bus. Each connection is a
 * fresh session; anything in flight when one dies is resent on the next. docs/upstream.md.
 */
export class Upstream {
  readonly #options: UpstreamOptions;
  readonly #dial: Dialer;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #stop = new AbortController();
  readonly #metrics: UpstreamMetrics;
  readonly #connectOptions: ConnectionOptions;
  readonly #rate: RateCap;
  readonly #imports: ImportContext;
  #status: LinkState = {
    state: "idle",
    server: undefined,
    stream: undefined,
    lastError: undefined,
  };
  #loop: Promise<Error | undefined> | undefined;
  #stopping: Promise<void> | undefined;
  #nc: NatsConnection | undefined;
  #forwarder: Forwarder | undefined;
  /** Rows the last connection sent without hearing back; they go again on the next. */
  #unacknowledged: number[] = [];
  #forwardedTotal = 0;
  #windowWarned = false;
  readonly #servers: readonly string[];
  #connects = 0;
  #since: number;

  constructor(options: UpstreamOptions) {
    this.#options = options;
    this.#dial = options.dial ?? connect;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#servers = options.config.servers.map(dialedServer);
    this.#since = this.#clock.now();
    // Built now so a bad credentials file fails at start, not on every reconnect.
    this.#connectOptions = connectOptions(options.config, options.gatewayId);
    this.#rate = new RateCap(
      {
        messagesPerSecond: options.config.rate_limit.messages_per_second,
        bytesPerSecond: options.config.rate_limit.bytes_per_second,
      },
      () => this.#clock.now(),
    );
    this.#metrics = upstreamMetrics(
      options.metrics,
      (rows) => {
        this.#forwardedTotal += rows;
      },
      accountLabels(options.account ?? DEFAULT_ACCOUNT),
    );
    const { bus, log, replies } = options;
    this.#imports = {
      bus,
      log,
      warn: new RateLimitedLog(log, {
        burst: IMPORT_LOG_BURST,
        windowMs: IMPORT_LOG_INTERVAL_MS,
        clock: this.#clock,
      }),
      clock: this.#clock,
      metrics: this.#metrics.imports,
      replies,
      hub: () => this.#nc,
    };
  }

  /**
   * Starts dialing in the background. `signal` ends the link at once (no wait for acks);
   * `stop` ends it within a deadline.
   */
  start(signal: AbortSignal): void {
    if (this.#loop !== undefined) return;
    if (signal.aborted) void this.stop(0);
    else signal.addEventListener("abort", () => void this.stop(0), { once: true });
    this.#loop = this.#supervise().then(
      () => undefined,
      (err: unknown) => {
        this.#options.log.error({ err }, "upstream supervisor failed");
        return err instanceof Error ? err : new Error(String(err));
      },
    );
  }

  status(): UpstreamStatus {
    const s = this.#status;
    const history = { servers: this.#servers, connects: this.#connects, since: this.#since };
    // An error may quote what it was given; /status is not scrubbed as log lines are.
    return s.lastError === undefined
      ? { ...s, ...history }
      : { ...s, lastError: maskUrls(s.lastError), ...history };
  }

  /** Resolves when the supervisor has ended; never rejects. */
  closed(): Promise<Error | undefined> {
    return this.#loop ?? Promise.resolve(undefined);
  }

  /**
   * Stops forwarding, waits up to `deadlineMs` for outstanding acks, then closes the
   * hub connection. Unacknowledged rows stay in the outbox for the next start. A second
   * call gets the first one's promise.
   */
  stop(deadlineMs = 0): Promise<void> {
    this.#stopping ??= this.#stopWithin(deadlineMs);
    return this.#stopping;
  }

  async #stopWithin(deadlineMs: number): Promise<void> {
    this.#enter("stopping");
    this.#stop.abort();
    const until = this.#clock.now() + deadlineMs;
    await this.#forwarder?.settle(Math.max(0, until - this.#clock.now() - CLOSE_MARGIN_MS));
    const nc = this.#nc;
    if (nc !== undefined && !nc.isClosed()) await nc.close().catch(() => {});
    // A dial in progress (a blackholed hub) cannot be interrupted; it is closed as soon
    // as it settles, but shutdown does not wait for it past the deadline.
    const deadline = new AbortController();
    await Promise.race([
      this.closed(),
      sleep(this.#clock, Math.max(0, until - this.#clock.now()), deadline.signal),
    ]);
    deadline.abort();
    this.#enter("stopped");
  }

  /** Moves to a state that carries nothing beyond what the link last saw. */
  #enter(state: "connecting" | "stopping" | "stopped"): void {
    const { server, stream, lastError } = this.#status;
    this.#status = { state, server, stream, lastError };
  }

  #failed(err: unknown): void {
    this.#status = { ...this.#status, lastError: errorMessage(err) };
  }

  async #supervise(): Promise<void> {
    const { log, config } = this.#options;
    const signal = this.#stop.signal;
    const clock = this.#clock;
    const limited = (): RateLimitedLog =>
      new RateLimitedLog(log, { burst: LINK_LOG_BURST, windowMs: LINK_LOG_INTERVAL_MS, clock });
    // A new one after each connection: the first failure after it is said at once.
    let unreachable = limited();
    const lost = limited();
    let quietUntilMs = Number.NEGATIVE_INFINITY;
    let attempt = 0;
    const backoff = (): Promise<void> =>
      sleep(clock, backoffDelayMs(attempt++, config.reconnect_delay_max, this.#random), signal);
    // Start at a random server, so a fleet does not crowd the first one.
    let dials = Math.floor(this.#random() * config.servers.length);
    while (!signal.aborted) {
      this.#enter("connecting");
      let nc: NatsConnection;
      try {
        nc = await this.#dial(dialOptions(this.#connectOptions, config.servers, dials++));
      } catch (err) {
        this.#failed(err);
        unreachable.log(
          "unreachable",
          { servers: config.servers.map(maskUrls), err: this.#status.lastError },
          "hub unreachable; buffering locally and retrying",
        );
        await backoff();
        continue;
      }
      if (signal.aborted) {
        await nc.close().catch(() => {});
        return;
      }
      unreachable = limited();
      this.#nc = nc;
      const server = nc.getServer();
      this.#status = { ...this.#status, server };
      this.#connects++;
      this.#since = clock.now();
      this.#metrics.connects.inc();
      this.#metrics.connected.set(1);
      const quiet = clock.now() < quietUntilMs;
      if (!quiet) log.info({ server, pending: this.#options.outbox.size }, "hub connected");
      const sessionStartMs = clock.now();
      try {
        await this.#session(nc, server, signal);
      } catch (err) {
        this.#failed(err);
        if (!quiet) log.warn({ err: this.#status.lastError }, "hub session failed");
      }
      if (signal.aborted) return;
      // Down from now: through the backoff too, not "forwarding" until the next dial.
      this.#since = clock.now();
      this.#enter("connecting");
      this.#metrics.connected.set(0);
      this.#forwarder = undefined;
      if (!nc.isClosed()) await nc.close().catch(() => {});
      // A hub that accepts and then drops us at once must not be redialed in a hot loop:
      // only a session that lasted counts as recovery and resets the backoff.
      if (clock.now() - sessionStartMs >= HEALTHY_SESSION_MS) attempt = 0;
      const fields = { server, err: this.#status.lastError };
      if (lost.log("lost", fields, "hub connection lost; reconnecting")) {
        quietUntilMs = clock.now() + LINK_LOG_INTERVAL_MS;
      }
      await backoff();
      this.#nc = undefined;
    }
  }

  /**
   * One connection's life: imports (core subscriptions made anew on each connection,
   * durable consumers read for as long as it lasts), stream check, forwarding.
   */
  async #session(nc: NatsConnection, server: string, stopSignal: AbortSignal): Promise<void> {
    const session = new AbortController();
    const end = (): void => session.abort();
    stopSignal.addEventListener("abort", end, { once: true });
    nc.closed().then((err) => {
      if (err) this.#failed(err);
      end();
    });
    const { config, gatewayId, outbox, log } = this.#options;
    subscribeCoreImports(nc, config.import, this.#imports);
    const durables = config.import
      .filter((i): i is DurableImportConfig => i.durable !== null)
      .map((entry) =>
        runDurableImport(
          nc,
          entry,
          { ...this.#imports, cursors: this.#options.importCursors, domain: config.domain },
          session.signal,
        ),
      );
    try {
      if (config.mode === "jetstream") await this.#awaitStream(nc, server, session.signal);
      if (session.signal.aborted) return;
      const { stream, lastError } = this.#status;
      this.#status = { state: "forwarding", server, stream, lastError };
      const options = {
        gatewayId,
        ...(this.#options.account === undefined ? {} : { account: this.#options.account }),
        prefix: config.prefix,
        maxInFlight: config.max_in_flight,
        ackTimeoutMs: config.ack_timeout,
        drain: config.drain,
        rate: this.#rate,
        log,
        metrics: this.#metrics.forwarder,
        unacknowledged: this.#stillPending(this.#unacknowledged),
      };
      this.#forwarder =
        config.mode === "jetstream"
          ? new JetStreamForwarder(nc, outbox, options)
          : new CoreForwarder(nc, outbox, options);
      const stopProgress = reportDrainProgress({
        pending: () => outbox.size,
        forwarded: () => this.#forwardedTotal,
        log,
        clock: this.#clock,
      });
      try {
        await this.#forwarder.run(session.signal);
      } finally {
        stopProgress();
        this.#unacknowledged = this.#forwarder.unacknowledged();
      }
    } finally {
      // However forwarding ended, the durable imports end with the session.
      end();
      await Promise.all(durables);
      stopSignal.removeEventListener("abort", end);
    }
  }

  /**
   * Checks the stream until one captures every exported subject, then reconciles what
   * it already holds; returns early when the session ends.
   */
  async #awaitStream(nc: NatsConnection, server: string, signal: AbortSignal): Promise<void> {
    const { config, log } = this.#options;
    const exported = config.export.map((p) => `${config.prefix}.${p}`);
    let lastProblem: string | undefined;
    while (!signal.aborted) {
      const check = await checkStream(nc, config.stream, exported, config.domain);
      // A check cut short by a stop or a lost link is no finding about the hub.
      if (signal.aborted) return;
      if (check.ok) {
        this.#status = { ...this.#status, stream: check.stream };
        log.info({ stream: check.stream, subjects: exported }, "hub stream found");
        this.#checkWindow(check.stream, check.duplicateWindowMs);
        await reconcile(nc, check.stream, check.duplicateWindowMs, {
          ...this.#options,
          reconciled: this.#metrics.reconciled,
          clock: this.#clock,
        });
        return;
      }
      const { stream } = this.#status;
      this.#status = { state: "waiting-for-stream", server, stream, lastError: check.problem };
      if (check.problem !== lastProblem) {
        lastProblem = check.problem;
        log.error({}, `cannot forward yet: ${check.problem}; buffering and checking again`);
      }
      await sleep(this.#clock, STREAM_RECHECK_MS, signal);
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
}
