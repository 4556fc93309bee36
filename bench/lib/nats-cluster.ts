// A 3-node nats-server cluster (Debian's 2.9, JetStream on every node) for the fleet bench,
// each node from test/helpers/nats-server.ts (client port -1, read from its ports file), its
// JetStream store in a directory of the bench's work dir, its route and monitoring ports
// -1 too, read from the log. Ready means a JetStream meta leader and every peer current (each
// node's /jsz). A node killed (-9) comes back on the ports and store it had, routed to the
// others. Every process is a spawnTracked one: SIGKILLed by PID if the bench exits early.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { jetstreamManager, type StreamConfig, type StreamInfo } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { type NatsServer, startNatsServer } from "../../test/helpers/nats-server.js";
import { waitForLine } from "../../test/helpers/procs.js";
import { waitFor } from "../../test/helpers/wait.js";

const NODES = 3;
const CLUSTER_NAME = "fleet-hub";
/**
 * nats-server starts a JetStream cluster only with a route configured, so the first node gets
 * one to a port nothing listens on (1, privileged); the others route to the first, which
 * tells each about the rest (as test/chaos/cluster-failover.test.ts). No port is picked,
 * released and bound again, where another process could take it meanwhile.
 */
const NOWHERE_ROUTE = "nats-route://127.0.0.1:1";
const ROUTE_LISTENING = /Listening for route connections on 127\.0\.0\.1:(\d+)/;
const HTTP_LISTENING = /Starting http monitor on 127\.0\.0\.1:(\d+)/;
const LISTENING_TIMEOUT_MS = 20_000;
/** Route formation and the meta leader's election on a busy loopback take a few seconds. */
const READY_TIMEOUT_MS = 60_000;
const POLL_MS = 250;

/** What a node's /jsz says about the JetStream meta group (nats-server 2.9). */
interface Jsz {
  meta_cluster?: {
    leader?: string;
    cluster_size?: number;
    /** The peers other than the leader, in the leader's own view only. */
    replicas?: { name: string; current: boolean; offline?: boolean }[];
  };
}

class ClusterNode {
  readonly name: string;
  readonly storeDir: string;
  server: NatsServer | undefined;
  routePort = -1;
  httpPort = -1;

  constructor(name: string, storeDir: string) {
    this.name = name;
    this.storeDir = storeDir;
  }

  get live(): NatsServer {
    if (!this.server) throw new Error(`nats-server ${this.name} not started`);
    return this.server;
  }

  config(routes: readonly string[]): string {
    return `server_name: ${this.name}
http: 127.0.0.1:${this.httpPort}
cluster {
  name: ${CLUSTER_NAME}
  listen: 127.0.0.1:${this.routePort}
  routes: [ ${routes.map((r) => `"${r}"`).join(", ")} ]
}
`;
  }

  /** Starts (again, on the ports it had), resolves once its route and HTTP ports are known. */
  async start(routes: readonly string[]): Promise<void> {
    const old = this.server;
    await old?.stop(); // after kill(): removes the helper's temp dir, never the store
    const server = await startNatsServer({
      storeDir: this.storeDir,
      config: this.config(routes),
      ...(old ? { port: old.port } : {}),
    });
    this.server = server;
    const portIn = async (re: RegExp) => {
      const l = await waitForLine(server.proc, (l) => re.test(l), LISTENING_TIMEOUT_MS, "stderr");
      return Number(re.exec(l)![1]);
    };
    this.routePort = await portIn(ROUTE_LISTENING);
    this.httpPort = await portIn(HTTP_LISTENING);
  }

  async jsz(): Promise<Jsz> {
    const res = await fetch(`http://127.0.0.1:${this.httpPort}/jsz`, {
      signal: AbortSignal.timeout(2_000),
    });
    return (await res.json()) as Jsz;
  }
}

export class NatsCluster {
  readonly #nodes: ClusterNode[];

  private constructor(nodes: ClusterNode[]) {
    this.#nodes = nodes;
  }

  /** Starts three routed nodes, each with its store under `dir`; resolves once {@link ready}. */
  static async start(dir: string): Promise<NatsCluster> {
    const nodes = Array.from({ length: NODES }, (_, i) => {
      const name = `n${i + 1}`;
      const store = join(dir, `${name}-js`);
      mkdirSync(store, { recursive: true });
      return new ClusterNode(name, store);
    });
    const cluster = new NatsCluster(nodes);
    try {
      const [first, ...others] = nodes;
      await first!.start([NOWHERE_ROUTE]);
      const route = `nats-route://127.0.0.1:${first!.routePort}`;
      await Promise.all(others.map((n) => n.start([route])));
      await cluster.ready();
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  /** nats://127.0.0.1:PORT of every node. */
  get urls(): string[] {
    return this.#nodes.map((n) => n.live.url);
  }

  get names(): string[] {
    return this.#nodes.map((n) => n.name);
  }

  /** Current PID of every node (a restart changes it). */
  get pids(): number[] {
    return this.#nodes.map((n) => n.live.pid);
  }

  /**
   * Resolves once every node names the same JetStream meta leader and that leader sees the
   * other two peers current: before that, stream creation may fail or land on a partial group.
   */
  async ready(timeoutMs = READY_TIMEOUT_MS): Promise<string> {
    return waitFor(
      async () => {
        const views = await Promise.all(this.#nodes.map((n) => n.jsz()));
        const leaders = new Set(views.map((v) => v.meta_cluster?.leader));
        const [leader] = leaders;
        // Only the leader lists the peers (the others' views name the leader alone).
        const own = views[this.#nodes.findIndex((n) => n.name === leader)]?.meta_cluster;
        const allCurrent =
          own?.replicas?.length === NODES - 1 && own.replicas.every((r) => r.current && !r.offline);
        return leaders.size === 1 && leader && allCurrent ? leader : undefined;
      },
      {
        timeoutMs,
        intervalMs: POLL_MS,
        message: `the ${CLUSTER_NAME} cluster has no JetStream meta leader with all peers current`,
      },
    );
  }

  /** A client connection knowing every node (it fails over as the gateways do). */
  connect(): Promise<NatsConnection> {
    return connect({ servers: this.urls, reconnectTimeWait: 250, maxReconnectAttempts: -1 });
  }

  /**
   * Creates an R3 stream and resolves, with its info, once its leader is elected and both
   * replicas are current.
   */
  async createStream(
    nc: NatsConnection,
    config: Partial<StreamConfig> & { name: string },
  ): Promise<StreamInfo> {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ ...config, num_replicas: NODES });
    return this.streamReady(nc, config.name);
  }

  /** Resolves with the stream's info once it has a leader and every replica is current. */
  async streamReady(
    nc: NatsConnection,
    stream: string,
    timeoutMs = READY_TIMEOUT_MS,
  ): Promise<StreamInfo> {
    const jsm = await jetstreamManager(nc);
    return waitFor(
      async () => {
        const info = await jsm.streams.info(stream);
        const c = info.cluster;
        return c?.leader !== undefined &&
          c.replicas?.length === NODES - 1 &&
          c.replicas.every((r) => r.current && !r.offline)
          ? info
          : undefined;
      },
      {
        timeoutMs,
        intervalMs: POLL_MS,
        message: `stream ${stream}: no leader with current replicas`,
      },
    );
  }

  /** The index of the node named `name` (a stream's leader, say). */
  indexOf(name: string): number {
    const i = this.#nodes.findIndex((n) => n.name === name);
    if (i < 0) throw new Error(`no node ${name} in ${this.names.join(", ")}`);
    return i;
  }

  /** SIGKILL of node `i`: a crash; its store stays for {@link restart}. */
  async kill(i: number): Promise<void> {
    await this.#nodes[i]!.live.kill();
  }

  /** Starts node `i` again on its ports and store, routed to the other two nodes. */
  async restart(i: number): Promise<void> {
    const routes = this.#nodes
      .filter((_, k) => k !== i)
      .map((n) => `nats-route://127.0.0.1:${n.routePort}`);
    await this.#nodes[i]!.start(routes);
  }

  /** Stops every node (SIGTERM, SIGKILL after the helper's grace); the stores stay. */
  async stop(): Promise<void> {
    await Promise.all(this.#nodes.map((n) => n.server?.stop()));
  }
}
