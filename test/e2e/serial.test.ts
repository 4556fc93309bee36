// Serial devices end to end: a firmware simulator on a socat pty -> leafgate -> real hub.
import { describe, expect } from "vitest";
import { envSensor, pms5003 } from "../../firmware-sim/index.js";
import { streamMessages } from "../helpers/nats-server.js";
import { it } from "../helpers/serial-gateway.js";
import { waitFor } from "../helpers/wait.js";

const decoder = new TextDecoder();

describe("serial devices", () => {
  it("env-sensor (JSON lines): every field of every frame, typed, with units, in order", async ({
    nc,
    serialGateway,
  }) => {
    const { sim, stored } = await serialGateway(envSensor, "env-sensor", "env-1");
    await sim.run(100, 40);
    await waitFor(async () => (await stored()) === 120);
    const messages = await streamMessages(nc, "EDGE");
    const sent = sim.goodValues();
    expect(sent).toHaveLength(40);
    const expected = sent.flatMap((v) => [
      ["edge.gw1.sensors.env-1.temperature", { value: v.t, unit: "°C" }],
      ["edge.gw1.sensors.env-1.humidity", { value: v.h, unit: "%" }],
      ["edge.gw1.sensors.env-1.pressure", { value: v.p, unit: "hPa" }],
    ]);
    expect(messages.map((m) => [m.subject, JSON.parse(decoder.decode(m.data))])).toEqual(expected);
  });

  it("pms5003 (binary): garbage, bad checksums and truncated frames are counted, no good frame is lost", async ({
    nc,
    serialGateway,
  }) => {
    const { sim: s, bad, stored } = await serialGateway(pms5003, "pms5003", "air-1");
    s.sendGood();
    s.sendGarbage(7, 0x00);
    s.sendGood();
    s.sendBadChecksum();
    s.sendGood();
    s.sendTruncated();
    s.sendGood();
    s.sendGood();
    await s.run(100, 20);
    const good = s.goodValues();
    expect(good).toHaveLength(25);
    await waitFor(async () => (await stored()) === 25);
    const messages = await streamMessages(nc, "EDGE");
    expect(messages.every((m) => m.subject === "edge.gw1.sensors.air-1.air")).toBe(true);
    expect(messages.map((m) => JSON.parse(decoder.decode(m.data)))).toEqual(
      good.map((v) => ({
        pm1_0: v.pm1_0,
        pm2_5: v.pm2_5,
        pm10: v.pm10,
        particles_0_3um: v.n0_3,
        particles_2_5um: v.n2_5,
      })),
    );
    // One run of 7 garbage bytes: one count (the log line says how many bytes).
    expect(bad("garbage")).toBe(1);
    // The bad frame, and the truncated one (which ran into the next frame's bytes).
    expect(bad("bad_checksum")).toBe(2);
  });

  it("recovers within 2 s when an unplugged device comes back, and the gateway carries on", async ({
    nc,
    serialGateway,
  }) => {
    const { gw, sim, state, stored } = await serialGateway(envSensor, "env-sensor", "env-1");
    await sim.run(100, 5);
    await waitFor(async () => (await stored()) === 15);
    await sim.unplug();
    await waitFor(() => state() === "waiting", { timeoutMs: 3_000 });
    expect(gw.gateway.status().healthy).toBe(true);
    await sim.replug();
    await waitFor(() => state() === "open", { timeoutMs: 2_000 });
    await sim.run(100, 5);
    await waitFor(async () => (await stored()) === 30);
    const values = (await streamMessages(nc, "EDGE"))
      .filter((m) => m.subject.endsWith(".temperature"))
      .map((m) => JSON.parse(decoder.decode(m.data)).value);
    expect(values).toEqual(sim.goodValues().map((v) => v.t));
  });
});
