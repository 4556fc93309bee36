// A gateway child process reading one simulated env-sensor (line-framed JSON) on a fresh
// socat pty pair, forwarding to `stream` on `hub`: the setup of the status tests that
// look at a serial device. Everything is closed after the test.
import { join } from "node:path";
import { envSensor, Simulator } from "../../firmware-sim/index.js";
import type { Defer, GatewayLauncher, SpawnedGateway } from "./fixtures.js";
import type { NatsServer } from "./nats-server.js";
import { tempDir } from "./wait.js";

/** The device's name in the gateway's config. */
export const SENSOR_DEVICE = "env-1";

export async function spawnWithSensor(fixtures: {
  readonly hub: NatsServer;
  readonly stream: string;
  readonly gateway: GatewayLauncher;
  readonly defer: Defer;
  /** More settings of the port (e.g. silent_after). */
  readonly port?: Record<string, unknown>;
}): Promise<{ gw: SpawnedGateway; sim: Simulator }> {
  const { hub, stream, gateway, defer } = fixtures;
  const dir = tempDir("sensor-gateway");
  defer(() => dir.cleanup());
  const sim = new Simulator(envSensor, join(dir.path, "tty-dev"), join(dir.path, "tty-sim"));
  await sim.open();
  defer(() => sim.close());
  const gw = await gateway.spawn({
    upstream: { servers: [hub.url], stream },
    serial: {
      ports: [
        { path: sim.devicePath, profile: "env-sensor", device: SENSOR_DEVICE, ...fixtures.port },
      ],
    },
  });
  return { gw, sim };
}
