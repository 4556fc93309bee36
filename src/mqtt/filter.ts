import { Buffer } from "node:buffer";
import {
  checkTopicBounds,
  filterToPatterns,
  isValidToken,
  TOPIC_TOO_LONG,
  type TopicBounds,
  TopicError,
} from "../core/index.js";

/** What a SUBSCRIBE topic filter means on the bus. */
export interface ParsedFilter {
  /** The shared subscription's group, for `$share/<group>/<filter>`. */
  readonly share: string | undefined;
  readonly patterns: readonly string[];
  readonly leadingWildcard: boolean;
}

const SHARE_PREFIX = "$share/";

/** A topic filter without its `$share/<group>/`, and the group. */
interface SplitFilter {
  readonly share: string | undefined;
  readonly topicFilter: string;
}

/**
 * Parses a topic filter, shared ones included (MQTT 5 section 4.8.2): `$share/g/a/+`
 * is filter `a/+` in group `g`. A group name is at least one character with no `/`,
 * `+` or `#` [MQTT-4.8.2-1], [MQTT-4.8.2-2]; it becomes a bus queue group, so it must also
 * be one NATS token (no `.`, no whitespace, not `*` or `>`). With `bounds`, the filter
 * (without `$share/<group>/`) and the group are each held to them, as `checkFilterBounds`
 * does. Throws `TopicError`.
 */
export function parseFilter(filter: string, bounds?: TopicBounds): ParsedFilter {
  const { share, topicFilter } = splitShare(filter);
  if (share !== undefined && !isValidToken(share)) {
    throw new TopicError(
      filter,
      "a shared subscription's group must be one NATS token (no '.', no whitespace)",
      "nats-subject",
    );
  }
  if (bounds !== undefined) checkSplitBounds(share, topicFilter, bounds);
  return {
    share,
    patterns: filterToPatterns(topicFilter),
    leadingWildcard: topicFilter.startsWith("+") || topicFilter.startsWith("#"),
  };
}

/**
 * Holds a SUBSCRIBE or UNSUBSCRIBE filter to `bounds` (`mqtt.max_topic_length`,
 * `mqtt.max_topic_levels`): the filter after `$share/<group>/` is taken off, and the group
 * to the same length. Throws `TopicError`, its rule naming the setting; nothing else about
 * the filter is checked.
 */
export function checkFilterBounds(filter: string, bounds: TopicBounds): void {
  let split: SplitFilter;
  try {
    split = splitShare(filter);
  } catch {
    // Not a well-formed shared filter: bound it as a whole.
    checkTopicBounds(filter, bounds);
    return;
  }
  checkSplitBounds(split.share, split.topicFilter, bounds);
}

function checkSplitBounds(
  share: string | undefined,
  topicFilter: string,
  bounds: TopicBounds,
): void {
  // A UTF-16 code unit is at most 3 UTF-8 bytes: most groups need no count.
  if (
    share !== undefined &&
    share.length * 3 > bounds.maxTopicBytes &&
    Buffer.byteLength(share) > bounds.maxTopicBytes
  ) {
    throw new TopicError(share, `group longer than ${bounds.maxTopicBytes} bytes`, TOPIC_TOO_LONG);
  }
  checkTopicBounds(topicFilter, bounds);
}

function splitShare(filter: string): SplitFilter {
  if (!filter.startsWith(SHARE_PREFIX)) return { share: undefined, topicFilter: filter };
  const slash = filter.indexOf("/", SHARE_PREFIX.length);
  const share = slash < 0 ? "" : filter.slice(SHARE_PREFIX.length, slash);
  if (share === "" || /[+#]/.test(share) || slash < 0 || slash === filter.length - 1) {
    throw new TopicError(
      filter,
      "a shared subscription is $share/<group>/<filter>",
      "[MQTT-4.8.2-2]",
    );
  }
  return { share, topicFilter: filter.slice(slash + 1) };
}
