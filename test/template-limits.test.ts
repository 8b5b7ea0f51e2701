// Template builds at the server's limits, on a daemon of its own with small ones: uploads over
// SANDLOT_MAX_TEMPLATE_UPLOAD_MB (declared and chunked, on both upload routes) answered 413 with the
// connection whole; build resources capped at the server's maxima; three builds at once, none
// trampling another; a ready command that fails at create (a 500 with its output, nothing left); a
// cached layer a running build reuses survives the collection (SANDLOT_LAYER_COLLECT_INTERVAL_MS);
// and the build time limit (SANDLOT_BUILD_TIMEOUT_MS), named at the step it stopped.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { apiAt, run, spawnDaemon, waitFor, type Daemon } from './helpers.js'

const port = Number(process.env.SANDLOT_TEST_PORT ?? 3190) + 15
const ownHome = path.resolve(`.sandlot-test/template-limits-${port}`)
const daemonEnv = {
  SANDLOT_HOME: ownHome,
  SANDLOT_POOL: '0',
  SANDLOT_READY_TIMEOUT_MS: '3000',
  SANDLOT_MAX_TEMPLATE_UPLOAD_MB: '1',
  SANDLOT_MAX_CONCURRENT_BUILDS: '3',
  SANDLOT_MAX_CPU_COUNT: '1',
  SANDLOT_MAX_MEMORY_MB: '768',
  SANDLOT_LAYER_COLLECT_INTERVAL_MS: '300',
}
let daemon: Daemon
let key = ''
const call = apiAt(() => daemon.url, () => key)

async function start(env: Record<string, string> = {}): Promise<void> {
  daemon = spawnDaemon(port, { ...daemonEnv, ...env }, fs.openSync(`${ownHome}.log`, 'a'))
  await waitFor(async () => (await fetch(`${daemon.url}/health`).catch(() => undefined))?.ok, 120_000, 'the template-limits daemon')
  key = fs.readFileSync(path.join(ownHome, 'api-key'), 'utf8').trim()
}

interface Entry {
  timestamp: string
  message: string
  step?: string
}
interface Ended {
  status: string
  logEntries: Entry[]
  reason?: { message: string; step?: string }
  templateId: string
  buildId: string
}

async function startBuild(body: Record<string, unknown>): Promise<{ templateId: string; buildId: string }> {
  const r = await call('POST', '/api/v1/templates', body)
  assert.equal(r.status, 202, JSON.stringify(r.json))
  return r.json
}

/** Follows a build to its end; every log entry. */
async function ended(b: { templateId: string; buildId: string }): Promise<Ended> {
  const logs: Entry[] = []
  for (;;) {
    const s = await call('GET', `/api/v1/templates/${b.templateId}/builds/${b.buildId}?logsOffset=${logs.length}`)
    assert.equal(s.status, 200)
    logs.push(...s.json.logEntries)
    if ((s.json.status === 'ready' || s.json.status === 'error') && s.json.logEntries.length === 0) return { ...s.json, logEntries: logs, ...b }
    if (s.json.logEntries.length === 0) await new Promise((r) => setTimeout(r, 200))
  }
}
const build = async (body: Record<string, unknown>) => ended(await startBuild(body))

/** Containers of the daemon's runtime that are no sandbox of its list (a build sandbox left behind). */
async function strayContainers(): Promise<string[]> {
  const runtime = execFileSync('runc', ['--root', path.join(ownHome, 'runtime/runc'), 'list', '-q']).toString().split('\n').filter(Boolean)
  const sandboxes = (await call<{ id: string }[]>('GET', '/api/v1/sandboxes')).json.map((s) => s.id)
  return runtime.filter((id) => !sandboxes.includes(id))
}

describe('template builds at the server limits', { concurrency: false }, () => {
  before(async () => {
    fs.rmSync(ownHome, { recursive: true, force: true })
    fs.mkdirSync(path.dirname(ownHome), { recursive: true })
    fs.writeFileSync(`${ownHome}.log`, '')
    await start()
  })
  after(async () => {
    for (const s of (await call<{ id: string }[]>('GET', '/api/v1/sandboxes').catch(() => undefined))?.json ?? []) await call('DELETE', `/api/v1/sandboxes/${s.id}`)
    await daemon?.stop()
  })

  test('an upload over the limit is a 413 on both upload routes, declared or chunked; nothing is kept and the connection is not reset', async () => {
    const limit = 1024 * 1024
    // gzip's magic first, so only the size is wrong.
    const big = Buffer.concat([Buffer.from([0x1f, 0x8b]), crypto.randomBytes(2 * limit)])
    const hash = crypto.createHash('sha256').update(big).digest('hex')
    const created = await call('POST', '/v3/templates', { name: 'uploads' })
    assert.equal(created.status, 202)
    const link = await call('GET', `/templates/${created.json.templateID}/files/${hash}`)
    assert.equal(link.status, 201)
    const routes = [
      { name: 'Sandlot', url: `${daemon.url}/api/v1/templates/files/${hash}`, headers: { 'x-api-key': key } },
      { name: 'E2B upload link', url: link.json.url as string, headers: {} },
    ]
    for (const route of routes) {
      for (const chunked of [false, true]) {
        const what = `${route.name}, ${chunked ? 'chunked' : 'Content-Length'}`
        // Chunked: a stream of 64 KiB pieces, whose length nobody declares.
        const body = chunked
          ? new ReadableStream<Uint8Array>({
              start(c) {
                for (let at = 0; at < big.length; at += 65536) c.enqueue(big.subarray(at, at + 65536))
                c.close()
              },
            })
          : big
        const res = await fetch(route.url, { method: 'PUT', headers: route.headers, body, ...(chunked && { duplex: 'half' }) } as RequestInit).catch((err: Error) => assert.fail(`${what}: ${err.message} (${String((err.cause as Error)?.message)})`))
        assert.equal(res.status, 413, what)
        assert.match(((await res.json()) as { message: string }).message, /SANDLOT_MAX_TEMPLATE_UPLOAD_MB/, what)
      }
    }
    assert.deepEqual((await call('GET', `/api/v1/templates/files/${hash}`)).json, { present: false })
    assert.deepEqual(fs.readdirSync(path.join(ownHome, 'template-files')), [], 'no scratch file left')
    // Just under the limit is taken.
    const fits = Buffer.concat([Buffer.from([0x1f, 0x8b]), crypto.randomBytes(limit - 2)])
    const put = await fetch(`${daemon.url}/api/v1/templates/files/${crypto.createHash('sha256').update(fits).digest('hex')}`, { method: 'PUT', headers: { 'x-api-key': key }, body: fits })
    assert.equal(put.status, 201)
  })

  test('a build asking for more CPUs and memory than the server allows runs within its maxima', async () => {
    const b = await build({ name: 'capped', cpuCount: 8, memoryMB: 65536, steps: [{ type: 'RUN', args: ['echo "cpus=$(nproc) mem=$(awk \'/MemTotal/ {print int($2/1024)}\' /proc/meminfo)"'] }] })
    assert.equal(b.status, 'ready', JSON.stringify(b.reason))
    const line = b.logEntries.find((e) => e.step === '1' && e.message.startsWith('cpus='))?.message
    const [, cpus, mem] = /^cpus=(\d+) mem=(\d+)$/.exec(line ?? '') ?? []
    assert.equal(cpus, '1', line)
    assert.ok(Number(mem) > 0 && Number(mem) <= 768, line)
  })

  test('three builds at once: each runs alongside the others and keeps its own files, logs and layers', async () => {
    const names = ['trio-a', 'trio-b', 'trio-c']
    // Each step runs until one moment of the host's clock (which sandboxes share), 15 s ahead: the
    // three overlap unless a build sandbox took that long to start.
    const until = Math.ceil(Date.now() / 1000) + 15
    const step = (name: string) => `echo start-${name}; while [ "$(date +%s)" -lt ${until} ]; do sleep 0.2; done; echo ${name} > /tmp/mine; echo done-${name}`
    const started = await Promise.all(names.map((name) => startBuild({ name, steps: [{ type: 'RUN', args: [step(name)] }] })))
    // All three are building at once (the server allows 3): none waits for another.
    for (const b of started) assert.equal((await call('GET', `/api/v1/templates/${b.templateId}/builds/${b.buildId}`)).json.status, 'building')
    const results = await Promise.all(started.map(ended))
    const at = (b: Ended, message: string) => Date.parse(b.logEntries.find((e) => e.message === message)!.timestamp)
    for (const [i, b] of results.entries()) {
      assert.equal(b.status, 'ready', JSON.stringify(b.reason))
      const own = b.logEntries.filter((e) => e.step === '1').map((e) => e.message)
      assert.ok(own.includes(`start-${names[i]}`) && own.includes(`done-${names[i]}`), own.join('\n'))
      assert.ok(!b.logEntries.some((e) => names.some((n) => n !== names[i] && e.message.includes(n))), 'no other build\'s lines')
    }
    // Every step had started before any had finished.
    const lastStart = Math.max(...results.map((b, i) => at(b, `start-${names[i]}`)))
    const firstDone = Math.min(...results.map((b, i) => at(b, `done-${names[i]}`)))
    assert.ok(lastStart < firstDone, `last start ${lastStart}, first end ${firstDone}`)
    // A layer of its own each (a layer directory is named by its build).
    const layerDirs = fs.readdirSync(path.join(ownHome, 'layers'))
    for (const b of results) assert.equal(layerDirs.filter((d) => d.endsWith(`-${b.buildId.slice(0, 8)}`)).length, 1)
    for (const name of names) {
      const s = await call('POST', '/api/v1/sandboxes', { template: name })
      assert.equal(s.status, 201, JSON.stringify(s.json))
      assert.equal((await run(s.json.id, 'cat /tmp/mine', { url: daemon.url, key })).stdout, `${name}\n`)
      await call('DELETE', `/api/v1/sandboxes/${s.json.id}`)
    }
    assert.deepEqual(await strayContainers(), [])
  })

  test('a ready command that fails at create: a 500 with its output, no sandbox left', async () => {
    // It passes in the build (no FAIL_READY there) and fails in a sandbox created with it set.
    const b = await build({ name: 'unready', steps: [], startCmd: 'sleep 1000', readyCmd: '[ -z "$FAIL_READY" ] || { echo "ready says no: $FAIL_READY"; exit 1; }' })
    assert.equal(b.status, 'ready', JSON.stringify(b.reason))
    const before = fs.readdirSync(path.join(ownHome, 'sandboxes'))
    const r = await call('POST', '/api/v1/sandboxes', { template: 'unready', envVars: { FAIL_READY: 'because' } })
    assert.equal(r.status, 500, JSON.stringify(r.json))
    assert.equal(r.json.error_code, 'template_start_failed')
    assert.match(r.json.message, /The start command of template "unready" did not become ready: the ready command .* did not pass within 3 s \(last: .*ready says no: because/)
    assert.deepEqual((await call('GET', '/api/v1/sandboxes')).json, [])
    assert.deepEqual(await strayContainers(), [])
    await waitFor(async () => fs.readdirSync(path.join(ownHome, 'sandboxes')).every((d) => before.includes(d)), 30_000, 'the failed sandbox\'s directory to go')
    // Without it set, the same template creates.
    const ok = await call('POST', '/api/v1/sandboxes', { template: 'unready' })
    assert.equal(ok.status, 201, JSON.stringify(ok.json))
    await call('DELETE', `/api/v1/sandboxes/${ok.json.id}`)
  })

  test('a cached layer that a running build reuses is not collected under it, though no ready build lists it and it is past its hour', async () => {
    const first = { type: 'RUN', args: ['echo kept > /tmp/kept'] }
    const a = await build({ name: 'race-a', steps: [first] })
    assert.equal(a.status, 'ready', JSON.stringify(a.reason))
    const layer = (await call('GET', '/api/v1/templates/race-a')).json
    assert.equal(layer.builds.length, 1)
    // The layer of that step, made long ago for the collection (which runs every 300 ms here).
    const layersDir = path.join(ownHome, 'layers')
    const old = new Date(Date.now() - 3 * 60 * 60_000)
    const mine = fs.readdirSync(layersDir).filter((d) => d.endsWith(a.buildId.slice(0, 8)))
    assert.equal(mine.length, 1)
    fs.utimesSync(path.join(layersDir, mine[0]!), old, old)
    // A second build reuses it, then runs a while; meanwhile the only template listing it goes.
    const b = await startBuild({ name: 'race-b', steps: [first, { type: 'RUN', args: ['echo second-step; sleep 3; cat /tmp/kept > /tmp/copied'] }] })
    await waitFor(async () => {
      const s = await call('GET', `/api/v1/templates/${b.templateId}/builds/${b.buildId}?limit=100`)
      return s.json.logEntries.some((e: Entry) => e.message === 'second-step')
    }, 60_000, 'the second step to run')
    assert.equal((await call('DELETE', '/api/v1/templates/race-a')).status, 204)
    const done = await ended(b)
    assert.equal(done.status, 'ready', JSON.stringify(done.reason))
    assert.ok(done.logEntries.some((e) => e.step === '1' && e.message.startsWith('CACHED')))
    assert.ok(fs.existsSync(path.join(layersDir, mine[0]!)), 'the reused layer is still there')
    const s = await call('POST', '/api/v1/sandboxes', { template: 'race-b' })
    assert.equal(s.status, 201, JSON.stringify(s.json))
    assert.equal((await run(s.json.id, 'cat /tmp/kept /tmp/copied', { url: daemon.url, key })).stdout, 'kept\nkept\n')
    await call('DELETE', `/api/v1/sandboxes/${s.json.id}`)
  })

  test('the build time limit: the build fails at the step it stopped, with the limit as its error, and leaves no sandbox', async () => {
    await daemon.stop()
    await start({ SANDLOT_BUILD_TIMEOUT_MS: '4000' })
    const b = await build({ name: 'too-slow', steps: [{ type: 'RUN', args: ['echo sleeping; sleep 600'] }] })
    assert.equal(b.status, 'error')
    assert.deepEqual(b.reason, { message: 'the build took longer than its time limit, 4 s (SANDLOT_BUILD_TIMEOUT_MS)', step: '1' })
    assert.equal((await call('POST', '/api/v1/sandboxes', { template: 'too-slow' })).status, 400)
    assert.deepEqual(await strayContainers(), [])
    assert.equal((await fetch(`${daemon.url}/health`)).status, 200)
  })
})
