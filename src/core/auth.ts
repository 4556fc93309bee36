import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import { AccountsError, DEFAULT_ACCOUNT } from "./accounts.js";
import { type Clock, systemClock } from "./clock.js";
import { patternCovers, subjectMatches } from "./subject.js";

/** Patterns allowed and denied (`%u` and `%c` substituted per client); config's shape. */
export interface PermissionRule {
  readonly allow: readonly string[];
  readonly deny: readonly string[];
}
export interface PermissionsConfig {
  readonly publish: PermissionRule;
  readonly subscribe: PermissionRule;
}
/**
 * A configured user: its scrypt hash, its own permissions (null: the defaults) and its
 * account (absent: `$G`, where `authorization.users` are).
 */
export interface UserConfig {
  readonly user: string;
  readonly password: string;
  readonly permissions: PermissionsConfig | null;
  readonly account?: string | undefined;
}

/** scrypt cost: ~50 ms on a Raspberry Pi 4 core, off the event loop (libuv pool). */
const SCRYPT = { N: 16_384, r: 8, p: 1 } as const;
const KEY_BYTES = 32;
const SALT_BYTES = 16;
const SCRYPT_MAX_MEMORY = 64 * 1024 * 1024;

function derive(password: Buffer, salt: Buffer, N: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password, salt, KEY_BYTES, { N, r, p, maxmem: SCRYPT_MAX_MEMORY }, (err, key) =>
      err ? reject(err) : resolve(key),
    ),
  );
}

/** `$scrypt$N=16384,r=8,p=1$<salt>$<key>` (base64), as `leafgate passwd` prints. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const key = await derive(Buffer.from(password), salt, SCRYPT.N, SCRYPT.r, SCRYPT.p);
  return `$scrypt$N=${SCRYPT.N},r=${SCRYPT.r},p=${SCRYPT.p}$${salt.toString("base64")}$${key.toString("base64")}`;
}

const HASH = /^\$scrypt\$N=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/;

export async function verifyPassword(password: Uint8Array, hash: string): Promise<boolean> {
  const m = HASH.exec(hash);
  if (m === null) return false;
  const expected = Buffer.from(m[5]!, "base64");
  const key = await derive(
    Buffer.from(password),
    Buffer.from(m[4]!, "base64"),
    Number(m[1]),
    Number(m[2]),
    Number(m[3]),
  );
  return key.length === expected.length && timingSafeEqual(key, expected);
}

/** What one connected client may do, with %u and %c already substituted. */
export interface Permissions {
  canPublish(subject: string): boolean;
  /** A subscription pattern is allowed when an allow pattern covers it and no deny does. */
  canSubscribe(pattern: string): boolean;
  /** Deliveries on denied subjects are held back even under a wider allowed subscription. */
  mayReceive(subject: string): boolean;
}

/**
 * The system's namespace (`$SYS.`, MQTT `$SYS/`): the gateway publishes its stats there,
 * and no client may publish into it, whatever its permissions, or anyone could forge the
 * figures a monitor trusts. Mosquitto refuses such PUBLISHes too.
 */
export const SYSTEM_SUBJECT_PREFIX = "$SYS.";

const isSystem = (subject: string): boolean => subject.startsWith(SYSTEM_SUBJECT_PREFIX);

export const ALLOW_ALL: Permissions = {
  canPublish: (s) => !isSystem(s),
  canSubscribe: () => true,
  mayReceive: () => true,
};

/** For an owner who could not log in today: nothing is published in its name. */
const DENY_ALL: Permissions = {
  canPublish: () => false,
  canSubscribe: () => false,
  mayReceive: () => false,
};

function substitute(rule: PermissionRule, user: string, clientId: string): PermissionRule {
  // A substituted value must stay one token, or "%u" could widen a pattern.
  const token = (s: string): string => s.replace(/[.*>\s]/g, "_");
  const sub = (p: string): string =>
    p.replaceAll("%u", token(user)).replaceAll("%c", token(clientId));
  return { allow: rule.allow.map(sub), deny: rule.deny.map(sub) };
}

/** A pattern that names something: at least one token is not a wildcard. */
function namesSubjects(pattern: string): boolean {
  return pattern.split(".").some((t) => t !== "*" && t !== ">");
}

/**
 * A test for one pattern, cheap where it can be: `>` matches all, a literal subject by
 * equality, anything else only past its literal first tokens (a string prefix) before
 * the full match. Permissions run on every PUBLISH and delivery.
 */
function matcher(pattern: string): (subject: string) => boolean {
  if (pattern === ">") return () => true;
  const tokens = pattern.split(".");
  const wild = tokens.findIndex((t) => t === "*" || t === ">");
  if (wild < 0) return (s) => s === pattern;
  const prefix = wild === 0 ? "" : `${tokens.slice(0, wild).join(".")}.`;
  return (s) => s.startsWith(prefix) && subjectMatches(pattern, s);
}

const any = (matchers: readonly ((s: string) => boolean)[], s: string): boolean => {
  for (const m of matchers) if (m(s)) return true;
  return false;
};

/**
 * The permission rules of one client. `hubOnly` are the subjects imported from the hub
 * (`upstream.import`): only the hub writes there, so a local client may publish into them
 * only when an allow pattern that names them covers the subject — `cmd.gw1.>` or
 * `cmd.*.valve` does, a bare `>` or `*.>` does not. Otherwise any local client could
 * forge the hub's commands.
 */
export function compilePermissions(
  config: PermissionsConfig,
  user: string,
  clientId: string,
  hubOnly: readonly string[] = [],
): Permissions {
  const pub = substitute(config.publish, user, clientId);
  const subr = substitute(config.subscribe, user, clientId);
  const everything = (r: PermissionRule) => r.deny.length === 0 && r.allow.includes(">");
  if (hubOnly.length === 0 && everything(pub) && everything(subr)) return ALLOW_ALL;
  const pubAllow = pub.allow.map(matcher);
  const pubDeny = pub.deny.map(matcher);
  const hub = hubOnly.map(matcher);
  const grants = pub.allow.filter(namesSubjects).map(matcher);
  const receiveDeny = subr.deny.map(matcher);
  return {
    canPublish: (s) =>
      any(pubAllow, s) && !any(pubDeny, s) && (!any(hub, s) || any(grants, s)) && !isSystem(s),
    canSubscribe: (pattern) =>
      subr.allow.some((p) => patternCovers(p, pattern)) &&
      !subr.deny.some((p) => patternCovers(p, pattern)),
    mayReceive: (s) => receiveDeny.length === 0 || !any(receiveDeny, s),
  };
}

/**
 * Whose a session (and its will) is: a user's name, or ANONYMOUS. User names are never
 * empty (the config requires one), so the two cannot be confused.
 */
export const ANONYMOUS = "";

export type AuthResult =
  | {
      readonly ok: true;
      readonly user: string | undefined;
      readonly permissions: Permissions;
      /** The user's account; `$G` for anonymous and token clients. */
      readonly account: string;
    }
  | {
      readonly ok: false;
      readonly returnCode: 4 | 5;
      readonly reason: string;
      /** Why, for counting: a password that did not match, or a policy that said no. */
      readonly refusal: "bad-credentials" | "anonymous-disabled" | "locked-out";
      /** Set when this failure locked its source address out. */
      readonly lockout?: Lockout;
    };

/** An address that just crossed `failed_logins_per_address`. */
export interface Lockout {
  readonly address: string;
  readonly failures: number;
  readonly forMs: number;
}

/** Longest lockout, however often an address comes back: its backoff doubles up to this. */
const MAX_LOCKOUT_MS = 60 * 60 * 1000;
/**
 * Addresses remembered at most; past it the oldest quiet ones are forgotten. ~100 bytes
 * each: 10,000 cost about a megabyte, and on a shop-floor network that is every host.
 */
const MAX_TRACKED_ADDRESSES = 10_000;

interface AddressRecord {
  /** Failed logins in the window that began at `windowStartMs`. */
  failures: number;
  windowStartMs: number;
  /** Password checks running now: they count towards the limit until they end. */
  checking: number;
  lockedUntilMs: number;
  /** Lockouts in a row; each lasts twice the one before. */
  streak: number;
}

/**
 * Failed logins per source address (issue 10: scrypt is a CPU lever). Past `maxFailures`
 * within `windowMs` an address is locked out for `windowMs`, then twice that each time it
 * comes back within an hour, up to an hour; a successful login clears its record. Checks
 * still running count as failures-to-be, so a burst of CONNECTs cannot start more than
 * `maxFailures` hashes. Pure bookkeeping on a clock given to it.
 */
export class LoginGuard {
  readonly #maxFailures: number;
  readonly #windowMs: number;
  readonly #maxAddresses: number;
  /** In order of last use: the first ones are the first to forget. */
  readonly #records = new Map<string, AddressRecord>();

  constructor(options: { maxFailures: number; windowMs: number; maxAddresses?: number }) {
    this.#maxFailures = options.maxFailures;
    this.#windowMs = options.windowMs;
    this.#maxAddresses = options.maxAddresses ?? MAX_TRACKED_ADDRESSES;
  }

  get size(): number {
    return this.#records.size;
  }

  /** True while CONNECTs from `address` are refused without a password check. */
  lockedOut(address: string, nowMs: number): boolean {
    if (this.#maxFailures === 0) return false;
    const r = this.#records.get(address);
    if (r === undefined) return false;
    if (r.lockedUntilMs > nowMs) return true;
    const failures = nowMs - r.windowStartMs >= this.#windowMs ? 0 : r.failures;
    return failures + r.checking >= this.#maxFailures;
  }

  /** A password check begins; false (and nothing begins) when the address is locked out. */
  begin(address: string, nowMs: number): boolean {
    if (this.#maxFailures === 0) return true;
    if (this.lockedOut(address, nowMs)) return false;
    const r = this.#touch(address, nowMs);
    r.checking++;
    return true;
  }

  /** A check that `begin` allowed ended; returns the lockout a failure caused, if any. */
  end(address: string, ok: boolean, nowMs: number): Lockout | undefined {
    if (this.#maxFailures === 0) return undefined;
    const r = this.#records.get(address);
    if (r === undefined) return undefined;
    r.checking = Math.max(0, r.checking - 1);
    if (ok) {
      r.failures = 0;
      r.streak = 0;
      if (r.checking === 0 && r.lockedUntilMs <= nowMs) this.#records.delete(address);
      return undefined;
    }
    if (nowMs - r.windowStartMs >= this.#windowMs) {
      r.failures = 0;
      r.windowStartMs = nowMs;
    }
    r.failures++;
    if (r.failures < this.#maxFailures) return undefined;
    // Quiet for the longest lockout since the last one ended: a fresh start.
    if (nowMs - r.lockedUntilMs >= MAX_LOCKOUT_MS) r.streak = 0;
    const forMs = Math.min(this.#windowMs * 2 ** r.streak, MAX_LOCKOUT_MS);
    r.streak++;
    r.lockedUntilMs = nowMs + forMs;
    const failures = r.failures;
    // After the lockout the address gets a fresh window.
    r.failures = 0;
    r.windowStartMs = r.lockedUntilMs;
    return { address, failures, forMs };
  }

  #touch(address: string, nowMs: number): AddressRecord {
    let r = this.#records.get(address);
    if (r !== undefined) {
      // Most recently used last.
      this.#records.delete(address);
    } else {
      r = { failures: 0, windowStartMs: nowMs, checking: 0, lockedUntilMs: 0, streak: 0 };
      this.#forgetOldest(nowMs);
    }
    this.#records.set(address, r);
    return r;
  }

  /**
   * Makes room for one more: the oldest quiet records go first; locked or busy ones only
   * if every record is (their `end` then finds nothing, which is harmless).
   */
  #forgetOldest(nowMs: number): void {
    if (this.#records.size < this.#maxAddresses) return;
    for (const [address, r] of this.#records) {
      if (r.checking > 0 || r.lockedUntilMs > nowMs) continue;
      this.#records.delete(address);
      if (this.#records.size < this.#maxAddresses) return;
    }
    // Every one is busy: the oldest goes anyway; the map stays bounded.
    const first = this.#records.keys().next();
    if (!first.done) this.#records.delete(first.value);
  }
}

/** Checked for unknown users and absent tokens, so timing does not tell which exist. */
const DUMMY_HASH = "$scrypt$N=16384,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA";

/** Whether a protocol's clients may connect without credentials, and the key that says so. */
export interface AnonymousPolicy {
  readonly allowed: boolean;
  readonly key: string;
}

/** Checks CONNECT credentials against the configured users. */
export class Authenticator {
  readonly #users: Map<string, UserConfig>;
  readonly #defaults: PermissionsConfig;
  readonly #allowAnonymous: boolean;
  readonly #hubOnly: readonly string[];
  readonly #guard: LoginGuard;
  readonly #clock: Clock;
  readonly #tokenHash: string | undefined;

  constructor(options: {
    users: readonly UserConfig[];
    defaultPermissions: PermissionsConfig;
    allowAnonymous: boolean;
    /** `upstream.import`: subjects only the hub writes (see compilePermissions). */
    hubOnly?: readonly string[];
    /** Failed logins per source address before a lockout; 0 = no limit. */
    failedLoginsPerAddress?: number;
    failedLoginWindowMs?: number;
    /** Lockout windows are measured on it. */
    clock?: Clock;
    /** `authorization.token`'s scrypt hash: NATS token auth, with default permissions. */
    tokenHash?: string | null;
  }) {
    this.#tokenHash = options.tokenHash ?? undefined;
    this.#clock = options.clock ?? systemClock;
    this.#users = new Map();
    for (const u of options.users) {
      const known = this.#users.get(u.user);
      // The config refuses this first; a name in two accounts must not pick one silently.
      if (known !== undefined) {
        throw new AccountsError(
          `user "${u.user}" is listed twice (accounts "${known.account ?? DEFAULT_ACCOUNT}" ` +
            `and "${u.account ?? DEFAULT_ACCOUNT}"): a user name must be unique across accounts`,
        );
      }
      this.#users.set(u.user, u);
    }
    this.#defaults = options.defaultPermissions;
    this.#allowAnonymous = options.allowAnonymous;
    this.#hubOnly = options.hubOnly ?? [];
    this.#guard = new LoginGuard({
      maxFailures: options.failedLoginsPerAddress ?? 0,
      windowMs: options.failedLoginWindowMs ?? 60_000,
    });
  }

  get hasUsers(): boolean {
    return this.#users.size > 0;
  }

  /** True while CONNECTs from `address` are refused: too many failed logins from it. */
  lockedOut(address: string, nowMs = this.#clock.now()): boolean {
    return this.#guard.lockedOut(address, nowMs);
  }

  get hasToken(): boolean {
    return this.#tokenHash !== undefined;
  }

  /**
   * Anonymous clients are decided at once; users need a (slow, async) hash check. Each
   * protocol has its own switch (`policy`; MQTT's by default).
   */
  anonymous(
    clientId: string,
    policy: AnonymousPolicy = { allowed: this.#allowAnonymous, key: "mqtt.allow_anonymous" },
  ): AuthResult {
    if (!policy.allowed) {
      return {
        ok: false,
        returnCode: 5,
        reason: `anonymous access is disabled (${policy.key})`,
        refusal: "anonymous-disabled",
      };
    }
    return {
      ok: true,
      user: undefined,
      permissions: compilePermissions(this.#defaults, "", clientId, this.#hubOnly),
      account: DEFAULT_ACCOUNT,
    };
  }

  /**
   * Checks a user's password, unless `address` is locked out (then no hash is computed).
   * The reason given never repeats the user name: it is the client's choice.
   */
  async user(
    username: string,
    password: Uint8Array | undefined,
    clientId: string,
    address: string,
  ): Promise<AuthResult> {
    const user = this.#users.get(username);
    // Unknown users cost a hash too, so timing does not tell which names exist.
    return this.#verify(address, password ?? new Uint8Array(0), user?.password, {
      reason: "bad user name or password",
      accepted: () => ({
        ok: true,
        user: username,
        permissions: compilePermissions(
          user!.permissions ?? this.#defaults,
          username,
          clientId,
          this.#hubOnly,
        ),
        account: user!.account ?? DEFAULT_ACCOUNT,
      }),
    });
  }

  /**
   * Checks a NATS token against `authorization.token`, under the same lockout as
   * passwords; its clients get the default permissions.
   */
  token(token: string, clientId: string, address: string): Promise<AuthResult> {
    return this.#verify(address, Buffer.from(token), this.#tokenHash, {
      reason: "bad token",
      accepted: () => ({
        ok: true,
        user: undefined,
        permissions: compilePermissions(this.#defaults, "", clientId, this.#hubOnly),
        account: DEFAULT_ACCOUNT,
      }),
    });
  }

  /**
   * One secret against one hash (none: a dummy, costing the same, that always fails),
   * unless `address` is locked out (then no hash is computed); failures count towards it.
   */
  async #verify(
    address: string,
    secret: Uint8Array,
    hash: string | undefined,
    outcome: { reason: string; accepted: () => AuthResult },
  ): Promise<AuthResult> {
    if (!this.#guard.begin(address, this.#clock.now())) return lockedOutResult();
    let good: boolean;
    try {
      good = await verifyPassword(secret, hash ?? DUMMY_HASH);
    } catch (err) {
      this.#guard.end(address, false, this.#clock.now());
      throw err;
    }
    const ok = hash !== undefined && good;
    const lockout = this.#guard.end(address, ok, this.#clock.now());
    if (ok) return outcome.accepted();
    return {
      ok: false,
      returnCode: 4,
      reason: outcome.reason,
      refusal: "bad-credentials",
      ...(lockout !== undefined ? { lockout } : {}),
    };
  }

  /**
   * What `owner` may do today, for what is published in its name later (a will): its
   * permissions from the current config, or none if it could not log in now (a user
   * since removed, anonymous since disabled). `undefined`: a session stored before owners
   * were recorded, judged as anonymous.
   */
  permissionsFor(owner: string | undefined, clientId: string): Permissions {
    if (owner === undefined || owner === ANONYMOUS) {
      const result = this.anonymous(clientId);
      return result.ok ? result.permissions : DENY_ALL;
    }
    const user = this.#users.get(owner);
    if (user === undefined) return DENY_ALL;
    return compilePermissions(user.permissions ?? this.#defaults, owner, clientId, this.#hubOnly);
  }

  /**
   * The account `owner` is in today, for what is published in its name later (a will):
   * `$G` for anonymous (and `undefined`, as `permissionsFor`), undefined for a user no
   * longer configured (nothing is published in its name).
   */
  accountFor(owner: string | undefined): string | undefined {
    if (owner === undefined || owner === ANONYMOUS) return DEFAULT_ACCOUNT;
    const user = this.#users.get(owner);
    return user === undefined ? undefined : (user.account ?? DEFAULT_ACCOUNT);
  }
}

function lockedOutResult(): AuthResult {
  return {
    ok: false,
    returnCode: 5,
    reason: "too many failed logins from this address; try again later",
    refusal: "locked-out",
  };
}
