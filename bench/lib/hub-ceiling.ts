// What the hub can take from one Node process, and what the drain benches check in a stream:
// the ceiling (a bare nats.js publisher pipelining JetStream publishes with Nats-Msg-Id, no
// SQLite), the 100-byte payloads that carry a publisher and a sequence number, and the
// exactly-once and order check of a stream read back whole. docs/performance-store.md.
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import {
  connect,
  createInbox,
  type NatsConnection,
  headers as natsHeaders,
} from "@nats-io/transport-node";

/** Every bench message is this long: `<publisher>|<seq, 8 digits>|xxx…`. */
export const PAYLOAD_BYTES = 100;
const SEQ_DIGITS = 8;
const PAD = "x".repeat(PAYLOAD_BYTES);
/** Publishes the ceiling keeps unacknowledged, as the ceiling did. */
export const CEILING_IN_FLIGHT = 8000;
/** Messages per pull of the ordered read-back. */
const READ_BATCH = 10_000;
const READ_IDLE_MS = 5_000;

/** The payload of message `seq` of publisher `pub` (a short name without `|`). */
export function payload(pub: string, seq: number): Buffer {
  return Buffer.from(
    `${pub}|${String(seq).padStart(SEQ_DIGITS, "0")}|${PAD}`.slice(0, PAYLOAD_BYTES),
    "latin1",
  );
}

/** Publisher and sequence number of a bench payload; undefined for anything else. */
export function parsePayload(data: Uint8Array): { pub: string; seq: number } | undefined {
  const s = Buffer.from(data.buffer, data.byteOffset, Math.min(data.length, 32)).toString("latin1");
  const bar = s.indexOf("|");
  if (bar < 0) return undefined;
  const seq = Number(s.slice(bar + 1, bar + 1 + SEQ_DIGITS));
  if (!Number.isInteger(seq)) return undefined;
  return { pub: s.slice(0, bar), seq };
}

export interface CeilingResult {
  /** Wall time first publish -> last PubAck, ms. */
  readonly ms: number;
  /** CPU seconds the publisher used meanwhile. */
  readonly cpuS: number;
  readonly duplicates: number;
  readonly errors: number;
}

/**
 * The ceiling: `count` publishes of 100 bytes on `<subject>.<i % publishers>` with a
 * `Nats-Msg-Id` each, pipelined like leafgate's forwarder (core publishes whose reply
 * subject is `<inbox>.<seq>`, one wildcard subscription for the PubAcks), at most
 * `inFlight` unacknowledged. Each PubAck is parsed (JSON) and checked.
 */
export async function runCeiling(
  url: string,
  subject: string,
  count: number,
  publishers: number,
  inFlight = CEILING_IN_FLIGHT,
): Promise<CeilingResult> {
  const nc = await connect({ servers: url, noEcho: true });
  const inbox = createInbox();
  const tokenAt = inbox.length + 1;
  const decoder = new TextDecoder();
  const perPub = new Array<number>(publishers).fill(0);
  let next = 0;
  let acked = 0;
  let duplicates = 0;
  let errors = 0;
  let done!: () => void;
  const finished = new Promise<void>((resolve) => {
    done = resolve;
  });
  const send = (): void => {
    while (next < count && next - acked < inFlight) {
      const i = next++;
      const p = i % publishers;
      const h = natsHeaders();
      h.set("Nats-Msg-Id", `ceil-${i}`);
      nc.publish(`${subject}.${p}`, payload(`p${p}`, perPub[p]!++), {
        reply: `${inbox}.${i}`,
        headers: h,
      });
    }
  };
  nc.subscribe(`${inbox}.*`, {
    callback: (_err, msg) => {
      void msg.subject.slice(tokenAt);
      const ack = JSON.parse(decoder.decode(msg.data)) as { duplicate?: boolean; error?: unknown };
      if (ack.error !== undefined || (msg.headers?.code ?? 0) >= 300) errors++;
      if (ack.duplicate === true) duplicates++;
      if (++acked === count) done();
      else if (next - acked <= inFlight / 2) send();
    },
  });
  await nc.flush();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  send();
  await finished;
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  await nc.close();
  return { ms, cpuS: (cpu.user + cpu.system) / 1e6, duplicates, errors };
}

export interface StreamCheck {
  readonly messages: number;
  /** (publisher, seq) pairs stored more than once. */
  readonly duplicates: number;
  /** Messages whose seq was not the publisher's previous one + 1, in stream order. */
  readonly outOfOrder: number;
  /** Stored time of the first and the last message (ms, the hub's clock). */
  readonly firstMs: number;
  readonly lastMs: number;
}

/**
 * Reads `stream` whole (an ordered consumer) and checks that each publisher's sequence
 * numbers are there exactly once and in order: 0, 1, 2, … in stream order.
 */
export async function checkStream(nc: NatsConnection, stream: string): Promise<StreamCheck> {
  const info = await (await jetstreamManager(nc)).streams.info(stream);
  const total = info.state.messages;
  const expected = new Map<string, number>();
  let duplicates = 0;
  let outOfOrder = 0;
  let messages = 0;
  let firstMs = Number.NaN;
  let lastMs = Number.NaN;
  if (total === 0) return { messages, duplicates, outOfOrder, firstMs, lastMs };
  const consumer = await jetstream(nc).consumers.get(stream);
  const iter = await consumer.consume({ max_messages: READ_BATCH, idle_heartbeat: READ_IDLE_MS });
  for await (const m of iter) {
    messages++;
    const ms = m.info.timestampNanos / 1e6;
    if (messages === 1) firstMs = ms;
    lastMs = ms;
    const p = parsePayload(m.data);
    if (p !== undefined) {
      const want = expected.get(p.pub) ?? 0;
      if (p.seq < want) duplicates++;
      else if (p.seq > want) outOfOrder++;
      expected.set(p.pub, Math.max(want, p.seq + 1));
    }
    if (m.info.pending === 0) break;
  }
  await iter.close();
  return { messages, duplicates, outOfOrder, firstMs, lastMs };
}
