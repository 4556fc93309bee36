/**
 * Rules between keys that hold wherever their section appears: at the top level and in
 * each account (`upstream` and `accounts.<name>.upstream`, `buffer` and
 * `accounts.<name>.buffer`). Each pushes its problems, with their fix, onto `problems`.
 */

/** How a rule names a path in its problems, and where it puts them. */
export interface RuleContext {
  readonly label: (at: string) => string;
  readonly problems: string[];
}

/** A hub connection's ways to authenticate, as the file may hold them. */
interface HubAuth {
  readonly user?: string;
  readonly password?: string;
  readonly token?: string;
  readonly credentials?: string;
  readonly nkey_seed?: string;
}

/** `user` and `password` come together, and one way to authenticate at most. */
export function checkHubAuth(up: HubAuth, at: string, cx: RuleContext): void {
  const { label, problems } = cx;
  for (const [a, b] of [
    ["user", "password"],
    ["password", "user"],
  ] as const) {
    if (a in up && !(b in up)) problems.push(`${label(`${at}.${a}`)}: set without ${at}.${b}`);
  }
  const methods = (["user", "token", "credentials", "nkey_seed"] as const)
    .filter((k) => k in up || (k === "user" && "password" in up))
    .map((k) => (k === "user" ? "user/password" : k));
  if (methods.length > 1) {
    const all = "user/password, token, credentials, nkey_seed";
    problems.push(`${label(at)}: expected at most one of ${all}, got ${methods.join(", ")}`);
  }
}

/** Class names are unique, and `default` is the name of what no class names. */
export function checkClassNames(
  classes: readonly ({ readonly name?: string } | undefined)[],
  at: string,
  cx: RuleContext,
): void {
  const names = new Set<string>();
  for (const [i, cls] of classes.entries()) {
    const where = cx.label(`${at}[${i}].name`);
    if (cls?.name === undefined) continue;
    if (cls.name === "default")
      cx.problems.push(`${where}: "default" is reserved for subjects no class names`);
    else if (names.has(cls.name)) cx.problems.push(`${where}: "${cls.name}" is named twice`);
    else names.add(cls.name);
  }
}

const DEFAULT_NATS_PORT = 4222;
/** `localhost` is where IPv4 clients reach 127.0.0.1. */
export const sameHost = (host: string): string => (host === "localhost" ? "127.0.0.1" : host);

/** The host (brackets removed, `localhost` as 127.0.0.1) and port a server URL dials. */
export function hubAddress(server: string): { host: string; port: number } | undefined {
  const at = /^[a-z]+:\/\/(?:[^@/\s]+@)?(\[[^\]]+\]|[^:/\s]+)(?::(\d+))?/i.exec(server);
  if (at === null) return undefined;
  return {
    host: sameHost(at[1]!.replace(/^\[|\]$/g, "")),
    port: at[2] === undefined ? DEFAULT_NATS_PORT : Number(at[2]),
  };
}
