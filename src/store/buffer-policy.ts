import { subjectMatches } from "../core/index.js";

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

/** One class's live accounting: committed rows plus rows waiting for the next commit. */
export class BufferClass {
  readonly name: string;
  readonly patterns: readonly string[];
  readonly onFull: OnFull;
  readonly maxBytes: number;
  readonly maxMessages: number;
  readonly maxAgeMs: number;
  count = 0;
  bytes = 0;
  pendingCount = 0;
  pendingBytes = 0;

  constructor(spec: BufferClassSpec, global: BufferLimits) {
    this.name = spec.name;
    this.patterns = spec.subjects;
    this.onFull = spec.onFull;
    this.maxBytes = spec.maxBytes ?? global.maxBytes;
    this.maxMessages = spec.maxMessages ?? global.maxMessages;
    this.maxAgeMs = spec.maxAgeMs ?? global.maxAgeMs;
  }

  /** Rows over this class's own limits once pending rows are committed (by count and bytes). */
  excess(): { messages: number; bytes: number } {
    return {
      messages: Math.max(0, this.count + this.pendingCount - this.maxMessages),
      bytes: Math.max(0, this.bytes + this.pendingBytes - this.maxBytes),
    };
  }
}

/**
 * Maps subjects to priority classes and keeps each class's and the whole buffer's
 * accounting. A subject belongs to the first class with a matching pattern, else to
 * `default`. A class only ever evicts its own rows, so a class that rejects when full
 * (alarms) is never evicted to make room for one that drops (telemetry).
 */
export class BufferPolicy {
  readonly limits: BufferLimits;
  readonly classes: readonly BufferClass[];
  readonly #byName = new Map<string, BufferClass>();
  readonly #default: BufferClass;
  #cache = new Map<string, BufferClass>();

  constructor(limits: BufferLimits) {
    this.limits = limits;
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
    for (const c of classes) this.#byName.set(c.name, c);
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

  /** Rows over the whole buffer's limits once pending rows are committed. */
  globalExcess(): { messages: number; bytes: number } {
    const { count, bytes } = this.totals();
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
    if (cls.count + cls.pendingCount + 1 > cls.maxMessages) return false;
    if (cls.bytes + cls.pendingBytes + size > cls.maxBytes) return false;
    let count = 0;
    let bytes = 0;
    for (const c of this.classes) {
      if (c.onFull !== "reject") continue;
      count += c.count + c.pendingCount;
      bytes += c.bytes + c.pendingBytes;
    }
    return count + 1 <= this.limits.maxMessages && bytes + size <= this.limits.maxBytes;
  }

  /** Committed plus pending rows and bytes over every class. */
  totals(): { count: number; bytes: number } {
    let count = 0;
    let bytes = 0;
    for (const c of this.classes) {
      count += c.count + c.pendingCount;
      bytes += c.bytes + c.pendingBytes;
    }
    return { count, bytes };
  }
}
