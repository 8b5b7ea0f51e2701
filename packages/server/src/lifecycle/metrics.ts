// Every running sandbox's CPU, memory and disk, sampled every `intervalMs` (5 s, as E2B's envd)
// from the runtime (its cgroup and its own filesystem: runtime/cgroup.ts, OciDriver.usage) into
// SQLite (store/history.ts), where samples outlive the sandbox until older than the retention.
// Also the reading side: E2B's ranges and buckets.
import type { Logger } from 'pino'
import type { RuntimeDriver, SandboxUsage } from '../runtime/driver.js'
import type { SandboxRow } from '../store/db.js'
import type { HistoryStore, MetricRow } from '../store/history.js'

/** Old samples and log entries are pruned this often. */
const PRUNE_EVERY_MS = 10 * 60_000
/** Sandboxes read at once in one round (each read is a few small files and one statfs). */
const CONCURRENCY = 16

export interface MetricsSamplerDeps {
  store: HistoryStore
  driver: Pick<RuntimeDriver, 'usage'>
  /** The sandboxes to sample: running ones (not pooled, not being destroyed). */
  running: () => SandboxRow[]
  log: Logger
  intervalMs: number
  retentionMs: number
}

export class MetricsSampler {
  /** Each sandbox's previous CPU reading, to turn CPU time into a percentage over the interval. */
  private readonly previous = new Map<string, { cpuUsec: number; at: number }>()
  private timer?: NodeJS.Timeout
  private lastPrune = 0
  private round?: Promise<void>

  constructor(private readonly d: MetricsSamplerDeps) {}

  start(): void {
    if (this.timer || !this.d.driver.usage) return
    this.timer = setInterval(() => {
      // A round that runs longer than the interval (a stalled disk) is not stacked on.
      if (!this.round) this.round = this.sample().finally(() => (this.round = undefined))
    }, this.d.intervalMs)
    this.timer.unref()
  }

  async stop(): Promise<void> {
    clearInterval(this.timer)
    this.timer = undefined
    await this.round
  }

  /** One round: every running sandbox read, the samples stored in one transaction; old ones pruned now and then. */
  async sample(now = Date.now()): Promise<void> {
    const sandboxes = this.d.running()
    const rows: MetricRow[] = []
    const live = new Set<string>()
    for (let i = 0; i < sandboxes.length; i += CONCURRENCY) {
      const batch = sandboxes.slice(i, i + CONCURRENCY)
      const usages = await Promise.all(batch.map((s) => this.d.driver.usage!(s.id).catch((err: Error) => err)))
      batch.forEach((s, j) => {
        const u = usages[j]
        if (u instanceof Error) return this.d.log.warn({ err: u, sandboxId: s.id }, 'cannot read the sandbox\'s usage')
        if (!u) return
        live.add(s.id)
        const row = this.rowOf(s, u, now)
        if (row) rows.push(row)
      })
    }
    // Readings of sandboxes that ended go.
    for (const id of this.previous.keys()) if (!live.has(id)) this.previous.delete(id)
    if (rows.length) this.d.store.insertMetrics(rows)
    if (now - this.lastPrune >= PRUNE_EVERY_MS) {
      this.lastPrune = now
      const removed = this.d.store.prune(now - this.d.retentionMs)
      if (removed) this.d.log.info({ removed }, 'pruned sandbox metrics and logs past their retention')
    }
  }

  /** A sample, or undefined for a sandbox's first reading (only a baseline for the CPU). */
  private rowOf(s: SandboxRow, u: SandboxUsage, now: number): MetricRow | undefined {
    const prev = this.previous.get(s.id)
    this.previous.set(s.id, { cpuUsec: u.cpuUsec, at: now })
    if (!prev || now <= prev.at) return undefined
    const cpuUsedPct = Math.max(0, Math.min(100, ((u.cpuUsec - prev.cpuUsec) / ((now - prev.at) * 1000 * s.cpuCount)) * 100))
    return {
      sandboxId: s.id,
      at: now,
      cpuCount: s.cpuCount,
      cpuUsedPct: Math.round(cpuUsedPct * 100) / 100,
      memUsed: u.memUsed,
      // A cgroup without a limit (never for a sandbox) counts as the sandbox's memoryMB.
      memTotal: u.memTotal || s.memoryMB * 1024 * 1024,
      memCache: u.memCache,
      diskUsed: u.diskUsed,
      diskTotal: u.diskTotal,
    }
  }
}

/** E2B's bucket for a range of `seconds`: 5 s (<1 h), 30 s (<6 h), 1 min (<12 h), 2 min (<24 h), 5 min (<7 d), else 15 min. */
export function bucketSeconds(seconds: number): number {
  const h = 3600
  if (seconds < h) return 5
  if (seconds < 6 * h) return 30
  if (seconds < 12 * h) return 60
  if (seconds < 24 * h) return 120
  if (seconds < 7 * 24 * h) return 300
  return 900
}

/**
 * Samples folded into buckets of `stepSeconds`: CPU averaged, memory and disk at their highest (a
 * peak is what a user looks for), each bucket stamped with its last sample's time, so every point
 * lies inside the range asked for.
 */
export function bucketize(rows: MetricRow[], stepSeconds: number): MetricRow[] {
  if (stepSeconds <= 5) return rows
  const out: MetricRow[] = []
  let bucket: MetricRow[] = []
  const flush = () => {
    if (!bucket.length) return
    const last = bucket[bucket.length - 1]!
    const max = (k: 'memUsed' | 'memTotal' | 'memCache' | 'diskUsed' | 'diskTotal') => Math.max(...bucket.map((r) => r[k]))
    out.push({
      ...last,
      cpuUsedPct: Math.round((bucket.reduce((a, r) => a + r.cpuUsedPct, 0) / bucket.length) * 100) / 100,
      memUsed: max('memUsed'),
      memTotal: max('memTotal'),
      memCache: max('memCache'),
      diskUsed: max('diskUsed'),
      diskTotal: max('diskTotal'),
    })
    bucket = []
  }
  const stepMs = stepSeconds * 1000
  for (const r of rows) {
    if (bucket.length && Math.floor(bucket[0]!.at / stepMs) !== Math.floor(r.at / stepMs)) flush()
    bucket.push(r)
  }
  flush()
  return out
}
