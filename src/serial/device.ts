/**
 * A port's config, and a streaming profile's framing and decoder sections as the specs the
 * framer and decoder take. The devices themselves: docs/serial.md.
 */
import { errorMessage } from "../core/index.js";
import { createDecoder, type DecoderSpec } from "./decoders.js";
import { createFramer, type FramingSpec } from "./framing.js";
import { type DeviceProfile, ProfileError, type SerialSettings } from "./profile.js";

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
