// better-sqlite3 compiles a statement at each prepare(): the stores prepare each SQL text once, on
// its first use, and reuse it (a prepared statement runs any number of times, in or out of a
// transaction). The texts are the stores' own, a bounded set, so the cache never grows past them.
import type Database from 'better-sqlite3'

export type Prepare = (sql: string) => Database.Statement

/** `db.prepare`, compiled once per SQL text. */
export function preparedOnce(db: Database.Database): Prepare {
  const statements = new Map<string, Database.Statement>()
  return (sql) => {
    let s = statements.get(sql)
    if (!s) statements.set(sql, (s = db.prepare(sql)))
    return s
  }
}
