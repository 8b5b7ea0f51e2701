// Engine benchmarks: create → first command output (through the server's warm pool, as configured), a command in a running sandbox, the
// host memory an idle sandbox costs, and destroy. Prints a markdown table for BENCHMARKS.md.
import fs from 'node:fs'
import os from 'node:os'
import { api, createSandbox, killSandbox, run } from '../test/helpers.js'
import { fmt, stats } from './stats.js'

const N_CREATE = Number(process.env.BENCH_CREATE ?? 30)
const N_EXEC = Number(process.env.BENCH_EXEC ?? 300)
const N_IDLE = Number(process.env.BENCH_IDLE ?? 20)

function memAvailableKiB(): number {
  const line = fs.readFileSync('/proc/meminfo', 'utf8').split('\n').find((l) => l.startsWith('MemAvailable:'))!
  return Number(line.split(/\s+/)[1])
}

/** Proportional set size of the processes in a sandbox's cgroup (shared pages split between sharers). */
function cgroupPssKiB(id: string): number {
  const pids = fs.readFileSync(`/sys/fs/cgroup/memory/sandlot/${id}/cgroup.procs`, 'utf8').trim().split('\n').filter(Boolean)
  let total = 0
  for (const pid of pids) {
    const text = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8')
    total += Number(/^Pss:\s+(\d+)/m.exec(text)?.[1] ?? 0)
  }
  return total
}

const rows: string[] = []
const line = (what: string, value: string) => rows.push(`| ${what} | ${value} |`)

// Warm-up: the first sandbox pays for cold page cache.
await killSandbox((await createSandbox()).id)

const createToOutput: number[] = []
const destroy: number[] = []
for (let i = 0; i < N_CREATE; i++) {
  const t0 = performance.now()
  const { id } = await createSandbox()
  const r = await run(id, 'echo ready')
  createToOutput.push(performance.now() - t0)
  if (r.stdout !== 'ready\n') throw new Error(`unexpected output ${JSON.stringify(r)}`)
  const t1 = performance.now()
  await killSandbox(id)
  destroy.push(performance.now() - t1)
}
const c = stats(createToOutput)
line(`create → first command output (ms, n=${c.n}, the server's pool of base on: SANDLOT_POOL)`, `p50 ${fmt(c.p50)} · p95 ${fmt(c.p95)} · p99 ${fmt(c.p99)} · min ${fmt(c.min)} · max ${fmt(c.max)}`)

const { id } = await createSandbox()
const exec: number[] = []
for (let i = 0; i < N_EXEC; i++) {
  const t0 = performance.now()
  await run(id, 'true')
  exec.push(performance.now() - t0)
}
await killSandbox(id)
const e = stats(exec)
line(`command in a running sandbox, \`true\` start → exit event (ms, n=${e.n})`, `p50 ${fmt(e.p50)} · p95 ${fmt(e.p95)} · p99 ${fmt(e.p99)}`)
const d = stats(destroy)
line(`destroy (ms, n=${d.n})`, `p50 ${fmt(d.p50)} · p99 ${fmt(d.p99)}`)

// Idle memory: host MemAvailable before and after N idle sandboxes, and what their processes hold.
await new Promise((r) => setTimeout(r, 1000))
const before = memAvailableKiB()
const idle: string[] = []
for (let i = 0; i < N_IDLE; i++) idle.push((await createSandbox()).id)
await new Promise((r) => setTimeout(r, 3000))
const after = memAvailableKiB()
const pss = idle.map(cgroupPssKiB)
const usage = idle.map((s) => Number(fs.readFileSync(`/sys/fs/cgroup/memory/sandlot/${s}/memory.usage_in_bytes`, 'utf8')) / 1024)
for (const s of idle) await killSandbox(s)
const perSandbox = (before - after) / N_IDLE
const avgPss = pss.reduce((a, b) => a + b, 0) / N_IDLE
line(`idle sandbox: host MemAvailable drop per sandbox (MiB, n=${N_IDLE})`, fmt(perSandbox / 1024))
line('idle sandbox: PSS of its processes (init + agent) (MiB)', fmt(avgPss / 1024))
line('idle sandbox: beyond its processes (MiB) = drop − PSS', fmt((perSandbox - avgPss) / 1024))
line('idle sandbox: its memory cgroup usage incl. page cache (MiB)', fmt(usage.reduce((a, b) => a + b, 0) / N_IDLE / 1024))

const health = await api('GET', '/health')
console.log(`\nHost: ${os.cpus().length} × ${os.cpus()[0]?.model}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${os.release()}, Node ${process.versions.node}, runtime ${process.env.SANDLOT_RUNTIME ?? 'runc'} (health ${health.status})\n`)
console.log('| measure | result |\n|---|---|')
console.log(rows.join('\n'))
