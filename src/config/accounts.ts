/**
 * Accounts (issue 13): isolated subject spaces, as nats-server's. Without `accounts`
 * there is one, the global account `$G`, holding `authorization.users`, the token,
 * anonymous clients and every serial port. Each `accounts.<name>` entry adds one with
 * its own users, exports, imports, hub connection and outbox queue; docs/config.md,
 * "Accounts".
 */
import { patternCovers } from "../core/subject.js";
import { resolveImports } from "./imports.js";
import { checkClassNames, checkHubAuth, hubAddress, type RuleContext } from "./rules.js";
import {
  type AccountConfig,
  type AccountEntryConfig,
  type BufferConfig,
  GLOBAL_ACCOUNT,
  type ImportConfig,
  type LeafgateConfig,
  type SchemaConfig,
  type UpstreamConfig,
} from "./schema.js";
import { withoutCredentials } from "./secrets.js";

export interface AccountRules extends RuleContext {
  /** Durable consumer names taken by `upstream.import`, with the path that took each. */
  readonly durables: Map<string, string>;
}

const quoted = (s: string): string => JSON.stringify(s);

/**
 * The rules between accounts and within each (pushed onto `problems`, each with its fix),
 * on the file as the schema resolved it, partial or not:
 * - a user name is in one account only (`authorization.users` is the global account's);
 * - an import names another account under `accounts`, one of whose exports covers it;
 * - a serial port names an account that exists;
 * - no two accounts (the global one included) send under the same prefix to the same hub,
 *   where their messages would mix;
 * - each account's upstream as `upstream`'s (user with password, one way to authenticate,
 *   imports; no durable consumer name twice across all) and buffer classes as `buffer`'s.
 * Returns each account's `upstream.import`, resolved.
 */
export function checkAccounts(
  c: Partial<SchemaConfig> | undefined,
  cx: AccountRules,
): Map<string, ImportConfig[]> {
  const { label, problems } = cx;
  const accounts = Object.entries(c?.accounts ?? {});
  const names = accounts.map(([name]) => name);
  const imports = new Map<string, ImportConfig[]>();

  // Who owns each user name first; authorization.users repeats are resolve.ts's to report.
  const owners = new Map<string, { account: string; at: string }>();
  for (const [i, u] of (c?.authorization?.users ?? []).entries()) {
    if (u?.user !== undefined && !owners.has(u.user))
      owners.set(u.user, { account: GLOBAL_ACCOUNT, at: `authorization.users[${i}]` });
  }

  for (const [name, a] of accounts) {
    if (a === undefined) continue;
    const base = `accounts.${name}`;
    for (const [i, u] of a.users.entries()) {
      if (u?.user === undefined) continue;
      const at = label(`${base}.users[${i}].user`);
      const first = owners.get(u.user);
      if (first === undefined) owners.set(u.user, { account: name, at: `${base}.users[${i}]` });
      else if (first.account === name) problems.push(`${at}: "${u.user}" is listed twice`);
      else {
        const other =
          first.account === GLOBAL_ACCOUNT
            ? `in authorization.users (the global account ${GLOBAL_ACCOUNT})`
            : `a user of account ${first.account} (${first.at})`;
        problems.push(
          `${at}: "${u.user}" is ${other} too; a user belongs to one account only: ` +
            "rename it in one of them, or remove it from one",
        );
      }
    }

    for (const [j, imp] of a.imports.entries()) {
      if (imp?.account === undefined || imp.stream === undefined) continue;
      const at = `${base}.imports[${j}]`;
      const all = c?.accounts ?? {};
      const exporter = Object.hasOwn(all, imp.account) ? all[imp.account] : undefined;
      if (imp.account === name) {
        problems.push(
          `${label(`${at}.account`)}: an account cannot import from itself (its own subjects ` +
            "need no import): name another account, or remove the import",
        );
      } else if (exporter === undefined) {
        problems.push(
          `${label(`${at}.account`)}: no account ${quoted(imp.account)} (accounts: ` +
            `${names.join(", ")}): name one of them, or add accounts.${imp.account} ` +
            `exporting ${quoted(imp.stream)}`,
        );
      } else {
        const exported = exporter.exports.flatMap((e) =>
          e?.stream === undefined ? [] : [e.stream],
        );
        if (!exported.some((e) => patternCovers(e, imp.stream))) {
          const has =
            exported.length === 0
              ? "exports nothing"
              : `exports ${exported.map(quoted).join(", ")} only`;
          problems.push(
            `${label(`${at}.stream`)}: import without a matching export: account ` +
              `${imp.account} ${has}; add { stream: ${quoted(imp.stream)} } to ` +
              `accounts.${imp.account}.exports, or import a subject it exports`,
          );
        }
      }
    }

    checkHubAuth(a.upstream, `${base}.upstream`, cx);
    checkClassNames(a.buffer.classes ?? [], `${base}.buffer.classes`, cx);
    imports.set(
      name,
      resolveImports(a.upstream.import, {
        gatewayId: c?.gateway?.id,
        account: name,
        mode: c?.upstream?.mode,
        at: `${base}.upstream.import`,
        durables: cx.durables,
        label,
        problems,
      }),
    );
  }

  for (const [i, port] of (c?.serial?.ports ?? []).entries()) {
    const account = port?.account;
    if (account === undefined || account === GLOBAL_ACCOUNT || names.includes(account)) continue;
    problems.push(
      `${label(`serial.ports[${i}].account`)}: no account ${quoted(account)} (accounts: ` +
        `${[GLOBAL_ACCOUNT, ...names].join(", ")}): name one of them, or add accounts.${account}`,
    );
  }

  checkPrefixes(c, cx);
  return imports;
}

/** Where a hub is, whatever the scheme and user info: `host:port`. */
function hubKey(server: string): string | undefined {
  const hub = hubAddress(server);
  return hub === undefined ? undefined : `${hub.host.toLowerCase()}:${hub.port}`;
}

/** Two accounts sending under one prefix to one hub would mix their messages there. */
function checkPrefixes(c: Partial<SchemaConfig> | undefined, cx: RuleContext): void {
  const gateway = c?.gateway?.id;
  const top = c?.upstream;
  if (gateway === undefined || top?.prefix === undefined || top.servers === undefined) return;
  const sends = [
    {
      who: `the global account's (upstream.prefix)`,
      at: "upstream.prefix",
      prefix: top.prefix.replaceAll("{gateway}", gateway),
      servers: top.servers,
    },
  ];
  for (const [name, a] of Object.entries(c?.accounts ?? {})) {
    if (a?.upstream.prefix === undefined) continue;
    sends.push({
      who: `account ${name}'s (accounts.${name}.upstream.prefix)`,
      at: `accounts.${name}.upstream.prefix`,
      prefix: a.upstream.prefix.replaceAll("{gateway}", gateway).replaceAll("{account}", name),
      servers: a.upstream.servers ?? top.servers,
    });
  }
  for (const [j, later] of sends.entries()) {
    for (const earlier of sends.slice(0, j)) {
      if (earlier.prefix !== later.prefix) continue;
      const hubs = new Set(earlier.servers.map(hubKey));
      const shared = later.servers.find((s) => hubs.has(hubKey(s)));
      if (shared === undefined) continue;
      cx.problems.push(
        `${cx.label(later.at)}: ${quoted(later.prefix)} is ${earlier.who} too, on the same ` +
          `hub (${withoutCredentials(shared)}): their messages would mix there; give each ` +
          "account a prefix of its own (the default, edge.{gateway}.{account}, is)",
      );
      break;
    }
  }
}

/** What the top level gives every account that leaves a key unset. */
export interface AccountDefaults {
  /** `upstream`, resolved. */
  readonly upstream: UpstreamConfig;
  /** `buffer`, resolved. */
  readonly buffer: BufferConfig;
  /** Each account's `upstream.import`, from {@link checkAccounts}. */
  readonly imports: ReadonlyMap<string, readonly ImportConfig[]>;
}

/**
 * Each account completed from the top level, `{gateway}` and `{account}` substituted in
 * its upstream's prefix, export and import:
 * - upstream: servers (without any user info in them: an account never uses the global
 *   account's credentials), domain and tls are `upstream`'s when unset; mode and the
 *   timings always are; stream unset means the stream that captures the prefix;
 * - buffer: limits and classes unset are `buffer`'s (classes' on_full the account's);
 *   durability, commits and max_file_size are the database's, so `buffer`'s.
 */
export function resolveAccounts(
  whole: SchemaConfig,
  top: AccountDefaults,
): Readonly<Record<string, AccountEntryConfig>> {
  const gateway = whole.gateway.id;
  const {
    user: _user,
    password: _password,
    token: _token,
    credentials: _credentials,
    nkey_seed: _nkeySeed,
    tls,
    ...hub
  } = top.upstream;
  return Object.fromEntries(
    Object.entries(whole.accounts).map(([name, a]): [string, AccountEntryConfig] => {
      const sub = (s: string) => s.replaceAll("{gateway}", gateway).replaceAll("{account}", name);
      const { servers, stream, domain, prefix, export: exported, import: _, ...auth } = a.upstream;
      const onFull = a.buffer.on_full ?? top.buffer.on_full;
      const upstream: UpstreamConfig = {
        ...hub,
        servers: servers ?? top.upstream.servers.map(withoutCredentials),
        stream,
        domain: domain ?? top.upstream.domain,
        prefix: sub(prefix),
        export: exported.map(sub),
        import: top.imports.get(name) ?? [],
        ...(tls === undefined ? {} : { tls }),
        ...auth,
      };
      const buffer: BufferConfig = {
        ...top.buffer,
        max_bytes: a.buffer.max_bytes ?? top.buffer.max_bytes,
        max_messages: a.buffer.max_messages ?? top.buffer.max_messages,
        max_age: a.buffer.max_age ?? top.buffer.max_age,
        on_full: onFull,
        classes: (a.buffer.classes ?? whole.buffer.classes).map((cls) => ({
          ...cls,
          on_full: cls.on_full ?? onFull,
        })),
      };
      return [name, { ...a, upstream, buffer }];
    }),
  );
}

/**
 * Every account in one shape, the global account `$G` first (built from the top level:
 * `authorization.users`, `upstream`, `buffer`; it exports and imports nothing), then
 * `accounts` in the file's order; each with the serial ports whose devices are in it.
 */
export function accountsOf(config: LeafgateConfig): readonly AccountConfig[] {
  const portsOf = (name: string) => config.serial.ports.filter((p) => p.account === name);
  return [
    {
      name: GLOBAL_ACCOUNT,
      users: config.authorization.users,
      exports: [],
      imports: [],
      upstream: config.upstream,
      buffer: config.buffer,
      serialPorts: portsOf(GLOBAL_ACCOUNT),
    },
    ...Object.entries(config.accounts).map(([name, a]) => ({
      name,
      users: a.users,
      exports: a.exports,
      imports: a.imports,
      upstream: a.upstream,
      buffer: a.buffer,
      serialPorts: portsOf(name),
    })),
  ];
}
