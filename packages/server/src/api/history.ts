// What both APIs share to read a sandbox's metrics and logs: which sandboxes may be asked about
// (running, or ended with its history still kept; never a pooled one) and query values checked.
import { badRequest, sandboxNotFound } from '../errors.js'
import type { SandboxLogs } from '../lifecycle/logs.js'
import type { SandboxManager } from '../lifecycle/manager.js'
import { bucketSeconds, bucketize } from '../lifecycle/metrics.js'
import type { Store } from '../store/db.js'
import { LOG_LEVELS, type HistoryStore, type LogLevel, type MetricRow } from '../store/history.js'

export interface HistoryDeps {
  manager: SandboxManager
  store: Store
  history: HistoryStore
  logs: SandboxLogs
}

/** A sample as both APIs give it (E2B's adds timestampUnix). */
export const metricView = (r: MetricRow) => ({
  timestamp: new Date(r.at).toISOString(),
  cpuCount: r.cpuCount,
  cpuUsedPct: r.cpuUsedPct,
  memUsed: r.memUsed,
  memTotal: r.memTotal,
  memCache: r.memCache,
  diskUsed: r.diskUsed,
  diskTotal: r.diskTotal,
})

/** The most entries one log read returns (E2B's v2 limit). */
export const MAX_LOG_LIMIT = 1000

/**
 * Throws 404 unless the sandbox exists or its metrics or log are still kept; `live` says whether
 * it still exists (starting, running or being destroyed: its log may still grow).
 */
export function checkKnown(d: HistoryDeps, id: string): { live: boolean } {
  const row = d.store.getSandbox(id)
  // A pooled sandbox is nobody's yet: it does not exist for clients.
  if (row?.state === 'pooled' || (!row && !d.history.hasHistory(id))) throw sandboxNotFound(id)
  return { live: !!row }
}

/** A whole number ≥ 0 from a query string, or undefined when absent; 400 naming it otherwise. */
export function wholeNumber(raw: unknown, name: string, what: string): number | undefined {
  if (raw === undefined || raw === '') return undefined
  const s = String(raw)
  if (!/^\d{1,15}$/.test(s)) throw badRequest(`${name} must be ${what}, got "${s.slice(0, 40)}"`)
  return Number(s)
}

export function limitOf(raw: unknown, fallback: number): number {
  const limit = wholeNumber(raw, 'limit', `a whole number from 0 to ${MAX_LOG_LIMIT}`) ?? fallback
  if (limit > MAX_LOG_LIMIT) throw badRequest(`limit must be a whole number from 0 to ${MAX_LOG_LIMIT}, got ${limit}`)
  return limit
}

export function levelOf(raw: unknown): LogLevel | undefined {
  if (raw === undefined || raw === '') return undefined
  const level = String(raw).toLowerCase()
  if (!(LOG_LEVELS as readonly string[]).includes(level)) throw badRequest(`level must be one of ${LOG_LEVELS.join(', ')}, got "${String(raw).slice(0, 40)}"`)
  return level as LogLevel
}

/**
 * A sandbox's samples between `startMs` and `endMs` (each defaulting to its first and last sample),
 * in E2B's buckets for the range's length. Start after end is a 400; a range without samples is [].
 */
export function metricsIn(d: HistoryDeps, id: string, startMs: number | undefined, endMs: number | undefined): MetricRow[] {
  if (startMs !== undefined && endMs !== undefined && startMs > endMs) throw badRequest('start must not be after end')
  const span = d.history.metricsSpan(id)
  if (!span) return []
  const from = startMs ?? span.first
  const to = endMs ?? span.last
  if (from > to) return []
  return bucketize(d.history.metrics(id, from, to), bucketSeconds((to - from) / 1000))
}
