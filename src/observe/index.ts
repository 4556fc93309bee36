export { HttpEndpoint, type HttpOptions, type HttpSources } from "./http.js";
export { createLogger, type LogLevel } from "./logger.js";
export { MetricsRegistry } from "./metrics.js";
export {
  exportsSubject,
  type SysFigures,
  SysStats,
  sysMessages,
} from "./sys-stats.js";
