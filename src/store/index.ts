export {
  type BufferClassSpec,
  type BufferLimits,
  DEFAULT_CLASS,
  type OnFull,
  UNLIMITED,
} from "./buffer-policy.js";
export {
  capDatabaseFile,
  closeDatabase,
  DATABASE_FILE,
  type Durability,
  openDatabase,
  pragma,
} from "./database.js";
export { StoreError } from "./errors.js";
export { Outbox, type OutboxOptions, type OutboxRow } from "./outbox.js";
export { type RetainedMessage, RetainedStore } from "./retained.js";
export {
  type NewStoredMessage,
  SessionStore,
  type StoredMessage,
  type StoredSession,
  type StoredSubscription,
  type StoredWill,
} from "./sessions.js";
