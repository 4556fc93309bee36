// Accounts and serial devices: a port belongs to one account (`serial.ports[].account`). What
// its device publishes is seen in that account only, and only that account's clients can
// command it; other accounts, `$G` included, see and reach nothing of it.
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { expect } from "vitest";
import { envSensor, Simulator } from "../../firmware-sim/index.js";
import { hashPassword } from "../../src/mqtt/index.js";
import { it } from "../helpers/fixtures.js";
import { tempDir, waitFor } from "../helpers/wait.js";

const PASSWORD = "pw";

it("a port's readings and commands stay in its account", async ({ gateway, defer }) => {
  const dir = tempDir("serial-accounts");
  defer(() => dir.cleanup());
  const sim = new Simulator(envSensor, join(dir.path, "tty-dev"), join(dir.path, "tty-sim"));
  await sim.open();
  defer(() => sim.close());
  const password = await hashPassword(PASSWORD);
  const gw = await gateway.start({
    authorization: { users: [{ user: "g1", password }] },
    accounts: {
      plant: { users: [{ user: "p1", password }] },
      tenant: { users: [{ user: "t1", password }] },
    },
    serial: {
      ports: [{ path: sim.devicePath, profile: "env-sensor", device: "env-1", account: "plant" }],
    },
  });
  await waitFor(() => gw.gateway.status().serial[0]?.state === "open");
  const clients: NatsConnection[] = [];
  defer(() => Promise.all(clients.map((nc) => nc.close())));
  const watch = async (user: string) => {
    const nc = await connect({
      servers: `127.0.0.1:${gw.natsPort}`,
      user,
      pass: PASSWORD,
      reconnect: false,
    });
    clients.push(nc);
    const got: string[] = [];
    nc.subscribe("sensors.>", { callback: (_e, m) => void got.push(m.subject) });
    await nc.flush();
    return { nc, got };
  };
  const [plant, tenant, global] = [await watch("p1"), await watch("t1"), await watch("g1")];
  // Observability by account: one NATS client in each.
  const { accounts } = gw.gateway.status();
  expect(Object.keys(accounts)).toEqual(["$G", "plant", "tenant"]);
  for (const name of ["$G", "plant", "tenant"]) {
    expect(accounts[name]!.nats).toEqual({ connections: 1 });
    expect(accounts[name]!.mqtt).toEqual({ connections: 0 });
  }
  const http = gw.gateway.addresses().http!;
  const metrics = await (await fetch(`http://127.0.0.1:${http.port}/metrics`)).text();
  expect(metrics).toContain('leafgate_account_clients{account="plant",protocol="nats"} 1');
  expect(metrics).toContain('leafgate_account_clients{account="tenant",protocol="mqtt"} 0');

  await sim.run(100, 5);
  const readings = sim.sent.length;
  await waitFor(() => plant.got.length >= readings, {
    message: () => `plant saw ${plant.got.length} of ${readings}`,
  });
  for (const c of [plant, tenant, global]) await c.nc.flush();
  expect(plant.got.every((s) => s.startsWith("sensors.env-1."))).toBe(true);
  expect(tenant.got).toEqual([]);
  expect(global.got).toEqual([]);

  // Commands: answered in the port's account, no responders anywhere else.
  const answer = await plant.nc.request("devices.env-1.cmd.interval", "5", { timeout: 5_000 });
  expect(answer.json()).toEqual({ text: "OK INTERVAL 5" });
  for (const other of [tenant, global]) {
    await expect(
      other.nc.request("devices.env-1.cmd.interval", "6", { timeout: 2_000 }),
    ).rejects.toThrow(/no responders/i);
  }
  expect(sim.requests.map((r) => r.request)).toEqual(["INTERVAL 5"]);
});
