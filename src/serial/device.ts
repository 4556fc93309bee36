/** A port's config and its line settings. The devices themselves: docs/serial.md. */
import type { DeviceProfile, SerialSettings } from "./profile.js";

export interface SerialPortConfig {
  readonly path: string;
  readonly device: string;
  readonly profile: string;
  readonly baud_rate: number | null;
  readonly data_bits?: 5 | 6 | 7 | 8 | null;
  readonly parity?: "none" | "even" | "odd" | null;
  readonly stop_bits?: 1 | 2 | null;
  /** ms without a good frame after which the device counts as silent; null: see status. */
  readonly silent_after?: number | null;
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
