import { describe, expect, it } from "vitest";
import { Bus, type LogFields, type Logger, ManualClock } from "../../src/core/index.js";
import { Broker } from "../../src/mqtt/index.js";
import { MetricsRegistry } from "../../src/observe/index.js";
import { FakeTransport } from "../helpers/fake-transport.js";

function recordingLogger(lines: [string, LogFields][]): Logger {
  const log: Logger = {
    debug: () => {},
    info: () => {},
    warn: (fields, msg) => lines.push([msg, fields]),
    error: () => {},
    child: () => log,
  };
  return log;
}

describe("protocol error logging", () => {
  it("logs a burst of 10 per 10 s, counts every one, and says how many were held back", () => {
    const clock = new ManualClock();
    const lines: [string, LogFields][] = [];
    const metrics = new MetricsRegistry();
    const broker = new Broker({ bus: new Bus(), log: recordingLogger(lines), metrics, clock });
    const garbage = Buffer.from([0xff, 0xff, 0xff, 0xff]);
    const open = () => broker.accept(new FakeTransport({ remote: "127.0.0.1:9" }));
    for (let i = 0; i < 25; i++) open().onData(garbage);
    expect(metrics.value("leafgate_mqtt_protocol_errors_total", { violation: "malformed" })).toBe(
      25,
    );
    expect(lines).toHaveLength(10);
    expect(lines[0]![0]).toMatch(/^mqtt protocol error, closing connection: /);
    expect(lines[0]![1]).not.toHaveProperty("suppressed");

    clock.advance(10_000);
    open().onData(garbage);
    expect(lines).toHaveLength(11);
    expect(lines[10]![0]).toMatch(/^mqtt protocol error, closing connection: /);
    expect(lines[10]![1]).toMatchObject({ remote: "127.0.0.1:9", suppressed: 15 });
  });
});

describe("bound refusal logging", () => {
  it("logs one line per bound per 10 s with the number refused since, never client text", () => {
    const clock = new ManualClock();
    const lines: [string, LogFields][] = [];
    const broker = new Broker({
      bus: new Bus(),
      log: recordingLogger(lines),
      metrics: new MetricsRegistry(),
      clock,
    });
    for (let i = 0; i < 5; i++) broker.logs.limit("max-sessions", { maxSessions: 3 }, "sessions");
    broker.logs.limit("session-store-full", {}, "store");
    expect(lines).toEqual([
      ["sessions", { maxSessions: 3 }],
      ["store", {}],
    ]);
    clock.advance(9_999);
    broker.logs.limit("max-sessions", { maxSessions: 3 }, "sessions");
    expect(lines).toHaveLength(2);
    clock.advance(1);
    broker.logs.limit("max-sessions", { maxSessions: 3 }, "sessions");
    expect(lines[2]).toEqual(["sessions", { maxSessions: 3, suppressed: 5 }]);
  });
});
