export { accountsOf } from "./accounts.js";
export { ConfigError, type ConfigErrorCode } from "./errors.js";
export { formatConfig, type LoadConfigOptions, loadConfig } from "./load.js";
export {
  authorizationOptions,
  brokerLimits,
  bufferLimits,
  mqttListeners,
  natsConnectionOptions,
  natsListenerLimits,
  outboxOptions,
  retainedLimits,
} from "./options.js";
export type {
  AccountConfig,
  AccountEntryConfig,
  AccountExportConfig,
  AccountImportConfig,
  BufferClassConfig,
  BufferConfig,
  ImportConfig,
  LeafgateConfig,
  ListenerConfig,
  PermissionRule,
  PermissionsConfig,
  SerialPortEntry,
  TlsFilesConfig,
  UpstreamConfig,
  UserConfig,
} from "./schema.js";
export { GLOBAL_ACCOUNT, PATTERN, TOKEN } from "./schema.js";
export {
  bool,
  type Def,
  duration,
  filePath,
  type Infer,
  int,
  isMapping,
  list,
  mapOf,
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
