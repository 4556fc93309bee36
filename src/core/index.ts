export {
  type Account,
  type AccountOptions,
  AccountSpace,
  type AccountSpaceOptions,
  AccountsError,
  type BridgeStats,
  type Crossing,
  DEFAULT_ACCOUNT,
  type StreamExport,
  type StreamImport,
} from "./accounts.js";
export {
  type Admission,
  type AdmissionEvents,
  type AdmissionLimits,
  type AdmissionRefusal,
  Admissions,
  sourceAddress,
} from "./admission.js";
export {
  ALLOW_ALL,
  ANONYMOUS,
  type AnonymousPolicy,
  Authenticator,
  type AuthResult,
  compilePermissions,
  hashPassword,
  type Lockout,
  LoginGuard,
  type PermissionRule,
  type Permissions,
  type PermissionsConfig,
  SYSTEM_SUBJECT_PREFIX,
  type UserConfig,
  verifyPassword,
} from "./auth.js";
export { Bus, type BusSubscriber, type BusSubscription } from "./bus.js";
export { type Clock, type ClockTimer, ManualClock, systemClock } from "./clock.js";
export type { Envelope, Headers, MessageProperties, Origin } from "./envelope.js";
export { errorMessage, LeafgateError } from "./errors.js";
export { Guard, INTERNAL_ERRORS_METRIC, type Recover } from "./guard.js";
export {
  type Counter,
  type Gauge,
  type Labels,
  type LogFields,
  type Logger,
  type Metrics,
  silentLogger,
} from "./observe.js";
export {
  type LimitedLevel,
  RateLimitedLog,
  type RateLimitOptions,
} from "./rate-limited-log.js";
export { Replies, type RepliesOptions, type RepliesStats } from "./replies.js";
export { type PortInUse, ServerLifecycle } from "./server-lifecycle.js";
export { attachSocket } from "./socket-events.js";
export { socketTransport } from "./socket-transport.js";
export {
  isValidPattern,
  isValidSubject,
  isValidToken,
  patternCovers,
  subjectMatches,
} from "./subject.js";
export { Sublist, type SublistEntry, type SublistMatch } from "./sublist.js";
export { readTlsFiles, type TlsFiles } from "./tls-files.js";
export {
  checkTopicBounds,
  filterToPatterns,
  TOPIC_TOO_LONG,
  TOPIC_TOO_MANY_LEVELS,
  type TopicBounds,
  TopicError,
  toSubject,
  toTopic,
} from "./topic.js";
export type { Transport, TransportHandler } from "./transport.js";
