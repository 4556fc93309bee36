import type Database from "better-sqlite3";

/**
 * Every statement ever prepared, held for the life of the process. better-sqlite3 12 on
 * Node 24 aborts the process (`Assertion failed: (env) != nullptr` in
 * RemoveEnvironmentCleanupHook) when V8 collects a Statement during a microtask
 * checkpoint, so no statement is left to the garbage collector. Each SQL text is
 * prepared once per database (see `pinStatements`), which keeps this set small.
 */
const PINNED = new Set<Database.Statement>();

/** Makes `db.prepare` return one kept statement per SQL text. */
export function pinStatements(db: Database.Database): void {
  const cache = new Map<string, Database.Statement>();
  const prepare = db.prepare.bind(db);
  db.prepare = ((sql: string) => {
    let statement = cache.get(sql);
    if (statement === undefined) {
      statement = prepare(sql);
      cache.set(sql, statement);
      PINNED.add(statement);
    }
    return statement;
  }) as typeof db.prepare;
}

/**
 * `PRAGMA source` through a kept statement (better-sqlite3's own `pragma()` prepares a
 * new one each call); `simple` returns the first column of the first row.
 */
export function pragma(db: Database.Database, source: string, simple = false): unknown {
  const statement = db.prepare(`PRAGMA ${source}`);
  if (!statement.reader) {
    statement.run();
    return simple ? undefined : [];
  }
  return simple ? statement.pluck(true).get() : statement.pluck(false).all();
}
