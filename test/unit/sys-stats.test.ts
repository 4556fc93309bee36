import { describe, expect, it } from "vitest";
import { Bus, type Envelope, ManualClock } from "../../src/core/index.js";
import { exportsSubject, type SysFigures, SysStats, sysMessages } from "../../src/observe/index.js";
import { MetricsRegistry } from "../../src/observe/metrics.js";

const FIGURES: SysFigures = {
  uptime: 42,
  clients: { mqtt: 3, nats: 1 },
  outbox: { pending: 7, bytes: 700 },
  uplink: "forwarding",
  messages: { stored: 10, forwarded: 3, dropped: 2 },
};

describe("sysMessages", () => {
  it("gives one plain-text subject per figure and .stats with all of them as JSON", () => {
    expect(sysMessages("gw1", FIGURES)).toEqual([
      { subject: "$SYS.leafgate.gw1.uptime", payload: "42" },
      { subject: "$SYS.leafgate.gw1.clients.mqtt", payload: "3" },
      { subject: "$SYS.leafgate.gw1.clients.nats", payload: "1" },
      { subject: "$SYS.leafgate.gw1.outbox.pending", payload: "7" },
      { subject: "$SYS.leafgate.gw1.outbox.bytes", payload: "700" },
      { subject: "$SYS.leafgate.gw1.uplink.state", payload: "forwarding" },
      { subject: "$SYS.leafgate.gw1.messages.stored", payload: "10" },
      { subject: "$SYS.leafgate.gw1.messages.forwarded", payload: "3" },
      { subject: "$SYS.leafgate.gw1.messages.dropped", payload: "2" },
      { subject: "$SYS.leafgate.gw1.stats", payload: JSON.stringify(FIGURES) },
    ]);
    expect(JSON.parse(sysMessages("gw1", FIGURES)[9]!.payload)).toEqual(FIGURES);
  });
});

describe("exportsSubject", () => {
  it("takes subjects outside $SYS as the bus matched them, other $ ones included", () => {
    expect(exportsSubject([">"], "a.b")).toBe(true);
    expect(exportsSubject([">"], "$dev.x")).toBe(true);
    expect(exportsSubject([">"], "$SYSX.x")).toBe(true);
  });

  it("does not let a pattern not starting with $SYS take a $SYS subject", () => {
    expect(exportsSubject([">"], "$SYS.leafgate.gw.uptime")).toBe(false);
    expect(exportsSubject(["*.leafgate.>"], "$SYS.leafgate.gw.uptime")).toBe(false);
    expect(exportsSubject(["sensors.>"], "$SYS.leafgate.gw.uptime")).toBe(false);
  });

  it("takes a $SYS subject under a pattern starting with $SYS that matches it", () => {
    expect(exportsSubject([">", "$SYS.>"], "$SYS.leafgate.gw.uptime")).toBe(true);
    expect(exportsSubject(["$SYS.leafgate.>"], "$SYS.leafgate.gw.uptime")).toBe(true);
    expect(exportsSubject(["$SYS.leafgate.other.>"], "$SYS.leafgate.gw.uptime")).toBe(false);
  });
});

describe("SysStats", () => {
  it("publishes each account's figures on its own bus every interval, until stopped", () => {
    const clock = new ManualClock(1_000);
    const buses = { g: new Bus(), a: new Bus() };
    const got: { g: Envelope[]; a: Envelope[] } = { g: [], a: [] };
    buses.g.subscribe("$SYS.>", { deliver: (m) => void got.g.push(m) });
    buses.a.subscribe("$SYS.leafgate.gw.uptime", { deliver: (m) => void got.a.push(m) });
    let rounds = 0;
    const sys = new SysStats({
      gateway: "gw",
      intervalMs: 10_000,
      clock,
      accounts: () => {
        rounds++;
        return [
          { bus: buses.g, figures: { ...FIGURES, uptime: rounds } },
          { bus: buses.a, figures: { ...FIGURES, uptime: 100 + rounds } },
        ];
      },
    });
    sys.start();
    clock.advance(9_999);
    expect(got.g).toEqual([]);
    clock.advance(1);
    expect(got.g.map((m) => m.subject)).toEqual(sysMessages("gw", FIGURES).map((m) => m.subject));
    expect(got.g[0]).toEqual({
      subject: "$SYS.leafgate.gw.uptime",
      payload: Buffer.from("1"),
      receivedAtMs: 11_000,
      origin: "internal",
      qos: 0,
    });
    expect(got.a.map((m) => Buffer.from(m.payload).toString())).toEqual(["101"]);
    clock.advance(20_000);
    expect(got.a.map((m) => Buffer.from(m.payload).toString())).toEqual(["101", "102", "103"]);
    expect(got.g).toHaveLength(30);
    sys.stop();
    expect(clock.pending).toBe(0);
    clock.advance(100_000);
    expect(got.a).toHaveLength(3);
  });

  it("reports a publish a durable subscriber refused, and carries on", async () => {
    const clock = new ManualClock();
    const bus = new Bus();
    bus.subscribe("$SYS.leafgate.gw.stats", { deliver: () => Promise.reject(new Error("full")) });
    const errors: unknown[] = [];
    const sys = new SysStats({
      gateway: "gw",
      intervalMs: 5,
      clock,
      accounts: () => [{ bus, figures: FIGURES }],
      onError: (err) => errors.push(err),
    });
    sys.start();
    clock.advance(10);
    await new Promise((r) => setImmediate(r));
    expect(errors.map((e) => (e as Error).message)).toEqual(["full", "full"]);
    sys.stop();
  });

  it("refuses an interval of 0 (the gateway does not build one then)", () => {
    expect(() => new SysStats({ gateway: "gw", intervalMs: 0, accounts: () => [] })).toThrow(
      RangeError,
    );
  });
});

describe("MetricsRegistry.sum", () => {
  it("sums one account's series over its other labels; undefined: those without it", () => {
    const m = new MetricsRegistry();
    const c = m.counter("drops_total", "d");
    c.inc({ class: "a", reason: "full" }, 2);
    c.inc({ class: "b", reason: "age" }, 3);
    c.inc({ account: "t1", class: "a", reason: "full" }, 5);
    c.inc({ account: "t2", class: "a" }, 7);
    expect(m.sum("drops_total", "account", undefined)).toBe(5);
    expect(m.sum("drops_total", "account", "t1")).toBe(5);
    expect(m.sum("drops_total", "account", "t2")).toBe(7);
    expect(m.sum("drops_total", "account", "t3")).toBe(0);
    expect(m.sum("nothing", "account", undefined)).toBe(0);
  });
});
