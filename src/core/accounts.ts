import { SYSTEM_SUBJECT_PREFIX } from "./auth.js";
import { Bus, type BusSubscriber, type BusSubscription } from "./bus.js";
import type { Envelope } from "./envelope.js";
import { LeafgateError } from "./errors.js";
import type { Replies } from "./replies.js";
import { isValidPattern, isValidSubject, patternCovers, subjectMatches } from "./subject.js";

/**
 * nats-server's global account: without accounts configured everything is in it, and with
 * them it keeps `authorization.users`, the token, anonymous clients and unassigned serial
 * ports. It always exists.
 */
export const DEFAULT_ACCOUNT = "$G";

/** An account name other than `$G`: one token a hub subject or a message id can carry. */
const ACCOUNT_NAME = /^[A-Za-z0-9_-]+$/;

/**
 * Request-reply plumbing (`Replies` routes, NATS inboxes): an account's own, never
 * bridged, even under an import of `>` (request-reply across accounts is not offered).
 */
const INBOX_PREFIX = "_INBOX.";

/** What other accounts may import from this one: a subject pattern. */
export interface StreamExport {
  readonly stream: string;
}

/**
 * Messages of `account` on subjects matching `stream`, delivered in the importing account
 * at `prefix.<subject>` (or `<subject>` without a prefix).
 */
export interface StreamImport {
  readonly stream: string;
  readonly account: string;
  readonly prefix?: string | undefined;
}

export interface AccountOptions {
  readonly name: string;
  readonly exports?: readonly StreamExport[];
  readonly imports?: readonly StreamImport[];
}

export interface AccountSpaceOptions {
  /** `$G` is always there; list it only to give it exports or imports. */
  readonly accounts: readonly AccountOptions[];
  /** Each account's bus (default: a plain `new Bus()`). */
  readonly makeBus?: (account: string) => Bus;
  /** Each account's request-reply routes, on its bus; none when absent. */
  readonly makeReplies?: (bus: Bus, account: string) => Replies;
  /**
   * Hears of a crossed copy that a durable subscriber of the importing account failed to
   * commit (its buffer full, its disk full). The exporter's publish does not fail for it.
   */
  readonly onBridgeError?: (err: unknown, crossing: Crossing) => void;
}

/** One message crossing: from which account, to which, on which subject there. */
export interface Crossing {
  readonly from: string;
  readonly to: string;
  readonly subject: string;
}

/** One account: its own subject space and, when asked for, its own request-reply routes. */
export interface Account {
  readonly name: string;
  readonly bus: Bus;
  readonly replies: Replies | undefined;
}

/** What one bridge (one exporter → importer pair) has carried. */
export interface BridgeStats {
  readonly from: string;
  readonly to: string;
  /** Copies published in the importing account. */
  readonly crossed: number;
  /** Of those, copies a durable subscriber there failed to commit. */
  readonly failed: number;
}

/** An account declaration the core cannot build (the config should have refused it). */
export class AccountsError extends LeafgateError {
  constructor(message: string) {
    super("LG_ERR_ACCOUNTS_INVALID", message);
  }
}

interface Route {
  readonly pattern: string;
  /** With its trailing ".", or "" for none. */
  readonly prefix: string;
}

/**
 * Every import that one account makes from one other: a single subscriber on the
 * exporter's bus, so a message matching several of its patterns is taken once and
 * published once per distinct subject it maps to in the importer.
 *
 * Passive: `hasInterest` does not count it, so a request published in the exporter is not
 * "served" by an importer's copy (which could never answer it: request-reply across
 * accounts, service imports in nats-server's terms, is not offered; the copy carries no
 * reply subject).
 */
class Bridge implements BusSubscriber {
  readonly passive = true;
  readonly from: string;
  readonly to: string;
  readonly #target: Bus;
  readonly #routes: readonly Route[];
  readonly #onError: (err: unknown, crossing: Crossing) => void;
  #subscriptions: BusSubscription[] = [];
  crossed = 0;
  failed = 0;

  constructor(
    from: string,
    to: string,
    target: Bus,
    routes: readonly Route[],
    onError: (err: unknown, crossing: Crossing) => void,
  ) {
    this.from = from;
    this.to = to;
    this.#target = target;
    this.#routes = routes;
    this.#onError = onError;
  }

  open(source: Bus): void {
    this.#subscriptions = this.#routes.map((r) => source.subscribe(r.pattern, this));
  }

  close(): void {
    for (const s of this.#subscriptions) s.unsubscribe();
    this.#subscriptions = [];
  }

  /**
   * Publishes the copies synchronously, in the publisher's turn, and returns when the
   * importer's durable subscribers have committed them: the exporter's publish (an MQTT
   * PUBACK) then means the importer's outbox copy exists too. A copy they refused is
   * counted and reported, never an error for the exporter's publisher: one account's full
   * buffer does not refuse another's messages. At most once: a refused copy is not retried.
   */
  deliver(message: Envelope): Promise<void> | undefined {
    if (message.crossedFrom !== undefined || message.subject.startsWith(INBOX_PREFIX)) {
      return undefined;
    }
    const routes = this.#routes;
    // An account's `$SYS` figures cross only under a route that names `$SYS` (`$SYS.>`),
    // not under `>`: there they would mix with the importer's own figures.
    const system = message.subject.startsWith(SYSTEM_SUBJECT_PREFIX);
    // One route: the bus matched it already.
    if (routes.length === 1) {
      const route = routes[0]!;
      if (system && !route.pattern.startsWith(SYSTEM_SUBJECT_PREFIX)) return undefined;
      return this.#cross(message, route.prefix + message.subject);
    }
    const subjects = new Set<string>();
    for (const r of routes) {
      if (system && !r.pattern.startsWith(SYSTEM_SUBJECT_PREFIX)) continue;
      if (subjectMatches(r.pattern, message.subject)) subjects.add(r.prefix + message.subject);
    }
    const commits: Promise<void>[] = [];
    for (const subject of subjects) commits.push(this.#cross(message, subject));
    return commits.length === 1 ? commits[0] : Promise.all(commits).then(() => undefined);
  }

  #cross(message: Envelope, subject: string): Promise<void> {
    this.crossed++;
    return this.#target.publish(crossedCopy(message, subject, this.from)).catch((err) => {
      this.failed++;
      this.#onError(err, { from: this.from, to: this.to, subject });
    });
  }
}

/** What a copy leaves behind (see `crossedCopy`). */
type Dropped = "reply" | "publisher" | "retain";

/**
 * A message as it appears in the importing account. Left behind: its reply subject (an
 * inbox of the exporter, which nothing in the importer may answer into), its MQTT
 * publisher (client ids are per account, so No Local must not compare them across) and
 * its retain flag (the importer's retained store never holds it).
 *
 * Written out field by field: object spread and rest cost ~1 µs a message here, this
 * ~20 ns. The type makes every field of `Envelope` appear, so a field added there does not
 * compile here until it is kept or dropped on purpose.
 */
function crossedCopy(m: Envelope, subject: string, from: string): Envelope {
  const copy: { readonly [K in Exclude<keyof Envelope, Dropped>]-?: Envelope[K] } = {
    subject,
    payload: m.payload,
    headers: m.headers,
    receivedAtMs: m.receivedAtMs,
    origin: m.origin,
    qos: m.qos,
    properties: m.properties,
    expiresAtMs: m.expiresAtMs,
    crossedFrom: from,
  };
  return copy;
}

const quoted = (names: Iterable<string>): string =>
  [...names].map((n) => `"${n}"`).join(", ") || "nothing";

/**
 * Accounts as nats-server has them: each its own subject space (its own `Bus`), so a
 * message published in one is never delivered in another, whatever the subscription —
 * except through a declared stream export/import pair. For each account that imports from
 * another, a bridge subscribes on the exporter's bus to the imported patterns and
 * republishes what it takes in the importer's bus (under the import's prefix), marked as
 * crossed; a crossed message is never bridged again, so `A→B` and `B→C` do not make
 * `A→C`, and `A↔B` does not ping-pong. Stream imports only: a request crossing carries no
 * reply subject (service imports are out of scope; see docs/accounts.md).
 *
 * The declarations are checked here as well as in the config: an import names an existing
 * other account, its prefix is a subject, and one of that account's exports covers it.
 */
export class AccountSpace {
  readonly #accounts = new Map<string, Account>();
  readonly #bridges: Bridge[] = [];
  #closed = false;

  constructor(options: AccountSpaceOptions) {
    const declared = new Map<string, AccountOptions>();
    declared.set(DEFAULT_ACCOUNT, { name: DEFAULT_ACCOUNT });
    const listed = new Set<string>();
    for (const account of options.accounts) {
      const name = account.name;
      if (name !== DEFAULT_ACCOUNT && !ACCOUNT_NAME.test(name)) {
        throw new AccountsError(
          `account name "${name}" is invalid: use letters, digits, "_" and "-" ` +
            `(${DEFAULT_ACCOUNT} is the default account's)`,
        );
      }
      if (listed.has(name)) throw new AccountsError(`account "${name}" is declared twice`);
      listed.add(name);
      declared.set(name, account);
    }
    for (const account of declared.values()) checkExports(account);
    // Per importer, per exporter: the routes of one bridge.
    const bridges: { from: string; to: string; routes: Route[] }[] = [];
    for (const account of declared.values()) {
      const byExporter = new Map<string, Route[]>();
      for (const imp of account.imports ?? []) {
        checkImport(account.name, imp, declared);
        const prefix = imp.prefix !== undefined ? `${imp.prefix}.` : "";
        const routes = byExporter.get(imp.account);
        if (routes !== undefined) routes.push({ pattern: imp.stream, prefix });
        else byExporter.set(imp.account, [{ pattern: imp.stream, prefix }]);
      }
      for (const [from, routes] of byExporter) bridges.push({ from, to: account.name, routes });
    }

    const makeBus = options.makeBus ?? (() => new Bus());
    for (const name of declared.keys()) {
      const bus = makeBus(name);
      this.#accounts.set(name, { name, bus, replies: options.makeReplies?.(bus, name) });
    }
    const onError = options.onBridgeError ?? (() => {});
    for (const { from, to, routes } of bridges) {
      const bridge = new Bridge(from, to, this.account(to).bus, routes, onError);
      bridge.open(this.account(from).bus);
      this.#bridges.push(bridge);
    }
  }

  /** The account called `name`; throws for a name that was not declared. */
  account(name: string): Account {
    const account = this.#accounts.get(name);
    if (account === undefined) {
      throw new AccountsError(`no account "${name}" (accounts: ${quoted(this.#accounts.keys())})`);
    }
    return account;
  }

  /** Every account, `$G` first, then in the order declared. */
  get accounts(): readonly Account[] {
    return [...this.#accounts.values()];
  }

  get bridges(): readonly BridgeStats[] {
    return this.#bridges.map((b) => ({
      from: b.from,
      to: b.to,
      crossed: b.crossed,
      failed: b.failed,
    }));
  }

  /**
   * Removes the bridges and closes the request-reply routes this space made. The buses
   * stay usable, each on its own; closing again does nothing.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const bridge of this.#bridges) bridge.close();
    for (const account of this.#accounts.values()) account.replies?.close();
  }
}

function checkExports(account: AccountOptions): void {
  for (const exp of account.exports ?? []) {
    if (!isValidPattern(exp.stream)) {
      throw new AccountsError(
        `account "${account.name}": export "${exp.stream}" is not a subject pattern ` +
          `(tokens separated by ".", "*" for one token, ">" last for the rest, no spaces)`,
      );
    }
  }
}

function checkImport(
  importer: string,
  imp: StreamImport,
  declared: ReadonlyMap<string, AccountOptions>,
): void {
  const at = `account "${importer}": import of "${imp.stream}" from "${imp.account}"`;
  if (!isValidPattern(imp.stream)) {
    throw new AccountsError(
      `${at}: "${imp.stream}" is not a subject pattern ` +
        `(tokens separated by ".", "*" for one token, ">" last for the rest, no spaces)`,
    );
  }
  const exporter = declared.get(imp.account);
  if (exporter === undefined) {
    throw new AccountsError(
      `${at}: there is no account "${imp.account}" (accounts: ${quoted(declared.keys())})`,
    );
  }
  if (imp.account === importer) {
    throw new AccountsError(
      `${at}: an account cannot import from itself; its own subjects are already its own`,
    );
  }
  if (imp.prefix !== undefined && !isValidSubject(imp.prefix)) {
    throw new AccountsError(
      `${at}: prefix "${imp.prefix}" is not a subject ` +
        `(tokens separated by ".", no wildcards, no spaces), e.g. "shared"`,
    );
  }
  const exports = (exporter.exports ?? []).map((e) => e.stream);
  if (!exports.some((e) => patternCovers(e, imp.stream))) {
    throw new AccountsError(
      `${at}: import without a matching export: "${imp.account}" exports ${quoted(exports)}; ` +
        `add an export to "${imp.account}" that covers "${imp.stream}", or narrow the import`,
    );
  }
}
