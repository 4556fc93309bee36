// What the fleet bench checks in the hub's stream, read once in stream order: per gateway,
// every sensor's messages exactly once and in order (stream sequence order = the sensor's
// seq order), nothing missing, Nats-Msg-Id unique and the gateway's own; and the lag from
// publish (a wall-clock time in the payload) to the stream's own timestamp.
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";

/** A sensor's payload: `<gateway> <sensor> <seq> <publish time, µs since the epoch>`, padded. */
export function fleetPayload(gateway: string, sensor: number, seq: number, bytes: number): Buffer {
  const us = Math.round((performance.timeOrigin + performance.now()) * 1000);
  const text = `${gateway} ${sensor} ${seq} ${us} `;
  return Buffer.from(text.padEnd(bytes, "x"));
}

const MAX_EXAMPLES = 5;

export interface GatewayTally {
  readonly gateway: string;
  /** Per sensor: which seqs arrived. */
  readonly seen: Uint8Array[];
  /** Per sensor: the last seq read. */
  readonly last: number[];
  received: number;
  duplicates: number;
  outOfOrder: number;
  /** Messages whose subject, gateway, sensor or seq do not fit what was sent. */
  foreign: number;
  /** Nats-Msg-Id seen twice, or not of this gateway's form (`<gateway>-<row>`). */
  badIds: number;
  readonly ids: Set<string>;
  /** The first few messages out of order or duplicated, for the report. */
  readonly examples: string[];
  /** Publish -> stored in the stream, ms, every message. */
  readonly lagMs: number[];
  firstNs: bigint;
  lastNs: bigint;
}

export interface GatewayVerdict {
  gateway: string;
  expected: number;
  received: number;
  missing: number;
  duplicates: number;
  outOfOrder: number;
  foreign: number;
  badIds: number;
  /** Messages per second, from its first to its last stream timestamp. */
  msgsPerSecond: number;
  lagP50Ms: number;
  lagP99Ms: number;
  ok: boolean;
  examples: string[];
}

/** The `q` quantile of `xs` (sorted in place). */
export function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return Number.NaN;
  xs.sort((a, b) => a - b);
  return xs[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;
}

export class FleetCheck {
  readonly #tallies = new Map<string, GatewayTally>();
  readonly #sent: ReadonlyMap<string, readonly number[]>;
  readonly #prefix: string;
  /** Messages whose gateway is none of the fleet's. */
  stray = 0;

  /** `sent`: per gateway id, each sensor's message count (acked by the gateway). */
  constructor(sent: ReadonlyMap<string, readonly number[]>, prefix: string) {
    this.#sent = sent;
    this.#prefix = prefix;
    for (const [gateway, counts] of sent) {
      this.#tallies.set(gateway, {
        gateway,
        seen: counts.map((n) => new Uint8Array(n)),
        last: counts.map(() => -1),
        received: 0,
        duplicates: 0,
        outOfOrder: 0,
        foreign: 0,
        badIds: 0,
        ids: new Set(),
        examples: [],
        lagMs: [],
        firstNs: 0n,
        lastNs: 0n,
      });
    }
  }

  /** One stored message, in stream order. */
  add(
    subject: string,
    data: Uint8Array,
    msgId: string | undefined,
    storedNs: bigint,
    streamSeq = 0,
  ): void {
    const [gateway, sensorText, seqText, usText] = Buffer.from(
      data.buffer,
      data.byteOffset,
      Math.min(data.length, 80),
    )
      .toString("latin1")
      .split(" ");
    const t = this.#tallies.get(gateway ?? "");
    if (!t) {
      this.stray++;
      return;
    }
    t.received++;
    if (t.firstNs === 0n) t.firstNs = storedNs;
    t.lastNs = storedNs;
    t.lagMs.push(Number(storedNs / 1000n - BigInt(usText ?? "0")) / 1000);
    if (msgId === undefined || !msgId.startsWith(`${gateway}-`) || t.ids.has(msgId)) t.badIds++;
    else t.ids.add(msgId);
    const sensor = Number(sensorText);
    const seq = Number(seqText);
    const seen = t.seen[sensor];
    const expectedSubject = `${this.#prefix}.${gateway}.${sensorTopic(sensor).replaceAll("/", ".")}`;
    if (!seen || !(seq >= 0 && seq < seen.length) || subject !== expectedSubject) {
      t.foreign++;
      return;
    }
    const example = (what: string) => {
      if (t.examples.length < MAX_EXAMPLES) {
        t.examples.push(
          `${what}: stream seq ${streamSeq}, s${sensor} seq ${seq} after ${t.last[sensor]}, ${msgId}`,
        );
      }
    };
    if (seen[seq]) {
      t.duplicates++;
      example("duplicate");
    }
    seen[seq] = 1;
    if (seq < t.last[sensor]!) {
      t.outOfOrder++;
      example("out of order");
    }
    t.last[sensor] = seq;
  }

  verdicts(): GatewayVerdict[] {
    return [...this.#tallies.values()].map((t) => {
      const expected = (this.#sent.get(t.gateway) ?? []).reduce((a, n) => a + n, 0);
      const distinct = t.seen.reduce((a, s) => a + s.reduce((b, x) => b + x, 0), 0);
      const seconds = Number(t.lastNs - t.firstNs) / 1e9;
      const missing = expected - distinct;
      return {
        gateway: t.gateway,
        expected,
        received: t.received,
        missing,
        duplicates: t.duplicates,
        outOfOrder: t.outOfOrder,
        foreign: t.foreign,
        badIds: t.badIds,
        msgsPerSecond: seconds > 0 ? (t.received - 1) / seconds : Number.NaN,
        lagP50Ms: quantile(t.lagMs, 0.5),
        lagP99Ms: quantile(t.lagMs, 0.99),
        examples: t.examples,
        ok:
          missing === 0 &&
          t.duplicates === 0 &&
          t.outOfOrder === 0 &&
          t.foreign === 0 &&
          t.badIds === 0,
      };
    });
  }

  /** Every message's lag, all gateways together. */
  allLags(): number[] {
    return [...this.#tallies.values()].flatMap((t) => t.lagMs);
  }
}

/** The MQTT topic of sensor `i` (the gateway exports `sensors.>`). */
export const sensorTopic = (i: number): string => `sensors/s${i}/data`;

/**
 * Reads every message of `stream` in sequence order into `check` with an ordered consumer,
 * until it has nothing pending; resolves with the count read.
 */
export async function readStream(
  nc: NatsConnection,
  stream: string,
  check: FleetCheck,
  timeoutMs: number,
): Promise<number> {
  const consumer = await jetstream(nc).consumers.get(stream);
  const iter = await consumer.consume({ max_messages: 5_000 });
  const timer = setTimeout(() => void iter.close(), timeoutMs);
  let read = 0;
  try {
    for await (const m of iter) {
      check.add(
        m.subject,
        m.data,
        m.headers?.get("Nats-Msg-Id"),
        BigInt(m.info.timestampNanos),
        m.seq,
      );
      read++;
      if (m.info.pending === 0) break;
    }
  } finally {
    clearTimeout(timer);
    await iter.close();
  }
  return read;
}
