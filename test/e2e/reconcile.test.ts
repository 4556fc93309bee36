// Beyond the duplicate window, after a long outage (README "Guarantees" → "Beyond the
// window": "a crash or outage between publish and PubAck that outlasts the stream's
// duplicate_window"); the crash is test/chaos/reconcile-crash.test.ts. One gateway process
// throughout: it publishes through a proxy that drops the stream's PubAcks (so its rows
// are stored, unknown to it) and passes only the first STORED of its publishes; then the
// link is cut for longer than the stream's 1 s window while another gateway writes on.
// On reconnect, in the same process:
//  - the rows stored before the outage are not sent again, the others are sent once,
//    counted as resends (they went out on the dead connection);
//  - the stream holds every row once, in order, after the other gateway's messages;
//  - `leafgate_upstream_reconciled_total` is exactly the rows stored before the outage.
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { headers } from "@nats-io/transport-node";
import { describe, expect } from "vitest";
import { it } from "../helpers/fixtures.js";
import { mosquittoPubLines } from "../helpers/mqtt.js";
import { PubAckFilter } from "../helpers/nats-ack-filter.js";
import { streamMessages } from "../helpers/nats-server.js";
import { waitFor } from "../helpers/wait.js";

const WINDOW_MS = 1_000;
const SENT = ["m1", "m2", "m3", "m4", "m5", "m6"];
/** Publishes the proxy lets through before the outage; the rest never reach the hub. */
const STORED = 4;

describe("beyond the duplicate window, after an outage", () => {
  it.override({ streamConfig: { duplicate_window: WINDOW_MS * 1_000_000 } });

  it("does not resend rows the stream already holds once the window has passed", async ({
    nc,
    stream,
    hubProxy,
    gateway,
  }) => {
    const theirs = async (n: number): Promise<void> => {
      const h = headers();
      h.set("Nats-Msg-Id", `gw2-${n}`);
      await jetstream(nc).publish("edge.gw2.t", `theirs-${n}`, { headers: h });
    };
    await theirs(1);
    const filter = new PubAckFilter((s) => s.startsWith("edge.gw1."));
    filter.acks = "drop";
    filter.publishLimit = STORED;
    const proxy = await hubProxy({ filter: filter.link });
    const gw = await gateway.start({
      upstream: {
        servers: [proxy.url],
        stream,
        // No resend on an ack timeout: the outage alone is the fault.
        ack_timeout: "10m",
        reconnect_delay_max: "200ms",
      },
    });
    const metric = (name: string): number => gw.gateway.metrics.value(name);
    await waitFor(() => metric("leafgate_upstream_connected") === 1);
    await mosquittoPubLines(gw.mqttPort, "t", SENT);
    await waitFor(
      () =>
        filter.publishesForwarded + filter.publishesDropped === SENT.length &&
        filter.acksDropped === STORED,
    );

    proxy.cut();
    await waitFor(() => metric("leafgate_upstream_connected") === 0);
    await theirs(2);
    const jsm = await jetstreamManager(nc);
    const last = await jsm.streams.getMessage("EDGE", { last_by_subj: "edge.gw1.>" });
    await waitFor(() => Date.now() > last!.time.getTime() + WINDOW_MS, {
      timeoutMs: WINDOW_MS * 10,
    });
    const sentBefore = new Map(filter.sent);
    filter.acks = "pass";
    filter.publishLimit = Number.POSITIVE_INFINITY;
    proxy.restore();
    await waitFor(() => gw.gateway.status().outbox.pending === 0);

    const messages = await streamMessages(nc, "EDGE");
    const ours = (i: number) => ["edge.gw1.t", SENT[i], `gw1-${i + 1}`];
    expect(
      messages.map((m) => [
        m.subject,
        new TextDecoder().decode(m.data),
        m.headers["Nats-Msg-Id"]?.join(),
      ]),
    ).toEqual([
      ["edge.gw2.t", "theirs-1", "gw2-1"],
      ...[0, 1, 2, 3].map(ours),
      ["edge.gw2.t", "theirs-2", "gw2-2"],
      ...[4, 5].map(ours),
    ]);
    expect(metric("leafgate_upstream_reconciled_total")).toBe(STORED);
    expect(metric("leafgate_upstream_resent_total")).toBe(SENT.length - STORED);
    expect(metric("leafgate_upstream_forwarded_total")).toBe(SENT.length - STORED);
    expect(metric("leafgate_upstream_duplicates_total")).toBe(0);
    // On the wire after the outage: only the rows the stream did not have.
    const resent = [...filter.sent].filter(([id, n]) => n !== (sentBefore.get(id) ?? 0));
    expect(resent).toEqual([
      ["gw1-5", 1],
      ["gw1-6", 1],
    ]);
    expect(filter.errors).toEqual([]);
  });
});
