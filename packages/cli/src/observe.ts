// `sandlot metrics` (the latest figures and a small chart of CPU and memory, drawn by asciichart)
// and `sandlot logs [-f]` (a sandbox's log; -f long-polls until the sandbox has ended).
import { plot } from 'asciichart'
import type { LogEntry, LogLevel, SandboxMetric } from 'sandlot'
import { CliError, client } from './client.js'
import { outputWidth, printJson } from './format.js'

const MiB = 2 ** 20
/** How long one follow read waits on the server for a new entry. */
const FOLLOW_WAIT_MS = 25_000
const LEVELS: LogLevel[] = ['debug', 'info', 'warn', 'error']

const mib = (bytes: number) => Math.round(bytes / MiB)

/** At most `n` points: each the mean of a run of neighbours (a chart never wraps the terminal). */
export function fitSeries(values: number[], n: number): number[] {
  if (values.length <= n) return values
  const out: number[] = []
  for (let i = 0; i < n; i++) {
    const from = Math.floor((i * values.length) / n)
    const to = Math.max(from + 1, Math.floor(((i + 1) * values.length) / n))
    const run = values.slice(from, to)
    out.push(run.reduce((a, v) => a + v, 0) / run.length)
  }
  return out
}

function chart(title: string, values: number[], max: number, unit: string): string {
  // The axis labels take about 12 columns.
  const width = Math.max(10, Math.min(outputWidth(), 120) - 14)
  const series = fitSeries(values, width)
  const drawn = plot(series, { height: 6, min: 0, max: Math.max(max, ...series), format: (x: number) => `${x.toFixed(0).padStart(7)} ${unit}` })
  return `${title}\n${drawn}`
}

export async function metrics(id: string, o: { sinceMs?: number; json: boolean }): Promise<void> {
  const samples: SandboxMetric[] = await client().getMetrics(id, o.sinceMs === undefined ? {} : { start: Date.now() - o.sinceMs })
  if (o.json) return printJson(samples)
  const last = samples.at(-1)
  if (!last) {
    console.error(`Sandbox ${id} has no samples${o.sinceMs === undefined ? '' : ' in that time'} yet: the server takes one every few seconds while it runs.`)
    return
  }
  const first = samples[0]!
  console.log(`Sandbox ${id}: ${samples.length} samples from ${first.timestamp.toISOString()} to ${last.timestamp.toISOString()}`)
  console.log(
    `now: CPU ${last.cpuUsedPct.toFixed(1)}% of ${last.cpuCount} CPU${last.cpuCount > 1 ? 's' : ''} | memory ${mib(last.memUsed)} / ${mib(last.memTotal)} MiB (cache ${mib(last.memCache)}) | disk ${mib(last.diskUsed)} / ${mib(last.diskTotal)} MiB`,
  )
  if (samples.length < 2) return
  console.log()
  console.log(chart('CPU (%)', samples.map((s) => s.cpuUsedPct), 100, '%'))
  console.log()
  console.log(chart('memory (MiB)', samples.map((s) => s.memUsed / MiB), last.memTotal / MiB, 'MiB'))
}

function printEntry(e: LogEntry, json: boolean): void {
  if (json) return console.log(JSON.stringify(e))
  const { logger, ...rest } = e.fields
  const extra = Object.entries(rest).map(([k, v]) => `${k}=${v}`).join(' ')
  console.log(`${e.timestamp.toISOString()} ${e.level.toUpperCase().padEnd(5)} [${logger ?? '-'}] ${e.message}${extra ? `  ${extra}` : ''}`)
}

export function parseLevel(raw: string | undefined): LogLevel | undefined {
  if (raw === undefined) return undefined
  const level = raw.toLowerCase() as LogLevel
  if (!LEVELS.includes(level)) throw new CliError(`--level must be one of ${LEVELS.join(', ')}`, 2)
  return level
}

export async function logs(id: string, o: { follow: boolean; json: boolean; level?: LogLevel }): Promise<void> {
  let after = 0
  for (;;) {
    const page = await client().getLogs(id, { after, level: o.level, wait: o.follow ? FOLLOW_WAIT_MS : undefined })
    for (const e of page.logs) printEntry(e, o.json)
    after = page.next
    // Followed until the sandbox has ended and its last entries are printed.
    if (!o.follow || (!page.running && !page.logs.length)) return
  }
}
