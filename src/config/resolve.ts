import { checkAccounts, resolveAccounts } from "./accounts.js";
import { resolveImports } from "./imports.js";
import { checkClassNames, checkHubAuth, hubAddress, sameHost } from "./rules.js";
import { CONFIG_SCHEMA, type LeafgateConfig, type SchemaConfig } from "./schema.js";
import { type ResolveContext, resolveNode } from "./schema-engine.js";

/** True for hosts only this machine can reach (IPv4-mapped 127/8 included). */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^(::ffff:)?127\.\d+\.\d+\.\d+$/i.test(host);
}

const isAnyAddress = (host: string): boolean => host === "0.0.0.0" || host === "::";

/** Smallest TCP keepalive idle time Linux takes: whole seconds. */
const TCP_KEEPALIVE_MIN_MS = 1000;
/** A delivery goes out below the soft mark (an eighth of the cap); it must fit above it. */
const OUTBOUND_PACKETS = 2;

/** Resolves a whole file-shaped document, then applies the rules that span keys. */
export function resolveConfig(raw: unknown, cx: ResolveContext): LeafgateConfig {
  const { problems, label } = cx;
  const root = { ...cx, label: (at: string) => label(at) || "top level" };
  // With problems the result is partial: the rules below look at what is there.
  const c = resolveNode(CONFIG_SCHEMA, raw, "", root) as Partial<SchemaConfig> | undefined;
  const up: Partial<SchemaConfig["upstream"]> = c?.upstream ?? {};
  checkHubAuth(up, "upstream", cx);
  const mq = c?.mqtt;
  if (mq !== undefined) {
    if (mq.max_outbound_bytes < OUTBOUND_PACKETS * mq.max_packet_size) {
      problems.push(
        `${label("mqtt.max_outbound_bytes")}: expected at least twice mqtt.max_packet_size ` +
          `(${OUTBOUND_PACKETS * mq.max_packet_size} bytes), got ${mq.max_outbound_bytes}`,
      );
    }
    if (mq.tcp_keepalive > 0 && mq.tcp_keepalive < TCP_KEEPALIVE_MIN_MS) {
      problems.push(
        `${label("mqtt.tcp_keepalive")}: expected 0 (off) or at least 1s, got ${mq.tcp_keepalive} ms`,
      );
    }
  }
  const paths = new Set<string>();
  for (const [i, port] of (c?.serial?.ports ?? []).entries()) {
    if (port?.path === undefined) continue;
    if (paths.has(port.path))
      problems.push(`${label(`serial.ports[${i}].path`)}: ${port.path} is configured twice`);
    paths.add(port.path);
  }
  for (const part of ["mqtt", "nats"] as const) {
    for (const [i, l] of (c?.[part]?.listeners ?? []).entries()) {
      if (l?.tls !== undefined && (l.tls.cert === undefined || l.tls.key === undefined)) {
        problems.push(`${label(`${part}.listeners[${i}].tls`)}: expected both cert and key files`);
      }
    }
  }
  // The gateway must not dial itself: a hub on the port of its own NATS listener.
  for (const [i, server] of (c?.upstream?.servers ?? []).entries()) {
    const hub = hubAddress(server);
    if (hub === undefined) continue;
    const { host, port } = hub;
    const own = (c?.nats?.listeners ?? []).find(
      (l) =>
        l?.port === port &&
        (sameHost(l.host) === host || (isLoopback(host) && isAnyAddress(l.host))),
    );
    if (own !== undefined) {
      problems.push(
        `${label(`upstream.servers[${i}]`)}: ${server} is this gateway's own NATS listener (nats.listeners, ${own.host}:${port}): point upstream.servers at the hub, or move the listener to another port`,
      );
    }
  }
  const users = new Set<string>();
  for (const [i, u] of (c?.authorization?.users ?? []).entries()) {
    if (u?.user === undefined) continue;
    if (users.has(u.user))
      problems.push(`${label(`authorization.users[${i}].user`)}: "${u.user}" is listed twice`);
    users.add(u.user);
  }
  checkClassNames(c?.buffer?.classes ?? [], "buffer.classes", cx);
  const durables = new Map<string, string>();
  const imports = resolveImports(up.import, {
    gatewayId: c?.gateway?.id,
    mode: up.mode,
    durables,
    label,
    problems,
  });
  const accountImports = checkAccounts(c, { label, problems, durables });
  // With any problem the result is discarded, and its parts may be missing.
  if (c === undefined || problems.length > 0) return c as LeafgateConfig;
  const whole = c as SchemaConfig;
  const sub = (s: string) => s.replaceAll("{gateway}", whole.gateway.id);
  const upstream = {
    ...whole.upstream,
    prefix: sub(whole.upstream.prefix),
    export: whole.upstream.export.map(sub),
    import: imports,
  };
  const buffer = {
    ...whole.buffer,
    classes: whole.buffer.classes.map((cls) => ({
      ...cls,
      on_full: cls.on_full ?? whole.buffer.on_full,
    })),
  };
  // Once anyone has a password, in any account, no one gets in without one unless the
  // file says so.
  const noUsers =
    whole.authorization.users.length === 0 &&
    Object.values(whole.accounts).every((a) => a.users.length === 0);
  return {
    ...whole,
    buffer,
    mqtt: {
      ...whole.mqtt,
      // Unset: anonymous only while no one has a password and no one off this host can
      // connect (secure by default).
      allow_anonymous:
        whole.mqtt.allow_anonymous ??
        (noUsers && whole.mqtt.listeners.every((l) => isLoopback(l.host))),
    },
    nats: {
      ...whole.nats,
      allow_anonymous:
        whole.nats.allow_anonymous ??
        (noUsers &&
          whole.authorization.token === null &&
          whole.nats.listeners.every((l) => isLoopback(l.host))),
    },
    upstream,
    accounts: resolveAccounts(whole, { upstream, buffer, imports: accountImports }),
  };
}
