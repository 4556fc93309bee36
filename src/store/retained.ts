import type Database from "better-sqlite3";
import { subjectMatches } from "../core/index.js";

export interface RetainedMessage {
  readonly subject: string;
  readonly payload: Buffer;
  readonly qos: 0 | 1 | 2;
  readonly receivedAtMs: number;
}

/**
 * MQTT retained messages: the last retained message per topic, on disk so that it
 * survives a restart [MQTT-3.3.1-5]. An empty payload removes the topic's message and
 * is not stored itself [MQTT-3.3.1-10], [MQTT-3.3.1-11]. Kept in memory as well: reads
 * happen on every SUBSCRIBE, writes only when a device publishes with the retain flag.
 */
export class RetainedStore {
  readonly #upsert: Database.Statement;
  readonly #remove: Database.Statement;
  readonly #bySubject = new Map<string, RetainedMessage>();

  constructor(db: Database.Database) {
    this.#upsert = db.prepare(
      "INSERT INTO retained (subject, payload, qos, received_at_ms) VALUES (?, ?, ?, ?) " +
        "ON CONFLICT (subject) DO UPDATE SET payload = excluded.payload, qos = excluded.qos, received_at_ms = excluded.received_at_ms",
    );
    this.#remove = db.prepare("DELETE FROM retained WHERE subject = ?");
    for (const row of db
      .prepare("SELECT subject, payload, qos, received_at_ms FROM retained")
      .all() as { subject: string; payload: Buffer; qos: 0 | 1 | 2; received_at_ms: number }[]) {
      this.#bySubject.set(row.subject, {
        subject: row.subject,
        payload: row.payload,
        qos: row.qos,
        receivedAtMs: row.received_at_ms,
      });
    }
  }

  /** Stores (or, for an empty payload, removes) the retained message of `subject`. */
  set(subject: string, payload: Uint8Array, qos: 0 | 1 | 2, receivedAtMs: number): void {
    if (payload.length === 0) {
      this.#remove.run(subject);
      this.#bySubject.delete(subject);
      return;
    }
    const bytes = Buffer.from(payload);
    this.#upsert.run(subject, bytes, qos, receivedAtMs);
    this.#bySubject.set(subject, { subject, payload: bytes, qos, receivedAtMs });
  }

  /** Retained messages whose subject any of `patterns` matches. */
  match(patterns: readonly string[]): RetainedMessage[] {
    const out: RetainedMessage[] = [];
    for (const m of this.#bySubject.values()) {
      if (patterns.some((p) => subjectMatches(p, m.subject))) out.push(m);
    }
    return out;
  }

  get size(): number {
    return this.#bySubject.size;
  }
}
