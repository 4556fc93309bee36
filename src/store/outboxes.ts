import type Database from "better-sqlite3";
import type { Envelope } from "../core/index.js";
import type { BufferLimits } from "./buffer-policy.js";
import type { DiskGuard, DiskStatus } from "./disk-guard.js";
import { StoreError } from "./errors.js";
import { diskGuard, Outbox, type OutboxOptions } from "./outbox.js";

/** One account's queue as configured: its name and its buffer limits. */
export interface AccountQueue {
  readonly name: string;
  readonly limits: BufferLimits;
}

export interface OutboxesOptions extends Omit<OutboxOptions, "limits" | "account" | "disk"> {
  /** Every account's queue, the global account `$G` among them. */
  readonly accounts: readonly AccountQueue[];
}

/**
 * The outbox of every account: one ordered queue each (its own rows, read cursor, buffer
 * limits and priority classes, group commits and upkeep), in one database whose disk
 * guard they share. One account's flood can only evict, expire or refuse its own rows.
 * docs/outbox.md, "Accounts".
 */
export class Outboxes {
  readonly #queues = new Map<string, Outbox>();
  readonly #disk: DiskGuard;

  constructor(db: Database.Database, options: OutboxesOptions) {
    const { accounts, ...common } = options;
    const disk = diskGuard(db, common.log, common.metrics);
    this.#disk = disk;
    for (const { name, limits } of accounts) {
      this.#queues.set(
        name,
        new Outbox(db, {
          ...common,
          limits,
          account: name,
          disk,
          sharedTable: accounts.length > 1,
        }),
      );
    }
    const orphans = db
      .prepare("SELECT account, count(*) AS n FROM outbox GROUP BY account")
      .all() as { account: string; n: number }[];
    for (const { account, n } of orphans) {
      if (this.#queues.has(account)) continue;
      common.log.warn(
        { account, rows: n },
        "the outbox holds rows of an account the config no longer has; they stay in the database, unsent, until the account is configured again",
      );
    }
  }

  /** The queue of `account`; throws for an account the config does not have. */
  of(account: string): Outbox {
    const queue = this.#queues.get(account);
    if (queue === undefined) {
      throw new StoreError(
        "LG_ERR_UNKNOWN_ACCOUNT",
        `no outbox queue for account ${JSON.stringify(account)}; the accounts are ${[...this.#queues.keys()].join(", ")}`,
      );
    }
    return queue;
  }

  /** Queues `message` in `account`'s queue (Outbox.append). */
  append(message: Envelope, account: string): Promise<void> {
    try {
      return this.of(account).append(message);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** The disk guard every queue shares. */
  diskStatus(): DiskStatus {
    return this.#disk.status();
  }

  /** Every queue, in the accounts' order. */
  queues(): Outbox[] {
    return [...this.#queues.values()];
  }

  /** Rows waiting to be forwarded, over every account. */
  get size(): number {
    let n = 0;
    for (const q of this.#queues.values()) n += q.size;
    return n;
  }

  flush(): void {
    for (const q of this.#queues.values()) q.flush();
  }

  /** Starts every queue's upkeep (Outbox.startMaintenance). */
  startMaintenance(intervalMs?: number, signal?: AbortSignal): void {
    for (const q of this.#queues.values()) q.startMaintenance(intervalMs, signal);
  }

  close(): void {
    for (const q of this.#queues.values()) q.close();
  }

  /** Resolves once every queue has closed; never rejects. */
  async closed(): Promise<Error | undefined> {
    const errors = await Promise.all([...this.#queues.values()].map((q) => q.closed()));
    return errors.find((e) => e !== undefined);
  }
}
