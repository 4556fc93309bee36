// Modbus RTU end to end: a slave simulator on a socat pty <- ModbusDevice polling it through
// the real serial library, publishing onto a real Bus this test subscribes to.
// (ModbusDevice is built directly, to reach its counters; serial-gateway-modbus.test.ts runs
// it through the gateway, which picks it for Modbus profiles.)
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { type ModbusRequestRecord, ModbusSlaveSimulator } from "../../firmware-sim/modbus-slave.js";
import { Bus, type Envelope, silentLogger } from "../../src/core/index.js";
import { MetricsRegistry } from "../../src/observe/index.js";
import { ModbusDevice } from "../../src/serial/modbus-device.js";
import { validateProfile } from "../../src/serial/profile.js";
import { type TempDir, tempDir, waitFor } from "../helpers/wait.js";

const METER_YAML = new URL("../../devices/energy-meter.yaml", import.meta.url).pathname;
const POLL_MS = 40;
/**
 * The slave answers at once, but this test process reads the answer: on a busy machine it
 * may not get to it for a while, and a request timing out then is retried, its late answer
 * discarded. A generous timeout costs nothing where nothing is meant to time out.
 */
const PATIENT_TIMEOUT_MS = 2_000;
/** Where timeouts are the point, each costs this much (twice, with the drain after it). */
const RETRY_TIMEOUT_MS = 400;

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
    const shipped = parse(readFileSync(METER_YAML, "utf8"));
    const profile = validateProfile(
      {
        ...shipped,
        decoder: {
          ...shipped.decoder,
          poll_interval: `${POLL_MS}ms`,
          timeout_ms: PATIENT_TIMEOUT_MS,
          ...options.decoder,
        },
      },
      METER_YAML,
    );
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

  /**
   * Waits for a moment when every answer the slave wrote has been published, with at
   * least `atLeast` of them: the device publishes an answer before it sends the next
   * request, so between two polls the two lists are equal. Returns what was published.
   */
  async function settled(atLeast: number): Promise<{ got: unknown[] }> {
    let last = "";
    return waitFor(
      () => {
        const got = bodies();
        const answered = sim!.answeredValues();
        last = `published ${JSON.stringify(got)}\nanswered ${JSON.stringify(answered)}`;
        return got.length >= atLeast && JSON.stringify(got) === JSON.stringify(answered)
          ? { got }
          : undefined;
      },
      { message: () => `never published exactly what was answered:\n${last}` },
    );
  }

  /** Each answered request was read only after the previous one's answer was written. */
  function expectSequential(requests: readonly ModbusRequestRecord[]): void {
    const answered = requests.filter((r) => r.answeredAtMs !== undefined);
    for (const [i, r] of answered.entries()) {
      if (i > 0) expect(r.receivedAtMs).toBeGreaterThanOrEqual(answered[i - 1]!.answeredAtMs!);
    }
  }

  it("publishes exactly the values the meter answered, one merged request per poll, one at a time", async () => {
    const { sim } = await setup();
    const { got } = await settled(8);
    expect(messages.every((m) => m.subject === "sensors.meter.energy")).toBe(true);
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
      decoder: { slave: undefined, slaves: [1, 2] },
    });
    sim.fault("slow", { delayMs: 25 });
    // Both slaves together, so no answer to either is on its way.
    await settled(8);
    for (const slave of [1, 2]) {
      expect(bodies(`sensors.meter-${slave}.energy`)).toEqual(sim.answeredValues(slave));
    }
    // Strictly in turn, from the first request on: 1, 2, 1, 2, ... and every one answered
    // (the last perhaps not yet: its answer is 25 ms late).
    const addressed = sim.requests.map((r) => r.slave);
    expect(addressed).toEqual(addressed.map((_, i) => (i % 2) + 1));
    const outcomes = sim.requests.map((r) => r.outcome);
    expect(outcomes.slice(0, -1).every((o) => o === "answered")).toBe(true);
    expect(["answered", "pending"]).toContain(outcomes.at(-1));
    expect(sim.maxOutstanding()).toBe(1);
    expectSequential(sim.requests);
    expect(bad("timeout")).toBe(0);
  });

  it("retries through timeouts and bad CRCs, counts what retries could not save, keeps every good answer", async () => {
    const { sim } = await setup({ decoder: { timeout_ms: RETRY_TIMEOUT_MS, retries: 2 } });
    await waitFor(() => messages.length >= 2);
    // Three silent requests: one read fails after all its attempts.
    sim.fault("no_answer", { count: 3 });
    await waitFor(() => bad("timeout") === 1);
    // One broken answer: the retry saves it.
    sim.fault("bad_crc", { count: 1 });
    const before = messages.length;
    await settled(before + 3);
    expect(bad("timeout")).toBe(1);
    expect(bad("bad_crc")).toBe(0);
    expect(metrics.value("leafgate_serial_modbus_retries_total", { port: sim.devicePath })).toBe(3);
    expect(sim.requests.filter((r) => r.outcome === "no_answer")).toHaveLength(3);
    expect(sim.requests.filter((r) => r.outcome === "bad_crc")).toHaveLength(1);
    expectSequential(sim.requests);
  });

  it("keeps polling while unplugged and reads again after replug", async () => {
    const { sim, device } = await setup();
    // Unplugged between two polls, in the same turn as the check: the slave stops reading
    // at once, so no answer is left unpublished.
    const { got: beforeUnplug } = await settled(3);
    await sim.unplug();
    await waitFor(() => device.status().state === "waiting", { timeoutMs: 3_000 });
    expect(bodies()).toEqual(beforeUnplug);
    await sim.replug();
    await waitFor(() => device.status().state === "open", { timeoutMs: 3_000 });
    // Every answer, before and after, published once and in order.
    const { got } = await settled(beforeUnplug.length + 3);
    expect(got.slice(0, beforeUnplug.length)).toEqual(beforeUnplug);
    expect(sim.maxOutstanding()).toBe(1);
  });
});
