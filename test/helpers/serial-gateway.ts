// The `serialGateway` fixture: a gateway reading one simulated serial device (a firmware
// simulator on a socat pty pair) and forwarding to the test's EDGE stream, the setup the
// serial end-to-end tests share.
import { join } from "node:path";
import { ModbusSlaveSimulator } from "../../firmware-sim/modbus-slave.js";
import { type DeviceModel, Simulator } from "../../firmware-sim/simulator.js";
import { it as base, type Defer } from "./fixtures.js";
import type { TestGateway } from "./gateway.js";
import { streamInfo } from "./nats-server.js";
import { tempDir, waitFor } from "./wait.js";

export interface SerialGateway {
  readonly gw: TestGateway;
  readonly sim: Simulator;
  /** The port's state in the gateway's status ("open", "waiting"…). */
  state(): string | undefined;
  /** leafgate_serial_bad_frames_total for the port and `reason`. */
  bad(reason: string): number;
  /** leafgate_serial_frames_total for the port. */
  frames(): number;
  /** Messages in the hub's stream. */
  stored(): Promise<number>;
}

/** A Modbus slave simulator (the energy meter) on a fresh pty pair; gone after the test. */
export async function openModbusSlave(defer: Defer): Promise<ModbusSlaveSimulator> {
  const dir = tempDir("modbus");
  defer(() => dir.cleanup());
  const slave = new ModbusSlaveSimulator({
    devicePath: join(dir.path, "tty-dev"),
    simPath: join(dir.path, "tty-sim"),
  });
  await slave.open();
  defer(() => slave.close());
  return slave;
}

/** `it` with the fixtures of ./fixtures.ts and `serialGateway`. */
export const it = base.extend<{
  /**
   * Opens a simulator of `model`, starts a gateway with the device on it (`profile`,
   * named `device`) forwarding to `stream`, and resolves once the port is open and the hub
   * connected. Everything is closed after the test.
   */
  serialGateway: (model: DeviceModel, profile: string, device: string) => Promise<SerialGateway>;
}>({
  serialGateway: async ({ defer, nc, stream, edgeGateway }, use) => {
    await use(async (model, profile, device) => {
      const dir = tempDir("serial");
      defer(() => dir.cleanup());
      const sim = new Simulator(model, join(dir.path, "tty-dev"), join(dir.path, "tty-sim"));
      await sim.open();
      defer(() => sim.close());
      const gw = await edgeGateway({
        serial: { ports: [{ path: sim.devicePath, profile, device }] },
      });
      const port = { port: sim.devicePath };
      const serial: SerialGateway = {
        gw,
        sim,
        state: () => gw.gateway.status().serial[0]?.state,
        bad: (reason) =>
          gw.gateway.metrics.value("leafgate_serial_bad_frames_total", { ...port, reason }),
        frames: () => gw.gateway.metrics.value("leafgate_serial_frames_total", port),
        stored: async () => (await streamInfo(nc, stream)).state.messages,
      };
      await waitFor(() => serial.state() === "open");
      await waitFor(() => gw.gateway.metrics.value("leafgate_upstream_connected") === 1);
      return serial;
    });
  },
});
