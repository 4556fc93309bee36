import { DEFAULT_ACCOUNT } from "../core/accounts.js";
import { isValidPattern, isValidSubject, isValidToken } from "../core/subject.js";
import {
  bool,
  type Defaults,
  duration,
  filePath,
  type Infer,
  int,
  list,
  mapOf,
  type Node,
  nullable,
  obj,
  oneOf,
  optionalObj,
  type StringRule,
  size,
  str,
  stringOr,
} from "./schema-engine.js";
import { maskUrls } from "./secrets.js";

/** Largest MQTT packet: 268,435,455 bytes of remaining length (MQTT 3.1.1 §2.2.3) + 5 of header. */
const MQTT_MAX_PACKET_BYTES = 268_435_460;
/** Longest MQTT string (topic, filter): its length is a 16-bit number (MQTT 3.1.1 §1.5.3). */
const MQTT_MAX_STRING_BYTES = 65_535;
/** Group commit must stay short: a QoS 1 PUBACK waits for it. */
const COMMIT_INTERVAL_MAX_MS = 1000;
/**
 * Smallest mqtt.max_outbound_bytes: its soft mark (an eighth) stays above what one read of
 * a socket (64 KiB) can make the gateway answer, so a cut is never for one burst of acks.
 */
const MIN_OUTBOUND_BYTES = 1024 * 1024;
/** Linux's largest TCP_KEEPIDLE, in seconds. */
const TCP_KEEPIDLE_MAX_S = 32_767;
/** MQTT 5 carries the session expiry as a 32-bit number of seconds. */
const SESSION_EXPIRY_MAX_MS = 0xffff_ffff * 1000;
const PORT_MAX = 65_535;
/** MQTT carries packet ids, topic aliases and Receive Maximum in 16 bits. */
const MQTT_U16_MAX = 65_535;
/** The smallest store that holds a few sessions' rows and their pages. */
const MIN_SESSION_STORE_BYTES = 64 * 1024;
/** Below 1 KiB a buffer (or class) could not hold one ordinary message. */
const MIN_BUFFER_BYTES = 1024;
/** A database file capped below 1 MiB would hardly hold the empty tables. */
const MIN_FILE_SIZE_BYTES = 1024 * 1024;
/** Bounds the forwarder's ack table: one entry per publish awaiting its PubAck. */
const MAX_IN_FLIGHT = 100_000;
/** A rate cap beyond any link: only keeps a typo from reading as "no cap". */
const RATE_MAX = 1_000_000_000;
/** No sane deployment comes near these; they only keep a typo from meaning "unbounded". */
const COUNT_MAX = 1_000_000;
const BIG_COUNT_MAX = 10_000_000;
/** No bound but exact integer arithmetic (byte and message counts). */
const SAFE_INTEGER_MAX = Number.MAX_SAFE_INTEGER;
/** Baud rates a port may set: what UARTs and USB adapters offer. */
const BAUD_MIN = 50;
const BAUD_MAX = 4_000_000;
const ON_FULL = ["drop_oldest", "reject"] as const;

const NATS_URL =
  /^(?:nats|tls):\/\/(?:[^@/\s]+@)?(?:[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\])(?::(\d+))?\/?$/;

const SERVER_URL: StringRule = {
  expected: "nats://host:port",
  test: (s) => {
    const port = NATS_URL.exec(s)?.[1];
    return NATS_URL.test(s) && (port === undefined || (+port >= 1 && +port <= PORT_MAX));
  },
  // `user:pass@` keeps the user; a bare `token@` is all secret.
  mask: maskUrls,
};
export const TOKEN: StringRule = {
  expected: 'one subject token (no ".", "*", ">" or whitespace)',
  test: isValidToken,
};
/** A NATS subject pattern (the engine's subject-pattern node). */
export const PATTERN: StringRule = { expected: "a NATS subject pattern", test: isValidPattern };
const SUBJECT: StringRule = { expected: "a subject without wildcards", test: isValidSubject };

/** One subject token from a host name: `pi.local` → `pi-local`. */
const sanitizeId = (hostname: string): string => hostname.replace(/[.\s*>]/g, "-");

/** A JetStream stream or consumer name: one token, and no path separator (a file name on the hub). */
export const JETSTREAM_NAME: StringRule = {
  expected: 'a JetStream name (no ".", "*", ">", "/", "\\" or whitespace)',
  test: (s) => isValidToken(s) && !/[/\\*>]/.test(s),
};
/**
 * An `upstream.import` entry: a hub subject pattern (a core subscription, delivered on the
 * same subject), or a mapping (`local` maps it, `durable` makes it a JetStream consumer).
 * The rules between its keys are checked in imports.ts; docs/upstream.md, "Imports".
 */
const IMPORT = stringOr(
  str({ rule: PATTERN }),
  obj({
    subject: str({ rule: PATTERN, required: "the hub subject pattern to import" }),
    local: str({ rule: PATTERN }),
    durable: str({ rule: JETSTREAM_NAME }),
    stream: str({ rule: JETSTREAM_NAME }),
  }),
  { expected: "a NATS subject pattern, or a mapping with subject (and local, durable, stream)" },
);

/** A subject pattern that may hold %u (user name) and %c (client id) tokens. */
const PERMISSION_PATTERN: StringRule = {
  expected: "a NATS subject pattern (%u and %c allowed)",
  test: (s) => isValidPattern(s.replaceAll("%u", "u").replaceAll("%c", "c")),
};
const RULE = obj({
  allow: list(str({ rule: PERMISSION_PATTERN }), { default: [">"] }),
  deny: list(str({ rule: PERMISSION_PATTERN }), { default: [] }),
});
const PERMISSIONS = obj({ publish: RULE, subscribe: RULE });
const SCRYPT_HASH: StringRule = {
  expected: 'an scrypt hash from "leafgate passwd" ($scrypt$...)',
  test: (s) => /^\$scrypt\$N=\d+,r=\d+,p=\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/.test(s),
};
const TLS_FILES = optionalObj({ ca: filePath(), cert: filePath(), key: filePath() });
const USER = obj({
  user: str({ required: "a user name" }),
  password: str({
    rule: SCRYPT_HASH,
    secret: true,
    required: 'an scrypt hash from "leafgate passwd"',
  }),
  permissions: nullable(PERMISSIONS), // null: default_permissions
});
const STREAM_NAME = str({ rule: { ...TOKEN, expected: `a stream name: ${TOKEN.expected}` } });
const JETSTREAM_DOMAIN = str({
  rule: { ...TOKEN, expected: `a JetStream domain: ${TOKEN.expected}` },
});
const UPSTREAM_AUTH = {
  user: str(),
  password: str({ secret: true }),
  token: str({ secret: true }),
  credentials: filePath(),
  nkey_seed: str({ secret: true }),
  tls: TLS_FILES,
};
const BUFFER_CLASS = obj({
  name: str({ rule: TOKEN, required: "a class name" }),
  subjects: list(str({ rule: PATTERN }), { default: [], minItems: 1 }),
  on_full: nullable(oneOf(ON_FULL)), // resolved: unset takes buffer.on_full
  max_bytes: nullable(size(MIN_BUFFER_BYTES, SAFE_INTEGER_MAX)),
  max_messages: nullable(int(1, SAFE_INTEGER_MAX)),
  max_age: nullable(duration({ min: 1000 })),
});

/** nats-server's name for the global account: the one without an `accounts` entry. */
export const GLOBAL_ACCOUNT = DEFAULT_ACCOUNT;
const ACCOUNT_NAME_CHARS = /^[A-Za-z0-9_-]+$/;
const ACCOUNT_NAME: StringRule = {
  expected: `an account name: letters, digits, "_" or "-" ("${GLOBAL_ACCOUNT}" is the global account's)`,
  test: (s) => ACCOUNT_NAME_CHARS.test(s),
};
/** Where something belongs: an account under `accounts`, or the global one. */
const ACCOUNT_REF: StringRule = {
  expected: `an account name, or "${GLOBAL_ACCOUNT}" for the global account`,
  test: (s) => s === GLOBAL_ACCOUNT || ACCOUNT_NAME_CHARS.test(s),
};
/** An import names an account under `accounts`: the global account exports nothing. */
const EXPORTER: StringRule = {
  expected: `the name of an account under accounts (the global account ${GLOBAL_ACCOUNT} exports nothing)`,
  test: ACCOUNT_NAME.test,
};

/**
 * One `accounts.<name>` entry: an isolated subject space (nats-server's accounts). Its
 * upstream and buffer keys fall back to the top level's (resolved in accounts.ts, which
 * also checks the rules between accounts); docs/config.md, "Accounts".
 */
const ACCOUNT = obj({
  // Same shape as authorization.users; a user name is unique across all accounts.
  users: list(USER, { default: [] }),
  // What other accounts may import from this one.
  exports: list(
    obj({
      stream: str({ rule: PATTERN, required: "the subject pattern other accounts may import" }),
    }),
    { default: [] },
  ),
  // Subjects another account exports, delivered here (under `prefix` when set).
  imports: list(
    obj({
      stream: str({ rule: PATTERN, required: "the subject pattern to import" }),
      account: str({ rule: EXPORTER, required: "the name of the exporting account" }),
      prefix: nullable(str({ rule: SUBJECT })),
    }),
    { default: [] },
  ),
  // The account's own hub connection: its hub account by its credentials. Unset keys
  // (servers, domain, tls) are upstream's; mode and the timings are always upstream's.
  upstream: obj({
    servers: list(str({ rule: SERVER_URL }), { minItems: 1 }),
    // Unset: find the stream that captures the prefix (in the account's hub account).
    stream: nullable(STREAM_NAME),
    domain: nullable(JETSTREAM_DOMAIN),
    // {gateway} and {account} are replaced in prefix, export and import.
    prefix: str({ rule: SUBJECT, default: "edge.{gateway}.{account}" }),
    export: list(str({ rule: PATTERN }), { default: [">"] }),
    import: list(IMPORT, { default: [] }),
    ...UPSTREAM_AUTH,
  }),
  // Limits of the account's own queue in the outbox. Unset: the top-level buffer's.
  buffer: obj({
    max_bytes: nullable(size(MIN_BUFFER_BYTES, SAFE_INTEGER_MAX)),
    max_messages: nullable(int(1, SAFE_INTEGER_MAX)),
    max_age: nullable(duration({ min: 1000 })),
    on_full: nullable(oneOf(ON_FULL)),
    classes: list(BUFFER_CLASS),
  }),
});

const LISTENER = obj({
  host: str({ default: "127.0.0.1" }),
  port: int(0, PORT_MAX, { default: 1883 }),
  // MQTT over TLS (cert and key required; with `ca`, clients must present a certificate).
  tls: TLS_FILES,
  // MQTT over WebSocket (subprotocol `mqtt`, any path), with TLS when `tls` is set.
  websocket: bool({ default: false }),
});

const NATS_LISTENER = obj({
  host: str({ default: "127.0.0.1" }),
  // Where NATS clients look first, as on a real leaf; the hub is elsewhere (README).
  port: int(0, PORT_MAX, { default: 4222 }),
  // NATS over TLS, upgraded after INFO as nats-server does (with `ca`, clients must
  // present a certificate).
  tls: TLS_FILES,
});
/** nats-server's own ceiling for max_payload. */
const NATS_MAX_PAYLOAD_BYTES = 64 * 1024 * 1024;

/**
 * Every key leafgate reads, with its default in the file's form; the YAML shape in
 * DESIGN.md is a contract. Durations resolve to ms (except `mqtt.max_keepalive`, seconds),
 * sizes to bytes, paths to absolute ones. What each key means: README and docs/config.md.
 */
export const CONFIG_SCHEMA = obj({
  gateway: obj({
    id: str({ rule: TOKEN, default: (d: Defaults) => sanitizeId(d.hostname) }),
    data_dir: filePath({ default: "data" }),
  }),
  mqtt: obj({
    listeners: list(LISTENER, { default: [{}] }), // one listener, all defaults
    // Unset: allowed only without users and with every listener on loopback.
    allow_anonymous: nullable(bool()),
    // MQTT carries keep-alive as a 16-bit number of seconds (MQTT 3.1.1 §3.1.2.10).
    max_keepalive: int(0, PORT_MAX, { default: 60 }),
    // For a socket that never sends CONNECT.
    connect_timeout: duration({ min: 1, default: "10s" }),
    max_packet_size: size(1, MQTT_MAX_PACKET_BYTES, { default: "1MB" }),
    max_connections: int(0, COUNT_MAX, { default: 1000 }), // 0 = no limit
    // Sockets that have not sent CONNECT (TLS and WebSocket handshakes included), counted
    // apart from max_connections: a client cannot hold many for nothing. 0 = no limit.
    max_pending_connections: int(0, COUNT_MAX, { default: 100 }),
    // A CONNECT is small (ids, credentials, a will); its size is judged from the header.
    max_connect_size: size(128, MQTT_MAX_PACKET_BYTES, { default: "64KiB" }),
    max_connections_per_address: int(0, COUNT_MAX, { default: 256 }), // 0 = no limit
    // Outbound QoS 1/2 awaiting ack per client; packet ids are 16 bits.
    max_inflight: int(1, MQTT_U16_MAX, { default: 1000 }),
    // Per session, behind the window or offline.
    max_queued_messages: int(0, BIG_COUNT_MAX, { default: 1000 }),
    // Their subject + payload, per session.
    max_session_queued_bytes: size(0, SAFE_INTEGER_MAX, { default: "16MiB" }),
    // Longest an offline session is kept.
    max_session_expiry: duration({ max: SESSION_EXPIRY_MAX_MS, default: "7d" }),
    // Persistent sessions, and the store of what they are owed: bounded so that random
    // client ids cannot fill the disk the outbox needs (with buffer.max_file_size set the
    // store gets at most a quarter of that file).
    max_sessions: int(1, BIG_COUNT_MAX, { default: 10_000 }),
    session_store_max_bytes: size(MIN_SESSION_STORE_BYTES, SAFE_INTEGER_MAX, { default: "256MiB" }),
    max_subscriptions_per_client: int(1, COUNT_MAX, { default: 100 }),
    max_retained_messages: int(0, BIG_COUNT_MAX, { default: 10_000 }),
    // Topic + payload + properties.
    max_retained_bytes: size(0, SAFE_INTEGER_MAX, { default: "64MiB" }),
    // Aliases a v5 client may set.
    topic_alias_maximum: int(0, MQTT_U16_MAX, { default: 64 }),
    // Topics and filters are UTF-8 strings with a 16-bit length (MQTT 3.1.1 §1.5.3), so
    // neither bound can usefully be larger; a level takes at least one byte but the first.
    // 1 KiB by default so that every topic accepted reaches the hub: its subject (up to
    // twice as long, a "." becoming "//") with the prefix and the reply subject must fit
    // nats-server's 4 KiB max_control_line.
    max_topic_length: size(1, MQTT_MAX_STRING_BYTES, { default: 1024 }),
    max_topic_levels: int(1, MQTT_MAX_STRING_BYTES, { default: 64 }),
    // Unsent bytes per connection; a client still past it is cut as a slow consumer. An
    // eighth of it is the soft mark where reading pauses and deliveries wait, so it must
    // hold a full packet above that (checked in resolve.ts with max_packet_size).
    max_outbound_bytes: size(MIN_OUTBOUND_BYTES, SAFE_INTEGER_MAX, { default: "8MiB" }),
    // Inbound QoS 1/2 awaiting our ack per MQTT 5 client. MQTT 5 carries it in 16 bits,
    // and 0 is a protocol error (section 3.2.2.3.3).
    receive_maximum: int(1, MQTT_U16_MAX, { default: 100 }),
    // Idle time before the kernel's first keepalive probe; 0 = off. Linux takes whole
    // seconds up to 32767 (TCP_KEEPIDLE).
    tcp_keepalive: duration({ max: TCP_KEEPIDLE_MAX_S * 1000, default: "60s" }),
  }),
  // The local NATS endpoint; `listeners: []` turns it off.
  nats: obj({
    listeners: list(NATS_LISTENER, { default: [{}] }),
    // Unset: allowed only without users and with every NATS listener on loopback.
    allow_anonymous: nullable(bool()),
    // Largest PUB/HPUB (header and payload), told to clients in INFO; nats-server's default.
    max_payload: size(1, NATS_MAX_PAYLOAD_BYTES, { default: "1MB" }),
    // nats-server's max_control_line: a PUB/SUB line longer than this is refused.
    max_control_line: size(256, MQTT_MAX_STRING_BYTES, { default: "4KiB" }),
    max_connections: int(0, COUNT_MAX, { default: 1000 }), // 0 = no limit
    // Sockets that have not sent CONNECT, counted apart from max_connections. 0 = no limit.
    max_pending_connections: int(0, COUNT_MAX, { default: 100 }),
    max_connections_per_address: int(0, COUNT_MAX, { default: 256 }), // 0 = no limit
    max_subscriptions_per_client: int(1, COUNT_MAX, { default: 1000 }),
    // Unsent bytes per client; past it the client is cut as a slow consumer.
    max_outbound_bytes: size(MIN_OUTBOUND_BYTES, SAFE_INTEGER_MAX, { default: "8MiB" }),
    // nats-server's ping_interval and max_pings_out: a client silent for about their
    // product is stale and closed.
    ping_interval: duration({ min: 100, default: "2m" }),
    max_pings_out: int(1, COUNT_MAX, { default: 2 }),
    // From accept to a CONNECT (credentials checked), as nats-server's auth_timeout.
    auth_timeout: duration({ min: 1, default: "2s" }),
  }),
  upstream: obj({
    servers: list(str({ rule: SERVER_URL }), { default: ["nats://127.0.0.1:4223"], minItems: 1 }),
    mode: oneOf(["jetstream", "core"], { default: "jetstream" }),
    // Unset: find the stream that captures the prefix.
    stream: nullable(STREAM_NAME),
    // JetStream domain of the hub's stream.
    domain: nullable(JETSTREAM_DOMAIN),
    // {gateway} is replaced in prefix, export and import.
    prefix: str({ rule: SUBJECT, default: "edge.{gateway}" }),
    export: list(str({ rule: PATTERN }), { default: [">"] }),
    import: list(IMPORT, { default: ["cmd.{gateway}.>"] }),
    ...UPSTREAM_AUTH,
    max_in_flight: int(1, MAX_IN_FLIGHT, { default: 4096 }),
    ack_timeout: duration({ min: 1, default: "10s" }),
    reconnect_delay_max: duration({ default: "2s" }),
    // A blackholed link (no RST) is noticed after about three intervals.
    ping_interval: duration({ min: 100, default: "10s" }),
    drain: oneOf(["fifo", "fresh_first"], { default: "fifo" }),
    rate_limit: obj({
      messages_per_second: int(0, RATE_MAX, { default: 0 }), // 0 = no cap
      bytes_per_second: size(0, SAFE_INTEGER_MAX, { default: 0 }), // 0 = no cap
    }),
  }),
  buffer: obj({
    durability: oneOf(["normal", "fsync"], { default: "normal" }),
    // 0 = commit on the next event-loop turn.
    commit_interval: duration({ max: COMMIT_INTERVAL_MAX_MS, default: 0 }),
    commit_max_rows: int(1, COUNT_MAX, { default: 2000 }),
    max_bytes: size(MIN_BUFFER_BYTES, SAFE_INTEGER_MAX, { default: "1GB" }), // the whole buffer
    max_messages: int(1, SAFE_INTEGER_MAX, { default: 10_000_000 }),
    max_age: duration({ min: 1000, default: "7d" }),
    // A hard cap on the database file and its WAL together, for small SD cards: reaching
    // it is a full disk. A little less than half goes to the database (see fileCap in
    // store/database.ts). Unset: the disk.
    max_file_size: nullable(size(MIN_FILE_SIZE_BYTES, SAFE_INTEGER_MAX)),
    on_full: oneOf(ON_FULL, { default: "drop_oldest" }), // for subjects no class names
    // Priority classes: limits left null fall back to the buffer's.
    classes: list(BUFFER_CLASS, { default: [] }),
  }),
  authorization: obj({
    // Anonymous clients, and users without their own.
    default_permissions: PERMISSIONS,
    // Past this many failed logins from one address within the window, its CONNECTs are
    // refused without a password check (scrypt is the costly part), backing off. 0 = no limit.
    failed_logins_per_address: int(0, COUNT_MAX, { default: 10 }),
    failed_login_window: duration({ min: 1000, default: "1m" }),
    // The global account's users (accounts.<name>.users are other accounts').
    users: list(USER, { default: [] }),
    // NATS token auth (CONNECT auth_token), as nats-server's authorization.token; its
    // clients get default_permissions. An scrypt hash from "leafgate passwd".
    token: nullable(
      str({ rule: { ...SCRYPT_HASH, expected: `${SCRYPT_HASH.expected}` }, secret: true }),
    ),
  }),
  serial: obj({
    ports: list(
      obj({
        path: str({ required: "a value" }),
        device: str({ rule: TOKEN, required: "a value" }), // becomes {device}
        // A profile name (devices/<name>.yaml) or a path to a .yaml file.
        profile: str({ required: "a value" }),
        // Null: the profile's.
        baud_rate: nullable(int(BAUD_MIN, BAUD_MAX)),
        data_bits: nullable(int(5, 8) as Node<5 | 6 | 7 | 8, false>),
        parity: nullable(oneOf(["none", "even", "odd"])),
        stop_bits: nullable(int(1, 2) as Node<1 | 2, false>),
        // The account its device publishes in and takes commands from.
        account: str({ rule: ACCOUNT_REF, default: GLOBAL_ACCOUNT }),
        // No good frame for this long makes /readyz say the device is silent. Null: a
        // polled (Modbus) device's is derived from its polling, a streaming one has none.
        silent_after: nullable(duration({ min: 1 })),
      }),
      { default: [] },
    ),
    // Where profiles named by ports are looked up first (built-in ones come next).
    profiles_dir: nullable(filePath()),
  }),
  // Request-reply across protocols and the uplink (see README "Request-reply").
  requests: obj({
    // How long an answer is awaited where the gateway routes it (an MQTT 5 request with
    // correlation data, a hub request, a device command).
    timeout: duration({ min: 1, default: "30s" }),
    // Requests awaiting such a routed answer at once; past it they go unanswered (counted).
    max_pending: int(1, BIG_COUNT_MAX, { default: 10_000 }),
  }),
  http: obj({
    enabled: bool({ default: true }),
    host: str({ default: "127.0.0.1" }),
    port: int(0, PORT_MAX, { default: 8222 }),
    // When set, every route needs `Authorization: Bearer <token>` (docs/status.md).
    token: str({
      rule: {
        expected: "a token of at least 16 characters (e.g. openssl rand -hex 16)",
        test: (s) => s.length >= 16,
      },
      secret: true,
    }),
  }),
  // `$SYS.leafgate.<gateway>.*` stats on each account's bus every interval (docs/sys.md);
  // 0 turns them off.
  sys: obj({
    interval: duration({ default: "10s" }),
  }),
  log: obj({
    level: oneOf(["debug", "info", "warn", "error"], { default: "info" }),
  }),
  // Tenants: isolated subject spaces. Without it, everything is the global account $G.
  accounts: mapOf(ACCOUNT_NAME, ACCOUNT),
});

/** The file's shape as the schema resolves it, before the rules that span keys. */
export type SchemaConfig = Infer<typeof CONFIG_SCHEMA>;
type Raw = SchemaConfig;
/** `T` with the keys of `U` replaced by `U`'s. */
type Override<T, U> = { [K in keyof (Omit<T, keyof U> & U)]: (Omit<T, keyof U> & U)[K] };

/**
 * The validated, resolved configuration: every default filled in, `{gateway}` substituted,
 * `mqtt.allow_anonymous` and each class's `on_full` decided, each account's upstream and
 * buffer completed from the top level's. Deep-frozen by `loadConfig`.
 */
export type LeafgateConfig = Override<
  Raw,
  {
    readonly mqtt: Override<Raw["mqtt"], { readonly allow_anonymous: boolean }>;
    readonly nats: Override<Raw["nats"], { readonly allow_anonymous: boolean }>;
    readonly buffer: BufferConfig;
    readonly upstream: UpstreamConfig;
    readonly accounts: Readonly<Record<string, AccountEntryConfig>>;
  }
>;

/** A hub connection: `upstream`, or an account's (mode and timings are always upstream's). */
export type UpstreamConfig = Override<
  Raw["upstream"],
  { readonly import: readonly ImportConfig[] }
>;
/** The outbox's limits: `buffer`, or an account's queue's (with the database's settings). */
export type BufferConfig = Override<
  Raw["buffer"],
  { readonly classes: readonly BufferClassConfig[] }
>;
type RawAccount = Raw["accounts"][string];
/**
 * An `accounts.<name>` entry as resolved: `{gateway}` and `{account}` substituted, its
 * upstream and buffer complete (what it leaves unset is the top level's).
 */
export type AccountEntryConfig = Override<
  RawAccount,
  {
    readonly imports: readonly AccountImportConfig[];
    readonly upstream: UpstreamConfig;
    readonly buffer: BufferConfig;
  }
>;
/** A subject pattern an account lets other accounts import. */
export type AccountExportConfig = RawAccount["exports"][number];
/**
 * Subjects matching `stream` published in `account` are delivered in the importing account
 * on `prefix.<subject>` (on the same subject when `prefix` is null).
 */
export type AccountImportConfig = RawAccount["imports"][number];

/**
 * One account, the global one ($G) included, in the one shape every part reads: its
 * users, what crosses to and from other accounts, its hub connection, its outbox limits
 * and the serial ports whose devices are in it. From `accountsOf` (accounts.ts).
 */
export interface AccountConfig {
  readonly name: string;
  readonly users: readonly UserConfig[];
  readonly exports: readonly AccountExportConfig[];
  readonly imports: readonly AccountImportConfig[];
  readonly upstream: UpstreamConfig;
  readonly buffer: BufferConfig;
  readonly serialPorts: readonly SerialPortEntry[];
}

/**
 * An `upstream.import` entry in its long form, `{gateway}` substituted: hub `subject`
 * delivered on `local` (the same subject unless mapped); `durable` null: a core subscription.
 */
export interface ImportConfig {
  readonly subject: string;
  readonly local: string;
  /** The JetStream durable consumer's name; null for a core subscription. */
  readonly durable: string | null;
  /** The stream the durable reads; null: the one whose subjects cover `subject`. */
  readonly stream: string | null;
}

/** A priority class, its `on_full` resolved; limits left null fall back to the buffer's. */
export type BufferClassConfig = Override<
  Raw["buffer"]["classes"][number],
  { readonly on_full: (typeof ON_FULL)[number] }
>;
/** One MQTT listen address. `port: 0` picks a free port. */
export type ListenerConfig = Raw["mqtt"]["listeners"][number];
/** One NATS listen address. `port: 0` picks a free port. */
export type NatsListenerConfig = Raw["nats"]["listeners"][number];
/** TLS material as absolute file paths. */
export type TlsFilesConfig = NonNullable<Raw["upstream"]["tls"]>;
/** Subject patterns a client may publish to / subscribe to; `%u` and `%c` are substituted. */
export type PermissionsConfig = Raw["authorization"]["default_permissions"];
export type PermissionRule = PermissionsConfig["publish"];
export type UserConfig = Raw["authorization"]["users"][number];
/** A serial port and the device on it. */
export type SerialPortEntry = Raw["serial"]["ports"][number];
