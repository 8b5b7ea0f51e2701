// Network settings through Sandlot's own REST (/api/v1), E2B's REST on the wire, the Sandlot SDK
// and the CLI, against real sandboxes: create, describe, replace, and hostile input (a clear 400,
// the server stays up). Settings only: whether traffic obeys them is the network suite's.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { after, describe, test } from 'node:test'
import { InvalidArgumentError, Sandbox, SandboxNotFoundError } from 'sandlot'
import { api, apiUrl, run } from './helpers.js'
import { Cleanup } from './sdk-env.js'

const cleanup = new Cleanup()
after(() => cleanup.run())

const UNKNOWN = 'i' + '0'.repeat(20)
const TAG = `netapi-${process.pid}-${Date.now().toString(36)}`
/** Port previews' settings, shown beside the egress ones: public unless asked otherwise. */
const PUBLIC = { allowPublicTraffic: true, maskRequestHost: null }
const OPEN = { allowInternetAccess: null, allowOut: [], denyOut: [], ...PUBLIC }

async function create(body: Record<string, unknown>): Promise<{ id: string; network: unknown }> {
  const r = await api('POST', '/api/v1/sandboxes', { keepAliveMs: 120_000, metadata: { suite: 'network-api', tag: TAG }, ...body })
  assert.equal(r.status, 201, JSON.stringify(r.json))
  cleanup.add(r.json.id)
  return r.json
}

/** Asserts a JSON error answer: status, numeric code and message (exact, or matching). */
function isError(r: { status: number; json: any }, status: number, message: string | RegExp): void {
  assert.equal(r.status, status, JSON.stringify(r.json))
  assert.equal(r.json.code, status)
  if (typeof message === 'string') assert.equal(r.json.message, message)
  else assert.match(r.json.message, message)
}

describe('network settings: /api/v1', { concurrency: true }, () => {
  test('create with network: described at create, by GET and in the list; none given: open', async () => {
    const s = await create({ network: { allowInternetAccess: false, allowOut: ['PyPI.org', '1.1.1.1'], denyOut: ['10.0.0.0/8'] } })
    const expected = { allowInternetAccess: false, allowOut: ['pypi.org', '1.1.1.1/32'], denyOut: ['10.0.0.0/8'], ...PUBLIC }
    assert.deepEqual(s.network, expected)
    assert.deepEqual((await api('GET', `/api/v1/sandboxes/${s.id}`)).json.network, expected)
    const listed = (await api('GET', '/api/v1/sandboxes')).json.find((x: { id: string }) => x.id === s.id)
    assert.deepEqual(listed.network, expected)
    const plain = await create({})
    assert.deepEqual(plain.network, OPEN)
  })

  test('PUT …/network replaces the settings (what it leaves out is cleared; {} clears all) and answers the sandbox', async () => {
    const s = await create({ network: { allowInternetAccess: false, allowOut: ['1.1.1.1'] } })
    let r = await api('PUT', `/api/v1/sandboxes/${s.id}/network`, { denyOut: ['0.0.0.0/0'], allowOut: ['*.Example.com'] })
    assert.equal(r.status, 200, JSON.stringify(r.json))
    assert.equal(r.json.id, s.id)
    assert.deepEqual(r.json.network, { allowInternetAccess: null, allowOut: ['*.example.com'], denyOut: ['0.0.0.0/0'], ...PUBLIC })
    assert.deepEqual((await api('GET', `/api/v1/sandboxes/${s.id}`)).json.network, r.json.network)
    r = await api('PUT', `/api/v1/sandboxes/${s.id}/network`, {})
    assert.deepEqual(r.json.network, OPEN)
    // The sandbox itself is untouched.
    assert.equal((await run(s.id, 'echo fine')).stdout, 'fine\n')
  })

  test('refused: E2B\'s texts for entries, named fields for the rest; nothing is made or changed', async () => {
    const bad: [unknown, number, string | RegExp][] = [
      [{ allowOut: ['example.com'] }, 400, "When specifying allowed domains in allow out, you must include 'ALL_TRAFFIC' in deny out to block all other traffic."],
      [{ allowOut: ['a..b'] }, 400, 'invalid allowed address a..b'],
      [{ denyOut: ['pypi.org'] }, 400, /^invalid denied CIDR pypi\.org \(/],
      [{ denyOut: ['::/0'] }, 400, 'invalid denied CIDR ::/0 (IPv6 is not supported: sandboxes have IPv4 only)'],
      [{ allowOut: 'pypi.org' }, 400, 'network.allowOut must be an array of strings'],
      [{ allowInternetAccess: 'no' }, 400, 'network.allowInternetAccess must be true or false'],
      [{ rules: {} }, 400, 'Unknown field network.rules: this takes allowInternetAccess, allowOut, denyOut, allowPublicTraffic, maskRequestHost'],
      ['none', 400, /^network must be a JSON object/],
    ]
    for (const [network, status, message] of bad) {
      isError(await api('POST', '/api/v1/sandboxes', { keepAliveMs: 60_000, metadata: { tag: `${TAG}-refused` }, network }), status, message)
    }
    assert.deepEqual((await api('GET', `/api/v1/sandboxes?metadata=${encodeURIComponent(`tag=${TAG}-refused`)}`)).json, [])

    const s = await create({ network: { denyOut: ['192.0.2.0/24'] } })
    for (const [body, status, message] of bad) {
      const r = await api('PUT', `/api/v1/sandboxes/${s.id}/network`, typeof body === 'string' ? JSON.stringify(body) : body)
      // An update takes the egress settings only (the port previews' are set at create).
      const updateMessage = (m: string) => m.replace('network.', '').replace(', allowPublicTraffic, maskRequestHost', '')
      isError(r, status, typeof message === 'string' ? updateMessage(message) : new RegExp(message.source.replace('network must', 'The body must')))
    }
    assert.deepEqual((await api('GET', `/api/v1/sandboxes/${s.id}`)).json.network, { allowInternetAccess: null, allowOut: [], denyOut: ['192.0.2.0/24'], ...PUBLIC })
    isError(await api('PUT', `/api/v1/sandboxes/${UNKNOWN}/network`, {}), 404, `Sandbox "${UNKNOWN}" doesn't exist or you don't have access to it`)
  })

  test('hostile input: a clear 400 each time, and the server and the sandbox carry on', async () => {
    const s = await create({})
    const route = `/api/v1/sandboxes/${s.id}/network`
    isError(await api('PUT', route, { allowOut: Array.from({ length: 513 }, (_, i) => `10.0.${i >> 8}.${i & 255}`) }), 400, 'allowOut has 513 entries: at most 512 are allowed')
    isError(await api('PUT', route, { allowOut: [`${'a'.repeat(63)}.`.repeat(5) + 'com'] }), 400, /\(longer than 255 characters\)$/)
    isError(await api('PUT', route, { allowOut: [{ nested: [[[['1.1.1.1']]]] }] }), 400, 'allowOut[0] must be a string')
    isError(await api('PUT', route, { denyOut: [null] }), 400, 'denyOut[0] must be a string')
    isError(await api('PUT', route, { allowOut: ['1.1.1.1\u0000'] }), 400, /^invalid allowed address 1\.1\.1\.1\u0000/)
    isError(await api('PUT', route, { allowOut: ['\u202eexample.com'] }), 400, /^invalid allowed address /)
    isError(await api('PUT', route, { allowOut: ['1.1.1.1/32/32'] }), 400, 'invalid allowed address 1.1.1.1/32/32')
    isError(await api('PUT', route, [1, 2]), 400, /^The body must be a JSON object/)
    isError(await api('PUT', route, 'null'), 400, /^The body must be a JSON object/)
    isError(await api('PUT', route, '{"allowOut": ['), 400, /JSON/)
    // Fastify refuses a prototype-poisoning key outright.
    isError(await api('PUT', route, '{"__proto__": {"allowOut": ["1.1.1.1"]}}'), 400, /not valid JSON/)
    assert.equal((await fetch(`${apiUrl}/health`)).status, 200)
    assert.deepEqual((await api('GET', `/api/v1/sandboxes/${s.id}`)).json.network, OPEN)
    assert.equal((await run(s.id, 'echo alive')).stdout, 'alive\n')
  })
})

describe('network settings: E2B REST on the wire', { concurrency: true }, () => {
  test('v1 and v2 create take allow_internet_access and network; GET shows allowInternetAccess and network (egressProxy null)', async () => {
    for (const route of ['/sandboxes', '/v2/sandboxes']) {
      const r = await api('POST', route, { templateID: 'base', timeout: 60, metadata: { tag: TAG }, allow_internet_access: false, network: { allowOut: ['1.1.1.1'] } })
      assert.equal(r.status, 201, JSON.stringify(r.json))
      cleanup.add(r.json.sandboxID)
      const info = (await api('GET', `/sandboxes/${r.json.sandboxID}`)).json
      assert.equal(info.allowInternetAccess, false)
      assert.deepEqual(info.network, { allowOut: ['1.1.1.1/32'], denyOut: [], egressProxy: null, allowPublicTraffic: true })
      // Sandlot's API describes the same sandbox the same way.
      assert.deepEqual((await api('GET', `/api/v1/sandboxes/${r.json.sandboxID}`)).json.network, { allowInternetAccess: false, allowOut: ['1.1.1.1/32'], denyOut: [], ...PUBLIC })
    }
    const plain = await api('POST', '/v2/sandboxes', { templateID: 'base', timeout: 60, metadata: { tag: TAG } })
    cleanup.add(plain.json.sandboxID)
    const info = (await api('GET', `/sandboxes/${plain.json.sandboxID}`)).json
    assert.equal(info.allowInternetAccess, null)
    assert.deepEqual(info.network, { allowOut: [], denyOut: [], egressProxy: null, allowPublicTraffic: true })
  })

  test('PUT /sandboxes/{id}/network: 204, a full replace; the legacy "<id>-<clientID>" form; 404 unknown; 400 without a JSON object', async () => {
    const s = await create({ network: { allowOut: ['1.1.1.1'] } })
    let r = await api('PUT', `/sandboxes/${s.id}/network`, { allow_internet_access: false, allowOut: ['pypi.org'] })
    assert.equal(r.status, 204)
    assert.deepEqual((await api('GET', `/api/v1/sandboxes/${s.id}`)).json.network, { allowInternetAccess: false, allowOut: ['pypi.org'], denyOut: [], ...PUBLIC })
    r = await api('PUT', `/sandboxes/${s.id}-6532622b/network`, {})
    assert.equal(r.status, 204)
    assert.deepEqual((await api('GET', `/api/v1/sandboxes/${s.id}`)).json.network, OPEN)
    isError(await api('PUT', `/sandboxes/${UNKNOWN}/network`, {}), 404, `Sandbox "${UNKNOWN}" doesn't exist or you don't have access to it`)
    isError(await api('PUT', `/sandboxes/${s.id}/network`), 400, /^The body must be a JSON object \(\{\} clears every network rule\)$/)
    isError(await api('PUT', `/sandboxes/${s.id}/network`, { maskRequestHost: 'x' }), 400, /^Unknown field maskRequestHost: /)
    isError(await api('PUT', `/sandboxes/${s.id}/network`, { egressProxy: { address: 'p:1' } }), 403, 'Egress proxy (egressProxy) is not enabled for this team.')
  })
})

describe('network settings: the Sandlot SDK', () => {
  test('Sandbox.create({ network }), getInfo().network, updateNetwork, and the server\'s refusals as InvalidArgumentError', async () => {
    const sandbox = await Sandbox.create({ metadata: { suite: 'network-api', tag: TAG }, network: { allowInternetAccess: false, allowOut: ['Example.com', '1.1.1.1'] } })
    cleanup.add(sandbox.id)
    try {
      assert.deepEqual((await sandbox.getInfo()).network, { allowInternetAccess: false, allowOut: ['example.com', '1.1.1.1/32'], denyOut: [], ...PUBLIC })
      const listed = (await Sandbox.list({ metadata: { tag: TAG } })).find((s) => s.id === sandbox.id)
      assert.deepEqual(listed?.network.allowOut, ['example.com', '1.1.1.1/32'])

      await sandbox.updateNetwork({ denyOut: ['203.0.113.0/24'] })
      assert.deepEqual((await sandbox.getInfo()).network, { allowInternetAccess: null, allowOut: [], denyOut: ['203.0.113.0/24'], ...PUBLIC })
      await sandbox.updateNetwork({})
      assert.deepEqual((await sandbox.getInfo()).network, OPEN)

      await assert.rejects(sandbox.updateNetwork({ allowOut: ['example.com'] }), (e: Error) => e instanceof InvalidArgumentError && /ALL_TRAFFIC/.test(e.message))
      await assert.rejects(sandbox.updateNetwork({ denyOut: ['example.com'] }), (e: Error) => e instanceof InvalidArgumentError && /^invalid denied CIDR example\.com/.test(e.message))
      // What the SDK can tell by itself, it tells before any request.
      await assert.rejects(sandbox.updateNetwork({ allowOut: 'example.com' as unknown as string[] }), /network\.allowOut is an array of strings/)
      await assert.rejects(sandbox.updateNetwork({ rules: {} } as never), /network\.rules is not a network option/)
      await assert.rejects(
        Sandbox.create({ metadata: { tag: `${TAG}-sdk-refused` }, network: { denyOut: ['nope'] } }),
        (e: Error) => e instanceof InvalidArgumentError && e.message === 'invalid denied CIDR nope (denyOut takes IP addresses and CIDRs only, not domains)',
      )
      assert.deepEqual(await Sandbox.list({ metadata: { tag: `${TAG}-sdk-refused` } }), [])
    } finally {
      await sandbox.kill()
    }
    await assert.rejects(sandbox.updateNetwork({}), SandboxNotFoundError)
  })
})

describe('network settings: the CLI', () => {
  const cli = (args: string[]) => {
    const r = spawnSync(process.execPath, ['packages/cli/dist/main.js', ...args], { encoding: 'utf8' })
    return { code: r.status, stdout: r.stdout, stderr: r.stderr }
  }

  test('create --no-internet --allow-out … --deny-out …; network <id> shows, replaces, --clear', async () => {
    const created = cli(['create', '--metadata', `tag=${TAG}`, '--no-internet', '--allow-out', 'PyPI.org', '--allow-out', '1.1.1.1', '--deny-out', '10.0.0.0/8'])
    assert.equal(created.code, 0, created.stderr)
    const id = created.stdout.trim().split('\n').at(-1)!
    cleanup.add(id)
    assert.match(created.stderr, /internet: off/)
    assert.match(created.stderr, /allowed out: pypi\.org 1\.1\.1\.1\/32/)
    assert.deepEqual((await api('GET', `/api/v1/sandboxes/${id}`)).json.network, { allowInternetAccess: false, allowOut: ['pypi.org', '1.1.1.1/32'], denyOut: ['10.0.0.0/8'], ...PUBLIC })

    const shown = cli(['network', id])
    assert.equal(shown.code, 0, shown.stderr)
    assert.match(shown.stdout, /denied out: +10\.0\.0\.0\/8/)
    assert.equal((await api('GET', `/api/v1/sandboxes/${id}`)).json.network.allowInternetAccess, false, 'showing changes nothing')

    const replaced = cli(['network', id, '--deny-out', '0.0.0.0/0', '--allow-out', '*.example.com'])
    assert.equal(replaced.code, 0, replaced.stderr)
    assert.match(replaced.stdout, /internet: on, except denied destinations/)
    assert.deepEqual((await api('GET', `/api/v1/sandboxes/${id}`)).json.network, { allowInternetAccess: null, allowOut: ['*.example.com'], denyOut: ['0.0.0.0/0'], ...PUBLIC })

    const badEntry = cli(['network', id, '--allow-out', 'example.com'])
    assert.equal(badEntry.code, 1)
    assert.match(badEntry.stderr, /^sandlot: When specifying allowed domains in allow out/)

    assert.equal(cli(['network', id, '--clear', '--no-internet']).code, 2)
    const cleared = cli(['network', id, '--clear'])
    assert.equal(cleared.code, 0, cleared.stderr)
    assert.deepEqual((await api('GET', `/api/v1/sandboxes/${id}`)).json.network, OPEN)
    assert.match(cli(['network', UNKNOWN, '--clear']).stderr, /doesn't exist/)
  })
})

