import { setMaxListeners } from "node:events";
import type { AddressInfo } from "node:net";
import type Database from "better-sqlite3";
import {
  accountsOf,
  authorizationOptions,
  brokerLimits,
  insecureChoices,
  type LeafgateConfig,
  maskUrls,
  mqttListeners,
  natsConnectionOptions,
  natsListenerLimits,
  outboxOptions,
  retainedLimits,
} from "./config/index.js";
import {
  AccountSpace,
  type AuthResult,
  Bus,
  type BusSubscriber,
  DEFAULT_ACCOUNT,
  type Envelope,
  errorMessage,
  Guard,
  type Logger,
  RateLimitedLog,
  Replies,
  type RepliesStats,
} from "./core/index.js";
import { Authenticator, Broker, MqttListener } from "./mqtt/index.js";
import { type NatsAuth, NatsListener, natsAuth } from "./nats/index.js";
import { HttpEndpoint, MetricsRegistry } from "./observe/index.js";
import {
  createDevice,
  type Device,
  type DeviceProfile,
  type DeviceStatus,
  resolveProfile,
} from "./serial/index.js";
import {
  capDatabaseFile,
  closeDatabase,
  ImportCursors,
  Outbox,
  openDatabase,
  RetainedStore,
  SessionStore,
  sessionStoreQuota,
} from "./store/index.js";
import { type Dialer, Upstream, type UpstreamStatus } from "./upstream/index.js";

/** Shutdown budget; the CLI promises exit within 5 s of SIGINT/SIGTERM. */
export const STOP_DEADLINE_MS = 4_000;
/**
 * Outstanding hub acks are awaited this long at most ("briefly"): a hub that has not
 * answered by then is not answering (a silent link), and its rows are resent after the
 * next start, where the stream drops the repeats. Leaves the exit well inside 5 s.
 */
const HUB_ACK_WAIT_MS = 2_000;
/** What INFO says when no version is given (tests): a semver, as NATS clients expect. */
const DEFAULT_NATS_VERSION = "0.0.0";
/** Reply subjects: answers are routed to their requester, never exported. */
const INBOX = "_INBOX.";
/** Parts besides the MQTT listeners given the gateway's lifetime signal: outbox, upstream, HTTP. */
const LIFETIME_PARTS = 3;

export interface GatewayOptions {
  readonly config: LeafgateConfig;
  /** The version INFO tells NATS clients (semver; the CLI passes the package's). */
  readonly version?: string;
  readonly log: Logger;
  readonly metrics?: MetricsRegistry;
  /** Hub dialer seam (tests). */
  readonly dial?: Dialer;
  /** The file the config came from, checked at start for secrets others can read. */
  readonly configFile?: string;
}

export interface GatewayAddresses {
  readonly mqtt: readonly AddressInfo[];
  readonly nats: readonly AddressInfo[];
  readonly http: AddressInfo | undefined;
}

type GatewayState = "new" | "starting" | "running" | "stopping" | "stopped";

/** What `/status` shows: each part's own typed status, in one snapshot. */
export interface GatewayStatus {
  readonly healthy: boolean;
  readonly state: GatewayState;
  readonly gateway: string;
  readonly upstream: UpstreamStatus | undefined;
  readonly outbox: {
    readonly pending: number;
    readonly lastId: number;
    readonly classes: ReturnType<Outbox["classes"]>;
  };
  readonly mqtt: { readonly connections: number; readonly unsentBytes: number };
  readonly nats: { readonly connections: number; readonly unsentBytes: number };
  readonly requests: RepliesStats;
  readonly serial: readonly DeviceStatus[];
  readonly memory: { readonly rss: number; readonly heapUsed: number; readonly external: number };
}

/**
 * The composition root: builds every part from the config, starts them in order
 * (store → bus → upstream → MQTT → HTTP) and stops them in reverse.
 */
export class Gateway {
  readonly config: LeafgateConfig;
  readonly metrics: MetricsRegistry;
  readonly #log: Logger;
  readonly #dial: Dialer | undefined;
  readonly #configFile: string | undefined;
  #state: GatewayState = "new";
  /** Given to the parts that start with a signal; aborted once `stop` has run. */
  readonly #lifetime = new AbortController();
  #db: Database.Database | undefined;
  #outbox: Outbox | undefined;
  #upstream: Upstream | undefined;
  #replies: Replies | undefined;
  #broker: Broker | undefined;
  #listeners: MqttListener[] = [];
  #natsListeners: NatsListener[] = [];
  #natsAddresses: AddressInfo[] = [];
  readonly #version: string;
  #devices: Device[] = [];
  /** Aborted when the gateway stops its serial devices, each of which listens to it. */
  readonly #devicesStop = new AbortController();
  #http: HttpEndpoint | undefined;
  #mqttAddresses: AddressInfo[] = [];
  #httpAddress: AddressInfo | undefined;

  constructor(options: GatewayOptions) {
    this.config = options.config;
    this.#log = options.log;
    this.metrics = options.metrics ?? new MetricsRegistry();
    this.#dial = options.dial;
    this.#configFile = options.configFile;
    this.#version = options.version ?? DEFAULT_NATS_VERSION;
  }

  async start(): Promise<void> {
    if (this.#state !== "new") throw new Error(`gateway cannot start from state ${this.#state}`);
    this.#state = "starting";
    try {
      await this.#start();
      this.#state = "running";
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  async #start(): Promise<void> {
    const { config, metrics } = this;
    const log = this.#log;
    // The outbox's upkeep, upstream, HTTP, and each MQTT listener listen to the lifetime.
    setMaxListeners(
      LIFETIME_PARTS + mqttListeners(config).length + config.nats.listeners.length,
      this.#lifetime.signal,
    );

    // 0. Every insecure choice is said once, with what to do, before anything opens.
    const securityLog = log.child({ part: "security" });
    const uid = process.geteuid?.();
    const context = {
      ...(this.#configFile !== undefined ? { configFile: this.#configFile } : {}),
      ...(uid !== undefined ? { uid } : {}),
    };
    for (const w of insecureChoices(config, context)) {
      securityLog.warn({ warning: w.code, ...w.details }, w.message);
    }

    // Device profiles, checked as they load (framer, decoder, Modbus map): a mistake in
    // one fails the start before anything opens.
    const profiles: DeviceProfile[] = config.serial.ports.map((port) =>
      resolveProfile(port.profile, config.serial.profiles_dir),
    );

    // 1. Store: the outbox must exist before anything can accept a message.
    const storeLog = log.child({ part: "store" });
    const db = openDatabase(config.gateway.data_dir, config.buffer.durability, { log: storeLog });
    this.#db = db;
    /** What `buffer.max_file_size` leaves the database file beside its WAL; null: no cap. */
    let databaseBytes: number | null = null;
    if (config.buffer.max_file_size !== null) {
      const cap = capDatabaseFile(db, config.buffer.max_file_size);
      databaseBytes = cap.databasePages * cap.pageSize;
      storeLog.info(
        { maxFileBytes: cap.maxFileBytes, databaseBytes, walBytes: cap.walBytes },
        "buffer.max_file_size: the database and its WAL are held within it",
      );
      if (cap.oversizedPages > 0) {
        storeLog.warn(
          { databaseBytes: (cap.databasePages + cap.oversizedPages) * cap.pageSize },
          `the database is already larger than buffer.max_file_size leaves it (${databaseBytes} bytes); it keeps its size and reuses the room the hub frees, so with its WAL it may exceed the cap: raise buffer.max_file_size`,
        );
      }
    }
    const outbox = new Outbox(db, {
      ...outboxOptions(config),
      log: storeLog,
      metrics,
    });
    this.#outbox = outbox;
    outbox.startMaintenance(undefined, this.#lifetime.signal);
    log.info(
      {
        dataDir: config.gateway.data_dir,
        pending: outbox.size,
        durability: config.buffer.durability,
      },
      "data dir open",
    );

    // 2. Bus, with the outbox subscribed to every exported pattern. One subscriber
    // object for all patterns: the bus delivers a message to it once however many match.
    const deliveryErrors = metrics.counter(
      "leafgate_bus_delivery_errors_total",
      "Local deliveries that failed inside a subscriber",
    );
    const busLog = log.child({ part: "bus" });
    const bridgeLog = new RateLimitedLog(busLog, { burst: 1, windowMs: 10_000 });
    // Every account's bus; `bus` is the global account's, which the outbox, the hub
    // connection, serial and NATS are on (per-account wiring: issue 13's other parts).
    const space = new AccountSpace({
      accounts: accountsOf(config).map(({ name, exports, imports }) => ({
        name,
        exports,
        imports: imports.map(({ stream, account, prefix }) => ({
          stream,
          account,
          ...(prefix !== null ? { prefix } : {}),
        })),
      })),
      makeBus: () =>
        new Bus({
          onDeliveryError: (err, subject) => {
            deliveryErrors.inc();
            busLog.error({ err, subject }, "a subscriber failed to take a message");
          },
        }),
      // As often as messages cross: at most one line per pair of accounts every 10 s.
      onBridgeError: (err, { from, to, subject }) =>
        bridgeLog.log(
          `${from} ${to}`,
          { err: errorMessage(err), from, to, subject },
          "a message imported from another account was not stored in the importer's outbox",
        ),
    });
    const bus = space.account(DEFAULT_ACCOUNT).bus;

    const outboxSink: BusSubscriber = {
      // Imports from the hub are never sent back to it, and answers to requests are
      // routed to their requester, not stored.
      deliver: (m: Envelope) =>
        m.origin === "upstream" || m.subject.startsWith(INBOX) ? undefined : outbox.append(m),
      passive: true,
    };
    // TODO(issue 13): one outbox sink per account, on its bus, into its own queue (the
    // outbox/upstream part builds them); until then only $G's messages go to the hub.
    for (const pattern of config.upstream.export) bus.subscribe(pattern, outboxSink);
    const repliesRefused = metrics.counter(
      "leafgate_requests_unrouted_total",
      "Requests whose answer could not be routed: requests.max_pending were already awaiting one",
    );
    const replies = new Replies({
      bus,
      maxRoutes: config.requests.max_pending,
      ttlMs: config.requests.timeout,
      onFull: () => repliesRefused.inc(),
    });
    this.#replies = replies;

    // 3. Upstream: starts dialing in the background; the hub may be down for hours.
    const upstream = new Upstream({
      config: config.upstream,
      gatewayId: config.gateway.id,
      outbox,
      bus,
      log: log.child({ part: "upstream" }),
      metrics,
      // Hub requests are answered through it; durable imports record deliveries in it.
      replies,
      importCursors: new ImportCursors(db),
      ...(this.#dial ? { dial: this.#dial } : {}),
    });
    this.#upstream = upstream;
    log.info(
      {
        servers: config.upstream.servers.map(maskUrls),
        mode: config.upstream.mode,
        stream: config.upstream.stream ?? "(any that captures the prefix)",
        prefix: config.upstream.prefix,
        export: config.upstream.export,
        import: config.upstream.import,
      },
      "hub",
    );
    upstream.start(this.#lifetime.signal);

    // 4. MQTT listeners, then NATS: one authenticator, one permission model.
    const authenticator = new Authenticator(authorizationOptions(config));
    const mqttLog = log.child({ part: "mqtt" });
    const sessionStoreErrors = metrics.counter(
      "leafgate_mqtt_session_store_errors_total",
      "Writes of persistent MQTT sessions that failed (disk full, I/O), by what",
    );
    const broker = new Broker({
      bus,
      accounts: space,
      log: mqttLog,
      metrics,
      options: brokerLimits(config),
      retained: new RetainedStore(db, {
        ...retainedLimits(config),
        metrics,
        log: mqttLog,
      }),
      auth: authenticator,
      sessionStore: new SessionStore(db, {
        guard: new Guard(mqttLog, metrics),
        maxBytes: sessionStoreQuota(config.mqtt.session_store_max_bytes, databaseBytes),
        metrics,
        onError: (err, what) => {
          sessionStoreErrors.inc({ what });
          mqttLog.warn(
            { err: errorMessage(err), what },
            "persistent session not written; it carries on in memory",
          );
        },
      }),
    });
    this.#broker = broker;
    broker.restoreSessions();
    const tlsHandshakeFailures = metrics.counter(
      "leafgate_mqtt_tls_handshake_failures_total",
      "TLS handshakes on MQTT listeners that failed: no or an untrusted client certificate, or bad TLS",
    );
    for (const { host, port, transport } of mqttListeners(config)) {
      const listener = new MqttListener(broker, mqttLog, { ...transport, tlsHandshakeFailures });
      this.#listeners.push(listener);
      this.#mqttAddresses.push(await listener.listen(host, port, this.#lifetime.signal));
    }

    const natsLog = log.child({ part: "nats" });
    const natsCounters = {
      slowConsumers: metrics.counter(
        "leafgate_nats_slow_consumers_total",
        "NATS clients cut for not reading what they were sent (nats.max_outbound_bytes)",
      ),
      refused: metrics.counter(
        "leafgate_nats_connections_refused_total",
        "NATS sockets refused at accept, by reason (max-connections, max-pending, per-address)",
      ),
      tlsHandshakeFailures: metrics.counter(
        "leafgate_nats_tls_handshake_failures_total",
        "TLS handshakes on NATS listeners that failed",
      ),
    };
    const natsAuthFailures = metrics.counter(
      "leafgate_nats_auth_failures_total",
      "NATS CONNECTs refused, by refusal (bad-credentials, anonymous-disabled, locked-out)",
    );
    const natsDenied = metrics.counter(
      "leafgate_nats_permission_denied_total",
      "NATS PUBs and SUBs refused by the client's permissions, by kind",
    );
    const natsGuard = new Guard(natsLog, metrics);
    for (const { host, port, tls } of config.nats.listeners) {
      const listener = new NatsListener(bus, natsGuard, natsLog, {
        connection: {
          ...natsConnectionOptions(config),
          serverId: `LEAFGATE-${config.gateway.id}`,
          serverName: config.gateway.id,
          version: this.#version,
          auth: globalAccountOnly(natsAuth(authenticator, config.nats.allow_anonymous)),
          replies: this.#replies,
          onAuthFailure: (refusal) => natsAuthFailures.inc({ refusal }),
          onPermissionDenied: (kind) => natsDenied.inc({ kind }),
        },
        limits: natsListenerLimits(config),
        ...(tls === undefined ? {} : { tls }),
        counters: natsCounters,
      });
      this.#natsListeners.push(listener);
      this.#natsAddresses.push(await listener.listen(host, port, this.#lifetime.signal));
    }

    // 5. Serial devices (streaming or polled, as the profile says): each reopens by itself
    //    when unplugged.
    setMaxListeners(Math.max(1, config.serial.ports.length), this.#devicesStop.signal);
    config.serial.ports.forEach((port, i) => {
      const device = createDevice(port, profiles[i]!, {
        bus,
        log: log.child({ part: "serial", device: port.device }),
        metrics,
        ...(this.#replies !== undefined ? { replies: this.#replies } : {}),
      });
      this.#devices.push(device);
      device.start(this.#devicesStop.signal);
      log.info(
        { path: port.path, device: port.device, profile: profiles[i]!.name },
        "serial device",
      );
    });

    // 6. HTTP monitoring.
    if (config.http.enabled) {
      const http = new HttpEndpoint(
        { metrics: () => this.#renderMetrics(), status: () => this.status() },
        log.child({ part: "http" }),
      );
      this.#http = http;
      this.#httpAddress = await http.listen(
        config.http.host,
        config.http.port,
        this.#lifetime.signal,
      );
    }
  }

  addresses(): GatewayAddresses {
    return { mqtt: this.#mqttAddresses, nats: this.#natsAddresses, http: this.#httpAddress };
  }

  status(): GatewayStatus {
    return {
      healthy: this.#state === "running",
      state: this.#state,
      gateway: this.config.gateway.id,
      upstream: this.#upstream?.status(),
      outbox: {
        pending: this.#outbox?.size ?? 0,
        lastId: this.#outbox?.lastId ?? 0,
        classes: this.#outbox?.classes() ?? [],
      },
      mqtt: {
        connections: this.#broker?.connectionCount ?? 0,
        unsentBytes: this.#broker?.unsentBytes ?? 0,
      },
      nats: {
        connections: sum(this.#natsListeners, (l) => l.connectionCount),
        unsentBytes: sum(this.#natsListeners, (l) => l.unsentBytes),
      },
      requests: this.#replies?.stats ?? {
        routes: 0,
        minted: 0,
        answered: 0,
        expired: 0,
        refused: 0,
      },
      serial: this.#devices.map((d) => d.status()),
      memory: memoryMiB(),
    };
  }

  #renderMetrics(): string {
    this.metrics
      .gauge("leafgate_outbox_pending", "Messages in the outbox waiting for the hub")
      .set(this.#outbox?.size ?? 0);
    const portOpen = this.metrics.gauge(
      "leafgate_serial_port_open",
      "1 while a serial port is open, 0 while it waits for its device",
    );
    for (const d of this.#devices) {
      const s = d.status();
      portOpen.set(s.state === "open" ? 1 : 0, { port: s.path, device: s.device });
    }
    return this.metrics.render();
  }

  /**
   * Shutdown lifecycle, within STOP_DEADLINE_MS:
   * 1. stop accepting (MQTT listeners, HTTP);
   * 2. drain adapters: MQTT connections stop reading, and their pending commits are
   *    flushed now rather than after `commit_interval`, so every committed QoS 1/2 message
   *    still gets its PUBACK/PUBREC (before DISCONNECT 0x8B); then the sockets close;
   * 3. flush what is still pending (serial devices' last frames, persistent sessions);
   * 4. drain the hub connection: wait briefly (HUB_ACK_WAIT_MS) for outstanding acks,
   *    then close it;
   * 5. WAL checkpoint and close the database.
   * Unforwarded rows stay in the database for the next start.
   */
  async stop(deadlineMs = STOP_DEADLINE_MS): Promise<void> {
    if (this.#state === "stopping" || this.#state === "stopped") return;
    this.#state = "stopping";
    const until = Date.now() + deadlineMs;
    const remaining = (): number => Math.max(0, until - Date.now());

    const stopAccepting = [
      ...this.#listeners.map((l) => l.stopAccepting()),
      ...this.#natsListeners.map((l) => l.stopAccepting()),
    ];
    // NATS publishes are at most once: nothing waits for a commit; queued bytes flush.
    for (const l of this.#natsListeners) l.closeAll();
    // closeAll marks every connection closing at once (none reads on), so this flush
    // takes every commit a PUBLISH can still be waiting on.
    const closing = this.#broker?.closeAll("shutdown");
    this.#flushCommits();
    await this.#http?.close();
    if (closing !== undefined) await withDeadline(closing, remaining() / 2);
    for (const l of this.#listeners) l.destroyAll();
    for (const l of this.#natsListeners) l.destroyAll();
    await Promise.all(stopAccepting);
    this.#devicesStop.abort();
    await Promise.all(this.#devices.map((d) => d.closed()));

    this.#flushCommits();
    this.#replies?.close();
    await this.#upstream?.stop(Math.min(remaining(), HUB_ACK_WAIT_MS));
    this.#outbox?.close();
    // Messages that reached offline sessions while the hub link drained.
    this.#broker?.sessionStore?.flush();
    if (this.#db !== undefined) {
      try {
        closeDatabase(this.#db);
      } catch (err) {
        this.#log.error({ err }, "closing the database failed");
      }
    }
    this.#lifetime.abort();
    // Every part has ended by now; the signals were the backstop for one that had not.
    await withDeadline(this.#allClosed(), remaining());
    this.#state = "stopped";
    this.#log.info({ pending: this.#outbox?.size ?? 0 }, "stopped");
  }

  /** Resolves once every part that was started has ended; never rejects. */
  async #allClosed(): Promise<void> {
    await Promise.all([
      ...this.#listeners.map((l) => l.closed()),
      ...this.#natsListeners.map((l) => l.closed()),
      this.#http?.closed(),
      ...this.#devices.map((d) => d.closed()),
      this.#upstream?.closed(),
      this.#outbox?.closed(),
    ]);
  }

  /**
   * Commits what waits for the next group commit (outbox, persistent sessions). Neither
   * throws: a failed commit rejects its publishers' promises, so they get no ack.
   */
  #flushCommits(): void {
    this.#outbox?.flush();
    this.#broker?.sessionStore?.flush();
  }
}

function sum<T>(items: readonly T[], of: (item: T) => number): number {
  let total = 0;
  for (const item of items) total += of(item);
  return total;
}

function memoryMiB(): { rss: number; heapUsed: number; external: number } {
  const m = process.memoryUsage();
  const mib = (n: number): number => Math.round((n / 1024 / 1024) * 10) / 10;
  return { rss: mib(m.rss), heapUsed: mib(m.heapUsed), external: mib(m.external) };
}

function withDeadline(p: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * NATS clients are on the global account's bus until NATS serves every account (issue
 * 13, the NATS part): a user of another account is refused rather than let into `$G`.
 */
function globalAccountOnly(auth: NatsAuth): NatsAuth {
  const refuse = (result: AuthResult): AuthResult =>
    result.ok && result.account !== DEFAULT_ACCOUNT
      ? {
          ok: false,
          returnCode: 5,
          reason: `user of account "${result.account}": NATS serves the global account only`,
          refusal: "anonymous-disabled",
        }
      : result;
  return {
    required: auth.required,
    check: (client, remote) => {
      const result = auth.check(client, remote);
      return result instanceof Promise ? result.then(refuse) : refuse(result);
    },
  };
}
