import { errorMessage, LeafgateError } from "../core/index.js";

/** A storage failure; `sqliteCode` is better-sqlite3's code (`SQLITE_FULL`, `SQLITE_BUSY`…). */
export class StoreError extends LeafgateError {
  readonly sqliteCode: string | undefined;

  constructor(code: string, message: string, cause?: unknown) {
    super(code, cause === undefined ? message : `${message}: ${errorMessage(cause)}`, { cause });
    const sqliteCode = (cause as { code?: unknown } | undefined)?.code;
    this.sqliteCode = typeof sqliteCode === "string" ? sqliteCode : undefined;
  }
}
