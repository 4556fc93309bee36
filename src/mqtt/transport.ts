/** The byte-stream seam lives in core/ (NATS connections use it too). */
export type { Transport, TransportHandler } from "../core/transport.js";
