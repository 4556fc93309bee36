import type { NatsConnection } from "@nats-io/transport-node";
import type { Counter, Logger } from "../core/index.js";
import type { OutboxRow } from "../store/index.js";

/** Room left for the subject line and headers (Nats-Msg-Id, user headers) in max_payload. */
const HEADER_ALLOWANCE_BYTES = 512;
/**
 * nats-server's default `max_control_line`: a PUB/HPUB line (subject, reply, sizes) longer
 * than this closes the connection ("Maximum Control Line Exceeded"). The hub does not
 * announce it, so the default is assumed.
 */
const HUB_MAX_CONTROL_LINE_BYTES = 4096;
/** `HPUB`, three spaces, two byte counts of up to 10 digits, CRLF: all but subject and reply. */
const CONTROL_LINE_FIXED_BYTES = 4 + 3 + 10 + 10 + 2;
/** UTF-8 bytes of one UTF-16 code unit at most (a surrogate pair is 4 bytes for 2 units). */
const UTF8_BYTES_PER_UNIT_MAX = 3;
/** A header line's bytes besides its name and value: `: ` and CRLF. */
const HEADER_LINE_FIXED_BYTES = 4;
/** Subjects in the log are cut to this many characters (a topic may be 64 KiB). */
const LOGGED_SUBJECT_CHARS = 80;

/**
 * Why the hub would refuse `row` whatever we do, or undefined. Sending it anyway would
 * close the connection ("maximum payload violation", "maximum control line exceeded") on
 * every retry and block the rows behind it.
 */
export function unsendable(
  nc: NatsConnection,
  row: OutboxRow,
  subject: string,
  reply: string,
): string | undefined {
  // A UTF-16 code unit is at most 3 bytes of UTF-8: most lines are short enough without counting.
  const mostBytes =
    CONTROL_LINE_FIXED_BYTES + UTF8_BYTES_PER_UNIT_MAX * (subject.length + reply.length);
  if (
    mostBytes > HUB_MAX_CONTROL_LINE_BYTES &&
    CONTROL_LINE_FIXED_BYTES + Buffer.byteLength(subject) + Buffer.byteLength(reply) >
      HUB_MAX_CONTROL_LINE_BYTES
  ) {
    return "subject too long for the hub's control line (4 KiB); dropped (shorten the topic or the upstream prefix, or lower mqtt.max_topic_length)";
  }
  const max = nc.info?.max_payload;
  if (max === undefined || max <= 0) return undefined;
  let headerBytes = 0;
  if (row.headers !== undefined) {
    for (const [k, vs] of row.headers) {
      for (const v of vs) headerBytes += k.length + v.length + HEADER_LINE_FIXED_BYTES;
    }
  }
  if (row.payload.length + headerBytes + HEADER_ALLOWANCE_BYTES > max) {
    return "message larger than the hub's max_payload; dropped (raise max_payload on the hub or lower mqtt.max_packet_size)";
  }
  return undefined;
}

/** Logs and counts a row the hub can never take; the caller deletes it. */
export function dropUnsendable(
  nc: NatsConnection,
  row: OutboxRow,
  why: string,
  options: { readonly log: Logger; readonly metrics: { readonly tooLarge: Counter } },
): void {
  options.metrics.tooLarge.inc();
  options.log.error(
    {
      row: row.id,
      subject:
        row.subject.length > LOGGED_SUBJECT_CHARS
          ? `${row.subject.slice(0, LOGGED_SUBJECT_CHARS)}…`
          : row.subject,
      subjectBytes: Buffer.byteLength(row.subject),
      bytes: row.payload.length,
      hubMaxPayload: nc.info?.max_payload,
    },
    why,
  );
}
