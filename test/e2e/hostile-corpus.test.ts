// Every input that once broke the gateway (test/helpers/hostile-corpus.ts), replayed against
// the shipped bundle as a child process, so that a crash ends the process and shows. Each
// runs twice: under the default topic bounds, and with them opened to their limits, so the
// code the bounds protect (the subscription trie, the session's end) must hold on its own.
// Two well-behaved clients stay connected throughout and must see every message they expect.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Bystanders, connectBystanders } from "../helpers/bystanders.js";
import type { GatewayConfigInput } from "../helpers/config.js";
import { type ChildGateway, startGatewayProcess, writeConfig } from "../helpers/gateway.js";
import { gatewayMetrics, metricTotal } from "../helpers/gateway-http.js";
import {
  HOSTILE_CORPUS,
  type HostileConnection,
  replayHostileCase,
  UNBOUNDED_MQTT,
} from "../helpers/hostile-corpus.js";
import { stopAll } from "../helpers/procs.js";
import { closeRawClients } from "../helpers/raw-mqtt.js";
import { type TempDir, waitFor } from "../helpers/wait.js";

/** Sessions the bystanders hold: the gauge returns to this once every corpus session ended. */
const BYSTANDER_SESSIONS = 2;
/** A persistent corpus session expires 1 s after its client left; allow a loaded machine. */
const SESSIONS_GONE_DEADLINE_MS = 15_000;

interface Profile {
  readonly name: string;
  readonly key: keyof Pick<HostileConnection, "bounded" | "unbounded">;
  readonly mqtt: GatewayConfigInput["mqtt"];
  /** Exact counters once the corpus has run. */
  readonly refused: Record<string, number>;
  readonly violations: Record<string, number>;
}

const PROFILES: readonly Profile[] = [
  {
    name: "under the default topic bounds",
    key: "bounded",
    mqtt: {},
    refused: { "too-long": 3, "invalid-filter": 1 },
    violations: { topicTooLong: 1, malformed: 1 },
  },
  {
    name: "with the topic bounds opened to their limits",
    key: "unbounded",
    mqtt: UNBOUNDED_MQTT,
    refused: { "invalid-filter": 1 },
    violations: { malformed: 1 },
  },
];

describe.each(PROFILES)("inputs that once broke us, $name", (profile) => {
  let dir: TempDir | undefined;
  let gw: ChildGateway;
  let bystanders: Bystanders;
  let sent = 0;

  const describeGateway = (): string => gw.proc.describe();

  beforeAll(async () => {
    const config = writeConfig({ gateway: { id: `corpus-${profile.key}` }, mqtt: profile.mqtt });
    dir = config.dir;
    gw = await startGatewayProcess(config.file);
    bystanders = await connectBystanders(gw.mqttPort, {
      subscriber: { clientId: "corpus-bystander-sub", protocolVersion: 5 },
      publisher: { clientId: "corpus-bystander-pub" },
      filter: "corpus/ok/#",
    });
    expect(bystanders.granted).toEqual([1]);
  });

  afterAll(async () => {
    await closeRawClients();
    await bystanders?.end();
    await stopAll();
    await dir?.cleanup();
  });

  /** A bystander's QoS 1 message goes through: published, acknowledged, delivered. */
  async function bystandersStillServed(): Promise<void> {
    const { publisher, received, disruptions } = bystanders;
    sent++;
    await publisher.publishAsync(`corpus/ok/${sent}`, String(sent), { qos: 1 });
    await waitFor(() => received.length >= sent, {
      message: () => `bystander got ${JSON.stringify(received)}\n${describeGateway()}`,
    });
    expect(received).toEqual(Array.from({ length: sent }, (_, i) => String(i + 1)));
    expect(disruptions).toEqual([]);
  }

  for (const c of HOSTILE_CORPUS) {
    it(c.name, async () => {
      const outcomes = await replayHostileCase(gw.mqttPort, c);
      expect(outcomes, describeGateway()).toEqual(c.connections.map((conn) => conn[profile.key]));
      expect(gw.proc.exitInfo, describeGateway()).toBeUndefined();
      await bystandersStillServed();
    });
  }

  it("the gateway outlived every corpus session, counted each refusal, and never failed inside", async () => {
    // Every corpus session has ended, the persistent one by expiry: each subscription it
    // held has been taken out of the trie.
    const ended = waitFor(
      async () => (await gatewayMetrics(gw)).get("leafgate_mqtt_sessions") === BYSTANDER_SESSIONS,
      {
        timeoutMs: SESSIONS_GONE_DEADLINE_MS,
        message: () => `corpus sessions did not end\n${describeGateway()}`,
      },
    );
    // A gateway that died fails now, not at the deadline.
    const first = await Promise.race([
      ended.then(() => "sessions ended"),
      gw.proc.exited.then(() => "the gateway exited"),
    ]);
    expect(first, describeGateway()).toBe("sessions ended");
    expect(gw.proc.exitInfo, describeGateway()).toBeUndefined();
    await bystandersStillServed();

    const metrics = await gatewayMetrics(gw);
    const labelled = (name: string, label: string): Record<string, number> => {
      const out: Record<string, number> = {};
      for (const [key, value] of metrics) {
        const m = key.match(new RegExp(`^${name}\\{${label}="([^"]+)"\\}$`));
        if (m) out[m[1]!] = value;
      }
      return out;
    };
    expect(labelled("leafgate_mqtt_subscriptions_refused_total", "reason")).toEqual(
      profile.refused,
    );
    expect(labelled("leafgate_mqtt_protocol_errors_total", "violation")).toEqual(
      profile.violations,
    );
    expect(metricTotal(metrics, "leafgate_internal_errors_total")).toBe(0);
    // Nothing reached Node's own reporting either (an uncaught error, a warning).
    expect(gw.proc.stderr()).toBe("");
  });
});
