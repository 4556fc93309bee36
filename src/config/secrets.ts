import { readFileSync } from "node:fs";
import type { LeafgateConfig } from "./schema.js";

/** What a secret is replaced with wherever it would be shown. */
export const MASK = "***";

/**
 * User info in a URL: `scheme://user:password@` or `scheme://token@`, anywhere in a text.
 * The user info ends at the first `@`; it cannot hold `/`, whitespace or quotes (which
 * would end it in a log line's JSON).
 */
const URL_USER_INFO = /\b([a-z][a-z0-9+.-]*:\/\/)([^@/\s"'\\]+)@/gi;

/**
 * NATS nkey seeds: `S`, the key type (user, account, operator, server, cluster, curve),
 * then base32: 58 characters in all. Masked wherever they appear, known or not.
 */
const NKEY_SEED = /\bS[UAONCPX][A-Z2-7]{56}\b/g;

/**
 * Shorter known secrets are not searched for in free text: a two-letter password would
 * mask every word it is part of. They are still masked by path (`password`, `token`...).
 */
const MIN_SCRUBBED_SECRET_LENGTH = 4;

/**
 * Masks the secret part of the user info in every URL in `text`: `user:password@` keeps
 * the user (`user:***@`), a bare `token@` is all secret (`***@`).
 */
export function maskUrls(text: string): string {
  return text.replace(URL_USER_INFO, (_, scheme: string, info: string) => {
    const colon = info.indexOf(":");
    return `${scheme}${colon >= 0 ? `${info.slice(0, colon)}:${MASK}` : MASK}@`;
  });
}

/** The credentials in a server URL's user info: `user:password@` or a bare `token@`. */
export function urlCredentials(
  url: string,
): { user: string; password: string } | { token: string } | undefined {
  const info = /^[a-z][a-z0-9+.-]*:\/\/([^@/\s]+)@/i.exec(url)?.[1];
  if (info === undefined) return undefined;
  const decode = (s: string): string => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  };
  const colon = info.indexOf(":");
  return colon < 0
    ? { token: decode(info) }
    : { user: decode(info.slice(0, colon)), password: decode(info.slice(colon + 1)) };
}

/** `url` without its user info. */
export function withoutCredentials(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/\s]+@/i, "$1");
}

/**
 * Every secret value the configuration holds, to be masked in any text the gateway
 * prints: the hub password, token and nkey seed, passwords and tokens in server URLs (as
 * written and decoded), every line of the `.creds` file (its JWT and its seed), and the
 * password hashes of MQTT users (a leaked hash can be cracked offline), and the HTTP
 * bearer token; the same for every account's upstream and users.
 */
export function secretsOf(config: LeafgateConfig): string[] {
  const secrets: string[] = [];
  const add = (s: string | undefined): void => {
    if (s !== undefined && s.length >= MIN_SCRUBBED_SECRET_LENGTH) secrets.push(s);
  };
  const hubs = [config.upstream, ...Object.values(config.accounts).map((a) => a.upstream)];
  for (const up of hubs) {
    add(up.password);
    add(up.token);
    add(up.nkey_seed);
    for (const server of up.servers) {
      const info = /^[a-z][a-z0-9+.-]*:\/\/([^@/\s]+)@/i.exec(server)?.[1];
      const credentials = urlCredentials(server);
      if (info === undefined || credentials === undefined) continue;
      const colon = info.indexOf(":");
      add(colon < 0 ? info : info.slice(colon + 1));
      add("token" in credentials ? credentials.token : credentials.password);
    }
    if (up.credentials !== undefined) for (const line of credsSecrets(up.credentials)) add(line);
  }
  add(config.http.token);
  for (const u of config.authorization.users) add(u.password);
  for (const a of Object.values(config.accounts)) for (const u of a.users) add(u.password);
  // Longest first, so a secret containing another is masked whole.
  return [...new Set(secrets)].sort((a, b) => b.length - a.length);
}

/** The JWT and the seed of a `.creds` file: the lines between `BEGIN` and `END` markers. */
function credsSecrets(file: string): string[] {
  const lines: string[] = [];
  try {
    let inside = false;
    for (const line of readFileSync(file, "utf8").split(/\r?\n/)) {
      const text = line.trim();
      if (/^-{3,}\s*BEGIN\b/.test(text)) inside = true;
      else if (/^-{3,}\s*END\b/.test(text)) inside = false;
      else if (inside) lines.push(text);
    }
  } catch {
    // Unreadable: the upstream reports it at start, and there is nothing to mask.
  }
  return lines;
}

/**
 * A function that masks, in any text (a log line as JSON, an error message), every one
 * of `secrets` (also as it appears escaped inside a JSON string), the user info of every
 * URL and every nkey seed.
 */
export function secretRedactor(secrets: readonly string[]): (text: string) => string {
  const forms = new Set<string>();
  for (const secret of secrets) {
    if (secret.length < MIN_SCRUBBED_SECRET_LENGTH) continue;
    forms.add(secret);
    forms.add(JSON.stringify(secret).slice(1, -1));
  }
  const known = [...forms].sort((a, b) => b.length - a.length);
  return (text: string): string => {
    let out = text;
    for (const secret of known) if (out.includes(secret)) out = out.replaceAll(secret, MASK);
    return maskUrls(out).replace(NKEY_SEED, MASK);
  };
}
