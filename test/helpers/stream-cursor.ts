// Reads a JetStream stream a piece at a time: each `read()` returns the messages stored
// since the previous one, in sequence order, so a long test checks what is new without
// reading the whole stream again.
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { StreamMessage } from "./nats-server.js";

/** Messages fetched per pull request. */
const BATCH = 1000;

export class StreamCursor {
  readonly #nc: NatsConnection;
  readonly #stream: string;
  /** Sequence of the last message returned. */
  #lastSeq = 0;

  constructor(nc: NatsConnection, stream: string) {
    this.#nc = nc;
    this.#stream = stream;
  }

  get lastSeq(): number {
    return this.#lastSeq;
  }

  /**
   * Every message with a sequence above the last one returned, up to the stream's last
   * sequence when the call began. Rejects if they cannot all be read within `timeoutMs`.
   */
  async read({ timeoutMs = 30_000 }: { timeoutMs?: number } = {}): Promise<StreamMessage[]> {
    const jsm = await jetstreamManager(this.#nc);
    const { state } = await jsm.streams.info(this.#stream);
    const until = state.last_seq;
    if (until <= this.#lastSeq || state.messages === 0) return [];
    const consumer = await jetstream(this.#nc).consumers.get(this.#stream, {
      deliver_policy: "by_start_sequence" as never,
      opt_start_seq: Math.max(this.#lastSeq + 1, state.first_seq),
    });
    const out: StreamMessage[] = [];
    const deadline = Date.now() + timeoutMs;
    while (this.#lastSeq < until) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `StreamCursor(${this.#stream}): read up to seq ${this.#lastSeq} of ${until} ` +
            `within ${timeoutMs} ms`,
        );
      }
      const batch = await consumer.fetch({ max_messages: BATCH, expires: Math.min(left, 5_000) });
      let got = 0;
      let drained = false;
      for await (const m of batch) {
        got++;
        const headers: Record<string, string[]> = {};
        for (const [key, values] of m.headers ?? []) headers[key] = values;
        out.push({ seq: m.seq, subject: m.subject, data: m.data, headers });
        this.#lastSeq = m.seq;
        drained = m.info.pending === 0;
        if (m.seq >= until || drained) break;
      }
      // Nothing left past a deleted tail: last_seq stays put when messages are removed.
      if (got === 0 || drained || this.#lastSeq >= until) break;
    }
    this.#lastSeq = Math.max(this.#lastSeq, until);
    return out;
  }
}
