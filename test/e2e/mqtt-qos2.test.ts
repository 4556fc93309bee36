// QoS 2 both ways with a subscriber no one here wrote (mosquitto_sub -q 2).
import { afterEach, describe, expect, it } from "vitest";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { spawnTracked, stopAll, waitForLine } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";

describe("QoS 2", () => {
  let gw: TestGateway | undefined;

  afterEach(async () => {
    await stopAll();
    await gw?.dispose();
    gw = undefined;
  });

  it("delivers QoS 2 messages exactly once, in order, to a QoS 2 subscriber", async () => {
    gw = await startGateway();
    const sub = await spawnTracked("mosquitto_sub", [
      "-h",
      "127.0.0.1",
      "-p",
      String(gw.mqttPort),
      "-q",
      "2",
      "-t",
      "q2/#",
      "-v",
      "-C",
      "20",
    ]);
    await waitFor(() => gw!.gateway.metrics.value("leafgate_mqtt_connections") === 1);
    const pub = await connectMqttJs(gw.mqttPort);
    // The subscription exists once mosquitto_sub's SUBACK went out; a retained probe
    // proves it without sleeping.
    await pub.publishAsync("q2/probe", "p", { qos: 2, retain: true });
    await waitForLine(sub, (l) => l === "q2/probe p");
    for (let i = 0; i < 19; i++) await pub.publishAsync("q2/t", `m${i}`, { qos: 2 });
    await pub.endAsync();
    const exit = await sub.exited;
    expect(exit.code).toBe(0);
    const lines = sub.stdout().trim().split("\n");
    expect(lines).toEqual(["q2/probe p", ...Array.from({ length: 19 }, (_, i) => `q2/t m${i}`)]);
  });
});
