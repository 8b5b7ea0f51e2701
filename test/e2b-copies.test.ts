// The official e2b SDK's snapshots and fork (E2B's snapshot-api and fork tests): a snapshot is a
// template that Sandbox.create boots, copies independent of each other and of the original, which
// runs on unharmed; named snapshots, list filters and delete; forks keep the original's env vars,
// metadata and network rules, ten at once, and the original keeps its deadline.
import { Sandbox, SandboxError } from 'e2b'
import { RUN, create } from './e2b-env.js'
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

/** Every snapshot id a listing gives, all pages. */
async function snapshotIds(pager: ReturnType<typeof Sandbox.listSnapshots>): Promise<string[]> {
  const ids: string[] = []
  while (pager.hasNext) ids.push(...(await pager.nextItems()).map((s) => s.snapshotId))
  return ids
}

describe('e2b SDK: snapshots and fork', { concurrency: true }, () => {
  test('createSnapshot: Sandbox.create(snapshotId) has its files, nested dirs too; copies are independent and the original runs on', async () => {
    const s = await create({ timeoutMs: 120_000 })
    const sleeper = await s.commands.run('sleep 3600', { background: true })
    await s.files.write('/home/user/a/b/c/deep.txt', 'deep')
    await s.files.write('/home/user/shared.txt', 'before')
    await s.commands.run('rm -f /etc/motd', { user: 'root' }) // a deletion is captured too (a whiteout)
    const snap = await s.createSnapshot()
    assert.match(snap.snapshotId, /^[a-z0-9]{20}:default$/)
    assert.deepEqual(snap.names, [])
    // The original runs on: same processes, and what it writes now is its own.
    assert.equal((await s.getInfo()).state, 'running')
    assert.ok((await s.commands.list()).some((p) => p.pid === sleeper.pid))
    await s.files.write('/home/user/shared.txt', 'after, in the original')

    const [a, b] = await Promise.all([create({ template: snap.snapshotId }), create({ template: snap.snapshotId })])
    for (const copy of [a, b]) {
      assert.equal(await copy.files.read('/home/user/a/b/c/deep.txt'), 'deep')
      assert.equal(await copy.files.read('/home/user/shared.txt'), 'before')
      assert.equal(await copy.files.exists('/etc/motd'), false)
      assert.equal((await copy.commands.run('pgrep -x sleep || echo none')).stdout, 'none\n', 'files only: no processes')
    }
    await a.files.write('/home/user/shared.txt', 'a')
    assert.equal(await b.files.read('/home/user/shared.txt'), 'before')
    assert.equal(await s.files.read('/home/user/shared.txt'), 'after, in the original')
    // Deleting a snapshot in use is refused; once unused, it goes: true, then false.
    await assert.rejects(Sandbox.deleteSnapshot(snap.snapshotId), SandboxError)
    await Promise.all([a.kill(), b.kill()])
    assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId), true)
    assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId), false)
    await assert.rejects(create({ template: snap.snapshotId }))
    await s.kill()
  })

  test('named snapshots: names, list by name and by sandbox, the same name adds a build', async () => {
    const name = `snap-${RUN}`.toLowerCase().replace(/[^a-z0-9_-]/g, '-').slice(0, 60)
    const s = await create()
    await s.files.write('/home/user/v.txt', '1')
    const first = await s.createSnapshot({ name })
    assert.equal(first.snapshotId, `sandlot/${name}:default`)
    assert.deepEqual(first.names, [`sandlot/${name}`])
    await s.files.write('/home/user/v.txt', '2')
    const second = await s.createSnapshot({ name })
    assert.equal(second.snapshotId, first.snapshotId)
    const copy = await create({ template: second.snapshotId })
    assert.equal(await copy.files.read('/home/user/v.txt'), '2', 'the name points at the latest snapshot')
    await copy.kill()

    assert.deepEqual(await snapshotIds(Sandbox.listSnapshots({ name })), [first.snapshotId])
    assert.deepEqual(await snapshotIds(Sandbox.listSnapshots({ name: 'no-such-snapshot' })), [])
    const unnamed = await s.createSnapshot()
    assert.deepEqual((await snapshotIds(s.listSnapshots())).sort(), [first.snapshotId, unnamed.snapshotId].sort())
    const other = await create()
    assert.deepEqual(await snapshotIds(other.listSnapshots()), [])
    for (const id of [first.snapshotId, unnamed.snapshotId]) assert.equal(await Sandbox.deleteSnapshot(id), true)
    await Promise.all([s.kill(), other.kill()])
  })

  test('fork: copies with its env vars, metadata, network rules and files; the original keeps running and its deadline', async () => {
    const s = await create({ timeoutMs: 120_000, envs: { FORK_VAR: 'inherited' }, metadata: { forked: RUN }, network: { denyOut: ['198.51.100.0/24'] } })
    await s.files.write('/home/user/state.txt', 'prepared')
    const { endAt } = await s.getInfo()
    const t0 = Date.now()
    const forks = await s.fork({ count: 2, timeoutMs: 60_000 })
    const forkMs = Date.now() - t0
    assert.equal(forks.length, 2)
    const [f1, f2] = forks.map((f) => {
      assert.ok(f instanceof Sandbox, String(f))
      return f
    })
    assert.notEqual(f1.sandboxId, f2.sandboxId)
    for (const f of [f1, f2]) {
      assert.notEqual(f.sandboxId, s.sandboxId)
      assert.equal((await f.commands.run('echo $FORK_VAR')).stdout, 'inherited\n')
      assert.equal(await f.files.read('/home/user/state.txt'), 'prepared')
      const info = await f.getInfo()
      assert.equal(info.metadata.forked, RUN)
      assert.deepEqual(info.network?.denyOut, ['198.51.100.0/24'])
      const span = info.endAt.getTime() - info.startedAt.getTime()
      // Counted from when it is up: at most the fork's own duration after its startedAt.
      assert.ok(span >= 60_000 && span <= 60_000 + forkMs, `a fork runs its own timeout (${span} ms; the fork took ${forkMs} ms)`)
    }
    await f1.files.write('/home/user/state.txt', 'changed in f1')
    assert.equal(await f2.files.read('/home/user/state.txt'), 'prepared')
    assert.equal(await s.files.read('/home/user/state.txt'), 'prepared')
    const after = await s.getInfo()
    assert.equal(after.state, 'running')
    assert.equal(after.endAt.getTime(), endAt.getTime(), 'the original keeps its deadline')
    assert.ok(forkMs < 10_000, `forking took ${forkMs} ms`)
    await Promise.all([f1.kill(), f2.kill(), s.kill()])
  })

  test('ten forks at once; count 0 is refused by the server; a paused sandbox cannot be forked', async () => {
    const s = await create({ timeoutMs: 120_000 })
    await s.files.write('/home/user/n.txt', 'ten')
    const forks = await s.fork({ count: 10, timeoutMs: 60_000 })
    assert.equal(forks.length, 10)
    const made = forks.filter((f): f is Sandbox => f instanceof Sandbox)
    assert.equal(made.length, 10, forks.filter((f) => !(f instanceof Sandbox)).map(String).join('; '))
    assert.equal(new Set(made.map((f) => f.sandboxId)).size, 10)
    const reads = await Promise.all(made.map((f) => f.files.read('/home/user/n.txt')))
    assert.deepEqual(reads, Array(10).fill('ten'))
    await Promise.all(made.map((f) => f.kill()))
    await assert.rejects(s.fork({ count: 0 }), (e: Error) => /count/.test(e.message))
    await s.pause()
    await assert.rejects(s.fork(), (e: Error) => /paused|resume/.test(e.message))
    await s.kill()
  })
})
