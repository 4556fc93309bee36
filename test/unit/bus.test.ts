import { describe, expect, it } from "vitest";
import { Bus, type BusSubscriber, type Envelope } from "../../src/core/index.js";

function message(subject: string): Envelope {
  return { subject, payload: Buffer.from(subject), receivedAtMs: 0, origin: "mqtt", qos: 1 };
}

function recorder(into: string[], name: string): BusSubscriber {
  return {
    deliver: (m) => {
      into.push(`${name}:${m.subject}`);
      return undefined;
    },
  };
}

describe("Bus", () => {
  it("delivers once per subscriber however many of its patterns match", async () => {
    const got: string[] = [];
    const bus = new Bus();
    const a = recorder(got, "a");
    bus.subscribe("s.>", a);
    bus.subscribe("s.*", a);
    bus.subscribe("s.x", recorder(got, "b"));
    await bus.publish(message("s.x"));
    await bus.publish(message("t.x"));
    expect(got).toEqual(["a:s.x", "b:s.x"]);
  });

  it("gives each queue group's message to one member, in turn", async () => {
    const got: string[] = [];
    const bus = new Bus();
    bus.subscribe("jobs.*", recorder(got, "w1"), "workers");
    bus.subscribe("jobs.*", recorder(got, "w2"), "workers");
    bus.subscribe("jobs.*", recorder(got, "audit"));
    for (const n of [1, 2, 3, 4]) await bus.publish(message(`jobs.${n}`));
    expect(got.filter((g) => g.startsWith("audit"))).toHaveLength(4);
    const workers = got.filter((g) => g.startsWith("w"));
    expect(workers).toHaveLength(4);
    expect(workers.filter((g) => g.startsWith("w1"))).toHaveLength(2);
  });

  it("lets each queue group take turns on its own, whatever else is published", async () => {
    const got: string[] = [];
    const bus = new Bus();
    for (const name of ["a1", "a2"]) bus.subscribe("t.>", recorder(got, name), "ga");
    for (const name of ["b1", "b2"]) bus.subscribe("t.>", recorder(got, name), "gb");
    for (const name of ["c1", "c2"]) bus.subscribe("other", recorder(got, name), "gc");
    for (const n of [1, 2, 3, 4]) {
      await bus.publish(message(`t.${n}`));
      await bus.publish(message("other"));
    }
    const of = (prefix: string) =>
      got.filter((g) => g.startsWith(prefix)).map((g) => g.slice(0, 2));
    expect(of("a")).toEqual(["a1", "a2", "a1", "a2"]);
    expect(of("b")).toEqual(["b1", "b2", "b1", "b2"]);
    expect(of("c")).toEqual(["c1", "c2", "c1", "c2"]);
  });

  it("resolves only when every durable subscriber has committed, and rejects if one fails", async () => {
    const bus = new Bus();
    let commitA!: () => void;
    let failB!: (e: Error) => void;
    bus.subscribe(">", { deliver: () => new Promise<void>((r) => (commitA = r)) });
    bus.subscribe("s.*", { deliver: () => new Promise<void>((_, j) => (failB = j)) });
    let settled: string | undefined;
    bus.publish(message("s.1")).then(
      () => (settled = "resolved"),
      (e: Error) => (settled = `rejected: ${e.message}`),
    );
    commitA();
    await Promise.resolve();
    expect(settled).toBeUndefined();
    failB(new Error("disk full"));
    await new Promise((r) => setImmediate(r));
    expect(settled).toBe("rejected: disk full");
  });

  it("keeps delivering to others when one subscriber throws, and reports it", async () => {
    const got: string[] = [];
    const errors: [string, string][] = [];
    const bus = new Bus({
      onDeliveryError: (err, subject) => errors.push([(err as Error).message, subject]),
    });
    bus.subscribe(">", {
      deliver: () => {
        throw new Error("broken subscriber");
      },
    });
    bus.subscribe(">", recorder(got, "ok"));
    await expect(bus.publish(message("a.b"))).resolves.toBeUndefined();
    expect(got).toEqual(["ok:a.b"]);
    expect(errors).toEqual([["broken subscriber", "a.b"]]);
  });

  it("stops delivering after unsubscribe (twice is harmless)", async () => {
    const got: string[] = [];
    const bus = new Bus();
    const sub = bus.subscribe("a", recorder(got, "x"));
    await bus.publish(message("a"));
    sub.unsubscribe();
    sub.unsubscribe();
    await bus.publish(message("a"));
    expect(got).toEqual(["x:a"]);
    expect(bus.subscriptionCount).toBe(0);
  });
});
