// Sandboxes' metrics samples and logs in SQLite (tables made by db.ts's migrations). Both outlive
// the sandbox (E2B serves a killed sandbox's logs) and go when older than the retention.
import type Database from 'better-sqlite3'
import { preparedOnce, type Prepare } from './statements.js'

export interface MetricRow {
  sandboxId: string
  /** When sampled (epoch ms). */
  at: number
  cpuCount: number
  /** CPU used over the interval before `at`, in percent of its CPUs (0–100). */
  cpuUsedPct: number
  memUsed: number
  memTotal: number
  memCache: number
  diskUsed: number
  diskTotal: number
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error'
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error']

export interface LogRow {
  sandboxId: string
  /** Its place in the sandbox's log (1, 2, …): the order within one millisecond too. */
  seq: number
  at: number
  level: LogLevel
  message: string
  fields: Record<string, string>
}

export interface LogQuery {
  /** Entries at or after (forward) / at or before (backward) this time (epoch ms). */
  from?: number
  to?: number
  /** Entries after this place in the log (Sandlot's own cursor: no two entries share one). */
  afterSeq?: number
  /** Newest first. */
  backward?: boolean
  limit: number
  /** Only this level and above. */
  minLevel?: LogLevel
  /** Only entries whose message contains this (case-sensitive, as E2B's search). */
  search?: string
}

interface RawMetric {
  sandbox_id: string
  at: number
  cpu_count: number
  cpu_used_pct: number
  mem_used: number
  mem_total: number
  mem_cache: number
  disk_used: number
  disk_total: number
}

const toMetric = (r: RawMetric): MetricRow => ({
  sandboxId: r.sandbox_id,
  at: r.at,
  cpuCount: r.cpu_count,
  cpuUsedPct: r.cpu_used_pct,
  memUsed: r.mem_used,
  memTotal: r.mem_total,
  memCache: r.mem_cache,
  diskUsed: r.disk_used,
  diskTotal: r.disk_total,
})

interface RawLog {
  sandbox_id: string
  seq: number
  at: number
  level: LogLevel
  message: string
  fields: string
}

const toLog = (r: RawLog): LogRow => ({ sandboxId: r.sandbox_id, seq: r.seq, at: r.at, level: r.level, message: r.message, fields: JSON.parse(r.fields) })

export class HistoryStore {
  private readonly sql: Prepare

  constructor(private readonly db: Database.Database) {
    this.sql = preparedOnce(db)
  }

  // --- metrics ---
  insertMetrics(rows: MetricRow[]): void {
    const insert = this.sql(
      `INSERT OR REPLACE INTO sandbox_metrics (sandbox_id, at, cpu_count, cpu_used_pct, mem_used, mem_total, mem_cache, disk_used, disk_total)
       VALUES (@sandboxId, @at, @cpuCount, @cpuUsedPct, @memUsed, @memTotal, @memCache, @diskUsed, @diskTotal)`,
    )
    this.db.transaction(() => {
      for (const r of rows) insert.run(r)
    })()
  }

  /** A sandbox's samples from `from` to `to` (epoch ms, inclusive), oldest first. */
  metrics(sandboxId: string, from: number, to: number): MetricRow[] {
    return (this.sql('SELECT * FROM sandbox_metrics WHERE sandbox_id = ? AND at BETWEEN ? AND ? ORDER BY at').all(sandboxId, from, to) as RawMetric[]).map(toMetric)
  }

  /** The time of a sandbox's first and last sample, or undefined when it has none. */
  metricsSpan(sandboxId: string): { first: number; last: number } | undefined {
    const r = this.sql('SELECT MIN(at) AS first, MAX(at) AS last FROM sandbox_metrics WHERE sandbox_id = ?').get(sandboxId) as { first: number | null; last: number | null }
    return r.first === null || r.last === null ? undefined : { first: r.first, last: r.last }
  }

  latestMetric(sandboxId: string): MetricRow | undefined {
    const r = this.sql('SELECT * FROM sandbox_metrics WHERE sandbox_id = ? ORDER BY at DESC LIMIT 1').get(sandboxId) as RawMetric | undefined
    return r && toMetric(r)
  }

  // --- logs ---
  /** The last entry's place in a sandbox's log (0 when it has none). */
  lastLogSeq(sandboxId: string): number {
    return (this.sql('SELECT MAX(seq) AS seq FROM sandbox_logs WHERE sandbox_id = ?').get(sandboxId) as { seq: number | null }).seq ?? 0
  }

  insertLog(r: LogRow): void {
    this.sql('INSERT OR REPLACE INTO sandbox_logs (sandbox_id, seq, at, level, message, fields) VALUES (?, ?, ?, ?, ?, ?)').run(r.sandboxId, r.seq, r.at, r.level, r.message, JSON.stringify(r.fields))
  }

  /** Drops a sandbox's entries up to `seq` (the line cap). */
  trimLog(sandboxId: string, seq: number): void {
    this.sql('DELETE FROM sandbox_logs WHERE sandbox_id = ? AND seq <= ?').run(sandboxId, seq)
  }

  logs(sandboxId: string, q: LogQuery): LogRow[] {
    const where = ['sandbox_id = @sandboxId']
    if (q.from !== undefined) where.push('at >= @from')
    if (q.to !== undefined) where.push('at <= @to')
    if (q.afterSeq !== undefined) where.push('seq > @afterSeq')
    if (q.minLevel) where.push(`level IN (${LOG_LEVELS.slice(LOG_LEVELS.indexOf(q.minLevel)).map((l) => `'${l}'`).join(', ')})`)
    // instr: a plain substring, no LIKE wildcards to escape.
    if (q.search) where.push('instr(message, @search) > 0')
    const order = q.backward ? 'DESC' : 'ASC'
    const sql = `SELECT * FROM sandbox_logs WHERE ${where.join(' AND ')} ORDER BY at ${order}, seq ${order} LIMIT @limit`
    return (this.sql(sql).all({ sandboxId, from: q.from, to: q.to, afterSeq: q.afterSeq, search: q.search, limit: q.limit }) as RawLog[]).map(toLog)
  }

  /** Whether anything of this sandbox is kept (a sandbox that ended is still known by its history). */
  hasHistory(sandboxId: string): boolean {
    return (
      this.sql('SELECT 1 FROM sandbox_logs WHERE sandbox_id = ? LIMIT 1').get(sandboxId) !== undefined ||
      this.sql('SELECT 1 FROM sandbox_metrics WHERE sandbox_id = ? LIMIT 1').get(sandboxId) !== undefined
    )
  }

  /** Everything of one sandbox (a pooled one that nobody ever had). */
  deleteSandbox(sandboxId: string): void {
    this.db.transaction(() => {
      this.sql('DELETE FROM sandbox_metrics WHERE sandbox_id = ?').run(sandboxId)
      this.sql('DELETE FROM sandbox_logs WHERE sandbox_id = ?').run(sandboxId)
    })()
  }

  /** Removes what is older than `before` (epoch ms); returns how many rows went. */
  prune(before: number): number {
    return this.db.transaction(
      () => this.sql('DELETE FROM sandbox_metrics WHERE at < ?').run(before).changes + this.sql('DELETE FROM sandbox_logs WHERE at < ?').run(before).changes,
    )()
  }
}
