export { Authenticator, hashPassword, verifyPassword } from "../core/index.js";
export { Broker, type BrokerParts } from "./broker.js";
export { MqttProtocolError, VIOLATIONS } from "./errors.js";
export { MqttListener } from "./listener.js";
export { type BrokerOptions, DEFAULT_BROKER_OPTIONS } from "./options.js";
export type { Transport, TransportHandler } from "./transport.js";
