import {
  type Bus,
  type Clock,
  type Counter,
  type Envelope,
  errorMessage,
  type Logger,
  type Metrics,
  RateLimitedLog,
  systemClock,
} from "../core/index.js";
import { applyScale, type Value } from "./decoders.js";
import type { DeviceProfile } from "./profile.js";

/**
 * One log line per port and reason at most this often: a device spewing garbage must not
 * fill the log; the counters count everything.
 */
const BAD_DATA_LOG_INTERVAL_MS = 60_000;
const BAD_DATA_LOG_BURST = 1;

/**
 * What every serial device does with decoded values: applies the profile's fields
 * (type, scale, offset), publishes them on the profile's subjects as JSON, and counts
 * and logs (once a minute per reason) what could not be used.
 */
export class DevicePublisher {
  readonly #profile: DeviceProfile;
  readonly #port: string;
  readonly #device: string;
  readonly #bus: Bus;
  readonly #clock: Clock;
  readonly #badLog: RateLimitedLog;
  readonly #badMessage: string;
  readonly #frames: Counter;
  readonly #badCounter: Counter;
  readonly #dropped: Counter;
  #published = 0;
  #bad = 0;
  #lastFrameAt: number | undefined;

  constructor(options: {
    profile: DeviceProfile;
    port: string;
    device: string;
    bus: Bus;
    log: Logger;
    metrics: Metrics;
    /** The log line for bad data, e.g. "bad serial data dropped". */
    badMessage: string;
    clock?: Clock;
  }) {
    this.#profile = options.profile;
    this.#port = options.port;
    this.#device = options.device;
    this.#bus = options.bus;
    this.#clock = options.clock ?? systemClock;
    // Keyed by reason: every reason comes from a fixed set in the framers, decoders and
    // Modbus codec, never from the device's bytes.
    this.#badLog = new RateLimitedLog(options.log, {
      burst: BAD_DATA_LOG_BURST,
      windowMs: BAD_DATA_LOG_INTERVAL_MS,
      clock: this.#clock,
    });
    this.#badMessage = options.badMessage;
    const { metrics } = options;
    this.#frames = metrics.counter("leafgate_serial_frames_total", "Frames decoded, by port");
    this.#badCounter = metrics.counter(
      "leafgate_serial_bad_frames_total",
      "Frames or bytes dropped, by port and reason",
    );
    this.#dropped = metrics.counter(
      "leafgate_serial_dropped_total",
      "Decoded messages the buffer refused, by port",
    );
  }

  /** Frames that published at least one field. */
  get frames(): number {
    return this.#published;
  }

  /** Bad frames and bytes (every reason), as `leafgate_serial_bad_frames_total` counts them. */
  get badFrames(): number {
    return this.#bad;
  }

  /** When the last frame that published was received (clock ms); undefined before one. */
  get lastFrameAt(): number | undefined {
    return this.#lastFrameAt;
  }

  /** Counts bad data; logs it once a minute per reason. */
  bad(reason: string, detail: string): void {
    this.#bad++;
    this.#badCounter.inc({ port: this.#port, reason });
    this.#badLog.log(
      reason,
      { path: this.#port, device: this.#device, reason, detail },
      `${this.#badMessage} (logged once a minute per reason)`,
    );
  }

  /**
   * The profile's fields found in `decoded`, typed and scaled (undefined when none was
   * there), and the values that could not be used. Counts nothing.
   */
  values(decoded: Readonly<Record<string, Value>>): {
    values: Record<string, Value> | undefined;
    failures: { reason: string; detail: string }[];
  } {
    const values: Record<string, Value> = {};
    const failures: { reason: string; detail: string }[] = [];
    let any = false;
    for (const field of this.#profile.fields) {
      const raw = decoded[field.source];
      if (raw === undefined) continue;
      const scaled = applyScale(raw, field);
      if (!scaled.ok) {
        failures.push({ reason: scaled.reason, detail: `${field.name}: ${scaled.detail}` });
        continue;
      }
      values[field.name] = scaled.value;
      any = true;
    }
    return { values: any ? values : undefined, failures };
  }

  /**
   * Publishes the profile's fields found in `decoded`; false when none was there.
   * `device` fills {device} (a Modbus bus with several slaves has one per slave).
   */
  publish(decoded: Readonly<Record<string, Value>>, device: string, kind = "frame"): boolean {
    const profile = this.#profile;
    const { values, failures } = this.values(decoded);
    for (const f of failures) this.bad(f.reason, f.detail);
    if (values === undefined) return false;
    this.#published++;
    this.#frames.inc({ port: this.#port });
    const receivedAtMs = this.#clock.now();
    this.#lastFrameAt = receivedAtMs;
    const base = profile.subject.replaceAll("{device}", device).replaceAll("{kind}", kind);
    if (profile.publish === "per_frame") {
      this.#send(base, values, receivedAtMs);
      return true;
    }
    for (const field of profile.fields) {
      if (!(field.name in values)) continue;
      const value = values[field.name];
      this.#send(
        base.replaceAll("{field}", field.name),
        field.unit === null ? { value } : { value, unit: field.unit },
        receivedAtMs,
      );
    }
    return true;
  }

  #send(subject: string, body: unknown, receivedAtMs: number): void {
    const message: Envelope = {
      subject,
      payload: Buffer.from(JSON.stringify(body)),
      receivedAtMs,
      origin: "serial",
      qos: 1,
    };
    this.#bus.publish(message).catch((err) => {
      this.#dropped.inc({ port: this.#port });
      this.bad("buffer_refused", errorMessage(err));
    });
  }
}
