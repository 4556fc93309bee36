import type { Envelope } from "../core/index.js";
import type { CommandResult } from "./command-runner.js";

/** The header (NATS) and user property (MQTT 5) an error reply carries its text in. */
export const COMMAND_ERROR_HEADER = "Leafgate-Error";
const JSON_CONTENT_TYPE = "application/json";

/**
 * The reply to a command, on `subject`. Its payload is JSON:
 * - answered: what `answer` makes of the frame (`{"text": …}` or `{"hex": …}`, and
 *   `"values"` when the profile's fields decode from it);
 * - written, nothing awaited (`response: none`): `{"written": <bytes>}`;
 * - a Modbus command: the body the device made (`{"address", "registers"}` for a read,
 *   `{"address", "written"}` for a write);
 * - failed: `{"error": "<what is wrong and how to fix it>"}`, and the same text in the
 *   `Leafgate-Error` header (NATS) and user property (MQTT 5), so a client can tell an
 *   error without parsing the payload.
 */
export function commandReply(
  subject: string,
  result: CommandResult,
  nowMs: number,
  answer: (frame: Buffer) => Record<string, unknown>,
): Envelope {
  const base = { subject, receivedAtMs: nowMs, origin: "serial", qos: 0 } as const;
  if (result.outcome !== "ok") {
    // A header value is one line (NATS); an OS error in the text could carry a break.
    const error = result.error.replace(/[\r\n]+/g, " ");
    return {
      ...base,
      payload: Buffer.from(JSON.stringify({ error })),
      headers: new Map([[COMMAND_ERROR_HEADER, [error]]]),
      properties: {
        contentType: JSON_CONTENT_TYPE,
        userProperties: [[COMMAND_ERROR_HEADER, error]],
      },
    };
  }
  const body =
    "frame" in result
      ? answer(result.frame)
      : "body" in result
        ? result.body
        : { written: result.written };
  return {
    ...base,
    payload: Buffer.from(JSON.stringify(body)),
    properties: { contentType: JSON_CONTENT_TYPE },
  };
}
