export { SerialDevice, type SerialPortConfig, validateDevice } from "./device.js";
export { ModbusDevice } from "./modbus-device.js";
export { type ModbusSpec, modbusSpec, validateModbusDevice } from "./modbus-spec.js";
export type { PortStatus, SerialOpener } from "./port.js";
export {
  type DeviceProfile,
  loadProfile,
  ProfileError,
  type ProfileField,
  validateProfile,
} from "./profile.js";
export { builtInProfileDirs, resolveProfile } from "./profiles.js";
