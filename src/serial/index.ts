export { COMMAND_ERROR_HEADER } from "./command-reply.js";
export { type CommandOutcome, MAX_QUEUED_COMMANDS } from "./command-runner.js";
export { createDevice } from "./create-device.js";
export type { SerialPortConfig } from "./device.js";
export { type ModbusSpec, modbusSpec, validateModbusDevice } from "./modbus-spec.js";
export type { PortStatus, SerialOpener } from "./port.js";
export type { Device, DeviceDeps, DeviceStatus } from "./port-device.js";
export {
  type DeviceProfile,
  loadProfile,
  type ProfileCommand,
  ProfileError,
  type ProfileField,
  validateProfile,
} from "./profile.js";
export { builtInProfileDirs, resolveProfile } from "./profiles.js";
