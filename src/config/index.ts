export { ConfigError, type ConfigErrorCode } from "./errors.js";
export { formatConfig, type LoadConfigOptions, loadConfig } from "./load.js";
export {
  authorizationOptions,
  brokerLimits,
  mqttListeners,
  natsConnectionOptions,
  natsListenerLimits,
  outboxOptions,
  retainedLimits,
} from "./options.js";
export type {
  BufferClassConfig,
  ImportConfig,
  LeafgateConfig,
  ListenerConfig,
  PermissionRule,
  PermissionsConfig,
  SerialPortEntry,
  TlsFilesConfig,
  UserConfig,
} from "./schema.js";
export { PATTERN, TOKEN } from "./schema.js";
export {
  bool,
  type Def,
  duration,
  filePath,
  type Infer,
  int,
  isMapping,
  list,
  type Node,
  nullable,
  num,
  obj,
  oneOf,
  optionalObj,
  type ResolveContext,
  resolveNode,
  type StringRule,
  size,
  str,
  stringOr,
  union,
} from "./schema-engine.js";
export {
  MASK,
  maskUrls,
  secretRedactor,
  secretsOf,
  urlCredentials,
  withoutCredentials,
} from "./secrets.js";
export {
  insecureChoices,
  type SecurityContext,
  type SecurityWarning,
  type SecurityWarningCode,
} from "./security.js";
export { formatDuration, parseDuration, parseSize } from "./units.js";
