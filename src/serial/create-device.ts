import { type SerialPortConfig, validateDevice } from "./device.js";
import { ModbusDevice } from "./modbus-device.js";
import { validateModbusDevice } from "./modbus-spec.js";
import type { Device, DeviceDeps } from "./port-device.js";
import type { DeviceProfile } from "./profile.js";
import { StreamingDevice } from "./stream-device.js";

/** A Modbus profile's device is polled by the gateway; every other kind sends by itself. */
const isPolled = (profile: DeviceProfile): boolean => profile.decoder.type === "modbus";

/**
 * The device for a configured port: polled (Modbus RTU) or streaming, as its profile says.
 * Throws ProfileError for a profile that cannot work, before anything opens.
 */
export function createDevice(
  config: SerialPortConfig,
  profile: DeviceProfile,
  deps: DeviceDeps,
): Device {
  const options = { ...deps, config, profile };
  return isPolled(profile) ? new ModbusDevice(options) : new StreamingDevice(options);
}

/**
 * Builds what a device of `profile` needs once (its framer and decoder, or its Modbus
 * plan), so a bad profile fails `leafgate check`, and the start before anything opens.
 */
export function validateDeviceProfile(profile: DeviceProfile): void {
  if (isPolled(profile)) validateModbusDevice(profile);
  else validateDevice(profile);
}
