import { type Gauge, type Labels, subjectMatches } from "../core/index.js";

export type OnFull = "drop_oldest" | "reject";

/** A priority class as configured: subjects it takes, its own limits, what happens when full. */
export interface BufferClassSpec {
  readonly name: string;
  readonly subjects: readonly string[];
  readonly onFull: OnFull;
  readonly maxBytes: number | null;
  readonly maxMessages: number | null;
  readonly maxAgeMs: number | null;
}

/** Limits for the whole buffer, and the classes that share it. */
export interface BufferLimits {
  readonly maxBytes: number;
  readonly maxMessages: number;
  readonly maxAgeMs: number;
  /** Policy of the implicit `default` class (subjects no class names). */
  readonly onFull: OnFull;
  readonly classes: readonly BufferClassSpec[];
}

/** Where subjects that no configured class names go. */
export const DEFAULT_CLASS = "default";

export const UNLIMITED: BufferLimits = {
  maxBytes: Number.POSITIVE_INFINITY,
  maxMessages: Number.POSITIVE_INFINITY,
  maxAgeMs: Number.POSITIVE_INFINITY,
  onFull: "drop_oldest",
  classes: [],
};

/** Subjects remembered by `classify`; cleared when full, like the bus's match cache. */
const CLASSIFY_CACHE_MAX = 4096;

/** Bytes a row counts against the limits: payload plus subject. */
export function rowSize(subject: string, payloadBytes: number): number {
  return payloadBytes + subject.length;
}

/** Rows and bytes over a limit (0 when within it). */
export interface Excess {
  readonly messages: number;
  readonly bytes: number;
}

/** A row as the policy counts it. */
export interface SizedRow {
  readonly cls: BufferClass;
  readonly size: number;
}

/** A row as the table returns it when it leaves: its class by name. */
export interface StoredRowSize {
  readonly class: string;
  readonly size: number;
}

/** A priority class with its limits resolved against the global ones; BufferPolicy keeps its numbers. */
export class BufferClass {
  readonly name: string;
  readonly patterns: readonly string[];
  readonly onFull: OnFull;
  readonly maxBytes: number;
  readonly maxMessages: number;
  readonly maxAgeMs: number;

  constructor(spec: BufferClassSpec, global: BufferLimits) {
    this.name = spec.name;
    this.patterns = spec.subjects;
    this.onFull = spec.onFull;
    this.maxBytes = spec.maxBytes ?? global.maxBytes;
    this.maxMessages = spec.maxMessages ?? global.maxMessages;
    this.maxAgeMs = spec.maxAgeMs ?? global.maxAgeMs;
  }
}

/** One class's live accounting: committed rows plus rows waiting for the next commit. */
interface Usage {
  count: number;
  bytes: number;
  pendingCount: number;
  pendingBytes: number;
}

/** Where the committed numbers are published (per class); absent in tests that do not look. */
export interface BufferGauges {
  readonly messages: Gauge;
  readonly bytes: Gauge;
  /** Set on every series besides `class` (an account's queue: `account`). */
  readonly labels?: Labels | undefined;
}

/**
 * Maps subjects to priority classes and keeps each class's and the whole buffer's
 * accounting: the outbox tells it what happened (rows queued, committed, abandoned,
 * removed), and it alone changes the numbers, publishing each class's to the gauges. A
 * subject belongs to the first class with a matching pattern, else to `default`. A class
 * only ever evicts its own rows, so a class that rejects when full (alarms) is never
 * evicted to make room for one that drops (telemetry).
 */
export class BufferPolicy {
  readonly limits: BufferLimits;
  readonly classes: readonly BufferClass[];
  readonly #byName = new Map<string, BufferClass>();
  readonly #default: BufferClass;
  readonly #usage = new Map<BufferClass, Usage>();
  readonly #gauges: BufferGauges | undefined;
  #cache = new Map<string, BufferClass>();

  constructor(limits: BufferLimits, gauges?: BufferGauges) {
    this.limits = limits;
    this.#gauges = gauges;
    const classes = limits.classes.map((spec) => new BufferClass(spec, limits));
    this.#default = new BufferClass(
      {
        name: DEFAULT_CLASS,
        subjects: [">"],
        onFull: limits.onFull,
        maxBytes: null,
        maxMessages: null,
        maxAgeMs: null,
      },
      limits,
    );
    classes.push(this.#default);
    this.classes = classes;
    for (const c of classes) {
      this.#byName.set(c.name, c);
      this.#usage.set(c, { count: 0, bytes: 0, pendingCount: 0, pendingBytes: 0 });
    }
  }

  classify(subject: string): BufferClass {
    const hit = this.#cache.get(subject);
    if (hit !== undefined) return hit;
    let found = this.#default;
    for (const c of this.classes) {
      if (c !== this.#default && c.patterns.some((p) => subjectMatches(p, subject))) {
        found = c;
        break;
      }
    }
    if (this.#cache.size >= CLASSIFY_CACHE_MAX) this.#cache = new Map();
    this.#cache.set(subject, found);
    return found;
  }

  /** The class stored under `name`; rows of a class no longer configured count as default. */
  byName(name: string): BufferClass {
    return this.#byName.get(name) ?? this.#default;
  }

  /** Committed messages and bytes of `cls`. */
  usage(cls: BufferClass): { messages: number; bytes: number } {
    const u = this.#use(cls);
    return { messages: u.count, bytes: u.bytes };
  }

  /** Committed messages over every class. */
  committedMessages(): number {
    let n = 0;
    for (const u of this.#usage.values()) n += u.count;
    return n;
  }

  /** Rows over `cls`'s own limits once pending rows are committed. */
  excess(cls: BufferClass): Excess {
    const u = this.#use(cls);
    return {
      messages: Math.max(0, u.count + u.pendingCount - cls.maxMessages),
      bytes: Math.max(0, u.bytes + u.pendingBytes - cls.maxBytes),
    };
  }

  /** Rows over the whole buffer's limits once pending rows are committed. */
  globalExcess(): Excess {
    let count = 0;
    let bytes = 0;
    for (const u of this.#usage.values()) {
      count += u.count + u.pendingCount;
      bytes += u.bytes + u.pendingBytes;
    }
    return {
      messages: Math.max(0, count - this.limits.maxMessages),
      bytes: Math.max(0, bytes - this.limits.maxBytes),
    };
  }

  /**
   * Whether a row of `size` bytes of a `reject` class may be accepted: it must fit its
   * class's own limits, and the whole buffer counting only rows nothing may evict (those
   * of reject classes) — rows of drop_oldest classes give way to it in the commit.
   */
  fits(cls: BufferClass, size: number): boolean {
    const own = this.#use(cls);
    if (own.count + own.pendingCount + 1 > cls.maxMessages) return false;
    if (own.bytes + own.pendingBytes + size > cls.maxBytes) return false;
    let count = 0;
    let bytes = 0;
    for (const [c, u] of this.#usage) {
      if (c.onFull !== "reject") continue;
      count += u.count + u.pendingCount;
      bytes += u.bytes + u.pendingBytes;
    }
    return count + 1 <= this.limits.maxMessages && bytes + size <= this.limits.maxBytes;
  }

  /** A row waits for the next commit. */
  queued(cls: BufferClass, size: number): void {
    const u = this.#use(cls);
    u.pendingCount++;
    u.pendingBytes += size;
  }

  /** Pending rows are on disk now. */
  committed(rows: readonly SizedRow[]): void {
    const touched = new Set<BufferClass>();
    for (const { cls, size } of rows) {
      const u = this.#use(cls);
      u.pendingCount--;
      u.pendingBytes -= size;
      u.count++;
      u.bytes += size;
      touched.add(cls);
    }
    this.#publish(touched);
  }

  /** Pending rows that will never be committed. */
  abandoned(rows: readonly SizedRow[]): void {
    for (const { cls, size } of rows) {
      const u = this.#use(cls);
      u.pendingCount--;
      u.pendingBytes -= size;
    }
  }

  /**
   * Committed rows left the table (forwarded, evicted, expired, reconciled). Inside a
   * transaction the caller reloads after a rollback.
   */
  removed(rows: readonly StoredRowSize[]): void {
    const touched = new Set<BufferClass>();
    for (const row of rows) {
      const cls = this.byName(row.class);
      const u = this.#use(cls);
      u.count--;
      u.bytes -= row.size;
      touched.add(cls);
    }
    this.#publish(touched);
  }

  /** Like `removed`, for rows counted per class (a forwarded range: OutboxTable.deleteRanges). */
  removedGroups(groups: readonly { class: string; n: number; bytes: number }[]): void {
    const touched = new Set<BufferClass>();
    for (const group of groups) {
      const cls = this.byName(group.class);
      const u = this.#use(cls);
      u.count -= group.n;
      u.bytes -= group.bytes;
      touched.add(cls);
    }
    this.#publish(touched);
  }

  /**
   * Sets every class's committed numbers from the table's truth: at start, and after a
   * rolled-back transaction whose removals had already been counted.
   */
  reload(perClass: readonly { class: string; n: number; bytes: number }[]): void {
    for (const u of this.#usage.values()) {
      u.count = 0;
      u.bytes = 0;
    }
    for (const row of perClass) {
      const u = this.#use(this.byName(row.class));
      u.count += row.n;
      u.bytes += row.bytes;
    }
    this.#publish(this.classes);
  }

  #use(cls: BufferClass): Usage {
    return this.#usage.get(cls)!;
  }

  #publish(classes: Iterable<BufferClass>): void {
    if (this.#gauges === undefined) return;
    for (const cls of classes) {
      const u = this.#use(cls);
      const labels = { class: cls.name, ...this.#gauges.labels };
      this.#gauges.messages.set(u.count, labels);
      this.#gauges.bytes.set(u.bytes, labels);
    }
  }
}
