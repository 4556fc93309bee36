/**
 * MQTT topic ↔ NATS subject mapping, with nats-server's rules (`mqttToNATSSubjectConversion`
 * and `natsSubjectToMQTTTopic` in server/mqtt.go) so a subject made here equals the one
 * nats-server makes for the same topic.
 *
 * Topic → subject, level by level (levels are what `/` separates):
 * - the levels are joined with `.` instead of `/`: `a/b` → `a.b`;
 * - an empty level becomes the token `/`, so leading, trailing and doubled separators
 *   survive: `/a` → `/.a`, `a/` → `a./`, `a//b` → `a./.b`, `/` → `/./`;
 * - a `.` inside a level becomes `//`: `a.b/c` → `a//b.c`;
 * - in a filter `+` (a whole level) becomes `*` and `#` (the whole last level) becomes `>`;
 *   a filter ending in `/#` maps to two patterns, because `#` also matches its parent
 *   level [MQTT-4.7.1-2]: `a/#` → `a` and `a.>` (nats-server subscribes both).
 * Subject → topic is the reverse, scanning left to right as nats-server does: `//` → `.`,
 * `/.` → `/`, any other `.` → `/`, and any other `/` is dropped. It inverts the forward
 * mapping exactly: `toTopic(toSubject(t)) === t`.
 *
 * Rejected, with the rule named in `TopicError.rule`:
 * - an empty topic [MQTT-4.7.3-1], U+0000 [MQTT-4.7.3-2], more than 65535 UTF-8 bytes
 *   [MQTT-4.7.3-3];
 * - `+` or `#` in a topic name [MQTT-3.3.2-2]; in a filter, `#` anywhere but alone in the
 *   last level [MQTT-4.7.1-2], `+` not alone in its level [MQTT-4.7.1-3];
 * - what a NATS subject cannot carry ("nats-subject"): whitespace (anything `\s` matches,
 *   as `isValidSubject` does; MQTT allows it, the NATS wire protocol splits on it), U+007F
 *   (nats-server rejects it), and a level that is exactly `*` or `>` (the token would be a
 *   wildcard, not a literal).
 *
 * Not handled here: filters whose first level is a wildcard do not match topics that begin
 * with `$` [MQTT-4.7.2-1]. That rule is about matching, not naming; the broker applies it.
 *
 * Bounds (`checkTopicBounds`) are separate from validity: a topic may be valid MQTT and
 * still longer or deeper than the gateway takes (`mqtt.max_topic_length`,
 * `mqtt.max_topic_levels`); the rule of that TopicError names the setting.
 */

import { Buffer } from "node:buffer";
import { LeafgateError } from "./errors.js";

/** [MQTT-4.7.3-3]: topics travel as UTF-8 strings with a two-byte length. */
const MAX_TOPIC_BYTES = 0xffff;
/**
 * One UTF-16 code unit encodes to at most 3 UTF-8 bytes (a surrogate pair, two units, to
 * 4), so a string this short cannot be too long and needs no byte count.
 */
const MAX_UNCOUNTED_LENGTH = Math.floor(MAX_TOPIC_BYTES / 3);
/** Longest piece of an offending topic quoted in an error message. */
const MAX_QUOTED_LENGTH = 80;

const NUL = 0x00;
const SPACE = 0x20;
const HASH = 0x23;
const STAR = 0x2a;
const PLUS = 0x2b;
const DOT = 0x2e;
const SLASH = 0x2f;
const GREATER = 0x3e;
const DEL = 0x7f;
/** From `0` up to `~` nothing is special to a single character check (`>` only as a level). */
const PLAIN_FROM = 0x30;

const TOPIC_NAME_FORBIDDEN = /[+#\0]/;

/** Flags set by `scan`, telling the conversion what work is left. */
const HAS_SLASH = 1;
const NEEDS_ESCAPE = 2; // a `.` in a level, or an empty level
const HAS_WILDCARD = 4;

/** How long (UTF-8 bytes) and how deep (levels) a topic or filter may be. */
export interface TopicBounds {
  readonly maxTopicBytes: number;
  readonly maxTopicLevels: number;
}

/** `TopicError.rule` of a topic or filter past `maxTopicBytes`: the setting's name. */
export const TOPIC_TOO_LONG = "mqtt.max_topic_length";
/** `TopicError.rule` of a topic or filter past `maxTopicLevels`: the setting's name. */
export const TOPIC_TOO_MANY_LEVELS = "mqtt.max_topic_levels";

/** A topic or filter that cannot be mapped; `rule` names the clause it breaks. */
export class TopicError extends LeafgateError {
  /** The spec clause, e.g. "[MQTT-4.7.1-2]", or "nats-subject" for our own restriction. */
  readonly rule: string;

  constructor(topic: string, problem: string, rule: string) {
    const suffix = rule.startsWith("[") ? rule : `(${rule})`;
    super("LG_ERR_TOPIC_INVALID", `topic ${quote(topic)}: ${problem} ${suffix}`);
    this.rule = rule;
  }
}

/**
 * Maps an MQTT topic name (as in PUBLISH) to a literal subject. Returns `topic` itself when
 * nothing needs converting. Throws `TopicError`.
 */
export function toSubject(topic: string): string {
  const known = SUBJECTS.get(topic);
  if (known !== undefined) return known;
  const flags = scan(topic, false);
  const subject =
    flags === 0 ? topic : flags === HAS_SLASH ? topic.replaceAll("/", ".") : convertLevels(topic);
  SUBJECTS.set(topic, subject);
  return subject;
}

/**
 * Maps an MQTT topic filter (as in SUBSCRIBE) to the patterns that together match exactly
 * the subjects of the topics it matches: `a/+/b` → `["a.*.b"]`, `a/#` → `["a", "a.>"]`,
 * `#` → `[">"]`. Throws `TopicError`.
 */
export function filterToPatterns(filter: string): string[] {
  const flags = scan(filter, true);
  const pattern =
    flags === 0
      ? filter
      : flags === HAS_SLASH
        ? filter.replaceAll("/", ".")
        : convertLevels(filter);
  // `#` matches its parent level too [MQTT-4.7.1-2]; `#` alone has no parent.
  if (pattern.length > 2 && pattern.endsWith(".>")) return [pattern.slice(0, -2), pattern];
  return [pattern];
}

/**
 * Throws `TopicError` (rule `TOPIC_TOO_LONG` or `TOPIC_TOO_MANY_LEVELS`) when `topic`, a
 * topic name or filter, has more than `maxTopicBytes` UTF-8 bytes or more than
 * `maxTopicLevels` levels (what `/` separates: `a/b` has 2, `/` has 2, `a` has 1). Every
 * later step (mapping, the trie, the store, the hub) costs in proportion to these, so they
 * are checked first. A topic shorter than both bounds costs two comparisons.
 */
export function checkTopicBounds(topic: string, bounds: TopicBounds): void {
  const { maxTopicBytes, maxTopicLevels } = bounds;
  const length = topic.length;
  // A UTF-16 code unit is 1 to 3 UTF-8 bytes (a surrogate pair, two units, is 4).
  if (length > maxTopicBytes || (length * 3 > maxTopicBytes && byteLength(topic) > maxTopicBytes)) {
    throw new TopicError(
      topic,
      `longer than ${maxTopicBytes} bytes (${byteLength(topic)})`,
      TOPIC_TOO_LONG,
    );
  }
  // n levels take n - 1 separators, so a shorter string cannot have too many.
  if (length < maxTopicLevels) return;
  let levels = 1;
  for (let at = topic.indexOf("/"); at >= 0; at = topic.indexOf("/", at + 1)) {
    if (++levels > maxTopicLevels) {
      throw new TopicError(topic, `more than ${maxTopicLevels} levels`, TOPIC_TOO_MANY_LEVELS);
    }
  }
}

/**
 * Maps a literal subject to an MQTT topic name, reversing `toSubject`. Subjects not made by
 * `toSubject` are mapped as nats-server maps them; throws `TopicError` when the result is not
 * a valid topic name (empty, or with `+`, `#` or U+0000 from a NATS publisher).
 */
export function toTopic(subject: string): string {
  const known = TOPICS.get(subject);
  if (known !== undefined) return known;
  const topic = convertSubject(subject);
  TOPICS.set(subject, topic);
  return topic;
}

function convertSubject(subject: string): string {
  let topic: string;
  if (!subject.includes("/")) {
    topic = subject.includes(".") ? subject.replaceAll(".", "/") : subject;
  } else {
    topic = "";
    let from = 0;
    const length = subject.length;
    for (let i = 0; i < length; i++) {
      const c = subject.charCodeAt(i);
      if (c === DOT) {
        topic += `${subject.slice(from, i)}/`;
        from = i + 1;
      } else if (c === SLASH) {
        topic += subject.slice(from, i);
        const next = i + 1 < length ? subject.charCodeAt(i + 1) : -1;
        if (next === DOT) {
          topic += "/";
          i++;
        } else if (next === SLASH) {
          topic += ".";
          i++;
        }
        // A lone `/` (never made by toSubject) is dropped, as nats-server drops it.
        from = i + 1;
      }
    }
    topic += subject.slice(from);
  }
  if (topic.length === 0) {
    throw new TopicError(
      topic,
      `subject ${quote(subject)} maps to an empty topic`,
      "[MQTT-4.7.3-1]",
    );
  }
  if (TOPIC_NAME_FORBIDDEN.test(topic)) {
    if (topic.includes("\0")) throw new TopicError(topic, "contains U+0000", "[MQTT-4.7.3-2]");
    throw new TopicError(topic, "a topic name cannot contain wildcards", "[MQTT-3.3.2-2]");
  }
  checkByteLength(topic);
  return topic;
}

/**
 * The last conversions made, both ways: a gateway sees the same few topics over and over
 * (a sensor publishes on its own), and a string that comes back from here is one the bus's
 * match cache has hashed already. Only what converted is kept (errors are thrown each
 * time), and only short strings; the table is emptied when full, so it is bounded in
 * entries and bytes whatever clients send.
 */
class Conversions {
  readonly #map = new Map<string, string>();

  get(from: string): string | undefined {
    return this.#map.get(from);
  }

  set(from: string, to: string): void {
    if (from.length > CONVERSIONS_MAX_LENGTH) return;
    if (this.#map.size >= CONVERSIONS_MAX_ENTRIES) this.#map.clear();
    this.#map.set(from, to);
  }
}

/** Topics and subjects remembered at most (each at most CONVERSIONS_MAX_LENGTH units). */
const CONVERSIONS_MAX_ENTRIES = 1024;
const CONVERSIONS_MAX_LENGTH = 256;
const SUBJECTS = new Conversions();
const TOPICS = new Conversions();

/**
 * Validates `s` as a topic name or (`filter`) a topic filter and returns `HAS_*` flags for
 * what conversion it needs. One pass, no allocation.
 */
function scan(s: string, filter: boolean): number {
  const length = s.length;
  if (length === 0)
    throw new TopicError(s, "must be at least one character long", "[MQTT-4.7.3-1]");
  checkByteLength(s);
  let flags = 0;
  let levelStart = 0;
  for (let i = 0; i < length; i++) {
    const c = s.charCodeAt(i);
    if (c >= PLAIN_FROM && c < DEL) continue;
    switch (c) {
      case SLASH:
        flags |= HAS_SLASH;
        if (i === levelStart) flags |= NEEDS_ESCAPE;
        else checkLevel(s, levelStart, i);
        levelStart = i + 1;
        break;
      case DOT:
        flags |= NEEDS_ESCAPE;
        break;
      case PLUS:
        if (!filter) throw wildcardInName(s, "+");
        // [MQTT-4.7.1-3]
        if (i !== levelStart || (i + 1 < length && s.charCodeAt(i + 1) !== SLASH)) {
          throw new TopicError(s, '"+" must occupy a whole level', "[MQTT-4.7.1-3]");
        }
        flags |= HAS_WILDCARD;
        break;
      case HASH:
        if (!filter) throw wildcardInName(s, "#");
        // [MQTT-4.7.1-2]
        if (i !== levelStart || i !== length - 1) {
          throw new TopicError(s, '"#" must be alone in the last level', "[MQTT-4.7.1-2]");
        }
        flags |= HAS_WILDCARD;
        break;
      case NUL:
        throw new TopicError(s, "contains U+0000", "[MQTT-4.7.3-2]");
      default:
        if (isWhitespace(c)) {
          throw new TopicError(
            s,
            `contains whitespace ${codePoint(c)}, which a NATS subject cannot carry`,
            "nats-subject",
          );
        }
        if (c === DEL) {
          throw new TopicError(s, "contains U+007F, which nats-server refuses", "nats-subject");
        }
    }
  }
  if (levelStart === length) flags |= NEEDS_ESCAPE;
  else checkLevel(s, levelStart, length);
  return flags;
}

/** A level that is exactly `*` or `>` would turn into a NATS wildcard token. */
function checkLevel(s: string, start: number, end: number): void {
  if (end - start !== 1) return;
  const c = s.charCodeAt(start);
  if (c === STAR || c === GREATER) {
    throw new TopicError(
      s,
      `level "${s[start]}" would be a NATS wildcard, not a literal token`,
      "nats-subject",
    );
  }
}

/** The general (rarer) case: empty levels or dots; `scan` has validated `s`. */
function convertLevels(s: string): string {
  const levels = s.split("/");
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!;
    if (level.length === 0) levels[i] = "/";
    else if (level === "+") levels[i] = "*";
    else if (level === "#") levels[i] = ">";
    else if (level.includes(".")) levels[i] = level.replaceAll(".", "//");
  }
  return levels.join(".");
}

function byteLength(s: string): number {
  return Buffer.byteLength(s, "utf8");
}

function checkByteLength(s: string): void {
  if (s.length <= MAX_UNCOUNTED_LENGTH) return;
  const bytes = byteLength(s);
  if (bytes > MAX_TOPIC_BYTES) {
    throw new TopicError(
      s,
      `encodes to ${bytes} UTF-8 bytes, more than ${MAX_TOPIC_BYTES}`,
      "[MQTT-4.7.3-3]",
    );
  }
}

function wildcardInName(s: string, wildcard: string): TopicError {
  return new TopicError(
    s,
    `wildcard "${wildcard}" is not allowed in a topic name`,
    "[MQTT-3.3.2-2]",
  );
}

/** Exactly the characters `\s` matches (see subject.ts), without a regex per character. */
function isWhitespace(c: number): boolean {
  if (c <= SPACE) return c === SPACE || (c >= 0x09 && c <= 0x0d);
  if (c < 0xa0) return false;
  return (
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000 ||
    c === 0xfeff
  );
}

function codePoint(c: number): string {
  return `U+${c.toString(16).toUpperCase().padStart(4, "0")}`;
}

function quote(s: string): string {
  return JSON.stringify(s.length > MAX_QUOTED_LENGTH ? `${s.slice(0, MAX_QUOTED_LENGTH)}…` : s);
}
