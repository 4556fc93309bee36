import { LeafgateError } from "../core/index.js";

/**
 * Every NATS client protocol violation that closes a connection, declared once with the
 * rule it breaks and the `-ERR` text nats-server sends for it (`err`), or `undefined` where
 * nats-server closes without one (its parse helpers return an error that its read loop
 * turns into a ProtocolViolation close: server/client.go, readLoop). The wording is
 * nats-server's, byte for byte: server/parser.go (`parseErr`), server/client.go
 * (`maxPayloadViolation`, `authViolation`) and server/errors.go (`ErrMaxControlLine`).
 * The key is the stable label for logs and counters.
 */
export const NATS_VIOLATIONS = {
  /** An operation name nats-server does not know, an empty line, bytes after a payload. */
  unknownOperation: {
    rule: "nats-server parser.go parseErr",
    err: "Unknown Protocol Operation",
  },
  /** A payload not followed by CRLF: nats-server's MSG_END_R/MSG_END_N states. */
  payloadNotTerminated: {
    rule: "nats-server parser.go MSG_END_R",
    err: "Unknown Protocol Operation",
  },
  /** ErrMaxControlLine's text, sent by parser.go as is (errCtx hides its context). */
  controlLineTooLong: {
    rule: "max_control_line",
    err: "maximum control line exceeded",
  },
  /** PUB/HPUB announcing more than max_payload bytes (HPUB: header and payload together). */
  payloadTooLarge: { rule: "max_payload", err: "Maximum Payload Violation" },
  /** Wrong number of arguments, or a byte count that is not 1-9 decimal digits. */
  badArguments: { rule: "nats-server client.go processPub/processSub", err: undefined },
  /** HPUB whose header byte count exceeds its total byte count. */
  headerLargerThanTotal: {
    rule: "nats-server client.go processHeaderPub",
    err: undefined,
  },
  /** An HPUB header block that does not start with the `NATS/1.0` status line. */
  badHeader: { rule: "NATS headers: NATS/1.0 status line", err: undefined },
  /** For the endpoint: a first op that is not CONNECT when auth is required, or bad credentials. */
  authorization: { rule: "nats-server client.go authViolation", err: "Authorization Violation" },
} as const satisfies Record<string, { rule: string; err: string | undefined }>;

export type NatsViolation = keyof typeof NATS_VIOLATIONS;

/** The `-ERR` text nats-server sends for a violation, or undefined if it just closes. */
export function errText(violation: NatsViolation): string | undefined {
  return NATS_VIOLATIONS[violation].err;
}

/** A NATS client broke the protocol; the connection is closed (after `-ERR`, if any). */
export class NatsProtocolError extends LeafgateError {
  readonly violation: NatsViolation;
  readonly rule: string;
  /** What `-ERR '<text>'` says before the close; undefined: closed without one. */
  readonly errText: string | undefined;

  constructor(violation: NatsViolation, detail?: string, options?: ErrorOptions) {
    const { rule, err } = NATS_VIOLATIONS[violation];
    super(
      "LG_ERR_NATS_PROTOCOL",
      `${err ?? violation}${detail ? `: ${detail}` : ""} [${rule}]`,
      options,
    );
    this.violation = violation;
    this.rule = rule;
    this.errText = err;
  }
}
