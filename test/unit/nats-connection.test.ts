// One NATS client connection (src/nats/connection.ts) on a fake transport over a real Bus:
// bytes in, exact frames out; time moved by a ManualClock.
import { describe, expect, it } from "vitest";
import { Bus, ManualClock, type Transport } from "../../src/core/index.js";
import {
  DEFAULT_NATS_CONNECTION_OPTIONS,
  NatsConnection,
  type NatsConnectionOptions,
} from "../../src/nats/index.js";

class FakeTransport implements Transport {
  readonly out: Buffer[] = [];
  ended = false;
  destroyed = false;
  writableLength = 0;
  /** When set, written bytes stay queued (a peer that does not read). */
  stalled = false;
  readonly remote = "127.0.0.1:1";
  write(bytes: Uint8Array): boolean {
    this.out.push(Buffer.from(bytes));
    if (this.stalled) this.writableLength += bytes.length;
    return true;
  }
  end(): void {
    this.ended = true;
  }
  destroy(): void {
    this.destroyed = true;
  }
  pause(): void {}
  resume(): void {}
  /** Everything written since the last call, as text. */
  take(): string {
    const text = Buffer.concat(this.out).toString("latin1");
    this.out.length = 0;
    return text;
  }
}

const OPTIONS: NatsConnectionOptions = {
  ...DEFAULT_NATS_CONNECTION_OPTIONS,
  serverId: "SRV",
  serverName: "leafgate-test",
  version: "2.10.0",
  maxPayloadBytes: 64,
  pingIntervalMs: 1_000,
  maxPingsOut: 2,
  connectTimeoutMs: 500,
};

function open(
  bus = new Bus(),
  options: Partial<NatsConnectionOptions> = {},
  id = 1,
): { t: FakeTransport; c: NatsConnection; clock: ManualClock; bus: Bus } {
  const clock = new ManualClock();
  const t = new FakeTransport();
  const c = new NatsConnection(t, bus, id, { ...OPTIONS, clock, ...options });
  return { t, c, clock, bus };
}

const send = (c: NatsConnection, s: string): void => c.onData(Buffer.from(s, "latin1"));

describe("NATS connection", () => {
  it("sends INFO first, with what nats.js reads", () => {
    const { t } = open();
    const text = t.take();
    expect(text.endsWith("\r\n")).toBe(true);
    expect(text.startsWith("INFO ")).toBe(true);
    expect(JSON.parse(text.slice(5, -2))).toEqual({
      server_id: "SRV",
      server_name: "leafgate-test",
      version: "2.10.0",
      proto: 1,
      headers: true,
      max_payload: 64,
      client_id: 1,
      auth_required: false,
    });
  });

  it("verbose: +OK after CONNECT, SUB, PUB, UNSUB; PING → PONG", () => {
    const { t, c } = open();
    t.take();
    send(c, 'CONNECT {"verbose":true}\r\nSUB a.* 1\r\nPUB a.b 2\r\nhi\r\nPING\r\nUNSUB 1\r\n');
    expect(t.take()).toBe("+OK\r\n+OK\r\n+OK\r\nMSG a.b 1 2\r\nhi\r\nPONG\r\n+OK\r\n");
  });

  it("delivers byte by byte the same frames", () => {
    const { t, c } = open();
    t.take();
    const input = "CONNECT {}\r\nSUB > q1 9\r\nPUB x.y r.1 3\r\nabc\r\n";
    for (const ch of input) send(c, ch);
    expect(t.take()).toBe("MSG x.y 9 r.1 3\r\nabc\r\n");
  });

  it("refuses anything but CONNECT first with Authorization Violation and closes", () => {
    const { t, c } = open();
    t.take();
    send(c, "PUB a 1\r\nx\r\n");
    expect(t.take()).toBe("-ERR 'Authorization Violation'\r\n");
    expect(t.ended).toBe(true);
    expect(c.state.phase).toBe("closed");
  });

  it("closes a connection that sends no CONNECT in time with Authentication Timeout", () => {
    const { t, c, clock } = open();
    t.take();
    clock.advance(499);
    expect(t.ended).toBe(false);
    clock.advance(1);
    expect(t.take()).toBe("-ERR 'Authentication Timeout'\r\n");
    expect(c.state.phase).toBe("closed");
  });

  it("refuses a wildcard publish subject without closing", () => {
    const { t, c } = open();
    send(c, "CONNECT {}\r\n");
    t.take();
    send(c, "PUB a.* 1\r\nx\r\nPUB a.> 1\r\nx\r\nPING\r\n");
    expect(t.take()).toBe(
      "-ERR 'Invalid Publish Subject'\r\n-ERR 'Invalid Publish Subject'\r\nPONG\r\n",
    );
    expect(c.state.phase).toBe("open");
  });

  it("closes with Maximum Payload Violation over max_payload; bad arguments close without -ERR", () => {
    const a = open();
    send(a.c, "CONNECT {}\r\n");
    a.t.take();
    send(a.c, "PUB a 65\r\n");
    expect(a.t.take()).toBe("-ERR 'Maximum Payload Violation'\r\n");
    expect(a.t.ended).toBe(true);
    const b = open();
    send(b.c, "CONNECT {}\r\n");
    b.t.take();
    send(b.c, "PUB a b c d\r\n");
    expect(b.t.take()).toBe("");
    expect(b.t.destroyed).toBe(true);
  });

  it("UNSUB with max: exactly max messages, then gone from the bus", () => {
    const { t, c, bus } = open();
    send(c, "CONNECT {}\r\nSUB s 7\r\nUNSUB 7 2\r\n");
    t.take();
    send(c, "PUB s 1\r\na\r\nPUB s 1\r\nb\r\nPUB s 1\r\nc\r\n");
    expect(t.take()).toBe("MSG s 7 1\r\na\r\nMSG s 7 1\r\nb\r\n");
    expect(bus.subscriptionCount).toBe(0);
  });

  it("echo false: a connection does not receive its own publishes, others do", () => {
    const bus = new Bus();
    const a = open(bus, {}, 1);
    const b = open(bus, {}, 2);
    send(a.c, 'CONNECT {"echo":false}\r\nSUB e 1\r\n');
    send(b.c, "CONNECT {}\r\nSUB e 1\r\n");
    a.t.take();
    b.t.take();
    send(a.c, "PUB e 1\r\nx\r\n");
    expect(a.t.take()).toBe("");
    expect(b.t.take()).toBe("MSG e 1 1\r\nx\r\n");
  });

  it("headers: HPUB reaches a header client as HMSG and a plain one as MSG", () => {
    const bus = new Bus();
    const a = open(bus, {}, 1);
    const b = open(bus, {}, 2);
    send(a.c, 'CONNECT {"headers":true}\r\nSUB h 1\r\n');
    send(b.c, "CONNECT {}\r\nSUB h 2\r\n");
    a.t.take();
    b.t.take();
    const header = "NATS/1.0\r\nK: v\r\n\r\n";
    send(a.c, `HPUB h ${header.length} ${header.length + 2}\r\n${header}hi\r\n`);
    expect(a.t.take()).toBe(`HMSG h 1 ${header.length} ${header.length + 2}\r\n${header}hi\r\n`);
    expect(b.t.take()).toBe("MSG h 2 2\r\nhi\r\n");
  });

  it("no responders: a request nobody serves gets NATS/1.0 503 on the inbox subscription", () => {
    const { t, c } = open();
    send(c, 'CONNECT {"headers":true,"no_responders":true}\r\nSUB _INBOX.abc.* 1\r\n');
    t.take();
    send(c, "PUB svc _INBOX.abc.1 0\r\n\r\n");
    const header = "NATS/1.0 503\r\n\r\n";
    expect(t.take()).toBe(`HMSG _INBOX.abc.1 1 ${header.length} ${header.length}\r\n${header}\r\n`);
  });

  it("keepalive: PING each interval, a PONG resets, two missed PINGs close as stale", () => {
    const { t, c, clock } = open();
    send(c, "CONNECT {}\r\n");
    t.take();
    clock.advance(1_000);
    expect(t.take()).toBe("PING\r\n");
    send(c, "PONG\r\n");
    clock.advance(1_000);
    expect(t.take()).toBe("PING\r\n");
    clock.advance(1_000);
    expect(t.take()).toBe("PING\r\n");
    expect(c.state.phase).toBe("open");
    clock.advance(1_000);
    expect(t.take()).toBe("-ERR 'Stale Connection'\r\n");
    expect(c.state.phase).toBe("closed");
    expect(clock.pending).toBe(0);
  });

  it("slow consumer: cut when its queued bytes pass the cap, counted once, its subs gone", () => {
    let cuts = 0;
    const bus = new Bus();
    const { t, c } = open(bus, { maxOutboundBytes: 100, onSlowConsumer: () => cuts++ });
    send(c, "CONNECT {}\r\nSUB s 1\r\n");
    t.stalled = true;
    for (let i = 0; i < 20; i++) send(c, "PUB s 10\r\n0123456789\r\n");
    expect(t.destroyed).toBe(true);
    expect(cuts).toBe(1);
    expect(c.state.phase).toBe("closed");
    expect(bus.subscriptionCount).toBe(0);
  });

  it("queue group members take turns", () => {
    const bus = new Bus();
    const members = [1, 2, 3].map((id) => open(bus, {}, id));
    for (const m of members) send(m.c, "CONNECT {}\r\nSUB q workers 1\r\n");
    const pub = open(bus, {}, 9);
    send(pub.c, "CONNECT {}\r\n");
    for (let i = 0; i < 6; i++) send(pub.c, "PUB q 1\r\nx\r\n");
    for (const m of members) expect(m.t.take().split("MSG").length - 1).toBe(2);
  });
});
