// Device commands, the pure parts: the profile's commands section, encoding a request,
// telling its answer, the fair queue, and the runner (one on the line, turns, bounds,
// timeouts on a ManualClock, a lost port failing everything at once).
import { describe, expect, it } from "vitest";
import { type Counter, type Labels, ManualClock } from "../../src/core/index.js";
import { commandReply } from "../../src/serial/command-reply.js";
import {
  type CommandResult,
  CommandRunner,
  type CommandRunnerOptions,
} from "../../src/serial/command-runner.js";
import {
  encodeCommand,
  MAX_COMMAND_PAYLOAD_BYTES,
  matchesResponse,
  type ProfileCommand,
} from "../../src/serial/command-spec.js";
import { FairQueue } from "../../src/serial/fair-queue.js";
import { ProfileError, resolveProfile, validateProfile } from "../../src/serial/index.js";
import { crc16Modbus } from "../../src/serial/modbus.js";

const base = {
  name: "probe",
  framing: { type: "line" },
  decoder: { type: "json_lines" },
  fields: [{ name: "t", type: "float" }],
};

function commandsOf(commands: unknown[]): readonly ProfileCommand[] {
  return validateProfile({ ...base, commands }, "devices/probe.yaml").commands;
}

function problems(raw: unknown): readonly string[] {
  try {
    validateProfile(raw, "devices/probe.yaml");
  } catch (err) {
    expect(err).toBeInstanceOf(ProfileError);
    return (err as ProfileError).problems;
  }
  throw new Error("expected a ProfileError");
}

const bytes = (s: string): Buffer => Buffer.from(s);

describe("profile commands section", () => {
  it("reads each response rule, with defaults", () => {
    const [a, b, c, d, e] = commandsOf([
      { name: "a", text: "A\n" },
      { name: "b", text: "SET {payload}\n", response: "prefix", match: "OK", timeout: "500ms" },
      { name: "c", hex: "42 4d", response: "prefix", match_hex: "42 4D 00 1C" },
      { name: "d", text: "D\n", response: "regex", match: "^(OK|ERR) D$", timeout: 5 },
      { name: "e", hex: "01", response: "none" },
    ]);
    expect(a).toEqual({
      name: "a",
      bytes: bytes("A\n"),
      template: undefined,
      response: { type: "next_frame" },
      timeoutMs: 2_000,
    });
    expect(b).toMatchObject({ template: "SET {payload}\n", timeoutMs: 500 });
    expect(b!.response).toEqual({ type: "prefix", prefix: bytes("OK") });
    expect(c!.response).toEqual({ type: "prefix", prefix: Buffer.from([0x42, 0x4d, 0, 0x1c]) });
    expect(c!.bytes).toEqual(Buffer.from([0x42, 0x4d]));
    expect(d).toMatchObject({ timeoutMs: 5_000, response: { type: "regex" } });
    expect(e!.response).toEqual({ type: "none" });
  });

  it.each([
    [[{ name: "x" }], "commands[0]: expected exactly one of text or hex"],
    [[{ name: "x", text: "a", hex: "01" }], "commands[0]: expected exactly one of text or hex"],
    [[{ name: "x", hex: "4G" }], 'commands[0].hex: expected pairs of hex digits, got "4G"'],
    [[{ name: "a.b", text: "a" }], "commands[0].name: expected letters, digits, _ or -"],
    [
      [
        { name: "x", text: "a" },
        { name: "x", text: "b" },
      ],
      'commands[1].name: "x" is defined twice',
    ],
    [
      [{ name: "x", text: "a", respons: "none" }],
      'commands[0].respons: unknown key (did you mean "response"?)',
    ],
    [
      [{ name: "x", text: "a", response: "line" }],
      "commands[0].response: expected one of next_frame, prefix, regex, none",
    ],
    [
      [{ name: "x", text: "a", response: "prefix" }],
      "commands[0]: response: prefix needs exactly one of match",
    ],
    [
      [{ name: "x", text: "a", response: "regex", match: "(" }],
      "commands[0].match: not a regular expression",
    ],
    [[{ name: "x", text: "a", match: "OK" }], "commands[0]: response: next_frame takes no match"],
    [
      [{ name: "x", text: "a", timeout: "2 fortnights" }],
      "commands[0].timeout: expected a duration",
    ],
    [
      [{ name: "x", text: "a", timeout: "2m" }],
      "commands[0].timeout: expected a duration from 1ms to 1m",
    ],
    [[{ name: "x", text: 5 }], "commands[0].text: expected a non-empty string, got 5"],
    [{ x: { text: "a" } }, "commands: expected a list, got a mapping"],
  ])("%#: %j", (commands, problem) => {
    const found = problems({ ...base, commands });
    expect(
      found.some((p) => p.startsWith(problem)),
      found.join("\n"),
    ).toBe(true);
  });

  describe("on a Modbus profile", () => {
    const meter = (commands: unknown[]) => ({
      name: "m",
      framing: { type: "idle" },
      decoder: { type: "modbus", slave: 7, registers: [{ name: "v", function: 4, address: 0 }] },
      fields: [{ name: "v" }],
      commands,
    });

    it("reads modbus requests, the slave defaulting to the profile's", () => {
      const p = validateProfile(
        meter([
          { name: "r", modbus: { function: 3, address: 100, count: 2 } },
          { name: "w", modbus: { function: 6, address: 100, slave: 9 }, timeout: "300ms" },
          { name: "m", modbus: { function: 16, address: 65534, count: 2 } },
        ]),
        "m.yaml",
      );
      expect(p.commands.map((c) => [c.name, c.modbus, c.response, c.timeoutMs])).toEqual([
        ["r", { fn: 3, address: 100, count: 2, slave: 7 }, { type: "modbus" }, 2_000],
        ["w", { fn: 6, address: 100, count: 1, slave: 9 }, { type: "modbus" }, 300],
        ["m", { fn: 16, address: 65534, count: 2, slave: 7 }, { type: "modbus" }, 2_000],
      ]);
      const [r, w, m] = p.commands;
      const hex = (c: ProfileCommand, payload: string) => {
        const e = encodeCommand(c, bytes(payload), undefined);
        return e.ok ? e.bytes.toString("hex") : e.error;
      };
      /** `adu` with its CRC-16/MODBUS appended, low byte first. */
      const withCrc = (adu: string) => {
        const crc = crc16Modbus(Buffer.from(adu, "hex"));
        return adu + Buffer.from([crc & 0xff, crc >> 8]).toString("hex");
      };
      // Slave 7, function 3, address 100, count 2; the payload of a read is ignored.
      expect(hex(r!, "ignored")).toBe(withCrc("070300640002"));
      expect(hex(w!, "42")).toBe(withCrc("09060064002a"));
      expect(hex(w!, "[42]")).toBe(hex(w!, "42"));
      expect(hex(m!, "[1, 65535]")).toBe(withCrc("0710fffe0002040001ffff"));
      for (const bad of ["", "x", "65536", "-1", "1.5", "[1,2]", '"7"']) {
        expect(hex(w!, bad)).toBe(
          'command "w" writes registers 100..100: its payload must be a value 0..65535 as JSON (42, or [42])',
        );
      }
      expect(hex(m!, "[1]")).toBe(
        'command "m" writes registers 65534..65535: its payload must be a JSON list of 2 values 0..65535',
      );
    });

    it.each([
      [
        [{ name: "x", hex: "01" }],
        "commands[0]: a Modbus profile's command needs modbus: { function, address }",
      ],
      [
        [{ name: "x", modbus: { function: 3, address: 1 }, text: "a" }],
        "commands[0].text: a modbus command takes no text",
      ],
      [
        [{ name: "x", modbus: { function: 3, address: 1 }, response: "none" }],
        "commands[0].response: a modbus command takes no response",
      ],
      [
        [{ name: "x", modbus: { function: 5, address: 1 } }],
        "commands[0].modbus.function: expected 3 or 4 (read holding or input registers), 6 or 16",
      ],
      [
        [{ name: "x", modbus: { function: 3 } }],
        "commands[0].modbus.address: expected an integer from 0 to 65535, got nothing",
      ],
      [
        [{ name: "x", modbus: { function: 6, address: 1, count: 2 } }],
        "commands[0].modbus.count: function 6 takes 1..1 registers, got 2",
      ],
      [
        [{ name: "x", modbus: { function: 16, address: 1, count: 124 } }],
        "commands[0].modbus.count: function 16 takes 1..123 registers, got 124",
      ],
      [
        [{ name: "x", modbus: { function: 3, address: 65535, count: 2 } }],
        "commands[0].modbus: registers 65535..65536 run past 65535",
      ],
      [
        [{ name: "x", modbus: { function: 3, address: 1, slave: 0 } }],
        "commands[0].modbus.slave: expected an integer from 1 to 247",
      ],
      [
        [{ name: "x", modbus: { function: 3, address: 1, kount: 2 } }],
        'commands[0].modbus.kount: unknown key (did you mean "count"?)',
      ],
    ])("%#: %j", (commands, problem) => {
      const found = problems(meter(commands));
      expect(
        found.some((p) => p.startsWith(problem)),
        found.join("\n"),
      ).toBe(true);
    });

    it("a streaming profile takes no modbus command", () => {
      expect(
        problems({ ...base, commands: [{ name: "x", modbus: { function: 3, address: 1 } }] }),
      ).toContain(
        "commands[0].modbus: only a Modbus profile (decoder.type: modbus) takes modbus commands",
      );
    });
  });

  it("ships commands in env-sensor, gps-nmea, pms5003 and energy-meter", () => {
    const names = (p: string) => resolveProfile(p, null).commands.map((c) => c.name);
    expect(names("env-sensor")).toEqual(["interval", "info"]);
    expect(names("gps-nmea")).toEqual(["firmware", "ping", "hot_start"]);
    expect(names("pms5003")).toEqual([
      "sleep",
      "wake",
      "passive_mode",
      "active_mode",
      "read_passive",
    ]);
    expect(names("energy-meter")).toEqual(["settings", "demand_interval", "interval_and_ct"]);
    const interval = resolveProfile("env-sensor", null).commands[0]!;
    expect(encodeCommand(interval, bytes("5"), "\n")).toEqual({
      ok: true,
      bytes: bytes("INTERVAL 5\n"),
    });
    expect(matchesResponse(interval.response, bytes("OK INTERVAL 5"))).toBe(true);
    expect(matchesResponse(interval.response, bytes("ERR INTERVAL expected 1..3600"))).toBe(true);
    expect(matchesResponse(interval.response, bytes('{"t":1}'))).toBe(false);
    const read = resolveProfile("pms5003", null).commands[4]!;
    expect(read.bytes.toString("hex")).toBe("424de200000171");
    expect(read.response).toEqual({ type: "prefix", prefix: Buffer.from("424d001c", "hex") });
  });
});

describe("encodeCommand and matchesResponse", () => {
  const [fixed, templ] = commandsOf([
    { name: "fixed", text: "PING\n" },
    { name: "set", text: "SET {payload} {payload}\n", response: "prefix", match: "OK" },
  ]);

  it("writes fixed bytes whatever the payload", () => {
    expect(encodeCommand(fixed!, bytes("ignored\n"), "\n")).toEqual({
      ok: true,
      bytes: bytes("PING\n"),
    });
  });

  it("fills every {payload}", () => {
    expect(encodeCommand(templ!, bytes("ä1"), "\n")).toEqual({
      ok: true,
      bytes: bytes("SET ä1 ä1\n"),
    });
  });

  it.each([
    [
      Buffer.alloc(0),
      'command "set" needs a payload to fill {payload} in "SET {payload} {payload}\\n"; the request had none',
    ],
    [
      Buffer.alloc(MAX_COMMAND_PAYLOAD_BYTES + 1, 0x41),
      `of at most ${MAX_COMMAND_PAYLOAD_BYTES} bytes; the request had ${MAX_COMMAND_PAYLOAD_BYTES + 1}`,
    ],
    [Buffer.from([0xff, 0xfe]), "as UTF-8 text; the request's payload is not UTF-8"],
    [
      bytes("5\nREBOOT"),
      "without control characters or line delimiters (one request writes one command)",
    ],
    [bytes("5\rX"), "without control characters"],
    [bytes("5\u007f"), "without control characters"],
  ])("refuses payload %#", (payload, error) => {
    const r = encodeCommand(templ!, payload, "\n");
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error).toContain(error);
  });

  it("refuses a payload carrying a printable line delimiter", () => {
    const r = encodeCommand(templ!, bytes("1;2"), ";");
    expect(r.ok).toBe(false);
    expect(encodeCommand(templ!, Buffer.alloc(MAX_COMMAND_PAYLOAD_BYTES, 0x41), "\n").ok).toBe(
      true,
    );
  });

  it("matches by rule", () => {
    const prefix = { type: "prefix", prefix: bytes("OK") } as const;
    expect(matchesResponse(prefix, bytes("OK 1"))).toBe(true);
    expect(matchesResponse(prefix, bytes("O"))).toBe(false);
    expect(matchesResponse(prefix, bytes("xOK"))).toBe(false);
    expect(matchesResponse({ type: "next_frame" }, bytes("x"))).toBe(true);
    expect(matchesResponse({ type: "none" }, bytes("x"))).toBe(false);
    expect(matchesResponse({ type: "regex", regex: /^\d+$/ }, bytes("123"))).toBe(true);
    expect(matchesResponse({ type: "regex", regex: /^\d+$/ }, bytes("12a"))).toBe(false);
  });
});

describe("FairQueue", () => {
  it("takes turns: a backlog queued first does not starve a later requester", () => {
    const q = new FairQueue<string>(64);
    q.push("A", "a1");
    expect(q.shift()).toBe("a1"); // on the line
    for (const x of ["a2", "a3", "a4"]) q.push("A", x);
    for (const x of ["b1", "b2"]) q.push("B", x);
    const order: string[] = ["a1"];
    for (let x = q.shift(); x !== undefined; x = q.shift()) order.push(x);
    expect(order).toEqual(["a1", "b1", "a2", "b2", "a3", "a4"]);
  });

  it("three requesters interleave round by round; a newcomer joins the current round", () => {
    const q = new FairQueue<string>(64);
    for (const x of ["a1", "a2", "a3"]) q.push("A", x);
    for (const x of ["b1", "b2"]) q.push("B", x);
    expect([q.shift(), q.shift(), q.shift()]).toEqual(["a1", "b1", "a2"]);
    q.push("C", "c1");
    q.push("C", "c2");
    const rest: string[] = [];
    for (let x = q.shift(); x !== undefined; x = q.shift()) rest.push(x);
    expect(rest).toEqual(["b2", "c1", "a3", "c2"]);
  });

  it("one requester alone is first in, first out", () => {
    const q = new FairQueue<number>(8);
    for (let i = 0; i < 8; i++) q.push("A", i);
    expect(q.drain()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(q.size).toBe(0);
  });

  it("refuses past its capacity, and takes again once there is room", () => {
    const q = new FairQueue<number>(3);
    expect([q.push("A", 1), q.push("B", 2), q.push("C", 3), q.push("D", 4)]).toEqual([
      true,
      true,
      true,
      false,
    ]);
    expect(q.size).toBe(3);
    q.shift();
    expect(q.push("D", 4)).toBe(true);
  });

  it("stays fair and bounded with a new requester for every item", () => {
    const q = new FairQueue<string>(4);
    for (let i = 0; i < 10_000; i++) {
      expect(q.push(`c${i}`, `x${i}`)).toBe(true);
      expect(q.shift()).toBe(`x${i}`);
    }
    q.push("A", "a1");
    q.push("A", "a2");
    q.push("B", "b1");
    expect([q.shift(), q.shift(), q.shift()]).toEqual(["a1", "b1", "a2"]);
  });
});

/** A counter that records each increment's labels. */
function recordingCounter(): Counter & { counts: Record<string, number> } {
  const counts: Record<string, number> = {};
  return {
    counts,
    inc(labels?: Labels) {
      const k = `${labels?.device}/${labels?.result}`;
      counts[k] = (counts[k] ?? 0) + 1;
    },
  };
}

describe("CommandRunner", () => {
  const commands = commandsOf([
    { name: "set", text: "SET {payload}\n", response: "prefix", match: "OK SET", timeout: "1s" },
    { name: "any", text: "ANY\n", timeout: "2s" },
    { name: "fire", text: "FIRE\n", response: "none" },
  ]);

  function setup(overrides: Partial<CommandRunnerOptions> = {}) {
    const clock = new ManualClock(1_000);
    const written: string[] = [];
    const results: [string, CommandResult][] = [];
    const state = { open: true as boolean, reason: "the device went away" };
    const counter = recordingCounter();
    const runner = new CommandRunner({
      device: "dev-1",
      profileFile: "devices/probe.yaml",
      commands,
      delimiter: "\n",
      clock,
      write: (b) => {
        if (!state.open) return false;
        written.push(Buffer.from(b).toString());
        return true;
      },
      unavailable: () => (state.open ? undefined : state.reason),
      counter,
      maxQueued: 4,
      ...overrides,
    });
    const submit = (name: string, payload: string, requester = "A", tag = payload) =>
      runner.submit({
        name,
        payload: bytes(payload),
        requester,
        done: (r) => results.push([tag, r]),
      });
    return { clock, written, results, state, counter, runner, submit };
  }

  it("writes one command at a time; the next only after the answer", () => {
    const { written, results, runner, submit, counter } = setup();
    submit("set", "1");
    submit("set", "2");
    expect(written).toEqual(["SET 1\n"]);
    expect(runner.running).toBe("set");
    expect(runner.queued).toBe(1);
    // Telemetry in between is not the answer.
    expect(runner.onFrame(bytes('{"t":1}'))).toBe(false);
    expect(runner.onFrame(bytes("OK SET 1"))).toBe(true);
    expect(written).toEqual(["SET 1\n", "SET 2\n"]);
    expect(runner.onFrame(bytes("OK SET 2"))).toBe(true);
    expect(runner.onFrame(bytes("OK SET 3"))).toBe(false);
    expect(results).toEqual([
      ["1", { outcome: "ok", frame: bytes("OK SET 1") }],
      ["2", { outcome: "ok", frame: bytes("OK SET 2") }],
    ]);
    expect(counter.counts).toEqual({ "dev-1/ok": 2 });
  });

  it("times out on the clock, then writes the next", () => {
    const { clock, written, results, submit, counter } = setup();
    submit("set", "1");
    submit("any", "x");
    clock.advance(999);
    expect(results).toEqual([]);
    clock.advance(1);
    expect(results).toEqual([
      [
        "1",
        {
          outcome: "timeout",
          error:
            'device dev-1 did not answer "set" within 1000 ms; check that it is powered, and in the mode that command needs',
        },
      ],
    ]);
    expect(written).toEqual(["SET 1\n", "ANY\n"]);
    clock.advance(2_000);
    expect(results.map(([t, r]) => [t, r.outcome])).toEqual([
      ["1", "timeout"],
      ["x", "timeout"],
    ]);
    expect(clock.pending).toBe(0);
    expect(counter.counts).toEqual({ "dev-1/timeout": 2 });
  });

  it("takes requesters in turns", () => {
    const { written, runner, submit } = setup({ maxQueued: 64 });
    for (const p of ["11", "12", "13", "14"]) submit("set", p, "A");
    for (const p of ["21", "22"]) submit("set", p, "B");
    for (let i = 0; i < 6; i++) runner.onFrame(bytes("OK SET"));
    expect(written.map((w) => w.trim())).toEqual([
      "SET 11",
      "SET 21",
      "SET 12",
      "SET 22",
      "SET 13",
      "SET 14",
    ]);
  });

  it("is done once written when nothing is awaited", () => {
    const { written, results, runner, submit } = setup();
    submit("fire", "");
    submit("fire", "");
    expect(written).toEqual(["FIRE\n", "FIRE\n"]);
    expect(results).toEqual([
      ["", { outcome: "ok", written: 5 }],
      ["", { outcome: "ok", written: 5 }],
    ]);
    expect(runner.running).toBeUndefined();
  });

  it("says at once what it cannot do: unknown, bad payload, not connected, full", () => {
    const { results, state, submit, counter, written } = setup({ maxQueued: 1 });
    submit("reboot", "");
    submit("set", "");
    state.open = false;
    submit("set", "1");
    state.open = true;
    submit("set", "2"); // on the line
    submit("set", "3"); // waits
    submit("set", "4"); // one too many
    expect(written).toEqual(["SET 2\n"]);
    expect(results.map(([t, r]) => [t, r.outcome, "error" in r ? r.error : ""])).toEqual([
      [
        "",
        "unknown",
        'device dev-1 has no command "reboot"; its commands are set, any, fire (devices/probe.yaml)',
      ],
      [
        "",
        "error",
        'command "set" needs a payload to fill {payload} in "SET {payload}\\n"; the request had none',
      ],
      [
        "1",
        "unplugged",
        "device dev-1 is not connected (the device went away); retry when it is back",
      ],
      [
        "4",
        "busy",
        "device dev-1 has 1 commands waiting already; retry when it has worked through them",
      ],
    ]);
    expect(counter.counts).toEqual({
      "dev-1/unknown": 1,
      "dev-1/error": 1,
      "dev-1/unplugged": 1,
      "dev-1/busy": 1,
    });
  });

  it("fails the command on the line and every waiting one when the port is lost", () => {
    const { clock, results, runner, submit, state } = setup();
    submit("set", "1");
    submit("set", "2", "B");
    state.open = false;
    runner.portLost("the device went away");
    expect(results.map(([t, r]) => [t, r.outcome])).toEqual([
      ["1", "unplugged"],
      ["2", "unplugged"],
    ]);
    expect(clock.pending).toBe(0);
    expect(runner.queued).toBe(0);
    expect(runner.onFrame(bytes("OK SET 1"))).toBe(false);
  });

  it("a write that fails is unplugged, and the next is tried", () => {
    let fail = true;
    const { results, submit, written } = setup({
      write: (b) => {
        if (fail) {
          fail = false;
          return false;
        }
        written.push(Buffer.from(b).toString());
        return true;
      },
    });
    submit("fire", "");
    submit("fire", "");
    expect(results.map(([, r]) => r.outcome)).toEqual(["unplugged", "ok"]);
  });

  it("after stop, everything fails with the reason", () => {
    const { results, runner, submit, clock } = setup();
    submit("set", "1");
    submit("set", "2");
    runner.stop("stopping");
    submit("set", "3");
    expect(results.map(([t, r]) => [t, r.outcome, "error" in r && r.error])).toEqual([
      ["1", "error", "stopping"],
      ["2", "error", "stopping"],
      ["3", "error", "stopping"],
    ]);
    expect(clock.pending).toBe(0);
  });

  it("a request made from inside a reply is queued, not run inside it", () => {
    const { written, runner } = setup();
    const order: string[] = [];
    runner.submit({
      name: "fire",
      payload: Buffer.alloc(0),
      requester: "A",
      done: () => {
        order.push("done 1");
        runner.submit({
          name: "fire",
          payload: Buffer.alloc(0),
          requester: "A",
          done: () => order.push("done 2"),
        });
        order.push("after submit");
      },
    });
    expect(order).toEqual(["done 1", "after submit", "done 2"]);
    expect(written).toEqual(["FIRE\n", "FIRE\n"]);
  });
});

describe("commandReply", () => {
  const answer = (frame: Buffer) => ({ text: frame.toString() });

  it("an answer: JSON of the frame", () => {
    const r = commandReply("_INBOX.x", { outcome: "ok", frame: bytes("OK") }, 5, answer);
    expect(r).toMatchObject({ subject: "_INBOX.x", origin: "serial", qos: 0, receivedAtMs: 5 });
    expect(JSON.parse(Buffer.from(r.payload).toString())).toEqual({ text: "OK" });
    expect(r.headers).toBeUndefined();
    expect(r.properties).toEqual({ contentType: "application/json" });
  });

  it("an error text is one line, in the payload as in the header", () => {
    const r = commandReply("s", { outcome: "unplugged", error: "a\r\nb\nc" }, 5, answer);
    expect(Buffer.from(r.payload).toString()).toBe('{"error":"a b c"}');
    expect(r.headers?.get("Leafgate-Error")).toEqual(["a b c"]);
  });

  it("written: the byte count", () => {
    const r = commandReply("s", { outcome: "ok", written: 7 }, 5, answer);
    expect(Buffer.from(r.payload).toString()).toBe('{"written":7}');
  });

  it("an error: the same text in the payload, the header and the user property", () => {
    const r = commandReply("s", { outcome: "timeout", error: "no answer" }, 5, answer);
    expect(Buffer.from(r.payload).toString()).toBe('{"error":"no answer"}');
    expect([...(r.headers ?? [])]).toEqual([["Leafgate-Error", ["no answer"]]]);
    expect(r.properties).toEqual({
      contentType: "application/json",
      userProperties: [["Leafgate-Error", "no answer"]],
    });
  });
});
