export { closeDatabase, DATABASE_FILE, type Durability, openDatabase } from "./database.js";
export { StoreError } from "./errors.js";
export { Outbox, type OutboxOptions, type OutboxRow } from "./outbox.js";
