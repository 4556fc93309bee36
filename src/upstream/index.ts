export { backoffDelayMs } from "./backoff.js";
export { UpstreamError } from "./errors.js";
export { messageId, messageIdPrefix } from "./forwarder.js";
export {
  type Dialer,
  Upstream,
  type UpstreamOptions,
  type UpstreamState,
  type UpstreamStatus,
} from "./upstream.js";
export type { UpstreamConfig } from "./upstream-config.js";
