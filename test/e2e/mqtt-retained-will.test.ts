// Retained messages and wills with clients no one here wrote (mqtt.js, Python paho).
import { fileURLToPath } from "node:url";
import type { MqttClient } from "mqtt";
import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/core/index.js";
import { Gateway } from "../../src/gateway.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { spawnTracked, stopAll, stopProcess, waitForLine } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";

const PAHO = fileURLToPath(new URL("../helpers/paho.py", import.meta.url));
/** Seconds for each wait inside Python (paho.py's plan timeout). */
const PY_TIMEOUT_S = 8;

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
    await pub.publishAsync("sensors/r/t", "22.0", { qos: 1, retain: true });
    await waitFor(() => got.some((g) => g.payload === "22.0"));
    // The retained ones follow the SUBACK, in no promised order; the live one comes after
    // them, with the retain flag cleared [MQTT-3.3.1-9].
    expect(got.slice(0, 2).sort((a, b) => a.topic.localeCompare(b.topic))).toEqual([
      { topic: "sensors/r/h", payload: "40", retain: true, qos: 0 },
      { topic: "sensors/r/t", payload: "21.5", retain: true, qos: 1 },
    ]);
    expect(got.slice(2)).toEqual([
      { topic: "sensors/r/t", payload: "22.0", retain: false, qos: 1 },
    ]);

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
    const port = again.addresses().mqtt[0]!.port;
    const sub = await client(port);
    const got = collect(sub);
    await sub.subscribeAsync({ "cfg/+": { qos: 1 } });
    // A marker after the SUBACK: the retained message, which follows the SUBACK, is in.
    const marker = await client(port);
    await marker.publishAsync("cfg/marker", "m", { qos: 1 });
    await waitFor(() => got.some((g) => g.topic === "cfg/marker"));
    expect(got).toEqual([
      { topic: "cfg/valve", payload: "open", retain: true, qos: 1 },
      { topic: "cfg/marker", payload: "m", retain: false, qos: 1 },
    ]);
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
    const wills = () => gw!.gateway.metrics.value("leafgate_mqtt_wills_published_total");
    await waitFor(() => connections() === 1);
    expect(wills()).toBe(0);

    // Python paho, killed with SIGKILL once its CONNACK came: its socket just dies.
    const plan = {
      port: gw.mqttPort,
      protocol: 4,
      client_id: "paho-1",
      will: { topic: "status/paho-1", payload: "offline", qos: 1, retain: true },
      hold: true,
      timeout: PY_TIMEOUT_S,
    };
    const paho = await spawnTracked("/usr/bin/python3", [PAHO, JSON.stringify(plan)], {
      stdin: "pipe",
    });
    await waitForLine(paho, (l) => l.includes('"event": "ready"'), PY_TIMEOUT_S * 1000);
    expect(connections()).toBe(2);
    await stopProcess(paho, { signal: "SIGKILL" });
    await waitFor(() => connections() === 1);
    expect(wills()).toBe(1);
    // The will went to the watcher as the gateway published it; a marker comes after it,
    // and nothing else (clean-1's will, had it been published, would have come first).
    await watcher.publishAsync("status/marker", "m", { qos: 1 });
    await waitFor(() => got.some((g) => g.topic === "status/marker"));
    expect(got).toEqual([
      { topic: "status/paho-1", payload: "offline", retain: false, qos: 1 },
      { topic: "status/marker", payload: "m", retain: false, qos: 1 },
    ]);

    // The will was retained: a newcomer sees it.
    const newcomer = await client(gw.mqttPort);
    const seen = collect(newcomer);
    await newcomer.subscribeAsync({ "status/#": { qos: 0 } });
    await watcher.publishAsync("status/marker", "m2", { qos: 1 });
    await waitFor(() => seen.some((g) => g.topic === "status/marker"));
    expect(seen).toEqual([
      { topic: "status/paho-1", payload: "offline", retain: true, qos: 0 },
      { topic: "status/marker", payload: "m2", retain: false, qos: 0 },
    ]);
  });
});
