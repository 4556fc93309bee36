// The pure halves of `leafgate status` and `/readyz`: the readiness rules (one reason per
// failed rule, in words a person acts on) and the human summary's lines, exactly.
import { describe, expect, it } from "vitest";
import type { AccountStatus } from "../../src/gateway.js";
import { type ReadinessInput, readiness } from "../../src/observe/readiness.js";
import { urlOf } from "../../src/observe/status-command.js";
import {
  dropsOf,
  formatBytes,
  formatSummary,
  type StatusView,
} from "../../src/observe/status-summary.js";
import type { UpstreamStatus } from "../../src/upstream/index.js";

const T0 = Date.UTC(2026, 11, 8, 4, 0, 0);
const DAY_MS = 86_400_000;

const forwarding = { state: "forwarding", server: "nats://hub:4222", stream: "EDGE" };
const running: ReadinessInput = {
  healthy: true,
  state: "running",
  upstream: forwarding,
  accounts: { $G: { upstream: forwarding } },
  serial: [{ device: "env-1", path: "/dev/ttyUSB0", state: "open" }],
};

describe("readiness", () => {
  it("is ready when running, every hub link forwards and every port is open", () => {
    expect(readiness(running)).toEqual({ ready: true });
  });

  it("gives one reason per failed rule, gateway first, then links, then ports", () => {
    const r = readiness({
      healthy: false,
      state: "starting",
      accounts: {
        $G: { upstream: { state: "connecting", lastError: "connect ECONNREFUSED 10.0.0.1:4222" } },
        acme: {
          upstream: {
            state: "waiting-for-stream",
            server: "nats://hub:4222",
            lastError: "no stream on the hub captures edge.gw1.>",
          },
        },
        beta: { upstream: { state: "connecting", server: "nats://hub2:4222" } },
      },
      serial: [
        { device: "env-1", path: "/dev/ttyUSB0", state: "waiting", reason: "ENOENT: no such file" },
        { device: "env-2", path: "/dev/ttyUSB1", state: "opening" },
        { device: "env-3", path: "/dev/ttyUSB2", state: "open" },
      ],
    });
    expect(r).toEqual({
      ready: false,
      reasons: [
        "gateway is starting, not running",
        "hub unreachable: connect ECONNREFUSED 10.0.0.1:4222; messages are buffered",
        "account acme: hub nats://hub:4222 answers but forwarding waits for its stream: " +
          "no stream on the hub captures edge.gw1.>; messages are buffered",
        "account beta: hub unreachable (last server nats://hub2:4222): not connected yet; " +
          "messages are buffered",
        "serial port /dev/ttyUSB0 (device env-1) not open: ENOENT: no such file",
        "serial port /dev/ttyUSB1 (device env-2) not open: opening",
      ],
    });
  });

  it("reads `upstream` when there is no `accounts`, and `healthy` when there is no state", () => {
    expect(readiness({ healthy: true, upstream: { state: "stopping" } })).toEqual({
      ready: false,
      reasons: ["hub link is stopping; messages are buffered"],
    });
    expect(readiness({ healthy: false })).toEqual({
      ready: false,
      reasons: ["gateway is not healthy, not running"],
    });
    expect(readiness({ healthy: true })).toEqual({ ready: true });
  });
});

describe("status summary", () => {
  const account = (pending: number, upstream: UpstreamStatus): AccountStatus => ({
    outbox: {
      pending,
      lastId: 40,
      classes: [
        {
          name: "telemetry",
          messages: pending - 1,
          bytes: 2048,
          onFull: "drop_oldest",
          maxBytes: 1024 ** 3,
          maxMessages: null,
          maxAgeMs: 7 * DAY_MS,
          oldestAt: pending > 1 ? T0 - 184_000 : null,
          oldestAgeMs: pending > 1 ? 184_000 : null,
        },
        {
          name: "events",
          messages: 1,
          bytes: 100,
          onFull: "reject",
          maxBytes: null,
          maxMessages: 500,
          maxAgeMs: null,
          oldestAt: T0 - 5_000,
          oldestAgeMs: 5_000,
        },
      ],
    },
    upstream,
    mqtt: { connections: 2 },
    nats: { connections: 1 },
  });
  const up: UpstreamStatus = {
    state: "forwarding",
    server: "nats://hub:4222",
    stream: "EDGE",
    lastError: undefined,
    servers: ["nats://hub:4222"],
    connects: 2,
    since: T0 - 65_000,
  };
  const device = { profile: "env-sensor", commandsQueued: 0, silentAfterMs: null };
  const status: StatusView = {
    time: T0,
    disk: {
      state: "ok",
      reserveBytes: 16 * 1024 ** 2,
      resumeAtFreeBytes: 20 * 1024 ** 2,
      freeBytes: 3 * 1024 ** 3,
    },
    state: "running",
    gateway: "gw1",
    accounts: { $G: account(3, up) },
    mqtt: { connections: 2 },
    nats: { connections: 1 },
    serial: [
      {
        ...device,
        device: "env-1",
        path: "/dev/ttyUSB0",
        state: "open",
        since: 0,
        frames: 12,
        badFrames: 3,
        lastFrameAt: T0 - 2_000,
      },
      {
        ...device,
        device: "env-2",
        path: "/dev/ttyUSB1",
        state: "waiting",
        reason: "ENOENT",
        frames: 0,
        badFrames: 0,
        lastFrameAt: null,
      },
    ],
  };

  it("prints the verdict, uplink, backlog per class, clients and devices, a fact a line", () => {
    expect(formatSummary("http://127.0.0.1:8222", status, { ready: true })).toBe(
      [
        "leafgate gw1 at http://127.0.0.1:8222: READY",
        "state:    running",
        "uplink: forwarding (nats://hub:4222, stream EDGE), up since 2026-12-08T03:58:55.000Z (1 min 5 s), 2 connects",
        "backlog: 3 messages, 2.1 KiB",
        "  telemetry  2 messages, 2.0 KiB, oldest 3 min 4 s (max 1.0 GiB, 7 d, drop_oldest)",
        "  events     1 message, 100 B, oldest 5 s (max 500 messages, reject)",
        "disk:     ok, 3.0 GiB free (reserve 16.0 MiB)",
        "clients:  MQTT 2, NATS 1",
        "serial:   env-1 /dev/ttyUSB0 open since 1970-01-01T00:00:00.000Z, 12 frames, 3 bad, last frame 2026-12-08T03:59:58.000Z (2 s ago)",
        "serial:   env-2 /dev/ttyUSB1 waiting: ENOENT, 0 frames, 0 bad, no frame yet",
        "drops:    none",
        "",
      ].join("\n"),
    );
  });

  it("lists the reasons under NOT READY and names each account when there are several", () => {
    const down: UpstreamStatus = {
      state: "connecting",
      server: undefined,
      stream: undefined,
      lastError: "timeout",
      servers: ["nats://hub:4222", "tls://***@hub2:4443"],
      connects: 0,
      since: T0 - 3 * 3600_000 - 120_000,
    };
    const full = {
      state: "full",
      reserveBytes: 16 * 1024 ** 2,
      resumeAtFreeBytes: 20 * 1024 ** 2,
      freeBytes: 1024,
    } as const;
    const text = formatSummary(
      "http://pi:8222",
      {
        ...status,
        accounts: { $G: account(1, down), acme: account(2, up) },
        serial: [],
        disk: full,
      },
      { ready: false, reasons: ["hub unreachable (last server nats://hub:4222): timeout"] },
      [
        { what: "buffer_dropped", labels: 'class="telemetry",reason="oldest"', count: 12 },
        { what: "upstream_dropped_too_large", labels: "", count: 1 },
      ],
    );
    expect(text.split("\n")).toEqual([
      "leafgate gw1 at http://pi:8222: NOT READY",
      "  - hub unreachable (last server nats://hub:4222): timeout",
      "state:    running",
      "uplink [$G (global)]: connecting (never connected; servers nats://hub:4222, tls://***@hub2:4443), down since 2026-12-08T00:58:00.000Z (3 h 2 min), 0 connects",
      "  last error: timeout",
      "backlog [$G (global)]: 1 message, 2.1 KiB",
      "  telemetry  0 messages, 2.0 KiB (max 1.0 GiB, 7 d, drop_oldest)",
      "  events     1 message, 100 B, oldest 5 s (max 500 messages, reject)",
      "clients [$G (global)]: MQTT 2, NATS 1",
      "uplink [acme]: forwarding (nats://hub:4222, stream EDGE), up since 2026-12-08T03:58:55.000Z (1 min 5 s), 2 connects",
      "backlog [acme]: 2 messages, 2.1 KiB",
      "  telemetry  1 message, 2.0 KiB, oldest 3 min 4 s (max 1.0 GiB, 7 d, drop_oldest)",
      "  events     1 message, 100 B, oldest 5 s (max 500 messages, reject)",
      "clients [acme]: MQTT 2, NATS 1",
      "disk:     FULL: the buffer is held at its size until 20.0 MiB are free, 1.0 KiB free",
      "clients:  MQTT 2, NATS 1",
      "serial:   no devices configured",
      'drops:    buffer_dropped {class="telemetry",reason="oldest"}: 12',
      "drops:    upstream_dropped_too_large: 1",
      "",
    ]);
  });

  it("shows what an earlier gateway's /status has, without the fleet fields", () => {
    const older: StatusView = {
      state: "running",
      gateway: "gw0",
      accounts: {
        $G: {
          upstream: {
            state: "connecting",
            server: undefined,
            stream: undefined,
            lastError: "timeout",
          },
          outbox: {
            pending: 2,
            classes: [{ name: "default", messages: 2, bytes: 64, onFull: "drop_oldest" }],
          },
          mqtt: { connections: 0 },
          nats: { connections: 0 },
        },
      },
      mqtt: { connections: 0 },
      nats: { connections: 0 },
      serial: [
        {
          device: "env-1",
          path: "/dev/ttyUSB0",
          profile: "env-sensor",
          commandsQueued: 0,
          frames: 5,
          state: "open",
          since: 0,
        },
      ],
    };
    expect(formatSummary("http://old:8222", older, { ready: true }).split("\n")).toEqual([
      "leafgate gw0 at http://old:8222: READY",
      "state:    running",
      "uplink: connecting (never connected)",
      "  last error: timeout",
      "backlog: 2 messages, 64 B",
      "  default  2 messages, 64 B",
      "clients:  MQTT 0, NATS 0",
      "serial:   env-1 /dev/ttyUSB0 open since 1970-01-01T00:00:00.000Z, 5 frames",
      "drops:    none",
      "",
    ]);
  });

  it("takes the drop counters above zero from /metrics, in the order exposed", () => {
    const metrics = [
      "# HELP leafgate_buffer_dropped_total Messages that left the buffer",
      "# TYPE leafgate_buffer_dropped_total counter",
      'leafgate_buffer_dropped_total{class="telemetry",reason="oldest"} 12',
      'leafgate_buffer_dropped_total{class="events",reason="oldest"} 0',
      'leafgate_mqtt_messages_dropped_total{reason="no_subscribers"} 3',
      "leafgate_upstream_dropped_too_large_total 1",
      "leafgate_upstream_forwarded_total 99",
      'leafgate_serial_dropped_total{device="env-1"} 2',
      "",
    ].join("\n");
    expect(dropsOf(metrics)).toEqual([
      { what: "buffer_dropped", labels: 'class="telemetry",reason="oldest"', count: 12 },
      { what: "mqtt_messages_dropped", labels: 'reason="no_subscribers"', count: 3 },
      { what: "upstream_dropped_too_large", labels: "", count: 1 },
      { what: "serial_dropped", labels: 'device="env-1"', count: 2 },
    ]);
    expect(dropsOf("leafgate_upstream_forwarded_total 5\n")).toEqual([]);
  });

  it("formats sizes in binary units", () => {
    expect(
      [0, 1023, 1024, 1536, 5 * 1024 ** 2, 3 * 1024 ** 4, 2048 * 1024 ** 4].map(formatBytes),
    ).toEqual(["0 B", "1023 B", "1.0 KiB", "1.5 KiB", "5.0 MiB", "3.0 TiB", "2048.0 TiB"]);
  });

  it("finds the endpoint of a config on this machine", () => {
    expect(urlOf({ host: "127.0.0.1", port: 8222 })).toBe("http://127.0.0.1:8222");
    expect(urlOf({ host: "0.0.0.0", port: 9000 })).toBe("http://127.0.0.1:9000");
    expect(urlOf({ host: "::", port: 9000 })).toBe("http://[::1]:9000");
    expect(urlOf({ host: "pi.local", port: 80 })).toBe("http://pi.local:80");
  });
});
