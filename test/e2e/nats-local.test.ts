// The local NATS endpoint (src/nats/) driven by the official nats.js client, unmodified:
// a NatsListener on 127.0.0.1 port 0 over an in-process Bus. Synchronisation is by the
// protocol (flush = a PING/PONG round trip, processed in order), never by sleeping.
import { connect, headers, type NatsConnection, RequestError } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Bus, Guard, type Metrics, silentLogger } from "../../src/core/index.js";
import { DEFAULT_NATS_CONNECTION_OPTIONS, NatsListener } from "../../src/nats/index.js";

const MAX_PAYLOAD_BYTES = 4096;
const metrics: Metrics = {
  counter: () => ({ inc: () => {} }),
  gauge: () => ({ set: () => {} }),
};

let listener: NatsListener;
let servers: string;
const open: NatsConnection[] = [];

async function client(options: { noEcho?: boolean } = {}): Promise<NatsConnection> {
  const nc = await connect({ servers, reconnect: false, ...options });
  open.push(nc);
  return nc;
}

beforeAll(async () => {
  const bus = new Bus();
  listener = new NatsListener(bus, new Guard(silentLogger, metrics), silentLogger, {
    connection: {
      ...DEFAULT_NATS_CONNECTION_OPTIONS,
      serverId: "LEAFGATE-TEST",
      serverName: "leafgate-test",
      version: "2.10.0",
      maxPayloadBytes: MAX_PAYLOAD_BYTES,
    },
  });
  const address = await listener.listen("127.0.0.1", 0);
  servers = `127.0.0.1:${address.port}`;
});

afterAll(async () => {
  await Promise.all(open.map((nc) => (nc.isClosed() ? undefined : nc.close())));
  const stopping = listener.stopAccepting();
  listener.destroyAll();
  await stopping;
  await listener.closed();
});

const text = (data: Uint8Array): string => Buffer.from(data).toString();

/** Collects `n` messages from a subscription, in order. */
async function collect(sub: AsyncIterable<{ subject: string; data: Uint8Array }>, n: number) {
  const got: string[] = [];
  if (n === 0) return got;
  for await (const m of sub) {
    got.push(`${m.subject}:${text(m.data)}`);
    if (got.length === n) break;
  }
  return got;
}

describe("local NATS endpoint with nats.js", () => {
  it("pub/sub in order, with * and > wildcards", async () => {
    const sub = await client();
    const pub = await client();
    const exact = sub.subscribe("sensors.a.temp");
    const star = sub.subscribe("sensors.*.temp");
    const tail = sub.subscribe("sensors.>");
    await sub.flush();
    pub.publish("sensors.a.temp", "1");
    pub.publish("sensors.b.temp", "2");
    pub.publish("sensors.b.hum.x", "3");
    pub.publish("other", "4");
    await pub.flush();
    expect(await collect(exact, 1)).toEqual(["sensors.a.temp:1"]);
    expect(await collect(star, 2)).toEqual(["sensors.a.temp:1", "sensors.b.temp:2"]);
    expect(await collect(tail, 3)).toEqual([
      "sensors.a.temp:1",
      "sensors.b.temp:2",
      "sensors.b.hum.x:3",
    ]);
    await sub.flush();
    expect(exact.getReceived()).toBe(1);
    expect(star.getReceived()).toBe(2);
    expect(tail.getReceived()).toBe(3);
  });

  it("a queue group of three spreads 300 messages evenly: 100 each, taking turns", async () => {
    const members = await Promise.all([client(), client(), client()]);
    const subs = members.map((nc) => nc.subscribe("work.q", { queue: "workers" }));
    await Promise.all(members.map((nc) => nc.flush()));
    const pub = await client();
    for (let i = 0; i < 300; i++) pub.publish("work.q", String(i));
    await pub.flush();
    // After the publisher's round trip every MSG was written; each member's own round
    // trip then proves it has read all of its share.
    await Promise.all(members.map((nc) => nc.flush()));
    // The bus takes turns within a group, so the spread is exact.
    expect(subs.map((s) => s.getReceived())).toEqual([100, 100, 100]);
  });

  it("request-reply answered by a subscriber", async () => {
    const service = await client();
    const sub = service.subscribe("svc.echo", {
      callback: (_err, msg) => {
        msg.respond(`re:${text(msg.data)}`);
      },
    });
    await service.flush();
    const requester = await client();
    const reply = await requester.request("svc.echo", "ping", { timeout: 10_000 });
    expect(reply.string()).toBe("re:ping");
    sub.unsubscribe();
  });

  it("a request nobody serves rejects with no responders", async () => {
    const requester = await client();
    const err = await requester.request("svc.nobody", "x", { timeout: 10_000 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RequestError);
    expect((err as RequestError).isNoResponders()).toBe(true);
  });

  it("headers round trip", async () => {
    const sub = await client();
    const s = sub.subscribe("h.x");
    await sub.flush();
    const pub = await client();
    const h = headers();
    h.set("Trace-Id", "abc");
    h.set("Site", "north");
    pub.publish("h.x", "body", { headers: h });
    for await (const m of s) {
      expect(m.string()).toBe("body");
      expect(m.headers?.get("Trace-Id")).toBe("abc");
      expect(m.headers?.get("Site")).toBe("north");
      break;
    }
  });

  it("auto-unsubscribe after 5: exactly 5", async () => {
    const sub = await client();
    const s = sub.subscribe("auto.x");
    s.unsubscribe(5);
    await sub.flush();
    const pub = await client();
    for (let i = 0; i < 10; i++) pub.publish("auto.x", String(i));
    await pub.flush();
    const got: string[] = [];
    for await (const m of s) got.push(text(m.data));
    expect(got).toEqual(["0", "1", "2", "3", "4"]);
  });

  it("noEcho: a connection does not get its own publishes, another does", async () => {
    const self = await client({ noEcho: true });
    const other = await client();
    const mine = self.subscribe("echo.x");
    const theirs = other.subscribe("echo.x");
    await Promise.all([self.flush(), other.flush()]);
    self.publish("echo.x", "1");
    await self.flush();
    expect(await collect(theirs, 1)).toEqual(["echo.x:1"]);
    await self.flush();
    expect(mine.getReceived()).toBe(0);
  });

  it("a publish over max_payload is refused", async () => {
    const nc = await client();
    expect(nc.info?.max_payload).toBe(MAX_PAYLOAD_BYTES);
    expect(() => nc.publish("big", new Uint8Array(MAX_PAYLOAD_BYTES + 1))).toThrow();
    nc.publish("big", new Uint8Array(MAX_PAYLOAD_BYTES));
    await nc.flush();
    expect(nc.isClosed()).toBe(false);
  });

  it("drain delivers what was in flight, then closes", async () => {
    const sub = await client();
    const got: string[] = [];
    sub.subscribe("drain.x", {
      callback: (_e, m) => {
        got.push(text(m.data));
      },
    });
    await sub.flush();
    const pub = await client();
    for (let i = 0; i < 20; i++) pub.publish("drain.x", String(i));
    await pub.flush();
    await sub.drain();
    expect(sub.isClosed()).toBe(true);
    expect(got).toEqual(Array.from({ length: 20 }, (_, i) => String(i)));
  });
});

describe("local NATS endpoint restarted", () => {
  it("nats.js reconnects to a restarted listener and its subscriptions resume", async () => {
    const bus = new Bus();
    const make = (): NatsListener =>
      new NatsListener(bus, new Guard(silentLogger, metrics), silentLogger, {
        connection: {
          ...DEFAULT_NATS_CONNECTION_OPTIONS,
          serverId: "LEAFGATE-RESTART",
          serverName: "leafgate-restart",
          version: "2.10.0",
        },
      });
    const first = make();
    const { port } = await first.listen("127.0.0.1", 0);
    const nc = await connect({
      servers: `127.0.0.1:${port}`,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 20,
    });
    open.push(nc);
    const sub = nc.subscribe("restart.x");
    await nc.flush();
    const reconnected = (async () => {
      for await (const s of nc.status()) if (s.type === "reconnect") return;
    })();
    // The server closes once its last connection has: stop accepting, cut, then wait.
    const stopped = first.stopAccepting();
    first.destroyAll();
    await stopped;
    await first.closed();
    const second = make();
    await second.listen("127.0.0.1", port);
    try {
      await reconnected;
      // The resubscription went out before the reconnect was reported; a round trip
      // proves the server has it.
      await nc.flush();
      const pub = await connect({ servers: `127.0.0.1:${port}`, reconnect: false });
      open.push(pub);
      pub.publish("restart.x", "after");
      await pub.flush();
      expect(await collect(sub, 1)).toEqual(["restart.x:after"]);
    } finally {
      await Promise.all(open.map((c) => (c.isClosed() ? undefined : c.close())));
      const stopping = second.stopAccepting();
      second.destroyAll();
      await stopping;
    }
  });
});
