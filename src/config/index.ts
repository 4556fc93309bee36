export { ConfigError, type ConfigErrorCode } from "./errors.js";
export { formatConfig, type LoadConfigOptions, loadConfig } from "./load.js";
export type {
  LeafgateConfig,
  ListenerConfig,
  PermissionRule,
  PermissionsConfig,
  TlsFilesConfig,
  UserConfig,
} from "./schema.js";
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
