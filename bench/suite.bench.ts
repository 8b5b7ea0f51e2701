// The benchmark suite (issue 14): Sandlot side by side with a bare `runc run` and `podman run` of the
// same rootfs, in one run on one machine, through the real API and data plane. Writes every figure to
// bench/results.json (each latency as {min, p50, p95, p99, max, runs} in ms) and a section of
// BENCHMARKS.md with the machine and the command. Every loop is bounded in count and time.
//
//   tti          Sandlot SDK: Sandbox.create() → process.startAndWait('echo ok') → output, 100 runs
//                one after another (each killed, untimed, before the next), as ComputeSDK measures
//   tti_e2b      the same through the pinned e2b SDK
//   burst        50 creates at once, then one command each, create to output (the pool sized for
//                it); burst_default_pool: the same with the default pool; *_errors: failures;
//                burst_wall_ms: from the first create to the last output (the sized pool's burst),
//                burst_cpu_ms: the CPU time the host spent meanwhile, all cores (os.cpus(): user,
//                nice, system, irq), i.e. what the burst cost the machine on a quiet host
//   exec         `true` in a running sandbox, 200 runs
//   file_4k/1m   write then read back, 200 / 50 runs
//   upload_mbps, download_mbps   one 100 MiB file, streamed (MB/s, 10^6 bytes)
//   density      idle sandboxes created until 1000, 80 % of memory, or BENCH_DENSITY_MAX: host
//                memory per sandbox (PSS of its processes + its cgroup's kernel memory + its share of
//                the daemon), fresh, and after a sample of them served commands and file calls
//   runc, podman a bare `runc run` and `podman run --rm --rootfs` of `echo ok` on the base rootfs
//   tti_code     create of code-interpreter-v1 → runCode('1 + 1') → result, with a pool of 1 (refilled
//                between runs, untimed); run_code: runCode('1 + 1') in a warm context, 200 runs
//   pause, resume  a memory pause of a running sandbox, and its resume (the call's answer: it runs
//                again), 30 runs; resume_fs: the resume of a files-only pause (booted again, its
//                agent answering), 20 runs
//   snapshot     a snapshot of a sandbox with a few files (a template build), 10 runs
//   fork, fork_10  a fork into 1 / 10 sandboxes, each running when it answers, 10 / 3 runs
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Sandbox as E2BSandbox } from 'e2b'
import { Sandbox, SandlotClient } from 'sandlot'
import { api, apiKey, apiUrl, home } from '../test/helpers.js'
import { fmt, stats } from './stats.js'

const RUNS = { tti: 100, burst: 50, exec: 200, file4k: 200, file1m: 50, reference: 30, code: 20, pause: 30, resumeFs: 20, snapshot: 10, fork: 10, fork10: 3 }
const DENSITY_MAX = Number(process.env.BENCH_DENSITY_MAX ?? 1000)
const DENSITY_SAMPLE = 20
const TRANSFER_MIB = 100
const root = path.resolve(import.meta.dirname, '..')
const opts = { apiUrl, apiKey: apiKey() }
process.env.E2B_API_URL = apiUrl
process.env.E2B_SANDBOX_URL = apiUrl
process.env.E2B_API_KEY = apiKey()

type Latency = { min: number; p50: number; p95: number; p99: number; max: number; runs: number }
const results: Record<string, unknown> = {}
const latency = (ms: number[]): Latency => {
  const s = stats(ms)
  const r = (x: number) => Math.round(x * 100) / 100
  return { min: r(s.min), p50: r(s.p50), p95: r(s.p95), p99: r(s.p99), max: r(s.max), runs: s.n }
}
const started = Date.now()
const progress = (msg: string) => console.log(`[suite ${((Date.now() - started) / 1000).toFixed(0)}s] ${msg}`)

async function timedLoop(name: string, n: number, fn: (i: number) => Promise<void>, after?: () => Promise<void>): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) {
    const t0 = performance.now()
    await fn(i)
    out.push(performance.now() - t0)
    await after?.()
    if ((i + 1) % Math.max(1, Math.floor(n / 4)) === 0) progress(`${name}: ${i + 1}/${n}`)
  }
  return out
}

async function poolReady(size: number, timeoutMs = 120_000, template = 'base'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const pools = (await api<{ template: string; ready: number }[]>('GET', '/api/v1/pools')).json
    if ((pools.find((p) => p.template === template)?.ready ?? 0) >= size) return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`the pool of ${template} did not reach ${size} ready sandboxes`)
}

// --- warm-up, then time to interactive ---
const defaultPool = (await api<{ template: string; size: number }[]>('GET', '/api/v1/pools')).json.find((p) => p.template === 'base')?.size ?? 0
await (await Sandbox.create(opts)).kill()
await poolReady(defaultPool)
progress(`tti: ${RUNS.tti} sequential creates → echo ok (pool of base: ${defaultPool})`)
let last: { kill(): Promise<unknown> } | undefined
const tti = await timedLoop('tti', RUNS.tti, async () => {
  const s = await Sandbox.create(opts)
  const r = await s.process.startAndWait('echo ok')
  if (r.stdout.trim() !== 'ok') throw new Error(`unexpected output ${JSON.stringify(r.stdout)}`)
  last = s
}, async () => void (await last?.kill()))
results.tti = latency(tti)

progress(`tti_e2b: ${RUNS.tti} sequential creates → echo ok through the e2b SDK`)
const ttiE2b = await timedLoop('tti_e2b', RUNS.tti, async () => {
  const s = await E2BSandbox.create()
  const r = await s.commands.run('echo ok')
  if (r.stdout !== 'ok\n') throw new Error(`unexpected output ${JSON.stringify(r.stdout)}`)
  last = s
}, async () => void (await last?.kill()))
results.tti_e2b = latency(ttiE2b)

// --- burst ---
/** The host's CPU time so far, all cores (ms). */
const hostCpuMs = () => os.cpus().reduce((sum, c) => sum + c.times.user + c.times.nice + c.times.sys + c.times.irq, 0)

async function burst(n: number): Promise<{ ms: number[]; errors: number; wallMs: number; cpuMs: number }> {
  const made: Sandbox[] = []
  let errors = 0
  const cpu0 = hostCpuMs()
  const wall0 = performance.now()
  const ms = (
    await Promise.all(
      Array.from({ length: n }, async () => {
        const t0 = performance.now()
        try {
          const s = await Sandbox.create(opts)
          made.push(s)
          const r = await s.process.startAndWait('echo ok')
          if (r.stdout.trim() !== 'ok') throw new Error('unexpected output')
          return performance.now() - t0
        } catch {
          errors++
          return undefined
        }
      }),
    )
  ).filter((x): x is number => x !== undefined)
  const wallMs = Math.round(performance.now() - wall0)
  const cpuMs = Math.round(hostCpuMs() - cpu0)
  await Promise.all(made.map((s) => s.kill().catch(() => {})))
  return { ms, errors, wallMs, cpuMs }
}
progress(`burst: ${RUNS.burst} creates at once, the pool sized for it`)
await api('PUT', '/api/v1/pools/base', { size: RUNS.burst })
await poolReady(RUNS.burst, 180_000)
const sized = await burst(RUNS.burst)
results.burst = latency(sized.ms)
results.burst_errors = sized.errors
results.burst_pool_size = RUNS.burst
results.burst_wall_ms = sized.wallMs
results.burst_cpu_ms = sized.cpuMs
await api('PUT', '/api/v1/pools/base', { size: defaultPool })
await poolReady(defaultPool)
progress(`burst: ${RUNS.burst} creates at once, the default pool (${defaultPool})`)
const cold = await burst(RUNS.burst)
results.burst_default_pool = latency(cold.ms)
results.burst_default_pool_errors = cold.errors

// --- one sandbox: commands, files, transfers ---
await poolReady(defaultPool)
const s = await Sandbox.create(opts)
progress(`exec: ${RUNS.exec} × true`)
results.exec = latency(await timedLoop('exec', RUNS.exec, async () => void (await s.process.startAndWait('true'))))
const fileLoop = async (name: string, n: number, size: number) => {
  const data = new Uint8Array(size).fill(120)
  return latency(
    await timedLoop(name, n, async (i) => {
      await s.filesystem.writeBytes(`/tmp/${name}-${i}`, data)
      if ((await s.filesystem.readBytes(`/tmp/${name}-${i}`)).length !== size) throw new Error('short read')
    }),
  )
}
results.file_4k = await fileLoop('file_4k', RUNS.file4k, 4096)
results.file_1m = await fileLoop('file_1m', RUNS.file1m, 2 ** 20)
progress(`upload and download of ${TRANSFER_MIB} MiB`)
const local = path.join(os.tmpdir(), `sandlot-bench-${process.pid}.bin`)
const bytes = TRANSFER_MIB * 2 ** 20
fs.writeFileSync(local, Buffer.alloc(bytes, 7))
const mbps = (ms: number) => Math.round((bytes / 1e6 / (ms / 1000)) * 10) / 10
let t0 = performance.now()
await s.uploadFile('/tmp/big.bin', local)
results.upload_mbps = mbps(performance.now() - t0)
t0 = performance.now()
const got = await s.downloadFile('/tmp/big.bin', `${local}.back`)
results.download_mbps = mbps(performance.now() - t0)
if (got !== bytes) throw new Error(`downloaded ${got} bytes of ${bytes}`)
fs.rmSync(local)
fs.rmSync(`${local}.back`)
await s.kill()

// --- pause, resume, snapshots and fork (issue 15) ---
{
  const client = new SandlotClient(opts)
  const { id } = await client.createSandbox({ keepAlive: 30 * 60_000 })
  const c = await client.connect(id)
  await c.exec(['sh', '-c', 'mkdir -p /home/user/work && for i in $(seq 20); do head -c 4096 /dev/urandom > /home/user/work/f$i; done'])
  progress(`pause and resume: ${RUNS.pause} × each`)
  const pauseMs: number[] = []
  const resumeMs: number[] = []
  for (let i = 0; i < RUNS.pause; i++) {
    let t = performance.now()
    await client.pauseSandbox(id)
    pauseMs.push(performance.now() - t)
    t = performance.now()
    await client.resumeSandbox(id, { keepAlive: 30 * 60_000 })
    resumeMs.push(performance.now() - t)
  }
  results.pause = latency(pauseMs)
  results.resume = latency(resumeMs)
  await client.pauseSandbox(id, { keepMemory: false })
  results.resume_fs = latency(
    await timedLoop('resume_fs', RUNS.resumeFs, async () => void (await client.resumeSandbox(id, { keepAlive: 30 * 60_000 })), async () => void (await client.pauseSandbox(id, { keepMemory: false }))),
  )
  await client.resumeSandbox(id, { keepAlive: 30 * 60_000 })
  const snapshots: string[] = []
  results.snapshot = latency(await timedLoop('snapshot', RUNS.snapshot, async () => void snapshots.push((await client.snapshotSandbox(id)).template)))
  for (const t of snapshots) await api('DELETE', `/api/v1/templates/${t}`)
  const forkLoop = async (name: string, runs: number, count: number) => {
    let made: string[] = []
    return latency(
      await timedLoop(name, runs, async () => {
        const forks = await client.forkSandbox(id, { count, keepAlive: 60_000 })
        made = forks.flatMap((f) => ('id' in f ? [f.id] : []))
        if (made.length !== count) throw new Error(`${name}: ${count - made.length} of ${count} forks failed`)
      }, async () => {
        await Promise.all(made.map((f) => client.killSandbox(f)))
      }),
    )
  }
  results.fork = await forkLoop('fork', RUNS.fork, 1)
  results.fork_10 = await forkLoop('fork_10', RUNS.fork10, 10)
  await client.killSandbox(id)
}

// --- the code interpreter (issue 16): create → first runCode result with its pool, runCode warm ---
const CODE = 'code-interpreter-v1'
progress(`code interpreter: a pool of 1 (the first run builds ${CODE}: a few minutes)`)
const codePool = await api('PUT', `/api/v1/pools/${CODE}`, { size: 1 })
if (codePool.status !== 200) throw new Error(`cannot give ${CODE} a pool: ${JSON.stringify(codePool.json)}`)
await poolReady(1, 15 * 60_000, CODE)
const ttiCode = await timedLoop('tti_code', RUNS.code, async () => {
  const c = await Sandbox.create(CODE, opts)
  const r = await c.runCode('1 + 1')
  if (r.text !== '2') throw new Error(`unexpected result ${JSON.stringify(r.text)}`)
  last = c
}, async () => {
  await last?.kill()
  await poolReady(1, 120_000, CODE)
})
results.tti_code = latency(ttiCode)
const coder = await Sandbox.create(CODE, opts)
await coder.runCode('1 + 1')
results.run_code = latency(await timedLoop('run_code', RUNS.exec, async () => {
  if ((await coder.runCode('1 + 1')).text !== '2') throw new Error('unexpected result')
}))
await coder.kill()
await api('PUT', `/api/v1/pools/${CODE}`, { size: 0 })

// --- density ---
const memInfo = () => Object.fromEntries(fs.readFileSync('/proc/meminfo', 'utf8').split('\n').filter(Boolean).map((l) => [l.split(':')[0]!, Number(l.split(/\s+/)[1]) * 1024]))
const daemonPid = Number(fs.readFileSync(path.join(home, 'server.lock'), 'utf8').trim().split(/\s+/)[0])
const rssOf = (pid: number) => Number(/^Rss:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0) * 1024
/** PSS of a sandbox's processes and its cgroup's kernel memory (cgroup v1 or v2), in bytes. */
function sandboxCost(id: string): { pss: number; kernel: number } {
  const v1 = `/sys/fs/cgroup/memory/sandlot/${id}`
  const dir = fs.existsSync(v1) ? v1 : `/sys/fs/cgroup/sandlot/${id}`
  let pss = 0
  for (const pid of fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').trim().split('\n').filter(Boolean)) {
    try {
      pss += Number(/^Pss:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0) * 1024
    } catch {
      // gone meanwhile
    }
  }
  const kernel = fs.existsSync(path.join(dir, 'memory.kmem.usage_in_bytes'))
    ? Number(fs.readFileSync(path.join(dir, 'memory.kmem.usage_in_bytes'), 'utf8'))
    : Number(/^kernel (\d+)/m.exec(fs.readFileSync(path.join(dir, 'memory.stat'), 'utf8'))?.[1] ?? 0)
  return { pss, kernel }
}
const mib = (b: number) => Math.round((b / 2 ** 20) * 100) / 100

progress(`density: idle sandboxes until ${DENSITY_MAX} or 80 % of memory`)
await api('PUT', '/api/v1/pools/base', { size: 0 })
const before = memInfo()
const daemonBefore = rssOf(daemonPid)
const ids: string[] = []
let densityStop = `the cap (${DENSITY_MAX})`
const densityDeadline = Date.now() + 6 * 60_000
while (ids.length < DENSITY_MAX) {
  const m = memInfo()
  if (m.MemAvailable! < 0.2 * m.MemTotal!) {
    densityStop = '80 % of memory'
    break
  }
  if (Date.now() > densityDeadline) {
    densityStop = 'the time limit (6 min)'
    break
  }
  const batch = await Promise.all(Array.from({ length: Math.min(4, DENSITY_MAX - ids.length) }, () => api('POST', '/api/v1/sandboxes', { keepAliveMs: 1_800_000 })))
  const failed = batch.find((r) => r.status !== 201)
  for (const r of batch) if (r.status === 201) ids.push(r.json.id)
  if (failed) {
    densityStop = `an error: ${JSON.stringify(failed.json).slice(0, 200)}`
    break
  }
  if (ids.length % 100 < 4) progress(`density: ${ids.length}`)
}
await new Promise((r) => setTimeout(r, 3000))
const costs = ids.map(sandboxCost)
const daemonShare = Math.max(0, rssOf(daemonPid) - daemonBefore) / Math.max(1, ids.length)
const avg = (f: (c: { pss: number; kernel: number }) => number, of = costs) => of.reduce((a, c) => a + f(c), 0) / Math.max(1, of.length)
const fresh = avg((c) => c.pss) + avg((c) => c.kernel) + daemonShare
const after = memInfo()
progress(`density: ${ids.length} sandboxes (stopped at ${densityStop}); a sample of ${DENSITY_SAMPLE} serves commands and file calls`)
const sample = ids.slice(0, DENSITY_SAMPLE)
for (const id of sample) {
  const sb = await Sandbox.reconnect(id, opts)
  for (let i = 0; i < 200; i++) await sb.process.startAndWait(`echo ${i}`)
  for (let i = 0; i < 100; i++) {
    await sb.filesystem.write(`/tmp/f${i % 10}`, 'x'.repeat(4096))
    await sb.filesystem.read(`/tmp/f${i % 10}`)
  }
  await sb.close()
}
await new Promise((r) => setTimeout(r, 3000))
const used = sample.map(sandboxCost)
const usedEach = avg((c) => c.pss, used) + avg((c) => c.kernel, used) + daemonShare
results.density = {
  count: ids.length,
  stopped_at: densityStop,
  mib_each: mib(fresh),
  mib_each_used: mib(usedEach),
  pss_mib_each: mib(avg((c) => c.pss)),
  kernel_mib_each: mib(avg((c) => c.kernel)),
  daemon_mib_each: mib(daemonShare),
  host_available_mib_each: mib((before.MemAvailable! - after.MemAvailable!) / Math.max(1, ids.length)),
  used_sample: sample.length,
}
progress('density: destroying them')
for (let i = 0; i < ids.length; i += 8) await Promise.all(ids.slice(i, i + 8).map((id) => api('DELETE', `/api/v1/sandboxes/${id}`)))
await api('PUT', '/api/v1/pools/base', { size: defaultPool })

// --- references: bare runc and podman on the same rootfs ---
const templatesDir = process.env.SANDLOT_TEMPLATES_DIR ?? path.join(home, 'templates')
const rootfs = fs.readdirSync(path.join(templatesDir, 'base')).map((h) => path.join(templatesDir, 'base', h, 'rootfs')).find((r) => fs.existsSync(path.join(r, 'etc/os-release')))!
function runOnce(cmd: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t = performance.now()
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    child.on('error', reject)
    child.on('close', (code) => (code === 0 && out.trim() === 'ok' ? resolve(performance.now() - t) : reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}: ${err.slice(-500)}`))))
  })
}
progress(`runc: ${RUNS.reference} × runc run (echo ok) on the base rootfs`)
const bundle = fs.mkdtempSync(path.join(os.tmpdir(), 'sandlot-bench-runc-'))
execFileSync('runc', ['spec', '--bundle', bundle])
const spec = JSON.parse(fs.readFileSync(path.join(bundle, 'config.json'), 'utf8'))
spec.process.terminal = false
spec.process.args = ['echo', 'ok']
spec.root = { path: rootfs, readonly: true }
fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(spec))
const runcRoot = path.join(bundle, 'state')
await runOnce('runc', ['--root', runcRoot, 'run', '--bundle', bundle, 'warmup'])
const runcTimes: number[] = []
for (let i = 0; i < RUNS.reference; i++) runcTimes.push(await runOnce('runc', ['--root', runcRoot, 'run', '--bundle', bundle, `bench-${i}`]))
results.runc = latency(runcTimes)
fs.rmSync(bundle, { recursive: true, force: true })

if (spawnSync('sh', ['-c', 'command -v podman'], { stdio: 'ignore' }).status !== 0) {
  progress('installing podman from Debian (the reference)')
  execFileSync('apt-get', ['install', '-y', '-qq', 'podman'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
}
progress(`podman: ${RUNS.reference} × podman run --rm --rootfs (echo ok)`)
// :O lays an overlay on the rootfs, so podman's own files (/etc/hosts…) never touch the template;
// runc as ours; open files and processes limited below this host's hard limits (podman's defaults
// are above them, and its container, without CAP_SYS_RESOURCE, cannot raise them).
const podmanArgs = ['run', '--rm', '--runtime', 'runc', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=4096:4096', '--rootfs', `${rootfs}:O`, 'echo', 'ok']
try {
  await runOnce('podman', podmanArgs)
  const podmanTimes: number[] = []
  for (let i = 0; i < RUNS.reference; i++) podmanTimes.push(await runOnce('podman', podmanArgs))
  results.podman = latency(podmanTimes)
} catch (err) {
  // A reference that cannot run here is reported, and the rest of the figures kept.
  results.podman = { error: (err as Error).message.slice(0, 300) }
  progress(`podman could not run: ${(err as Error).message.slice(0, 300)}`)
}

// --- write ---
const cpu = os.cpus()[0]?.model ?? 'unknown CPU'
const machine = `${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Linux ${os.release()}, Node ${process.version}, load average ${os.loadavg()[0]!.toFixed(1)} at the end`
const command = 'npm run bench (bench/suite.bench.ts)'
results.machine = machine
results.command = command
results.date = new Date().toISOString()
const resultsFile = path.join(root, 'bench/results.json')
const previous = fs.existsSync(resultsFile) ? JSON.parse(fs.readFileSync(resultsFile, 'utf8')) : {}
fs.writeFileSync(resultsFile, JSON.stringify({ ...previous, ...results }, null, 2) + '\n')

const row = (name: string, what: string, l: Latency) => `| \`${name}\` | ${what} | ${fmt(l.p50)} | ${fmt(l.p95)} | ${fmt(l.p99)} | ${fmt(l.min)} | ${fmt(l.max)} | ${l.runs} |`
const L = (k: string) => results[k] as Latency
const d = results.density as Record<string, number | string>
const section = [
  `## The suite (issue 14), ${new Date().toISOString().slice(0, 10)}`,
  '',
  `\`${command}\`; ${machine}. Every figure also in bench/results.json.`,
  '',
  '| key | what | p50 | p95 | p99 | min | max | runs |',
  '|---|---|---|---|---|---|---|---|',
  row('tti', `Sandlot SDK: create → \`echo ok\` → output, one after another (pool of base: ${defaultPool})`, L('tti')),
  row('tti_e2b', 'the same through the e2b SDK', L('tti_e2b')),
  row('burst', `${RUNS.burst} creates at once → one command each (pool sized ${RUNS.burst}); errors: ${results.burst_errors}`, L('burst')),
  row('burst_default_pool', `the same with the default pool (${defaultPool}); errors: ${results.burst_default_pool_errors}`, L('burst_default_pool')),
  row('exec', '`true` in a running sandbox', L('exec')),
  row('tti_code', `code interpreter: create → \`runCode('1 + 1')\` → result, its pool of 1 refilled between runs`, L('tti_code')),
  row('run_code', "`runCode('1 + 1')` in a warm context", L('run_code')),
  row('pause', 'memory pause of a running sandbox (processes frozen)', L('pause')),
  row('resume', 'its resume: it runs again when the call answers', L('resume')),
  row('resume_fs', 'resume of a files-only pause: booted again from its files, its agent answering', L('resume_fs')),
  row('snapshot', 'snapshot of a sandbox (its files frozen for the copy) as a template build', L('snapshot')),
  row('fork', 'fork into 1 sandbox, running when the call answers', L('fork')),
  row('fork_10', 'fork into 10 sandboxes at once', L('fork_10')),
  row('file_4k', 'write then read back 4 KiB', L('file_4k')),
  row('file_1m', 'write then read back 1 MiB', L('file_1m')),
  row('runc', 'reference: bare `runc run` of `echo ok` on the base rootfs', L('runc')),
  'error' in (results.podman as object) ? `| \`podman\` | reference: could not run: ${(results.podman as { error: string }).error} | | | | | | |` : row('podman', 'reference: `podman run --rm --runtime runc --rootfs` of `echo ok`', L('podman')),
  '',
  `The burst of ${RUNS.burst} (pool sized ${RUNS.burst}): ${results.burst_wall_ms} ms from the first create to the last output, and ${results.burst_cpu_ms} ms of the host's CPU time meanwhile (all cores; ${(Number(results.burst_cpu_ms) / Number(results.burst_wall_ms)).toFixed(2)} cores busy on average).`,
  '',
  `Transfers of one ${TRANSFER_MIB} MiB file: upload ${results.upload_mbps} MB/s, download ${results.download_mbps} MB/s.`,
  '',
  `Density: ${d.count} idle sandboxes (stopped at ${d.stopped_at}); host memory each ${d.mib_each} MiB fresh (PSS ${d.pss_mib_each} + kernel ${d.kernel_mib_each} + daemon ${d.daemon_mib_each}; MemAvailable fell ${d.host_available_mib_each} MiB each), ${d.mib_each_used} MiB after ${d.used_sample} of them served 200 commands and 100 file writes and reads each.`,
  '',
]
const benchmarks = path.join(root, 'BENCHMARKS.md')
const text = fs.readFileSync(benchmarks, 'utf8')
const start = '<!-- suite:start -->'
const end = '<!-- suite:end -->'
const block = `${start}\n${section.join('\n')}${end}`
fs.writeFileSync(benchmarks, text.includes(start) ? text.replace(new RegExp(`${start}[\\s\\S]*?${end}`), block) : text.replace(/\n## /, `\n${block}\n\n## `))
console.log(section.join('\n'))
progress('done')
