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
  streamInfo,
  streamMessages,
} from "../helpers/nats-server.js";
import { type TempDir, tempDir, waitFor } from "../helpers/wait.js";

/** Forwarded answers before the meter is silenced. */
const FORWARDED_BEFORE_FREEZE = 3;

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
    const stored = async () => (await streamInfo(nc, "EDGE")).state.messages;
    await waitFor(async () => (await stored()) >= FORWARDED_BEFORE_FREEZE, {
      timeoutMs: 10_000,
    });
    // From now on the meter answers nothing: the answers so far are all there will be,
    // and every one of them must reach the stream, once.
    slave.fault("no_answer");
    const answered = slave.answeredValues(1);
    await waitFor(async () => (await stored()) >= answered.length, {
      message: () => `the stream did not get all ${answered.length} answers`,
    });
    const messages = await streamMessages(nc, "EDGE");
    expect(messages.every((m) => m.subject === "edge.gw1.sensors.meter-1.energy")).toBe(true);
    // Frequency comes as u16 hundredths of a hertz; the profile scales it by 0.01.
    expect(messages.map((m) => JSON.parse(new TextDecoder().decode(m.data)))).toEqual(answered);
    // One request reads all nine registers, one at a time.
    expect(slave.maxOutstanding()).toBe(1);
  });
});
