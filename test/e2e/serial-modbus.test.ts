// Modbus RTU end to end: a slave simulator on a socat pty <- ModbusDevice polling it through
// the real serial library, publishing onto a real Bus this test subscribes to.
// (ModbusDevice is built directly: the gateway does not pick it for Modbus profiles yet.)
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type ModbusRequestRecord, ModbusSlaveSimulator } from "../../firmware-sim/modbus-slave.js";
import { Bus, type Envelope, silentLogger } from "../../src/core/index.js";
import { MetricsRegistry } from "../../src/observe/index.js";
import { ModbusDevice } from "../../src/serial/modbus-device.js";
import { type DeviceProfile, loadProfile } from "../../src/serial/profile.js";
import { type TempDir, tempDir, waitFor } from "../helpers/wait.js";

const METER_YAML = new URL("../../devices/energy-meter.yaml", import.meta.url).pathname;
const POLL_MS = 40;

describe("modbus devices", () => {
  let dir: TempDir | undefined;
  let sim: ModbusSlaveSimulator | undefined;
  let device: ModbusDevice | undefined;
  let metrics: MetricsRegistry;
  let messages: Envelope[];

  afterEach(async () => {
    await device?.stop();
    device = undefined;
    await sim?.close();
    sim = undefined;
    await dir?.cleanup();
    dir = undefined;
  });

  async function setup(
    options: { slaves?: number[]; decoder?: Record<string, unknown> } = {},
  ): Promise<{ sim: ModbusSlaveSimulator; device: ModbusDevice }> {
    dir = tempDir("modbus");
    sim = new ModbusSlaveSimulator({
      devicePath: join(dir.path, "tty-dev"),
      simPath: join(dir.path, "tty-sim"),
      slaves: options.slaves ?? [1],
    });
    await sim.open();
    const shipped = loadProfile(METER_YAML);
    const profile: DeviceProfile = {
      ...shipped,
      decoder: { ...shipped.decoder, poll_interval: POLL_MS, ...options.decoder },
    };
    messages = [];
    const bus = new Bus();
    bus.subscribe("sensors.>", {
      deliver: (m) => {
        messages.push(m);
        return undefined;
      },
    });
    metrics = new MetricsRegistry();
    device = new ModbusDevice({
      config: { path: sim.devicePath, device: "meter", profile: "energy-meter", baud_rate: null },
      profile,
      bus,
      log: silentLogger,
      metrics,
    });
    device.start();
    await waitFor(() => device!.status().state === "open");
    return { sim, device };
  }

  const bodies = (subject?: string) =>
    messages
      .filter((m) => subject === undefined || m.subject === subject)
      .map((m) => JSON.parse(m.payload.toString()));
  const bad = (reason: string) =>
    metrics.value("leafgate_serial_bad_frames_total", { port: sim!.devicePath, reason });

  /** Each answered request was read only after the previous one's answer was written. */
  function expectSequential(requests: readonly ModbusRequestRecord[]): void {
    const answered = requests.filter((r) => r.answeredAtMs !== undefined);
    for (const [i, r] of answered.entries()) {
      if (i > 0) expect(r.receivedAtMs).toBeGreaterThanOrEqual(answered[i - 1]!.answeredAtMs!);
    }
  }

  it("publishes exactly the values the meter answered, one merged request per poll, one at a time", async () => {
    const { sim } = await setup();
    await waitFor(() => messages.length >= 8);
    const got = bodies();
    expect(messages.every((m) => m.subject === "sensors.meter.energy")).toBe(true);
    const answered = sim.answeredValues();
    expect(answered.length).toBeGreaterThanOrEqual(got.length);
    expect(got).toEqual(answered.slice(0, got.length));
    expect(got[0]).toEqual({
      voltage: 230,
      current: 6.5,
      power: 1495,
      energy: 100,
      frequency: 49.97,
    });
    // All nine registers in one request, every time.
    for (const r of sim.requests) {
      expect(r).toMatchObject({ slave: 1, fn: 4, address: 0, count: 9, outcome: "answered" });
    }
    expect(sim.maxOutstanding()).toBe(1);
    expectSequential(sim.requests);
    expect(sim.badRequests).toBe(0);
  });

  it("polls two slaves in turn with slow answers, never two requests at once", async () => {
    const { sim } = await setup({
      slaves: [1, 2],
      decoder: { slave: undefined, slaves: [1, 2], timeout_ms: 300 },
    });
    sim.fault("slow", { delayMs: 25 });
    await waitFor(() => bodies("sensors.meter-2.energy").length >= 4);
    for (const slave of [1, 2]) {
      const got = bodies(`sensors.meter-${slave}.energy`);
      expect(got.length).toBeGreaterThanOrEqual(3);
      expect(got).toEqual(sim.answeredValues(slave).slice(0, got.length));
    }
    const addressed = sim.requests.map((r) => r.slave);
    expect(addressed.slice(0, 8)).toEqual([1, 2, 1, 2, 1, 2, 1, 2]);
    expect(sim.maxOutstanding()).toBe(1);
    expectSequential(sim.requests);
    expect(bad("timeout")).toBe(0);
  });

  it("retries through timeouts and bad CRCs, counts what retries could not save, keeps every good answer", async () => {
    const { sim } = await setup({ decoder: { timeout_ms: 100, retries: 2 } });
    await waitFor(() => messages.length >= 2);
    // Three silent requests: one read fails after all its attempts.
    sim.fault("no_answer", { count: 3 });
    await waitFor(() => bad("timeout") === 1);
    // One broken answer: the retry saves it.
    sim.fault("bad_crc", { count: 1 });
    const before = messages.length;
    await waitFor(() => messages.length >= before + 3);
    expect(bad("timeout")).toBe(1);
    expect(bad("bad_crc")).toBe(0);
    expect(metrics.value("leafgate_serial_modbus_retries_total", { port: sim.devicePath })).toBe(3);
    expect(sim.requests.filter((r) => r.outcome === "no_answer")).toHaveLength(3);
    expect(sim.requests.filter((r) => r.outcome === "bad_crc")).toHaveLength(1);
    const got = bodies();
    expect(got).toEqual(sim.answeredValues().slice(0, got.length));
    expectSequential(sim.requests);
  });

  it("keeps polling while unplugged and reads again after replug", async () => {
    const { sim, device } = await setup();
    await waitFor(() => messages.length >= 3);
    await sim.unplug();
    await waitFor(() => device.status().state === "waiting", { timeoutMs: 3_000 });
    const whileAway = messages.length;
    await sim.replug();
    await waitFor(() => device.status().state === "open", { timeoutMs: 3_000 });
    await waitFor(() => messages.length >= whileAway + 3);
    // What was published is what was answered, in order; at most one answer written just
    // as the pty went away can be missing.
    const got = bodies();
    const answered = sim.answeredValues();
    let next = 0;
    let missing = 0;
    for (const body of got) {
      while (next < answered.length && JSON.stringify(answered[next]) !== JSON.stringify(body)) {
        next++;
        missing++;
      }
      expect(next).toBeLessThan(answered.length);
      next++;
    }
    expect(missing).toBeLessThanOrEqual(1);
    expect(got.length).toBeGreaterThanOrEqual(whileAway + 3);
    expect(sim.maxOutstanding()).toBe(1);
  });
});
