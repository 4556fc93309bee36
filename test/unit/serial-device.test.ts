// Serial devices behind one interface, on a manual clock: the factory, the streaming
// device through the SerialOpener seam, the port's reopen backoff and dead-port check,
// the lifecycle, the /status shape and the rate-limited bad-data log.
import { rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Bus, type Envelope } from "../../src/core/index.js";
import { MetricsRegistry } from "../../src/observe/index.js";
import {
  createDevice,
  type Device,
  type DeviceProfile,
  loadProfile,
  ProfileError,
  type SerialOpener,
  validateProfile,
} from "../../src/serial/index.js";
import { ModbusDevice } from "../../src/serial/modbus-device.js";
import { StreamingDevice } from "../../src/serial/stream-device.js";
import { recordingLogger, recordPublished } from "../helpers/recording.js";
import { SteppedClock } from "../helpers/stepped-clock.js";
import { type TempDir, tempDir } from "../helpers/wait.js";

const profileFile = (name: string) =>
  new URL(`../../devices/${name}.yaml`, import.meta.url).pathname;
const ENV_SENSOR = loadProfile(profileFile("env-sensor"));
const METER = loadProfile(profileFile("energy-meter"));

/** The far side of a fake serial link: opens fail while `failOpens` lasts. */
class FakeLink {
  readonly openedAt: number[] = [];
  readonly failedAt: number[] = [];
  failOpens = 0;
  closes = 0;
  readonly written: string[] = [];
  events: Parameters<SerialOpener>[2] | undefined;

  constructor(readonly clock: SteppedClock) {}

  readonly open: SerialOpener = async (_path, _settings, events) => {
    if (this.failOpens > 0) {
      this.failOpens--;
      this.failedAt.push(this.clock.now());
      throw new Error("EBUSY: resource busy");
    }
    this.openedAt.push(this.clock.now());
    this.events = events;
    return {
      write: (bytes) => {
        this.written.push(Buffer.from(bytes).toString());
      },
      close: async () => {
        this.closes++;
        this.events = undefined;
      },
    };
  };

  send(text: string): void {
    this.events?.data(Buffer.from(text));
  }

  /** The serial library reports the port gone (EIO), as it does for a yanked adapter. */
  fail(): void {
    this.events?.closed(new Error("EIO: i/o error, read"));
  }
}

let dir: TempDir;
let portPath: string;

beforeAll(() => {
  dir = tempDir("serial-device");
  portPath = join(dir.path, "ttyUSB0");
});

afterAll(async () => {
  await dir.cleanup();
});

describe("serial devices", () => {
  let clock: SteppedClock;
  let link: FakeLink;
  let metrics: MetricsRegistry;
  let published: Envelope[];
  let bus: Bus;
  let logged: ReturnType<typeof recordingLogger>;
  let device: Device | undefined;

  beforeEach(() => {
    // The port checks that its device node exists before it opens it.
    rmSync(portPath, { force: true });
    writeFileSync(portPath, "");
    clock = new SteppedClock();
    link = new FakeLink(clock);
    metrics = new MetricsRegistry();
    bus = new Bus();
    published = recordPublished(bus);
    logged = recordingLogger();
  });

  afterEach(async () => {
    await device?.stop();
    device = undefined;
    expect(clock.pending).toBe(0);
  });

  function start(profile: DeviceProfile, signal = new AbortController().signal): Device {
    device = createDevice(
      { path: portPath, device: "dev-1", profile: profile.name, baud_rate: null },
      profile,
      { bus, log: logged.log, metrics, open: link.open, clock },
    );
    device.start(signal);
    return device;
  }

  const bodies = () => published.map((m) => [m.subject, JSON.parse(m.payload.toString())]);
  const warnings = (msg: string) =>
    logged.lines.filter(([level, m]) => level === "warn" && m === msg).map(([, , f]) => f);

  it("the factory polls a Modbus profile and streams every other", () => {
    const deps = { bus, log: logged.log, metrics, clock };
    const config = { path: portPath, device: "d", profile: "p", baud_rate: null };
    expect(createDevice(config, ENV_SENSOR, deps)).toBeInstanceOf(StreamingDevice);
    expect(createDevice(config, METER, deps)).toBeInstanceOf(ModbusDevice);
    expect(createDevice(config, ENV_SENSOR, deps).name).toBe("d");
  });

  it("a streaming device refuses a Modbus profile, which the factory never gives it", () => {
    const config = { path: portPath, device: "d", profile: "p", baud_rate: null };
    expect(
      () => new StreamingDevice({ config, profile: METER, bus, log: logged.log, metrics, clock }),
    ).toThrow(ProfileError);
  });

  it("publishes each frame's fields, and /status shows the device in a fixed shape", async () => {
    start(ENV_SENSOR);
    expect(JSON.stringify(device!.status())).toBe(
      `{"device":"dev-1","path":${JSON.stringify(portPath)},"profile":"env-sensor","frames":0,"badFrames":0,"lastFrameAt":null,"silentAfterMs":null,"commandsQueued":0,"state":"opening"}`,
    );
    await clock.advanceAsync(0);
    clock.advance(7);
    link.send('{"t": 21.5, "h": 40.2}\n{"p": 1013');
    link.send(".2}\n");
    expect(bodies()).toEqual([
      ["sensors.dev-1.temperature", { value: 21.5, unit: "°C" }],
      ["sensors.dev-1.humidity", { value: 40.2, unit: "%" }],
      ["sensors.dev-1.pressure", { value: 1013.2, unit: "hPa" }],
    ]);
    expect(published.map((m) => m.receivedAtMs)).toEqual([7, 7, 7]);
    expect(JSON.stringify(device!.status())).toBe(
      `{"device":"dev-1","path":${JSON.stringify(portPath)},"profile":"env-sensor","frames":2,"badFrames":0,"lastFrameAt":7,"silentAfterMs":null,"commandsQueued":0,"state":"open","since":0}`,
    );
    // Garbage counts as bad and is not a frame heard: last-seen stays at the last good one.
    clock.advance(5);
    link.send("not json\n{also not\n");
    await device!.stop();
    expect(JSON.stringify(device!.status())).toBe(
      `{"device":"dev-1","path":${JSON.stringify(portPath)},"profile":"env-sensor","frames":2,"badFrames":2,"lastFrameAt":7,"silentAfterMs":null,"commandsQueued":0,"state":"closed"}`,
    );
  });

  /** Publishes a NATS-style request (a reply subject on the envelope) for `command`. */
  function request(command: string, payload: string, reply: string | undefined, publisher = "c1") {
    return bus.publish({
      subject: `devices.dev-1.cmd.${command}`,
      payload: Buffer.from(payload),
      receivedAtMs: clock.now(),
      origin: "nats",
      qos: 0,
      publisher,
      ...(reply !== undefined ? { reply } : {}),
    });
  }
  const repliesOn = (prefix: string) =>
    published
      .filter((m) => m.subject.startsWith(prefix))
      .map((m) => [
        m.subject,
        JSON.parse(m.payload.toString()),
        m.headers?.get("Leafgate-Error")?.[0],
      ]);

  it("answers a request on its reply subject; the answer is not bad data, telemetry flows around it", async () => {
    start(ENV_SENSOR);
    await clock.advanceAsync(0);
    await request("interval", "5", "_INBOX.a.1");
    await request("info", "", undefined); // fire and forget: still written, in its turn
    expect(link.written).toEqual(["INTERVAL 5\n"]);
    link.send('{"t": 1}\nOK INTERVAL 5\n');
    expect(link.written).toEqual(["INTERVAL 5\n", "INFO\n"]);
    link.send("INFO sim fw=1\n");
    expect(repliesOn("_INBOX.")).toEqual([["_INBOX.a.1", { text: "OK INTERVAL 5" }, undefined]]);
    const telemetry = published.filter((m) => m.subject.startsWith("sensors."));
    expect(telemetry.map((m) => [m.subject, JSON.parse(m.payload.toString())])).toEqual([
      ["sensors.dev-1.temperature", { value: 1, unit: "°C" }],
    ]);
    expect(
      metrics.value("leafgate_serial_bad_frames_total", { port: portPath, reason: "bad_json" }),
    ).toBe(0);
    expect(metrics.value("leafgate_serial_commands_total", { device: "dev-1", result: "ok" })).toBe(
      2,
    );
    expect(device!.status().commandsQueued).toBe(0);
  });

  it("times out on the clock, and a lost port fails the command on the line at once", async () => {
    start(ENV_SENSOR);
    await clock.advanceAsync(0);
    await request("info", "", "_INBOX.a.1");
    await clock.advanceAsync(2_000);
    await request("info", "", "_INBOX.a.2");
    await request("info", "", "_INBOX.a.3", "c2");
    await clock.advanceAsync(100);
    link.fail();
    await request("info", "", "_INBOX.a.4");
    const lost = "device dev-1 is not connected (EIO: i/o error, read); retry when it is back";
    const timeout =
      'device dev-1 did not answer "info" within 2000 ms; check that it is powered, and in the mode that command needs';
    expect(repliesOn("_INBOX.")).toEqual([
      ["_INBOX.a.1", { error: timeout }, timeout],
      ["_INBOX.a.2", { error: lost }, lost],
      ["_INBOX.a.3", { error: lost }, lost],
      ["_INBOX.a.4", { error: lost }, lost],
    ]);
    expect(link.written).toEqual(["INFO\n", "INFO\n"]);
  });

  it("stopping fails what waits, and unsubscribes its command subjects", async () => {
    start(ENV_SENSOR);
    await clock.advanceAsync(0);
    await request("info", "", "_INBOX.a.1");
    const subscriptions = bus.subscriptionCount;
    await device!.stop();
    expect(bus.subscriptionCount).toBe(subscriptions - 1);
    const stopping = "device dev-1 is stopping (the gateway shuts down); retry after it restarts";
    expect(repliesOn("_INBOX.")).toEqual([["_INBOX.a.1", { error: stopping }, stopping]]);
  });

  it("logs bad data once a minute per reason, then says how many lines it held back", async () => {
    start(ENV_SENSOR);
    await clock.advanceAsync(0);
    for (let i = 0; i < 3; i++) link.send("not json\n");
    link.send('{"x": 1}\n');
    await clock.advanceAsync(59_999);
    link.send("not json\n");
    await clock.advanceAsync(1);
    link.send("still not json\n");
    expect(
      metrics.value("leafgate_serial_bad_frames_total", { port: portPath, reason: "bad_json" }),
    ).toBe(5);
    const lines = warnings("bad serial data dropped (logged once a minute per reason)");
    expect(lines.map(({ reason, suppressed }) => [reason, suppressed])).toEqual([
      ["bad_json", undefined],
      ["no_fields", undefined],
      ["bad_json", 3],
    ]);
  });

  it("ends an idle-framed frame after its gap of silence, ticked on the clock", async () => {
    const idle = validateProfile(
      {
        name: "idle-json",
        framing: { type: "idle", gap_ms: 20 },
        decoder: { type: "json_lines" },
        fields: [{ name: "v" }],
        publish: "per_frame",
        subject: "s.{device}",
      },
      "idle-json",
    );
    start(idle);
    await clock.advanceAsync(0);
    link.send('{"v":');
    await clock.advanceAsync(5);
    link.send(" 1}");
    // The last byte came at 5 ms; ticks every 10 ms (half the gap) close it at 30.
    await clock.advanceAsync(24);
    expect(published).toHaveLength(0);
    await clock.advanceAsync(1);
    expect(bodies()).toEqual([["s.dev-1", { v: 1 }]]);
  });

  it("reopens after failures with a doubling delay up to 1 s, saying each reason once", async () => {
    link.failOpens = 5;
    start(ENV_SENSOR);
    await clock.advanceAsync(3_400);
    expect(link.failedAt).toEqual([0, 200, 600, 1_400, 2_400]);
    expect(link.openedAt).toEqual([3_400]);
    expect(warnings("serial port not available; retrying")).toEqual([
      { path: portPath, reason: `cannot open ${portPath}: EBUSY: resource busy` },
    ]);
    expect(device!.status().state).toBe("open");
  });

  it("notices a device node that went away within 500 ms, and reopens once it is back", async () => {
    start(ENV_SENSOR);
    await clock.advanceAsync(100);
    rmSync(portPath);
    await clock.advanceAsync(399);
    expect(device!.status().state).toBe("open");
    await clock.advanceAsync(1);
    expect(device!.status()).toMatchObject({ state: "waiting", reason: "the device went away" });
    expect(link.closes).toBe(1);
    // Reopen attempts at 700 (no node yet) and 1100 (back).
    await clock.advanceAsync(300);
    writeFileSync(portPath, "");
    await clock.advanceAsync(299);
    expect(link.openedAt).toEqual([0]);
    await clock.advanceAsync(1);
    expect(link.openedAt).toEqual([0, 1_100]);
    expect(device!.status()).toMatchObject({ state: "open", since: 1_100 });
    expect(warnings("serial port lost; reopening when it is back")).toEqual([
      { path: portPath, reason: "the device went away" },
    ]);
    expect(warnings("serial port not available; retrying")).toEqual([
      { path: portPath, reason: `${portPath} does not exist (unplugged?)` },
    ]);
  });

  it("takes a link repointed to another device node for a lost port", async () => {
    // /dev/serial/by-id/... names are links: after a replug they may name another node.
    const [first, second] = [join(dir.path, "ttyACM0"), join(dir.path, "ttyACM1")];
    writeFileSync(first, "");
    writeFileSync(second, "");
    rmSync(portPath);
    symlinkSync(first, portPath);
    start(ENV_SENSOR);
    await clock.advanceAsync(0);
    rmSync(portPath);
    symlinkSync(second, portPath);
    await clock.advanceAsync(500);
    expect(device!.status()).toMatchObject({ state: "waiting", reason: "the device was replaced" });
    await clock.advanceAsync(200);
    expect(link.openedAt).toEqual([0, 700]);
  });

  it("stops when its signal aborts: closed() resolves, the port closes, no timer is left", async () => {
    const abort = new AbortController();
    start(ENV_SENSOR, abort.signal);
    await clock.advanceAsync(600);
    abort.abort();
    await expect(device!.closed()).resolves.toBeUndefined();
    expect(device!.status().state).toBe("closed");
    expect(link.closes).toBe(1);
    expect(clock.pending).toBe(0);
    // stop() after the abort, and again, is harmless.
    await device!.stop();
    await device!.stop();
  });

  it("a device stopped while its port waits to reopen leaves no timer", async () => {
    link.failOpens = 1;
    start(METER);
    await clock.advanceAsync(100);
    expect(device!.status().state).toBe("waiting");
    await device!.stop();
    await expect(device!.closed()).resolves.toBeUndefined();
    expect(clock.pending).toBe(0);
  });
});
