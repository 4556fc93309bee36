import type { Bus, Logger, Metrics } from "../core/index.js";
import { errorMessage, Guard } from "../core/index.js";
import { createDecoder, type DecodeResult, type DecoderSpec } from "./decoders.js";
import { createFramer, type FramingSpec } from "./framing.js";
import { PortManager, type PortStatus, type SerialOpener } from "./port.js";
import { type DeviceProfile, ProfileError, type SerialSettings } from "./profile.js";
import { DevicePublisher } from "./publisher.js";

export interface SerialPortConfig {
  readonly path: string;
  readonly device: string;
  readonly profile: string;
  readonly baud_rate: number | null;
  readonly data_bits?: 5 | 6 | 7 | 8 | null;
  readonly parity?: "none" | "even" | "odd" | null;
  readonly stop_bits?: 1 | 2 | null;
}

/** The port's line settings: what the config says, else what the profile suggests. */
export function lineSettings(config: SerialPortConfig, profile: DeviceProfile): SerialSettings {
  return {
    baudRate: config.baud_rate ?? profile.serial.baudRate,
    dataBits: config.data_bits ?? profile.serial.dataBits,
    parity: config.parity ?? profile.serial.parity,
    stopBits: config.stop_bits ?? profile.serial.stopBits,
  };
}

type Raw = Readonly<Record<string, unknown>>;

const num = (v: unknown, d: number): number => (typeof v === "number" ? v : d);
const str = <T extends string>(v: unknown, d: T): T => (typeof v === "string" ? (v as T) : d);

/** The profile file's framing section (snake_case keys) as the framer's spec. */
export function framingSpec(f: Raw & { type: string }): FramingSpec {
  const maxLength = num(f.max_length, 4096);
  switch (f.type) {
    case "line":
      return {
        type: "line",
        delimiter: str(f.delimiter, "\n"),
        maxLength,
        trimCR: f.trim_cr !== false,
      };
    case "fixed":
      return { type: "fixed", length: num(f.length, 0) };
    case "length_prefixed":
      return {
        type: "length_prefixed",
        lengthBytes: num(f.length_bytes, 1) as 1 | 2 | 4,
        endian: str(f.endian, "big"),
        includesPrefix: f.includes_prefix === true,
        maxLength,
      };
    case "header": {
      const c = f.checksum as Raw | undefined | null;
      return {
        type: "header",
        header: (f.header as number[]) ?? [],
        lengthOffset: num(f.length_offset, 0),
        lengthBytes: num(f.length_bytes, 1) as 1 | 2,
        endian: str(f.endian, "big"),
        lengthAdjust: num(f.length_adjust, 0),
        checksum: c ? { type: str(c.type, "sum16"), endian: str(c.endian, "big") } : null,
        maxLength,
      };
    }
    case "slip":
      return { type: "slip", maxLength };
    default:
      return { type: "idle", gapMs: num(f.gap_ms, 20), maxLength };
  }
}

/** The profile file's decoder section as the decoder's spec. */
export function decoderSpec(d: Raw & { type: string }): DecoderSpec {
  switch (d.type) {
    case "csv":
      return {
        type: "csv",
        columns: (d.columns as string[]) ?? [],
        separator: str(d.separator, ","),
        header: str(d.header, "skip"),
      };
    case "key_value":
      return {
        type: "key_value",
        pairSeparator: str(d.pair_separator, " "),
        kvSeparator: str(d.kv_separator, "="),
      };
    case "nmea":
      return { type: "nmea", sentences: (d.sentences as string[]) ?? ["GGA", "RMC"] };
    case "struct":
      return {
        type: "struct",
        fields: ((d.fields as Raw[]) ?? []).map((f) => ({
          name: str(f.name, ""),
          offset: num(f.offset, 0),
          type: str(f.type, "u16"),
          endian: str(f.endian, str(d.endian, "big")),
        })),
      };
    default:
      return { type: "json_lines" };
  }
}

/** Builds a profile's framer and decoder once, so a bad spec fails `leafgate check`. */
export function validateDevice(profile: DeviceProfile): void {
  try {
    createDecoder(decoderSpec(profile.decoder));
    createFramer(framingSpec(profile.framing), { frame: () => {}, bad: () => {} });
  } catch (err) {
    throw new ProfileError(profile.name, [errorMessage(err)]);
  }
}

/**
 * A serial device: its port, framer and decoder, publishing typed fields onto the bus.
 * A bad frame or an unplugged device costs only this device: counted, logged once a
 * minute per reason, and the next good frame is decoded.
 */
export class SerialDevice {
  readonly config: SerialPortConfig;
  readonly profile: DeviceProfile;
  readonly #port: PortManager;
  readonly #out: DevicePublisher;
  #idleTimer: NodeJS.Timeout | undefined;

  constructor(options: {
    config: SerialPortConfig;
    profile: DeviceProfile;
    bus: Bus;
    log: Logger;
    metrics: Metrics;
    open?: SerialOpener;
  }) {
    const { config, profile, log, metrics } = options;
    this.config = config;
    this.profile = profile;
    this.#out = new DevicePublisher({
      profile,
      port: config.path,
      device: config.device,
      bus: options.bus,
      log,
      metrics,
      badMessage: "bad serial data dropped",
    });
    let decode: (frame: Buffer) => DecodeResult;
    let framer: ReturnType<typeof createFramer>;
    try {
      decode = createDecoder(decoderSpec(profile.decoder));
      framer = createFramer(framingSpec(profile.framing), {
        frame: (bytes) => this.#onFrame(decode(bytes)),
        bad: (reason, bytes) => this.#out.bad(reason, `${bytes} bytes`),
      });
    } catch (err) {
      throw new ProfileError(profile.name, [errorMessage(err)]);
    }
    const settings = lineSettings(config, profile);
    // The device's bytes drive these callbacks: a bug they reach drops the partial frame
    // (counted, logged once), never the process.
    const guard = new Guard(log, metrics);
    const reset = (): void => framer.reset();
    this.#port = new PortManager({
      path: config.path,
      settings,
      log,
      onData: guard.wrap("serial.data", (chunk: Buffer) => framer.push(chunk, Date.now()), reset),
      onOpen: () => framer.reset(),
      ...(options.open ? { open: options.open } : {}),
    });
    if (profile.framing.type === "idle") {
      const gap = framingSpec(profile.framing);
      const every = Math.max(5, (gap.type === "idle" ? gap.gapMs : 20) / 2);
      this.#idleTimer = setInterval(
        guard.wrap("serial.idle-tick", () => framer.tick(Date.now()), reset),
        every,
      );
      this.#idleTimer.unref();
    }
  }

  start(): void {
    this.#port.start();
  }

  async stop(): Promise<void> {
    clearInterval(this.#idleTimer);
    await this.#port.stop();
  }

  status(): { device: string; path: string; profile: string; frames: number } & PortStatus {
    return {
      device: this.config.device,
      path: this.config.path,
      profile: this.profile.name,
      frames: this.#out.frames,
      ...this.#port.status(),
    };
  }

  #onFrame(result: DecodeResult): void {
    if (!result.ok) {
      this.#out.bad(result.reason, result.detail);
      return;
    }
    // A header row carries no values by design; anything else without a profile field
    // means the profile's field sources do not match what the decoder produced.
    const published = this.#out.publish(result.values, this.config.device, result.kind);
    if (!published && result.kind !== "header") {
      this.#out.bad("no_fields", "no profile field in the frame");
    }
  }
}
