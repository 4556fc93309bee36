// Retained messages and wills with clients no one here wrote (mqtt.js, Python paho).
import type { MqttClient } from "mqtt";
import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/core/index.js";
import { Gateway } from "../../src/gateway.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { spawnTracked, stopAll, stopProcess, waitForLine } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";

interface Got {
  topic: string;
  payload: string;
  retain: boolean;
  qos: number;
}

function collect(client: MqttClient): Got[] {
  const got: Got[] = [];
  client.on("message", (topic, payload, packet) =>
    got.push({ topic, payload: payload.toString(), retain: packet.retain, qos: packet.qos }),
  );
  return got;
}

describe("retained messages and wills", () => {
  let gw: TestGateway | undefined;
  const extra: Gateway[] = [];
  const clients: MqttClient[] = [];

  afterEach(async () => {
    for (const c of clients.splice(0)) c.end(true);
    for (const g of extra.splice(0)) await g.stop();
    await stopAll();
    await gw?.dispose();
    gw = undefined;
  });

  async function client(port: number, options = {}): Promise<MqttClient> {
    const c = await connectMqttJs(port, options);
    clients.push(c);
    return c;
  }

  it("delivers the retained message to new subscribers with the flag set, live ones without, and clears it", async () => {
    gw = await startGateway();
    const pub = await client(gw.mqttPort);
    await pub.publishAsync("sensors/r/t", "21.5", { qos: 1, retain: true });
    await pub.publishAsync("sensors/r/h", "40", { qos: 0, retain: true });

    const sub = await client(gw.mqttPort);
    const got = collect(sub);
    await sub.subscribeAsync({ "sensors/#": { qos: 1 } });
    await waitFor(() => got.length === 2);
    expect(got.sort((a, b) => a.topic.localeCompare(b.topic))).toEqual([
      { topic: "sensors/r/h", payload: "40", retain: true, qos: 0 },
      { topic: "sensors/r/t", payload: "21.5", retain: true, qos: 1 },
    ]);
    await pub.publishAsync("sensors/r/t", "22.0", { qos: 1, retain: true });
    await waitFor(() => got.length === 3);
    // Forwarded live: the retain flag is cleared [MQTT-3.3.1-9].
    expect(got[2]).toEqual({ topic: "sensors/r/t", payload: "22.0", retain: false, qos: 1 });

    // An empty retained payload clears the topic: a new subscriber gets only h, then the
    // marker published after its SUBACK.
    await pub.publishAsync("sensors/r/t", "", { qos: 1, retain: true });
    const late = await client(gw.mqttPort);
    const lateGot = collect(late);
    await late.subscribeAsync({ "sensors/#": { qos: 1 } });
    await pub.publishAsync("sensors/marker", "m", { qos: 1 });
    await waitFor(() => lateGot.some((g) => g.topic === "sensors/marker"));
    expect(lateGot.map((g) => [g.topic, g.payload, g.retain])).toEqual([
      ["sensors/r/h", "40", true],
      ["sensors/marker", "m", false],
    ]);
  });

  it("keeps retained messages across a gateway restart", async () => {
    gw = await startGateway();
    const pub = await client(gw.mqttPort);
    await pub.publishAsync("cfg/valve", "open", { qos: 1, retain: true });
    pub.end(true);
    await gw.stop();
    const again = new Gateway({ config: gw.gateway.config, log: silentLogger });
    extra.push(again);
    await again.start();
    const sub = await client(again.addresses().mqtt[0]!.port);
    const got = collect(sub);
    await sub.subscribeAsync({ "cfg/+": { qos: 1 } });
    await waitFor(() => got.length === 1);
    expect(got).toEqual([{ topic: "cfg/valve", payload: "open", retain: true, qos: 1 }]);
  });

  it("publishes the will when a client vanishes, not after a clean DISCONNECT", async () => {
    gw = await startGateway();
    const watcher = await client(gw.mqttPort);
    const got = collect(watcher);
    await watcher.subscribeAsync({ "status/#": { qos: 1 } });

    const clean = await client(gw.mqttPort, {
      clientId: "clean-1",
      will: { topic: "status/clean-1", payload: Buffer.from("gone"), qos: 1, retain: false },
    });
    await clean.endAsync();
    const connections = () => gw!.gateway.metrics.value("leafgate_mqtt_connections");
    await waitFor(() => connections() === 1);

    // Python paho, killed with SIGKILL: its socket just dies.
    const script = [
      "import paho.mqtt.client as mqtt, sys, time",
      "c = mqtt.Client(client_id='paho-1')",
      "c.will_set('status/paho-1', 'offline', qos=1, retain=True)",
      `c.connect('127.0.0.1', ${gw.mqttPort})`,
      "c.loop_start()",
      "time.sleep(0.2)",
      "print('connected', flush=True)",
      "time.sleep(60)",
    ].join("\n");
    const paho = await spawnTracked("/usr/bin/python3", ["-c", script]);
    await waitForLine(paho, (l) => l === "connected");
    await waitFor(() => connections() === 2);
    await stopProcess(paho, { signal: "SIGKILL" });
    await waitFor(() => got.length >= 1);
    await waitFor(() => connections() === 1);
    expect(got).toEqual([{ topic: "status/paho-1", payload: "offline", retain: false, qos: 1 }]);
    expect(gw.gateway.metrics.value("leafgate_mqtt_wills_published_total")).toBe(1);

    // The will was retained: a newcomer sees it.
    const newcomer = await client(gw.mqttPort);
    const seen = collect(newcomer);
    await newcomer.subscribeAsync({ "status/#": { qos: 0 } });
    await waitFor(() => seen.length === 1);
    expect(seen).toEqual([{ topic: "status/paho-1", payload: "offline", retain: true, qos: 0 }]);
  });
});
