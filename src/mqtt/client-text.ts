/** Client-chosen text (ids, user names, topics) is cut to this in logs. */
const MAX_LOGGED_CLIENT_TEXT = 64;

/** A client-chosen string for a log line: at most MAX_LOGGED_CLIENT_TEXT characters. */
export function clip(text: string | undefined): string | undefined {
  if (text === undefined || text.length <= MAX_LOGGED_CLIENT_TEXT) return text;
  return `${text.slice(0, MAX_LOGGED_CLIENT_TEXT)}…`;
}

export { sourceAddress } from "../core/index.js";

/** `text` cut to at most `maxBytes` of UTF-8, never inside a character. */
export function cutUtf8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  let out = "";
  let bytes = 0;
  for (const ch of text) {
    const size = Buffer.byteLength(ch);
    if (bytes + size > maxBytes) break;
    out += ch;
    bytes += size;
  }
  return out;
}
