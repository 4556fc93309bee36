import { LeafgateError } from "../../core/errors.js";

/**
 * A framing spec that cannot work (an empty delimiter, a length field inside the header, a
 * maxLength too small for the frame's own fixed parts…). Raised by `createFramer` at
 * start-up, never while framing.
 */
export class FramingSpecError extends LeafgateError {
  constructor(message: string, options?: ErrorOptions) {
    super("LG_ERR_FRAMING_SPEC", message, options);
  }
}

/** Throws unless `value` is an integer in [min, max]; `what` names the spec field. */
export function requireInteger(what: string, value: number, min: number, max = Infinity): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    const range = max === Infinity ? `>= ${min}` : `in [${min}, ${max}]`;
    throw new FramingSpecError(`${what} must be an integer ${range}, got ${value}`);
  }
}
