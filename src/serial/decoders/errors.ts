import { LeafgateError } from "../../core/index.js";

/**
 * A decoder spec that cannot work (an empty separator, a struct field at a negative
 * offset, an NMEA sentence we cannot decode…). Raised by `createDecoder` at start-up,
 * never while decoding.
 */
export class DecoderSpecError extends LeafgateError {
  constructor(message: string, options?: ErrorOptions) {
    super("LG_ERR_DECODER_SPEC", message, options);
  }
}
