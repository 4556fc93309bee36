import { randomBytes } from "node:crypto";
import {
  closeSync,
  fchmodSync,
  openSync,
  renameSync,
  rmSync,
  statfsSync,
  statSync,
  writeSync,
} from "node:fs";
import { dirname, join } from "node:path";
import type Database from "better-sqlite3";
import type { Gauge, Logger } from "../core/index.js";
import { errorMessage } from "../core/index.js";
import { DATA_FILE_MODE, tightenFile } from "./file-modes.js";
import { pragma } from "./statements.js";

/** Kept beside the database; released when the disk fills, re-made when space returns. */
export const RESERVE_FILE = "leafgate.reserve";

/**
 * Space held back for the moment the disk fills. On a real full disk SQLite cannot even
 * delete: every change is appended to the WAL first, and the WAL cannot be reset until a
 * checkpoint has copied it into the database file, which must grow to take the pages
 * added since the last checkpoint. Those are at most about two WALs' worth (SQLite
 * checkpoints every 1000 pages, ~4 MiB; once checkpoints fail for want of space, the WAL
 * grows by what was still free, which is less than one checkpoint), and afterwards the WAL
 * needs room to grow to its checkpoint size again: 16 MiB covers both.
 */
export const RESERVE_BYTES = 16 * 1024 * 1024;

/**
 * Free space beyond the reserve before the buffer may grow again: a WAL's worth, so that
 * re-making the reserve is not followed at once by another full disk.
 */
export const RESUME_SLACK_BYTES = 4 * 1024 * 1024;

/**
 * A write that failed for want of space leaves less than this free: SQLite writes WAL
 * frames until the kernel refuses one (ENOSPC), so the disk is down to its last partial
 * block. More free than this means SQLite's own cap (max_page_count, from
 * `buffer.max_file_size`) refused the page, not the disk.
 */
const DISK_REFUSED_BELOW_BYTES = 1024 * 1024;

/**
 * The reserve is written in chunks of random bytes, so that a compressing filesystem
 * (btrfs, ZFS) really allocates it; repeated chunks are larger than their compression
 * blocks (128 KiB).
 */
const RESERVE_CHUNK_BYTES = 1024 * 1024;

/**
 * What the outbox should do after a write failed with SQLITE_FULL: retry as it is (there
 * is space again), make room by evicting (the buffer is full), or refuse without evicting
 * ("stuck": the disk refused, the WAL could not be checkpointed, so an eviction could
 * not be written, or would only lose rows without making room).
 */
/**
 * The guard in `/status`: `off` (an in-memory database, or no statfs: SQLite's errors
 * alone decide), `ok` (the reserve is held, the database may grow) or `full` (the disk
 * filled: the database is capped at its size, the buffer is full, until `resumeAtFreeBytes`
 * are free in the data dir).
 */
export interface DiskStatus {
  readonly state: "off" | "ok" | "full";
  readonly reserveBytes: number;
  readonly resumeAtFreeBytes: number;
  /** Free bytes in the data dir now; null when unknown. */
  readonly freeBytes: number | null;
}

export type FullOutcome = "space-returned" | "full" | "stuck";

/**
 * Makes a real full disk behave like a full buffer. While a reserve file is held, the
 * database may grow; when the disk refuses a write (or at start there is no room for the
 * reserve), the guard releases the reserve, checkpoints the WAL into the database file,
 * and caps the database at its current size (`max_page_count`). From then on a full
 * buffer is SQLite refusing a new page — which eviction can answer, since freed pages are
 * reused and the WAL is rewritten in place — not the kernel refusing a write, which
 * nothing inside SQLite can answer. Once the reserve fits again with room to spare, the
 * cap is lifted and the reserve re-made.
 */
export class DiskGuard {
  readonly #db: Database.Database;
  readonly #log: Logger;
  readonly #gauge: Gauge;
  readonly #dir: string;
  readonly #reserve: string;
  #started = false;
  /** Capped at its current size because the disk is full. */
  #full = false;
  /** `max_page_count` before any cap of ours (SQLite's default, or `buffer.max_file_size`). */
  #maxPages = 0;

  constructor(db: Database.Database, log: Logger, gauge: Gauge) {
    this.#db = db;
    this.#log = log;
    this.#gauge = gauge;
    this.#dir = dirname(db.name);
    this.#reserve = join(this.#dir, RESERVE_FILE);
  }

  /**
   * Starts guarding a database on a real file: keeps or makes the reserve, or, when there
   * is no room for it, caps the database where it is. Call after any configured cap.
   */
  start(): void {
    if (this.#started || this.#db.memory) return;
    if (this.#freeBytes() === undefined) {
      // Without statfs a full disk cannot be told from a cap: SQLite's errors alone decide.
      this.#log.warn({ dir: this.#dir }, "cannot read the free space of the data dir");
      return;
    }
    this.#started = true;
    tightenFile(this.#reserve, this.#log);
    this.#maxPages = pragma(this.#db, "max_page_count", true) as number;
    this.#gauge.set(0);
    if (this.#reserveHeld() || this.#makeReserve()) return;
    this.#checkpoint();
    this.#cap("at start there is no room for the disk reserve");
  }

  /**
   * After a write failed with SQLITE_FULL (see FullOutcome). When it was the disk that
   * refused, the reserve is released, the WAL checkpointed and the database capped first,
   * so that eviction can work: the WAL is then rewritten in place, and freed pages reused.
   */
  onFull(): FullOutcome {
    if (!this.#started) return "full";
    try {
      return this.#onFull();
    } catch (err) {
      // Never worse than without a guard: the outbox treats it as a full buffer.
      this.#log.error({ err: errorMessage(err) }, "handling a full disk failed");
      return "full";
    }
  }

  #onFull(): FullOutcome {
    const free = this.#freeBytes();
    if (free === undefined) return "full";
    if (this.#full) {
      if (free >= RESERVE_BYTES + RESUME_SLACK_BYTES && this.#lift()) return "space-returned";
      if (free >= DISK_REFUSED_BELOW_BYTES) return "full"; // our cap refused
      // The disk refused too: the WAL was not reset since the cap (as after a restart).
      return this.#checkpoint() ? "full" : "stuck";
    }
    if (free >= DISK_REFUSED_BELOW_BYTES) return "full"; // max_page_count, not the disk
    const released = this.#releaseReserve();
    const checkpointed = this.#checkpoint();
    this.#cap(
      released ? "the disk is full; the reserve was released" : "the disk is full (no reserve)",
    );
    // Without a checkpoint the WAL can only grow: into the released reserve, if any.
    if (checkpointed || (this.#freeBytes() ?? 0) >= DISK_REFUSED_BELOW_BYTES) return "full";
    return "stuck";
  }

  /** Its state now (one statfs). */
  status(): DiskStatus {
    return {
      state: !this.#started ? "off" : this.#full ? "full" : "ok",
      reserveBytes: RESERVE_BYTES,
      resumeAtFreeBytes: RESERVE_BYTES + RESUME_SLACK_BYTES,
      freeBytes: this.#started ? (this.#freeBytes() ?? null) : null,
    };
  }

  /** Periodic upkeep: lifts the cap once space returned, re-makes a lost reserve. */
  poll(): void {
    if (!this.#started) return;
    try {
      if (this.#full) {
        const free = this.#freeBytes();
        if (free !== undefined && free >= RESERVE_BYTES + RESUME_SLACK_BYTES) this.#lift();
        return;
      }
      if (this.#reserveHeld() || this.#makeReserve()) return;
      this.#cap("the disk reserve is gone and there is no room to make it again");
    } catch (err) {
      this.#log.warn({ err: errorMessage(err) }, "checking the disk reserve failed");
    }
  }

  #cap(why: string): void {
    const pages = pragma(this.#db, "page_count", true) as number;
    pragma(this.#db, `max_page_count = ${pages}`);
    this.#full = true;
    this.#gauge.set(1);
    const pageSize = pragma(this.#db, "page_size", true) as number;
    this.#log.warn(
      { databaseBytes: pages * pageSize, freeBytes: this.#freeBytes() },
      `${why}: the buffer is full at its current size (drop_oldest classes evict, reject classes refuse) until ${RESERVE_BYTES + RESUME_SLACK_BYTES} bytes are free in the data dir`,
    );
  }

  /** Lifts the cap if the reserve could be made again. */
  #lift(): boolean {
    if (!this.#makeReserve()) return false;
    pragma(this.#db, `max_page_count = ${this.#maxPages}`);
    this.#full = false;
    this.#gauge.set(0);
    this.#log.info({ freeBytes: this.#freeBytes() }, "disk space is back: the buffer may grow");
    return true;
  }

  /**
   * A passive checkpoint (all of the WAL: this connection is the only one), so that the
   * WAL is rewritten in place from the next write on. False when the database file could
   * not grow to take the WAL: writes then go on growing the WAL.
   */
  #checkpoint(): boolean {
    try {
      pragma(this.#db, "wal_checkpoint(PASSIVE)");
      return true;
    } catch (err) {
      this.#log.warn({ err: errorMessage(err) }, "WAL checkpoint on a full disk failed");
      return false;
    }
  }

  #freeBytes(): number | undefined {
    try {
      const s = statfsSync(this.#dir);
      return s.bavail * s.bsize;
    } catch {
      return undefined;
    }
  }

  /**
   * Whether the whole reserve is there. Its size is what counts: it was written byte by
   * byte, so it is allocated (block counts lag behind on some filesystems, e.g. ZFS).
   */
  #reserveHeld(): boolean {
    try {
      return statSync(this.#reserve).size >= RESERVE_BYTES;
    } catch {
      return false;
    }
  }

  /**
   * Writes the reserve under a temporary name and renames it, so a crash never leaves a
   * short reserve under the real name. Only with room to spare: making it must not be
   * what fills the disk.
   */
  #makeReserve(): boolean {
    const partial = `${this.#reserve}.partial`;
    try {
      rmSync(partial, { force: true }); // left by a crash while making it
      if ((this.#freeBytes() ?? 0) < RESERVE_BYTES + RESUME_SLACK_BYTES) return false;
      const chunk = randomBytes(RESERVE_CHUNK_BYTES);
      const fd = openSync(partial, "w", DATA_FILE_MODE);
      try {
        // Set, not left to the umask: like every file in the data dir, it is the gateway's.
        fchmodSync(fd, DATA_FILE_MODE);
        // No fsync: filesystems reserve blocks when written (delayed allocation included),
        // which is all that matters here.
        let written = 0;
        while (written < RESERVE_BYTES) {
          written += writeSync(fd, chunk, 0, Math.min(chunk.length, RESERVE_BYTES - written));
        }
      } finally {
        closeSync(fd);
      }
      renameSync(partial, this.#reserve);
      return true;
    } catch (err) {
      this.#log.warn(
        { err: errorMessage(err), file: this.#reserve },
        "cannot make the disk reserve",
      );
      try {
        rmSync(partial, { force: true });
      } catch {
        // Nothing more to do: the next attempt removes it first.
      }
      return false;
    }
  }

  /** Deletes the reserve; true if there was one. */
  #releaseReserve(): boolean {
    const held = this.#reserveHeld();
    try {
      rmSync(this.#reserve, { force: true });
    } catch (err) {
      this.#log.warn(
        { err: errorMessage(err), file: this.#reserve },
        "cannot release the disk reserve",
      );
      return false;
    }
    return held;
  }
}
