import { filterToPatterns, TopicError } from "../core/index.js";

/** What a SUBSCRIBE topic filter means on the bus. */
export interface ParsedFilter {
  /** The shared subscription's group, for `$share/<group>/<filter>`. */
  readonly share: string | undefined;
  readonly patterns: readonly string[];
  readonly leadingWildcard: boolean;
}

const SHARE_PREFIX = "$share/";

/**
 * Parses a topic filter, shared ones included (MQTT 5 section 4.8.2): `$share/g/a/+`
 * is filter `a/+` in group `g`. A group name is at least one character with no `/`,
 * `+` or `#` [MQTT-4.8.2-1], [MQTT-4.8.2-2]. Throws `TopicError`.
 */
export function parseFilter(filter: string): ParsedFilter {
  let share: string | undefined;
  let topicFilter = filter;
  if (filter.startsWith(SHARE_PREFIX)) {
    const slash = filter.indexOf("/", SHARE_PREFIX.length);
    share = slash < 0 ? "" : filter.slice(SHARE_PREFIX.length, slash);
    if (share === "" || /[+#]/.test(share) || slash < 0 || slash === filter.length - 1) {
      throw new TopicError(
        filter,
        "a shared subscription is $share/<group>/<filter>",
        "[MQTT-4.8.2-2]",
      );
    }
    topicFilter = filter.slice(slash + 1);
  }
  return {
    share,
    patterns: filterToPatterns(topicFilter),
    leadingWildcard: topicFilter.startsWith("+") || topicFilter.startsWith("#"),
  };
}
