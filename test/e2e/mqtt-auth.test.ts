// Users, passwords and per-user permissions on subjects, with real clients.
import type { MqttClient } from "mqtt";
import { afterEach, describe, expect, it } from "vitest";
import { hashPassword } from "../../src/mqtt/index.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { runToCompletion } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";

describe("MQTT authorization", () => {
  let gw: TestGateway | undefined;
  const clients: MqttClient[] = [];

  afterEach(async () => {
    for (const c of clients.splice(0)) c.end(true);
    await gw?.dispose();
    gw = undefined;
  });

  async function start(): Promise<TestGateway> {
    const hash = await hashPassword("pw-sensor-1");
    gw = await startGateway({
      // Anonymous clients next to users: since users exist, only when the file says so.
      mqtt: { allow_anonymous: true },
      authorization: {
        default_permissions: { subscribe: { deny: ["admin.>"] } },
        users: [
          {
            user: "sensor-1",
            password: hash,
            permissions: {
              publish: { allow: ["sensors.%u.>"] },
              subscribe: { allow: ["cmd.%u.>"] },
            },
          },
        ],
      },
    });
    return gw;
  }

  const metric = (name: string, labels?: Record<string, string>) =>
    gw!.gateway.metrics.value(name, labels);
  const pending = () => gw!.gateway.status().outbox.pending;

  it("refuses a wrong password with CONNACK 4, to a client no one here wrote", async () => {
    await start();
    const r = await runToCompletion(
      "mosquitto_pub",
      [
        "-h",
        "127.0.0.1",
        "-p",
        String(gw!.mqttPort),
        "-u",
        "sensor-1",
        "-P",
        "nope",
        "-t",
        "t",
        "-m",
        "x",
      ],
      { timeoutMs: 10_000 },
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr.toLowerCase()).toContain("bad user name or password");
    expect(metric("leafgate_mqtt_auth_failures_total", { code: "4" })).toBe(1);
    expect(pending()).toBe(0);
  });

  it("lets a user publish and subscribe only where its permissions say", async () => {
    await start();
    const c = await connectMqttJs(gw!.mqttPort, { username: "sensor-1", password: "pw-sensor-1" });
    clients.push(c);
    await c.publishAsync("sensors/sensor-1/t", "21", { qos: 1 });
    // Denied: acknowledged (3.1.1 has no refusal) but neither stored nor delivered.
    await c.publishAsync("sensors/sensor-2/t", "22", { qos: 1 });
    expect(pending()).toBe(1);
    expect(metric("leafgate_mqtt_denied_total", { kind: "publish" })).toBe(1);
    // mqtt.js reports a refused filter as an error for the whole SUBSCRIBE.
    const subErr = await new Promise<Error | null>((resolve) =>
      c.subscribe({ "cmd/sensor-1/#": { qos: 1 }, "sensors/#": { qos: 1 } }, (err) =>
        resolve(err ?? null),
      ),
    );
    expect(subErr?.message).toMatch(/subscribe error/i);
    const got: string[] = [];
    c.on("message", (topic) => got.push(topic));
    const other = await connectMqttJs(gw!.mqttPort);
    clients.push(other);
    await other.publishAsync("sensors/sensor-1/x", "not for it", { qos: 1 });
    await other.publishAsync("cmd/sensor-1/valve", "open", { qos: 1 });
    await waitFor(() => got.includes("cmd/sensor-1/valve"));
    expect(got).toEqual(["cmd/sensor-1/valve"]);
    expect(metric("leafgate_mqtt_denied_total", { kind: "subscribe" })).toBe(1);
  });

  it("applies default permissions to anonymous clients: admin.> is never delivered", async () => {
    await start();
    const anon = await connectMqttJs(gw!.mqttPort);
    clients.push(anon);
    const got: string[] = [];
    anon.on("message", (topic) => got.push(topic));
    await anon.subscribeAsync({ "#": { qos: 1 } });
    const pub = await connectMqttJs(gw!.mqttPort);
    clients.push(pub);
    await pub.publishAsync("admin/reboot", "now", { qos: 1 });
    await pub.publishAsync("plant/marker", "m", { qos: 1 });
    await waitFor(() => got.includes("plant/marker"));
    expect(got).toEqual(["plant/marker"]);

    // Nor as a retained message to a new subscriber.
    await pub.publishAsync("admin/config", "secret", { qos: 1, retain: true });
    await pub.publishAsync("plant/state", "ok", { qos: 1, retain: true });
    const late = await connectMqttJs(gw!.mqttPort);
    clients.push(late);
    const lateGot: string[] = [];
    late.on("message", (topic) => lateGot.push(topic));
    await late.subscribeAsync({ "#": { qos: 1 } });
    await pub.publishAsync("plant/marker2", "m", { qos: 1 });
    await waitFor(() => lateGot.includes("plant/marker2"));
    expect(lateGot).toEqual(["plant/state", "plant/marker2"]);
  });

  it("accepts a user from Python paho", async () => {
    await start();
    const script = [
      "import paho.mqtt.client as mqtt, sys",
      "c = mqtt.Client(client_id='paho-auth')",
      "c.username_pw_set('sensor-1', 'pw-sensor-1')",
      `c.connect('127.0.0.1', ${gw!.mqttPort})`,
      "c.loop_start()",
      "info = c.publish('sensors/sensor-1/h', '40', qos=1)",
      "info.wait_for_publish(5)",
      "print('published', info.is_published(), flush=True)",
      "c.disconnect(); c.loop_stop()",
    ].join("\n");
    const r = await runToCompletion("/usr/bin/python3", ["-c", script], { timeoutMs: 15_000 });
    expect(r.stdout.trim()).toBe("published True");
    expect(pending()).toBe(1);
  });
});
