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
