import type Database from "better-sqlite3";
import type { Clock, Counter, Gauge, Logger, MessageProperties, Metrics } from "../core/index.js";
import { DEFAULT_ACCOUNT, RateLimitedLog, subjectMatches, systemClock } from "../core/index.js";
import { type PropertiesJson, propertiesFromJson, propertiesToJson } from "./properties-json.js";

export interface RetainedMessage {
  readonly subject: string;
  readonly payload: Buffer;
  readonly qos: 0 | 1 | 2;
  readonly receivedAtMs: number;
  readonly properties: MessageProperties | undefined;
  /** MQTT 5 message expiry: the retained message goes with it. */
  readonly expiresAtMs: number | undefined;
}

interface Meta {
  p?: PropertiesJson;
  x?: number;
}

export interface RetainedStoreOptions {
  /** Retained topics kept at most; a new topic past it is not stored. */
  readonly maxMessages?: number;
  /** Their bytes (topic + payload + properties) at most; likewise. */
  readonly maxBytes?: number;
  /** leafgate_mqtt_retained_{messages,bytes} and leafgate_mqtt_retained_refused_total. */
  readonly metrics?: Metrics;
  readonly log?: Logger;
  /** What expiry and the refusal log's window are measured by (tests move it by hand). */
  readonly clock?: Clock;
}

/**
 * One line per bound at most every 10 s for refused retained messages: a client can make
 * them at the rate it publishes, and each is counted in metrics anyway.
 */
const REFUSED_LOG_INTERVAL_MS = 10_000;
const REFUSED_LOG_BURST = 1;

type Bound = "max-retained-messages" | "max-retained-bytes";

/** What is kept in memory per retained topic: enough to match, bound and expire it. */
interface Entry {
  readonly bytes: number;
  readonly expiresAtMs: number | undefined;
}

/**
 * MQTT retained messages: the last retained message per topic, on disk so that it
 * survives a restart [MQTT-3.3.1-5]. An empty payload removes the topic's message and
 * is not stored itself [MQTT-3.3.1-10], [MQTT-3.3.1-11].
 *
 * Bounded in count and bytes: a message for a topic not yet retained is not stored past
 * either bound (it is still delivered and forwarded as any message; only the retained
 * copy is refused, counted and logged at most every 10 s per bound). Replacing or clearing a
 * retained topic always works, so a device's own status topic never gets stuck.
 *
 * Memory holds only each topic's size and expiry; payloads are read from disk on
 * SUBSCRIBE for the topics a filter matches, so the bytes bound is a disk bound.
 *
 * Per account (issue 13): `set` and `match` are the global account's (`$G`);
 * `forAccount(name)` gives another account's, whose topics no other account sees. The
 * bounds are the store's, over every account.
 */
/** One account's retained messages (see RetainedStore.forAccount). */
export interface AccountRetained {
  set(
    subject: string,
    payload: Uint8Array,
    qos: 0 | 1 | 2,
    receivedAtMs: number,
    properties?: MessageProperties,
    expiresAtMs?: number,
  ): boolean;
  match(patterns: readonly string[], nowMs?: number): RetainedMessage[];
}

export class RetainedStore implements AccountRetained {
  readonly #upsert: Database.Statement;
  readonly #remove: Database.Statement;
  readonly #read: Database.Statement;
  /** Per account, per topic. */
  readonly #index = new Map<string, Map<string, Entry>>();
  #count = 0;
  readonly #maxMessages: number;
  readonly #maxBytes: number;
  #bytes = 0;
  readonly #gauges: { messages: Gauge; bytes: Gauge } | undefined;
  readonly #refused: Counter | undefined;
  readonly #refusedLog: RateLimitedLog | undefined;
  readonly #clock: Clock;

  constructor(db: Database.Database, options: RetainedStoreOptions = {}) {
    this.#maxMessages = options.maxMessages ?? Number.POSITIVE_INFINITY;
    this.#maxBytes = options.maxBytes ?? Number.POSITIVE_INFINITY;
    this.#clock = options.clock ?? systemClock;
    if (options.log !== undefined) {
      this.#refusedLog = new RateLimitedLog(options.log, {
        burst: REFUSED_LOG_BURST,
        windowMs: REFUSED_LOG_INTERVAL_MS,
        clock: this.#clock,
      });
    }
    if (options.metrics !== undefined) {
      this.#gauges = {
        messages: options.metrics.gauge("leafgate_mqtt_retained_messages", "Retained topics kept"),
        bytes: options.metrics.gauge(
          "leafgate_mqtt_retained_bytes",
          "Bytes of retained messages kept (topic + payload + properties)",
        ),
      };
      this.#refused = options.metrics.counter(
        "leafgate_mqtt_retained_refused_total",
        "Retained messages for a new topic not stored (the message itself was delivered), by bound",
      );
    }
    this.#upsert = db.prepare(
      "INSERT INTO retained (account, subject, payload, qos, received_at_ms, meta) VALUES (?, ?, ?, ?, ?, ?) " +
        "ON CONFLICT (account, subject) DO UPDATE SET payload = excluded.payload, qos = excluded.qos, received_at_ms = excluded.received_at_ms, meta = excluded.meta",
    );
    this.#remove = db.prepare("DELETE FROM retained WHERE account = ? AND subject = ?");
    this.#read = db.prepare(
      "SELECT payload, qos, received_at_ms, meta FROM retained WHERE account = ? AND subject = ?",
    );
    // Sizes only: SQLite reads a blob's length from the record, not the blob's pages.
    for (const row of db
      .prepare(
        "SELECT account, subject, length(CAST(subject AS BLOB)) + length(payload) + " +
          "coalesce(length(CAST(meta AS BLOB)), 0) AS bytes, json_extract(meta, '$.x') AS x FROM retained",
      )
      .all() as { account: string; subject: string; bytes: number; x: number | null }[]) {
      this.#topics(row.account).set(row.subject, {
        bytes: row.bytes,
        expiresAtMs: row.x ?? undefined,
      });
      this.#count++;
      this.#bytes += row.bytes;
    }
    this.#report();
  }

  /**
   * Stores (or, for an empty payload, removes) the retained message of `subject`. False
   * when a bound refused it (a topic not retained yet, past the count or the bytes).
   */
  /** The retained messages of `account`: its topics only, under the store's bounds. */
  forAccount(account: string): AccountRetained {
    if (account === DEFAULT_ACCOUNT) return this;
    return {
      set: (...message) => this.#set(account, ...message),
      match: (patterns, nowMs) => this.#match(account, patterns, nowMs),
    };
  }

  #topics(account: string): Map<string, Entry> {
    let topics = this.#index.get(account);
    if (topics === undefined) {
      topics = new Map();
      this.#index.set(account, topics);
    }
    return topics;
  }

  set(...message: Parameters<AccountRetained["set"]>): boolean {
    return this.#set(DEFAULT_ACCOUNT, ...message);
  }

  #set(
    account: string,
    ...[subject, payload, qos, receivedAtMs, properties, expiresAtMs]: Parameters<
      AccountRetained["set"]
    >
  ): boolean {
    const topics = this.#topics(account);
    const previous = topics.get(subject);
    if (payload.length === 0) {
      this.#remove.run(account, subject);
      this.#drop(topics, subject, previous);
      return true;
    }
    const bytes = Buffer.from(payload);
    const meta: Meta = {};
    if (properties !== undefined) meta.p = propertiesToJson(properties);
    if (expiresAtMs !== undefined) meta.x = expiresAtMs;
    const metaText = meta.p === undefined && meta.x === undefined ? null : JSON.stringify(meta);
    const size =
      Buffer.byteLength(subject) +
      bytes.length +
      (metaText === null ? 0 : Buffer.byteLength(metaText));
    if (previous === undefined) {
      const bound =
        this.#count >= this.#maxMessages
          ? "max-retained-messages"
          : this.#bytes + size > this.#maxBytes
            ? "max-retained-bytes"
            : undefined;
      if (bound !== undefined) {
        this.#refuse(bound);
        return false;
      }
    }
    this.#upsert.run(account, subject, bytes, qos, receivedAtMs, metaText);
    this.#bytes += size - (previous?.bytes ?? 0);
    if (previous === undefined) this.#count++;
    topics.set(subject, { bytes: size, expiresAtMs });
    this.#report();
    return true;
  }

  /** Retained messages whose subject any of `patterns` matches; expired ones are dropped. */
  match(patterns: readonly string[], nowMs?: number): RetainedMessage[] {
    return this.#match(DEFAULT_ACCOUNT, patterns, nowMs);
  }

  #match(
    account: string,
    patterns: readonly string[],
    nowMs = this.#clock.now(),
  ): RetainedMessage[] {
    const out: RetainedMessage[] = [];
    const expired: string[] = [];
    const topics = this.#index.get(account);
    if (topics === undefined) return out;
    for (const [subject, entry] of topics) {
      if (!patterns.some((p) => subjectMatches(p, subject))) continue;
      if (entry.expiresAtMs !== undefined && entry.expiresAtMs <= nowMs) {
        expired.push(subject);
        continue;
      }
      const row = this.#read.get(account, subject) as
        | { payload: Buffer; qos: 0 | 1 | 2; received_at_ms: number; meta: string | null }
        | undefined;
      if (row === undefined) continue;
      const meta = row.meta === null ? {} : (JSON.parse(row.meta) as Meta);
      out.push({
        subject,
        payload: row.payload,
        qos: row.qos,
        receivedAtMs: row.received_at_ms,
        properties: meta.p === undefined ? undefined : propertiesFromJson(meta.p),
        expiresAtMs: meta.x,
      });
    }
    for (const subject of expired) {
      this.#remove.run(account, subject);
      this.#drop(topics, subject, topics.get(subject));
    }
    return out;
  }

  /** Retained topics over every account. */
  get size(): number {
    return this.#count;
  }

  /** Bytes kept (topic + payload + properties), as `max_retained_bytes` counts them. */
  get bytes(): number {
    return this.#bytes;
  }

  #drop(topics: Map<string, Entry>, subject: string, entry: Entry | undefined): void {
    if (entry === undefined) return;
    topics.delete(subject);
    this.#count--;
    this.#bytes -= entry.bytes;
    this.#report();
  }

  #refuse(bound: Bound): void {
    this.#refused?.inc({ reason: bound });
    this.#refusedLog?.log(
      bound,
      { bound, messages: this.#count, bytes: this.#bytes },
      `retained message for a new topic not stored: mqtt.${bound.replaceAll("-", "_")} reached`,
    );
  }

  #report(): void {
    this.#gauges?.messages.set(this.#count);
    this.#gauges?.bytes.set(this.#bytes);
  }
}
