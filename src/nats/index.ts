export { type NatsAuth, natsAuth, OPEN_NATS_AUTH } from "./auth.js";
export {
  DEFAULT_NATS_CONNECTION_OPTIONS,
  NatsConnection,
  type NatsConnectionOptions,
  type NatsEnvelope,
} from "./connection.js";
export {
  type ConnectOptions,
  type NatsConnectionState,
  parseConnect,
} from "./connection-state.js";
export {
  decodeHeaders,
  encodeErr,
  encodeHeaders,
  encodeHmsg,
  encodeInfo,
  encodeMsg,
  type NatsHeaders,
  OK_FRAME,
  PING_FRAME,
  PONG_FRAME,
} from "./encode.js";
export { errText, NATS_VIOLATIONS, NatsProtocolError, type NatsViolation } from "./errors.js";
export {
  NatsListener,
  type NatsListenerCounters,
  type NatsListenerLimits,
  type NatsListenerOptions,
} from "./listener.js";
export {
  type ClientOp,
  ClientParser,
  DEFAULT_PARSER_LIMITS,
  type ParserLimits,
} from "./parser.js";
