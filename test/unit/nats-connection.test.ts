// One NATS client connection (src/nats/connection.ts) on a fake transport over a real Bus:
// bytes in, exact frames out; time moved by a ManualClock.
import { describe, expect, it } from "vitest";
import {
  type AuthResult,
  Bus,
  compilePermissions,
  type Envelope,
  ManualClock,
  Replies,
  type Transport,
} from "../../src/core/index.js";
import {
  type ConnectOptions,
  DEFAULT_NATS_CONNECTION_OPTIONS,
  type NatsAuth,
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

describe("NATS connection: login and permissions", () => {
  /** An auth whose answer the test gives, as scrypt would later. */
  function pendingAuth() {
    let answer: ((r: AuthResult) => void) | undefined;
    const seen: ConnectOptions[] = [];
    const auth: NatsAuth = {
      required: true,
      check: (client) => {
        seen.push(client);
        return new Promise<AuthResult>((resolve) => {
          answer = resolve;
        });
      },
    };
    return { auth, seen, answer: (r: AuthResult) => answer!(r) };
  }
  const onlySensors = compilePermissions(
    {
      publish: { allow: ["sensors.>"], deny: [] },
      subscribe: { allow: ["cmd.>"], deny: ["cmd.secret"] },
    },
    "meter",
    "",
  );

  it("holds the ops that follow CONNECT while the password is checked, then runs them in order", () => {
    const { auth, seen, answer } = pendingAuth();
    const bus = new Bus();
    const got: string[] = [];
    bus.subscribe("sensors.>", { deliver: (m) => void got.push(m.subject) });
    const { t, c } = open(bus, { auth });
    expect(JSON.parse(t.take().slice(5, -2)).auth_required).toBe(true);
    send(
      c,
      'CONNECT {"user":"meter","pass":"pw","verbose":true,"name":"m1"}\r\nPUB sensors.a 1\r\nx\r\nPING\r\n',
    );
    expect(seen).toEqual([expect.objectContaining({ user: "meter", pass: "pw", name: "m1" })]);
    expect(c.state.phase).toBe("authenticating");
    expect(got).toEqual([]);
    expect(t.take()).toBe("");
    answer({ ok: true, user: "meter", permissions: onlySensors, account: "$G" });
    return Promise.resolve().then(() => {
      expect(c.state.phase).toBe("open");
      expect(got).toEqual(["sensors.a"]);
      expect(t.take()).toBe("+OK\r\n+OK\r\nPONG\r\n");
    });
  });

  it("refuses bad credentials with nats-server's words and closes; counted", async () => {
    const { auth, answer } = pendingAuth();
    const failures: string[] = [];
    const { t, c } = open(new Bus(), { auth, onAuthFailure: (r) => failures.push(r) });
    t.take();
    send(c, 'CONNECT {"user":"meter","pass":"wrong"}\r\nPUB sensors.a 1\r\nx\r\n');
    answer({
      ok: false,
      returnCode: 4,
      reason: "bad user name or password",
      refusal: "bad-credentials",
    });
    await Promise.resolve();
    expect(t.take()).toBe("-ERR 'Authorization Violation'\r\n");
    expect(t.ended).toBe(true);
    expect(c.state.phase).toBe("closed");
    expect(failures).toEqual(["bad-credentials"]);
  });

  it("cuts a client that floods ops while its login is checked", () => {
    const { auth } = pendingAuth();
    const { t, c } = open(new Bus(), { auth });
    t.take();
    send(c, `CONNECT {"user":"u","pass":"p"}\r\n${"PING\r\n".repeat(5_000)}`);
    expect(c.state.phase).toBe("closed");
    expect(t.take()).toBe("-ERR 'Authorization Violation'\r\n");
  });

  it("refuses a PUB or SUB its permissions deny, keeps the connection, and withholds denied deliveries", () => {
    const bus = new Bus();
    const denied: string[] = [];
    const auth: NatsAuth = {
      required: false,
      check: () => ({ ok: true, user: "meter", permissions: onlySensors, account: "$G" }),
    };
    const { t, c } = open(bus, { auth, onPermissionDenied: (k) => denied.push(k) });
    t.take();
    send(
      c,
      "CONNECT {}\r\nPUB other.x 1\r\nx\r\nSUB sensors.> 1\r\nSUB cmd.> q 2\r\nSUB cmd.> 3\r\n",
    );
    expect(t.take()).toBe(
      "-ERR 'Permissions Violation for Publish to \"other.x\"'\r\n" +
        "-ERR 'Permissions Violation for Subscription to \"sensors.>\"'\r\n",
    );
    expect(denied).toEqual(["publish", "subscribe"]);
    expect(c.state.phase).toBe("open");
    // Subscribed to cmd.> twice (one queue); cmd.secret is never delivered under it.
    for (const subject of ["cmd.a", "cmd.secret", "cmd.b"]) {
      void bus.publish({
        subject,
        payload: Buffer.from("v"),
        receivedAtMs: 0,
        origin: "mqtt",
        qos: 0,
      });
    }
    expect(t.take()).toBe(
      // Plain subscriptions first, then a member of each queue group (the bus's order).
      "MSG cmd.a 3 1\r\nv\r\nMSG cmd.a 2 1\r\nv\r\nMSG cmd.b 3 1\r\nv\r\nMSG cmd.b 2 1\r\nv\r\n",
    );
  });

  it("words a denied queue subscription as nats-server does", () => {
    const auth: NatsAuth = {
      required: false,
      check: () => ({ ok: true, user: "meter", permissions: onlySensors, account: "$G" }),
    };
    const { t, c } = open(new Bus(), { auth });
    t.take();
    send(c, "CONNECT {}\r\nSUB jobs.x workers 1\r\n");
    expect(t.take()).toBe(
      '-ERR \'Permissions Violation for Subscription to "jobs.x" using queue "workers"\'\r\n',
    );
  });

  it("shows an MQTT 5 request's routed reply subject, minted once for several subscribers", () => {
    const bus = new Bus();
    const clock = new ManualClock();
    const replies = new Replies({ bus, maxRoutes: 10, ttlMs: 1_000, clock });
    const a = open(bus, { replies });
    const b = open(bus, { replies }, 2);
    for (const x of [a, b]) {
      x.t.take();
      send(x.c, "CONNECT {}\r\nSUB svc.echo 1\r\n");
    }
    const answers: Envelope[] = [];
    bus.subscribe("replies.c1", { deliver: (m) => void answers.push(m) });
    void bus.publish({
      subject: "svc.echo",
      payload: Buffer.from("hi"),
      receivedAtMs: 0,
      origin: "mqtt",
      qos: 0,
      properties: { responseTopic: "replies/c1", correlationData: Buffer.from("k") },
    });
    const frameA = a.t.take();
    const frameB = b.t.take();
    const reply = /^MSG svc\.echo 1 (\S+) 2\r\nhi\r\n$/.exec(frameA)?.[1];
    expect(reply).toMatch(new RegExp(`^${replies.prefix.replace(".", "\\.")}\\.\\w+$`));
    expect(frameB).toBe(`MSG svc.echo 1 ${reply} 2\r\nhi\r\n`);
    send(a.c, `PUB ${reply} 3\r\nyes\r\n`);
    expect(
      answers.map((m) => [
        m.subject,
        Buffer.from(m.payload).toString(),
        Buffer.from(m.properties!.correlationData!).toString(),
      ]),
    ).toEqual([["replies.c1", "yes", "k"]]);
    // One answer per route: a second is not routed.
    send(b.c, `PUB ${reply} 2\r\nno\r\n`);
    expect(answers).toHaveLength(1);
  });
});
