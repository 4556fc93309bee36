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
  type Durability,
  openDatabase,
  sqliteVersion,
} from "./database.js";
export type { DiskStatus } from "./disk-guard.js";
export { StoreError } from "./errors.js";
export { DATABASE_FILE } from "./file-modes.js";
export { ImportCursors, type ImportStream } from "./import-cursors.js";
export {
  accountLabels,
  type ClassStatus,
  Outbox,
  type OutboxOptions,
  type OutboxReader,
} from "./outbox.js";
export type { OutboxRow } from "./outbox-table.js";
export { type AccountQueue, Outboxes, type OutboxesOptions } from "./outboxes.js";
export {
  type AccountRetained,
  type RetainedMessage,
  RetainedStore,
  type RetainedStoreOptions,
} from "./retained.js";
export { SESSION_MESSAGE_ROW_BYTES } from "./schema.js";
export {
  queuedBytesOf,
  sessionStoreQuota,
  sessionStoreUsage,
} from "./session-quota.js";
export type * from "./session-types.js";
export { SessionStore, type SessionStoreOptions } from "./sessions.js";
export { pragma } from "./statements.js";
