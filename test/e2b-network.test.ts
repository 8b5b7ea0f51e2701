// The official e2b SDK's network settings against Sandlot: allowInternetAccess and network at
// create, updateNetwork (a full replace), getInfo().network, and each refusal as the SDK surfaces
// it. Settings only: whether traffic obeys them is the network suite's.
import { Sandbox, SandboxError, SandboxNotFoundError } from 'e2b'
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { RUN, create } from './e2b-env.js'

const UNKNOWN = 'i' + '0'.repeat(20)
const DOMAINS_NEED_ALL_TRAFFIC = "When specifying allowed domains in allow out, you must include 'ALL_TRAFFIC' in deny out to block all other traffic."

/** The SDK's error for an API answer: a SandboxError (not SandboxNotFoundError) "<status>: <message>". */
const refused = (status: number, message: string | RegExp) => (e: Error) => {
  assert.ok(e instanceof SandboxError && !(e instanceof SandboxNotFoundError), `${e.constructor.name}: ${e.message}`)
  if (typeof message === 'string') assert.equal(e.message, `${status}: ${message}`)
  else {
    assert.ok(e.message.startsWith(`${status}: `), e.message)
    assert.match(e.message, message)
  }
  return true
}

/** Every sandbox of this run with `tag` in its metadata. */
async function tagged(tag: string): Promise<string[]> {
  const pager = Sandbox.list({ query: { metadata: { run: RUN, refused: tag } } })
  const ids: string[] = []
  while (pager.hasNext) ids.push(...(await pager.nextItems()).map((s) => s.sandboxId))
  return ids
}

describe('e2b SDK: network settings', { concurrency: true }, () => {
  test('create with allowInternetAccess: false and allowOut/denyOut: getInfo shows them, normalised', async () => {
    const s = await create({ allowInternetAccess: false, network: { allowOut: ['1.1.1.1', 'Example.COM', '10.1.0.0/16'], denyOut: ['0.0.0.0/0'] } })
    const info = await s.getInfo()
    assert.equal(info.allowInternetAccess, false)
    assert.deepEqual(info.network?.allowOut, ['1.1.1.1/32', 'example.com', '10.1.0.0/16'])
    assert.deepEqual(info.network?.denyOut, ['0.0.0.0/0'])
    assert.equal(info.network?.egressProxy, undefined)
    assert.equal(info.network?.rules, undefined)
    // A sandbox like any other.
    assert.equal((await s.commands.run('echo ok')).stdout, 'ok\n')
    await s.kill()
  })

  test('without settings: allowInternetAccess not set, empty lists; true when asked', async () => {
    const plain = await create()
    const info = await plain.getInfo()
    assert.equal(info.allowInternetAccess, undefined)
    assert.deepEqual(info.network?.allowOut, [])
    assert.deepEqual(info.network?.denyOut, [])
    const on = await create({ allowInternetAccess: true })
    assert.equal((await on.getInfo()).allowInternetAccess, true)
    await Promise.all([plain.kill(), on.kill()])
  })

  test('allowOut/denyOut callbacks and rules without transforms (they change nothing, and are kept)', async () => {
    const s = await create({
      network: {
        rules: { 'API.example.com': [{}] },
        allowOut: ({ rules }) => [...rules.keys()],
        denyOut: ({ allTraffic }) => [allTraffic],
      },
    })
    const info = await s.getInfo()
    assert.deepEqual(info.network?.allowOut, ['api.example.com'])
    assert.deepEqual(info.network?.denyOut, ['0.0.0.0/0'])
    assert.deepEqual(info.network?.rules, { 'api.example.com': [{}] })
    await s.kill()
  })

  test('updateNetwork replaces everything: what it leaves out is cleared, {} clears all', async () => {
    const s = await create({ allowInternetAccess: false, network: { allowOut: ['1.1.1.1'] } })
    await s.updateNetwork({ allowOut: ['*.PyPI.org', '8.8.8.8'], denyOut: ({ allTraffic }) => [allTraffic] })
    let info = await s.getInfo()
    assert.deepEqual(info.network?.allowOut, ['*.pypi.org', '8.8.8.8/32'])
    assert.deepEqual(info.network?.denyOut, ['0.0.0.0/0'])
    assert.equal(info.allowInternetAccess, undefined, 'the flag was left out, so it is cleared')

    await Sandbox.updateNetwork(s.sandboxId, { allowInternetAccess: false, allowOut: ['pypi.org'] })
    info = await s.getInfo()
    assert.equal(info.allowInternetAccess, false)
    assert.deepEqual(info.network?.allowOut, ['pypi.org'])
    assert.deepEqual(info.network?.denyOut, [])

    await s.updateNetwork({})
    info = await s.getInfo()
    assert.equal(info.allowInternetAccess, undefined)
    assert.deepEqual(info.network?.allowOut, [])
    assert.deepEqual(info.network?.denyOut, [])
    assert.equal((await s.commands.run('echo still here')).stdout, 'still here\n')
    await s.kill()
  })

  test('refused at create, with E2B\'s texts; no sandbox is made', async () => {
    const tag = `net-${RUN}`
    const attempt = (opts: Parameters<typeof create>[0]) => create({ ...opts, metadata: { refused: tag } })
    await assert.rejects(attempt({ network: { denyOut: ['example.com'] } }), refused(400, 'invalid denied CIDR example.com (denyOut takes IP addresses and CIDRs only, not domains)'))
    await assert.rejects(attempt({ network: { allowOut: ['not a host'] } }), refused(400, 'invalid allowed address not a host'))
    await assert.rejects(attempt({ network: { allowOut: ['0.0.0.0'] } }), refused(400, /^400: invalid allowed address 0\.0\.0\.0 /))
    await assert.rejects(attempt({ network: { allowOut: ['2001:db8::1'] } }), refused(400, /IPv6 is not supported/))
    await assert.rejects(attempt({ network: { allowOut: ['example.com'] } }), refused(400, DOMAINS_NEED_ALL_TRAFFIC))
    await assert.rejects(attempt({ network: { allowOut: ['example.com'], denyOut: ['10.0.0.0/8'] } }), refused(400, DOMAINS_NEED_ALL_TRAFFIC))
    await assert.rejects(
      attempt({ network: { egressProxy: { address: 'proxy.example.com:1080', username: 'u', password: 'p' } } }),
      refused(403, 'Egress proxy (network.egressProxy) is not enabled for this team.'),
    )
    await assert.rejects(
      attempt({ network: { allowOut: ['api.example.com'], denyOut: ['0.0.0.0/0'], rules: { 'api.example.com': [{ transform: { headers: { Authorization: 'Bearer x' } } }] } } }),
      refused(400, /^400: network\.rules\["api\.example\.com"\]: header transforms need TLS interception .*which Sandlot does not do/),
    )
    await assert.rejects(attempt({ iam: { tokens: { aws: { audience: 'sts.amazonaws.com', tokenType: 'JWT-SVID' } } } }), refused(400, /^400: iam\.tokens: workload identity tokens/))
    await assert.rejects(attempt({ network: { httpsPorts: [49983] } }), refused(400, 'network.httpsPorts: the envd port 49983 cannot be listed'))
    assert.deepEqual(await tagged(tag), [])
  })

  test('refused updates leave the settings as they were; an unknown or killed sandbox: SandboxNotFoundError', async () => {
    const s = await create({ network: { allowOut: ['1.1.1.1'], denyOut: ['0.0.0.0/0'] } })
    await assert.rejects(s.updateNetwork({ denyOut: ['example.com'] }), refused(400, /^400: invalid denied CIDR example\.com/))
    await assert.rejects(s.updateNetwork({ allowOut: ['example.com'] }), refused(400, DOMAINS_NEED_ALL_TRAFFIC))
    await assert.rejects(s.updateNetwork({ egressProxy: { address: 'proxy.example.com:1080' } }), refused(403, 'Egress proxy (egressProxy) is not enabled for this team.'))
    await assert.rejects(s.updateNetwork({ rules: { 'a.com': [{ transform: { headers: { 'x-a': 'b' } } }] } }), refused(400, /header transforms need TLS interception/))
    const info = await s.getInfo()
    assert.deepEqual(info.network?.allowOut, ['1.1.1.1/32'])
    assert.deepEqual(info.network?.denyOut, ['0.0.0.0/0'])

    await assert.rejects(Sandbox.updateNetwork(UNKNOWN, {}), SandboxNotFoundError)
    await s.kill()
    await assert.rejects(s.updateNetwork({}), SandboxNotFoundError)
  })
})
