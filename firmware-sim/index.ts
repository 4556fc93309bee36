export {
  type Answer,
  type CommandModel,
  envSensorCommands,
  GPS_RELEASE,
  gpsCommands,
  pms5003Commands,
} from "./commands.js";
export {
  energyMeter,
  type ModbusRequestRecord,
  ModbusSlaveSimulator,
  type RegisterModel,
} from "./modbus-slave.js";
export { envSensor, MODELS, pms5003 } from "./models.js";
export { PtyPair } from "./pty.js";
export { type DeviceModel, type RequestRecord, type SentFrame, Simulator } from "./simulator.js";
