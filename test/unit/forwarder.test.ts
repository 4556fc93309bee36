// The forwarders against a real outbox (SQLite in a temp dir) and a fake hub connection:
// a caught-up forwarder waits for the outbox's one wake-up (onCommit), sends what was
// committed, and deletes it once the hub has it (a flush in core mode, a PubAck in
// JetStream mode).
import type { Msg, NatsConnection } from "@nats-io/transport-node";
import { describe, expect, it } from "vitest";
import { silentLogger } from "../../src/core/index.js";
import { MetricsRegistry } from "../../src/observe/index.js";
import type { Outbox } from "../../src/store/index.js";
import {
  CoreForwarder,
  type Forwarder,
  type ForwarderOptions,
  JetStreamForwarder,
} from "../../src/upstream/forwarder.js";
import { RateCap } from "../../src/upstream/token-bucket.js";
import { tempOutboxes } from "../helpers/temp-outbox.js";
import { waitFor } from "../helpers/wait.js";

const PUBACK = new TextEncoder().encode('{"stream":"EDGE","seq":1}');

/** A hub that records publishes and lets the test answer them. */
function fakeHub() {
  const sent: { subject: string; reply: string | undefined; msgId: string | undefined }[] = [];
  let replies: ((err: Error | null, msg: Msg) => void) | undefined;
  const nc = {
    info: { max_payload: 1024 * 1024 },
    isClosed: () => false,
    flush: async () => {},
    publish: (
      subject: string,
      _data: Uint8Array,
      opts?: { reply?: string; headers?: { get(k: string): string } },
    ) => {
      sent.push({ subject, reply: opts?.reply, msgId: opts?.headers?.get("Nats-Msg-Id") });
    },
    subscribe: (_subject: string, opts: { callback: typeof replies }) => {
      replies = opts.callback;
      return { unsubscribe: () => {} };
    },
  } as unknown as NatsConnection;
  /** Answers the first `n` publishes not answered yet (all by default) with a PubAck. */
  const ackAll = (n = sent.length): void => {
    for (const { reply } of sent.splice(0, n)) {
      replies!(null, { subject: reply!, data: PUBACK, headers: undefined } as unknown as Msg);
    }
  };
  return { nc, sent, ackAll };
}

describe("forwarders on the outbox's onCommit", () => {
  const outbox = tempOutboxes("forwarder");

  function options(maxInFlight = 16): ForwarderOptions {
    const metrics = new MetricsRegistry();
    const counter = (name: string) => metrics.counter(name, name);
    return {
      gatewayId: "gw1",
      prefix: "edge",
      maxInFlight,
      ackTimeoutMs: 60_000,
      drain: "fifo",
      rate: new RateCap({ messagesPerSecond: 0, bytesPerSecond: 0 }),
      log: silentLogger,
      metrics: {
        forwarded: counter("forwarded"),
        tooLarge: counter("too_large"),
        duplicates: counter("duplicates"),
        publishErrors: counter("publish_errors"),
        resends: counter("resends"),
      },
    };
  }

  async function append(box: Outbox, ...subjects: string[]): Promise<void> {
    await Promise.all(
      subjects.map((subject) =>
        box.append({
          subject,
          payload: Buffer.from(subject),
          receivedAtMs: Date.now(),
          origin: "mqtt",
          qos: 1,
        }),
      ),
    );
  }

  /** Runs `forwarder` until the test ends; returns its stop. */
  function run(forwarder: Forwarder): () => Promise<void> {
    const stop = new AbortController();
    const running = forwarder.run(stop.signal);
    return async () => {
      stop.abort();
      await running;
    };
  }

  it("core: a caught-up forwarder is woken by each commit, sends it, and deletes it", async () => {
    const box = outbox();
    const hub = fakeHub();
    const stop = run(new CoreForwarder(hub.nc, box, options()));
    await append(box, "a.1", "a.2");
    await waitFor(() => box.size === 0);
    await append(box, "a.3");
    await waitFor(() => box.size === 0);
    await stop();
    expect(hub.sent.map((s) => [s.subject, s.msgId])).toEqual([
      ["edge.a.1", "gw1-1"],
      ["edge.a.2", "gw1-2"],
      ["edge.a.3", "gw1-3"],
    ]);
    // Stopped: it no longer listens.
    await append(box, "a.4");
    expect(hub.sent.length).toBe(3);
    expect(box.size).toBe(1);
  });

  it("jetstream: sends the backlog, then each commit; deletes a row only after its PubAck", async () => {
    const box = outbox();
    const hub = fakeHub();
    await append(box, "j.1", "j.2");
    const stop = run(new JetStreamForwarder(hub.nc, box, options()));
    await waitFor(() => hub.sent.length === 2);
    expect(box.size).toBe(2);
    hub.ackAll();
    await waitFor(() => box.size === 0);

    await append(box, "j.3");
    await waitFor(() => hub.sent.length === 1);
    expect(hub.sent[0]).toMatchObject({ subject: "edge.j.3", msgId: "gw1-3" });
    expect(box.size).toBe(1);
    hub.ackAll();
    await waitFor(() => box.size === 0);
    await stop();
  });

  it("jetstream: while 1,000 or more are in flight, deletes acked rows 1,000 at a time, and the rest when the run ends", async () => {
    const box = outbox();
    const hub = fakeHub();
    await append(box, ...Array.from({ length: 2500 }, (_, i) => `d.${i}`));
    const stop = run(new JetStreamForwarder(hub.nc, box, options(4096)));
    await waitFor(() => hub.sent.length === 2500);
    hub.ackAll(400); // 2,100 still in flight: the 400 wait for a fuller batch (or a second)
    hub.ackAll(600); // 1,000 acked: deleted together
    await waitFor(() => box.size === 1500);
    hub.ackAll(700); // 800 in flight: few enough to delete on the next turn
    await waitFor(() => box.size === 800);
    hub.ackAll(1); // 799 in flight
    await waitFor(() => box.size === 799);
    await stop();
    expect(box.size).toBe(799);
  });

  it("jetstream: acked rows held for a batch are deleted when the run ends", async () => {
    const box = outbox();
    const hub = fakeHub();
    await append(box, ...Array.from({ length: 1500 }, (_, i) => `e.${i}`));
    const stop = run(new JetStreamForwarder(hub.nc, box, options(4096)));
    await waitFor(() => hub.sent.length === 1500);
    hub.ackAll(300); // 1,200 still in flight: held for a fuller batch (or a second)
    await stop(); // the connection is gone, not the acks
    expect(box.size).toBe(1200);
  });
});
