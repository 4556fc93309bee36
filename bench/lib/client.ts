// What a bench's client process (the bench itself with `--role ...`) shares: lines to and from
// the bench on stdio, and the windowed publish of nats.js publishers.
import { createInterface } from "node:readline";
import type { NatsConnection } from "@nats-io/transport-node";

/** The bench's commands to this process, a line each on stdin. */
export const commands = (): AsyncIterator<string> =>
  createInterface({ input: process.stdin })[Symbol.asyncIterator]();

/** A line to the bench on stdout. */
export const say = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

/** CLOCK_MONOTONIC in ns: comparable across the processes of one machine. */
export const nowNs = (): bigint => process.hrtime.bigint();

/**
 * Publishes `count` messages (`payload(seq)` each) on `subject`, flushing (PING/PONG: the
 * server has read everything before it) every `window` messages and waiting for the flush
 * before last: at most two windows ahead of the server, so it never idles on the round trip
 * and the run does not pile up in the publisher's memory (nats.js writes without looking at
 * the socket). Resolves once the server has read them all.
 */
export async function publishWindowed(
  nc: NatsConnection,
  subject: string,
  count: number,
  window: number,
  payload: (seq: number) => Uint8Array,
): Promise<void> {
  let previous: Promise<void> = Promise.resolve();
  for (let seq = 0; seq < count; seq++) {
    nc.publish(subject, payload(seq));
    if ((seq + 1) % window === 0) {
      const flushed = nc.flush();
      await previous;
      previous = flushed;
    }
  }
  await previous;
  await nc.flush();
}
