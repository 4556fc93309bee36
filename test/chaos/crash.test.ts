// `kill -9` of the gateway at random points, while publishing and while draining, on one
// data dir: what is sent, killed and asserted is told in docs/testing.md ("crash.test.ts").
import mqtt from "mqtt";
import { describe, expect } from "vitest";
import { it } from "../helpers/fixtures.js";
import type { ChildGateway } from "../helpers/gateway.js";
import { gatewayStatus } from "../helpers/gateway-http.js";
import { PubAckFilter } from "../helpers/nats-ack-filter.js";
import {
  closeClients,
  connectClient,
  type StreamMessage,
  streamMessages,
} from "../helpers/nats-server.js";
import { stopProcess } from "../helpers/procs.js";
import { chaosSeed, rng } from "../helpers/seed.js";
import { waitFor } from "../helpers/wait.js";

const FULL = process.env.LEAFGATE_CHAOS_FULL === "1";
const GATEWAY_ID = "crash-gw";
const SUBJECTS = 4;
/** PUBLISHes awaiting a PUBACK, per session. */
const PUBLISH_WINDOW = 64;
/** Kills while publishing with the hub up / with the hub down / while draining. */
const KILLS_HUB_UP = FULL ? 8 : 3;
const KILLS_HUB_DOWN = FULL ? 6 : 2;
const KILLS_DRAINING = FULL ? 6 : 2;
/** Range of PUBACKs a session receives before its gateway is killed. */
const ACKS_BEFORE_KILL_HUB_UP: [number, number] = [100, FULL ? 6000 : 2500];
/** Larger while the hub is down, so that the drain afterwards takes long enough to interrupt. */
const ACKS_BEFORE_KILL_HUB_DOWN: [number, number] = [4000, FULL ? 15_000 : 8000];
/**
 * A drain is interrupted once the hub has read this fraction of the backlog. At most a half,
 * so that the smallest backlog the hub-down phase builds still leaves MIN_BACKLOG rows for the
 * last drain.
 */
const DRAIN_KILL_FRACTION: [number, number] = [0.1, 0.5];
/** Backlog each drain must find (by construction; checked): enough to interrupt at a fraction. */
const MIN_BACKLOG = 100;
/** Fresh payloads of the last, uninterrupted session. */
const FINAL_FRESH = 500;
const SESSION_TIMEOUT_MS = 30_000;

const decoder = new TextDecoder();
const topicOf = (n: number): string => `chaos/s${n % SUBJECTS}`;
const subjectOf = (n: number): string => `edge.${GATEWAY_ID}.chaos.s${n % SUBJECTS}`;

interface SessionResult {
  /** Payload numbers in the order they were sent. */
  readonly sent: number[];
  readonly acked: Set<number>;
}

/**
 * One publisher session on `port`: sends `numbers()` in order with at most
 * PUBLISH_WINDOW un-acked, calls `onAck(count)` after each PUBACK, and resolves once the
 * connection has closed (killed) or, when `numbers` ends, everything was acknowledged.
 */
function publishSession(
  port: number,
  numbers: Iterator<number>,
  onAck: (ackCount: number) => void,
): Promise<SessionResult> {
  const sent: number[] = [];
  const acked = new Set<number>();
  let inFlight = 0;
  let exhausted = false;
  let closed = false;
  const client = mqtt.connect({
    host: "127.0.0.1",
    port,
    protocolVersion: 4,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: 5_000,
  });
  // A killed gateway shows up as ECONNRESET; the session ends on "close" either way.
  client.on("error", () => {});
  const pump = (): void => {
    while (!closed && !exhausted && inFlight < PUBLISH_WINDOW) {
      const next = numbers.next();
      if (next.done) {
        exhausted = true;
        break;
      }
      const n = next.value;
      sent.push(n);
      inFlight++;
      client.publish(topicOf(n), `p-${n}`, { qos: 1 }, (err) => {
        inFlight--;
        if (err) return; // "Connection closed": not acknowledged
        acked.add(n);
        onAck(acked.size);
        pump();
        if (exhausted && inFlight === 0) client.end();
      });
    }
  };
  client.on("connect", pump);
  return new Promise((resolve) => {
    client.once("close", () => {
      closed = true;
      client.end(true);
      resolve({ sent, acked });
    });
  });
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

describe("kill -9 of the gateway", () => {
  it("loses nothing PUBACKed, duplicates nothing, keeps per-subject order", async ({
    onTestFailed,
    hub,
    nc: first,
    stream,
    hubProxy,
    gateway,
  }) => {
    const seed = chaosSeed();
    const random = rng(seed);
    const between = ([lo, hi]: [number, number]): number => lo + Math.floor(random() * (hi - lo));
    const log: string[] = [];
    onTestFailed(() => {
      console.error(
        `crash.test: seed ${seed} (rerun with LEAFGATE_CHAOS_SEED=${seed})\n${log.join("\n")}`,
      );
    });

    const currentHub = hub;
    let nc = first;
    // Counts the gateway's publishes on their way to the hub; `publishLimit` stops them.
    const link = new PubAckFilter((subject) => subject.startsWith(`edge.${GATEWAY_ID}.`));
    const proxy = await hubProxy({ filter: link.link });
    const { file } = gateway.writeConfig({
      gateway: { id: GATEWAY_ID },
      upstream: { servers: [proxy.url], stream },
    });

    /** Outbox last id when each gateway process started, and the session it served. */
    const processes: { firstRowAfter: number; session: number | undefined }[] = [];
    const sessions: SessionResult[] = [];
    const everAcked = new Set<number>();
    let nextFresh = 0;

    async function startGateway(): Promise<ChildGateway> {
      const gw = await gateway.spawnFile(file);
      const { outbox } = await gatewayStatus(gw);
      processes.push({ firstRowAfter: outbox.lastId, session: undefined });
      return gw;
    }

    /** Re-sends every un-acknowledged payload, then fresh ones (up to `fresh` of them). */
    function* plan(fresh = Number.POSITIVE_INFINITY): Generator<number> {
      for (let n = 0; n < nextFresh; n++) if (!everAcked.has(n)) yield n;
      for (let i = 0; i < fresh; i++) yield nextFresh++;
    }

    async function session(gw: ChildGateway, killAfterAcks: number | undefined, fresh?: number) {
      const result = await withTimeout(
        publishSession(gw.mqttPort, plan(fresh), (count) => {
          if (count === killAfterAcks) gw.proc.child.kill("SIGKILL");
        }),
        SESSION_TIMEOUT_MS,
        `session ${sessions.length}`,
      );
      processes.at(-1)!.session = sessions.length;
      sessions.push(result);
      for (const n of result.acked) everAcked.add(n);
      if (killAfterAcks !== undefined) {
        const exit = await gw.proc.exited;
        expect(exit.signal, gw.proc.describe()).toBe("SIGKILL");
      }
      log.push(
        `session ${sessions.length - 1}: kill after ${killAfterAcks ?? "-"} acks; ` +
          `sent ${result.sent.length}, acked ${result.acked.size}`,
      );
    }

    // 1. Hub up: kill while publishing (and forwarding).
    for (let i = 0; i < KILLS_HUB_UP; i++) {
      await session(await startGateway(), between(ACKS_BEFORE_KILL_HUB_UP));
    }

    // 2. Hub down: the outbox builds a backlog; kill while publishing.
    await closeClients();
    await stopProcess(currentHub.proc);
    for (let i = 0; i < KILLS_HUB_DOWN; i++) {
      await session(await startGateway(), between(ACKS_BEFORE_KILL_HUB_DOWN));
    }

    // 3. Hub back: kill while draining the backlog. The gateway reaches the hub through a
    // proxy that counts its publishes: from the drain's chosen publish on, the proxy drops
    // the rest, and the gateway is killed. So every kill lands mid-drain by
    // construction: the hub has read exactly `target` publishes, fewer than the backlog.
    await currentHub.restart();
    nc = await connectClient(currentHub.url);
    const hubLink = proxy;
    for (let i = 0; i < KILLS_DRAINING; i++) {
      // No byte reaches the hub before the limit is set: the gateway's dials are refused.
      hubLink.cut();
      const victim = await startGateway();
      const { outbox } = await gatewayStatus(victim);
      // Each drain forwards at most DRAIN_KILL_FRACTION[1] of what is left, so rows remain.
      expect(outbox.pending, `drain ${i}: backlog`).toBeGreaterThanOrEqual(MIN_BACKLOG);
      const fraction = between([DRAIN_KILL_FRACTION[0] * 1000, DRAIN_KILL_FRACTION[1] * 1000]);
      const target = Math.max(1, Math.floor((outbox.pending * fraction) / 1000));
      const limit = link.publishesForwarded + target;
      link.publishLimit = limit;
      hubLink.restore();
      await waitFor(() => link.publishesForwarded === limit, {
        timeoutMs: SESSION_TIMEOUT_MS,
        message: `drain ${i}: ${target} publishes`,
      });
      // Either while the acks of those publishes are on their way (the next drain resends
      // rows the stream holds), or once the gateway has deleted every row the hub acked.
      const afterAcks = random() < 0.5;
      if (afterAcks) {
        await waitFor(
          async () => (await gatewayStatus(victim)).outbox.pending === outbox.pending - target,
          {
            timeoutMs: SESSION_TIMEOUT_MS,
            message: `drain ${i}: ${target} rows acked and deleted`,
          },
        );
      }
      victim.proc.child.kill("SIGKILL");
      const exit = await withTimeout(victim.proc.exited, SESSION_TIMEOUT_MS, `drain ${i}`);
      expect(exit.signal, victim.proc.describe()).toBe("SIGKILL");
      link.publishLimit = Number.POSITIVE_INFINITY;
      log.push(
        `drain ${i}: backlog ${outbox.pending}, killed once the hub had read ${target} publishes` +
          (afterAcks ? " and the gateway had deleted them" : ""),
      );
    }
    // 4. A last, uninterrupted session: re-send everything un-acked, add fresh payloads,
    // then wait until the outbox is empty (every row PubAcked by the stream).
    const last = await startGateway();
    await session(last, undefined, FINAL_FRESH);
    await waitFor(async () => (await gatewayStatus(last)).outbox.pending === 0, {
      timeoutMs: 30_000,
      message: () => `outbox not drained\n${last.proc.describe()}`,
    });
    const metrics = await (await fetch(`http://127.0.0.1:${last.httpPort}/metrics`)).text();
    log.push(
      metrics
        .split("\n")
        .filter((l) => l.startsWith("leafgate_upstream_"))
        .join("\n"),
    );
    const messages = await streamMessages(nc, stream);
    await stopProcess(last.proc);

    checkStream(messages, sessions, processes, log);
    console.log(
      `crash.test: seed ${seed}, ${sessions.length} sessions, ${processes.length} processes, ` +
        `${messages.length} messages\n${log.join("\n")}`,
    );
  }, 120_000);
});

function checkStream(
  messages: readonly StreamMessage[],
  sessions: readonly SessionResult[],
  processes: readonly { firstRowAfter: number; session: number | undefined }[],
  log: string[],
): void {
  const processOf = (row: number): number => {
    let p = 0;
    while (p + 1 < processes.length && row > processes[p + 1]!.firstRowAfter) p++;
    return p;
  };
  const rows = messages.map((m) => {
    const id = m.headers["Nats-Msg-Id"]?.[0] ?? "";
    const match = /^crash-gw-(\d+)$/.exec(id);
    expect(match, `seq ${m.seq}: Nats-Msg-Id ${id}`).not.toBeNull();
    const payload = decoder.decode(m.data);
    const n = Number(/^p-(\d+)$/.exec(payload)?.[1] ?? Number.NaN);
    expect(Number.isInteger(n), `seq ${m.seq}: payload ${payload}`).toBe(true);
    expect(m.subject).toBe(subjectOf(n));
    const row = Number(match![1]);
    return { seq: m.seq, subject: m.subject, row, n, process: processOf(row) };
  });

  // 1. Each outbox row at most once.
  const ids = new Set(rows.map((r) => r.row));
  expect(ids.size, "a Nats-Msg-Id appears twice").toBe(rows.length);

  // 2. Per process: payloads unique, and sent by that process's session.
  const copies = new Map<string, (typeof rows)[number]>();
  for (const r of rows) {
    const key = `${r.process}:${r.n}`;
    expect(copies.get(key), `p-${r.n} twice among the rows of process ${r.process}`).toBe(
      undefined,
    );
    copies.set(key, r);
    const s = processes[r.process]!.session;
    expect(s, `row ${r.row} (p-${r.n}) from process ${r.process}, which had no session`).not.toBe(
      undefined,
    );
    expect(sessions[s!]!.sent.includes(r.n), `p-${r.n} was not sent in session ${s}`).toBe(true);
  }

  // 3. Acknowledged: exactly once in its own process's rows.
  const ackedCopies: (typeof rows)[number][] = [];
  processes.forEach((p, index) => {
    if (p.session === undefined) return;
    for (const n of sessions[p.session]!.acked) {
      const copy = copies.get(`${index}:${n}`);
      expect(copy, `p-${n}, PUBACKed in session ${p.session}, is not in the stream`).toBeDefined();
      ackedCopies.push(copy!);
    }
  });

  // 4. Counted for the record: payloads stored twice because an un-acked one was re-sent.
  const perPayload = new Map<number, number>();
  for (const r of rows) perPayload.set(r.n, (perPayload.get(r.n) ?? 0) + 1);
  const twice = [...perPayload].filter(([, c]) => c > 1).map(([n]) => `p-${n}`);
  log.push(
    `payloads stored twice after a re-send of an un-acked PUBLISH: ${twice.length} ${twice.slice(0, 20).join(" ")}`,
  );

  // 5. Order per subject.
  for (let k = 0; k < SUBJECTS; k++) {
    const subject = subjectOf(k);
    const inStream = rows.filter((r) => r.subject === subject);
    const byRow = [...inStream].sort((a, b) => a.row - b.row);
    expect(
      inStream.map((r) => r.row),
      `${subject}: stream order is not row id order`,
    ).toEqual(byRow.map((r) => r.row));
    const acked = ackedCopies.filter((r) => r.subject === subject).sort((a, b) => a.seq - b.seq);
    const expected = [...acked].sort(
      (a, b) => processes[a.process]!.session! - processes[b.process]!.session! || a.n - b.n,
    );
    expect(
      acked.map((r) => `p-${r.n}`),
      `${subject}: PUBACKed payloads out of order`,
    ).toEqual(expected.map((r) => `p-${r.n}`));
  }
}
