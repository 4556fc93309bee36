// Beyond the duplicate window, after a real crash (README "Guarantees" → "Beyond the
// window"). The gateway (the bundle, a child process) forwards through a proxy that reads
// the NATS protocol and drops exactly the stream's PubAcks to it (test/helpers/
// nats-ack-filter.ts): its rows are stored in the stream, but it never hears so and keeps
// them in its outbox. Optionally the proxy also stops passing its publishes after K of
// them, so some rows are stored and the rest are not. Then `kill -9`, a wait until the
// stream's 1 s `duplicate_window` has passed since the last stored row (from the stream's
// own timestamps), and a restart on the same data dir:
//  - every row is in the stream exactly once (no Nats-Msg-Id twice, exact count), in
//    order; the rows stored before the crash are not even sent again, the others are sent
//    once (counted by the proxy, per Nats-Msg-Id);
//  - `leafgate_upstream_reconciled_total` is exactly the number of rows stored before the
//    crash;
//  - other gateways' messages are interleaved in the stream (before, between, and after
//    ours, last of all), one of them under a prefix whose gateway id starts with ours:
//    "the last message under its own prefix" finds ours.
// With `drain: fresh_first` a crash can leave rows stored above rows never sent (live rows
// go ahead of the backlog): the last of them must not make the backlog look stored.
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { headers, type NatsConnection } from "@nats-io/transport-node";
import { describe, expect } from "vitest";
import type { UpstreamInput } from "../helpers/config.js";
import { type Fixtures, it } from "../helpers/fixtures.js";
import type { ChildGateway } from "../helpers/gateway.js";
import { gatewayMetrics, gatewayStatus, metricTotal } from "../helpers/gateway-http.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { PubAckFilter } from "../helpers/nats-ack-filter.js";
import { streamMessages } from "../helpers/nats-server.js";
import { waitForLine } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";

const FULL = process.env.LEAFGATE_CHAOS_FULL === "1";
const GATEWAY_ID = "rc-gw";
/** Another gateway whose id starts with ours: its Nats-Msg-Ids start with "rc-gw-" too. */
const OTHER_ID = "rc-gw-2";
const STREAM = "EDGE";
/** The stream's duplicate window: short, so that the test can outlast it. */
const WINDOW_MS = 1_000;
const ROWS = FULL ? 3_000 : 120;
const SUBJECTS = 3;
/**
 * Resending after an ack timeout is not what is tested here: it must not fire before the
 * kill (a resend after the window would be stored again, crash or not).
 */
const ACK_TIMEOUT_MS = 600_000;
const GATEWAY_CONFIG: UpstreamInput = {
  ack_timeout: `${ACK_TIMEOUT_MS}ms`,
  reconnect_delay_max: "200ms",
};
const decoder = new TextDecoder();
const topicOf = (n: number): string => `rc/s${n % SUBJECTS}`;
const subjectOf = (n: number): string => `edge.${GATEWAY_ID}.rc.s${n % SUBJECTS}`;
/** Payload p-n is the n-th message accepted, so it is row n + 1 of a fresh outbox. */
const msgIdOf = (n: number): string => `${GATEWAY_ID}-${n + 1}`;

interface Row {
  subject: string;
  payload: string;
  msgId: string;
  /** The Leafgate-Sent header of a row sent out of id order (drain: fresh_first). */
  sent?: string;
}

const ours = (n: number): Row => ({ subject: subjectOf(n), payload: `p-${n}`, msgId: msgIdOf(n) });
const theirs = (n: number): Row => ({
  subject: `edge.${OTHER_ID}.t`,
  payload: `o-${n}`,
  msgId: `${OTHER_ID}-${n}`,
});
const range = (from: number, to: number): number[] =>
  Array.from({ length: to - from }, (_, i) => from + i);

/** Another gateway's message, stored before this returns (so stream order is known). */
async function publishTheirs(nc: NatsConnection, n: number): Promise<void> {
  const h = headers();
  h.set("Nats-Msg-Id", theirs(n).msgId);
  const ack = await jetstream(nc).publish(theirs(n).subject, theirs(n).payload, { headers: h });
  expect(ack.duplicate).toBe(false);
}

/** Publishes p-from … p-(to-1) over MQTT QoS 1, one connection, and awaits every PUBACK. */
async function publishOurs(port: number, from: number, to: number): Promise<void> {
  const client = await connectMqttJs(port);
  await Promise.all(
    range(from, to).map((n) => client.publishAsync(topicOf(n), `p-${n}`, { qos: 1 })),
  );
  await client.endAsync();
}

async function stored(nc: NatsConnection): Promise<Row[]> {
  return (await streamMessages(nc, STREAM)).map((m) => {
    const row: Row = {
      subject: m.subject,
      payload: decoder.decode(m.data),
      msgId: m.headers["Nats-Msg-Id"]?.join(",") ?? "",
    };
    const sent = m.headers["Leafgate-Sent"];
    return sent === undefined ? row : { ...row, sent: sent.join(",") };
  });
}

async function messageCount(nc: NatsConnection): Promise<number> {
  return (await (await jetstreamManager(nc)).streams.info(STREAM)).state.messages;
}

/** Resolves once the stream's duplicate window has passed since our last stored row. */
async function outlastWindow(nc: NatsConnection): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const last = await jsm.streams.getMessage(STREAM, { last_by_subj: `edge.${GATEWAY_ID}.>` });
  const storedAtMs = last!.time.getTime();
  await waitFor(() => Date.now() > storedAtMs + WINDOW_MS, { timeoutMs: WINDOW_MS * 10 });
}

describe("reconciliation after kill -9, beyond the duplicate window", () => {
  it.override({ streamConfig: { duplicate_window: WINDOW_MS * 1_000_000 } });

  type SetUp = Pick<Fixtures, "stream" | "hubProxy" | "gateway">;
  async function setUp({ stream, hubProxy, gateway }: SetUp, upstream = GATEWAY_CONFIG) {
    const filter = new PubAckFilter((s) => s.startsWith(`edge.${GATEWAY_ID}.`));
    const proxy = await hubProxy({ filter: filter.link });
    const { file } = gateway.writeConfig({
      gateway: { id: GATEWAY_ID },
      upstream: { servers: [proxy.url], stream, ...upstream },
    });
    return { filter, file, proxy };
  }

  async function killHard(gw: ChildGateway): Promise<void> {
    gw.proc.child.kill("SIGKILL");
    expect((await gw.proc.exited).signal).toBe("SIGKILL");
  }

  it.for([
    { case: "every row stored", storedBeforeCrash: ROWS },
    { case: "the proxy passed only some publishes", storedBeforeCrash: Math.floor(ROWS * 0.6) },
  ])(
    "$case: each row once, reconciled_total = rows stored before the crash",
    async ({ storedBeforeCrash }, { nc, stream, hubProxy, gateway }) => {
      const { filter, file } = await setUp({ stream, hubProxy, gateway });
      filter.acks = "drop";
      filter.publishLimit = storedBeforeCrash;
      await publishTheirs(nc, 1);
      await publishTheirs(nc, 2);

      let gw = await gateway.spawnFile(file);
      // The configuration this test needs is one users should not run: the gateway says so.
      const warning = await waitForLine(gw.proc, (l) =>
        l.includes("duplicate_window is not longer"),
      );
      expect(JSON.parse(warning)).toMatchObject({
        level: 40,
        stream: STREAM,
        duplicateWindowMs: WINDOW_MS,
        ackTimeoutMs: ACK_TIMEOUT_MS,
      });
      await publishOurs(gw.mqttPort, 0, ROWS);
      // Every row went out once; the first storedBeforeCrash reached the stream, and the
      // stream's PubAcks to them were dropped on the way back.
      await waitFor(
        () =>
          filter.publishesForwarded + filter.publishesDropped === ROWS &&
          filter.acksDropped === storedBeforeCrash,
        { message: () => `${JSON.stringify(filter.ackCounts())}\n${gw.proc.describe()}` },
      );
      expect(await messageCount(nc)).toBe(2 + storedBeforeCrash);
      expect((await gatewayStatus(gw)).outbox.pending).toBe(ROWS);
      // Others write after us: the stream's last message is not ours.
      await publishTheirs(nc, 3);
      await publishTheirs(nc, 4);
      await killHard(gw);
      await outlastWindow(nc);

      const sentBeforeRestart = new Map(filter.sent);
      filter.acks = "pass";
      filter.publishLimit = Number.POSITIVE_INFINITY;
      gw = await gateway.spawnFile(file);
      await waitFor(async () => (await gatewayStatus(gw)).outbox.pending === 0, {
        message: () => gw.proc.describe(),
      });

      const expected = [
        theirs(1),
        theirs(2),
        ...range(0, storedBeforeCrash).map(ours),
        theirs(3),
        theirs(4),
        ...range(storedBeforeCrash, ROWS).map(ours),
      ];
      expect(await stored(nc)).toEqual(expected);
      const metrics = await gatewayMetrics(gw);
      expect(metricTotal(metrics, "leafgate_upstream_reconciled_total")).toBe(storedBeforeCrash);
      expect(metricTotal(metrics, "leafgate_upstream_forwarded_total")).toBe(
        ROWS - storedBeforeCrash,
      );
      expect(metricTotal(metrics, "leafgate_upstream_duplicates_total")).toBe(0);
      expect(metricTotal(metrics, "leafgate_upstream_resent_total")).toBe(0);
      // On the wire: rows stored before the crash were not sent again; each other row once.
      const sentAfterRestart = range(0, ROWS)
        .map(msgIdOf)
        .filter((id) => (filter.sent.get(id) ?? 0) !== (sentBeforeRestart.get(id) ?? 0));
      expect(sentAfterRestart).toEqual(range(storedBeforeCrash, ROWS).map(msgIdOf));
      expect([...filter.sent.values()].every((times) => times === 1)).toBe(true);
      expect(filter.errors).toEqual([]);
    },
  );

  // Backlog p-0…p-7 (rows 1-8) waits while the hub is away; at most 4 publishes await
  // their PubAck; live p-8, p-9 (rows 9, 10) arrive once rows 1-4 are out. The stream's
  // PubAcks are held and let through two at a time; each pair makes room for two rows,
  // and fresh_first takes live rows first.
  it.for([
    {
      lastStored: "a live row",
      releases: 1,
      // Rows 3, 4, 9, 10 stored, not acknowledged; 5-8 never sent.
      before: [0, 1, 2, 3, 8, 9],
      sentHeaders: { 8: "..4,9..9", 9: "..4,9..10" },
      after: [4, 5, 6, 7],
    },
    {
      lastStored: "a backlog row",
      releases: 2,
      // Rows 5, 6, 9, 10 stored, not acknowledged; 7, 8 never sent.
      before: [0, 1, 2, 3, 8, 9, 4, 5],
      sentHeaders: { 8: "..4,9..9", 9: "..4,9..10", 4: "..5,9..10", 5: "..6,9..10" },
      after: [6, 7],
    },
  ])(
    "drain fresh_first, $lastStored stored last: rows sent out of order are reconciled exactly",
    async ({ releases, before, sentHeaders, after }, { nc, stream, hubProxy, gateway }) => {
      const inFlight = 4;
      const backlog = 8;
      const live = 2;
      const { filter, file, proxy } = await setUp(
        { stream, hubProxy, gateway },
        { ...GATEWAY_CONFIG, drain: "fresh_first", max_in_flight: inFlight },
      );
      proxy.cut();
      filter.acks = "hold";
      let gw = await gateway.spawnFile(file);
      await publishOurs(gw.mqttPort, 0, backlog);
      proxy.restore();
      await waitFor(() => filter.heldAcks === inFlight, { message: () => gw.proc.describe() });
      await publishOurs(gw.mqttPort, backlog, backlog + live);
      for (let i = 0; i < releases; i++) {
        expect(filter.releaseAcks(2)).toBe(2);
        await waitFor(() => filter.heldAcks === inFlight, { message: () => gw.proc.describe() });
      }
      const acked = 2 * releases;
      await waitFor(
        async () => (await gatewayStatus(gw)).outbox.pending === backlog + live - acked,
      );
      const withHeader = (n: number): Row => {
        const header = (sentHeaders as Record<number, string>)[n];
        return header === undefined ? ours(n) : { ...ours(n), sent: header };
      };
      expect(await stored(nc)).toEqual(before.map(withHeader));
      await killHard(gw);
      await outlastWindow(nc);

      filter.acks = "pass";
      gw = await gateway.spawnFile(file);
      await waitFor(async () => (await gatewayStatus(gw)).outbox.pending === 0, {
        message: () => gw.proc.describe(),
      });
      expect(await stored(nc)).toEqual([...before.map(withHeader), ...after.map(ours)]);
      const metrics = await gatewayMetrics(gw);
      expect(metricTotal(metrics, "leafgate_upstream_reconciled_total")).toBe(
        before.length - acked,
      );
      expect(metricTotal(metrics, "leafgate_upstream_forwarded_total")).toBe(after.length);
      expect(metricTotal(metrics, "leafgate_upstream_duplicates_total")).toBe(0);
      // Each row went to the hub once, crash or not.
      expect([...filter.sent.keys()].sort()).toEqual(
        range(0, backlog + live)
          .map(msgIdOf)
          .sort(),
      );
      expect([...filter.sent.values()].every((times) => times === 1)).toBe(true);
      expect(filter.errors).toEqual([]);
    },
  );
});
