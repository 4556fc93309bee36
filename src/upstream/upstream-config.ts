import type { LeafgateConfig } from "../config/index.js";

/** The `upstream` section of the config, as the hub link reads it (typed by the schema). */
export type UpstreamConfig = LeafgateConfig["upstream"];
