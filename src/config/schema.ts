import * as path from "node:path";
import { isValidPattern, isValidSubject, isValidToken } from "../core/subject.js";
import { maskUrls } from "./secrets.js";

/** One MQTT (or HTTP-like) listen address. `port: 0` picks a free port. */
export interface ListenerConfig {
  readonly host: string;
  readonly port: number;
  /** MQTT over TLS (cert and key required; with `ca`, clients must present a certificate). */
  readonly tls?: TlsFilesConfig;
  /** MQTT over WebSocket (subprotocol `mqtt`, any path), with TLS when `tls` is set. */
  readonly websocket: boolean;
}

/** TLS material as absolute file paths. */
export interface TlsFilesConfig {
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
}

/**
 * The validated, resolved configuration: every default filled in, durations in ms
 * (except `mqtt.max_keepalive`, in seconds), sizes in bytes, paths absolute,
 * `{gateway}` substituted. Deep-frozen by `loadConfig`.
 */
/** Subject patterns a client may publish to / subscribe to; `%u` and `%c` are substituted. */
export interface PermissionRule {
  readonly allow: readonly string[]; // default [">"]
  readonly deny: readonly string[]; // default []
}
export interface PermissionsConfig {
  readonly publish: PermissionRule;
  readonly subscribe: PermissionRule;
}
export interface UserConfig {
  readonly user: string;
  readonly password: string; // an scrypt hash from `leafgate passwd`
  readonly permissions: PermissionsConfig | null; // null: default_permissions
}

/** A serial port and the device on it. */
export interface SerialPortEntry {
  readonly path: string;
  readonly device: string; // one subject token: becomes {device}
  readonly profile: string; // a profile name (devices/<name>.yaml) or a path to a .yaml file
  readonly baud_rate: number | null; // null: the profile's
  readonly data_bits: 5 | 6 | 7 | 8 | null; // null: the profile's
  readonly parity: "none" | "even" | "odd" | null; // null: the profile's
  readonly stop_bits: 1 | 2 | null; // null: the profile's
}

/** A priority class: limits left null fall back to the buffer's. */
export interface BufferClassConfig {
  readonly name: string;
  readonly subjects: readonly string[];
  readonly on_full: "drop_oldest" | "reject"; // resolved: unset takes buffer.on_full
  readonly max_bytes: number | null;
  readonly max_messages: number | null;
  readonly max_age: number | null; // ms
}

export interface LeafgateConfig {
  readonly gateway: { readonly id: string; readonly data_dir: string };
  readonly mqtt: {
    readonly listeners: readonly ListenerConfig[];
    /**
     * Resolved: when unset in the file, true only if no users are configured and every
     * listener is loopback.
     */
    readonly allow_anonymous: boolean;
    readonly max_keepalive: number; // seconds (default 60)
    readonly connect_timeout: number; // ms (default 10s) for a socket that never sends CONNECT
    readonly max_packet_size: number; // bytes (default 1MB)
    readonly max_connections: number; // default 1000; 0 = no limit
    readonly max_pending_connections: number; // sockets before CONNECT (default 100); 0 = no limit
    readonly max_connect_size: number; // bytes (default 64KiB): the first packet, CONNECT
    readonly max_connections_per_address: number; // default 256; 0 = no limit
    readonly max_inflight: number; // outbound QoS 1/2 awaiting ack per client (default 1000)
    readonly max_queued_messages: number; // per session, behind the window or offline (default 1000)
    readonly max_session_queued_bytes: number; // bytes (default 16MiB): their subject + payload, per session
    readonly max_session_expiry: number; // ms (default 7d): longest an offline session is kept
    readonly max_sessions: number; // persistent sessions kept, online or offline (default 10000)
    readonly session_store_max_bytes: number; // bytes (default 256MiB): everything queued for persistent sessions
    readonly max_subscriptions_per_client: number; // default 100
    readonly max_retained_messages: number; // retained topics kept (default 10000)
    readonly max_retained_bytes: number; // bytes (default 64MiB): topic + payload + properties
    readonly topic_alias_maximum: number; // aliases a v5 client may set (default 64)
    readonly max_topic_length: number; // bytes (default 1024): PUBLISH and will topics, filters
    readonly max_topic_levels: number; // levels (default 64): PUBLISH and will topics, filters
    readonly max_outbound_bytes: number; // unsent bytes per connection (default 8MiB); past it: slow consumer
    readonly receive_maximum: number; // inbound QoS 1/2 awaiting our ack per MQTT 5 client (default 100)
    readonly tcp_keepalive: number; // ms (default 60s) before the first TCP keepalive probe; 0 = off
  };
  readonly upstream: {
    readonly servers: readonly string[]; // default ["nats://127.0.0.1:4222"]
    readonly mode: "jetstream" | "core"; // default jetstream
    readonly stream: string | null; // default null = find the stream that captures the prefix
    readonly domain: string | null; // JetStream domain of the hub's stream; default null
    readonly prefix: string; // default "edge.{gateway}"; resolved: {gateway} replaced
    readonly export: readonly string[]; // default [">"]; resolved: {gateway} replaced
    readonly import: readonly string[]; // default ["cmd.{gateway}.>"]; resolved: {gateway} replaced
    readonly user?: string;
    readonly password?: string;
    readonly token?: string;
    readonly credentials?: string; // a path
    readonly nkey_seed?: string;
    readonly tls?: TlsFilesConfig;
    readonly max_in_flight: number; // default 4096, 1..100000
    readonly ack_timeout: number; // ms, default 10s
    readonly reconnect_delay_max: number; // ms, default 2s
    readonly ping_interval: number; // ms, default 10s; the link is dead after 2 unanswered
    readonly drain: "fifo" | "fresh_first"; // default fifo
    readonly rate_limit: {
      readonly messages_per_second: number; // 0 = no cap
      readonly bytes_per_second: number; // 0 = no cap
    };
  };
  readonly buffer: {
    readonly durability: "normal" | "fsync"; // default normal
    readonly commit_interval: number; // ms, default 0 (= next event-loop turn), max 1000
    readonly commit_max_rows: number; // default 2000
    readonly max_bytes: number; // default 1GB, the whole buffer
    readonly max_messages: number; // default 10,000,000
    readonly max_age: number; // ms, default 7d
    readonly max_file_size: number | null; // bytes, database + WAL (min 1MiB); null = the disk
    readonly on_full: "drop_oldest" | "reject"; // default drop_oldest: subjects no class names
    readonly classes: readonly BufferClassConfig[];
  };
  readonly authorization: {
    readonly default_permissions: PermissionsConfig;
    readonly users: readonly UserConfig[];
    readonly failed_logins_per_address: number; // default 10, then locked out; 0 = no limit
    readonly failed_login_window: number; // ms (default 1m): failures count within it
  };
  readonly serial: {
    readonly ports: readonly SerialPortEntry[];
    /** Where profiles named by ports are looked up first (built-in ones come next). */
    readonly profiles_dir: string | null;
  };
  readonly http: { readonly enabled: boolean; readonly host: string; readonly port: number };
  readonly log: { readonly level: "debug" | "info" | "warn" | "error" };
}

/** A rule on a string beyond "non-empty"; `mask` hides its secret part when printed. */
interface StringRule {
  readonly expected: string;
  readonly test: (s: string) => boolean;
  readonly mask?: (s: string) => string;
}

interface NodeBase {
  /** In the file's form (`"10s"`, `"1MB"`), so it goes through the same parser as user input. */
  readonly default?: unknown;
  readonly nullable?: boolean;
  readonly secret?: boolean;
}

export type Node = NodeBase &
  (
    | { readonly kind: "string"; readonly rule?: StringRule }
    | { readonly kind: "int"; readonly min: number; readonly max: number }
    | { readonly kind: "bool" }
    | { readonly kind: "enum"; readonly values: readonly string[] }
    | { readonly kind: "duration"; readonly min?: number; readonly max?: number }
    | { readonly kind: "size"; readonly min: number; readonly max: number }
    | { readonly kind: "path" }
    | { readonly kind: "list"; readonly of: Node; readonly minItems?: number }
    | {
        readonly kind: "object";
        readonly fields: Readonly<Record<string, Node>>;
        /** Absent stays absent instead of becoming an object of defaults. */
        readonly optional?: boolean;
      }
  );

const MS_PER_UNIT = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/;
// biome-ignore format: a table
const BYTES_PER_UNIT: Readonly<Record<string, number>> = { b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 };
const SIZE = /^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|kib|mib|gib)?$/i;
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
const PORT_MAX = 65_535;
const ON_FULL = ["drop_oldest", "reject"] as const;

/** `250ms`, `10s`, `5m`, `2h`, `7d`, or a number of seconds → milliseconds. */
function parseDuration(v: unknown): number | undefined {
  if (typeof v !== "number" && typeof v !== "string") return undefined;
  const m = DURATION.exec(String(v).trim());
  const unit = (m?.[2] ?? "s") as keyof typeof MS_PER_UNIT;
  return m ? Math.round(Number(m[1]) * MS_PER_UNIT[unit]) : undefined;
}

/** Milliseconds → the largest whole unit (`10s`, `250ms`, `7d`). */
function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  for (const unit of ["d", "h", "m", "s"] as const) {
    if (ms % MS_PER_UNIT[unit] === 0) return `${ms / MS_PER_UNIT[unit]}${unit}`;
  }
  return `${ms}ms`;
}

/** `512KiB`, `1MB`, `1GB` (decimal KB/MB/GB, binary KiB/MiB/GiB) or an integer → bytes. */
function parseSize(v: unknown): number | undefined {
  if (typeof v !== "number" && typeof v !== "string") return undefined;
  const m = SIZE.exec(String(v).trim());
  if (!m || (m[2] === undefined && m[1]!.includes("."))) return undefined;
  return Math.round(Number(m[1]) * BYTES_PER_UNIT[(m[2] ?? "b").toLowerCase()]!);
}

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
const TOKEN: StringRule = {
  expected: 'one subject token (no ".", "*", ">" or whitespace)',
  test: isValidToken,
};
const PATTERN: StringRule = { expected: "a NATS subject pattern", test: isValidPattern };
const SUBJECT: StringRule = { expected: "a subject without wildcards", test: isValidSubject };

/** One subject token from a host name: `pi.local` → `pi-local`. */
const sanitizeId = (hostname: string): string => hostname.replace(/[.\s*>]/g, "-");

const str = (o: NodeBase & { rule?: StringRule } = {}): Node => ({ kind: "string", ...o });
const int = (min: number, max: number, d: number): Node => ({ kind: "int", min, max, default: d });
const obj = (fields: Record<string, Node>, optional = false): Node => ({
  kind: "object",
  fields,
  optional,
});
const list = (of: Node, d: unknown[], minItems = 0): Node => ({
  kind: "list",
  of,
  default: d,
  minItems,
});

/** A subject pattern that may hold %u (user name) and %c (client id) tokens. */
const PERMISSION_PATTERN: StringRule = {
  expected: "a NATS subject pattern (%u and %c allowed)",
  test: (s) => isValidPattern(s.replaceAll("%u", "u").replaceAll("%c", "c")),
};
const RULE = obj({
  allow: list(str({ rule: PERMISSION_PATTERN }), [">"]),
  deny: list(str({ rule: PERMISSION_PATTERN }), []),
});
const PERMISSIONS = obj({ publish: RULE, subscribe: RULE });
const SCRYPT_HASH: StringRule = {
  expected: 'an scrypt hash from "leafgate passwd" ($scrypt$...)',
  test: (s) => /^\$scrypt\$N=\d+,r=\d+,p=\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/.test(s),
};

const LISTENER = obj({
  host: str({ default: "127.0.0.1" }),
  port: int(0, PORT_MAX, 1883),
  tls: obj({ cert: { kind: "path" }, key: { kind: "path" }, ca: { kind: "path" } }, true),
  websocket: { kind: "bool", default: false },
});

/** Every key leafgate reads; the YAML shape in DESIGN.md is a contract. */
export const CONFIG_SCHEMA: Node = obj({
  gateway: obj({
    id: str({ rule: TOKEN, default: (d: ResolveContext["defaults"]) => sanitizeId(d.hostname) }),
    data_dir: { kind: "path", default: "data" },
  }),
  mqtt: obj({
    listeners: list(LISTENER, [{}]), // one listener, all defaults
    // MQTT carries keep-alive as a 16-bit number of seconds (MQTT 3.1.1 §3.1.2.10).
    // Unset: allowed only without users and with every listener on loopback.
    allow_anonymous: { kind: "bool", nullable: true, default: null },
    max_keepalive: int(0, PORT_MAX, 60),
    connect_timeout: { kind: "duration", min: 1, default: "10s" },
    max_packet_size: { kind: "size", min: 1, max: MQTT_MAX_PACKET_BYTES, default: "1MB" },
    max_connections: int(0, 1_000_000, 1000),
    // Sockets that have not sent CONNECT (TLS and WebSocket handshakes included), counted
    // apart from max_connections: a client cannot hold many for nothing.
    max_pending_connections: int(0, 1_000_000, 100),
    // A CONNECT is small (ids, credentials, a will); its size is judged from the header.
    max_connect_size: { kind: "size", min: 128, max: MQTT_MAX_PACKET_BYTES, default: "64KiB" },
    max_connections_per_address: int(0, 1_000_000, 256),
    // Outbound packet ids are 16 bits; the window cannot exceed them.
    max_inflight: int(1, 65_535, 1000),
    max_queued_messages: int(0, 10_000_000, 1000),
    max_session_queued_bytes: {
      kind: "size",
      min: 0,
      max: Number.MAX_SAFE_INTEGER,
      default: "16MiB",
    },
    // MQTT 5 carries the session expiry as a 32-bit number of seconds.
    max_session_expiry: { kind: "duration", max: 0xffff_ffff * 1000, default: "7d" },
    // Persistent sessions, and the store of what they are owed: bounded so that random
    // client ids cannot fill the disk the outbox needs (with buffer.max_file_size set the
    // store gets at most a quarter of that file).
    max_sessions: int(1, 10_000_000, 10_000),
    session_store_max_bytes: {
      kind: "size",
      min: 64 * 1024,
      max: Number.MAX_SAFE_INTEGER,
      default: "256MiB",
    },
    max_subscriptions_per_client: int(1, 1_000_000, 100),
    max_retained_messages: int(0, 10_000_000, 10_000),
    max_retained_bytes: { kind: "size", min: 0, max: Number.MAX_SAFE_INTEGER, default: "64MiB" },
    topic_alias_maximum: int(0, 65_535, 64),
    // Topics and filters are UTF-8 strings with a 16-bit length (MQTT 3.1.1 §1.5.3), so
    // neither bound can usefully be larger; a level takes at least one byte but the first.
    // 1 KiB by default so that every topic accepted reaches the hub: its subject (up to
    // twice as long, a "." becoming "//") with the prefix and the reply subject must fit
    // nats-server's 4 KiB max_control_line.
    max_topic_length: { kind: "size", min: 1, max: MQTT_MAX_STRING_BYTES, default: 1024 },
    max_topic_levels: int(1, MQTT_MAX_STRING_BYTES, 64),
    // Unsent bytes per connection; a client still past it is cut as a slow consumer. An
    // eighth of it is the soft mark where reading pauses and deliveries wait, so it must
    // hold a full packet above that (checked below with max_packet_size).
    max_outbound_bytes: {
      kind: "size",
      min: MIN_OUTBOUND_BYTES,
      max: Number.MAX_SAFE_INTEGER,
      default: "8MiB",
    },
    // MQTT 5 carries it in 16 bits, and 0 is a protocol error (section 3.2.2.3.3).
    receive_maximum: int(1, 65_535, 100),
    // Idle time before the kernel's first keepalive probe; 0 = off. Linux takes whole
    // seconds up to 32767 (TCP_KEEPIDLE).
    tcp_keepalive: { kind: "duration", max: TCP_KEEPIDLE_MAX_S * 1000, default: "60s" },
  }),
  upstream: obj({
    servers: list(str({ rule: SERVER_URL }), ["nats://127.0.0.1:4222"], 1),
    mode: { kind: "enum", values: ["jetstream", "core"], default: "jetstream" },
    stream: str({
      rule: { ...TOKEN, expected: `a stream name: ${TOKEN.expected}` },
      nullable: true,
      default: null,
    }),
    domain: str({
      rule: { ...TOKEN, expected: `a JetStream domain: ${TOKEN.expected}` },
      nullable: true,
      default: null,
    }),
    prefix: str({ rule: SUBJECT, default: "edge.{gateway}" }),
    export: list(str({ rule: PATTERN }), [">"]),
    import: list(str({ rule: PATTERN }), ["cmd.{gateway}.>"]),
    user: str(),
    password: str({ secret: true }),
    token: str({ secret: true }),
    credentials: { kind: "path" },
    nkey_seed: str({ secret: true }),
    tls: obj({ ca: { kind: "path" }, cert: { kind: "path" }, key: { kind: "path" } }, true),
    max_in_flight: int(1, 100_000, 4096),
    ack_timeout: { kind: "duration", min: 1, default: "10s" },
    reconnect_delay_max: { kind: "duration", default: "2s" },
    // A blackholed link (no RST) is noticed after about three intervals.
    ping_interval: { kind: "duration", min: 100, default: "10s" },
    drain: { kind: "enum", values: ["fifo", "fresh_first"], default: "fifo" },
    rate_limit: obj({
      messages_per_second: int(0, 1_000_000_000, 0),
      bytes_per_second: { kind: "size", min: 0, max: Number.MAX_SAFE_INTEGER, default: 0 },
    }),
  }),
  buffer: obj({
    durability: { kind: "enum", values: ["normal", "fsync"], default: "normal" },
    // 0 = commit on the next event-loop turn.
    commit_interval: { kind: "duration", max: COMMIT_INTERVAL_MAX_MS, default: 0 },
    commit_max_rows: int(1, 1_000_000, 2000),
    max_bytes: { kind: "size", min: 1024, max: Number.MAX_SAFE_INTEGER, default: "1GB" },
    max_messages: int(1, Number.MAX_SAFE_INTEGER, 10_000_000),
    max_age: { kind: "duration", min: 1000, default: "7d" },
    // A hard cap on the database file and its WAL together, for small SD cards: reaching
    // it is a full disk. A little less than half goes to the database (see fileCap in
    // store/database.ts); below 1 MiB that would hardly hold the empty tables.
    max_file_size: {
      kind: "size",
      min: 1024 * 1024,
      max: Number.MAX_SAFE_INTEGER,
      nullable: true,
      default: null,
    },
    on_full: { kind: "enum", values: ON_FULL, default: "drop_oldest" },
    classes: list(
      obj({
        name: str({ rule: TOKEN }),
        subjects: list(str({ rule: PATTERN }), [], 1),
        on_full: { kind: "enum", values: ON_FULL, nullable: true, default: null },
        max_bytes: {
          kind: "size",
          min: 1024,
          max: Number.MAX_SAFE_INTEGER,
          nullable: true,
          default: null,
        },
        max_messages: {
          kind: "int",
          min: 1,
          max: Number.MAX_SAFE_INTEGER,
          nullable: true,
          default: null,
        },
        max_age: { kind: "duration", min: 1000, nullable: true, default: null },
      }),
      [],
    ),
  }),
  authorization: obj({
    default_permissions: PERMISSIONS,
    // Past this many failed logins from one address within the window, its CONNECTs are
    // refused without a password check (scrypt is the costly part), backing off.
    failed_logins_per_address: int(0, 1_000_000, 10),
    failed_login_window: { kind: "duration", min: 1000, default: "1m" },
    users: list(
      obj({
        user: str(),
        password: str({ rule: SCRYPT_HASH, secret: true }),
        permissions: { ...PERMISSIONS, nullable: true, default: null },
      }),
      [],
    ),
  }),
  serial: obj({
    ports: list(
      obj({
        path: str(),
        device: str({ rule: TOKEN }),
        profile: str(),
        baud_rate: { kind: "int", min: 50, max: 4_000_000, nullable: true, default: null },
        data_bits: { kind: "int", min: 5, max: 8, nullable: true, default: null },
        parity: { kind: "enum", values: ["none", "even", "odd"], nullable: true, default: null },
        stop_bits: { kind: "int", min: 1, max: 2, nullable: true, default: null },
      }),
      [],
    ),
    profiles_dir: { kind: "path", nullable: true, default: null },
  }),
  http: obj({
    enabled: { kind: "bool", default: true },
    host: str({ default: "127.0.0.1" }),
    port: int(0, PORT_MAX, 8222),
  }),
  log: obj({
    level: { kind: "enum", values: ["debug", "info", "warn", "error"], default: "info" },
  }),
});

/** How resolution reports and places things; load.ts knows where each value came from. */
export interface ResolveContext {
  /** What a default may depend on. */
  readonly defaults: { readonly hostname: string };
  readonly problems: string[];
  /** The name a problem at `at` is reported under (a path, or the env variable that set it). */
  readonly label: (at: string) => string;
  /** The directory a relative path at `at` is resolved against. */
  readonly baseDir: (at: string, fromDefault: boolean) => string;
}

/** True for hosts only this machine can reach (IPv4-mapped 127/8 included). */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^(::ffff:)?127\.\d+\.\d+\.\d+$/i.test(host);
}

export function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const join = (at: string, key: string): string => (at === "" ? key : `${at}.${key}`);

function show(v: unknown, node: Node): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return v.length === 0 ? "an empty list" : "a list";
  if (typeof v === "object") return "a mapping";
  if (node.secret) return `a ${typeof v}`;
  if (typeof v === "string") {
    return JSON.stringify(node.kind === "string" && node.rule?.mask ? node.rule.mask(v) : v);
  }
  return String(v);
}

const EXPECTED: { [K in Node["kind"]]: (node: Extract<Node, { kind: K }>) => string } = {
  string: (n) => n.rule?.expected ?? "a non-empty string",
  int: (n) => `an integer from ${n.min} to ${n.max}`,
  bool: () => "true or false",
  enum: (n) => `one of ${n.values.join(", ")}`,
  duration: () => "a duration like 250ms, 10s, 5m, 2h, 7d (or a number of seconds)",
  size: () => "a size like 512KiB, 1MB, 1GB (or a number of bytes)",
  path: () => "a path",
  list: () => "a list",
  object: () => "a mapping",
};
const expectedOf = (node: Node): string => (EXPECTED[node.kind] as (n: Node) => string)(node);

function rangeOf(min: number | undefined, max: number | undefined, unit: (n: number) => string) {
  if (min !== undefined && max !== undefined) return `from ${unit(min)} to ${unit(max)}`;
  return min !== undefined ? `of at least ${unit(min)}` : `of at most ${unit(max ?? 0)}`;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row.push(Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + cost));
    }
    prev = row;
  }
  return prev[b.length]!;
}

/** Suggests the closest key within 2 edits, else lists every allowed key. */
function unknownKey(key: string, allowed: readonly string[]): string {
  const ranked = allowed.map((k) => ({ k, d: editDistance(key, k) })).sort((x, y) => x.d - y.d);
  const best = ranked[0];
  return best && best.d <= 2
    ? `unknown key (did you mean "${best.k}"?)`
    : `unknown key (expected one of ${allowed.join(", ")})`;
}

/**
 * Checks `raw` against `node` and returns the resolved value. Every problem is pushed
 * onto `cx.problems`; the value returned alongside problems is partial.
 * `null` means "not set" except for nullable keys.
 */
export function resolveNode(
  node: Node,
  raw: unknown,
  at: string,
  cx: ResolveContext,
  fromDefault = false,
): unknown {
  if (raw === null && node.nullable) return null;
  if (raw === undefined || raw === null) {
    const d = typeof node.default === "function" ? node.default(cx.defaults) : node.default;
    if (d !== undefined) return resolveNode(node, d, at, cx, true);
    return node.kind === "object" && !node.optional
      ? resolveNode(node, {}, at, cx, true)
      : undefined;
  }
  const fail = (expected = expectedOf(node)): undefined => {
    cx.problems.push(`${cx.label(at)}: expected ${expected}, got ${show(raw, node)}`);
    return undefined;
  };
  switch (node.kind) {
    case "string": {
      const ok = typeof raw === "string" && raw.length > 0 && (node.rule?.test(raw) ?? true);
      return ok ? raw : fail();
    }
    case "int":
      return typeof raw === "number" && Number.isInteger(raw) && raw >= node.min && raw <= node.max
        ? raw
        : fail();
    case "bool":
      return typeof raw === "boolean" ? raw : fail();
    case "enum":
      return typeof raw === "string" && node.values.includes(raw) ? raw : fail();
    case "duration": {
      const ms = parseDuration(raw);
      if (ms === undefined) return fail();
      const { min, max } = node;
      if ((min !== undefined && ms < min) || (max !== undefined && ms > max)) {
        return fail(`a duration ${rangeOf(min, max, formatDuration)}`);
      }
      return ms;
    }
    case "size": {
      const bytes = parseSize(raw);
      if (bytes === undefined) return fail();
      if (bytes < node.min || bytes > node.max) {
        return fail(`a size ${rangeOf(node.min, node.max, String)} bytes`);
      }
      return bytes;
    }
    case "path":
      return typeof raw === "string" && raw.length > 0
        ? path.resolve(cx.baseDir(at, fromDefault), raw)
        : fail();
    case "list": {
      if (!Array.isArray(raw)) return fail();
      if (raw.length < (node.minItems ?? 0)) return fail(`at least ${node.minItems} entry`);
      return raw.map((item: unknown, i) => {
        const itemAt = `${at}[${i}]`;
        if (item !== null && item !== undefined)
          return resolveNode(node.of, item, itemAt, cx, fromDefault);
        cx.problems.push(`${cx.label(itemAt)}: expected ${expectedOf(node.of)}, got null`);
        return undefined;
      });
    }
    case "object": {
      if (!isMapping(raw)) return fail();
      const allowed = Object.keys(node.fields);
      const out: Record<string, unknown> = {};
      for (const [key, child] of Object.entries(node.fields)) {
        const v = resolveNode(child, raw[key], join(at, key), cx, fromDefault);
        if (v !== undefined) out[key] = v;
      }
      for (const key of Object.keys(raw)) {
        if (!Object.hasOwn(node.fields, key)) {
          cx.problems.push(`${cx.label(join(at, key))}: ${unknownKey(key, allowed)}`);
        }
      }
      return out;
    }
  }
}

/** Resolves a whole file-shaped document, then applies the rules that span keys. */
export function resolveConfig(raw: unknown, cx: ResolveContext): LeafgateConfig {
  const { problems, label } = cx;
  const root = { ...cx, label: (at: string) => label(at) || "top level" };
  const c = resolveNode(CONFIG_SCHEMA, raw, "", root) as LeafgateConfig | undefined;
  const up = c?.upstream ?? {};
  for (const [a, b] of [
    ["user", "password"],
    ["password", "user"],
  ] as const) {
    if (a in up && !(b in up))
      problems.push(`${label(`upstream.${a}`)}: set without upstream.${b}`);
  }
  const mq = c?.mqtt;
  if (mq !== undefined) {
    // A delivery goes out below the soft mark (an eighth of the cap); it must fit above it.
    if (mq.max_outbound_bytes < 2 * mq.max_packet_size) {
      problems.push(
        `${label("mqtt.max_outbound_bytes")}: expected at least twice mqtt.max_packet_size ` +
          `(${2 * mq.max_packet_size} bytes), got ${mq.max_outbound_bytes}`,
      );
    }
    if (mq.tcp_keepalive > 0 && mq.tcp_keepalive < 1000) {
      problems.push(
        `${label("mqtt.tcp_keepalive")}: expected 0 (off) or at least 1s, got ${mq.tcp_keepalive} ms`,
      );
    }
  }
  const paths = new Set<string>();
  for (const [i, port] of (c?.serial?.ports ?? []).entries()) {
    const at = `serial.ports[${i}]`;
    for (const key of ["path", "device", "profile"] as const) {
      if (port?.[key] === undefined)
        problems.push(`${label(`${at}.${key}`)}: expected a value, got nothing`);
    }
    if (port?.path !== undefined) {
      if (paths.has(port.path))
        problems.push(`${label(`${at}.path`)}: ${port.path} is configured twice`);
      paths.add(port.path);
    }
  }
  for (const [i, l] of (c?.mqtt?.listeners ?? []).entries()) {
    if (l?.tls !== undefined && (l.tls.cert === undefined || l.tls.key === undefined)) {
      problems.push(`${label(`mqtt.listeners[${i}].tls`)}: expected both cert and key files`);
    }
  }
  const users = new Set<string>();
  for (const [i, u] of (c?.authorization?.users ?? []).entries()) {
    const at = `authorization.users[${i}]`;
    if (u?.user === undefined)
      problems.push(`${label(`${at}.user`)}: expected a user name, got nothing`);
    else if (users.has(u.user))
      problems.push(`${label(`${at}.user`)}: "${u.user}" is listed twice`);
    else users.add(u.user);
    if (u?.password === undefined)
      problems.push(
        `${label(`${at}.password`)}: expected an scrypt hash from "leafgate passwd", got nothing`,
      );
  }
  const names = new Set<string>();
  for (const [i, cls] of (c?.buffer?.classes ?? []).entries()) {
    const at = `buffer.classes[${i}]`;
    if (cls?.name === undefined)
      problems.push(`${label(`${at}.name`)}: expected a class name, got nothing`);
    else if (cls.name === "default")
      problems.push(`${label(`${at}.name`)}: "default" is reserved for subjects no class names`);
    else if (names.has(cls.name))
      problems.push(`${label(`${at}.name`)}: "${cls.name}" is named twice`);
    else names.add(cls.name);
  }
  const methods = (["user", "token", "credentials", "nkey_seed"] as const)
    .filter((k) => k in up || (k === "user" && "password" in up))
    .map((k) => (k === "user" ? "user/password" : k));
  if (methods.length > 1) {
    const all = "user/password, token, credentials, nkey_seed";
    problems.push(
      `${label("upstream")}: expected at most one of ${all}, got ${methods.join(", ")}`,
    );
  }
  // With any problem the result is discarded, and its parts may be missing.
  if (c === undefined || problems.length > 0) return c as LeafgateConfig;
  const sub = (s: string) => s.replaceAll("{gateway}", c.gateway.id);
  const anonymous = c.mqtt.allow_anonymous as boolean | null;
  return {
    ...c,
    buffer: {
      ...c.buffer,
      classes: c.buffer.classes.map((cls) => ({
        ...cls,
        on_full: (cls.on_full as BufferClassConfig["on_full"] | null) ?? c.buffer.on_full,
      })),
    },
    mqtt: {
      ...c.mqtt,
      // Unset: anonymous only while no one has a password and no one off this host can
      // connect (secure by default).
      allow_anonymous:
        anonymous ??
        (c.authorization.users.length === 0 && c.mqtt.listeners.every((l) => isLoopback(l.host))),
    },
    upstream: {
      ...c.upstream,
      prefix: sub(c.upstream.prefix),
      export: c.upstream.export.map(sub),
      import: c.upstream.import.map(sub),
    },
  };
}

/** The config back in the file's shape: durations as `10s`, secrets as `"***"`. */
export function toFileShape(node: Node, v: unknown): unknown {
  if (v === undefined || v === null) return v;
  if (node.secret) return "***";
  switch (node.kind) {
    case "duration":
      return formatDuration(v as number);
    case "string":
      return node.rule?.mask ? node.rule.mask(v as string) : v;
    case "list":
      return (v as readonly unknown[]).map((item) => toFileShape(node.of, item));
    case "object": {
      const out: Record<string, unknown> = {};
      for (const [key, child] of Object.entries(node.fields)) {
        const x = toFileShape(child, (v as Record<string, unknown>)[key]);
        if (x !== undefined) out[key] = x;
      }
      return out;
    }
    default:
      return v;
  }
}
