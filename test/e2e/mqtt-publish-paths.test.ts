// Every path that publishes passes the same permission check (issue 10, findings 3 and 8):
// PUBLISH, retained PUBLISH, the will at CONNECT and again when it is published (retained
// or not), and the import subjects, which only the hub may write unless a user is granted
// them by name. With users configured, anonymous clients are refused unless allowed.
import type { MqttClient } from "mqtt";
import { afterEach, describe, expect } from "vitest";
import { hashPassword } from "../../src/mqtt/index.js";
import type { GatewayConfigInput } from "../helpers/config.js";
import { type GatewayLauncher, it } from "../helpers/fixtures.js";
import type { TestGateway } from "../helpers/gateway.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { runToCompletion } from "../helpers/procs.js";
import { closeRawClients, RawMqtt } from "../helpers/raw-mqtt.js";
import { waitFor } from "../helpers/wait.js";

const NOT_AUTHORIZED_V5 = 0x87;
const NOT_AUTHORIZED_V3 = 5;

describe("one permission check for every publish path", () => {
  let gw: TestGateway | undefined;
  const clients: MqttClient[] = [];

  afterEach(async () => {
    for (const c of clients.splice(0)) c.end(true);
    await closeRawClients();
    gw = undefined;
  });

  /**
   * Users, all with password "pw": sensor-1 publishes under `sensorPublish`; admin has a
   * bare `>`; ops is granted the import subjects by name.
   */
  async function users(sensorPublish: string): Promise<GatewayConfigInput["authorization"]> {
    const password = await hashPassword("pw");
    return {
      users: [
        {
          user: "sensor-1",
          password,
          permissions: { publish: { allow: [sensorPublish] }, subscribe: { allow: [">"] } },
        },
        { user: "admin", password },
        {
          user: "ops",
          password,
          permissions: { publish: { allow: ["cmd.gw1.>"] }, subscribe: { allow: [">"] } },
        },
      ],
    };
  }

  /**
   * Gateway gw1 (imports `cmd.gw1.>` from the hub, the default). sensor-1 publishes under
   * its own subjects.
   */
  async function start(
    gateway: GatewayLauncher,
    mqtt: GatewayConfigInput["mqtt"] = {},
  ): Promise<TestGateway> {
    gw = await gateway.start({ mqtt, authorization: await users("sensors.%u.>") });
    return gw;
  }

  const as = (username: string) => ({ username, password: "pw" });
  const asRaw = (username: string) => ({ username, password: Buffer.from("pw") });
  const metric = (name: string, labels?: Record<string, string>) =>
    gw!.gateway.metrics.value(name, labels);
  const pending = () => gw!.gateway.status().outbox.pending;

  async function client(options: Record<string, unknown>): Promise<MqttClient> {
    const c = await connectMqttJs(gw!.mqttPort, options);
    clients.push(c);
    return c;
  }

  let probes = 0;
  /** What a fresh `#` subscriber is sent as retained, up to a marker published after. */
  async function retainedTopics(port = gw!.mqttPort): Promise<string[]> {
    const n = ++probes;
    const sub = await connectMqttJs(port, { ...as("admin"), clientId: `retained-${n}` });
    clients.push(sub);
    const got: string[] = [];
    sub.on("message", (topic, _p, packet) => {
      if (packet.retain) got.push(topic);
      else if (topic === "marker/retained") got.push("|marker");
    });
    await sub.subscribeAsync({ "#": { qos: 1 } });
    const m = await connectMqttJs(port, { ...as("admin"), clientId: `marker-${n}` });
    clients.push(m);
    await m.publishAsync("marker/retained", "m", { qos: 1 });
    await waitFor(() => got.includes("|marker"));
    return got.filter((t) => t !== "|marker").sort();
  }

  it("anonymous clients are refused once users exist, unless allow_anonymous: true", async ({
    gateway,
  }) => {
    await start(gateway);
    const v5 = await RawMqtt.connect(gw!.mqttPort, { clientId: "anon-5" });
    expect(v5.connack.reasonCode).toBe(NOT_AUTHORIZED_V5);
    await v5.client.closedByServer();
    const v3 = await RawMqtt.connect(gw!.mqttPort, { clientId: "anon-4" }, 4);
    expect(v3.connack.returnCode).toBe(NOT_AUTHORIZED_V3);
    await v3.client.closedByServer();
    // A client no one here wrote says so too.
    const r = await runToCompletion(
      "mosquitto_pub",
      ["-h", "127.0.0.1", "-p", String(gw!.mqttPort), "-t", "a", "-m", "x"],
      { timeoutMs: 10_000 },
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr.toLowerCase()).toContain("not authori");
    await gw!.dispose();

    await start(gateway, { allow_anonymous: true });
    const ok = await RawMqtt.connect(gw!.mqttPort, { clientId: "anon-ok" });
    expect(ok.connack.reasonCode).toBe(0);
  });

  it("a retained PUBLISH that is denied is neither stored nor retained", async ({ gateway }) => {
    await start(gateway);
    const c = await client({ ...as("sensor-1"), clientId: "s1" });
    await c.publishAsync("alarms/fire", "fake", { qos: 1, retain: true });
    await c.publishAsync("sensors/sensor-1/state", "ok", { qos: 1, retain: true });
    expect(pending()).toBe(1);
    expect(metric("leafgate_mqtt_denied_total", { kind: "publish" })).toBe(1);
    expect(await retainedTopics()).toEqual(["sensors/sensor-1/state"]);
  });

  it("a will the user may not publish is refused at CONNECT: 0x87 in v5, 5 in 3.1.1", async ({
    gateway,
  }) => {
    await start(gateway);
    const will = {
      topic: "alarms/fire",
      payload: Buffer.from("gone"),
      qos: 1 as const,
      retain: true,
    };
    const v5 = await RawMqtt.connect(gw!.mqttPort, { clientId: "w5", ...asRaw("sensor-1"), will });
    expect(v5.connack.reasonCode).toBe(NOT_AUTHORIZED_V5);
    await v5.client.closedByServer();
    const v3 = await RawMqtt.connect(
      gw!.mqttPort,
      { clientId: "w4", ...asRaw("sensor-1"), will },
      4,
    );
    expect(v3.connack.returnCode).toBe(NOT_AUTHORIZED_V3);
    await v3.client.closedByServer();
    // Its own subjects are fine, and the will goes out when it vanishes.
    const ok = await RawMqtt.connect(gw!.mqttPort, {
      clientId: "w-ok",
      ...asRaw("sensor-1"),
      will: { ...will, topic: "sensors/sensor-1/status" },
    });
    expect(ok.connack.reasonCode).toBe(0);
    await ok.client.destroy();
    await waitFor(() => metric("leafgate_mqtt_wills_published_total") === 1);
    expect(metric("leafgate_mqtt_denied_total", { kind: "will" })).toBe(2);
    expect(await retainedTopics()).toEqual(["sensors/sensor-1/status"]);
  });

  it("a will is checked again when it is published: narrowed permissions after a restart hold it back, retained or not", async ({
    gateway,
  }) => {
    await start(gateway);
    // A delayed will, part of the session, survives the restart [MQTT-3.1.3-9].
    const willed = await RawMqtt.connect(gw!.mqttPort, {
      clientId: "delayed",
      ...asRaw("sensor-1"),
      clean: false,
      properties: { sessionExpiryInterval: 3600 },
      will: {
        topic: "sensors/sensor-1/status",
        payload: Buffer.from("offline"),
        qos: 1,
        retain: true,
        properties: { willDelayInterval: 3600 },
      },
    });
    expect(willed.connack.reasonCode).toBe(0);
    await willed.client.destroy();
    // Gone as the gateway sees it (a shutdown would not be the client's failure).
    await waitFor(() => metric("leafgate_mqtt_connections") === 0);
    await gw!.stop();

    // Next run, on the same data: sensor-1 may publish only under sensors.sensor-1.data.>.
    const { gateway: again, mqttPort: port } = await gateway.start({
      gateway: { data_dir: gw!.dataDir },
      authorization: await users("sensors.%u.data.>"),
    });
    const watcher = await connectMqttJs(port, { ...as("admin"), clientId: "watch" });
    clients.push(watcher);
    const got: string[] = [];
    watcher.on("message", (topic) => got.push(topic));
    await watcher.subscribeAsync({ "sensors/#": { qos: 1 } });

    // Clean start ends the stored session, and with it the will falls due [MQTT-3.1.3-9].
    const ended = await RawMqtt.connect(port, { clientId: "delayed", ...asRaw("sensor-1") });
    expect(ended.connack.reasonCode).toBe(0);
    const wills = () => [
      again.metrics.value("leafgate_mqtt_wills_published_total"),
      again.metrics.value("leafgate_mqtt_denied_total", { kind: "will" }),
    ];
    // Published or held back, one of the two: held back.
    await waitFor(() => wills()[0]! + wills()[1]! === 1);
    expect(wills()).toEqual([0, 1]);
    const marker = await connectMqttJs(port, { ...as("sensor-1"), clientId: "mark" });
    clients.push(marker);
    await marker.publishAsync("sensors/sensor-1/data/marker", "m", { qos: 1 });
    await waitFor(() => got.includes("sensors/sensor-1/data/marker"));
    expect(got).toEqual(["sensors/sensor-1/data/marker"]);
    expect(await retainedTopics(port)).toEqual([]);
  });

  it("the import subjects are the hub's: a bare > does not grant them, a pattern naming them does", async ({
    gateway,
  }) => {
    await start(gateway, { allow_anonymous: true });
    const port = gw!.mqttPort;
    const sub = await client({ ...as("admin"), clientId: "cmd-sub" });
    const got: string[] = [];
    sub.on("message", (topic, payload) => got.push(`${topic}=${payload.toString()}`));
    await sub.subscribeAsync({ "cmd/#": { qos: 1 } });

    // MQTT 5: PUBACK 0x87, from anonymous (default permissions `>`) and from admin (`>`).
    const anon = await RawMqtt.connect(port, { clientId: "forger-anon" });
    const admin = await RawMqtt.connect(port, { clientId: "forger-admin", ...asRaw("admin") });
    for (const [i, c] of [anon.client, admin.client].entries()) {
      c.send({
        cmd: "publish",
        topic: "cmd/gw1/valve/set",
        payload: Buffer.from("open"),
        qos: 1,
        messageId: 10 + i,
        retain: true,
        dup: false,
      });
      const ack = await c.next("puback");
      expect([ack.messageId, ack.reasonCode]).toEqual([10 + i, NOT_AUTHORIZED_V5]);
    }
    // MQTT 3.1.1 has no refusal: acknowledged and dropped.
    const v3 = await client({ clientId: "forger-v3" });
    await v3.publishAsync("cmd/gw1/valve/set", "open", { qos: 1 });
    // A wildcard-only pattern is no grant either, nor is a will on those subjects.
    const willForger = await RawMqtt.connect(port, {
      clientId: "forger-will",
      will: { topic: "cmd/gw1/reboot", payload: Buffer.from("now"), qos: 0, retain: false },
    });
    expect(willForger.connack.reasonCode).toBe(NOT_AUTHORIZED_V5);
    // Next to them, cmd subjects of other gateways are ordinary subjects.
    await v3.publishAsync("cmd/gw2/x", "elsewhere", { qos: 1 });

    const ops = await client({ ...as("ops"), clientId: "ops" });
    await ops.publishAsync("cmd/gw1/valve/set", "close", { qos: 1 });
    await waitFor(() => got.length === 2);
    expect(got).toEqual(["cmd/gw2/x=elsewhere", "cmd/gw1/valve/set=close"]);
    expect(metric("leafgate_mqtt_denied_total", { kind: "publish" })).toBe(3);
    expect(metric("leafgate_mqtt_denied_total", { kind: "will" })).toBe(1);
    expect(await retainedTopics()).toEqual([]);
  });
});
