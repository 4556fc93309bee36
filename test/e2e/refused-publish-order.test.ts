// README "In order per subject", its exception, with a real refusal: "if the hub refuses
// one publish (an error reply …) while later ones succeed, the refused message is stored
// after them." The stream's `max_msg_size` is smaller than one message of a backlog of
// small ones. The backlog builds while the hub is unreachable, so when the link comes
// back every row goes out in one pipelined burst (one outbox read, one synchronous loop
// of publishes) before any reply is read: the hub stores the rows before the big one,
// refuses it (JetStream error 10054, code 400), stores the rows after it. The limit is
// then raised with a stream update and the gateway's retry stores the big one last.
//
// Asserted exactly: the stream's order; every row once; and the counters against what
// the proxy saw on the wire (it reads the NATS protocol and counts every publish and
// every PubAck): publish errors = refusals the hub sent, resends = publishes beyond one
// per row, forwarded = rows, duplicates = duplicate PubAcks (0).
import { jetstreamManager } from "@nats-io/jetstream";
import { describe, expect } from "vitest";
import { it } from "../helpers/fixtures.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { PubAckFilter } from "../helpers/nats-ack-filter.js";
import { streamMessages } from "../helpers/nats-server.js";
import { waitFor } from "../helpers/wait.js";

const GATEWAY_ID = "gw1";
const ROWS = 20;
/** The one message the stream refuses: p-4, row 5. */
const BIG = 4;
/** Room for a small message and its headers (Nats-Msg-Id), not for the big one. */
const MAX_MSG_SIZE = 256;
const BIG_PAYLOAD = "x".repeat(MAX_MSG_SIZE);
/** nats-server's JSStreamMessageExceedsMaximumErr. */
const TOO_BIG = "400 10054 message size exceeds maximum allowed";

const payloadOf = (n: number): string => (n === BIG ? BIG_PAYLOAD : `p-${n}`);
const range = (from: number, to: number): number[] =>
  Array.from({ length: to - from }, (_, i) => from + i);

describe("a publish the hub refuses while later ones succeed", () => {
  it.override({ streamConfig: { max_msg_size: MAX_MSG_SIZE } });

  it("is stored after them, once; the counters match the wire", async ({
    nc,
    stream,
    hubProxy,
    gateway,
  }) => {
    const filter = new PubAckFilter((s) => s.startsWith(`edge.${GATEWAY_ID}.`));
    const proxy = await hubProxy({ filter: filter.link });
    proxy.cut();
    const gw = await gateway.start({
      gateway: { id: GATEWAY_ID },
      upstream: {
        servers: [proxy.url],
        stream,
        // Only refusals cause resends here, never a slow PubAck.
        reconnect_delay_max: "200ms",
        ack_timeout: "10m",
      },
    });
    const metric = (name: string, labels?: Record<string, string>): number =>
      gw.gateway.metrics.value(name, labels);
    const outbox = () => gw.gateway.status().outbox as { pending: number; lastId: number };

    const client = await connectMqttJs(gw.mqttPort);
    await Promise.all(
      range(0, ROWS).map((n) => client.publishAsync("t", payloadOf(n), { qos: 1 })),
    );
    await client.endAsync();
    expect(outbox()).toEqual(expect.objectContaining({ pending: ROWS, lastId: ROWS }));

    proxy.restore();
    // The burst: the hub answered every row; all but the big one are stored and deleted.
    await waitFor(() => filter.seenAcks.length === ROWS && outbox().pending === 1);
    expect(filter.seenAcks.map((a) => a.msgId)).toEqual(range(1, ROWS + 1).map((r) => `gw1-${r}`));
    expect(filter.seenAcks.filter((a) => a.kind === "refused")).toEqual([
      { msgId: `gw1-${BIG + 1}`, kind: "refused", reason: TOO_BIG },
    ]);

    const jsm = await jetstreamManager(nc);
    const { config } = await jsm.streams.info(stream);
    await jsm.streams.update(stream, { ...config, max_msg_size: -1 });
    await waitFor(() => outbox().pending === 0);

    const messages = await streamMessages(nc, stream);
    const order = [...range(0, BIG), ...range(BIG + 1, ROWS), BIG];
    expect(
      messages.map((m) => [m.subject, new TextDecoder().decode(m.data), m.headers["Nats-Msg-Id"]]),
    ).toEqual(order.map((n) => ["edge.gw1.t", payloadOf(n), [`gw1-${n + 1}`]]));

    // Until the limit was raised the gateway retried the big row (once a second), each
    // time refused; then it was stored. Nothing else went twice.
    const refusals = filter.ackCounts().refused;
    expect(refusals).toBeGreaterThanOrEqual(1);
    expect(filter.seenAcks.filter((a) => a.kind === "refused").map((a) => a.msgId)).toEqual(
      Array(refusals).fill(`gw1-${BIG + 1}`),
    );
    const sends = [...filter.sent.values()].reduce((a, b) => a + b, 0);
    expect(filter.sent.get(`gw1-${BIG + 1}`)).toBe(refusals + 1);
    expect(metric("leafgate_upstream_publish_errors_total", { reason: "400" })).toBe(refusals);
    expect(metric("leafgate_upstream_resent_total")).toBe(sends - ROWS);
    expect(metric("leafgate_upstream_forwarded_total")).toBe(ROWS);
    expect(metric("leafgate_upstream_duplicates_total")).toBe(filter.ackCounts().duplicate);
    expect(filter.errors).toEqual([]);
  });
});
