// Interop with mosquitto_pub / mosquitto_sub 2.0.11 (clients no one here wrote), speaking
// MQTT 3.1.1 and 5.0 to the same broker. mosquitto_sub runs with -d so that its debug lines
// tell us when the SUBACK arrived; its -F output lines start with "MSG|" to tell them apart.
import { headers as natsHeaders } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect } from "vitest";
import { type Fixtures, it } from "../helpers/fixtures.js";
import { type ChildGateway, startGateway, type TestGateway } from "../helpers/gateway.js";
import { mosquittoPubLines } from "../helpers/mqtt.js";
import { streamInfo, streamMessages } from "../helpers/nats-server.js";
import {
  runToCompletion,
  spawnTracked,
  stopProcess,
  type TrackedProcess,
  waitForLine,
} from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";

type Version = "mqttv311" | "mqttv5";
const VERSIONS: readonly Version[] = ["mqttv311", "mqttv5"];

/** topic | qos | retain | payload */
const BASIC = "MSG|%t|%q|%r|%p";
/** … | user properties | content type | response topic | correlation data | expiry | format */
const FULL = "MSG|%t|%q|%r|%P|%C|%R|%D|%E|%F|%p";

interface SubOptions {
  qos?: 0 | 1 | 2;
  /** Exit after this many messages (-C). */
  count?: number;
  format?: string;
  args?: string[];
}

/** Starts mosquitto_sub and resolves once its SUBACK arrived. */
async function subscribe(
  port: number,
  version: Version,
  topics: string[],
  options: SubOptions = {},
): Promise<TrackedProcess> {
  const args = [
    ...["-h", "127.0.0.1", "-p", String(port), "-V", version, "-d"],
    ...["-q", String(options.qos ?? 2), "-F", options.format ?? BASIC],
    ...(options.count === undefined ? [] : ["-C", String(options.count)]),
    ...topics.flatMap((t) => ["-t", t]),
    ...(options.args ?? []),
  ];
  // Line-buffered, or the debug lines would sit in stdio's buffer while stdout is a pipe.
  const proc = await spawnTracked("stdbuf", ["-oL", "mosquitto_sub", ...args]);
  await waitForLine(proc, (l) => l.includes("received SUBACK"));
  return proc;
}

/** The -F lines printed so far, split into fields. */
function printed(proc: TrackedProcess): string[][] {
  return proc
    .stdout()
    .split("\n")
    .filter((l) => l.startsWith("MSG|"))
    .map((l) => l.split("|").slice(1));
}

/** Waits for a `-C` subscriber to exit by itself and returns what it printed. */
async function finished(proc: TrackedProcess, timeoutMs = 10_000): Promise<string[][]> {
  const exit = await waitFor(() => proc.exitInfo, {
    timeoutMs,
    message: () => `mosquitto_sub did not get all its messages\n${proc.describe()}`,
  });
  expect(exit, proc.describe()).toEqual({ code: 0, signal: null });
  return printed(proc);
}

async function publish(port: number, version: Version, args: string[]): Promise<void> {
  const result = await runToCompletion("mosquitto_pub", [
    ...["-h", "127.0.0.1", "-p", String(port), "-V", version],
    ...args,
  ]);
  expect(result.code, result.stderr).toBe(0);
}

const lines = (n: number, tag: string): string[] =>
  Array.from({ length: n }, (_, i) => `${tag}-${i + 1}`);

describe.each(VERSIONS)("mosquitto clients, %s", (version) => {
  let gw: TestGateway;
  const v = version === "mqttv5" ? "v5" : "v4";

  beforeAll(async () => {
    gw = await startGateway();
  });

  afterAll(async () => {
    await gw?.dispose();
  });

  it("delivers QoS 0, 1 and 2 with exact payloads, in order, at min(publish, subscribe) QoS", async () => {
    const sub2 = await subscribe(gw.mqttPort, version, [`qos/${v}/#`], { qos: 2, count: 15 });
    const sub1 = await subscribe(gw.mqttPort, version, [`qos/${v}/#`], { qos: 1, count: 15 });
    const sent: Record<number, string[]> = {};
    for (const qos of [0, 1, 2] as const) {
      sent[qos] = lines(5, `q${qos}`);
      await mosquittoPubLines(gw.mqttPort, `qos/${v}/${qos}`, sent[qos], {
        qos,
        extraArgs: ["-V", version],
      });
    }
    const expected = (max: number) =>
      [0, 1, 2].flatMap((qos) =>
        sent[qos]!.map((p) => [`qos/${v}/${qos}`, String(Math.min(qos, max)), "0", p]),
      );
    // Each topic is an Ordered Topic [MQTT-4.6.0-6]; the delivered QoS is the minimum of the
    // published and granted QoS (3.1.1 §3.8.4, [MQTT-3.8.4-8] in 5.0).
    expect(await finished(sub2)).toEqual(expected(2));
    expect(await finished(sub1)).toEqual(expected(1));
  });

  it("sends a retained message with the retain flag to new subscribers only, and clears it", async () => {
    const topic = `ret/${v}/valve`;
    await publish(gw.mqttPort, version, ["-t", topic, "-q", "1", "-r", "-m", "open"]);

    // A new subscription gets the retained message with retain=1 [MQTT-3.3.1-8]; a live one
    // gets later publications with retain=0 [MQTT-3.3.1-9].
    const first = await subscribe(gw.mqttPort, version, [`ret/${v}/#`], { qos: 1, count: 2 });
    await publish(gw.mqttPort, version, ["-t", topic, "-q", "1", "-r", "-m", "closed"]);
    expect(await finished(first)).toEqual([
      [topic, "1", "1", "open"],
      [topic, "1", "0", "closed"],
    ]);
    const second = await subscribe(gw.mqttPort, version, [`ret/${v}/#`], { qos: 1, count: 1 });
    expect(await finished(second)).toEqual([[topic, "1", "1", "closed"]]);

    // An empty retained payload removes it [MQTT-3.3.1-10]: a newcomer gets only the marker.
    await publish(gw.mqttPort, version, ["-t", topic, "-q", "1", "-r", "-n"]);
    const third = await subscribe(gw.mqttPort, version, [`ret/${v}/#`], { qos: 1, count: 1 });
    await publish(gw.mqttPort, version, ["-t", `ret/${v}/marker`, "-q", "1", "-m", "m"]);
    expect(await finished(third)).toEqual([[`ret/${v}/marker`, "1", "0", "m"]]);
  });

  it("publishes the will of a SIGKILLed client, not of one that disconnected cleanly", async () => {
    const watcher = await subscribe(gw.mqttPort, version, [`will/${v}/#`], { qos: 1, count: 2 });
    const will = (who: string) => [
      `--will-topic`,
      `will/${v}/${who}`,
      "--will-payload",
      `${who}-gone`,
      "--will-qos",
      "1",
    ];

    // mosquitto_pub ends with DISCONNECT: the will is discarded [MQTT-3.1.2-10] / [MQTT-3.14.4-3].
    await publish(gw.mqttPort, version, [
      ...["-i", `clean-${v}`, "-t", `other/${v}`, "-q", "1", "-m", "x"],
      ...will("clean"),
    ]);
    // SIGKILL: the connection just ends, so the will is published [MQTT-3.1.2-8].
    const victim = await subscribe(gw.mqttPort, version, [`other/${v}`], {
      args: ["-i", `victim-${v}`, ...will("victim")],
    });
    await stopProcess(victim, { signal: "SIGKILL" });
    await waitFor(() => printed(watcher).length >= 1, {
      message: () => `no will\n${watcher.describe()}`,
    });
    await publish(gw.mqttPort, version, ["-t", `will/${v}/marker`, "-q", "1", "-m", "m"]);
    expect(await finished(watcher)).toEqual([
      [`will/${v}/victim`, "1", "0", "victim-gone"],
      [`will/${v}/marker`, "1", "0", "m"],
    ]);
  });

  it("splits a shared subscription between two members, each message once", async () => {
    const filter = `$share/g${v}/shared/${v}/#`;
    const a = await subscribe(gw.mqttPort, version, [filter, `fence/${v}/a`], { qos: 1 });
    const b = await subscribe(gw.mqttPort, version, [filter, `fence/${v}/b`], { qos: 1 });
    const sent = lines(20, "s");
    await mosquittoPubLines(gw.mqttPort, `shared/${v}/t`, sent, {
      qos: 1,
      extraArgs: ["-V", version],
    });
    // The fences come after every shared message on each member's connection.
    await publish(gw.mqttPort, version, ["-t", `fence/${v}/a`, "-q", "1", "-m", "fence"]);
    await publish(gw.mqttPort, version, ["-t", `fence/${v}/b`, "-q", "1", "-m", "fence"]);
    const fenced = (p: TrackedProcess) => printed(p).some((m) => m[0]!.startsWith("fence/"));
    await waitFor(() => fenced(a) && fenced(b), {
      message: () => `fences not seen\n${a.describe()}\n${b.describe()}`,
    });
    const got = (p: TrackedProcess) =>
      printed(p)
        .filter((m) => m[0] === `shared/${v}/t`)
        .map((m) => m[3]!);
    const [ga, gb] = [got(a), got(b)];
    // Each message goes to exactly one member (MQTT 5.0 §4.8.2), the members take turns
    // (README: "to one member of the group in turn"), whichever goes first, and each sees
    // its share in publication order.
    const turns = [0, 1].map((parity) => sent.filter((_, i) => i % 2 === parity));
    expect([ga, gb]).toEqual(ga.includes(sent[0]!) ? turns : [turns[1], turns[0]]);
  });
});

describe.each(VERSIONS)("mosquitto persistent session across a gateway restart, %s", (version) => {
  const v = version === "mqttv5" ? "v5" : "v4";

  for (const signal of ["SIGTERM", "SIGKILL"] as const) {
    it(`queues QoS 1 messages for an offline -c client and delivers them after ${signal}`, async ({
      gateway,
    }) => {
      const config = gateway.writeConfig();
      let child: ChildGateway = await gateway.spawnFile(config.file);
      const id = `sess-${v}-${signal}`;
      const topic = `sess/${v}/${signal}`;
      const session = ["-c", "-i", id];

      // -E: subscribe, then disconnect cleanly; the session stays [MQTT-3.1.2-4].
      const first = await subscribe(child.mqttPort, version, [`sess/${v}/#`], {
        qos: 1,
        args: [...session, "-E"],
      });
      expect(await finished(first)).toEqual([]);

      // Stored for the offline session [MQTT-3.1.2-5]; mosquitto_pub exits after every PUBACK.
      const sent = lines(5, `off-${signal}`);
      await mosquittoPubLines(child.mqttPort, topic, sent, { qos: 1, extraArgs: ["-V", version] });
      await stopProcess(child.proc, { signal });
      child = await gateway.spawnFile(config.file);

      // The queued messages come first, in order, then a marker published after the SUBACK.
      const second = await subscribe(child.mqttPort, version, [`sess/${v}/#`], {
        qos: 1,
        count: sent.length + 1,
        args: session,
      });
      await publish(child.mqttPort, version, ["-t", `sess/${v}/marker`, "-q", "1", "-m", "m"]);
      expect(await finished(second)).toEqual([
        ...sent.map((p) => [topic, "1", "0", p]),
        [`sess/${v}/marker`, "1", "0", "m"],
      ]);
      await stopProcess(child.proc);
    });
  }
});

describe("mosquitto MQTT 5 properties", () => {
  let gw: TestGateway;

  beforeAll(async () => {
    gw = await startGateway();
  });

  afterAll(async () => {
    await gw?.dispose();
  });

  it("carries PUBLISH properties to v5 subscribers unchanged, and none to 3.1.1 ones", async () => {
    const v5 = await subscribe(gw.mqttPort, "mqttv5", ["props/#"], {
      qos: 1,
      count: 2,
      format: FULL,
    });
    const v4 = await subscribe(gw.mqttPort, "mqttv311", ["props/#"], {
      qos: 1,
      count: 2,
      format: FULL,
    });
    await publish(gw.mqttPort, "mqttv5", [
      ...["-t", "props/a", "-q", "1", "-m", "hello"],
      ...["-D", "publish", "user-property", "a", "1"],
      ...["-D", "publish", "user-property", "b", "2"],
      ...["-D", "publish", "user-property", "a", "3"],
      ...["-D", "publish", "content-type", "text/plain"],
      ...["-D", "publish", "response-topic", "reply/here"],
      ...["-D", "publish", "correlation-data", "corr-42"],
      ...["-D", "publish", "message-expiry-interval", "120"],
      ...["-D", "publish", "payload-format-indicator", "1"],
    ]);
    // A message without properties must not pick up any.
    await publish(gw.mqttPort, "mqttv5", ["-t", "props/b", "-q", "1", "-m", "plain"]);

    const [withProps, plain] = await finished(v5);
    // [MQTT-3.3.2-17] [MQTT-3.3.2-18] user properties unaltered and in order (duplicates kept);
    // [MQTT-3.3.2-20] content type, [MQTT-3.3.2-15] response topic, [MQTT-3.3.2-16]
    // correlation data, [MQTT-3.3.2-4] payload format indicator, all unaltered.
    expect(withProps!.slice(0, 8)).toEqual([
      "props/a",
      "1",
      "0",
      "a:1 b:2 a:3",
      "text/plain",
      "reply/here",
      "corr-42",
      withProps![7],
    ]);
    expect(withProps!.slice(8)).toEqual(["1", "hello"]);
    // Expiry is the received value minus the time waited, rounded up [MQTT-3.3.2-6]: the
    // gateway hands a message to a subscriber with room in the same turn it reads it, far
    // less than a second.
    expect(withProps![7]).toBe("120");
    expect(plain).toEqual(["props/b", "1", "0", "", "", "", "", "", "", "plain"]);

    // 3.1.1 subscribers get topic and payload only.
    expect(await finished(v4)).toEqual([
      ["props/a", "1", "0", "", "", "", "", "", "", "hello"],
      ["props/b", "1", "0", "", "", "", "", "", "", "plain"],
    ]);
  });
});

describe("mosquitto MQTT 5 through the hub", () => {
  async function forwarding(edgeGateway: Fixtures["edgeGateway"]): Promise<TestGateway> {
    const gw = await edgeGateway();
    await waitFor(() => gw.gateway.status().upstream?.state === "forwarding");
    return gw;
  }

  it("turns user properties and v5 properties into NATS headers on the hub", async ({
    nc,
    stream,
    edgeGateway,
  }) => {
    const gw = await forwarding(edgeGateway);
    await publish(gw.mqttPort, "mqttv5", [
      ...["-t", "hub/v5/t", "-q", "1", "-m", "payload-1"],
      ...["-D", "publish", "user-property", "site", "north"],
      ...["-D", "publish", "user-property", "zone", "7"],
      ...["-D", "publish", "user-property", "site", "south"],
      ...["-D", "publish", "content-type", "application/json"],
      ...["-D", "publish", "response-topic", "reply/x"],
      ...["-D", "publish", "correlation-data", "c0rr"],
    ]);
    await waitFor(async () => (await streamInfo(nc, stream)).state.messages >= 1);
    const messages = await streamMessages(nc, stream);
    expect(messages.length).toBe(1);
    const [m] = messages;
    expect(m!.subject).toBe("edge.gw1.hub.v5.t");
    expect(new TextDecoder().decode(m!.data)).toBe("payload-1");
    const { "Nats-Msg-Id": msgId, ...rest } = m!.headers;
    expect(msgId).toHaveLength(1);
    expect(rest).toEqual({
      site: ["north", "south"],
      zone: ["7"],
      "MQTT-Content-Type": ["application/json"],
      "MQTT-Response-Topic": ["reply/x"],
      "MQTT-Correlation-Data": [Buffer.from("c0rr").toString("base64")],
    });
  });

  it("turns headers of imported hub messages into user properties", async ({ nc, edgeGateway }) => {
    const gw = await forwarding(edgeGateway);
    const sub = await subscribe(gw.mqttPort, "mqttv5", ["cmd/gw1/#"], {
      qos: 1,
      count: 2,
      format: FULL,
    });
    const h = natsHeaders();
    h.append("k1", "v1");
    h.append("k1", "v2");
    h.append("k2", "v3");
    h.append("MQTT-Content-Type", "text/plain");
    h.append("MQTT-Response-Topic", "reply/gw1");
    h.append("MQTT-Correlation-Data", Buffer.from("abc").toString("base64"));
    nc.publish("cmd.gw1.x", "do-it", { headers: h });
    nc.publish("cmd.gw1.y", "bare");
    await nc.flush();
    expect(await finished(sub)).toEqual([
      [
        "cmd/gw1/x",
        "1",
        "0",
        "k1:v1 k1:v2 k2:v3",
        "text/plain",
        "reply/gw1",
        "abc",
        "",
        "",
        "do-it",
      ],
      ["cmd/gw1/y", "1", "0", "", "", "", "", "", "", "bare"],
    ]);
  });
});
