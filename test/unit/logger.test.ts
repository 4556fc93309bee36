import { describe, expect, it } from "vitest";
import { createLogger } from "../../src/observe/index.js";

function capture(level: "debug" | "info" | "warn" | "error" = "debug") {
  const lines: string[] = [];
  const log = createLogger({ level, pretty: false, destination: { write: (l) => lines.push(l) } });
  return { log, lines, records: () => lines.map((l) => JSON.parse(l)) };
}

describe("the JSON logger", () => {
  it("writes one line per record: level, time, pid, bindings, fields, msg, in that order", () => {
    const { log, lines, records } = capture();
    const before = Date.now();
    log.child({ part: "mqtt" }).info({ port: 1883 }, "mqtt listening");
    expect(lines).toHaveLength(1);
    expect(lines[0]!.endsWith("}\n")).toBe(true);
    const [r] = records();
    expect(Object.keys(r)).toEqual(["level", "time", "pid", "part", "port", "msg"]);
    expect(r).toMatchObject({ level: 30, pid: process.pid, part: "mqtt", port: 1883 });
    expect(r.time).toBeGreaterThanOrEqual(before);
    expect(r.msg).toBe("mqtt listening");
  });

  it("drops records below its level and numbers the rest as pino does", () => {
    const { log, records } = capture("warn");
    log.debug({}, "d");
    log.info({}, "i");
    log.warn({}, "w");
    log.error({}, "e");
    expect(records().map((r) => [r.level, r.msg])).toEqual([
      [40, "w"],
      [50, "e"],
    ]);
  });

  it("nests children's bindings; a child's field overrides its parent's", () => {
    const { log, records } = capture();
    log.child({ part: "a", account: "$G" }).child({ part: "b" }).info({ n: 1 }, "x");
    expect(records()[0]).toMatchObject({ part: "b", account: "$G", n: 1 });
  });

  it("serializes errors (class, message, stack, own fields) wherever they sit at the top", () => {
    const { log, records } = capture();
    const err = Object.assign(new RangeError("too far"), { code: "E_FAR" });
    log.error({ err, cause: new Error("inner") }, "failed");
    const [r] = records();
    expect(r.err).toMatchObject({ type: "RangeError", message: "too far", code: "E_FAR" });
    expect(r.err.stack).toContain("too far");
    expect(r.cause).toMatchObject({ type: "Error", message: "inner" });
  });

  it("never throws on a cycle or a BigInt, and leaves the caller's objects as they were", () => {
    const { log, records } = capture();
    const cyclic: Record<string, unknown> = { name: "c" };
    cyclic.self = cyclic;
    const fields = { cyclic, big: 2n ** 70n, nested: { password: "p1" } };
    log.info(fields, "odd");
    const [r] = records();
    expect(r.big).toBe("1180591620717411303424");
    expect(r.cyclic.name).toBe("c");
    expect(JSON.stringify(r.cyclic)).toContain('"[Circular]"');
    expect(r.nested.password).toBe("***");
    expect(fields.nested.password).toBe("p1");
  });

  it("writes a line for a record too deep for JSON, and masks no deeper than three levels", () => {
    const { log, records } = capture();
    let deep: Record<string, unknown> = { token: "t" };
    for (let i = 0; i < 5_000; i++) deep = { d: deep };
    log.info({ deep }, "deep");
    log.info({ a: { b: { c: { token: "kept" } } } }, "fourth level");
    expect(records()[0]).toMatchObject({ msg: "deep", deep: "[Unserializable]" });
    expect(records()[1].a.b.c.token).toBe("kept");
  });
});
