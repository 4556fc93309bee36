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
  SESSION_MESSAGE_ROW_BYTES,
} from "./database.js";
export { StoreError } from "./errors.js";
export { Outbox, type OutboxOptions, type OutboxReader } from "./outbox.js";
export type { OutboxRow } from "./outbox-table.js";
export { type RetainedMessage, RetainedStore, type RetainedStoreOptions } from "./retained.js";
export {
  type NewStoredMessage,
  queuedBytesOf,
  SessionStore,
  type SessionStoreOptions,
  type StoredMessage,
  type StoredSession,
  type StoredSessionWithMessages,
  type StoredSubscription,
  type StoredWill,
  sessionStoreQuota,
  sessionStoreUsage,
} from "./sessions.js";
