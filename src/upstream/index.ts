export { backoffDelayMs } from "./backoff.js";
export { connectOptions, dialOptions } from "./connect-options.js";
export { connect } from "./dial.js";
export { UpstreamError } from "./errors.js";
export { messageId, messageIdPrefix } from "./forwarder.js";
export {
  createWindowMs,
  DEFAULT_CREATE_WINDOW_MS,
  defaultStreamName,
  describePlan,
  exportedSubjects,
  type Finding,
  limitText,
  type StreamFacts,
  type StreamPlan,
  streamFacts,
  streamFindings,
  type Verdict,
  windowLongEnough,
  worst,
} from "./hub-admin.js";
export { JETSTREAM_API_TIMEOUT_MS, uncoveredBy } from "./stream-check.js";
export {
  type Dialer,
  Upstream,
  type UpstreamOptions,
  type UpstreamState,
  type UpstreamStatus,
} from "./upstream.js";
export type { UpstreamConfig } from "./upstream-config.js";
