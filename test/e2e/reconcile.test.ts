// Rows resent after the stream's duplicate window has passed must not be stored twice.
import { headers } from "@nats-io/transport-node";
import { afterEach, describe, expect, it } from "vitest";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { mosquittoPubLines } from "../helpers/mqtt.js";
import {
  closeClients,
  connectClient,
  createStream,
  type NatsServer,
  startNatsServer,
  streamInfo,
  streamMessages,
} from "../helpers/nats-server.js";
import { waitFor } from "../helpers/wait.js";

const WINDOW_MS = 1_000;

describe("beyond the duplicate window", () => {
  let hub: NatsServer | undefined;
  let gw: TestGateway | undefined;

  afterEach(async () => {
    await gw?.dispose();
    gw = undefined;
    await closeClients();
    await hub?.stop();
  });

  it("does not resend rows the stream already holds once the window has passed", async () => {
    hub = await startNatsServer();
    let nc = await connectClient(hub.url);
    await createStream(nc, "EDGE", ["edge.>"], { duplicate_window: WINDOW_MS * 1_000_000 });
    // What a gateway that crashed between publish and PubAck leaves behind: rows 1-3
    // stored in the stream, still in its outbox. Another gateway's message follows.
    for (const n of [1, 2, 3]) {
      const h = headers();
      h.set("Nats-Msg-Id", `gw1-${n}`);
      nc.publish("edge.gw1.t", `m${n}`, { headers: h });
    }
    const other = headers();
    other.set("Nats-Msg-Id", "gw2-77");
    nc.publish("edge.gw2.t", "theirs", { headers: other });
    await nc.flush();
    await waitFor(async () => (await streamInfo(nc, "EDGE")).state.messages === 4);

    gw = await startGateway({ hub: hub.url, stream: "EDGE" });
    await waitFor(() => gw!.gateway.metrics.value("leafgate_upstream_connected") === 1);
    await nc.close();
    await hub.kill();
    await waitFor(() => gw!.gateway.metrics.value("leafgate_upstream_connected") === 0);
    await mosquittoPubLines(gw.mqttPort, "t", ["m1", "m2", "m3", "m4"]);
    const receivedAt = Date.now();
    // Let the rows grow older than the stream's window.
    await waitFor(() => Date.now() - receivedAt > WINDOW_MS * 1.5, { timeoutMs: 5_000 });

    await hub.restart();
    nc = await connectClient(hub.url);
    await waitFor(() => (gw!.gateway.status().outbox as { pending: number }).pending === 0);
    const messages = await streamMessages(nc, "EDGE");
    expect(messages.map((m) => [m.subject, new TextDecoder().decode(m.data)])).toEqual([
      ["edge.gw1.t", "m1"],
      ["edge.gw1.t", "m2"],
      ["edge.gw1.t", "m3"],
      ["edge.gw2.t", "theirs"],
      ["edge.gw1.t", "m4"],
    ]);
    expect(gw.gateway.metrics.value("leafgate_upstream_reconciled_total")).toBe(3);
  });
});
