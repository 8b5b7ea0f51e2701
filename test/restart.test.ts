// The daemon killed with SIGKILL and restarted: running sandboxes are re-adopted with their files and
// processes (and their own filesystems, quota included); sandboxes whose runtime state vanished are
// cleaned up; destroying leaves nothing behind (no mount, loop device, image or directory);
// deadlines and client holds survive the restart.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import { leftovers as leftoversOf, run, spawnDaemon, startBackground, waitFor, type Daemon } from './helpers.js'

const testHome = path.resolve('.sandlot-test/restart-home')
const port = Number(process.env.SANDLOT_TEST_PORT ?? 3190) + 1
const url = `http://127.0.0.1:${port}`
let server: Daemon | undefined

async function startDaemon(env: Record<string, string> = {}): Promise<void> {
  const log = fs.openSync(path.join(path.dirname(testHome), 'restart-server.log'), 'a')
  server = spawnDaemon(port, { SANDLOT_HOME: testHome, ...env }, log)
  await waitFor(() => fetch(`${url}/health`).then((r) => r.ok, () => false), 120_000, 'the daemon to be ready')
}

const key = () => fs.readFileSync(path.join(testHome, 'api-key'), 'utf8').trim()
const call = async (method: string, route: string, body?: unknown) => {
  const res = await fetch(`${url}${route}`, {
    method,
    headers: { 'x-api-key': key(), ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  })
  return { status: res.status, json: res.status === 204 ? undefined : await res.json() }
}

const leftovers = (id: string) => leftoversOf(id, testHome)

describe('daemon restart', () => {
  const killAll = async () => {
    const list = await call('GET', '/api/v1/sandboxes').catch(() => undefined)
    for (const s of list?.json ?? []) await call('DELETE', `/api/v1/sandboxes/${s.id}`)
  }
  after(async () => {
    await killAll()
    // A clean stop: the daemon detaches its own mounts (the crash was the tests' business).
    await server?.stop('SIGTERM')
  })

  test('after kill -9 and a restart, sandboxes, files and processes are still there', async () => {
    await startDaemon()
    await killAll() // what an earlier, interrupted run left
    const created = await call('POST', '/api/v1/sandboxes', { metadata: { suite: 'restart' } })
    assert.equal(created.status, 201)
    const id: string = created.json.id
    const doomed: string = (await call('POST', '/api/v1/sandboxes', {})).json.id
    const gone: string = (await call('POST', '/api/v1/sandboxes', {})).json.id
    const opts = { url, key: key() }
    await run(id, 'echo kept > /home/user/file.txt', opts)
    const quota = (await run(id, 'df --output=size,itotal / | tail -1', opts)).stdout
    const pid = await startBackground(id, 'while true; do date +%s > /home/user/tick; sleep 0.2; done', opts)

    await server!.stop('SIGKILL')
    // While the daemon is down, one sandbox's runtime state vanishes.
    execFileSync('runc', ['--root', path.join(testHome, 'runtime/runc'), 'delete', '--force', doomed])

    await startDaemon()
    const list = await call('GET', '/api/v1/sandboxes')
    const ids = list.json.map((s: { id: string }) => s.id).sort()
    assert.deepEqual(ids, [id, gone].sort())
    assert.deepEqual(await leftovers(doomed), [], 'the half-dead sandbox was cleaned up')
    assert.equal((await run(id, 'cat /home/user/file.txt', opts)).stdout, 'kept\n')
    assert.equal((await run(id, 'df --output=size,itotal / | tail -1', opts)).stdout, quota, 'its own filesystem, same size')
    assert.match((await run(id, `ps -o pid= -p ${pid}`, opts)).stdout.trim(), new RegExp(`^${pid}$`))
    const t1 = Number((await run(id, 'cat /home/user/tick', opts)).stdout)
    await new Promise((r) => setTimeout(r, 1200))
    assert.ok(Number((await run(id, 'cat /home/user/tick', opts)).stdout) > t1, 'the loop is still ticking')
    assert.deepEqual((await call('GET', `/api/v1/sandboxes/${id}`)).json.metadata, { suite: 'restart' })

    // A sandbox whose init dies on its own (here: killed from the host) is noticed and cleaned up.
    const initPid = Number(fs.readFileSync(path.join(testHome, 'sandboxes', gone, 'init.pid'), 'utf8'))
    process.kill(initPid, 'SIGKILL')
    await waitFor(async () => (await call('GET', `/api/v1/sandboxes/${gone}`)).status === 404, 10_000, 'the dead sandbox to be reaped')
    await waitFor(async () => (await leftovers(gone)).length === 0, 5_000, `no leftovers of ${gone}`)

    // Destroying leaves nothing behind: no mounts, cgroups, processes or directories.
    assert.equal((await call('DELETE', `/api/v1/sandboxes/${id}`)).status, 204)
    assert.deepEqual(await leftovers(id), [])
    assert.equal((await call('GET', `/api/v1/sandboxes/${id}`)).status, 404)
    assert.equal((await run(id, 'true', opts).catch((err: Error) => err)) instanceof Error, true)
  })

  test('paused sandboxes survive kill -9 and a restart: a memory pause resumes with its processes, env, files, server and a command it froze mid-way; a files one with its files; one whose container vanished resumes from its files, its memory reported lost', async () => {
    if (!server || server.process.exitCode !== null) await startDaemon()
    await killAll()
    const opts = { url, key: key() }
    const create = async (body: object = {}) => (await call('POST', '/api/v1/sandboxes', { keepAliveMs: 600_000, ...body })).json.id as string
    const [memory, files, vanished] = [await create({ envVars: { PAUSE_VAR: 'kept-in-memory' } }), await create(), await create()]
    const sleeper = await startBackground(memory, 'sleep 3600', opts)
    await startBackground(memory, 'python3 -m http.server 8000 --directory /etc', opts)
    await run(memory, "for i in $(seq 100); do ss -Hltn 'sport = :8000' | grep -q 8000 && exit 0; sleep 0.1; done; exit 1", opts)
    await run(memory, 'echo written before the pause > /home/user/notes.txt', opts)
    for (const id of [files, vanished]) await run(id, `echo kept-${id} > /home/user/kept`, opts)
    assert.equal((await call('POST', `/api/v1/sandboxes/${vanished}/pause`, {})).status, 200)
    assert.equal((await call('POST', `/api/v1/sandboxes/${files}/pause`, { keepMemory: false })).status, 200)

    // A command frozen half-way: its file, read from the sandbox's layer on the host (what no
    // request can wake), is not there at the pause, nor long after its 2 s would have ended, and
    // is written once the sandbox runs again. A pause that came after it ended fails here.
    const inFlight = path.join(testHome, 'sandboxes', memory, 'layer/upper/home/user/f')
    const startedAt = Date.now()
    await startBackground(memory, 'sleep 2 && echo done > /home/user/f', opts)
    assert.equal((await call('POST', `/api/v1/sandboxes/${memory}/pause`, {})).status, 200)
    const pausedAfter = Date.now() - startedAt
    assert.equal(fs.existsSync(inFlight), false, `the command had ended before the pause (${pausedAfter} ms after it started): nothing was in flight`)

    await server!.stop('SIGKILL')
    // As after a host restart, for one of them: its frozen container is gone.
    execFileSync('runc', ['--root', path.join(testHome, 'runtime/runc'), 'delete', '--force', vanished])
    await startDaemon()
    await new Promise((r) => setTimeout(r, 2500))
    assert.equal(fs.existsSync(inFlight), false, 'the frozen command ran on across the restart')

    const listed = (await call('GET', '/api/v1/sandboxes')).json as { id: string; state: string; paused: { keepMemory: boolean; memoryLost: boolean } }[]
    const byId = new Map(listed.map((s) => [s.id, s]))
    for (const id of [memory, files, vanished]) assert.equal(byId.get(id)?.state, 'paused', `${id} is still paused`)
    assert.deepEqual(byId.get(memory)!.paused, { at: byId.get(memory)!.paused.at, keepMemory: true, memoryLost: false })
    assert.equal(byId.get(vanished)!.paused.memoryLost, true)
    for (const id of [memory, files, vanished]) assert.equal((await call('POST', `/api/v1/sandboxes/${id}/resume`, { keepAliveMs: 60_000 })).status, 200)
    await waitFor(async () => fs.existsSync(inFlight), 10_000, 'the half-finished command to finish after the resume')
    assert.equal((await run(memory, 'cat /home/user/f', opts)).stdout, 'done\n')
    assert.match((await run(memory, `ps -o pid= -p ${sleeper}`, opts)).stdout.trim(), new RegExp(`^${sleeper}$`), 'the same sleep, the same PID')
    // The environment variable, in the process that was frozen and in a new one.
    assert.equal((await run(memory, `tr '\\0' '\\n' < /proc/${sleeper}/environ | grep ^PAUSE_VAR=`, opts)).stdout, 'PAUSE_VAR=kept-in-memory\n')
    assert.equal((await run(memory, 'echo $PAUSE_VAR', opts)).stdout, 'kept-in-memory\n')
    assert.equal((await run(memory, 'cat /home/user/notes.txt', opts)).stdout, 'written before the pause\n')
    // The server, through a preview of its port.
    const served = await fetch(`${url}/hostname`, { headers: { 'e2b-sandbox-id': memory, 'e2b-sandbox-port': '8000' } })
    assert.equal(served.status, 200)
    assert.equal(await served.text(), `${memory}\n`)
    for (const id of [files, vanished]) {
      assert.equal((await run(id, 'cat /home/user/kept', opts)).stdout, `kept-${id}\n`)
      assert.equal((await run(id, 'pgrep -x sleep || echo none', opts)).stdout, 'none\n')
    }
    for (const id of [memory, files, vanished]) {
      assert.equal((await call('DELETE', `/api/v1/sandboxes/${id}`)).status, 204)
      assert.deepEqual(await leftovers(id), [])
    }
  })

  test('a paused sandbox is destroyed once SANDLOT_PAUSED_RETENTION_MS has passed since its pause, leaving nothing', async () => {
    await server?.stop('SIGTERM')
    await startDaemon({ SANDLOT_PAUSED_RETENTION_MS: '3000' })
    try {
      const created = await call('POST', '/api/v1/sandboxes', { keepAliveMs: 600_000 })
      const [memory, files] = [created.json.id as string, (await call('POST', '/api/v1/sandboxes', { keepAliveMs: 600_000 })).json.id as string]
      assert.equal((await call('POST', `/api/v1/sandboxes/${memory}/pause`, {})).status, 200)
      assert.equal((await call('POST', `/api/v1/sandboxes/${files}/pause`, { keepMemory: false })).status, 200)
      for (const id of [memory, files]) {
        await waitFor(async () => (await call('GET', `/api/v1/sandboxes/${id}`)).status === 404, 10_000, `${id} to go at the end of its retention`)
        // Gone from the API as its destroy starts; nothing of it left once that ends.
        await waitFor(async () => (await leftovers(id)).length === 0, 10_000, `no leftovers of ${id}`)
      }
    } finally {
      await server?.stop('SIGTERM')
      await startDaemon()
    }
  })

  test('deadlines that passed while the daemon was down are carried out; holds get a fresh lease', async () => {
    if (!server || server.process.exitCode !== null) await startDaemon()
    await killAll()
    const create = async (body: object) => (await call('POST', '/api/v1/sandboxes', body)).json
    const expired = (await create({ keepAliveMs: 2000 })).id as string
    const kept = (await create({ keepAliveMs: 600_000 })).id as string
    const live = await create({ hold: true }) // its client goes on renewing after the restart
    const orphan = await create({ hold: true }) // its client died with the daemon down
    const renew = (s: { id: string; hold: { id: string } }) => call('PUT', `/api/v1/sandboxes/${s.id}/holds/${s.hold.id}`)

    await server!.stop('SIGKILL')
    await new Promise((r) => setTimeout(r, 3000))
    await startDaemon()
    const restartedAt = Date.now()
    assert.equal((await call('GET', `/api/v1/sandboxes/${expired}`)).status, 404, 'the passed deadline was carried out at start')
    assert.deepEqual(await leftovers(expired), [])
    for (const id of [kept, live.id, orphan.id]) assert.equal((await call('GET', `/api/v1/sandboxes/${id}`)).status, 200)
    assert.equal((await renew(live)).status, 200, 'a live client renews its hold after the restart')

    const renewing = setInterval(() => void renew(live), 4000)
    try {
      await waitFor(async () => (await call('GET', `/api/v1/sandboxes/${orphan.id}`)).status === 404, 25_000, 'the orphaned hold to lapse')
      const lapsedAfter = Date.now() - restartedAt
      assert.ok(lapsedAfter >= 14_000 && lapsedAfter <= 20_000, `the orphan went ${lapsedAfter} ms after the restart, not 15–20 s`)
      assert.equal((await renew(orphan)).json.error_code, 'sandbox_not_found')
      const held = (await call('GET', `/api/v1/sandboxes/${live.id}`)).json
      assert.equal(held.holds, 1)
      assert.equal((await call('GET', `/api/v1/sandboxes/${kept}`)).status, 200)
    } finally {
      clearInterval(renewing)
    }
  })
})
