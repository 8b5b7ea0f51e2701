// The SDK's lifetime contract against a real server: a handle holds its sandbox, close() releases
// it, keepAlive lets it outlive its last handle, and a client that dies (or forgets close()) lets it
// go within 20 s. Client code runs in its own node processes, through the built ESM and CJS
// bundles. The long waits run concurrently.
import assert from 'node:assert/strict'
import { after, describe, test } from 'node:test'
import { InvalidArgumentError, Sandbox, SandboxNotFoundError } from 'sandlot'
import { api } from './helpers.js'
import { Cleanup, msUntilGone, runLabel, runScript, sandboxState, sleep, spawnScript, waitForLine } from './sdk-env.js'

const cleanup = new Cleanup()
after(() => cleanup.run())

/** The server drops a lapsed hold within 20 s; this much more allows for polling and the kill itself. */
const SLACK_MS = 3_000

describe('SDK lifetime', { concurrency: true }, () => {
  test('the acceptance code across two processes: ESM creates, writes, keepAlive, close and exits; CJS reconnects and reads', { timeout: 90_000 }, async () => {
    const first = await runScript(
      `import { Sandbox } from 'sandlot'
       const sandbox = await Sandbox.create({ template: 'base' })
       console.log(sandbox.id)
       await sandbox.filesystem.write('hello.txt', 'Hello World!')
       const sandboxID = sandbox.id
       await sandbox.keepAlive(2 * 60 * 1000)
       await sandbox.close()`,
      { timeoutMs: 30_000 },
    )
    assert.equal(first.code, 0, first.stderr)
    const sandboxID = cleanup.add(first.stdout.trim())
    assert.match(sandboxID, /^i[a-z0-9]{20}$/)

    // Nobody holds it now; it stays for its keepAlive (about 2 min from the close).
    const state = await sandboxState(sandboxID)
    assert.ok(state, 'the sandbox outlives its creator')
    assert.equal(state.holds, 0)
    const left = Date.parse(state.endAt!) - Date.now()
    assert.ok(left > 100_000 && left <= 120_000, `deadline ${left} ms ahead`)

    const second = await runScript(
      `const { Sandbox } = require('sandlot')
       ;(async () => {
         const sandbox2 = await Sandbox.reconnect(process.env.SANDBOX_ID)
         const content = await sandbox2.filesystem.read('hello.txt')
         console.log(content)
         await sandbox2.close()
       })().catch((e) => { console.error(e); process.exit(1) })`,
      { cjs: true, env: { SANDBOX_ID: sandboxID }, timeoutMs: 30_000 },
    )
    assert.equal(second.code, 0, second.stderr)
    assert.equal(second.stdout, 'Hello World!\n')
    // Its keepAlive still runs after the second handle closed.
    assert.equal((await sandboxState(sandboxID))?.holds, 0)
  })

  test('without keepAlive the sandbox is gone within 20 s of close(), and reconnect throws SandboxNotFoundError', { timeout: 60_000 }, async () => {
    const sandbox = await Sandbox.create()
    cleanup.add(sandbox.id)
    assert.equal((await sandboxState(sandbox.id))?.holds, 1)
    await sandbox.close()
    await sandbox.close() // idempotent
    assert.ok((await msUntilGone(sandbox.id, 20_000)) <= 20_000)
    await assert.rejects(Sandbox.reconnect(sandbox.id), (err: unknown) => {
      assert.ok(err instanceof SandboxNotFoundError)
      assert.equal(err.sandboxId, sandbox.id)
      assert.match(err.message, /keepAlive/)
      return true
    })
  })

  test('with keepAlive(5000) the sandbox is alive 3 s after close() and gone by 25 s', { timeout: 60_000 }, async () => {
    const sandbox = await Sandbox.create()
    cleanup.add(sandbox.id)
    await sandbox.keepAlive(5000)
    await sandbox.close()
    const closedAt = Date.now()
    await sleep(3000)
    assert.ok(await sandboxState(sandbox.id), 'alive 3 s after close')
    await msUntilGone(sandbox.id, 25_000 - (Date.now() - closedAt))
  })

  test('a client killed with SIGKILL (no close) releases its sandbox within 20 s', { timeout: 60_000 }, async () => {
    const child = spawnScript(
      `import { Sandbox } from 'sandlot'
       const sandbox = await Sandbox.create({ metadata: { test: 'sigkill' } })
       console.log('id=' + sandbox.id)
       setInterval(() => {}, 1000) // stays up until killed`,
    )
    const id = cleanup.add((await waitForLine(child, /id=(i[a-z0-9]{20})/))[1]!)
    // It renews its hold: still held after a full lease (15 s) would have lapsed without renewals.
    await sleep(16_000)
    assert.equal((await sandboxState(id))?.holds, 1, 'held while the client lives')
    child.kill('SIGKILL')
    const ms = await msUntilGone(id, 20_000 + SLACK_MS)
    assert.ok(ms <= 20_000 + SLACK_MS, `gone after ${ms} ms`)
  })

  test('a client whose main thread is blocked past the lease (execSync) keeps its sandbox', { timeout: 60_000 }, async () => {
    const child = spawnScript(
      `import { execSync } from 'node:child_process'
       import { Sandbox } from 'sandlot'
       const sandbox = await Sandbox.create({ metadata: { test: 'blocked-loop' } })
       await sandbox.filesystem.write('before.txt', 'written before')
       console.log('id=' + sandbox.id)
       execSync('sleep 24') // no timer, no promise runs in this thread meanwhile
       console.log('read=' + await sandbox.filesystem.read('before.txt'))
       await sandbox.close()`,
    )
    const id = cleanup.add((await waitForLine(child, /id=(i[a-z0-9]{20})/))[1]!)
    // Past a lease (15 s) and the watchdog's tick: only the lifeline worker can have renewed it.
    await sleep(20_000)
    assert.equal((await sandboxState(id))?.holds, 1, 'still held while the client is blocked')
    assert.equal((await waitForLine(child, /read=(.*)/, 20_000))[1], 'written before')
    const code = await new Promise((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.on('exit', resolve)))
    assert.equal(code, 0)
    assert.ok((await msUntilGone(id, 5_000)) <= 5_000, 'released by close()')
  })

  test('a script that forgets close() still exits by itself, and its sandbox goes within 20 s', { timeout: 60_000 }, async () => {
    const started = Date.now()
    const r = await runScript(
      `import { Sandbox } from 'sandlot'
       const sandbox = await Sandbox.create()
       console.log(sandbox.id)
       console.log((await sandbox.process.startAndWait('echo hi')).stdout)`,
      { timeoutMs: 20_000 },
    )
    assert.equal(r.code, 0, r.stderr)
    const [id, hi] = r.stdout.trim().split('\n')
    cleanup.add(id!)
    assert.equal(hi, 'hi')
    assert.ok(Date.now() - started < 15_000, 'the script did not wait for its hold timer')
    const ms = await msUntilGone(id!, 20_000 + SLACK_MS)
    assert.ok(ms <= 20_000 + SLACK_MS)
  })

  test('keepAlive beyond the server limit is refused with an InvalidArgumentError naming the limit', { timeout: 30_000 }, async () => {
    const sandbox = await Sandbox.create()
    cleanup.add(sandbox.id)
    try {
      await assert.rejects(sandbox.keepAlive(3_600_001), (err: unknown) => {
        assert.ok(err instanceof InvalidArgumentError, String(err))
        assert.match(err.message, /limit of 3600000 ms \(1 hour\)/)
        return true
      })
      await assert.rejects(sandbox.keepAlive(-1), InvalidArgumentError)
      await assert.rejects(sandbox.keepAlive('60s' as unknown as number), InvalidArgumentError)
      await sandbox.keepAlive(3_600_000)
      const endAt = (await sandbox.getInfo()).endAt
      assert.ok(endAt && endAt.getTime() - Date.now() > 3_590_000)
    } finally {
      await sandbox.kill()
    }
  })

  test('list filtered by metadata returns exactly the matching sandboxes', { timeout: 60_000 }, async () => {
    const run = runLabel()
    const made = await Promise.all(
      ['a', 'a', 'b'].map((group) => Sandbox.create({ metadata: { run, group } }).then((s) => (cleanup.add(s.id), s))),
    )
    try {
      const ids = (list: { id: string }[]) => list.map((s) => s.id).sort()
      const groupA = await Sandbox.list({ metadata: { run, group: 'a' } })
      assert.deepEqual(ids(groupA), ids(made.slice(0, 2)))
      assert.deepEqual(ids(await Sandbox.list({ metadata: { run } })), ids(made))
      assert.deepEqual(await Sandbox.list({ metadata: { run, group: 'c' } }), [])
      const one = groupA[0]!
      assert.equal(one.sandboxID, one.id)
      assert.equal(one.template, 'base')
      assert.deepEqual(one.metadata, { run, group: 'a' })
      assert.ok(one.startedAt instanceof Date && Date.now() - one.startedAt.getTime() < 60_000)
      assert.equal(one.endAt, null, 'held, with no keepAlive')
      assert.equal(one.holds, 1)
      assert.ok(one.cpuCount >= 1 && one.memoryMB >= 64)
      assert.deepEqual(made[2]!.getMetadata(), { run, group: 'b' })
    } finally {
      await Promise.all(made.map((s) => s.kill()))
    }
  })

  test('with several handles (create + 2 reconnects) the sandbox lives until the last one closes', { timeout: 60_000 }, async () => {
    const first = await Sandbox.create()
    cleanup.add(first.id)
    const second = await Sandbox.reconnect(first.id)
    const third = await Sandbox.reconnect(first.id)
    assert.equal((await third.getInfo()).holds, 3)
    await first.close()
    assert.equal((await sandboxState(first.id))?.holds, 2)
    await third.close()
    assert.equal((await sandboxState(first.id))?.holds, 1)
    // The remaining handle still works.
    await second.filesystem.write('still.txt', 'here')
    assert.equal(await second.filesystem.read('still.txt'), 'here')
    await second.close()
    await msUntilGone(first.id, 5_000)
  })

  test('a handle keeps its sandbox past the lease time by renewing, and replaces a hold that lapsed', { timeout: 60_000 }, async () => {
    const sandbox = await Sandbox.create()
    cleanup.add(sandbox.id)
    try {
      // Drop the handle's hold behind its back (the sandbox stays for its keepAlive meanwhile):
      // its next renewal learns the hold is gone and opens a new one.
      await sandbox.keepAlive(60_000)
      const keeper = (sandbox as unknown as { keeper: { holdId: string } }).keeper
      const lapsed = keeper.holdId
      const r = await api('DELETE', `/api/v1/sandboxes/${sandbox.id}/holds/${lapsed}`)
      assert.equal(r.status, 204)
      const start = Date.now()
      while (keeper.holdId === lapsed || (await sandboxState(sandbox.id))?.holds !== 1) {
        assert.ok(Date.now() - start < 8_000, 'a new hold within one renewal period')
        await sleep(200)
      }
      // Without a deadline, only the renewed hold keeps it: still there after a lease would have lapsed.
      await sandbox.keepAlive(0)
      await sleep(17_000)
      assert.equal((await sandbox.process.startAndWait('echo alive')).stdout, 'alive')
    } finally {
      await sandbox.close()
    }
    await msUntilGone(sandbox.id, 5_000)
  })

  test('a handle whose sandbox was killed elsewhere notices at its next renewal and throws SandboxNotFoundError', { timeout: 30_000 }, async () => {
    const sandbox = await Sandbox.create()
    cleanup.add(sandbox.id)
    await Sandbox.kill(sandbox.id)
    const start = Date.now()
    while (sandbox.isOpen) {
      assert.ok(Date.now() - start < 8_000, 'noticed within one renewal period')
      await sleep(200)
    }
    await assert.rejects(sandbox.filesystem.read('x'), SandboxNotFoundError)
    await assert.rejects(sandbox.keepAlive(1000), SandboxNotFoundError)
    await sandbox.close() // nothing left to release; not an error
    await assert.rejects(Sandbox.kill(sandbox.id), SandboxNotFoundError)
  })
})
