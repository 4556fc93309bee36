/**
 * NATS subject rules, as nats-server applies them: a subject is tokens separated by
 * `.`; no token is empty; no whitespace anywhere. In a pattern a token may be `*`
 * (exactly one token) and the last token may be `>` (one or more tokens). A literal
 * subject (one that is published to) has no wildcard tokens.
 */

const WHITESPACE = /[\s]/;

/** True when `s` is one non-empty token with no `.`, whitespace, `*` or `>`. */
export function isValidToken(s: string): boolean {
  return s.length > 0 && !s.includes(".") && !WHITESPACE.test(s) && s !== "*" && s !== ">";
}

/** True when `s` is a subject that may be published to (no wildcards). */
export function isValidSubject(s: string): boolean {
  if (s.length === 0 || WHITESPACE.test(s)) return false;
  for (const token of s.split(".")) {
    if (token.length === 0 || token === "*" || token === ">") return false;
  }
  return true;
}

/** True when `s` is a subscription pattern (wildcards allowed where NATS allows them). */
export function isValidPattern(s: string): boolean {
  if (s.length === 0 || WHITESPACE.test(s)) return false;
  const tokens = s.split(".");
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (token.length === 0) return false;
    if (token === ">" && i !== tokens.length - 1) return false;
  }
  return true;
}

/** True when literal `subject` is matched by `pattern`. */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split(".");
  const s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    const token = p[i];
    if (token === ">") return s.length > i;
    if (i >= s.length) return false;
    if (token !== "*" && token !== s[i]) return false;
  }
  return p.length === s.length;
}

/** True when every subject matched by pattern `inner` is also matched by `outer`. */
export function patternCovers(outer: string, inner: string): boolean {
  const o = outer.split(".");
  const n = inner.split(".");
  for (let i = 0; i < o.length; i++) {
    const token = o[i];
    if (token === ">") return n.length > i;
    if (i >= n.length) return false;
    const other = n[i];
    if (other === ">") return false;
    if (token === "*") continue;
    if (other === "*" || token !== other) return false;
  }
  return o.length === n.length;
}
