// Replies (src/core/replies.ts): routes for answers, bounded in number and time, on a real
// Bus; time moved by a ManualClock.
import { describe, expect, it } from "vitest";
import { Bus, type Envelope, ManualClock, Replies } from "../../src/core/index.js";

const message = (subject: string, extra: Partial<Envelope> = {}): Envelope => ({
  subject,
  payload: Buffer.from("p"),
  receivedAtMs: 0,
  origin: "nats",
  qos: 0,
  ...extra,
});

function setup(maxRoutes = 3, ttlMs = 1_000) {
  const bus = new Bus();
  const clock = new ManualClock(1_000_000);
  let full = 0;
  const replies = new Replies({ bus, maxRoutes, ttlMs, clock, onFull: () => full++ });
  return { bus, clock, replies, full: () => full };
}

describe("Replies", () => {
  it("routes the first message on a minted subject to its callback, once", async () => {
    const { bus, replies } = setup();
    const got: string[] = [];
    const subject = replies.mint((m) => got.push(Buffer.from(m.payload).toString()))!;
    expect(subject.startsWith(`${replies.prefix}.`)).toBe(true);
    expect(replies.prefix).toMatch(/^_INBOX\.[A-Za-z0-9]+$/);
    await bus.publish(message(subject, { payload: Buffer.from("one") }));
    await bus.publish(message(subject, { payload: Buffer.from("two") }));
    expect(got).toEqual(["one"]);
    expect(replies.stats).toEqual({ routes: 0, minted: 1, answered: 1, expired: 0, refused: 0 });
  });

  it("holds at most maxRoutes; expired ones make room, without timers", async () => {
    const { bus, clock, replies, full } = setup(2, 1_000);
    const got: string[] = [];
    const a = replies.mint(() => got.push("a"))!;
    replies.mint(() => got.push("b"));
    expect(replies.mint(() => got.push("c"))).toBeUndefined();
    expect(full()).toBe(1);
    clock.advance(1_000);
    // Both expired: swept when the next is minted.
    const d = replies.mint(() => got.push("d"))!;
    expect(replies.stats).toMatchObject({ routes: 1, expired: 2, refused: 1 });
    await bus.publish(message(a));
    await bus.publish(message(d));
    expect(got).toEqual(["d"]);
  });

  it("drops an answer that comes after the timeout", async () => {
    const { bus, clock, replies } = setup();
    const got: string[] = [];
    const subject = replies.mint(() => got.push("late"))!;
    clock.advance(1_001);
    await bus.publish(message(subject));
    expect(got).toEqual([]);
    expect(replies.stats).toMatchObject({ expired: 1, answered: 0 });
  });

  it("replyTo: a NATS reply subject as is; an MQTT 5 response topic as a subject, or routed with its correlation data", async () => {
    const { bus, replies } = setup();
    expect(replies.replyTo(message("a", { reply: "_INBOX.x.y" }))).toBe("_INBOX.x.y");
    expect(replies.replyTo(message("a"))).toBeUndefined();
    expect(
      replies.replyTo(message("a", { origin: "mqtt", properties: { responseTopic: "r/a/b" } })),
    ).toBe("r.a.b");
    // A response topic no subject can name: no reply.
    expect(
      replies.replyTo(message("a", { origin: "mqtt", properties: { responseTopic: "r/a b" } })),
    ).toBeUndefined();

    const request = message("svc", {
      origin: "mqtt",
      properties: { responseTopic: "r/1", correlationData: Buffer.from("c-1") },
    });
    const routed = replies.replyTo(request)!;
    expect(routed.startsWith(replies.prefix)).toBe(true);
    // The same request asked again (another subscriber): the same route.
    expect(replies.replyTo(request)).toBe(routed);
    const answers: Envelope[] = [];
    bus.subscribe("r.1", { deliver: (m) => void answers.push(m) });
    const h = new Map([["k", ["v"]]]);
    await bus.publish(message(routed, { payload: Buffer.from("ok"), headers: h }));
    expect(answers).toHaveLength(1);
    expect(answers[0]).toMatchObject({ subject: "r.1", origin: "nats", headers: h });
    expect(Buffer.from(answers[0]!.payload).toString()).toBe("ok");
    expect(Buffer.from(answers[0]!.properties!.correlationData!).toString()).toBe("c-1");
  });

  it("close leaves the bus and forgets every route", async () => {
    const { bus, replies } = setup();
    const got: string[] = [];
    const s = replies.mint(() => got.push("x"))!;
    replies.close();
    expect(bus.hasInterest(s)).toBe(false);
    await bus.publish(message(s));
    expect(got).toEqual([]);
  });
});
