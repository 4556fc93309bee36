// The readiness rules added for a fleet: buffer classes nearly full or holding messages
// near their max_age, the disk guard refusing, a polled serial device gone silent, and the
// configured servers named before one has answered. Each reason stays the same while its
// condition lasts; a healthy box (and a device with no expected interval) stays READY.
import { describe, expect, it } from "vitest";
import { formatDuration } from "../../src/observe/duration.js";
import {
  type ClassView,
  FULL_FRACTION,
  OLD_FRACTION,
  type ReadinessInput,
  readiness,
} from "../../src/observe/readiness.js";

const T = 1_700_000_000_000;
const DAY = 86_400_000;
const forwarding = { state: "forwarding", server: "hub:4222" };
const cls = (over: Partial<ClassView> = {}): ClassView => ({
  name: "telemetry",
  messages: 10,
  bytes: 1000,
  onFull: "drop_oldest",
  maxBytes: 1e9,
  maxMessages: null,
  maxAgeMs: 7 * DAY,
  oldestAgeMs: 2_000,
  ...over,
});
const box = (over: Partial<ReadinessInput> = {}): ReadinessInput => ({
  healthy: true,
  state: "running",
  time: T,
  accounts: { $G: { upstream: forwarding, outbox: { classes: [cls()] } } },
  disk: { state: "ok", resumeAtFreeBytes: 20 * 1024 * 1024 },
  serial: [],
  ...over,
});
const reasons = (input: ReadinessInput): readonly string[] => {
  const r = readiness(input);
  return r.ready ? [] : r.reasons;
};

describe("readiness rules for a fleet", () => {
  it("a healthy box is ready: a small young backlog, the disk ok, devices heard", () => {
    expect(
      readiness(
        box({
          serial: [
            // A streaming device with no expected interval never flips readiness by silence.
            {
              device: "air-1",
              path: "/dev/ttyUSB0",
              state: "open",
              since: T - 30 * DAY,
              lastFrameAt: T - 10 * DAY,
              silentAfterMs: null,
            },
            // A polled device heard within its limit.
            {
              device: "meter-1",
              path: "/dev/ttyUSB1",
              state: "open",
              since: T - DAY,
              lastFrameAt: T - 5_000,
              silentAfterMs: 15_000,
            },
          ],
        }),
      ),
    ).toEqual({ ready: true });
  });

  it("a class over 95% of max_bytes or max_messages; says what happens when it is full", () => {
    const classes = [
      cls({ bytes: 0.95e9 }),
      cls({ name: "alarms", onFull: "reject", messages: 95, maxMessages: 100, maxBytes: 100 }),
      cls({ name: "events", bytes: 0.94e9 }),
    ];
    expect(
      reasons(box({ accounts: { $G: { upstream: forwarding, outbox: { classes } } } })),
    ).toEqual([
      "buffer class telemetry is over 95% full (max_bytes 1000000000): the oldest messages are dropped when it is full",
      "buffer class alarms is over 95% full (max_bytes 100, max_messages 100): new messages are refused when it is full",
    ]);
    expect(FULL_FRACTION).toBe(0.95);
  });

  it("a class whose oldest message waited half its max_age; none without a max_age", () => {
    const classes = [
      cls({ oldestAgeMs: 3.5 * DAY }),
      cls({ name: "forever", maxAgeMs: null, oldestAgeMs: 100 * DAY }),
      cls({ name: "young", oldestAgeMs: 3.5 * DAY - 1 }),
    ];
    expect(
      reasons(box({ accounts: { acme: { upstream: forwarding, outbox: { classes } } } })),
    ).toEqual([
      "account acme: buffer class telemetry: the oldest message has waited over half its max_age (7 d); at max_age messages expire",
    ]);
    expect(OLD_FRACTION).toBe(0.5);
  });

  it("the disk guard holding the buffer", () => {
    expect(reasons(box({ disk: { state: "full", resumeAtFreeBytes: 20 * 1024 * 1024 } }))).toEqual([
      "the disk is full: the buffer is held at its current size (drop_oldest classes evict, reject classes refuse) until 20 MiB are free in the data dir",
    ]);
    expect(reasons(box({ disk: { state: "off", resumeAtFreeBytes: 0 } }))).toEqual([]);
  });

  it("a polled device silent past its limit, since its last frame or its port's opening, the later", () => {
    const meter = { path: "/dev/ttyUSB1", state: "open", silentAfterMs: 15_000 };
    expect(
      reasons(
        box({
          serial: [
            { ...meter, device: "m1", since: T - DAY, lastFrameAt: T - 15_001 },
            { ...meter, device: "m2", since: T - 15_001, lastFrameAt: null },
            { ...meter, device: "m3", since: T - 15_000, lastFrameAt: null },
            { ...meter, device: "m4", since: T - DAY, lastFrameAt: T - 15_000 },
            // Replugged 10 s ago, heard an hour ago: it has the rest of its limit.
            { ...meter, device: "m5", since: T - 10_000, lastFrameAt: T - 3_600_000 },
            { ...meter, device: "m6", since: T - 20_000, lastFrameAt: T - 3_600_000 },
          ],
        }),
      ),
    ).toEqual([
      "serial device m1 on /dev/ttyUSB1 is silent: no good frame for over 15 s",
      "serial device m2 on /dev/ttyUSB1 is silent: no good frame for over 15 s (none since the port opened)",
      "serial device m6 on /dev/ttyUSB1 is silent: no good frame for over 15 s (none since the port opened)",
    ]);
  });

  it("names the configured servers while none has answered", () => {
    const link = {
      state: "connecting",
      lastError: "connection refused",
      servers: ["nats://a:4222", "tls://***@b:4443"],
    };
    expect(reasons(box({ accounts: { $G: { upstream: link } } }))).toEqual([
      "hub unreachable (dialing nats://a:4222, tls://***@b:4443): connection refused; messages are buffered",
    ]);
  });
});

describe("formatDuration", () => {
  it("gives the two largest units, the smaller dropped when 0", () => {
    expect(
      [
        0,
        999,
        1000,
        59_999,
        60_000,
        184_000,
        3_600_000,
        3 * 3_600_000 + 120_000,
        7 * DAY,
        DAY + 1,
      ].map(formatDuration),
    ).toEqual([
      "0 s",
      "0 s",
      "1 s",
      "59 s",
      "1 min",
      "3 min 4 s",
      "1 h",
      "3 h 2 min",
      "7 d",
      "1 d",
    ]);
  });
});
