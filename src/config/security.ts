import { readFileSync, statSync } from "node:fs";
import YAML from "yaml";
import { isLoopback } from "./resolve.js";
import { CONFIG_SCHEMA, type LeafgateConfig } from "./schema.js";
import { type Def, isMapping } from "./schema-engine.js";

/** One insecure choice found at start: a stable code, what it is and what to do. */
export interface SecurityWarning {
  readonly code: SecurityWarningCode;
  /** One line: what is insecure, why it matters, and what to do about it. */
  readonly message: string;
  /** Structured details for the log record (never a secret). */
  readonly details: Readonly<Record<string, unknown>>;
}

/** Stable codes of the start-up warnings; docs/errors.md says what to do for each. */
export type SecurityWarningCode =
  | "LG_WARN_CONFIG_READABLE"
  | "LG_WARN_CONFIG_WRITABLE"
  | "LG_WARN_SECRET_FILE_READABLE"
  | "LG_WARN_MQTT_PLAINTEXT"
  | "LG_WARN_MQTT_ANONYMOUS"
  | "LG_WARN_NATS_PLAINTEXT"
  | "LG_WARN_NATS_ANONYMOUS"
  | "LG_WARN_HTTP_EXPOSED"
  | "LG_WARN_HUB_PLAINTEXT"
  | "LG_WARN_RUNNING_AS_ROOT";

export interface SecurityContext {
  /** The configuration file, when there is one. */
  readonly configFile?: string;
  /** The effective user id (`process.geteuid()`); absent where there is none. */
  readonly uid?: number;
}

/** Permission bits that let the group or others read, or write, a file. */
const READ_BY_OTHERS = 0o044;
const WRITE_BY_OTHERS = 0o022;

const modeText = (mode: number): string => `0${(mode & 0o777).toString(8).padStart(3, "0")}`;

function modeOf(file: string): number | undefined {
  try {
    return statSync(file).mode;
  } catch {
    return undefined;
  }
}

/** `host:port`, with brackets around an IPv6 address. */
const address = (host: string, port: number): string =>
  `${host.includes(":") ? `[${host}]` : host}:${port}`;

/** The host of a `nats://` or `tls://` URL (brackets removed from IPv6), if it parses. */
function hostOf(url: string): string | undefined {
  try {
    return new URL(url).hostname.replace(/^\[|\]$/g, "");
  } catch {
    return undefined;
  }
}

/**
 * The key paths under which `raw` (a config file as parsed) holds a secret: the keys the
 * schema marks secret, and server URLs with a password or token in them.
 */
export function secretPaths(raw: unknown, node: Def = CONFIG_SCHEMA, at = ""): string[] {
  if (raw === undefined || raw === null) return [];
  if (node.secret) return [at];
  switch (node.kind) {
    case "string":
      return typeof raw === "string" && node.rule?.mask !== undefined && node.rule.mask(raw) !== raw
        ? [at]
        : [];
    case "list":
      return Array.isArray(raw)
        ? raw.flatMap((item, i) => secretPaths(item, node.of, `${at}[${i}]`))
        : [];
    case "map":
      return isMapping(raw)
        ? Object.entries(raw).flatMap(([key, item]) => secretPaths(item, node.of, `${at}.${key}`))
        : [];
    case "object":
      if (!isMapping(raw)) return [];
      return Object.entries(node.fields).flatMap(([key, child]) =>
        secretPaths(raw[key], child, at === "" ? key : `${at}.${key}`),
      );
    default:
      return [];
  }
}

function configFileWarnings(file: string): SecurityWarning[] {
  const mode = modeOf(file);
  if (mode === undefined) return [];
  const warnings: SecurityWarning[] = [];
  if ((mode & READ_BY_OTHERS) !== 0) {
    let paths: string[] = [];
    try {
      paths = secretPaths(YAML.parse(readFileSync(file, "utf8")));
    } catch {
      // loadConfig read and parsed it a moment ago; nothing to say if that changed.
    }
    if (paths.length > 0) {
      warnings.push({
        code: "LG_WARN_CONFIG_READABLE",
        message: `config file ${file} holds secrets (${paths.join(", ")}) and is readable by other users (mode ${modeText(mode)}): chmod 600 it, or pass the secrets as LEAFGATE_* environment variables`,
        details: { file, mode: modeText(mode), secrets: paths },
      });
    }
  }
  if ((mode & WRITE_BY_OTHERS) !== 0) {
    warnings.push({
      code: "LG_WARN_CONFIG_WRITABLE",
      message: `config file ${file} is writable by other users (mode ${modeText(mode)}), who could point the gateway at their own hub or open it to anyone: chmod 600 it (or 644 if it holds no secret)`,
      details: { file, mode: modeText(mode) },
    });
  }
  return warnings;
}

/** Files that hold a private key or credentials, by the key that names them. */
function secretFiles(config: LeafgateConfig): [string, string][] {
  const files: [string, string][] = [];
  if (config.upstream.credentials !== undefined) {
    files.push(["upstream.credentials", config.upstream.credentials]);
  }
  if (config.upstream.tls?.key !== undefined)
    files.push(["upstream.tls.key", config.upstream.tls.key]);
  for (const [name, a] of Object.entries(config.accounts)) {
    const at = `accounts.${name}.upstream`;
    if (
      a.upstream.credentials !== undefined &&
      a.upstream.credentials !== config.upstream.credentials
    )
      files.push([`${at}.credentials`, a.upstream.credentials]);
    const key = a.upstream.tls?.key;
    if (key !== undefined && key !== config.upstream.tls?.key) files.push([`${at}.tls.key`, key]);
  }
  config.mqtt.listeners.forEach((l, i) => {
    if (l.tls?.key !== undefined) files.push([`mqtt.listeners[${i}].tls.key`, l.tls.key]);
  });
  return files;
}

/**
 * Every insecure choice in `config` and its surroundings, one warning each, in a fixed
 * order: the config file, files holding keys, MQTT listeners, HTTP, the hub, the user.
 * "Non-loopback" means reachable from other machines: any address but localhost,
 * 127.0.0.0/8 and ::1 (0.0.0.0 and :: included).
 *
 * A hub reached without TLS is warned about whether or not credentials are sent: besides
 * a password or token in clear, whoever is on the path reads every message and can forge
 * the hub's commands (the import subjects), which local devices act on. Loopback hubs
 * (a local nats-server, a tunnel's end) are exempt.
 */
export function insecureChoices(
  config: LeafgateConfig,
  context: SecurityContext = {},
): SecurityWarning[] {
  const warnings: SecurityWarning[] = [];
  if (context.configFile !== undefined) warnings.push(...configFileWarnings(context.configFile));

  for (const [key, file] of secretFiles(config)) {
    const mode = modeOf(file);
    if (mode === undefined || (mode & READ_BY_OTHERS) === 0) continue;
    warnings.push({
      code: "LG_WARN_SECRET_FILE_READABLE",
      message: `${key} ${file} is readable by other users (mode ${modeText(mode)}): chmod 600 it`,
      details: { key, file, mode: modeText(mode) },
    });
  }

  for (const l of config.mqtt.listeners) {
    if (isLoopback(l.host)) continue;
    const at = address(l.host, l.port);
    const listener = l.websocket ? "MQTT WebSocket listener" : "MQTT listener";
    if (l.tls === undefined) {
      warnings.push({
        code: "LG_WARN_MQTT_PLAINTEXT",
        message: `${listener} ${at} is not loopback and has no TLS: anyone on the network can read the passwords and messages of its clients, and change them: add tls: { cert, key } to it, or listen on 127.0.0.1`,
        details: { listener: at, websocket: l.websocket },
      });
    }
    if (config.mqtt.allow_anonymous) {
      warnings.push({
        code: "LG_WARN_MQTT_ANONYMOUS",
        message: `${listener} ${at} is not loopback and accepts clients without a password (mqtt.allow_anonymous: true): anyone who reaches it may publish and subscribe as authorization.default_permissions allow: configure authorization.users and set mqtt.allow_anonymous: false`,
        details: { listener: at },
      });
    }
  }

  for (const l of config.nats.listeners) {
    if (isLoopback(l.host)) continue;
    const at = address(l.host, l.port);
    if (l.tls === undefined) {
      warnings.push({
        code: "LG_WARN_NATS_PLAINTEXT",
        message: `NATS listener ${at} is not loopback and has no TLS: anyone on the network can read the passwords and messages of its clients, and change them: add tls: { cert, key } to it, or listen on 127.0.0.1`,
        details: { listener: at },
      });
    }
    if (config.nats.allow_anonymous) {
      warnings.push({
        code: "LG_WARN_NATS_ANONYMOUS",
        message: `NATS listener ${at} is not loopback and accepts clients without a password (nats.allow_anonymous: true): anyone who reaches it may publish and subscribe as authorization.default_permissions allow: configure authorization.users and set nats.allow_anonymous: false`,
        details: { listener: at },
      });
    }
  }

  if (config.http.enabled && !isLoopback(config.http.host)) {
    const at = address(config.http.host, config.http.port);
    warnings.push({
      code: "LG_WARN_HTTP_EXPOSED",
      message:
        config.http.token === undefined
          ? `HTTP monitoring ${at} is not loopback: /status and /metrics are open to anyone who reaches it, without TLS or a password: set http.host: 127.0.0.1 (and scrape through a tunnel or a proxy), or http.enabled: false`
          : `HTTP monitoring ${at} is not loopback and has no TLS: its bearer token (http.token) and what it serves cross the network in clear, for anyone on the path to read: set http.host: 127.0.0.1 and scrape through a tunnel or a TLS proxy`,
      details: { listener: at },
    });
  }

  // One warning per hub, the first connection to it naming it (an account's own hub
  // names the account's tls key).
  const hubs = [
    { at: "upstream", up: config.upstream },
    ...Object.entries(config.accounts).map(([name, a]) => ({
      at: `accounts.${name}.upstream`,
      up: a.upstream,
    })),
  ];
  const warned = new Set<string>();
  for (const { at, up } of hubs) {
    const sendsSecret = up.password !== undefined || up.token !== undefined;
    for (const server of up.servers) {
      const host = hostOf(server);
      if (host === undefined || isLoopback(host)) continue;
      if (up.tls !== undefined || server.toLowerCase().startsWith("tls://")) continue;
      const shown = server.replace(/^([a-z]+:\/\/)[^@/\s]+@/i, "$1");
      if (warned.has(shown)) continue;
      warned.add(shown);
      const secret = sendsSecret || /^[a-z]+:\/\/[^@/\s]+@/i.test(server);
      warnings.push({
        code: "LG_WARN_HUB_PLAINTEXT",
        message: `hub ${shown} is not loopback and is reached without TLS: ${secret ? "the gateway's password or token, " : ""}every message and the hub's commands cross the network in clear, and anyone on the path can forge commands: use tls://${shown.replace(/^[a-z]+:\/\//i, "")} (with ${at}.tls.ca for a private CA)`,
        details: { server: shown },
      });
    }
  }

  if (context.uid === 0) {
    warnings.push({
      code: "LG_WARN_RUNNING_AS_ROOT",
      message:
        "running as root: a flaw in the gateway or a library it uses would give the whole machine away: run it as an unprivileged user that owns gateway.data_dir (systemd: User=, with AmbientCapabilities=CAP_NET_BIND_SERVICE for ports below 1024)",
      details: { uid: 0 },
    });
  }
  return warnings;
}
