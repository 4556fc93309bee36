// vitest fixtures for tests that need a hub, its EDGE stream and gateways. A fixture is set
// up only when a test names it, and torn down after the test whether it passed or not:
// everything is registered on one stack when it starts and stopped in reverse (gateways
// before the proxies and hub they talk to), then any other process the test started, by PID.
//
//   import { it } from "../helpers/fixtures.js";
//   it("forwards", async ({ stream, hub, nc, gateway }) => {
//     const gw = await gateway.start({ upstream: { servers: [hub.url], stream } });
//   });
//
// Per file or per describe, `it.override({ streamConfig: {...} })` (or `hubOptions`)
// changes what the fixtures create.
import { jetstreamManager, type StreamConfig } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { test as base } from "vitest";
import {
  type ConfigFile,
  type GatewayConfigInput,
  type WriteConfigOptions,
  writeConfig,
} from "./config.js";
import { type FaultProxy, type FaultProxyOptions, startFaultProxy } from "./fault-proxy.js";
import {
  type ChildGateway,
  startGateway,
  startGatewayProcess,
  type TestGateway,
} from "./gateway.js";
import {
  clientsFromNow,
  connectClient,
  createStream,
  type NatsServer,
  type StartNatsOptions,
  startNatsServer,
} from "./nats-server.js";
import { liveProcesses, stopProcess } from "./procs.js";

/** The stream the gateway's exported subjects (`edge.<gateway>.>`) land in. */
export const EDGE_STREAM = "EDGE";
export const EDGE_SUBJECTS = ["edge.>"];

/** Creates the EDGE stream (file storage, so it survives hub restarts); returns its name. */
export async function createEdgeStream(
  nc: NatsConnection,
  extra: Partial<StreamConfig> = {},
): Promise<string> {
  await createStream(nc, EDGE_STREAM, EDGE_SUBJECTS, extra);
  return EDGE_STREAM;
}

/** Runs after the test, before anything registered earlier. */
export type Defer = (cleanup: () => unknown) => void;

/** A gateway from the bundle, on a config file of its own. */
export interface SpawnedGateway extends ChildGateway, ConfigFile {}

export interface GatewayLauncher {
  /** In this process (direct access to metrics and status); disposed after the test. */
  start(input?: GatewayConfigInput): Promise<TestGateway>;
  /** `node dist/leafgate.mjs run` on `input`; stopped by PID after the test. */
  spawn(input?: GatewayConfigInput, env?: NodeJS.ProcessEnv): Promise<SpawnedGateway>;
  /** The bundle on a file already written (again, after a kill or a stop); stopped likewise. */
  spawnFile(file: string, env?: NodeJS.ProcessEnv): Promise<ChildGateway>;
  /** Writes `input` to a config file (temp dir removed after the test) without starting it. */
  writeConfig(input?: GatewayConfigInput, options?: WriteConfigOptions): ConfigFile;
}

/**
 * Hubs that outlive a test: a stream created on one is deleted after the test, and its
 * process (whichever it is after restarts) is not the test's to stop.
 */
const sharedHubs = new Set<NatsServer>();

export interface Fixtures {
  /** Registers a cleanup; every cleanup runs after the test, last registered first. */
  defer: Defer;
  /** Starts a nats-server of this test's own (JetStream, ephemeral port unless told). */
  startHub: (options?: StartNatsOptions) => Promise<NatsServer>;
  /** How `hub` is started; default JetStream on an ephemeral port. */
  hubOptions: StartNatsOptions;
  /**
   * A nats-server of this test's own; stopped after it (with every client still open).
   * A file whose tests may share one says `it.override("hub", ({ sharedHub }) => sharedHub)`.
   */
  hub: NatsServer;
  /** A client connected to `hub`. */
  nc: NatsConnection;
  /** Extra settings for `stream` (max_msg_size, duplicate_window…). */
  streamConfig: Partial<StreamConfig>;
  /** The EDGE stream on `hub`, capturing `edge.>`; the value is its name. */
  stream: string;
  /** Starts a fault proxy in front of `hub`; closed after the test. */
  hubProxy: (options?: FaultProxyOptions) => Promise<FaultProxy>;
  gateway: GatewayLauncher;
  /** `gateway.start` forwarding to `stream` on `hub`; `input` (its upstream too) merged over. */
  edgeGateway: (input?: GatewayConfigInput) => Promise<TestGateway>;
}

export interface FileFixtures {
  /** One nats-server for the whole file (JetStream, ephemeral port); stopped after it. */
  sharedHub: NatsServer;
}

/** `it` / `test` with the fixtures above. */
export const it = base.extend<Fixtures & FileFixtures>({
  // Automatic: whatever a test starts is stopped, whichever fixtures it names.
  defer: [
    // biome-ignore lint/correctness/noEmptyPattern: vitest reads a fixture's dependencies from this pattern
    async ({}, use) => {
      const cleanups: (() => unknown)[] = [];
      const running = new Set(liveProcesses());
      const closeNewClients = clientsFromNow();
      await use((cleanup) => void cleanups.push(cleanup));
      const teardown = [
        ...cleanups.reverse(),
        // Then what the test left without saying: any process it started (by PID), and the
        // NATS clients it opened.
        () =>
          Promise.all(
            liveProcesses()
              .filter((p) => !running.has(p) && ![...sharedHubs].some((h) => h.proc === p))
              .map((p) => stopProcess(p)),
          ),
        closeNewClients,
      ];
      const errors: unknown[] = [];
      for (const step of teardown) {
        try {
          await step();
        } catch (err) {
          errors.push(err);
        }
      }
      if (errors.length === 1) throw errors[0];
      if (errors.length > 1) throw new AggregateError(errors, "teardown failed");
    },
    { auto: true },
  ],

  hubOptions: {},

  startHub: async ({ defer }, use) => {
    await use(async (options) => {
      const hub = await startNatsServer(options);
      defer(() => hub.stop());
      // Clients the test opened on its own: closed before the hub goes, after the gateways.
      defer(clientsFromNow());
      return hub;
    });
  },

  hub: async ({ startHub, hubOptions }, use) => {
    await use(await startHub(hubOptions));
  },

  nc: async ({ defer, hub }, use) => {
    const nc = await connectClient(hub.url);
    defer(() => nc.close());
    await use(nc);
  },

  streamConfig: {},

  sharedHub: [
    // biome-ignore lint/correctness/noEmptyPattern: vitest reads a fixture's dependencies from this pattern
    async ({}, use) => {
      const hub = await startNatsServer();
      sharedHubs.add(hub);
      const closeNewClients = clientsFromNow();
      await use(hub);
      await closeNewClients();
      sharedHubs.delete(hub);
      await hub.stop();
    },
    { scope: "file" },
  ],

  stream: async ({ defer, hub, nc, streamConfig }, use) => {
    const stream = await createEdgeStream(nc, streamConfig);
    // On a shared hub the next test starts from an empty stream (the test may have closed
    // `nc`, so a client of its own deletes it).
    if (sharedHubs.has(hub)) {
      defer(async () => {
        const admin = await connectClient(hub.url);
        await (await jetstreamManager(admin)).streams.delete(stream).catch(() => {});
        await admin.close();
      });
    }
    await use(stream);
  },

  hubProxy: async ({ defer, hub }, use) => {
    await use(async (options) => {
      const proxy = await startFaultProxy(hub.port, options);
      defer(() => proxy.close());
      return proxy;
    });
  },

  gateway: async ({ defer }, use) => {
    const written = (input?: GatewayConfigInput, options?: WriteConfigOptions) => {
      const config = writeConfig(input, options);
      defer(() => config.dir.cleanup());
      return config;
    };
    const spawnFile = async (file: string, env?: NodeJS.ProcessEnv) => {
      const child = await startGatewayProcess(file, env);
      defer(() => stopProcess(child.proc));
      return child;
    };
    await use({
      start: async (input) => {
        const gw = await startGateway(input);
        defer(() => gw.dispose());
        return gw;
      },
      spawn: async (input, env) => {
        const { file, dir } = written(input);
        return { ...(await spawnFile(file, env)), file, dir };
      },
      spawnFile,
      writeConfig: written,
    });
  },

  edgeGateway: async ({ hub, stream, gateway }, use) => {
    await use((input = {}) =>
      gateway.start({ ...input, upstream: { servers: [hub.url], stream, ...input.upstream } }),
    );
  },
});
