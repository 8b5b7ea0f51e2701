// Sandlot's REST for a sandbox's metrics and log (docs/api.md): the same samples and entries as
// E2B's routes (e2b-metrics.ts), with times in epoch ms and the log read by its own cursor (each
// entry's `seq`), which a follower long-polls (`wait`).
import type { FastifyInstance } from 'fastify'
import { badRequest } from '../errors.js'
import type { LogRow } from '../store/history.js'
import { LOG_LEVELS } from '../store/history.js'
import { MAX_LOG_LIMIT, checkKnown, levelOf, metricView, metricsIn, wholeNumber, type HistoryDeps } from './history.js'
import { errors, idParams } from './openapi.js'

/** The longest a log read waits for a new entry. */
const MAX_WAIT_MS = 30_000

const metricSchema = {
  type: 'object',
  properties: {
    timestamp: { type: 'string', format: 'date-time', description: 'When sampled (a bucket: its last sample)' },
    cpuCount: { type: 'integer' },
    cpuUsedPct: { type: 'number', description: 'CPU used since the sample before, in percent of its CPUs (two decimals)' },
    memUsed: { type: 'integer', description: 'Memory in use (bytes), page cache not counted' },
    memTotal: { type: 'integer', description: 'Its memory limit (bytes)' },
    memCache: { type: 'integer', description: 'Page cache (bytes)' },
    diskUsed: { type: 'integer', description: 'Bytes used of its own filesystem' },
    diskTotal: { type: 'integer', description: 'Size of its own filesystem (bytes)' },
  },
} as const

const logEntrySchema = {
  type: 'object',
  properties: {
    seq: { type: 'integer', description: "Its place in the sandbox's log: pass the last one seen as `after`" },
    timestamp: { type: 'string', format: 'date-time' },
    level: { type: 'string', enum: [...LOG_LEVELS] },
    message: { type: 'string' },
    fields: { type: 'object', additionalProperties: { type: 'string' }, description: '`logger` says what wrote it: lifecycle, start-cmd or agent' },
  },
} as const

const entryView = (r: LogRow) => ({ seq: r.seq, timestamp: new Date(r.at).toISOString(), level: r.level, message: r.message, fields: r.fields })

type IdParams = { Params: { id: string } }

export function sandboxHistoryRoutes(app: FastifyInstance, d: HistoryDeps): void {
  app.get<IdParams & { Querystring: { start?: string; end?: string } }>('/api/v1/sandboxes/:id/metrics', {
    schema: {
      summary: "A sandbox's CPU, memory and disk over time",
      description:
        'Samples taken every SANDLOT_METRICS_INTERVAL_MS (5 s) while it runs, kept SANDLOT_HISTORY_RETENTION_HOURS (also after it ends). Without start and end: all of them. Longer ranges come in buckets (as E2B: 5 s under 1 h, 30 s under 6 h, 1 min under 12 h, 2 min under 24 h, 5 min under 7 days, else 15 min), CPU averaged, memory and disk at their highest.',
      tags: ['sandboxes'],
      params: idParams,
      querystring: {
        type: 'object',
        properties: {
          start: { type: 'string', description: 'From (epoch ms, an integer ≥ 0); default its first sample' },
          end: { type: 'string', description: 'To (epoch ms, an integer ≥ 0); default its last sample' },
        },
      },
      response: { 200: { type: 'array', items: metricSchema }, ...errors },
    },
  }, async (req) => {
    checkKnown(d, req.params.id)
    const start = wholeNumber(req.query.start, 'start', 'a time in epoch milliseconds')
    const end = wholeNumber(req.query.end, 'end', 'a time in epoch milliseconds')
    return metricsIn(d, req.params.id, start, end).map(metricView)
  })

  app.get<IdParams & { Querystring: { after?: string; limit?: string; level?: string; wait?: string } }>('/api/v1/sandboxes/:id/logs', {
    schema: {
      summary: "A sandbox's log",
      description:
        'Its lifecycle events, its template\'s start command output and errors of its agent, oldest first, after the entry `after` (its seq). With `wait`, a read that finds nothing new waits up to that long for an entry (a follower\'s long-poll). Kept as its metrics are, at most SANDLOT_SANDBOX_LOG_LINES entries.',
      tags: ['sandboxes'],
      params: idParams,
      querystring: {
        type: 'object',
        properties: {
          after: { type: 'string', description: 'Entries after this seq (an integer; default 0: from the first kept)' },
          limit: { type: 'string', description: `At most this many entries (1–${MAX_LOG_LIMIT}; default ${MAX_LOG_LIMIT})` },
          level: { type: 'string', enum: [...LOG_LEVELS], description: 'This level and above' },
          wait: { type: 'string', description: `Wait up to this many ms (≤ ${MAX_WAIT_MS}) for an entry when there is none yet` },
        },
      },
      response: {
        200: {
          type: 'object',
          properties: {
            logs: { type: 'array', items: logEntrySchema },
            next: { type: 'integer', description: 'Pass as `after` to read on' },
            running: { type: 'boolean', description: 'Whether the sandbox still exists, so its log may grow (a follower stops once not, with nothing left to read)' },
          },
        },
        ...errors,
      },
    },
  }, async (req, reply) => {
    const { id } = req.params
    const q = req.query
    const after = wholeNumber(q.after, 'after', "an entry's seq") ?? 0
    const limit = wholeNumber(q.limit, 'limit', `a whole number from 1 to ${MAX_LOG_LIMIT}`) ?? MAX_LOG_LIMIT
    if (limit < 1 || limit > MAX_LOG_LIMIT) throw badRequest(`limit must be a whole number from 1 to ${MAX_LOG_LIMIT}, got ${limit}`)
    const wait = wholeNumber(q.wait, 'wait', `a number of milliseconds up to ${MAX_WAIT_MS}`) ?? 0
    if (wait > MAX_WAIT_MS) throw badRequest(`wait must be at most ${MAX_WAIT_MS} ms, got ${wait}`)
    const minLevel = levelOf(q.level)
    const read = () => d.logs.read(id, { afterSeq: after, limit, minLevel })
    let running = checkKnown(d, id).live
    let rows = read()
    if (!rows.length && wait && running) {
      // Ends early when the client goes away.
      const gone = new AbortController()
      reply.raw.once('close', () => gone.abort())
      await d.logs.waitForEntry(id, wait, gone.signal)
      rows = read()
      running = checkKnown(d, id).live
    }
    const last = rows[rows.length - 1]
    return { logs: rows.map(entryView), next: last ? last.seq : after, running }
  })
}
