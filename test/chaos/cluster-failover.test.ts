// The hub is a 3-node nats-server cluster with an R3 stream; the node the gateway is
// connected to is killed (-9) while the gateway is forwarding, once the hub has seen a
// seeded number of forwarded messages (printed with every run; LEAFGATE_CHAOS_SEED=<seed>
// replays it). The gateway must fail over to a surviving node and the stream must end up
// with every message exactly once, in order, with nothing left in the outbox.
import type { NatsConnection } from "@nats-io/transport-node";
import mqtt from "mqtt";
import { afterEach, describe, expect, it } from "vitest";
import { createEdgeStream } from "../helpers/fixtures.js";
import { type ChildGateway, startGatewayProcess, writeConfig } from "../helpers/gateway.js";
import {
  closeClients,
  connectClient,
  type NatsServer,
  startNatsServer,
  streamInfo,
  streamMessages,
} from "../helpers/nats-server.js";
import { stopAll, waitForLine } from "../helpers/procs.js";
import { chaosSeed, rng } from "../helpers/seed.js";
import { type TempDir, waitFor } from "../helpers/wait.js";

const GATEWAY_ID = "fo-gw";
const STREAM = "EDGE";
const TOPIC = "plant/line1/count";
const SUBJECT = `edge.${GATEWAY_ID}.plant.line1.count`;
const MESSAGES = 5_000;
/** The connected node is killed once the hub has seen this share of the messages forwarded. */
const KILL_AFTER_FORWARDED_SHARE: [number, number] = [0.1, 0.9];
const PUBLISH_WINDOW = 64;
/** Cluster formation and JetStream meta-leader election on loopback take a few seconds. */
const CLUSTER_READY_TIMEOUT_MS = 20_000;
/**
 * A stall after the failover is resent this soon (default 10 s): publishes sent to the new
 * node while the stream's new leader is not yet known there are lost without an answer.
 */
const UPSTREAM = { ack_timeout: "2s" } as const;
/**
 * What the failover may take when the killed node led the stream: the gateway's stream
 * check times out while the leader is elected (5 s) and is tried again 5 s later, the
 * election itself (~10 s on a busy loopback), a resend after ack_timeout (2 s), the drain.
 */
const RECOVERY_TIMEOUT_MS = 30_000;
const TEST_TIMEOUT_MS = 90_000;
/** Reading needs a consumer, hence a JetStream meta leader: another election, perhaps. */
const READ_TIMEOUT_MS = 20_000;
/**
 * Every node listens for routes on a port of its own choosing (-1), so no port is picked,
 * released and bound again (another process could take it meanwhile). nats-server starts
 * a JetStream cluster only with a configured route, so the first node gets one to a port
 * nothing listens on (1, privileged); the others route to the first, which tells each
 * about the rest.
 */
const NOWHERE_ROUTE = "nats-route://127.0.0.1:1";
const ROUTE_LISTENING = /Listening for route connections on 127\.0\.0\.1:(\d+)/;

const decoder = new TextDecoder();

function nodeConfig(name: string, route: string): string {
  return `server_name: ${name}
cluster {
  name: leafgate-hub
  listen: 127.0.0.1:-1
  routes: [ "${route}" ]
}
`;
}

/** Three routed nodes, each with its own store. */
async function startCluster(): Promise<NatsServer[]> {
  const first = await startNatsServer({ config: nodeConfig("n1", NOWHERE_ROUTE) });
  const line = await waitForLine(first.proc, (l) => ROUTE_LISTENING.test(l), 10_000, "stderr");
  const route = `nats-route://127.0.0.1:${ROUTE_LISTENING.exec(line)![1]}`;
  const others = await Promise.all(
    ["n2", "n3"].map((name) => startNatsServer({ config: nodeConfig(name, route) })),
  );
  return [first, ...others];
}

interface Status {
  upstream: { state: string; server?: string };
  outbox: { pending: number; lastId: number };
}

async function status(gw: ChildGateway): Promise<Status> {
  return (await (await fetch(`http://127.0.0.1:${gw.httpPort}/status`)).json()) as Status;
}

/** Publishes `payloads` at QoS 1 with a bounded window; resolves when all are PUBACKed. */
async function publishAll(port: number, payloads: readonly string[]): Promise<void> {
  const client = mqtt.connect({
    host: "127.0.0.1",
    port,
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 5_000,
  });
  try {
    await new Promise<void>((resolve, reject) => {
      let next = 0;
      let acked = 0;
      const pump = (): void => {
        while (next < payloads.length && next - acked < PUBLISH_WINDOW) {
          client.publish(TOPIC, payloads[next++]!, { qos: 1 }, (err) => {
            if (err) return reject(err);
            if (++acked === payloads.length) resolve();
            else pump();
          });
        }
      };
      client.once("connect", pump);
      client.once("error", reject);
      client.once("close", () => reject(new Error("publisher: connection to leafgate closed")));
    });
  } finally {
    await client.endAsync();
  }
}

describe("hub cluster failover", () => {
  const nodes: NatsServer[] = [];
  const dirs: TempDir[] = [];

  afterEach(async () => {
    await closeClients();
    await stopAll({ graceMs: 2_000 }); // the gateway and every node, by PID
    for (const node of nodes.splice(0)) await node.stop(); // removes the store dirs
    for (const d of dirs.splice(0)) await d.cleanup();
  });

  it(
    "forwards everything exactly once, in order, after the connected node is killed",
    async ({ onTestFailed }) => {
      const seed = chaosSeed();
      const [lo, hi] = KILL_AFTER_FORWARDED_SHARE.map((share) => Math.floor(MESSAGES * share));
      const killAfterForwarded = lo! + Math.floor(rng(seed)() * (hi! - lo!));
      const t0 = Date.now();
      const phases: string[] = [];
      const phase = (what: string): void => {
        phases.push(`${String(Date.now() - t0).padStart(6)} ms  ${what}`);
      };
      console.log(`cluster-failover: seed ${seed}, kill after ${killAfterForwarded} forwarded`);
      onTestFailed(() =>
        console.error(
          `cluster-failover: seed ${seed} (rerun with LEAFGATE_CHAOS_SEED=${seed}), kill after ` +
            `${killAfterForwarded} forwarded; phases:\n${phases.join("\n")}`,
        ),
      );
      // 1. Three nodes, each with its own store, routed to each other.
      nodes.push(...(await startCluster()));
      const urls = nodes.map((n) => n.url);
      phase(`cluster started`);

      // 2. The R3 stream, once the cluster has a JetStream meta leader and all peers; then
      // wait for its leader and both followers to be current.
      const admin = await connectClient(urls.join(","));
      await waitFor(() => createEdgeStream(admin, { num_replicas: 3 }), {
        timeoutMs: CLUSTER_READY_TIMEOUT_MS,
        intervalMs: 250,
        message: "the cluster did not accept an R3 stream",
      });
      phase(`R3 stream created`);
      const leader = await waitFor(
        async () => {
          const { cluster } = await streamInfo(admin, STREAM);
          return cluster?.leader !== undefined &&
            cluster.replicas?.length === 2 &&
            cluster.replicas.every((r) => r.current)
            ? cluster.leader
            : undefined;
        },
        { timeoutMs: CLUSTER_READY_TIMEOUT_MS, intervalMs: 100, message: "no R3 stream leader" },
      );
      await admin.close();
      phase(`stream leader ${leader} and replicas current`);

      // 3. The gateway knows all three client URLs; find the node it is forwarding through.
      const { dir, file } = writeConfig({
        gateway: { id: GATEWAY_ID },
        upstream: { servers: [urls[0]!], stream: STREAM, ...UPSTREAM },
      });
      dirs.push(dir);
      const gw = await startGatewayProcess(file, {
        LEAFGATE_UPSTREAM_SERVERS: urls.join(","),
      });
      const server = await waitFor(
        async () => {
          const { upstream } = await status(gw);
          return upstream.state === "forwarding" ? upstream.server : undefined;
        },
        { message: () => `gateway never started forwarding\n${gw.proc.describe()}` },
      );
      const victimIndex = nodes.findIndex((n) => server.endsWith(`:${n.port}`));
      expect(victimIndex, `upstream.server ${server} is none of ${urls.join(" ")}`).not.toBe(-1);
      const victim = nodes[victimIndex]!;
      const survivor = nodes[(victimIndex + 1) % nodes.length]!;
      phase(`gateway forwarding via ${server} (n${victimIndex + 1})`);

      // 4. Watch forwarding from a surviving node; kill the connected node halfway through.
      const nc: NatsConnection = await connectClient(survivor.url);
      let seen = 0;
      nc.subscribe(`edge.${GATEWAY_ID}.>`, {
        callback: () => {
          if (++seen === killAfterForwarded) victim.proc.child.kill("SIGKILL");
        },
      });
      await nc.flush();

      const payloads = Array.from(
        { length: MESSAGES },
        (_, i) => `m-${String(i).padStart(5, "0")}`,
      );
      const started = Date.now();
      await publishAll(gw.mqttPort, payloads);
      const exit = await victim.proc.exited;
      phase(`all published; connected node killed`);
      expect(exit.signal, "the connected node was not killed").toBe("SIGKILL");

      // 5. The gateway fails over and drains the outbox.
      const after = await waitFor(
        async () => {
          const s = await status(gw);
          return s.outbox.pending === 0 && s.upstream.state === "forwarding" ? s : undefined;
        },
        {
          timeoutMs: RECOVERY_TIMEOUT_MS,
          intervalMs: 100,
          message: () => `outbox not drained after the failover\n${gw.proc.describe()}`,
        },
      );
      expect(after.outbox.lastId).toBe(MESSAGES);
      expect(after.upstream.server).not.toBe(server);
      expect(gw.proc.stdout()).toContain('"msg":"hub connection lost; reconnecting"');
      const recoveredMs = Date.now() - started;
      phase(`outbox drained via ${after.upstream.server}`);

      // 6. Read back through the survivor: exactly N, unique ids, in order. Reading needs a
      // consumer, and creating one needs a JetStream meta leader, which may still be being
      // elected if the killed node held that role: retry until the deadline.
      const messages = await waitFor(
        async () => {
          const read = await streamMessages(nc, STREAM);
          return read.length >= MESSAGES ? read : undefined;
        },
        {
          timeoutMs: READ_TIMEOUT_MS,
          intervalMs: 250,
          message: "could not read N messages from the stream through a surviving node",
        },
      );
      expect(messages.length).toBe(MESSAGES);
      const ids = messages.map((m) => m.headers["Nats-Msg-Id"]?.[0]);
      expect(new Set(ids).size).toBe(MESSAGES);
      expect(ids).toEqual(payloads.map((_, i) => `${GATEWAY_ID}-${i + 1}`));
      expect(messages.map((m) => decoder.decode(m.data))).toEqual(payloads);
      for (const m of messages) expect(m.subject).toBe(SUBJECT);

      phase(`read ${messages.length} messages`);
      const metrics = await (await fetch(`http://127.0.0.1:${gw.httpPort}/metrics`)).text();
      console.log(
        `${phases.join("\n")}\ncluster-failover: seed ${seed}; connected to ${server}, killed it after ${killAfterForwarded} ` +
          `forwarded; drained via ${after.upstream.server} ${recoveredMs} ms after the first publish\n` +
          metrics
            .split("\n")
            .filter((l) => l.startsWith("leafgate_upstream_"))
            .join("\n"),
      );
    },
    TEST_TIMEOUT_MS,
  );
});
