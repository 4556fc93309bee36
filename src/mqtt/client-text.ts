/** Client-chosen text (ids, user names, topics) is cut to this in logs. */
const MAX_LOGGED_CLIENT_TEXT = 64;

/** A client-chosen string for a log line: at most MAX_LOGGED_CLIENT_TEXT characters. */
export function clip(text: string | undefined): string | undefined {
  if (text === undefined || text.length <= MAX_LOGGED_CLIENT_TEXT) return text;
  return `${text.slice(0, MAX_LOGGED_CLIENT_TEXT)}…`;
}

/** The address part of `host:port` (`::ffff:` of IPv4-mapped addresses taken off). */
export function sourceAddress(remote: string): string {
  const at = remote.lastIndexOf(":");
  const host = at > 0 ? remote.slice(0, at) : remote;
  return host.startsWith("::ffff:") && host.includes(".") ? host.slice(7) : host;
}
