// The warm pool (lifecycle/pool.ts), on a daemon of its own: it fills, stays out of every list,
// hands out sandboxes that are fresh in every way (id and hostname, env, metadata, limits, network
// rules, hold, and the CPU weight of any sandbox, lower while pooled), never shares anything between
// two, refills after a burst, shrinks and grows when told, is drained at shutdown and made anew after
// a restart (a clean one or a SIGKILL) without leaking a container, and never hands out a sandbox of
// a template's old build.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { apiAt, run, spawnDaemon, waitFor, type Daemon } from './helpers.js'

const port = Number(process.env.SANDLOT_TEST_PORT ?? 3190) + 12
const ownHome = path.resolve(`.sandlot-test/pool-${port}`)
const logFile = `${ownHome}.log`
const env = { SANDLOT_HOME: ownHome, SANDLOT_POOL: 'base=2' }
let daemon: Daemon
let key = ''

const call = apiAt(() => daemon.url, () => key)

async function start(): Promise<void> {
  daemon = spawnDaemon(port, env, fs.openSync(logFile, 'a'))
  await waitFor(async () => (await fetch(`${daemon.url}/health`).catch(() => undefined))?.ok, 120_000, 'the pool daemon')
  key = fs.readFileSync(path.join(ownHome, 'api-key'), 'utf8').trim()
}

const poolOf = async (template = 'base') => (await call<{ template: string; size: number; ready: number }[]>('GET', '/api/v1/pools')).json.find((p) => p.template === template)
const readyIs = (n: number, template = 'base') => waitFor(async () => (await poolOf(template))?.ready === n, 60_000, `${n} ready sandboxes of ${template} in the pool`)
/** Containers the daemon's runtime has (handed out, pooled, anything). */
const containers = () => execFileSync('runc', ['--root', path.join(ownHome, 'runtime/runc'), 'list', '-q']).toString().trim().split('\n').filter(Boolean)
/** When the runtime made sandbox `id`'s container (epoch ms). */
const madeAt = (id: string) => Date.parse((JSON.parse(execFileSync('runc', ['--root', path.join(ownHome, 'runtime/runc'), 'state', id]).toString()) as { created: string }).created)
/** Whether sandbox `id` came from the pool: its container was made before the create asking for it was sent. */
const wasPooled = (id: string, asked: number) => madeAt(id) < asked
const sh = (id: string, cmd: string) => run(id, cmd, { url: daemon.url, key })
/** Sandbox `id`'s CPU weight (its cgroup's v1 cpu.shares or v2 cpu.weight), and the kernel's default for it. */
function cpuWeight(id: string): { value: number; normal: number } {
  const v1 = `/sys/fs/cgroup/cpu/sandlot/${id}/cpu.shares`
  if (fs.existsSync(v1)) return { value: Number(fs.readFileSync(v1, 'utf8')), normal: 1024 }
  return { value: Number(fs.readFileSync(`/sys/fs/cgroup/sandlot/${id}/cpu.weight`, 'utf8')), normal: 100 }
}
const kill = (id: string) => call('DELETE', `/api/v1/sandboxes/${id}`)

describe('the warm pool', { concurrency: false }, () => {
  before(async () => {
    fs.rmSync(ownHome, { recursive: true, force: true })
    fs.rmSync(logFile, { force: true })
    fs.mkdirSync(path.dirname(ownHome), { recursive: true })
    await start()
  })
  after(async () => {
    for (const s of (await call<{ id: string }[]>('GET', '/api/v1/sandboxes')).json ?? []) await kill(s.id)
    await daemon?.stop()
  })

  test('it fills, and its sandboxes are in no list and cannot be reached or killed', async () => {
    await readyIs(2)
    assert.deepEqual((await call('GET', '/api/v1/sandboxes')).json, [])
    assert.deepEqual((await call('GET', '/v2/sandboxes')).json, [])
    const pooled = containers()
    assert.equal(pooled.length, 2)
    for (const id of pooled) {
      const w = cpuWeight(id)
      assert.ok(w.value < w.normal, `a pooled sandbox yields the CPUs to sandboxes in use: weight ${w.value}`)
      assert.equal((await call('GET', `/api/v1/sandboxes/${id}`)).status, 404)
      assert.equal((await call('DELETE', `/sandboxes/${id}`)).status, 404)
      assert.equal((await fetch(`${daemon.url}/health`, { headers: { 'e2b-sandbox-id': id, 'x-api-key': key } })).status, 502)
    }
  })

  test('a pooled sandbox is handed out as a fresh one: its id and hostname, env, metadata, limits, network rules and hold; nothing of another', async () => {
    const t0 = Date.now()
    const made = await call('POST', '/api/v1/sandboxes', {
      metadata: { who: 'first' },
      envVars: { GREETING: 'hello' },
      keepAliveMs: 120_000,
      hold: true,
      network: { allowInternetAccess: false, allowOut: ['10.20.30.0/24'] },
    })
    assert.equal(made.status, 201, JSON.stringify(made.json))
    const a = made.json
    assert.ok(wasPooled(a.id, t0), 'it came from the pool')
    assert.equal(cpuWeight(a.id).value, cpuWeight(a.id).normal, 'handed out, it weighs as any sandbox')
    assert.ok(Date.parse(a.startedAt) >= t0, 'its life starts at the hand-out')
    assert.ok(a.hold?.id, 'the hold asked for')
    assert.deepEqual(a.metadata, { who: 'first' })
    assert.deepEqual([a.network.allowInternetAccess, a.network.allowOut, a.memoryMB], [false, ['10.20.30.0/24'], 512])
    const inside = await sh(a.id, 'hostname; echo "$GREETING"; whoami; grep MemTotal /proc/meminfo; ip -4 -o addr show eth0 | awk \'{print $4}\'')
    const [hostname, greeting, user, mem, address] = inside.stdout.trim().split('\n')
    assert.deepEqual([hostname, greeting, user], [a.id, 'hello', 'user'])
    assert.match(mem!, new RegExp(`${512 * 1024} kB`))
    // Its own rules are in force: the chain of its address denies all but the allowed range.
    const chain = execFileSync('nft', ['list', 'chain', 'inet', `sandlot_sandlot${port}`, `sb_${address!.split('/')[0]!.replaceAll('.', '_')}`]).toString()
    assert.match(chain, /ip daddr 10\.20\.30\.0\/24 accept/)
    assert.match(chain, /ip daddr 0\.0\.0\.0\/0 goto refuse_conn/)

    const askedB = Date.now()
    const b = (await call('POST', '/api/v1/sandboxes', { keepAliveMs: 120_000 })).json
    assert.ok(wasPooled(b.id, askedB))
    assert.notEqual(a.id, b.id)
    await sh(a.id, 'echo mine > /tmp/a-only')
    const other = await sh(b.id, 'hostname; echo "[$GREETING]"; ls /tmp/a-only 2>&1 | grep -c "No such"')
    assert.equal(other.stdout, `${b.id}\n[]\n1\n`)
    assert.deepEqual(b.network, { allowInternetAccess: null, allowOut: [], denyOut: [], allowPublicTraffic: true, maskRequestHost: null })
    const listed = (await call<{ id: string }[]>('GET', '/api/v1/sandboxes')).json.map((s) => s.id).sort()
    assert.deepEqual(listed, [a.id, b.id].sort())
    await Promise.all([kill(a.id), kill(b.id)])
  })

  test('a request the pool cannot serve exactly is created fresh: other limits', async () => {
    await readyIs(2)
    const asked = Date.now()
    const s = (await call('POST', '/api/v1/sandboxes', { memoryMB: 256, keepAliveMs: 60_000 })).json
    assert.equal(wasPooled(s.id, asked), false)
    assert.match((await sh(s.id, 'grep MemTotal /proc/meminfo')).stdout, new RegExp(`${256 * 1024} kB`))
    assert.equal((await poolOf())?.ready, 2, 'the pool kept its sandboxes')
    await kill(s.id)
  })

  test('it refills after a burst', async () => {
    await readyIs(2)
    const asked = Date.now()
    const burst = await Promise.all(Array.from({ length: 5 }, () => call('POST', '/api/v1/sandboxes', { keepAliveMs: 60_000 })))
    assert.deepEqual(burst.map((r) => r.status), [201, 201, 201, 201, 201])
    assert.equal(burst.filter((r) => wasPooled(r.json.id, asked)).length, 2, 'two from the pool, three made on the spot')
    await Promise.all(burst.map((r) => kill(r.json.id)))
    await readyIs(2)
    assert.equal(containers().length, 2, 'nothing leaked')
  })

  test('it shrinks and grows when told', async () => {
    assert.equal((await call('PUT', '/api/v1/pools/base', { size: 0 })).json.ready, 0)
    assert.equal(containers().length, 0, 'the pooled sandboxes went at once')
    assert.equal((await call('PUT', '/api/v1/pools/base', { size: 1 })).status, 200)
    await readyIs(1)
    assert.equal(containers().length, 1)
    assert.equal((await call('PUT', '/api/v1/pools/base', { size: 65 })).status, 400)
    assert.equal((await call('PUT', '/api/v1/pools/no-such-template', { size: 1 })).status, 400)
    await call('PUT', '/api/v1/pools/base', { size: 2 })
    await readyIs(2)
  })

  test('drained at shutdown and made anew after a restart, after a SIGKILL too, without leaking', async () => {
    const kept = (await call('POST', '/api/v1/sandboxes', { keepAliveMs: 600_000 })).json
    await readyIs(2)
    await daemon.stop()
    assert.deepEqual(containers(), [kept.id], 'the pool was drained; the handed-out sandbox runs on')
    await start()
    await readyIs(2)
    assert.equal(containers().length, 3)
    assert.equal((await sh(kept.id, 'echo still here')).stdout, 'still here\n')

    await daemon.stop('SIGKILL')
    assert.equal(containers().length, 3, 'a killed server drains nothing')
    await start()
    await readyIs(2)
    assert.equal(containers().length, 3, 'the old pool was removed, a new one made')
    assert.deepEqual((await call<{ id: string }[]>('GET', '/api/v1/sandboxes')).json.map((s) => s.id), [kept.id])
    await kill(kept.id)
  })

  test("never a sandbox of a template's old build: a rebuild replaces its pool", async () => {
    const build = async (version: string) => {
      const r = await call('POST', '/api/v1/templates', { name: 'pooled-tpl', fromTemplate: 'base', steps: [{ type: 'RUN', args: [`echo ${version} > /tmp/version`] }], startCmd: 'sleep infinity', readyCmd: 'true' })
      assert.equal(r.status, 202, JSON.stringify(r.json))
      await waitFor(async () => (await call('GET', `/api/v1/templates/${r.json.templateId}/builds/${r.json.buildId}`)).json.status === 'ready', 120_000, `build ${version}`)
    }
    await build('v1')
    await call('PUT', '/api/v1/pools/pooled-tpl', { size: 1 })
    await readyIs(1, 'pooled-tpl')
    let asked = Date.now()
    const first = (await call('POST', '/api/v1/sandboxes', { template: 'pooled-tpl', keepAliveMs: 60_000 })).json
    assert.ok(wasPooled(first.id, asked))
    assert.equal((await sh(first.id, 'cat /tmp/version; pgrep -c -x sleep')).stdout, 'v1\n1\n', 'its start command already runs')
    await readyIs(1, 'pooled-tpl')
    await build('v2')
    const second = (await call('POST', '/api/v1/sandboxes', { template: 'pooled-tpl', keepAliveMs: 60_000 })).json
    assert.equal((await sh(second.id, 'cat /tmp/version')).stdout, 'v2\n')
    await readyIs(1, 'pooled-tpl')
    asked = Date.now()
    const third = (await call('POST', '/api/v1/sandboxes', { template: 'pooled-tpl', keepAliveMs: 60_000 })).json
    assert.ok(wasPooled(third.id, asked), 'the pool holds the new build now')
    assert.equal((await sh(third.id, 'cat /tmp/version')).stdout, 'v2\n')
    await Promise.all([first, second, third].map((s) => kill(s.id)))
    await readyIs(1, 'pooled-tpl')
    assert.equal((await call('DELETE', '/api/v1/templates/pooled-tpl')).status, 204, 'a pool does not keep its template from being deleted')
    assert.equal((await call('PUT', '/api/v1/pools/pooled-tpl', { size: 0 })).status, 200)
    assert.equal(containers().length, 2, "only base's pool is left")
  })
})
