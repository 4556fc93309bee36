// The hub's own ceiling for one stream, for the fleet bench to compare against: a bare
// pipelined publisher (core publishes with a reply subject under one wildcard inbox, as
// leafgate's forwarder does, `Nats-Msg-Id` on each, a fixed number in flight) into a fresh
// stream on the cluster, R3 and then R1, each deleted afterwards. What R3 costs over R1 is
// the replication: the leader's append waits for a follower's. CPU per message is read for
// every node from /proc.
import { jetstreamManager } from "@nats-io/jetstream";
import {
  createInbox,
  headers,
  type NatsConnection,
  type Subscription,
} from "@nats-io/transport-node";
import { cpuSeconds } from "./measure.js";
import type { NatsCluster } from "./nats-cluster.js";

const CEILING_STREAM = "FLEET_CEILING";
const CEILING_SUBJECT = "ceiling";
const TIMEOUT_MS = 120_000;

export interface Ceiling {
  replicas: number;
  msgsPerSecond: number;
  /** Every node's CPU together, per message stored. */
  clusterUsPerMsg: number;
  /** Acks that were not a plain success (duplicates, errors). */
  failed: number;
}

/** Publishes `count` messages of `payloadBytes` with `inFlight` outstanding at most. */
export async function measureCeiling(
  cluster: NatsCluster,
  nc: NatsConnection,
  replicas: number,
  count: number,
  inFlight: number,
  payloadBytes: number,
): Promise<Ceiling> {
  const jsm = await jetstreamManager(nc);
  if (replicas === 3) {
    await cluster.createStream(nc, { name: CEILING_STREAM, subjects: [`${CEILING_SUBJECT}.>`] });
  } else {
    await jsm.streams.add({
      name: CEILING_STREAM,
      subjects: [`${CEILING_SUBJECT}.>`],
      num_replicas: replicas,
    });
  }
  try {
    const inbox = createInbox();
    const payload = new Uint8Array(payloadBytes);
    let sent = 0;
    let acked = 0;
    let failed = 0;
    let sub: Subscription | undefined;
    const cpu0 = cluster.pids.map(cpuSeconds);
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`ceiling: ${acked} of ${count} acked`)),
        TIMEOUT_MS,
      );
      const pump = () => {
        while (sent < count && sent - acked < inFlight) {
          const h = headers();
          h.set("Nats-Msg-Id", `ceiling-${sent}`);
          nc.publish(`${CEILING_SUBJECT}.s${sent % 4}`, payload, {
            reply: `${inbox}.${sent}`,
            headers: h,
          });
          sent++;
        }
      };
      sub = nc.subscribe(`${inbox}.*`, {
        callback: (_err, m) => {
          const text = new TextDecoder().decode(m.data);
          if (!text.includes('"seq"') || text.includes('"duplicate"')) failed++;
          if (++acked === count) {
            clearTimeout(timer);
            resolve();
          } else if (acked % 256 === 0) pump();
        },
      });
      pump();
    });
    sub?.unsubscribe();
    const seconds = (performance.now() - t0) / 1000;
    const cpu = cluster.pids.reduce((a, pid, i) => a + cpuSeconds(pid) - cpu0[i]!, 0);
    return {
      replicas,
      msgsPerSecond: count / seconds,
      clusterUsPerMsg: (cpu * 1e6) / count,
      failed,
    };
  } finally {
    await jsm.streams.delete(CEILING_STREAM);
  }
}
