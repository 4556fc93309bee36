import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import type { PermissionRule, PermissionsConfig, UserConfig } from "../config/index.js";
import { patternCovers, subjectMatches } from "../core/index.js";

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

export const ALLOW_ALL: Permissions = {
  canPublish: () => true,
  canSubscribe: () => true,
  mayReceive: () => true,
};

function substitute(rule: PermissionRule, user: string, clientId: string): PermissionRule {
  // A substituted value must stay one token, or "%u" could widen a pattern.
  const token = (s: string): string => s.replace(/[.*>\s]/g, "_");
  const sub = (p: string): string =>
    p.replaceAll("%u", token(user)).replaceAll("%c", token(clientId));
  return { allow: rule.allow.map(sub), deny: rule.deny.map(sub) };
}

export function compilePermissions(
  config: PermissionsConfig,
  user: string,
  clientId: string,
): Permissions {
  const pub = substitute(config.publish, user, clientId);
  const subr = substitute(config.subscribe, user, clientId);
  const everything = (r: PermissionRule) => r.deny.length === 0 && r.allow.includes(">");
  if (everything(pub) && everything(subr)) return ALLOW_ALL;
  return {
    canPublish: (s) =>
      pub.allow.some((p) => subjectMatches(p, s)) && !pub.deny.some((p) => subjectMatches(p, s)),
    canSubscribe: (pattern) =>
      subr.allow.some((p) => patternCovers(p, pattern)) &&
      !subr.deny.some((p) => patternCovers(p, pattern)),
    mayReceive: (s) => subr.deny.length === 0 || !subr.deny.some((p) => subjectMatches(p, s)),
  };
}

export type AuthResult =
  | { readonly ok: true; readonly user: string | undefined; readonly permissions: Permissions }
  | { readonly ok: false; readonly returnCode: 4 | 5; readonly reason: string };

/** Checks CONNECT credentials against the configured users. */
export class Authenticator {
  readonly #users: Map<string, UserConfig>;
  readonly #defaults: PermissionsConfig;
  readonly #allowAnonymous: boolean;

  constructor(options: {
    users: readonly UserConfig[];
    defaultPermissions: PermissionsConfig;
    allowAnonymous: boolean;
  }) {
    this.#users = new Map(options.users.map((u) => [u.user, u]));
    this.#defaults = options.defaultPermissions;
    this.#allowAnonymous = options.allowAnonymous;
  }

  get hasUsers(): boolean {
    return this.#users.size > 0;
  }

  /** Anonymous clients are decided at once; users need a (slow, async) hash check. */
  anonymous(clientId: string): AuthResult {
    if (!this.#allowAnonymous) {
      return {
        ok: false,
        returnCode: 5,
        reason: "anonymous access is disabled (mqtt.allow_anonymous)",
      };
    }
    return {
      ok: true,
      user: undefined,
      permissions: compilePermissions(this.#defaults, "", clientId),
    };
  }

  async user(
    username: string,
    password: Uint8Array | undefined,
    clientId: string,
  ): Promise<AuthResult> {
    const user = this.#users.get(username);
    // Unknown users cost a hash too, so timing does not tell which names exist.
    const hash = user?.password ?? "$scrypt$N=16384,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA";
    const good = await verifyPassword(password ?? new Uint8Array(0), hash);
    if (user === undefined || !good) {
      return { ok: false, returnCode: 4, reason: `bad user name or password for "${username}"` };
    }
    return {
      ok: true,
      user: username,
      permissions: compilePermissions(user.permissions ?? this.#defaults, username, clientId),
    };
  }
}
