import { setMaxListeners } from "node:events";
import type { AddressInfo } from "node:net";
import type Database from "better-sqlite3";
import {
  accountsOf,
  authorizationOptions,
  brokerLimits,
  bufferLimits,
  GLOBAL_ACCOUNT,
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
import { NatsListener, natsAuth } from "./nats/index.js";
import {
  exportsSubject,
  HttpEndpoint,
  MetricsRegistry,
  type SysFigures,
  SysStats,
} from "./observe/index.js";
import {
  createDevice,
  type Device,
  type DeviceProfile,
  type DeviceStatus,
  resolveProfile,
} from "./serial/index.js";
import {
  accountLabels,
  type ClassStatus,
  capDatabaseFile,
  closeDatabase,
  type DiskStatus,
  ImportCursors,
  Outboxes,
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

/** `/status`'s disk before the store opens. */
const NO_DISK_GUARD: DiskStatus = {
  state: "off",
  reserveBytes: 0,
  resumeAtFreeBytes: 0,
  freeBytes: null,
};

type GatewayState = "new" | "starting" | "running" | "stopping" | "stopped";

/** One priority class of an outbox queue in `/status`. */
export interface OutboxClassStatus extends ClassStatus {
  /** `time` less `oldestAt`: how long the oldest message has waited (ms); null: none. */
  readonly oldestAgeMs: number | null;
}

/** One account's outbox queue in `/status`. */
export interface OutboxStatus {
  readonly pending: number;
  readonly lastId: number;
  readonly classes: OutboxClassStatus[];
}

/** One account in `/status`. */
export interface AccountStatus {
  readonly outbox: OutboxStatus;
  readonly upstream: UpstreamStatus;
  /** Clients logged in to the account. */
  readonly mqtt: { readonly connections: number };
  readonly nats: { readonly connections: number };
}

/** What `/status` shows: each part's own typed status, in one snapshot. */
export interface GatewayStatus {
  /** The gateway's clock when the snapshot was taken (ms since the epoch): ages are to it. */
  readonly time: number;
  readonly healthy: boolean;
  readonly state: GatewayState;
  readonly gateway: string;
  /** The global account's (`$G`) hub link, as before accounts; every account's: `accounts`. */
  readonly upstream: UpstreamStatus | undefined;
  /** The global account's outbox queue, as before accounts; every account's: `accounts`. */
  readonly outbox: OutboxStatus;
  /** Per account, `$G` first: its outbox queue and hub link. */
  readonly accounts: Readonly<Record<string, AccountStatus>>;
  readonly mqtt: { readonly connections: number; readonly unsentBytes: number };
  readonly nats: { readonly connections: number; readonly unsentBytes: number };
  readonly requests: RepliesStats;
  readonly serial: readonly DeviceStatus[];
  /** The disk guard every outbox queue shares; `off` before the store opens. */
  readonly disk: DiskStatus;
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
  #outboxes: Outboxes | undefined;
  /** Per account, `$G` first: its hub link. */
  readonly #upstreams = new Map<string, Upstream>();
  /** Every account's bus and routes; closed (bridges, routes) at stop. */
  #space: AccountSpace | undefined;
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
  #sys: SysStats | undefined;
  readonly #startedAtMs = Date.now();

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
    // The outbox's upkeep, upstream, HTTP, and each MQTT listener listen to the lifetime;
    // each account beyond $G adds its queue's upkeep and its hub link.
    setMaxListeners(
      LIFETIME_PARTS +
        2 * Object.keys(config.accounts).length +
        mqttListeners(config).length +
        config.nats.listeners.length,
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
    // One queue per account, each with its own limits (docs/outbox.md, "Accounts").
    const accounts = accountsOf(config);
    const outboxes = new Outboxes(db, {
      ...outboxOptions(config),
      log: storeLog,
      metrics,
      accounts: accounts.map((a) => ({ name: a.name, limits: bufferLimits(a.buffer) })),
    });
    this.#outboxes = outboxes;
    outboxes.startMaintenance(undefined, this.#lifetime.signal);
    log.info(
      {
        dataDir: config.gateway.data_dir,
        pending: outboxes.size,
        durability: config.buffer.durability,
      },
      "data dir open",
    );

    // 2. Bus (the global account's) and the Replies that route answers on it.
    const deliveryErrors = metrics.counter(
      "leafgate_bus_delivery_errors_total",
      "Local deliveries that failed inside a subscriber",
    );
    const busLog = log.child({ part: "bus" });
    const onDeliveryError = (err: unknown, subject: string): void => {
      deliveryErrors.inc();
      busLog.error({ err, subject }, "a subscriber failed to take a message");
    };
    const bridgeLog = new RateLimitedLog(busLog, { burst: 1, windowMs: 10_000 });
    const repliesRefused = metrics.counter(
      "leafgate_requests_unrouted_total",
      "Requests whose answer could not be routed: requests.max_pending were already awaiting one",
    );
    const newReplies = (on: Bus): Replies =>
      new Replies({
        bus: on,
        maxRoutes: config.requests.max_pending,
        ttlMs: config.requests.timeout,
        onFull: () => repliesRefused.inc(),
      });
    // Every account's own bus and request routes; declared stream imports cross between
    // them (core/accounts.ts). `bus` is the global account's.
    const space = new AccountSpace({
      accounts: accounts.map(({ name, exports, imports }) => ({
        name,
        exports,
        imports: imports.map(({ stream, account, prefix }) => ({
          stream,
          account,
          ...(prefix !== null ? { prefix } : {}),
        })),
      })),
      makeBus: () => new Bus({ onDeliveryError }),
      makeReplies: (on) => newReplies(on),
      // As often as messages cross: at most one line per pair of accounts every 10 s.
      onBridgeError: (err, { from, to, subject }) =>
        bridgeLog.log(
          `${from} ${to}`,
          { err: errorMessage(err), from, to, subject },
          "a message imported from another account was not stored in the importer's outbox",
        ),
    });
    this.#space = space;
    const bus = space.account(DEFAULT_ACCOUNT).bus;
    this.#replies = space.account(DEFAULT_ACCOUNT).replies;

    // 3. Per account: the outbox sink on its bus for every pattern it exports (one
    // subscriber object for all: the bus delivers a message to it once however many
    // match), and its hub link, which starts dialing in the background (the hub may be
    // down for hours).
    const importCursors = new ImportCursors(db);
    for (const account of accounts) {
      const own = space.account(account.name);
      const queue = outboxes.of(account.name);
      const outboxSink: BusSubscriber = {
        // Imports from the hub are never sent back to it, and answers to requests are
        // routed to their requester, not stored; `$SYS` subjects (the stats) only under
        // an export naming them (observe/sys-stats.ts).
        deliver: (m: Envelope) =>
          m.origin === "upstream" ||
          m.subject.startsWith(INBOX) ||
          !exportsSubject(account.upstream.export, m.subject)
            ? undefined
            : queue.append(m),
        passive: true,
      };
      for (const pattern of account.upstream.export) own.bus.subscribe(pattern, outboxSink);
      const global = account.name === GLOBAL_ACCOUNT;
      const upstreamLog = log.child(
        global ? { part: "upstream" } : { part: "upstream", account: account.name },
      );
      const upstream = new Upstream({
        config: account.upstream,
        gatewayId: config.gateway.id,
        ...(global ? {} : { account: account.name }),
        outbox: queue,
        bus: own.bus,
        log: upstreamLog,
        metrics,
        // Hub requests are answered through it; durable imports record deliveries in it.
        replies: own.replies!,
        importCursors,
        ...(this.#dial ? { dial: this.#dial } : {}),
      });
      this.#upstreams.set(account.name, upstream);
      upstreamLog.info(
        {
          servers: account.upstream.servers.map(maskUrls),
          mode: account.upstream.mode,
          stream: account.upstream.stream ?? "(any that captures the prefix)",
          prefix: account.upstream.prefix,
          export: account.upstream.export,
          import: account.upstream.import,
        },
        "hub",
      );
      upstream.start(this.#lifetime.signal);
    }

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
          auth: natsAuth(authenticator, config.nats.allow_anonymous),
          accounts: space,
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
      // A port publishes and takes commands in its account.
      const own = space.account(port.account);
      const device = createDevice(port, profiles[i]!, {
        bus: own.bus,
        log: log.child({ part: "serial", device: port.device }),
        metrics,
        ...(own.replies !== undefined ? { replies: own.replies } : {}),
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
        { token: config.http.token, metrics },
      );
      this.#http = http;
      this.#httpAddress = await http.listen(
        config.http.host,
        config.http.port,
        this.#lifetime.signal,
      );
    }

    // 7. `$SYS.leafgate.<gateway>.*` on every account's bus (docs/sys.md).
    if (config.sys.interval > 0) {
      const sysLog = log.child({ part: "sys" });
      this.#sys = new SysStats({
        gateway: config.gateway.id,
        intervalMs: config.sys.interval,
        accounts: () => this.#sysAccounts(space),
        onError: (err) => sysLog.debug({ err: errorMessage(err) }, "a $SYS message was not stored"),
      });
      this.#sys.start();
    }
  }

  *#sysAccounts(space: AccountSpace): Iterable<{ bus: Bus; figures: SysFigures }> {
    const uptime = Math.floor((Date.now() - this.#startedAtMs) / 1000);
    for (const [name, a] of Object.entries(this.#accountsStatus())) {
      const labels = accountLabels(name);
      const m = this.metrics;
      yield {
        bus: space.account(name).bus,
        figures: {
          uptime,
          clients: { mqtt: a.mqtt.connections, nats: a.nats.connections },
          outbox: {
            pending: a.outbox.pending,
            bytes: sum(a.outbox.classes, (c) => c.bytes),
          },
          uplink: a.upstream.state,
          messages: {
            stored: m.sum("leafgate_outbox_appended_total", "account", labels?.account),
            forwarded: m.sum("leafgate_upstream_forwarded_total", "account", labels?.account),
            dropped: m.sum("leafgate_buffer_dropped_total", "account", labels?.account),
          },
        },
      };
    }
  }

  addresses(): GatewayAddresses {
    return { mqtt: this.#mqttAddresses, nats: this.#natsAddresses, http: this.#httpAddress };
  }

  status(): GatewayStatus {
    const time = Date.now();
    return {
      time,
      healthy: this.#state === "running",
      state: this.#state,
      gateway: this.config.gateway.id,
      upstream: this.#upstreams.get(GLOBAL_ACCOUNT)?.status(),
      outbox: this.#outboxStatus(GLOBAL_ACCOUNT, time),
      accounts: this.#accountsStatus(time),
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
      disk: this.#outboxes?.diskStatus() ?? NO_DISK_GUARD,
      memory: memoryMiB(),
    };
  }

  #outboxStatus(account: string, time: number): OutboxStatus {
    const queue = this.#outboxes?.of(account);
    return {
      pending: queue?.size ?? 0,
      lastId: queue?.lastId ?? 0,
      classes: (queue?.classStatus() ?? []).map((c) => ({
        ...c,
        oldestAgeMs: c.oldestAt === null ? null : Math.max(0, time - c.oldestAt),
      })),
    };
  }

  /** The bus of `account` (tests publish into an account through it). */
  accountBus(account: string): Bus | undefined {
    return this.#space?.accounts.find((a) => a.name === account)?.bus;
  }

  #accountsStatus(time = Date.now()): Record<string, AccountStatus> {
    const mqtt = this.#broker?.sessions.connectedByAccount() ?? new Map<string, number>();
    const nats = this.#natsConnectedByAccount();
    return Object.fromEntries(
      [...this.#upstreams].map(([name, upstream]) => [
        name,
        {
          outbox: this.#outboxStatus(name, time),
          upstream: upstream.status(),
          mqtt: { connections: mqtt.get(name) ?? 0 },
          nats: { connections: nats.get(name) ?? 0 },
        },
      ]),
    );
  }

  #natsConnectedByAccount(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const l of this.#natsListeners) {
      for (const [name, n] of l.connectedByAccount()) counts.set(name, (counts.get(name) ?? 0) + n);
    }
    return counts;
  }

  #renderMetrics(): string {
    const pending = this.metrics.gauge(
      "leafgate_outbox_pending",
      "Messages in the outbox waiting for the hub",
    );
    const oldest = this.metrics.gauge(
      "leafgate_outbox_oldest_age_seconds",
      "Age of the oldest message waiting in the outbox, by class (0 when none)",
    );
    const maxBytes = this.metrics.gauge(
      "leafgate_buffer_max_bytes",
      "The class's byte limit (buffer.max_bytes or its own), by class; absent when unlimited",
    );
    const now = Date.now();
    for (const queue of this.#outboxes?.queues() ?? []) {
      const labels = accountLabels(queue.account);
      pending.set(queue.size, labels);
      for (const c of queue.classStatus()) {
        const cls = { ...labels, class: c.name };
        oldest.set(c.oldestAt === null ? 0 : Math.max(0, now - c.oldestAt) / 1000, cls);
        if (c.maxBytes !== null) maxBytes.set(c.maxBytes, cls);
      }
    }
    const clients = this.metrics.gauge(
      "leafgate_account_clients",
      "MQTT and NATS clients logged in, by account and protocol",
    );
    const mqtt = this.#broker?.sessions.connectedByAccount() ?? new Map<string, number>();
    const nats = this.#natsConnectedByAccount();
    for (const name of this.#upstreams.keys()) {
      clients.set(mqtt.get(name) ?? 0, { account: name, protocol: "mqtt" });
      clients.set(nats.get(name) ?? 0, { account: name, protocol: "nats" });
    }
    const portOpen = this.metrics.gauge(
      "leafgate_serial_port_open",
      "1 while a serial port is open, 0 while it waits for its device",
    );
    const lastFrame = this.metrics.gauge(
      "leafgate_serial_last_frame_timestamp_seconds",
      "When the device's last good frame was received (Unix time); absent before the first",
    );
    for (const d of this.#devices) {
      const s = d.status();
      const labels = { port: s.path, device: s.device };
      portOpen.set(s.state === "open" ? 1 : 0, labels);
      if (s.lastFrameAt !== null) lastFrame.set(s.lastFrameAt / 1000, labels);
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
    this.#sys?.stop();
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
    this.#space?.close();
    const ackWaitMs = Math.min(remaining(), HUB_ACK_WAIT_MS);
    await Promise.all([...this.#upstreams.values()].map((u) => u.stop(ackWaitMs)));
    this.#outboxes?.close();
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
    this.#log.info({ pending: this.#outboxes?.size ?? 0 }, "stopped");
  }

  /** Resolves once every part that was started has ended; never rejects. */
  async #allClosed(): Promise<void> {
    await Promise.all([
      ...this.#listeners.map((l) => l.closed()),
      ...this.#natsListeners.map((l) => l.closed()),
      this.#http?.closed(),
      ...this.#devices.map((d) => d.closed()),
      ...[...this.#upstreams.values()].map((u) => u.closed()),
      this.#outboxes?.closed(),
    ]);
  }

  /**
   * Commits what waits for the next group commit (outbox, persistent sessions). Neither
   * throws: a failed commit rejects its publishers' promises, so they get no ack.
   */
  #flushCommits(): void {
    this.#outboxes?.flush();
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
