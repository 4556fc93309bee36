import type { SerialPortConfig } from "./device.js";
import { ModbusDevice } from "./modbus-device.js";
import type { Device, DeviceDeps } from "./port-device.js";
import type { DeviceProfile } from "./profile.js";
import { StreamingDevice } from "./stream-device.js";

/**
 * The device for a configured port, as its profile says: polled (a Modbus RTU profile) or
 * streaming (every other). The profile was checked when it was loaded, so nothing here
 * fails on a profile that `validateProfile` accepted.
 */
export function createDevice(
  config: SerialPortConfig,
  profile: DeviceProfile,
  deps: DeviceDeps,
): Device {
  const options = { ...deps, config, profile };
  return profile.spec.kind === "modbus" ? new ModbusDevice(options) : new StreamingDevice(options);
}
