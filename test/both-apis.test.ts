// One server, two lifetimes: sandboxes made through E2B's API live by timeout, those made through
// the Sandlot SDK by their holds; each API sees, describes, holds and kills the other's.
import { Sandbox as E2bSandbox } from 'e2b'
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { Sandbox, SandboxNotFoundError } from 'sandlot'
import { apiKey, apiUrl } from './helpers.js'
import { create, RUN, sleep, until } from './e2b-env.js'

const opts = { apiUrl, apiKey: apiKey() }

describe('both APIs on the same sandboxes', { concurrency: true }, () => {
  test('an e2b sandbox: listed, held and released by the Sandlot SDK; its hold outlasts its timeout', async () => {
    const e = await create({ timeoutMs: 60_000, metadata: { side: 'e2b' } })
    const listed = await Sandbox.list({ ...opts, metadata: { run: RUN, side: 'e2b' } })
    assert.deepEqual(listed.map((s) => s.id), [e.sandboxId])
    assert.equal(listed[0]!.holds, 0)
    const held = await Sandbox.reconnect(e.sandboxId, opts)
    assert.equal((await held.process.startAndWait('echo held')).stdout, 'held')
    await e.setTimeout(1000)
    await sleep(3000)
    assert.equal(await e.isRunning(), true, 'a held sandbox outlives its E2B timeout')
    await held.close()
    await until(async () => !(await e.isRunning()), 10_000, 'the released sandbox, past its timeout, to go')
    await assert.rejects(Sandbox.reconnect(e.sandboxId, opts), SandboxNotFoundError)
  })

  test('a Sandlot sandbox: listed, described, used and killed through e2b', async () => {
    const s = await Sandbox.create({ ...opts, metadata: { suite: 'e2b', run: RUN, side: 'sandlot' } })
    try {
      const page = await E2bSandbox.list({ query: { metadata: { run: RUN, side: 'sandlot' } } }).nextItems()
      assert.deepEqual(page.map((x) => x.sandboxId), [s.id])
      const info = await E2bSandbox.getInfo(s.id)
      assert.equal(info.state, 'running')
      assert.deepEqual(info.metadata, { suite: 'e2b', run: RUN, side: 'sandlot' })
      await s.filesystem.write('/home/user/from-sandlot.txt', 'hello e2b')
      const e = await E2bSandbox.connect(s.id)
      assert.equal(await e.files.read('/home/user/from-sandlot.txt'), 'hello e2b')
      assert.equal(await E2bSandbox.kill(s.id), true)
      await assert.rejects(s.filesystem.read('/home/user/from-sandlot.txt'))
      await until(async () => !s.isOpen, 10_000, 'the handle to learn its sandbox is gone')
      await assert.rejects(s.process.startAndWait('true'), SandboxNotFoundError)
    } finally {
      await s.kill().catch(() => {})
    }
  })
})
