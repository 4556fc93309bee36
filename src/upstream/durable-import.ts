import {
  AckPolicy,
  type Consumer,
  type ConsumerConfig,
  DeliverPolicy,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { ImportConfig } from "../config/index.js";
import { errorMessage, patternCovers } from "../core/index.js";
import type { ImportCursors, ImportStream } from "../store/index.js";
import { type ImportContext, importEnvelope, toHeaders } from "./imports.js";
import { sleep } from "./sleep.js";
import { JETSTREAM_API_TIMEOUT_MS } from "./stream-check.js";
import { subjectMap } from "./subject-map.js";

/**
 * Messages one pull request asks for. The consumer has one unacked message at most
 * (`max_ack_pending: 1`), so they come one after another, each once the one before is
 * acked: the pull is batched, the local queue is one message.
 */
const DURABLE_BATCH = 16;
/** How long a pull request waits on the hub for messages before the next is sent. */
const FETCH_EXPIRES_MS = 10_000;
/**
 * How long the consumer waits for an ack before it delivers again. With one unacked
 * message at most, a message left unacked by a lost link or a crash holds everything
 * newer back this long, so it is short; a local delivery (a group commit) still takes far
 * less, and one that takes longer only gets a redelivery acked without delivering.
 */
const ACK_WAIT_MS = 5_000;
/** A consumer that cannot be set up (no stream yet, no JetStream) is tried again after. */
const RETRY_MS = 5_000;
/** A message the bus could not take (a local store failing) is offered again after. */
const NAK_DELAY_MS = 1_000;
const NANOS_PER_MS = 1_000_000;

/** A durable import's entry: `durable` is set. */
export type DurableImportConfig = ImportConfig & { readonly durable: string };

export interface DurableImportContext extends ImportContext {
  readonly cursors: ImportCursors;
  /** The hub's JetStream domain (`upstream.domain`). */
  readonly domain: string | null;
}

/**
 * The consumer a durable import reads: durable, explicit acks, every message of the
 * subject the stream holds, and one unacked message at a time, so the hub delivers in
 * stream order always (a redelivery comes before anything newer) and "at or below the
 * last sequence delivered" is exactly "delivered already".
 */
export function consumerConfig(entry: DurableImportConfig): Partial<ConsumerConfig> {
  return {
    durable_name: entry.durable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subject: entry.subject,
    max_ack_pending: 1,
    ack_wait: ACK_WAIT_MS * NANOS_PER_MS,
  };
}

/**
 * Delivers a durable import's messages onto the bus for one connection's life, until
 * `signal` aborts (the session ends): each is delivered (its durable local copies
 * committed), recorded as delivered, then acked; a redelivery of one recorded is acked
 * only. A failure (no stream yet, the hub's JetStream unavailable, a local store
 * refusing) is logged and tried again after RETRY_MS. docs/upstream.md, "Imports".
 */
export async function runDurableImport(
  nc: NatsConnection,
  entry: DurableImportConfig,
  cx: DurableImportContext,
  signal: AbortSignal,
): Promise<void> {
  while (!signal.aborted) {
    try {
      await consume(nc, entry, cx, signal);
    } catch (err) {
      if (signal.aborted) return;
      cx.warn.log(
        `durable:${entry.durable}`,
        { durable: entry.durable, subject: entry.subject, err: errorMessage(err) },
        "durable import paused; trying again",
      );
    }
    await sleep(cx.clock, RETRY_MS, signal);
  }
}

async function consume(
  nc: NatsConnection,
  entry: DurableImportConfig,
  cx: DurableImportContext,
  signal: AbortSignal,
): Promise<void> {
  const options = {
    timeout: JETSTREAM_API_TIMEOUT_MS,
    ...(cx.domain ? { domain: cx.domain } : {}),
  };
  const jsm = await jetstreamManager(nc, options);
  const stream = entry.stream ?? (await findStream(jsm, entry.subject));
  const at: ImportStream = { stream, created: (await jsm.streams.info(stream)).created };
  try {
    // Creates it, or brings an existing one to these settings.
    await jsm.consumers.add(stream, consumerConfig(entry));
  } catch (err) {
    throw new Error(
      `consumer ${entry.durable} on stream ${stream} cannot take leafgate's settings ` +
        `(${errorMessage(err)}); delete it (nats consumer rm ${stream} ${entry.durable}) and ` +
        "leafgate makes it again, delivering nothing twice",
      { cause: err },
    );
  }
  const consumer = await jetstream(nc, options).consumers.get(stream, entry.durable);
  const last = { seq: cx.cursors.last(entry.durable, at) };
  if (signal.aborted) return;
  cx.log.info(
    { durable: entry.durable, stream, subject: entry.subject, lastDelivered: last.seq },
    "durable import consuming",
  );
  const toLocal = subjectMap(entry.subject, entry.local);
  const run: Run = { entry, at, last, toLocal, cx, signal };
  while (!signal.aborted) await pull(consumer, run);
}

/** One consumer's reading on one connection. */
interface Run {
  readonly entry: DurableImportConfig;
  readonly at: ImportStream;
  /** The last stream sequence delivered (recorded). */
  readonly last: { seq: number };
  readonly toLocal: (subject: string) => string | undefined;
  readonly cx: DurableImportContext;
  /** The session's end. */
  readonly signal: AbortSignal;
}

/** One pull request's messages, each delivered, recorded and acked before the next. */
async function pull(consumer: Consumer, run: Run): Promise<void> {
  const { signal } = run;
  const batch = await consumer.fetch({ max_messages: DURABLE_BATCH, expires: FETCH_EXPIRES_MS });
  // The message being delivered when the session ends is still recorded and acked.
  const stop = (): void => void batch.close().catch(() => {});
  signal.addEventListener("abort", stop, { once: true });
  if (signal.aborted) stop();
  try {
    for await (const m of batch) await take(m, run);
  } finally {
    signal.removeEventListener("abort", stop);
  }
}

async function take(m: JsMsg, { entry, at, last, toLocal, cx, signal }: Run): Promise<void> {
  const { metrics } = cx;
  if (signal.aborted) {
    // Came as the session ends: handed back at once, so the next session (or gateway)
    // need not wait ACK_WAIT_MS for it.
    m.nak();
    return;
  }
  if (m.seq <= last.seq) {
    metrics.redelivered.inc();
    m.ack();
    return;
  }
  const subject = toLocal(m.subject);
  if (subject !== undefined) {
    try {
      await cx.bus.publish(importEnvelope(subject, m.data, toHeaders(m.headers), cx.clock));
    } catch (err) {
      m.nak(NAK_DELAY_MS);
      throw new Error(
        `message ${m.seq} of ${at.stream} not delivered locally: ${errorMessage(err)}`,
        {
          cause: err,
        },
      );
    }
    metrics.imported.inc({ kind: "durable" });
  }
  last.seq = m.seq;
  try {
    cx.cursors.record(entry.durable, at, m.seq);
  } catch (err) {
    // Delivered: acked all the same, so only a lost ack could bring it again.
    cx.warn.log(
      `cursor:${entry.durable}`,
      { durable: entry.durable, seq: m.seq, err: errorMessage(err) },
      "durable import's delivered sequence not recorded",
    );
  }
  m.ack();
}

/** The stream whose subjects capture every subject of `subject` (a pattern). */
async function findStream(jsm: JetStreamManager, subject: string): Promise<string> {
  const names: string[] = [];
  for await (const info of jsm.streams.list()) {
    names.push(info.config.name);
    if ((info.config.subjects ?? []).some((s) => patternCovers(s, subject)))
      return info.config.name;
  }
  throw new Error(
    `no stream on the hub captures ${subject} (streams: ${names.join(", ") || "none"}); ` +
      `create one, e.g. nats stream add CMDS --subjects '${subject}' --defaults, or name it in the import's stream`,
  );
}
