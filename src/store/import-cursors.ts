import type Database from "better-sqlite3";

/** Where a durable import's consumer reads: the stream, as it was created. */
export interface ImportStream {
  readonly stream: string;
  /** The stream's creation time as the hub reports it: a stream made again starts anew. */
  readonly created: string;
}

/**
 * Per durable import (its consumer's name), the last stream sequence delivered onto the
 * bus: a redelivery at or below it was delivered already and is only acked. One row per
 * consumer, written in its own transaction once the local delivery has committed and
 * before the ack (docs/upstream.md, "Imports").
 */
export class ImportCursors {
  readonly #db: Database.Database;

  constructor(db: Database.Database) {
    this.#db = db;
  }

  /** The last sequence delivered through `consumer` from `at`; 0 if none (or from another stream). */
  last(consumer: string, at: ImportStream): number {
    const row = this.#db
      .prepare("SELECT stream, stream_created, last_seq FROM import_cursor WHERE consumer = ?")
      .get(consumer) as { stream: string; stream_created: string; last_seq: number } | undefined;
    if (row === undefined || row.stream !== at.stream || row.stream_created !== at.created) {
      return 0;
    }
    return row.last_seq;
  }

  /** Records `seq` as delivered through `consumer` from `at`. */
  record(consumer: string, at: ImportStream, seq: number): void {
    this.#db
      .prepare(
        `INSERT INTO import_cursor (consumer, stream, stream_created, last_seq) VALUES (?, ?, ?, ?)
         ON CONFLICT (consumer) DO UPDATE SET stream = excluded.stream,
           stream_created = excluded.stream_created, last_seq = excluded.last_seq`,
      )
      .run(consumer, at.stream, at.created, seq);
  }
}
