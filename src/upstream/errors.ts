import { LeafgateError } from "../core/index.js";

/** A problem with the hub: unreachable, refusing us, or missing the stream. */
export class UpstreamError extends LeafgateError {}
