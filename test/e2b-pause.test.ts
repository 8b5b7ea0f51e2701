// The official e2b SDK's pause and resume (E2B's sandbox/snapshot, connect and lifecyclePayload
// tests): a memory pause keeps every process, its PID, environment and server, and a half-done
// command finishes after the resume; a files-only pause keeps the files and boots again (new boot
// id, processes gone, nothing left running on the host); auto-pause at the timeout and auto-resume
// by a request to a preview port; connect resumes; killing a paused sandbox leaves nothing.
import { InvalidArgumentError, Sandbox } from 'e2b'
import { RUN, apiKey, apiUrl, create, sleep, until } from './e2b-env.js'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import { describe, test } from 'node:test'
import { leftovers } from './helpers.js'

/** Starts `python3 -m http.server <port>` in the sandbox and waits until it listens. */
async function httpServer(s: Sandbox, port: number): Promise<void> {
  await s.commands.run(`mkdir -p /tmp/www && echo "served from ${s.sandboxId}" > /tmp/www/index.txt`)
  await s.commands.run(`python3 -m http.server ${port} --directory /tmp/www`, { background: true })
  await s.commands.run(`for i in $(seq 100); do ss -Hltn 'sport = :${port}' | grep -q ${port} && exit 0; sleep 0.1; done; exit 1`)
}

const preview = (s: Sandbox, port: number, path = '/index.txt') => fetch(`http://${s.getHost(port)}${path}`).then(async (r) => ({ status: r.status, body: await r.text() }))

/** The host cgroups a sandbox's processes are in (none once they are all gone). */
const cgroupsOf = (id: string) => ['memory', 'pids', 'cpu'].filter((c) => fs.existsSync(`/sys/fs/cgroup/${c}/sandlot/${id}`) || fs.existsSync(`/sys/fs/cgroup/sandlot/${id}`))

/** Every sandbox id the SDK lists for `opts`, all pages. */
async function listIds(opts: Parameters<typeof Sandbox.list>[0]): Promise<string[]> {
  const pager = Sandbox.list(opts)
  const ids: string[] = []
  while (pager.hasNext) ids.push(...(await pager.nextItems()).map((s) => s.sandboxId))
  return ids
}

describe('e2b SDK: pause and resume', { concurrency: true }, () => {
  test('memory pause: the same PIDs, env, a half-done command and a server are all there after connect resumes it', async () => {
    const s = await create({ timeoutMs: 120_000, envs: { PAUSE_VAR: 'kept' } })
    const sleeper = await s.commands.run('sleep 3600', { background: true })
    await s.commands.run('sleep 2 && echo done > /home/user/f', { background: true })
    await httpServer(s, 8000)
    await s.files.write('/home/user/notes.txt', 'written before the pause')
    // A command streaming its output when the pause comes: the stream waits, then goes on.
    const ticks: string[] = []
    const ticker = await s.commands.run('for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.4; done', { background: true, onStdout: (d) => void ticks.push(d) })
    await until(async () => ticks.join('').includes('tick 2'), 5000, 'the ticker to start')

    const pausedAt = Date.now()
    assert.equal(await s.pause(), true)
    assert.equal(await s.pause(), false, 'pausing a paused sandbox answers false (409)')
    const info = await s.getInfo()
    assert.equal(info.state, 'paused')
    assert.ok(Math.abs(info.endAt.getTime() - pausedAt) < 2000, `endAt is the pause time (${info.endAt.toISOString()})`)
    // Paused, it serves nothing (no autoResume): E2B's 502.
    assert.equal((await preview(s, 8000)).status, 502)
    await sleep(2500)

    const resumedAt = Date.now()
    const again = await Sandbox.connect(s.sandboxId)
    const after = await again.getInfo()
    assert.equal(after.state, 'running')
    assert.ok(after.startedAt.getTime() >= resumedAt - 1000, 'startedAt is the resume time')
    const span = after.endAt.getTime() - after.startedAt.getTime()
    assert.ok(span >= 299_000 && span <= 301_000, `a resumed sandbox runs connect's default 300 s (${span} ms)`)
    const procs = await again.commands.list()
    assert.ok(procs.some((p) => p.pid === sleeper.pid && [p.cmd, ...p.args].join(' ').includes('sleep 3600')), `sleep 3600 is still PID ${sleeper.pid}: ${JSON.stringify(procs)}`)
    assert.equal((await again.commands.run('echo $PAUSE_VAR')).stdout, 'kept\n')
    await until(async () => (await again.files.exists('/home/user/f')) && (await again.files.read('/home/user/f')) === 'done\n', 5000, 'the half-done command to finish')
    assert.equal(await again.files.read('/home/user/notes.txt'), 'written before the pause')
    assert.equal((await ticker.wait()).exitCode, 0)
    assert.match(ticks.join(''), /tick 1\ntick 2\n(.|\n)*tick 6\n$/, 'the output stream went on after the resume')
    const served = await preview(again, 8000)
    assert.equal(served.status, 200)
    assert.equal(served.body, `served from ${s.sandboxId}\n`)
    // connect on a running sandbox only extends (E2B's rule): it stays running.
    await Sandbox.connect(s.sandboxId, { timeoutMs: 10_000 })
    assert.equal((await s.getInfo()).state, 'running')
    await s.kill()
  })

  test('files-only pause: files kept, processes gone, a new boot id; nothing of it runs on the host while paused', async () => {
    const s = await create({ timeoutMs: 120_000 })
    await s.files.write('/home/user/kept.txt', 'on disk')
    await s.commands.run('sleep 3600', { background: true })
    const bootId = (await s.commands.run('cat /proc/sys/kernel/random/boot_id')).stdout
    assert.notEqual(bootId, fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8'), "a sandbox never sees the host's boot id")

    assert.equal(await s.pause({ keepMemory: false }), true)
    assert.equal((await s.getInfo()).state, 'paused')
    assert.deepEqual(cgroupsOf(s.sandboxId), [], 'no cgroup: no process, memory or CPU of it on the host')
    assert.equal(fs.readFileSync('/proc/mounts', 'utf8').includes(s.sandboxId), false, 'its filesystem is not even mounted')

    const again = await Sandbox.connect(s.sandboxId)
    assert.equal(await again.files.read('/home/user/kept.txt'), 'on disk')
    assert.equal((await again.commands.run('pgrep -x sleep || echo none')).stdout, 'none\n')
    const newBootId = (await again.commands.run('cat /proc/sys/kernel/random/boot_id')).stdout
    assert.match(newBootId, /^[0-9a-f-]{36}\n$/)
    assert.notEqual(newBootId, bootId)
    // A memory pause of a sandbox that booted again works as any other.
    assert.equal(await again.pause(), true)
    assert.equal((await (await Sandbox.connect(s.sandboxId)).commands.run('cat /proc/sys/kernel/random/boot_id')).stdout, newBootId)
    await s.kill()
  })

  test('auto-pause at the timeout, then a request to a preview port resumes it; listed as paused meanwhile', async () => {
    const s = await create({ timeoutMs: 3000, lifecycle: { onTimeout: 'pause', autoResume: true }, metadata: { autopause: RUN } })
    await httpServer(s, 8000)
    assert.deepEqual((await s.getInfo()).lifecycle, { onTimeout: 'pause', autoResume: true })
    await until(async () => (await s.getInfo()).state === 'paused', 8000, 'the sandbox to pause at its timeout')
    assert.deepEqual(await listIds({ query: { metadata: { autopause: RUN }, state: ['paused'] } }), [s.sandboxId])
    assert.deepEqual(await listIds({ query: { metadata: { autopause: RUN }, state: ['running'] } }), [])

    const woken = Date.now()
    const served = await preview(s, 8000)
    assert.equal(served.status, 200, served.body)
    assert.equal(served.body, `served from ${s.sandboxId}\n`)
    const info = await s.getInfo()
    assert.equal(info.state, 'running')
    // It runs max(its timeout, 300 s) from the wake-up.
    const span = info.endAt.getTime() - woken
    assert.ok(span >= 299_000 && span <= 302_000, `${span} ms`)
    // An envd request wakes it too.
    assert.equal(await s.pause(), true)
    assert.equal((await s.commands.run('echo awake')).stdout, 'awake\n')
    await s.kill()
  })

  test('files-only auto-pause never auto-resumes; E2B\'s lifecycle checks, client side and server side', async () => {
    const s = await create({ timeoutMs: 2000, lifecycle: { onTimeout: { action: 'pause', keepMemory: false } } })
    await until(async () => (await s.getInfo()).state === 'paused', 8000, 'the sandbox to pause at its timeout')
    assert.equal((await preview(s, 8000)).status, 502)
    assert.equal((await s.getInfo()).state, 'paused')
    await s.kill()
    await assert.rejects(create({ lifecycle: { onTimeout: { action: 'pause', keepMemory: false }, autoResume: true } }), InvalidArgumentError)
    const post = (body: object) =>
      fetch(`${apiUrl}/v2/sandboxes`, { method: 'POST', headers: { 'x-api-key': apiKey(), 'content-type': 'application/json' }, body: JSON.stringify({ templateID: 'base', ...body }) }).then(async (r) => ({ status: r.status, body: await r.json() }))
    for (const body of [{ autoPauseMemory: false }, { autoPause: true, autoPauseMemory: false, autoResume: { enabled: true } }]) {
      const r = await post(body)
      assert.equal(r.status, 400, JSON.stringify(r.body))
      assert.match(r.body.message, /autoPauseMemory|autoResume/)
    }
  })

  test('killing a paused sandbox (either kind) leaves nothing behind', async () => {
    const [a, b] = await Promise.all([create(), create()])
    await a.commands.run('sleep 3600', { background: true })
    assert.equal(await a.pause(), true)
    assert.equal(await b.pause({ keepMemory: false }), true)
    for (const s of [a, b]) {
      assert.equal(await s.kill(), true)
      assert.deepEqual(await leftovers(s.sandboxId), [])
      assert.equal(await Sandbox.kill(s.sandboxId), false)
    }
  })

  test("the older resume route: 201 for a paused sandbox, 409 for a running one; v2 connect with memory false boots from files", async () => {
    const call = (method: string, route: string, body?: unknown) =>
      fetch(`${apiUrl}${route}`, { method, headers: { 'x-api-key': apiKey(), 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) }).then(async (r) => ({
        status: r.status,
        json: r.status === 204 ? undefined : await r.json(),
      }))
    const s = await create({ timeoutMs: 60_000 })
    await s.commands.run('sleep 3600', { background: true })
    assert.equal((await call('POST', `/sandboxes/${s.sandboxId}/resume`, { timeout: 30 })).status, 409)
    assert.equal((await call('POST', `/sandboxes/${s.sandboxId}/pause`, {})).status, 204)
    const resumed = await call('POST', `/sandboxes/${s.sandboxId}/resume`, { timeout: 30 })
    assert.equal(resumed.status, 201, JSON.stringify(resumed.json))
    assert.equal(resumed.json.sandboxID, s.sandboxId)
    assert.equal((await s.commands.run('pgrep -x sleep >/dev/null && echo running')).stdout, 'running\n')
    // The 2.51 SDK's onResume 'reboot': a memory pause resumed from its files.
    assert.equal(await s.pause(), true)
    const rebooted = await call('POST', `/v2/sandboxes/${s.sandboxId}/connect`, { timeout: 30, memory: false })
    assert.equal(rebooted.status, 201)
    assert.equal((await s.commands.run('pgrep -x sleep || echo none')).stdout, 'none\n')
    const running = await call('POST', `/v2/sandboxes/${s.sandboxId}/connect`, {})
    assert.equal(running.status, 200)
    await s.kill()
  })
})
