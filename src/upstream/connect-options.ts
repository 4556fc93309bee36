import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import {
  type ConnectionOptions,
  credsAuthenticator,
  nkeyAuthenticator,
} from "@nats-io/transport-node";
import { maskUrls, urlCredentials, withoutCredentials } from "../config/index.js";
import { errorMessage } from "../core/index.js";
import { UpstreamError } from "./errors.js";
import type { UpstreamConfig } from "./upstream-config.js";

/** Connect attempt timeout: a hub that has not answered by then counts as unreachable. */
const CONNECT_TIMEOUT_MS = 5_000;
/** Unanswered client PINGs before a silent (blackholed) link is declared dead. */
const MAX_PINGS_OUT = 2;

/**
 * What every dial shares, built once so that a bad credentials file fails at start, not
 * on every reconnect. Servers are dialed one per attempt (see `dialOptions`).
 */
export function connectOptions(c: UpstreamConfig, gatewayId: string): ConnectionOptions {
  const options: ConnectionOptions = {
    servers: c.servers.map(withoutCredentials),
    name: `leafgate ${gatewayId}`,
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
  return options;
}

/**
 * Options for dial `n`: one server, in turn, so that TLS verifies the certificate against
 * the address actually dialed. A URL's user info and `tls://` scheme apply to that server
 * (nats.js ignores both): docs/upstream.md, "Dialing".
 */
export function dialOptions(
  base: ConnectionOptions,
  servers: readonly string[],
  n: number,
): ConnectionOptions {
  const server = servers[n % servers.length]!;
  const options: ConnectionOptions = { ...base, servers: [withoutCredentials(server)] };
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
    // nats.js leaves the TLS server name empty for an IP address (Node would then check
    // the certificate against "localhost"): naming it makes an IP-addressed hub verifiable.
    if (host !== undefined && isIP(host) !== 0) {
      options.tls = { ...options.tls, host } as ConnectionOptions["tls"];
    }
  }
  return options;
}

/** The host of a `nats://` or `tls://` URL (brackets removed from IPv6), if it parses. */
function hostOf(server: string): string | undefined {
  try {
    return new URL(server).hostname.replace(/^\[|\]$/g, "");
  } catch {
    return undefined;
  }
}

/** nats.js's port when a server URL gives none. */
const NATS_DEFAULT_PORT = 4222;

/**
 * A configured server as a dial reaches it, for `/status`: the scheme (`nats` when none),
 * the user info masked (`user:***@`, `***@`), the host and the port (4222 when none), as
 * nats.js resolves them; anything after the host (a path) is not dialed and not shown.
 */
export function dialedServer(server: string): string {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(server)?.[1]?.toLowerCase() ?? "nats";
  const info = /^(?:[a-z][a-z0-9+.-]*:\/\/)?([^@/\s]+@)/i.exec(server)?.[1] ?? "";
  const rest = withoutCredentials(server)
    .replace(/^[a-z][a-z0-9+.-]*:\/\//i, "")
    .replace(/^[^@/\s]+@/, "");
  try {
    // As nats.js: the host lower-cased through an http URL, the port read as written (the
    // URL would drop an explicit :80).
    const { hostname } = new URL(`http://${rest}`);
    const port = /^(?:\[[^\]]*\]|[^:/]*):(\d+)/.exec(rest)?.[1] ?? NATS_DEFAULT_PORT;
    const masked = info === "" ? "" : maskUrls(`x://${info}h`).slice("x://".length, -1);
    return `${scheme}://${masked}${hostname}:${port}`;
  } catch {
    return maskUrls(server);
  }
}
