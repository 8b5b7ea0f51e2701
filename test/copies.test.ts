// Snapshots and forks through Sandlot's own SDK, CLI and REST: sandbox.snapshot() is a template
// that Sandbox.create boots; sandbox.fork() gives held handles on copies with the original's env
// vars and metadata; the CLI's snapshot and fork; bad requests are clear 400s and 404s.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { after, describe, test } from 'node:test'
import { Sandbox, SandlotError } from 'sandlot'
import { api, run } from './helpers.js'
import { Cleanup } from './sdk-env.js'

const cleanup = new Cleanup()
after(() => cleanup.run())

const cli = (args: string[]) => {
  const r = spawnSync(process.execPath, ['packages/cli/dist/main.js', ...args], { encoding: 'utf8' })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

describe('snapshots and forks: Sandlot SDK, CLI and REST', { concurrency: true }, () => {
  test('sandbox.snapshot(): Sandbox.create(snapshot.template) boots a copy; sandbox.fork(): held copies with its env vars and metadata', async () => {
    const original = await Sandbox.create({ envVars: { ORIGIN: 'the original' }, metadata: { suite: 'copies' } })
    cleanup.add(original.id)
    await original.filesystem.write('/home/user/project/state.json', '{"step":3}')
    const snap = await original.snapshot()
    assert.equal(snap.sandboxId, original.id)
    assert.equal(snap.tag, 'default')
    assert.equal(snap.copied, 'files', 'the reply says a copy has its files, not its memory')
    const copy = await Sandbox.create(snap.template)
    cleanup.add(copy.id)
    assert.equal(await copy.filesystem.read('/home/user/project/state.json'), '{"step":3}')
    assert.equal((await (await copy.process.start({ cmd: 'echo $ORIGIN' })).wait()).stdout.trim(), 'the original', "a snapshot keeps the sandbox's env vars")
    assert.equal((await Sandbox.list()).find((s) => s.id === copy.id)?.template, snap.template)
    const listed = await api('GET', `/api/v1/snapshots?sandboxId=${original.id}`)
    assert.deepEqual(listed.json.map((s: { template: string }) => s.template), [snap.template])

    const forks = await original.fork({ count: 2 })
    assert.equal(forks.length, 2)
    for (const f of forks) {
      assert.ok(f instanceof Sandbox, String(f))
      cleanup.add(f.id)
      const info = await f.getInfo()
      assert.equal(info.holds, 1, 'a fork is held by its handle')
      assert.deepEqual(f.getMetadata(), { suite: 'copies' })
      assert.equal(await f.filesystem.read('/home/user/project/state.json'), '{"step":3}')
      assert.equal((await (await f.process.start({ cmd: 'echo $ORIGIN' })).wait()).stdout.trim(), 'the original')
      await f.kill()
    }
    assert.equal((await original.getInfo()).state, 'running')
    await copy.kill()
    assert.equal((await api('DELETE', `/api/v1/templates/${snap.template}`)).status, 204)
    await original.kill()
  })

  test('the CLI: snapshot prints a template to create from; fork prints the copies', async () => {
    const id: string = cleanup.add((await api('POST', '/api/v1/sandboxes', { keepAliveMs: 60_000 })).json.id)
    await run(id, 'echo from-cli > /home/user/mark')
    const snap = cli(['snapshot', id])
    assert.equal(snap.code, 0, snap.stderr)
    const template = snap.stdout.trim()
    assert.match(snap.stderr, new RegExp(`sandlot create -t ${template}`))
    const created = cli(['create', '-t', template, '--keep-alive', '1m'])
    assert.equal(created.code, 0, created.stderr)
    const copy = cleanup.add(created.stdout.trim().split('\n').at(-1)!)
    assert.equal((await run(copy, 'cat /home/user/mark')).stdout, 'from-cli\n')
    const forked = cli(['fork', id, '--count', '2', '--keep-alive', '1m'])
    assert.equal(forked.code, 0, forked.stderr)
    const ids = forked.stdout.trim().split('\n')
    assert.equal(ids.length, 2)
    const token: string = (await api('GET', `/api/v1/sandboxes/${id}`)).json.envdAccessToken
    for (const f of ids) {
      cleanup.add(f)
      assert.equal((await run(f, 'cat /home/user/mark')).stdout, 'from-cli\n')
      // A copy never carries the original's credentials: its agent has its own token.
      const own = await run(f, `grep -rl ${token} /run /etc /home /root /tmp 2>/dev/null; cat /run/sandlot/agent.json`, { user: 'root' })
      assert.doesNotMatch(own.stdout, new RegExp(token))
      assert.match(own.stdout, new RegExp((await api('GET', `/api/v1/sandboxes/${f}`)).json.envdAccessToken))
    }
    assert.equal(cli(['fork', id, '--count', '0']).code, 2)
  })

  test("every copy says it holds files, not memory: copied: files in Sandlot's fork reply and snapshot list, X-Sandlot-Copied: files on E2B's snapshot and fork", async () => {
    const id: string = cleanup.add((await api('POST', '/api/v1/sandboxes', { keepAliveMs: 60_000 })).json.id)
    const forked = await api('POST', `/api/v1/sandboxes/${id}/fork`, { count: 1, keepAliveMs: 60_000 })
    assert.equal(forked.status, 201, JSON.stringify(forked.json))
    cleanup.add(forked.json[0].sandbox.id)
    assert.equal(forked.json[0].copied, 'files')
    const snap = await api('POST', `/api/v1/sandboxes/${id}/snapshots`, {})
    assert.equal(snap.json.copied, 'files')
    assert.deepEqual((await api('GET', `/api/v1/snapshots?sandboxId=${id}`)).json.map((x: { copied: string }) => x.copied), ['files'])

    const e2bSnap = await api('POST', `/sandboxes/${id}/snapshots`, {})
    assert.equal(e2bSnap.status, 201, JSON.stringify(e2bSnap.json))
    assert.equal(e2bSnap.headers.get('x-sandlot-copied'), 'files')
    const e2bFork = await api('POST', `/sandboxes/${id}/fork`, { count: 1, timeout: 60 })
    assert.equal(e2bFork.status, 201, JSON.stringify(e2bFork.json))
    cleanup.add(e2bFork.json[0].sandbox.sandboxID)
    assert.equal(e2bFork.headers.get('x-sandlot-copied'), 'files')
    await api('DELETE', `/api/v1/sandboxes/${forked.json[0].sandbox.id}`)
    await api('DELETE', `/api/v1/sandboxes/${e2bFork.json[0].sandbox.sandboxID}`)
    for (const t of [snap.json.template, e2bSnap.json.snapshotID.split(':')[0]]) assert.equal((await api('DELETE', `/api/v1/templates/${t}`)).status, 204)
  })

  test('bad requests: count out of range, a bad name, an unknown sandbox, a paused one', async () => {
    const id: string = cleanup.add((await api('POST', '/api/v1/sandboxes', { keepAliveMs: 60_000 })).json.id)
    for (const body of [{ count: 0 }, { count: 101 }, { count: 'two' }]) assert.equal((await api('POST', `/api/v1/sandboxes/${id}/fork`, body)).status, 400)
    const badName = await api('POST', `/api/v1/sandboxes/${id}/snapshots`, { name: 'Not A Name!' })
    assert.equal(badName.status, 400)
    assert.match(badName.json.message, /Invalid snapshot name/)
    assert.equal((await api('POST', '/api/v1/sandboxes/i00000000000000000000/fork', {})).status, 404)
    assert.equal((await api('POST', '/api/v1/sandboxes/i00000000000000000000/snapshots', {})).status, 404)
    assert.equal((await api('POST', `/api/v1/sandboxes/${id}/pause`, { keepMemory: false })).status, 200)
    const paused = await api('POST', `/api/v1/sandboxes/${id}/fork`, {})
    assert.equal(paused.status, 409)
    assert.equal(paused.json.error_code, 'sandbox_paused')
    assert.equal((await api('POST', `/api/v1/sandboxes/${id}/snapshots`, {})).status, 409)
    await assert.rejects((await Sandbox.reconnect(id)).fork({ count: 0 }), (e: SandlotError) => e.code === 'invalid_argument')
  })
})
