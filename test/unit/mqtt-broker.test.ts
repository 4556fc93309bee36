import { afterEach, describe, expect, it, vi } from "vitest";
import { Bus, type LogFields, type Logger } from "../../src/core/index.js";
import { Broker, DEFAULT_BROKER_OPTIONS, type Transport } from "../../src/mqtt/index.js";
import { MetricsRegistry } from "../../src/observe/index.js";

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

function transport(): Transport {
  return {
    write: () => true,
    end: () => {},
    destroy: () => {},
    pause: () => {},
    resume: () => {},
    writableLength: 0,
    remote: "127.0.0.1:9",
  };
}

describe("protocol error logging", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("logs a burst of 10 per 10 s, counts every one, and summarises the rest", () => {
    vi.useFakeTimers();
    const lines: [string, LogFields][] = [];
    const metrics = new MetricsRegistry();
    const broker = new Broker(new Bus(), DEFAULT_BROKER_OPTIONS, recordingLogger(lines), metrics);
    const garbage = Buffer.from([0xff, 0xff, 0xff, 0xff]);
    for (let i = 0; i < 25; i++) broker.accept(transport()).onData(garbage);
    expect(metrics.value("leafgate_mqtt_protocol_errors_total", { violation: "malformed" })).toBe(
      25,
    );
    expect(lines).toHaveLength(10);
    expect(lines[0]![0]).toMatch(/^mqtt protocol error, closing connection: /);

    vi.advanceTimersByTime(10_000);
    broker.accept(transport()).onData(garbage);
    expect(lines).toHaveLength(12);
    expect(lines[10]).toEqual(["more mqtt protocol errors were not logged", { suppressed: 15 }]);
    expect(lines[11]![0]).toMatch(/^mqtt protocol error, closing connection: /);
  });
});

describe("bound refusal logging", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("logs one line per bound per 10 s with the number refused since, never client text", () => {
    vi.useFakeTimers();
    const lines: [string, LogFields][] = [];
    const broker = new Broker(
      new Bus(),
      DEFAULT_BROKER_OPTIONS,
      recordingLogger(lines),
      new MetricsRegistry(),
    );
    for (let i = 0; i < 5; i++) broker.logLimit("max-sessions", { maxSessions: 3 }, "sessions");
    broker.logLimit("session-store-full", {}, "store");
    expect(lines).toEqual([
      ["sessions", { maxSessions: 3, refusedSinceLastLine: 0 }],
      ["store", { refusedSinceLastLine: 0 }],
    ]);
    vi.advanceTimersByTime(9_999);
    broker.logLimit("max-sessions", { maxSessions: 3 }, "sessions");
    expect(lines).toHaveLength(2);
    vi.advanceTimersByTime(1);
    broker.logLimit("max-sessions", { maxSessions: 3 }, "sessions");
    expect(lines[2]).toEqual(["sessions", { maxSessions: 3, refusedSinceLastLine: 5 }]);
  });
});
