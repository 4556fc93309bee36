// ModbusDevice driven through the SerialOpener seam by an in-memory slave, on a manual
// clock: request planning, one request at a time, retries, timeouts, bad CRCs, exceptions,
// slaves.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Bus, type ClockTimer, type Envelope, silentLogger } from "../../src/core/index.js";
import { MetricsRegistry } from "../../src/observe/index.js";
import {
  crc16Modbus,
  encodeException,
  encodeReadResponse,
  encodeWriteResponse,
  type ReadFunction,
} from "../../src/serial/modbus.js";
import { ModbusDevice, shortestFloat32 } from "../../src/serial/modbus-device.js";
import { modbusSpec } from "../../src/serial/modbus-spec.js";
import type { SerialOpener } from "../../src/serial/port.js";
import {
  type DeviceProfile,
  loadProfile,
  ProfileError,
  validateProfile,
} from "../../src/serial/profile.js";
import { recordPublished } from "../helpers/recording.js";
import { SteppedClock } from "../helpers/stepped-clock.js";
import { type TempDir, tempDir } from "../helpers/wait.js";

const METER_YAML = new URL("../../devices/energy-meter.yaml", import.meta.url).pathname;
const INTERVAL_MS = 1_000;
const TIMEOUT_MS = 200;

interface SeenRequest {
  slave: number;
  fn: number;
  address: number;
  count: number;
  at: number;
  answeredAt?: number;
}

type Behaviour =
  | "answer"
  | "silent"
  | "bad_crc"
  | { readonly exception: number }
  | { readonly lateMs: number };

/** A slave on the far side of a fake serial link: registers per slave, answers after `delayMs`. */
class FakeSlave {
  readonly seen: SeenRequest[] = [];
  /** Registers by `${slave}:${fn}:${address}`. */
  readonly registers = new Map<string, number>();
  /** Behaviours for the next requests, in order; "answer" when empty. */
  readonly script: Behaviour[] = [];
  delayMs = 5;
  /** Deliver answers one byte per chunk, as a slow UART might. */
  byteByByte = false;
  opens = 0;
  failOpens = 0;
  #events: Parameters<SerialOpener>[2] | undefined;
  readonly #clock: SteppedClock;
  readonly #timers = new Set<ClockTimer>();

  constructor(clock: SteppedClock) {
    this.#clock = clock;
  }

  readonly open: SerialOpener = async (_path, _settings, events) => {
    if (this.failOpens > 0) {
      this.failOpens--;
      throw new Error("ENOENT: no such device");
    }
    this.opens++;
    this.#events = events;
    return {
      write: (bytes) => this.#onRequest(Buffer.from(bytes)),
      close: async () => {
        this.#events = undefined;
      },
    };
  };

  set(slave: number, fn: ReadFunction, address: number, words: readonly number[]): void {
    for (const [i, w] of words.entries()) this.registers.set(`${slave}:${fn}:${address + i}`, w);
  }

  setF32(slave: number, fn: ReadFunction, address: number, value: number): void {
    const view = new DataView(new ArrayBuffer(4));
    view.setFloat32(0, value);
    this.set(slave, fn, address, [view.getUint16(0), view.getUint16(2)]);
  }

  #onRequest(frame: Buffer): void {
    expect(frame).toHaveLength(8);
    expect(frame.readUInt16LE(6)).toBe(crc16Modbus(frame.subarray(0, 6)));
    const req: SeenRequest = {
      slave: frame[0]!,
      fn: frame[1]!,
      address: frame.readUInt16BE(2),
      count: frame.readUInt16BE(4),
      at: this.#clock.now(),
    };
    this.seen.push(req);
    const behaviour = this.script.shift() ?? "answer";
    if (behaviour === "silent") return;
    let answer: Buffer;
    const fn = req.fn as ReadFunction;
    if (req.fn === 6) {
      // Write single register: a holding register takes the value; the answer echoes it.
      this.registers.set(`${req.slave}:3:${req.address}`, req.count);
      answer = encodeWriteResponse(frame);
    } else if (typeof behaviour === "object" && "exception" in behaviour) {
      answer = encodeException(req.slave, fn, behaviour.exception);
    } else {
      const regs = new Uint16Array(req.count);
      let missing = false;
      for (let i = 0; i < req.count; i++) {
        const v = this.registers.get(`${req.slave}:${req.fn}:${req.address + i}`);
        if (v === undefined) missing = true;
        regs[i] = v ?? 0;
      }
      answer = missing
        ? encodeException(req.slave, fn, 2)
        : encodeReadResponse(req.slave, fn, regs);
      if (behaviour === "bad_crc") answer[answer.length - 1]! ^= 0x5a;
    }
    const delay =
      typeof behaviour === "object" && "lateMs" in behaviour ? behaviour.lateMs : this.delayMs;
    const timer = this.#clock.setTimeout(() => {
      this.#timers.delete(timer);
      const events = this.#events;
      if (events === undefined) return;
      req.answeredAt = this.#clock.now();
      if (this.byteByByte) for (const b of answer) events.data(Buffer.from([b]));
      else events.data(answer);
    }, delay);
    this.#timers.add(timer);
  }

  /** Cancels answers still on their way, so the device's own timers can be counted. */
  dispose(): void {
    for (const timer of this.#timers) this.#clock.clearTimeout(timer);
    this.#timers.clear();
  }

  /** Drops the link as an unplugged adapter would. */
  unplug(): void {
    const events = this.#events;
    this.#events = undefined;
    events?.closed(new Error("device disconnected"));
  }
}

function meterProfile(
  decoder: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
): DeviceProfile {
  const base = loadProfile(METER_YAML);
  return validateProfile(
    {
      name: "meter-test",
      serial: { baud_rate: 9600 },
      framing: { type: "idle", gap_ms: 5 },
      decoder: {
        ...base.decoder,
        poll_interval: `${INTERVAL_MS}ms`,
        timeout_ms: TIMEOUT_MS,
        ...decoder,
      },
      fields: base.fields.map((f) => ({
        name: f.name,
        type: f.type,
        ...(f.unit === null ? {} : { unit: f.unit }),
        ...(f.scale === 1 ? {} : { scale: f.scale }),
      })),
      publish: "per_frame",
      subject: "sensors.{device}.energy",
      ...extra,
    },
    "meter-test",
  );
}

const METER = { voltage: 230.1, current: 5.25, power: 1208.0, energy: 1234.5, frequencyRaw: 4998 };

function loadMeter(slave: FakeSlave, id = 1, offset = 0): void {
  slave.setF32(id, 4, 0, METER.voltage + offset);
  slave.setF32(id, 4, 2, METER.current);
  slave.setF32(id, 4, 4, METER.power);
  slave.setF32(id, 4, 6, METER.energy);
  slave.set(id, 4, 8, [METER.frequencyRaw]);
}

const meterValues = (offset = 0) => ({
  voltage: shortestFloat32(Math.fround(METER.voltage + offset)),
  current: 5.25,
  power: 1208,
  energy: 1234.5,
  frequency: 49.98,
});

let dir: TempDir;
let portPath: string;

beforeAll(() => {
  dir = tempDir("modbus-unit");
  // PortManager checks that the device node exists before it opens it.
  portPath = join(dir.path, "ttyUSB0");
  writeFileSync(portPath, "");
});

afterAll(async () => {
  await dir.cleanup();
});

describe("ModbusDevice", () => {
  let slave: FakeSlave;
  let metrics: MetricsRegistry;
  let published: Envelope[];
  let bus: Bus;
  let device: ModbusDevice | undefined;
  let clock: SteppedClock;

  beforeEach(() => {
    clock = new SteppedClock();
    slave = new FakeSlave(clock);
    metrics = new MetricsRegistry();
    bus = new Bus();
    published = recordPublished(bus);
  });

  afterEach(async () => {
    await device?.stop();
    device = undefined;
    slave.dispose();
    expect(clock.pending).toBe(0);
  });

  function start(profile: DeviceProfile, name = "meter"): ModbusDevice {
    device = new ModbusDevice({
      config: { path: portPath, device: name, profile: profile.name, baud_rate: null },
      profile,
      bus,
      log: silentLogger,
      metrics,
      open: slave.open,
      clock,
    });
    device.start(new AbortController().signal);
    return device;
  }

  const bad = (reason: string) =>
    metrics.value("leafgate_serial_bad_frames_total", { port: portPath, reason });
  const retries = () => metrics.value("leafgate_serial_modbus_retries_total", { port: portPath });
  const bodies = () => published.map((m) => [m.subject, JSON.parse(m.payload.toString())]);

  /** Asserts the master never wrote while a request was outstanding. */
  function expectOneAtATime(timeoutMs = TIMEOUT_MS): void {
    for (const [i, req] of slave.seen.entries()) {
      const prev = slave.seen[i - 1];
      if (prev === undefined) continue;
      if (prev.answeredAt !== undefined && prev.answeredAt - prev.at <= timeoutMs) {
        expect(req.at).toBeGreaterThanOrEqual(prev.answeredAt);
      } else {
        expect(req.at - prev.at).toBeGreaterThanOrEqual(timeoutMs);
      }
    }
  }

  it("reads the shipped energy-meter profile's nine registers with one request per poll", async () => {
    loadMeter(slave);
    start(meterProfile());
    await clock.advanceAsync(100);
    expect(slave.seen).toHaveLength(1);
    expect(slave.seen[0]).toMatchObject({ slave: 1, fn: 4, address: 0, count: 9 });
    expect(bodies()).toEqual([["sensors.meter.energy", meterValues()]]);
    expect(published[0]!.origin).toBe("serial");

    await clock.advanceAsync(3 * INTERVAL_MS);
    // Polls start a whole interval apart, each request after t3.5 (5 ms at 9600 baud).
    expect(slave.seen.map((r) => r.at)).toEqual([5, 1_005, 2_005, 3_005]);
    expect(published).toHaveLength(4);
    expect(device!.status()).toMatchObject({ device: "meter", state: "open", frames: 4 });
    expect(metrics.value("leafgate_serial_frames_total", { port: portPath })).toBe(4);
    expect(metrics.value("leafgate_serial_modbus_requests_total", { port: portPath })).toBe(4);
  });

  it("plans the fewest requests and writes them one at a time, answers arriving byte by byte", async () => {
    // Input 0..3 (two f32), input 10 (u16), holding 0..1 (u32, little word order):
    // three requests, since only adjacent registers of one function merge.
    slave.setF32(1, 4, 0, 1.5);
    slave.setF32(1, 4, 2, -2.25);
    slave.set(1, 4, 10, [0xfffe]);
    slave.set(1, 3, 0, [0x0002, 0x0001]);
    slave.delayMs = 40;
    slave.byteByByte = true;
    const profile = validateProfile(
      {
        name: "mixed",
        framing: { type: "idle" },
        decoder: {
          type: "modbus",
          slave: 1,
          poll_interval: "1s",
          registers: [
            { name: "a", function: 4, address: 0, type: "f32" },
            { name: "b", function: 4, address: 2, type: "f32" },
            { name: "c", function: 4, address: 10, type: "i16" },
            { name: "d", function: 3, address: 0, type: "u32", word_order: "little" },
          ],
        },
        fields: [
          { name: "a" },
          { name: "b" },
          { name: "c", type: "int" },
          { name: "d", type: "int" },
        ],
        publish: "per_field",
        subject: "plant.{device}.{field}",
      },
      "mixed",
    );
    start(profile, "m1");
    await clock.advanceAsync(500);
    expect(slave.seen.map(({ fn, address, count }) => [fn, address, count])).toEqual([
      [3, 0, 2],
      [4, 0, 4],
      [4, 10, 1],
    ]);
    expectOneAtATime();
    expect(bodies()).toEqual([
      ["plant.m1.a", { value: 1.5 }],
      ["plant.m1.b", { value: -2.25 }],
      ["plant.m1.c", { value: -2 }],
      ["plant.m1.d", { value: 0x0001_0002 }],
    ]);
  });

  it("retries a silent slave `retries` times, then counts one timeout and polls on", async () => {
    loadMeter(slave);
    slave.script.push("silent", "silent", "silent");
    start(meterProfile({ retries: 2 }));
    // Writes at 5, 410 and 815 ms: t3.5 (5 ms at 9600 baud), then after each timeout
    // (200 ms) the line is drained for as long before the retry.
    await clock.advanceAsync(TIMEOUT_MS - 1);
    expect(slave.seen).toHaveLength(1);
    await clock.advanceAsync(1014 - (TIMEOUT_MS - 1));
    expect(slave.seen.map((r) => r.at)).toEqual([5, 410, 815]);
    expect(bad("timeout")).toBe(0);
    await clock.advanceAsync(1);
    expect(bad("timeout")).toBe(1);
    expect(retries()).toBe(2);
    expect(published).toHaveLength(0);
    expectOneAtATime();
    // The cycle overran the interval: the next starts after the drain, and the slave answers.
    await clock.advanceAsync(250);
    expect(slave.seen).toHaveLength(4);
    expect(bodies()).toEqual([["sensors.meter.energy", meterValues()]]);
    expect(bad("timeout")).toBe(1);
  });

  it("with retries: 0 counts the first timeout", async () => {
    loadMeter(slave);
    slave.script.push("silent");
    start(meterProfile({ retries: 0 }));
    await clock.advanceAsync(TIMEOUT_MS + 50);
    expect(slave.seen).toHaveLength(1);
    expect(bad("timeout")).toBe(1);
    expect(retries()).toBe(0);
  });

  it("retries a bad CRC and publishes the good answer; counts bad_crc when every attempt fails", async () => {
    loadMeter(slave);
    slave.script.push("bad_crc", "bad_crc");
    start(meterProfile({ retries: 2 }));
    await clock.advanceAsync(200);
    expect(slave.seen).toHaveLength(3);
    expect(bad("bad_crc")).toBe(0);
    expect(retries()).toBe(2);
    expect(bodies()).toEqual([["sensors.meter.energy", meterValues()]]);

    slave.script.push("bad_crc", "bad_crc", "bad_crc");
    await clock.advanceAsync(INTERVAL_MS);
    expect(slave.seen).toHaveLength(6);
    expect(bad("bad_crc")).toBe(1);
    expect(published).toHaveLength(1);
    expectOneAtATime();
  });

  it("counts an exception without retrying it and still publishes the slave's other reads", async () => {
    slave.setF32(1, 4, 0, 230.1);
    // Register 100 is not mapped: the fake answers exception 2 (illegal data address).
    const profile = validateProfile(
      {
        name: "partial",
        framing: { type: "idle" },
        decoder: {
          type: "modbus",
          slave: 1,
          poll_interval: "1000ms",
          retries: 2,
          registers: [
            { name: "voltage", function: 4, address: 0, type: "f32" },
            { name: "missing", function: 4, address: 100 },
          ],
        },
        fields: [{ name: "voltage", unit: "V" }, { name: "missing" }],
        publish: "per_frame",
        subject: "sensors.{device}",
      },
      "partial",
    );
    start(profile);
    await clock.advanceAsync(200);
    expect(slave.seen.map((r) => r.address)).toEqual([0, 100]);
    expect(bad("exception")).toBe(1);
    expect(retries()).toBe(0);
    expect(bodies()).toEqual([["sensors.meter", { voltage: 230.1 }]]);
  });

  it("polls two slaves in turn, each on its own subject; a dead one does not stop the other", async () => {
    loadMeter(slave, 1);
    loadMeter(slave, 2, 1);
    start(meterProfile({ slave: undefined, slaves: [1, 2], retries: 1 }));
    await clock.advanceAsync(100);
    expect(slave.seen.map((r) => r.slave)).toEqual([1, 2]);
    expect(bodies()).toEqual([
      ["sensors.meter-1.energy", meterValues()],
      ["sensors.meter-2.energy", meterValues(1)],
    ]);
    // Slave 1 goes silent for a whole poll (two attempts, 1005 and 1410 ms).
    slave.script.push("silent", "silent");
    await clock.advanceAsync(INTERVAL_MS + 850);
    expect(slave.seen.map((r) => r.slave)).toEqual([1, 2, 1, 1, 2]);
    expect(bad("timeout")).toBe(1);
    expect(bodies().slice(2)).toEqual([["sensors.meter-2.energy", meterValues(1)]]);
    expectOneAtATime();
  });

  it("drops an answer that comes after the timeout instead of taking it for the retry's", async () => {
    loadMeter(slave);
    slave.script.push({ lateMs: TIMEOUT_MS + 50 });
    slave.delayMs = 60;
    start(meterProfile({ retries: 1 }));
    await clock.advanceAsync(10);
    expect(slave.seen).toHaveLength(1);
    // The late answer (at 255 ms) holds the old voltage; the retry (written at 410 ms,
    // answered at 470) the new one.
    loadMeter(slave, 1, 1);
    await clock.advanceAsync(3 * TIMEOUT_MS + 50);
    expect(slave.seen).toHaveLength(2);
    expect(bad("unsolicited")).toBe(1);
    expect(bad("timeout")).toBe(0);
    expect(bodies()).toEqual([["sensors.meter.energy", meterValues(1)]]);
    await clock.advanceAsync(2 * INTERVAL_MS);
    expect(published).toHaveLength(3);
    expect(bad("bad_crc") + bad("wrong_length") + bad("timeout") + bad("unsolicited")).toBe(1);
  });

  it("keeps polling through an unplugged port and reads as soon as it reopens", async () => {
    loadMeter(slave);
    slave.failOpens = 2;
    start(meterProfile());
    // Opens fail at 0 and 200 ms and succeed at 600; the first poll follows the open.
    await clock.advanceAsync(700);
    expect(slave.opens).toBe(1);
    expect(slave.seen.map((r) => r.at)).toEqual([605]);
    expect(published).toHaveLength(1);
    slave.unplug();
    expect(device!.status().state).toBe("waiting");
    // Away for a while: reopen attempts at 900, 1300 and 2100 fail; 3100 succeeds. The
    // polls at 1600 and 2600 find no port; the one skipped runs once it is back.
    slave.failOpens = 3;
    await clock.advanceAsync(3099 - 700);
    expect(device!.status().state).toBe("waiting");
    expect(slave.seen).toHaveLength(1);
    await clock.advanceAsync(50);
    expect(slave.opens).toBe(2);
    expect(slave.seen.map((r) => r.at)).toEqual([605, 3_105]);
    expect(device!.status().state).toBe("open");
    expect(published).toHaveLength(2);
    expect(bad("timeout")).toBe(0);
  });

  describe("commands", () => {
    const withCommands = () =>
      meterProfile(
        {},
        {
          commands: [
            { name: "read_setpoint", modbus: { function: 3, address: 100, count: 2 } },
            { name: "set_setpoint", modbus: { function: 6, address: 100 }, timeout: "300ms" },
          ],
        },
      );
    const replies: Envelope[] = [];
    const request = (command: string, payload: string, reply: string) =>
      bus.publish({
        subject: `devices.meter.cmd.${command}`,
        payload: Buffer.from(payload),
        receivedAtMs: clock.now(),
        origin: "nats",
        qos: 0,
        reply,
      });
    const answers = () =>
      published
        .filter((m) => m.subject.startsWith("_INBOX."))
        .map((m) => [m.subject, JSON.parse(m.payload.toString())]);

    beforeEach(() => {
      replies.length = 0;
    });

    it("reads and writes registers between polls, one request on the line at a time", async () => {
      loadMeter(slave);
      slave.set(1, 3, 100, [15, 3]);
      start(withCommands());
      await clock.advanceAsync(100); // the first poll is done
      await request("read_setpoint", "", "_INBOX.r.1");
      await request("set_setpoint", "30", "_INBOX.r.2");
      await request("read_setpoint", "", "_INBOX.r.3");
      await clock.advanceAsync(100);
      expect(answers()).toEqual([
        ["_INBOX.r.1", { address: 100, registers: [15, 3] }],
        ["_INBOX.r.2", { address: 100, written: [30] }],
        ["_INBOX.r.3", { address: 100, registers: [30, 3] }],
      ]);
      // Woken from its pause: each command after t3.5 (5 ms) and the answer (5 ms).
      expect(slave.seen.map((r) => [r.fn, r.address, r.at])).toEqual([
        [4, 0, 5],
        [3, 100, 105],
        [6, 100, 115],
        [3, 100, 125],
      ]);
      await clock.advanceAsync(INTERVAL_MS);
      expect(slave.seen.map((r) => r.fn)).toEqual([4, 3, 6, 3, 4]);
      expectOneAtATime();
      expect(
        metrics.value("leafgate_serial_commands_total", { device: "meter", result: "ok" }),
      ).toBe(3);
    });

    it("a silent slave times the command out after its own timeout; an exception is the reply's error", async () => {
      loadMeter(slave);
      start(withCommands());
      await clock.advanceAsync(100);
      slave.script.push("silent", { exception: 2 });
      await request("set_setpoint", "7", "_INBOX.r.1");
      await request("read_setpoint", "", "_INBOX.r.2");
      await request("set_setpoint", "[1, 2]", "_INBOX.r.3");
      await clock.advanceAsync(1_000);
      expect(answers()).toEqual([
        [
          "_INBOX.r.3",
          {
            error:
              'command "set_setpoint" writes registers 100..100: its payload must be a value 0..65535 as JSON (42, or [42])',
          },
        ],
        [
          "_INBOX.r.1",
          {
            error:
              'device meter did not answer "set_setpoint" within 300 ms; check that it is powered, and in the mode that command needs',
          },
        ],
        [
          "_INBOX.r.2",
          {
            error:
              'device meter refused "read_setpoint" (slave 1 fn 3 registers 100..101): exception 2 (illegal data address)',
          },
        ],
      ]);
      expectOneAtATime(300);
    });

    it("a command failed while it waited for the line is never written", async () => {
      loadMeter(slave);
      start(withCommands());
      await clock.advanceAsync(100);
      slave.script.push("silent", "silent", "silent");
      await clock.advanceAsync(INTERVAL_MS - 100 + 10); // the second poll waits for its answer
      await request("read_setpoint", "", "_INBOX.r.1");
      slave.unplug();
      await clock.advanceAsync(5 * INTERVAL_MS);
      expect(answers()).toEqual([
        [
          "_INBOX.r.1",
          { error: "device meter is not connected (device disconnected); retry when it is back" },
        ],
      ]);
      expect(slave.opens).toBeGreaterThan(1); // reopened, and polled again...
      expect(slave.seen.filter((r) => r.fn === 3)).toEqual([]); // ...but never wrote it
    });

    it("a lost port fails the command waiting for the line at once", async () => {
      loadMeter(slave);
      start(withCommands());
      await clock.advanceAsync(100);
      slave.script.push("silent");
      await request("read_setpoint", "", "_INBOX.r.1");
      await clock.advanceAsync(50);
      slave.unplug();
      expect(answers()).toEqual([
        [
          "_INBOX.r.1",
          { error: "device meter is not connected (device disconnected); retry when it is back" },
        ],
      ]);
    });
  });

  it("stop() during a request clears every timer", async () => {
    loadMeter(slave);
    slave.script.push("silent");
    start(meterProfile());
    await clock.advanceAsync(50);
    expect(slave.seen).toHaveLength(1);
    await device!.stop();
    expect(device!.status().state).toBe("closed");
  });
});

describe("modbusSpec", () => {
  const spec = (decoder: Record<string, unknown>, fields: unknown[] = [{ name: "v" }]) =>
    modbusSpec(validateProfile({ name: "p", framing: { type: "idle" }, decoder, fields }, "p"));
  const problems = (decoder: Record<string, unknown>, fields?: unknown[]): string[] => {
    try {
      spec(decoder, fields);
    } catch (err) {
      expect(err).toBeInstanceOf(ProfileError);
      return [...(err as ProfileError).problems];
    }
    throw new Error("expected a ProfileError");
  };
  const reg = { name: "v", function: 4, address: 0 };

  it("fills defaults and reads durations", () => {
    expect(spec({ type: "modbus", slave: 7, registers: [reg] })).toEqual({
      slaves: [7],
      perSlaveDevice: false,
      pollIntervalMs: 1000,
      timeoutMs: 200,
      retries: 2,
      registers: [{ name: "v", fn: 4, address: 0, type: "u16", wordOrder: "big" }],
    });
    expect(
      spec({ type: "modbus", slave: 1, poll_interval: "250ms", registers: [reg] }).pollIntervalMs,
    ).toBe(250);
    expect(
      spec({ type: "modbus", slave: 1, poll_interval: "2m", registers: [reg] }).pollIntervalMs,
    ).toBe(120_000);
    expect(
      spec({ type: "modbus", slave: 1, poll_interval: "500ms", registers: [reg] }).pollIntervalMs,
    ).toBe(500);
    expect(spec({ type: "modbus", slaves: [1, 2], registers: [reg] }).perSlaveDevice).toBe(true);
    expect(spec({ type: "modbus", slaves: [3], registers: [reg] }).perSlaveDevice).toBe(false);
  });

  it("validates the shipped energy-meter profile", () => {
    const s = modbusSpec(loadProfile(METER_YAML));
    expect(s.slaves).toEqual([1]);
    expect(s.registers.map((r) => [r.name, r.fn, r.address, r.type])).toEqual([
      ["voltage", 4, 0, "f32"],
      ["current", 4, 2, "f32"],
      ["power", 4, 4, "f32"],
      ["energy", 4, 6, "f32"],
      ["frequency", 4, 8, "u16"],
    ]);
  });

  it.each([
    [{ type: "modbus", registers: [reg] }, "decoder.slave: required"],
    [
      { type: "modbus", slave: 0, registers: [reg] },
      "decoder.slave: expected an integer from 1 to 247, got 0",
    ],
    [
      { type: "modbus", slave: 1, slaves: [2], registers: [reg] },
      "decoder.slaves: give either slave or slaves",
    ],
    [
      { type: "modbus", slaves: [1, 1], registers: [reg] },
      "decoder.slaves[1]: slave 1 is listed twice",
    ],
    [{ type: "modbus", slaves: [], registers: [reg] }, "decoder.slaves: expected a list"],
    [
      { type: "modbus", slave: 1, poll_interval: "fast", registers: [reg] },
      "decoder.poll_interval: expected a duration",
    ],
    [
      { type: "modbus", slave: 1, poll_interval: "5ms", registers: [reg] },
      'decoder.poll_interval: expected a duration of at least 10ms, got "5ms"',
    ],
    [
      { type: "modbus", slave: 1, poll_interval: 500, registers: [reg] },
      'decoder.poll_interval: expected a duration with its unit, like "500ms" or "500s", got 500',
    ],
    [
      { type: "modbus", slave: 1, poll_interval: "250", registers: [reg] },
      'decoder.poll_interval: expected a duration with its unit, like "250ms" or "250s", got 250',
    ],
    [
      { type: "modbus", slave: 1, timeout_ms: 0, registers: [reg] },
      "decoder.timeout_ms: expected an integer from 1 to 10000",
    ],
    [
      { type: "modbus", slave: 1, retries: -1, registers: [reg] },
      "decoder.retries: expected an integer from 0 to 10",
    ],
    [{ type: "modbus", slave: 1 }, "decoder.registers: expected a list of at least one register"],
    [
      { type: "modbus", slave: 1, registers: [{ ...reg, function: 6 }] },
      "decoder.registers[0].function: expected 3 (holding registers) or 4 (input registers), got 6",
    ],
    [
      { type: "modbus", slave: 1, registers: [{ name: "v", address: 0 }] },
      "decoder.registers[0].function: expected 3",
    ],
    [
      { type: "modbus", slave: 1, registers: [{ ...reg, type: "f64" }] },
      "decoder.registers[0].type: expected one of u16, i16, u32, i32, f32",
    ],
    [
      { type: "modbus", slave: 1, registers: [{ ...reg, address: 65535, type: "f32" }] },
      "decoder.registers[0].address: expected an integer from 0 to 65534, got 65535",
    ],
    [
      { type: "modbus", slave: 1, registers: [{ ...reg, word_order: "mixed" }] },
      "decoder.registers[0].word_order: expected big (ABCD) or little (CDAB)",
    ],
    [
      { type: "modbus", slave: 1, registers: [reg, reg] },
      'decoder.registers[1].name: "v" is defined twice',
    ],
    [
      { type: "modbus", slave: 1, registers: [{ ...reg, fn: 4 }] },
      "decoder.registers[0].fn: unknown key",
    ],
    [{ type: "modbus", slave: 1, slave_id: 2, registers: [reg] }, "decoder.slave_id: unknown key"],
  ])("rejects %j", (decoder, problem) => {
    expect(problems(decoder).some((p) => p.startsWith(problem))).toBe(true);
  });

  it("requires every field's source to be a register", () => {
    expect(
      problems({ type: "modbus", slave: 1, registers: [reg] }, [
        { name: "v" },
        { name: "w", source: "x" },
      ]),
    ).toEqual(['fields[1].source: no register named "x" in decoder.registers (have v)']);
  });

  it("collects every problem at once", () => {
    expect(problems({ type: "modbus", retries: 99, registers: [{ name: "v" }] })).toHaveLength(4);
  });
});

describe("shortestFloat32", () => {
  it.each([230.1, 5.25, 1234.5, 0.1, -49.98, 100.01, 1e-7, 3.4e38])("%d survives binary32", (x) => {
    expect(shortestFloat32(Math.fround(x))).toBe(x);
  });

  it("keeps values that need every digit", () => {
    const x = Math.fround(16_777_215);
    expect(shortestFloat32(x)).toBe(16_777_215);
    expect(Math.fround(shortestFloat32(Math.fround(Math.PI)))).toBe(Math.fround(Math.PI));
  });
});
