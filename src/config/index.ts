export { ConfigError, type ConfigErrorCode } from "./errors.js";
export { formatConfig, type LoadConfigOptions, loadConfig } from "./load.js";
export type { LeafgateConfig, ListenerConfig, TlsFilesConfig } from "./schema.js";
