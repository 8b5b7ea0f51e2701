// E2B's metrics and logs routes (../shared/reference/e2b-protocol-next.md §4): a sandbox's samples
// in E2B's ranges and buckets, the latest of several at once, and its log as the v1 route (which
// the e2b CLI's `sandbox logs` polls) and the v2 route give it. A killed sandbox's are served
// until the retention removes them, as on E2B.
import type { FastifyInstance } from 'fastify'
import { badRequest } from '../errors.js'
import type { LogRow, MetricRow } from '../store/history.js'
import { sandboxIdOf } from './e2b.js'
import { MAX_LOG_LIMIT, checkKnown, levelOf, limitOf, metricView, metricsIn, wholeNumber, type HistoryDeps } from './history.js'

/** The most sandboxes one bulk metrics request may name. */
const MAX_BULK_IDS = 100
const SEARCH_MAX_CHARS = 256

const e2bMetric = (r: MetricRow) => ({ ...metricView(r), timestampUnix: Math.floor(r.at / 1000) })

const e2bEntry = (r: LogRow) => ({ timestamp: new Date(r.at).toISOString(), level: r.level, message: r.message, fields: r.fields })

/** v1's `line`: a JSON object the e2b CLI parses, needing `level` and `logger` (in fields). */
const e2bLine = (r: LogRow) => ({ timestamp: new Date(r.at).toISOString(), line: JSON.stringify({ level: r.level, logger: 'lifecycle', ...r.fields, message: r.message }) })

const unixSeconds = (raw: unknown, name: string) => wholeNumber(raw, name, 'a unix time in seconds')

type IdParams = { Params: { id: string } }

export function e2bMetricsRoutes(app: FastifyInstance, d: HistoryDeps): void {
  app.get<IdParams & { Querystring: { start?: string; end?: string } }>('/sandboxes/:id/metrics', async (req) => {
    const id = sandboxIdOf(req.params.id)
    checkKnown(d, id)
    const start = unixSeconds(req.query.start, 'start')
    const end = unixSeconds(req.query.end, 'end')
    // Seconds: `end` covers the whole of its second.
    return metricsIn(d, id, start === undefined ? undefined : start * 1000, end === undefined ? undefined : end * 1000 + 999).map(e2bMetric)
  })

  // The latest sample of each sandbox named that has one; others are left out.
  app.get<{ Querystring: { sandbox_ids?: string } }>('/sandboxes/metrics', async (req) => {
    const raw = req.query.sandbox_ids
    if (typeof raw !== 'string' || !raw.trim()) throw badRequest('sandbox_ids is required: a comma-separated list of sandbox IDs')
    const ids = [...new Set(raw.split(',').map((s) => s.trim()).filter(Boolean))]
    if (ids.length > MAX_BULK_IDS) throw badRequest(`sandbox_ids may name at most ${MAX_BULK_IDS} sandboxes, got ${ids.length}`)
    const sandboxes: Record<string, ReturnType<typeof e2bMetric>> = {}
    for (const raw of ids) {
      const id = sandboxIdOf(raw)
      if (d.store.getSandbox(id)?.state === 'pooled') continue
      const latest = d.history.latestMetric(id)
      if (latest) sandboxes[id] = e2bMetric(latest)
    }
    return { sandboxes }
  })

  // v1: entries from `start` (ms) on, oldest first; the CLI asks again from its last entry's time + 1.
  app.get<IdParams & { Querystring: { start?: string; limit?: string } }>('/sandboxes/:id/logs', async (req) => {
    const id = sandboxIdOf(req.params.id)
    checkKnown(d, id)
    const from = wholeNumber(req.query.start, 'start', 'a unix time in milliseconds')
    const rows = d.logs.read(id, { from, limit: limitOf(req.query.limit, MAX_LOG_LIMIT) })
    return { logs: rows.map(e2bLine), logEntries: rows.map(e2bEntry) }
  })

  // v2: from the cursor (ms) forward, or back from it (default; newest first), within E2B's window.
  app.get<IdParams & { Querystring: { cursor?: string; limit?: string; direction?: string; level?: string; search?: string } }>('/v2/sandboxes/:id/logs', async (req) => {
    const id = sandboxIdOf(req.params.id)
    checkKnown(d, id)
    const q = req.query
    const cursor = wholeNumber(q.cursor, 'cursor', 'a unix time in milliseconds')
    const direction = q.direction ?? 'backward'
    if (direction !== 'forward' && direction !== 'backward') throw badRequest(`direction must be forward or backward, got "${String(direction).slice(0, 40)}"`)
    if (q.search !== undefined && (typeof q.search !== 'string' || q.search.length > SEARCH_MAX_CHARS)) throw badRequest(`search must be one string of at most ${SEARCH_MAX_CHARS} characters`)
    const backward = direction === 'backward'
    const rows = d.logs.read(id, {
      ...(cursor !== undefined && (backward ? { to: cursor } : { from: cursor })),
      backward,
      limit: limitOf(q.limit, MAX_LOG_LIMIT),
      minLevel: levelOf(q.level),
      search: q.search || undefined,
    })
    return { logs: rows.map(e2bEntry) }
  })
}
