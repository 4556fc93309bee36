// A fault-proxy filter that reads the NATS protocol between leafgate and the hub and
// withholds exactly the frames a fault needs, passing every other byte unchanged:
//
// - Hub → gateway: JetStream PubAcks to the gateway's publishes. The forwarder publishes
//   each row with a reply subject `<inbox>.<row id>` (src/upstream/forwarder.ts), and the
//   stream answers there; so a PubAck is an MSG/HMSG whose subject is the reply subject of
//   a data publish seen earlier on that connection. Those are passed, dropped (a link that
//   loses the answers: the rows are stored, the gateway never hears so) or held and
//   released later, in order (a slow return path). INFO, PING/PONG, +OK/-ERR, JetStream API
//   replies and every other message pass.
// - Gateway → hub: data publishes (PUB/HPUB with a reply on a subject `isData` accepts)
//   beyond `publishLimit` are dropped, so a crash leaves some rows stored and some not.
//
// It counts what it saw: every data publish forwarded, by Nats-Msg-Id; every PubAck by
// kind (stored, duplicate, refused, with the refused ids and reasons).
import type { LinkFilter } from "./fault-proxy.js";
import { type NatsFrame, NatsFrameSplitter } from "./nats-frames.js";

export type AckMode = "pass" | "drop" | "hold";

export type AckKind = "stored" | "duplicate" | "refused";

export interface SeenAck {
  readonly msgId: string;
  readonly kind: AckKind;
  /** Refused: the status code (HMSG) or the JetStream error code and description. */
  readonly reason?: string;
}

interface Reply {
  readonly msgId: string;
  /** Publishes with this reply subject forwarded and not yet answered. */
  outstanding: number;
}

interface Held {
  readonly raw: Buffer;
  readonly forward: (data: Buffer) => void;
}

const UTF8 = new TextDecoder();

/** The Nats-Msg-Id in an HPUB header block, or "" without one. */
function msgIdOf(frame: NatsFrame): string {
  if (frame.headerBytes === undefined || frame.payload === undefined) return "";
  const block = frame.payload.subarray(0, frame.headerBytes).toString("latin1");
  const match = /\r\nNats-Msg-Id:[ \t]*([^\r]*)\r\n/i.exec(block);
  return match?.[1]?.trim() ?? "";
}

/** What a PubAck frame says. */
function classify(frame: NatsFrame): { kind: AckKind; reason?: string } {
  const payload = frame.payload ?? Buffer.alloc(0);
  const headerBytes = frame.headerBytes ?? 0;
  if (headerBytes > 0) {
    // "NATS/1.0 503" (no responders) and the like: a status without a body.
    const status = /^NATS\/1\.0[ \t]+(\d{3})/.exec(payload.subarray(0, headerBytes).toString());
    if (status !== null && Number(status[1]) >= 300) return { kind: "refused", reason: status[1] };
  }
  let ack: {
    error?: { code?: number; err_code?: number; description?: string };
    duplicate?: boolean;
  };
  try {
    ack = JSON.parse(UTF8.decode(payload.subarray(headerBytes)));
  } catch {
    return { kind: "refused", reason: "unreadable" };
  }
  if (ack.error !== undefined) {
    const e = ack.error;
    return { kind: "refused", reason: `${e.code} ${e.err_code} ${e.description}` };
  }
  return { kind: ack.duplicate === true ? "duplicate" : "stored" };
}

export class PubAckFilter {
  /** What happens to PubAcks on their way to the gateway. */
  acks: AckMode = "pass";
  /** Data publishes forwarded to the hub before the rest are dropped. */
  publishLimit = Number.POSITIVE_INFINITY;
  /** Data publishes forwarded to the hub, by Nats-Msg-Id: how many times each. */
  readonly sent = new Map<string, number>();
  /** Every PubAck the hub sent to a data publish, in arrival order. */
  readonly seenAcks: SeenAck[] = [];
  publishesForwarded = 0;
  publishesDropped = 0;
  acksDropped = 0;
  /** Protocol errors (the stream could not be parsed); a test asserts there are none. */
  readonly errors: string[] = [];
  readonly #isData: (subject: string) => boolean;
  /** By reply subject; shared by all connections (inboxes are unique per connection). */
  readonly #replies = new Map<string, Reply>();
  readonly #held: Held[] = [];

  constructor(isData: (subject: string) => boolean) {
    this.#isData = isData;
  }

  /** Counts of `seenAcks` by kind. */
  ackCounts(): Record<AckKind, number> {
    const counts = { stored: 0, duplicate: 0, refused: 0 };
    for (const a of this.seenAcks) counts[a.kind]++;
    return counts;
  }

  /** PubAcks held back (mode "hold") and not released yet. */
  get heldAcks(): number {
    return this.#held.length;
  }

  /** Forwards up to `n` held PubAcks, oldest first; returns how many went. */
  releaseAcks(n = Number.POSITIVE_INFINITY): number {
    const batch = this.#held.splice(0, Math.min(n, this.#held.length));
    for (const h of batch) h.forward(h.raw);
    return batch.length;
  }

  /** For startFaultProxy({ filter }): a fresh parser pair per connection. */
  readonly link = (): LinkFilter => {
    const fromClient = new NatsFrameSplitter();
    const fromHub = new NatsFrameSplitter();
    let broken = false;
    const run = (
      splitter: NatsFrameSplitter,
      chunk: Buffer,
      forward: (data: Buffer) => void,
      keep: (frame: NatsFrame, forward: (data: Buffer) => void) => boolean,
    ): void => {
      if (broken) {
        forward(chunk);
        return;
      }
      let frames: NatsFrame[];
      try {
        frames = splitter.push(chunk);
      } catch (err) {
        // Pass the rest unread; the test fails on `errors`.
        broken = true;
        this.errors.push(String(err));
        forward(chunk);
        return;
      }
      const out: Buffer[] = [];
      for (const f of frames) if (keep(f, forward)) out.push(f.raw);
      if (out.length > 0) forward(out.length === 1 ? out[0]! : Buffer.concat(out));
    };
    return {
      toTarget: (chunk, forward) => run(fromClient, chunk, forward, (f) => this.#fromClient(f)),
      toClient: (chunk, forward) => run(fromHub, chunk, forward, (f, fw) => this.#fromHub(f, fw)),
    };
  };

  /** True to forward the frame to the hub. */
  #fromClient(frame: NatsFrame): boolean {
    if (frame.op !== "PUB" && frame.op !== "HPUB") return true;
    const withReply = frame.args.length === (frame.op === "PUB" ? 3 : 4);
    const subject = frame.args[0] ?? "";
    if (!withReply || !this.#isData(subject)) return true;
    if (this.publishesForwarded >= this.publishLimit) {
      this.publishesDropped++;
      return false;
    }
    this.publishesForwarded++;
    const msgId = msgIdOf(frame);
    this.sent.set(msgId, (this.sent.get(msgId) ?? 0) + 1);
    const reply = frame.args[1]!;
    const known = this.#replies.get(reply);
    if (known !== undefined) known.outstanding++;
    else this.#replies.set(reply, { msgId, outstanding: 1 });
    return true;
  }

  /** True to forward the frame to the gateway now. */
  #fromHub(frame: NatsFrame, forward: (data: Buffer) => void): boolean {
    if (frame.op !== "MSG" && frame.op !== "HMSG") return true;
    const reply = this.#replies.get(frame.args[0] ?? "");
    if (reply === undefined) return true;
    if (--reply.outstanding === 0) this.#replies.delete(frame.args[0]!);
    this.seenAcks.push({ msgId: reply.msgId, ...classify(frame) });
    if (this.acks === "drop") {
      this.acksDropped++;
      return false;
    }
    if (this.acks === "hold") {
      this.#held.push({ raw: frame.raw, forward });
      return false;
    }
    return true;
  }
}
