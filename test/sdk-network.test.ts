// The SDK's one HTTP stack: reads retry across a real server restart (and nothing else does), every
// call honours HTTP_PROXY, and https:// works with the server's CA in NODE_EXTRA_CA_CERTS.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import http from 'node:http'
import net, { type AddressInfo } from 'node:net'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { ConnectionError, Sandbox, SandlotClient } from 'sandlot'
import { apiKey, apiUrl, home, killSandbox, spawnDaemon, waitFor, type Daemon } from './helpers.js'
import { runScript } from './sdk-env.js'

describe('SDK retries across a server restart', () => {
  const port = Number(process.env.SANDLOT_TEST_PORT ?? 3190) + 11
  const url = `http://127.0.0.1:${port}`
  const testHome = path.resolve(`.sandlot-test/sdk-retry-${port}`)
  let daemon: Daemon | undefined
  const start = async () => {
    daemon = spawnDaemon(port, { SANDLOT_HOME: testHome }, fs.openSync(path.resolve(`.sandlot-test/sdk-retry-${port}.log`), 'a'))
    await waitFor(() => fetch(`${url}/health`).then((r) => r.ok, () => false), 120_000, 'the daemon to be ready')
  }
  const conn = () => ({ apiUrl: url, apiKey: fs.readFileSync(path.join(testHome, 'api-key'), 'utf8').trim() })
  before(start)
  after(async () => {
    const left = await new SandlotClient(conn()).listSandboxes().catch(() => [])
    for (const s of left) await new SandlotClient(conn()).killSandbox(s.id).catch(() => {})
    await daemon?.stop()
  })

  test('list, reconnect, getInfo and keepAlive wait for the server to come back; create and exec never retry', async () => {
    const client = new SandlotClient({ ...conn(), retryTimeout: 30_000 })
    const info = await client.createSandbox({ keepAlive: 120_000, metadata: { suite: 'sdk-retry' } })
    const sandbox = await Sandbox.reconnect(info.id, { ...conn(), retryTimeout: 30_000 })
    try {
      await daemon!.stop('SIGTERM')

      // Not safe to repeat: refused at once while the server is down.
      for (const [what, call] of [
        ['create', () => Sandbox.create({ ...conn(), retryTimeout: 30_000 })],
        ['a process', () => sandbox.process.startAndWait('true')],
        ['exec', () => sandbox.exec(['true'])],
      ] as const) {
        const t0 = Date.now()
        await assert.rejects(call(), ConnectionError, what)
        assert.ok(Date.now() - t0 < 2_000, `${what} took ${Date.now() - t0} ms: it was retried`)
      }
      // Bounded: a short retryTimeout gives up after about that long.
      const t0 = Date.now()
      await assert.rejects(Sandbox.list({ ...conn(), retryTimeout: 1_500 }), /Cannot reach the Sandlot server.*ECONNREFUSED/)
      const took = Date.now() - t0
      assert.ok(took >= 1_000 && took < 5_000, `gave up after ${took} ms`)

      // Reads started while the server is down finish once it is back.
      const pending = Promise.all([
        Sandbox.list({ ...conn(), retryTimeout: 30_000 }),
        sandbox.getInfo(),
        sandbox.keepAlive(90_000),
        Sandbox.reconnect(info.id, { ...conn(), retryTimeout: 30_000 }),
        client.getSandbox(info.id),
      ])
      await new Promise((r) => setTimeout(r, 1_500))
      await start()
      const [list, got, , again, viaClient] = await pending
      assert.ok(list.some((s) => s.id === info.id))
      assert.equal(got.id, info.id)
      assert.equal(viaClient.id, info.id)
      assert.equal((await again.process.startAndWait('echo back')).stdout, 'back')
      await again.close()
    } finally {
      await sandbox.kill().catch(() => {})
    }
  })
})

/** A forward proxy that counts what goes through it, and alone knows the name `sandlot.proxied`. */
function countingProxy() {
  const seen: { method: string; target: string; at: number }[] = []
  const resolve = (host: string) => (host === 'sandlot.proxied' ? '127.0.0.1' : host)
  const server = http.createServer((req, res) => {
    // Plain forwarding (absolute-form request targets).
    seen.push({ method: req.method!, target: req.url!, at: Date.now() })
    const target = new URL(req.url!)
    const upstream = http.request({ host: resolve(target.hostname), port: target.port, path: target.pathname + target.search, method: req.method, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode!, up.headers)
      up.pipe(res)
    })
    upstream.on('error', () => res.destroy())
    req.pipe(upstream)
  })
  server.on('connect', (req, socket, head) => {
    seen.push({ method: 'CONNECT', target: req.url!, at: Date.now() })
    const [host, port] = req.url!.split(':')
    const upstream = net.connect(Number(port), resolve(host!), () => {
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n')
      upstream.write(head)
      upstream.pipe(socket)
      socket.pipe(upstream)
    })
    upstream.on('error', () => socket.destroy())
    socket.on('error', () => upstream.destroy())
  })
  return { server, seen }
}

describe('SDK transport', () => {
  const proxy = countingProxy()
  before(() => new Promise<void>((r) => proxy.server.listen(0, '127.0.0.1', r)))
  after(() => proxy.server.close())

  test('with HTTP_PROXY set, every call goes through the proxy: REST, envd, /files, and the lifeline worker', async () => {
    const port = new URL(apiUrl).port
    const r = await runScript(
      `import { Sandbox, SandlotClient } from 'sandlot'
       import { Readable } from 'node:stream'
       const sandbox = await Sandbox.create({ metadata: { suite: 'sdk-proxy' } })
       const out = {}
       out.id = sandbox.id
       out.echo = (await sandbox.process.startAndWait('echo via proxy')).stdout
       await sandbox.filesystem.write('a.txt', 'written')
       out.read = await sandbox.filesystem.read('a.txt')
       await sandbox.uploadFile('b.bin', Readable.from([Buffer.alloc(300000, 7)]))
       let size = 0
       for await (const c of await sandbox.downloadStream('b.bin')) size += c.length
       out.size = size
       out.listed = (await Sandbox.list()).some((s) => s.id === sandbox.id)
       const conn = await new SandlotClient().connect(sandbox.id)
       let bytes = ''
       out.exit = (await conn.exec(['cat'], { stdin: Readable.from([Buffer.from('raw')]), onStdout: (b) => (bytes += Buffer.from(b)) })).exitCode
       out.raw = bytes
       // A blocked main thread: the lifeline worker renews the hold, through the proxy too.
       out.blockedFrom = Date.now()
       Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10000)
       out.blockedTo = Date.now()
       out.holds = (await sandbox.getInfo()).holds
       await sandbox.close()
       console.log(JSON.stringify(out))`,
      { env: { HTTP_PROXY: `http://127.0.0.1:${(proxy.server.address() as AddressInfo).port}`, NO_PROXY: '', SANDLOT_API_URL: `http://sandlot.proxied:${port}`, SANDLOT_API_KEY: apiKey() } },
    )
    assert.equal(r.code, 0, r.stderr)
    const out = JSON.parse(r.stdout)
    await killSandbox(out.id).catch(() => {})
    assert.deepEqual({ echo: out.echo, read: out.read, size: out.size, listed: out.listed, exit: out.exit, raw: out.raw, holds: out.holds }, { echo: 'via proxy', read: 'written', size: 300000, listed: true, exit: 0, raw: 'raw', holds: 1 })
    // sandlot.proxied resolves nowhere but in the proxy: whatever worked went through it.
    assert.ok(proxy.seen.length > 0)
    assert.ok(proxy.seen.every((s) => s.target.includes(`sandlot.proxied:${port}`)), JSON.stringify(proxy.seen))
    assert.ok(proxy.seen.some((s) => s.at > out.blockedFrom && s.at < out.blockedTo), `nothing went through the proxy while the main thread was blocked: ${JSON.stringify(proxy.seen)}`)
  })

  test("https:// with the server's CA in NODE_EXTRA_CA_CERTS, and a clear failure without it", async () => {
    const port = new URL(apiUrl).port
    const script = `import { Sandbox } from 'sandlot'
      const sandbox = await Sandbox.create()
      try {
        await sandbox.filesystem.write('t.txt', 'over tls')
        const out = (await sandbox.process.startAndWait('cat t.txt')).stdout
        console.log(JSON.stringify({ out, read: await sandbox.filesystem.read('t.txt') }))
      } finally {
        await sandbox.kill()
      }`
    const env = { SANDLOT_API_URL: `https://localhost:${port}`, SANDLOT_API_KEY: apiKey() }
    const ok = await runScript(script, { env: { ...env, NODE_EXTRA_CA_CERTS: path.join(home, 'tls/ca.crt') } })
    assert.equal(ok.code, 0, ok.stderr)
    assert.deepEqual(JSON.parse(ok.stdout), { out: 'over tls', read: 'over tls' })
    const untrusted = await runScript(script, { env: { ...env, NODE_EXTRA_CA_CERTS: '' } })
    assert.notEqual(untrusted.code, 0)
    assert.match(untrusted.stderr, /ConnectionError: Cannot reach the Sandlot server at https:\/\/localhost:\d+ \(.*certificate/)
  })
})
