// The official e2b SDK against Sandlot's E2B control plane: create, connect (also from another
// OS process), list, kill, timeouts, getInfo, and clear errors for what Sandlot does not do yet.
import { AuthenticationError, Sandbox, SandboxError, SandboxNotFoundError, Template, Volume, VolumeError } from 'e2b'
import { RUN, apiKey, apiUrl, create, sleep, until } from './e2b-env.js'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { api } from './helpers.js'

const UNKNOWN = 'i' + '0'.repeat(20)

/** Every sandbox id the SDK lists for `opts`, all pages. */
async function listIds(opts: Parameters<typeof Sandbox.list>[0]): Promise<string[]> {
  const pager = Sandbox.list(opts)
  const ids: string[] = []
  while (pager.hasNext) ids.push(...(await pager.nextItems()).map((s) => s.sandboxId))
  return ids
}

/** Waits until `ms` after `t0`. */
const at = (t0: number, ms: number) => sleep(Math.max(0, t0 + ms - Date.now()))

describe('e2b SDK: sandbox lifecycle', { concurrency: true }, () => {
  test('Sandbox.create() then commands.run("echo hi") prints hi', async () => {
    const t0 = Date.now()
    const s = await create()
    const createMs = Date.now() - t0
    assert.match(s.sandboxId, /^i[a-z0-9]{20}$/)
    assert.equal((await s.commands.run('echo hi')).stdout, 'hi\n')
    // Without timeoutMs a sandbox lives E2B's default 5 minutes, counted from when it is up: at
    // most the create's own duration after its startedAt.
    const { startedAt, endAt } = await s.getInfo()
    const span = endAt.getTime() - startedAt.getTime()
    assert.ok(span >= 300_000 && span <= 300_000 + createMs + 1000, `endAt - startedAt = ${span} ms (the create took ${createMs} ms)`)
    assert.equal(await s.kill(), true)
  })

  test('getInfo reports id, template, metadata, times, state, limits and envd version', async () => {
    const before = Date.now()
    const s = await create({ timeoutMs: 60_000, metadata: { owner: 'u-123' } })
    const after = Date.now()
    const info = await s.getInfo()
    assert.equal(info.sandboxId, s.sandboxId)
    assert.equal(info.templateId, 'base')
    assert.deepEqual(info.metadata, { suite: 'e2b', run: RUN, owner: 'u-123' })
    assert.equal(info.state, 'running')
    assert.ok(info.startedAt instanceof Date && info.endAt instanceof Date)
    assert.ok(info.startedAt.getTime() >= before - 1000 && info.startedAt.getTime() <= after, `startedAt ${info.startedAt.toISOString()}`)
    // The timeout counts from when the sandbox is up.
    const span = info.endAt.getTime() - info.startedAt.getTime()
    assert.ok(span >= 60_000 && span <= 60_000 + (after - before), `endAt - startedAt = ${span} ms`)
    assert.match(info.envdVersion, /^0\.6\.\d+$/)
    // The same limits Sandlot's own API reports for this sandbox.
    const native = await api('GET', `/api/v1/sandboxes/${s.sandboxId}`)
    assert.equal(info.cpuCount, native.json.cpuCount)
    assert.equal(info.memoryMB, native.json.memoryMB)
    assert.ok(info.cpuCount >= 1 && info.memoryMB >= 128)
    // The static form answers the same.
    assert.deepEqual(await Sandbox.getInfo(s.sandboxId), info)
    assert.deepEqual(await Sandbox.getFullInfo(s.sandboxId), info)
  })

  test('Sandbox.create(template) with envs: the variables reach every command; a command overrides them', async () => {
    const s = await create({ envs: { GREETING: 'hello from create' } })
    assert.equal((await s.commands.run('echo "$GREETING"')).stdout, 'hello from create\n')
    assert.equal((await s.commands.run('echo "$GREETING"', { envs: { GREETING: 'override' } })).stdout, 'override\n')
    const named = await Sandbox.create('base', { metadata: { suite: 'e2b', run: RUN } })
    try {
      assert.equal((await named.getInfo()).templateId, 'base')
    } finally {
      await named.kill()
    }
    await assert.rejects(Sandbox.create('no-such-template'), (e: Error) => e instanceof SandboxError && /^400: Unknown template "no-such-template"/.test(e.message))
  })

  test('isRunning and kill: true, then false once it is gone; the data plane says the sandbox is gone', async () => {
    const s = await create()
    assert.equal(await s.isRunning(), true)
    assert.equal(await s.kill(), true)
    assert.equal(await s.isRunning(), false)
    assert.equal(await s.kill(), false)
    assert.equal(await Sandbox.kill(s.sandboxId), false)
    await assert.rejects(s.getInfo(), SandboxNotFoundError)
    await assert.rejects(s.commands.run('true'), SandboxNotFoundError)
  })

  test('connect: from this process and from another OS process that only has the three E2B_* variables', async () => {
    const s = await create()
    await s.files.write('/home/user/from-parent.txt', 'written by the parent\n')
    const same = await Sandbox.connect(s.sandboxId)
    assert.equal(same.sandboxId, s.sandboxId)
    assert.equal((await same.commands.run('cat /home/user/from-parent.txt')).stdout, 'written by the parent\n')

    const code = [
      "import { Sandbox } from 'e2b'",
      'const s = await Sandbox.connect(process.argv[1])',
      "const r = await s.commands.run('cat /home/user/from-parent.txt; echo from-child > /home/user/from-child.txt')",
      'process.stdout.write(JSON.stringify({ id: s.sandboxId, stdout: r.stdout }))',
    ].join('\n')
    const env = { PATH: process.env.PATH!, E2B_API_URL: process.env.E2B_API_URL!, E2B_SANDBOX_URL: process.env.E2B_SANDBOX_URL!, E2B_API_KEY: process.env.E2B_API_KEY! }
    const child = spawn(process.execPath, ['--input-type=module', '-e', code, s.sandboxId], { env, cwd: fileURLToPath(new URL('..', import.meta.url)) })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    const exitCode = await new Promise((r) => child.on('exit', r))
    assert.equal(exitCode, 0, err)
    assert.deepEqual(JSON.parse(out), { id: s.sandboxId, stdout: 'written by the parent\n' })
    assert.equal(await s.files.read('/home/user/from-child.txt'), 'from-child\n')
  })

  test('list: metadata filter (with characters that need encoding), state filter, order, paging with limit 1', async () => {
    const tag = `list-${RUN}`
    const a = await create({ metadata: { list: tag, n: '1', 'odd key': 'a=b&c d' } })
    const b = await create({ metadata: { list: tag, n: '2' } })
    const mine = { metadata: { list: tag } }
    assert.deepEqual(await listIds({ query: mine }), [b.sandboxId, a.sandboxId], 'newest first by default')
    assert.deepEqual(await listIds({ query: mine, order: 'asc' }), [a.sandboxId, b.sandboxId])
    assert.deepEqual(await listIds({ query: { metadata: { list: tag, n: '1' } } }), [a.sandboxId])
    assert.deepEqual(await listIds({ query: { metadata: { list: tag, 'odd key': 'a=b&c d' } } }), [a.sandboxId])
    assert.deepEqual(await listIds({ query: { metadata: { list: tag, 'odd key': 'a=b' } } }), [])
    assert.deepEqual(await listIds({ query: { ...mine, state: ['running'] } }), [b.sandboxId, a.sandboxId])
    assert.deepEqual(await listIds({ query: { ...mine, state: ['paused'] } }), [])
    assert.deepEqual(await listIds({ query: { ...mine, template: 'base' } }), [b.sandboxId, a.sandboxId])
    assert.deepEqual(await listIds({ query: { ...mine, template: 'other' } }), [])
    const aStarted = (await a.getInfo()).startedAt
    assert.deepEqual(await listIds({ query: { ...mine, startedAfter: aStarted } }), [b.sandboxId, a.sandboxId], 'startedAfter is inclusive (E2B)')
    assert.deepEqual(await listIds({ query: { ...mine, startedAfter: new Date(aStarted.getTime() + 1) } }), [b.sandboxId])

    const pager = Sandbox.list({ query: mine, limit: 1 })
    assert.equal(pager.hasNext, true)
    const page1 = await pager.nextItems()
    assert.deepEqual(page1.map((s) => s.sandboxId), [b.sandboxId])
    assert.equal(pager.hasNext, true)
    const page2 = await pager.nextItems()
    assert.deepEqual(page2.map((s) => s.sandboxId), [a.sandboxId])
    assert.equal(pager.hasNext, false, 'the last page carries no next token')

    const listed = page2[0]!
    assert.equal(listed.templateId, 'base')
    assert.equal(listed.state, 'running')
    assert.deepEqual(listed.metadata, { suite: 'e2b', run: RUN, list: tag, n: '1', 'odd key': 'a=b&c d' })
    const info = await a.getInfo()
    assert.equal(listed.startedAt.getTime(), info.startedAt.getTime())
    assert.equal(listed.endAt.getTime(), info.endAt.getTime())
    assert.equal(listed.cpuCount, info.cpuCount)
    assert.equal(listed.memoryMB, info.memoryMB)

    assert.equal(await b.kill(), true)
    assert.deepEqual(await listIds({ query: mine }), [a.sandboxId])
  })

  test('setTimeout(5000): still running at 3.5 s, gone at 6.5 s', async () => {
    const s = await create()
    const t0 = Date.now()
    await s.setTimeout(5000)
    const { endAt } = await s.getInfo()
    assert.ok(Math.abs(endAt.getTime() - (t0 + 5000)) < 1000, `endAt ${endAt.getTime() - t0} ms after setTimeout`)
    await at(t0, 3500)
    assert.equal(await s.isRunning(), true)
    await at(t0, 6500)
    assert.equal(await s.isRunning(), false)
    await assert.rejects(s.getInfo(), SandboxNotFoundError)
    assert.equal(await s.kill(), false)
  })

  test('setTimeout(5000) then setTimeout(10000): still running at 7 s (a timeout can be extended)', async () => {
    const s = await create()
    const t0 = Date.now()
    await s.setTimeout(5000)
    await s.setTimeout(10_000)
    await at(t0, 7000)
    assert.equal(await s.isRunning(), true)
    assert.equal((await s.commands.run('echo alive')).stdout, 'alive\n')
  })

  test('a sandbox nobody extends dies at its timeout: Sandbox.create({ timeoutMs: 3000 })', async () => {
    const s = await create({ timeoutMs: 3000, metadata: { dies: RUN } })
    const t0 = Date.now()
    assert.equal((await s.commands.run('echo up')).stdout, 'up\n')
    await at(t0, 2000)
    assert.equal(await s.isRunning(), true)
    await until(async () => !(await s.isRunning()), 3000, 'the sandbox to end at its timeout')
    assert.ok(Date.now() - t0 >= 2500, `ended ${Date.now() - t0} ms after create`)
    assert.deepEqual(await listIds({ query: { metadata: { dies: RUN } } }), [])
  })

  test('connect with a shorter timeout keeps endAt; a longer one extends it', async () => {
    const s = await create({ timeoutMs: 60_000 })
    const before = (await s.getInfo()).endAt
    const again = await Sandbox.connect(s.sandboxId, { timeoutMs: 5000 })
    assert.equal((await again.getInfo()).endAt.getTime(), before.getTime())
    const t0 = Date.now()
    await Sandbox.connect(s.sandboxId, { timeoutMs: 120_000 })
    const extended = (await s.getInfo()).endAt.getTime()
    assert.ok(extended >= t0 + 119_000 && extended <= Date.now() + 120_000, `endAt ${extended - t0} ms after connect`)
    // An instance connect without a timeout keeps it too.
    await again.connect()
    assert.equal((await s.getInfo()).endAt.getTime(), extended)
  })

  test('a timeout longer than 1 h is refused, at create and at setTimeout, and creates nothing', async () => {
    const tooLong = 3_600_000 + 1000
    await assert.rejects(create({ timeoutMs: tooLong, metadata: { refused: RUN } }), (e: Error) => e instanceof SandboxError && e.message === '400: Timeout cannot be greater than 1 hour')
    assert.deepEqual(await listIds({ query: { metadata: { refused: RUN } } }), [])
    const s = await create()
    await assert.rejects(s.setTimeout(tooLong), (e: Error) => e instanceof SandboxError && e.message === '400: Timeout cannot be greater than 1 hour')
    await s.setTimeout(3_600_000) // exactly the limit is fine
  })

  test('an unknown sandbox id: SandboxNotFoundError from getInfo, setTimeout, connect and pause; kill answers false', async () => {
    await assert.rejects(Sandbox.getInfo(UNKNOWN), SandboxNotFoundError)
    await assert.rejects(Sandbox.setTimeout(UNKNOWN, 10_000), SandboxNotFoundError)
    await assert.rejects(Sandbox.connect(UNKNOWN), SandboxNotFoundError)
    await assert.rejects(Sandbox.pause(UNKNOWN), SandboxNotFoundError)
    assert.equal(await Sandbox.kill(UNKNOWN), false)
  })

  test('volumes: a clear 501 error, never a fake success', async () => {
    const s = await create()
    const notSupported = (what: RegExp, cls: new (...args: never[]) => Error = SandboxError) => (e: Error) => {
      assert.ok(e instanceof cls && !(e instanceof SandboxNotFoundError), `${e.constructor.name}: ${e.message}`)
      assert.match(e.message, /^501: /)
      assert.match(e.message, what)
      assert.match(e.message, /not supported/)
      return true
    }
    await assert.rejects(create({ volumeMounts: { '/data': 'vol' }, metadata: { refused: `vol-${RUN}` } }), notSupported(/volume mounts/))
    await assert.rejects(Volume.create('vol'), notSupported(/volumes/, VolumeError))
    // Templates are built now (e2b-templates.test.ts, templates.test.ts).
    assert.equal(await Template.exists('base'), true)
    for (const refused of ['vol']) assert.deepEqual(await listIds({ query: { metadata: { refused: `${refused}-${RUN}` } } }), [])
    // Nothing happened to the sandbox.
    assert.equal((await s.getInfo()).state, 'running')
    assert.equal((await s.commands.run('echo still here')).stdout, 'still here\n')
  })

  test('a wrong API key: AuthenticationError', async () => {
    await assert.rejects(Sandbox.create({ apiKey: 'e2b_' + '0'.repeat(40) }), AuthenticationError)
    await assert.rejects(Sandbox.list({ apiKey: 'e2b_' + '0'.repeat(40) }).nextItems(), AuthenticationError)
  })

  test("older SDKs' and the CLI's endpoints (plain fetch): POST and GET /sandboxes, refreshes, v1 connect, resume, DELETE", async () => {
    const call = async (method: string, route: string, body?: unknown) => {
      const res = await fetch(`${apiUrl}${route}`, {
        method,
        headers: { 'x-api-key': apiKey(), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      })
      const raw = await res.text()
      return { status: res.status, json: raw ? JSON.parse(raw) : undefined }
    }
    const tag = `legacy-${RUN}`
    const created = await call('POST', '/sandboxes', { templateID: 'base', timeout: 30, metadata: { suite: 'e2b', run: RUN, legacy: tag } })
    assert.equal(created.status, 201, JSON.stringify(created.json))
    const id: string = created.json.sandboxID
    try {
      assert.match(id, /^i[a-z0-9]{20}$/)
      assert.equal(created.json.templateID, 'base')
      assert.equal(created.json.clientID, '6532622b')
      assert.match(created.json.envdVersion, /^0\.6\.\d+$/)
      assert.equal(typeof created.json.envdAccessToken, 'string')
      const listed = await call('GET', `/sandboxes?metadata=${encodeURIComponent(`legacy=${tag}`)}`)
      assert.equal(listed.status, 200)
      assert.deepEqual(listed.json.map((s: { sandboxID: string }) => s.sandboxID), [id])
      const endAt = async () => Date.parse((await call('GET', `/sandboxes/${id}`)).json.endAt)
      const first = await endAt()
      assert.equal((await call('POST', `/sandboxes/${id}/refreshes`, { duration: 120 })).status, 204)
      assert.ok((await endAt()) >= first + 85_000, 'refreshes extends the deadline')
      assert.equal((await call('POST', `/sandboxes/${id}/refreshes`, { duration: 0 })).status, 204)
      assert.ok((await endAt()) >= first + 85_000, 'refreshes never shortens it')
      const connected = await call('POST', `/sandboxes/${id}-6532622b/connect`, { timeout: 10 })
      assert.equal(connected.status, 200)
      assert.equal(connected.json.sandboxID, id)
      const resumed = await call('POST', `/sandboxes/${id}/resume`, { timeout: 10 })
      assert.equal(resumed.status, 409)
      assert.equal(resumed.json.code, 409)
      // The SDK sees a sandbox created this way like any other.
      assert.equal((await (await Sandbox.connect(id)).commands.run('echo legacy')).stdout, 'legacy\n')
    } finally {
      assert.equal((await call('DELETE', `/sandboxes/${id}`)).status, 204)
    }
    assert.equal((await call('DELETE', `/sandboxes/${id}`)).status, 404)
    assert.equal((await call('GET', `/sandboxes/${id}`)).json.code, 404)
  })

  test('unknown routes answer 404 JSON naming the route', async () => {
    for (const [method, route] of [
      ['GET', '/v2/no-such-route'],
      ['POST', `/sandboxes/${UNKNOWN}/no-such-action`],
      ['DELETE', '/v1/nothing/here'],
    ] as const) {
      const res = await fetch(`${apiUrl}${route}?x=1`, { method, headers: { 'x-api-key': apiKey() } })
      assert.equal(res.status, 404)
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/)
      assert.deepEqual(await res.json(), { code: 404, message: `Route ${method} ${route} does not exist on this Sandlot server` })
    }
  })
})
