// The shipped energy-meter profile through a gateway: a Modbus RTU slave simulator on a
// socat pty, polled by leafgate, forwarded to a real hub.
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ModbusSlaveSimulator } from "../../firmware-sim/index.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import {
  closeClients,
  connectClient,
  createStream,
  type NatsServer,
  startNatsServer,
  streamMessages,
} from "../helpers/nats-server.js";
import { type TempDir, tempDir, waitFor } from "../helpers/wait.js";

describe("Modbus RTU energy meter through the gateway", () => {
  let hub: NatsServer | undefined;
  let gw: TestGateway | undefined;
  let slave: ModbusSlaveSimulator | undefined;
  let dir: TempDir | undefined;

  afterEach(async () => {
    await gw?.dispose();
    await slave?.close();
    await closeClients();
    await hub?.stop();
    await dir?.cleanup();
  });

  it("polls the meter and forwards each answer's values, in order", async () => {
    dir = tempDir("modbus-gw");
    slave = new ModbusSlaveSimulator({
      devicePath: join(dir.path, "tty-dev"),
      simPath: join(dir.path, "tty-sim"),
    });
    await slave.open();
    hub = await startNatsServer();
    const nc = await connectClient(hub.url);
    await createStream(nc, "EDGE", ["edge.>"]);
    gw = await startGateway({
      hub: hub.url,
      stream: "EDGE",
      extra: `serial:\n  ports:\n    - { path: "${join(dir.path, "tty-dev")}", profile: energy-meter, device: meter-1 }\n`,
    });
    await waitFor(async () => (await streamMessages(nc, "EDGE")).length >= 3, {
      timeoutMs: 10_000,
    });
    await gw.stop();
    const messages = await streamMessages(nc, "EDGE");
    const answered = slave.answeredValues(1);
    expect(messages.length).toBe(answered.length);
    expect(messages.every((m) => m.subject === "edge.gw1.sensors.meter-1.energy")).toBe(true);
    const got = messages.map((m) => JSON.parse(new TextDecoder().decode(m.data)));
    expect(got.map((v) => Object.keys(v).sort())).toEqual(
      got.map(() => ["current", "energy", "frequency", "power", "voltage"]),
    );
    // Frequency comes as u16 hundredths of a hertz; the profile scales it by 0.01.
    expect(got.map((v) => v.frequency)).toEqual(
      answered.map((a) => Math.round((a.frequency as number) * 100) / 100),
    );
    // One request reads all nine registers, one at a time.
    expect(slave.maxOutstanding()).toBe(1);
  });
});
