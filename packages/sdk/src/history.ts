// A sandbox's metrics and log over Sandlot's REST (GET /api/v1/sandboxes/:id/metrics and /logs):
// shared by Sandbox (getMetrics, getLogs) and SandlotClient (the CLI's `metrics` and `logs`).
import { InvalidArgumentError } from './errors.js'
import { sandboxRoute, type ApiClient } from './http.js'

/** One sample of a sandbox's use (or, for long ranges, a bucket of them: CPU averaged, memory and disk at their highest). */
export interface SandboxMetric {
  /** When it was sampled (a bucket: its last sample). */
  timestamp: Date
  /** Its CPUs. */
  cpuCount: number
  /** CPU used since the sample before, in percent of its CPUs (0–100, two decimals). */
  cpuUsedPct: number
  /** Memory in use (bytes), page cache not counted. */
  memUsed: number
  /** Its memory limit (bytes). */
  memTotal: number
  /** Page cache (bytes). */
  memCache: number
  /** Bytes used of its own filesystem. */
  diskUsed: number
  /** Size of its own filesystem (bytes). */
  diskTotal: number
}

/** Options of {@link Sandbox.getMetrics}: a time range (default: all samples kept). */
export interface MetricsOptions {
  /** From (a Date or epoch ms); default its first sample. */
  start?: Date | number
  /** To (a Date or epoch ms); default its last sample. */
  end?: Date | number
}

/** A log entry's level, least first. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error'

/** An entry of a sandbox's log. */
export interface LogEntry {
  /** Its place in the log: pass the last one read as `after` to read on. */
  seq: number
  /** When it was written. */
  timestamp: Date
  /** Its level (stderr of the start command is `warn`). */
  level: LogLevel
  /** What happened, or a line of the start command's output. */
  message: string
  /** `logger` says what wrote it: `lifecycle`, `start-cmd` (the template's start command) or `agent`. */
  fields: Record<string, string>
}

/** Options of {@link Sandbox.getLogs}. */
export interface LogsOptions {
  /** Entries after this seq (default 0: from the oldest kept). */
  after?: number
  /** At most this many (1–1000; default 1000). */
  limit?: number
  /** This level and above. */
  level?: LogLevel
  /** When there is no entry yet, wait up to this many ms (≤ 30,000) for one: a follower's long-poll. */
  wait?: number
  /** Aborts the read (and a wait). */
  signal?: AbortSignal
}

/** What a log read gives. */
export interface LogsPage {
  /** The entries, oldest first. */
  logs: LogEntry[]
  /** Pass as `after` to read on. */
  next: number
  /** Whether the sandbox still exists (once not, and nothing was returned, its log is complete). */
  running: boolean
}

const epochMs = (name: string, v: Date | number | undefined): number | undefined => {
  if (v === undefined) return undefined
  const ms = v instanceof Date ? v.getTime() : v
  if (!Number.isInteger(ms) || ms < 0) throw new InvalidArgumentError(`${name} must be a Date or a whole number of epoch milliseconds; got ${String(v)}`)
  return ms
}

function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v))
  const s = q.toString()
  return s ? `?${s}` : ''
}

export async function getMetrics(api: ApiClient, id: string, opts: MetricsOptions = {}): Promise<SandboxMetric[]> {
  const start = epochMs('start', opts.start)
  const end = epochMs('end', opts.end)
  if (start !== undefined && end !== undefined && start > end) throw new InvalidArgumentError('start must not be after end')
  const rows = await api.request<(Omit<SandboxMetric, 'timestamp'> & { timestamp: string })[]>('GET', `${sandboxRoute(id)}/metrics${query({ start, end })}`, { sandboxId: id, retry: true })
  return rows.map((r) => ({ ...r, timestamp: new Date(r.timestamp) }))
}

export async function getLogs(api: ApiClient, id: string, opts: LogsOptions = {}): Promise<LogsPage> {
  for (const name of ['after', 'limit', 'wait'] as const) {
    const v = opts[name]
    if (v !== undefined && !(Number.isInteger(v) && v >= 0)) throw new InvalidArgumentError(`${name} must be a whole number, 0 or more; got ${String(v)}`)
  }
  const q = query({ after: opts.after, limit: opts.limit, level: opts.level, wait: opts.wait })
  const page = await api.request<{ logs: (Omit<LogEntry, 'timestamp'> & { timestamp: string })[]; next: number; running: boolean }>('GET', `${sandboxRoute(id)}/logs${q}`, { sandboxId: id, retry: true, signal: opts.signal })
  return { ...page, logs: page.logs.map((e) => ({ ...e, timestamp: new Date(e.timestamp) })) }
}
