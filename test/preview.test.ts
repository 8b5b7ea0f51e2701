// Port previews (docs/e2b-compatibility.md, "Ingress"): servers listening inside a sandbox reached
// through Sandlot's port by Host <port>-<id>.<domain> and by E2b-Sandbox-Id/-Port, over http:// and
// https:// (the local CA trusted), HTTP and WebSocket, streamed both ways; the traffic token, the
// 502s, what the daemon strips, and hostile tunnel answers. Traffic stays on this machine.
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import path from 'node:path'
import { Readable } from 'node:stream'
import { after, before, describe, test } from 'node:test'
import WebSocket from 'ws'
import { api, apiKey, apiUrl, createSandbox, home, killSandbox, run, startBackground, waitFor } from './helpers.js'

const port = Number(new URL(apiUrl).port)
const ca = () => fs.readFileSync(path.join(home, 'tls', 'ca.crt'))
const appSource = fs.readFileSync(path.join(import.meta.dirname, 'fixtures', 'preview_app.py'))

interface Reply {
  status: number
  headers: http.IncomingHttpHeaders
  body: string
}

/** One request through Sandlot's port, to `host` (Host header), over http or https (CA trusted). */
function request(opts: { host: string; path?: string; method?: string; headers?: Record<string, string>; tls?: boolean; body?: Buffer }): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const lib = opts.tls ? https : http
    const req = lib.request(
      // Connects to the name itself: the default domain resolves to loopback (libnss-myhostname).
      { host: opts.host.split(':')[0], port, path: opts.path ?? '/', method: opts.method ?? 'GET', headers: { host: opts.host, ...opts.headers }, ca: opts.tls ? ca() : undefined, agent: false },
      (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (d) => (body += d))
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }))
      },
    )
    req.on('error', reject)
    req.end(opts.body)
  })
}

const hostOf = (id: string, p: number) => `${p}-${id}.sandlot.localhost:${port}`

async function writeApp(id: string): Promise<void> {
  const res = await fetch(`${apiUrl}/files?path=/tmp/preview_app.py&username=user`, {
    method: 'POST',
    headers: { 'e2b-sandbox-id': id, 'x-api-key': apiKey(), 'content-type': 'application/octet-stream' },
    body: appSource,
  })
  assert.equal(res.status, 200, await res.text())
}

/** Starts a server in the sandbox and waits until it listens (seen from inside). */
async function serve(id: string, cmd: string, listenPort: number): Promise<void> {
  await startBackground(id, `${cmd} > /tmp/serve-${listenPort}.log 2>&1`)
  await waitFor(async () => (await run(id, `ss -Hltn 'sport = :${listenPort}'`)).stdout.includes(String(listenPort)), 20_000, `a server on port ${listenPort}`)
}

describe('port previews', () => {
  let sb: { id: string }
  before(async () => {
    sb = await createSandbox({ metadata: { suite: 'preview' } })
    await writeApp(sb.id)
    await run(sb.id, 'mkdir -p /tmp/www && echo "a file in the sandbox" > /tmp/www/hello.txt')
    await serve(sb.id, 'python3 -m http.server 8000 --bind 0.0.0.0 --directory /tmp/www', 8000)
    await serve(sb.id, 'python3 /tmp/preview_app.py 127.0.0.1 8001', 8001)
  })
  after(async () => {
    if (sb) await killSandbox(sb.id)
  })

  test('python3 -m http.server on 0.0.0.0 and an app on 127.0.0.1, by Host and by headers', async () => {
    for (const p of [8000, 8001]) {
      const expected = p === 8000 ? 'a file in the sandbox\n' : 'hello from the sandbox\n'
      const reqPath = p === 8000 ? '/hello.txt' : '/'
      // By Host, with the name resolved as any client would (fetch of the URL as written).
      const byHost = await fetch(`http://${hostOf(sb.id, p)}${reqPath}`)
      assert.equal(byHost.status, 200)
      assert.equal(await byHost.text(), expected)
      // By headers, at the server's own address; no key needed (previews are public by default).
      const byHeader = await fetch(`${apiUrl}${reqPath}`, { headers: { 'e2b-sandbox-id': sb.id, 'e2b-sandbox-port': String(p) } })
      assert.equal(byHeader.status, 200)
      assert.equal(await byHeader.text(), expected)
      // And with the legacy "<id>-<clientId>" form of the host.
      const legacy = await request({ host: `${p}-${sb.id}-6532622b.sandlot.localhost:${port}`, path: reqPath })
      assert.equal(legacy.body, expected)
    }
  })

  test('https:// on the same port, with the local CA trusted', async () => {
    const r = await request({ host: hostOf(sb.id, 8000), path: '/hello.txt', tls: true })
    assert.equal(r.status, 200)
    assert.equal(r.body, 'a file in the sandbox\n')
    // The REST API and envd are served over https too.
    const health = await request({ host: `localhost:${port}`, path: '/health', tls: true })
    assert.equal(health.status, 200)
    const envd = await request({ host: hostOf(sb.id, 49983), path: '/health', tls: true, headers: { 'x-api-key': apiKey() } })
    assert.equal(envd.status, 204)
    // An untrusted client refuses the certificate (it is the local CA's, not a public one).
    await assert.rejects(fetch(`https://${hostOf(sb.id, 8000)}/`), /fetch failed/)
  })

  test('methods, keep-alive and every header but Sandlot’s credentials reach the app; the Host is kept', async () => {
    const secret = apiKey()
    const r = await request({
      host: hostOf(sb.id, 8001),
      path: '/headers',
      tls: true,
      headers: {
        'x-api-key': secret,
        'x-access-token': 'envd-token',
        'e2b-traffic-access-token': 'traffic-token',
        'x-app-header': 'kept',
        cookie: 'app=cookie',
        'x-forwarded-for': '192.0.2.9',
      },
    })
    assert.equal(r.status, 200)
    const seen = new Map((JSON.parse(r.body).headers as [string, string][]).map(([k, v]) => [k, v]))
    assert.ok(!r.body.includes(secret), 'the API key reached the sandbox')
    for (const gone of ['x-api-key', 'x-access-token', 'e2b-traffic-access-token']) assert.equal(seen.get(gone), undefined, gone)
    assert.equal(seen.get('x-app-header'), 'kept')
    assert.equal(seen.get('cookie'), 'app=cookie')
    assert.equal(seen.get('host'), hostOf(sb.id, 8001))
    assert.equal(seen.get('x-forwarded-proto'), 'https')
    assert.equal(seen.get('x-forwarded-for'), '192.0.2.9, 127.0.0.1')
    // Authorization is the app's business, unless it carries Sandlot's API key.
    const own = await request({ host: hostOf(sb.id, 8001), path: '/headers', headers: { authorization: 'Bearer app-token' } })
    assert.match(own.body, /"authorization", "Bearer app-token"/)
    for (const authorization of [`Bearer ${secret}`, `Basic ${Buffer.from(`me:${secret}`).toString('base64')}`]) {
      const leaked = await request({ host: hostOf(sb.id, 8001), path: '/headers', headers: { authorization } })
      assert.equal(leaked.status, 200)
      assert.ok(!leaked.body.includes('authorization') && !leaked.body.includes(secret), leaked.body)
    }
    // Every method; a HEAD has no body.
    for (const method of ['PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
      const m = await request({ host: hostOf(sb.id, 8000), method, path: '/hello.txt' })
      assert.equal(m.status, 501, `${method} reaches python's http.server, which does not implement it`)
    }
    const head = await request({ host: hostOf(sb.id, 8000), method: 'HEAD', path: '/hello.txt' })
    assert.equal(head.status, 200)
    assert.equal(head.headers['content-length'], '22')
    // Keep-alive: several requests on one client connection.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    const sockets = new Set<net.Socket>()
    for (let i = 0; i < 3; i++) {
      await new Promise<void>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, path: '/', agent, headers: { host: hostOf(sb.id, 8001) } }, (res) => {
            sockets.add(res.socket)
            res.resume().on('end', resolve)
          })
          .on('error', reject)
      })
    }
    agent.destroy()
    assert.equal(sockets.size, 1)
  })

  test('WebSocket echo over ws:// and wss://, by Host and by headers', async () => {
    const cases: [string, WebSocket.ClientOptions][] = [
      [`ws://${hostOf(sb.id, 8001)}/ws`, {}],
      [`wss://${hostOf(sb.id, 8001)}/ws`, { ca: ca() }],
      [`ws://127.0.0.1:${port}/ws`, { headers: { 'e2b-sandbox-id': sb.id, 'e2b-sandbox-port': '8001' } }],
    ]
    for (const [url, opts] of cases) {
      const ws = new WebSocket(url, opts)
      await new Promise((resolve, reject) => {
        ws.once('open', resolve)
        ws.once('error', reject)
      })
      const next = () => new Promise<[Buffer, boolean]>((resolve) => ws.once('message', (d, binary) => resolve([d as Buffer, binary])))
      let reply = next()
      ws.send(`hello over ${url}`)
      assert.deepEqual((await reply).map(String), [`hello over ${url}`, 'false'])
      const bytes = crypto.randomBytes(300_000)
      reply = next()
      ws.send(bytes)
      const [echoed, binary] = await reply
      assert.ok(binary)
      assert.ok(echoed.equals(bytes))
      ws.close(1000)
      await new Promise((resolve) => ws.once('close', resolve))
    }
    // Upgrades are for previews only: envd's port and the REST API refuse them with a JSON 400.
    const refused = new WebSocket(`ws://127.0.0.1:${port}/`, { headers: { 'x-api-key': apiKey() } })
    const status = await new Promise<number>((resolve) => refused.once('unexpected-response', (_req, res) => resolve(res.statusCode!)))
    assert.equal(status, 400)
  })

  test('a 50 MiB body streams both ways, and a slow reader holds the app back instead of the daemon buffering', async () => {
    const size = 50 * 1024 * 1024
    const sent = crypto.createHash('sha256')
    let left = size
    const body = new Readable({
      read() {
        if (left <= 0) return void this.push(null)
        const chunk = crypto.randomBytes(Math.min(left, 1 << 20))
        left -= chunk.length
        sent.update(chunk)
        this.push(chunk)
      },
    })
    const got = crypto.createHash('sha256')
    let received = 0
    await new Promise<void>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port, method: 'POST', path: '/echo', headers: { host: hostOf(sb.id, 8001), 'content-length': size } },
        (res) => {
          assert.equal(res.statusCode, 200)
          res.on('data', (d: Buffer) => {
            got.update(d)
            received += d.length
          })
          res.on('end', resolve)
          res.on('error', reject)
        },
      )
      req.on('error', reject)
      body.pipe(req)
    })
    assert.equal(received, size)
    assert.equal(got.digest('hex'), sent.digest('hex'))

    // Backpressure: a client that stops reading leaves the rest in the app, not in the daemon.
    const daemon = daemonPid()
    const before = rssOf(daemon)
    let grown = 0
    let paused = false
    await new Promise<void>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: `/bytes/${size}`, headers: { host: hostOf(sb.id, 8001) } }, (res) => {
          let n = 0
          res.on('data', (d: Buffer) => {
            n += d.length
            if (n >= 1 << 20 && !paused) {
              paused = true
              res.pause()
              setTimeout(() => {
                grown = rssOf(daemon) - before
                res.resume()
              }, 1500)
            }
          })
          res.on('end', () => (n === size ? resolve() : reject(new Error(`got ${n} of ${size} bytes`))))
        })
        .on('error', reject)
    })
    assert.ok(grown < 30 * 1024 * 1024, `the daemon grew by ${grown} bytes while the client paused`)
  })

  test('a server on ::1 only is reached too (when the sandbox has IPv6)', async (t) => {
    const v6 = await run(sb.id, 'test -e /proc/net/if_inet6 && grep -q "^0\\{31\\}1 " /proc/net/if_inet6 && echo yes')
    if (!v6.stdout.includes('yes')) return t.skip('no ::1 in this sandbox')
    await serve(sb.id, 'python3 /tmp/preview_app.py ::1 8002', 8002)
    const r = await request({ host: hostOf(sb.id, 8002) })
    assert.equal(r.body, 'hello from the sandbox\n')
  })

  test('a closed port: 502 JSON after the retries; a server that comes up meanwhile is reached', async () => {
    const started = Date.now()
    const r = await request({ host: hostOf(sb.id, 8009) })
    const took = Date.now() - started
    assert.equal(r.status, 502)
    assert.deepEqual(JSON.parse(r.body), { sandboxId: sb.id, message: 'The sandbox is running but port is not open', port: 8009, code: 502 })
    assert.ok(took >= 1000, `answered after ${took} ms: the dial is retried with 100–400 ms pauses`)
    // The same over a WebSocket handshake.
    const ws = new WebSocket(`ws://${hostOf(sb.id, 8009)}/`)
    const status = await new Promise<number>((resolve) => ws.once('unexpected-response', (_req, res) => resolve(res.statusCode!)))
    assert.equal(status, 502)
    // A port that opens while the request waits is reached (a dev server a moment late).
    await startBackground(sb.id, 'sleep 0.2; exec python3 -m http.server 8010 --directory /tmp/www > /dev/null 2>&1')
    const late = await request({ host: hostOf(sb.id, 8010), path: '/hello.txt' })
    assert.equal(late.status, 200, late.body)
  })

  test('the Sandlot SDK\'s getHostname and the CLI\'s url name the same preview', async () => {
    const script = `
      import { Sandbox } from 'sandlot'
      const s = await Sandbox.reconnect(${JSON.stringify(sb.id)})
      const host = s.getHostname(8000)
      let bad = ''
      try { s.getHostname(70000) } catch (err) { bad = err.name }
      const body = await (await fetch('http://' + host + '/hello.txt')).text()
      await s.close()
      console.log(JSON.stringify({ host, body, bad, token: s.trafficAccessToken ?? null }))
    `
    const sdk = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })
    assert.equal(sdk.status, 0, sdk.stderr)
    assert.deepEqual(JSON.parse(sdk.stdout), { host: hostOf(sb.id, 8000), body: 'a file in the sandbox\n', bad: 'InvalidArgumentError', token: null })
    const cli = spawnSync(process.execPath, ['packages/cli/dist/main.js', 'url', sb.id, '8000'], { encoding: 'utf8' })
    assert.equal(cli.status, 0, cli.stderr)
    assert.equal(cli.stdout, `http://${hostOf(sb.id, 8000)}\n`)
    assert.equal(spawnSync(process.execPath, ['packages/cli/dist/main.js', 'url', sb.id, '0']).status, 2)
  })

  test('bad ports and unknown sandboxes', async () => {
    const bad = await fetch(`${apiUrl}/`, { headers: { 'e2b-sandbox-id': sb.id, 'e2b-sandbox-port': 'eighty' } })
    assert.equal(bad.status, 400)
    assert.match(((await bad.json()) as { message: string }).message, /E2b-Sandbox-Port/)
    assert.equal((await request({ host: `99999-${sb.id}.sandlot.localhost:${port}` })).status, 400)
    const unknown = await request({ host: hostOf('inosuchsandbox0000000', 8000) })
    assert.equal(unknown.status, 502)
    assert.deepEqual(JSON.parse(unknown.body), { sandboxId: 'inosuchsandbox0000000', message: 'The sandbox was not found', code: 502 })
  })
})

describe('private previews and masked hosts', () => {
  test('allowPublicTraffic false: 403 without or with a wrong token, 200 with it; maskRequestHost', async () => {
    const created = await api('POST', '/api/v1/sandboxes', { network: { allowPublicTraffic: false, maskRequestHost: 'app.internal:${PORT}' }, keepAliveMs: 600_000 })
    assert.equal(created.status, 201, JSON.stringify(created.json))
    const sb = created.json as { id: string; trafficAccessToken: string; network: unknown; domain: string }
    try {
      assert.match(sb.trafficAccessToken, /^[0-9a-f]{64}$/)
      assert.deepEqual(sb.network, { allowInternetAccess: null, allowOut: [], denyOut: [], allowPublicTraffic: false, maskRequestHost: 'app.internal:${PORT}' })
      assert.equal(sb.domain, `sandlot.localhost:${port}`)
      await writeApp(sb.id)
      await serve(sb.id, 'python3 /tmp/preview_app.py 0.0.0.0 8001', 8001)
      const host = hostOf(sb.id, 8001)
      const missing = await request({ host, headers: { 'x-api-key': apiKey() } })
      assert.equal(missing.status, 403)
      assert.deepEqual(JSON.parse(missing.body), {
        sandboxId: sb.id,
        message: "Sandbox is secured with traffic access token. Token header 'e2b-traffic-access-token' is missing",
        code: 403,
      })
      const wrong = await request({ host, headers: { 'e2b-traffic-access-token': 'f'.repeat(64) } })
      assert.equal(wrong.status, 403)
      assert.deepEqual(JSON.parse(wrong.body), {
        sandboxId: sb.id,
        message: "Sandbox is secured with traffic access token. Provided token in header 'e2b-traffic-access-token' is invalid",
        code: 403,
      })
      const right = await request({ host, path: '/headers', headers: { 'E2B-Traffic-Access-Token': sb.trafficAccessToken } })
      assert.equal(right.status, 200)
      const seen = new Map((JSON.parse(right.body).headers as [string, string][]).map(([k, v]) => [k, v]))
      assert.equal(seen.get('host'), 'app.internal:8001')
      assert.equal(seen.get('x-forwarded-host'), host)
      assert.equal(seen.get('e2b-traffic-access-token'), undefined)
      // WebSocket handshakes are gated the same way.
      const ws = new WebSocket(`ws://${host}/ws`)
      assert.equal(await new Promise<number>((resolve) => ws.once('unexpected-response', (_req, res) => resolve(res.statusCode!))), 403)
      const ok = new WebSocket(`ws://${host}/ws`, { headers: { 'e2b-traffic-access-token': sb.trafficAccessToken } })
      await new Promise((resolve, reject) => ok.once('open', resolve).once('error', reject))
      ok.close()
      // envd's port is exempt: it has its own token.
      assert.equal((await request({ host: hostOf(sb.id, 49983), path: '/health', headers: { 'x-api-key': apiKey() } })).status, 204)
    } finally {
      await killSandbox(sb.id)
    }
    // The sandbox is gone: E2B's 502, token or not.
    const gone = await request({ host: hostOf(sb.id, 8001), headers: { 'e2b-traffic-access-token': sb.trafficAccessToken } })
    assert.equal(gone.status, 502)
    assert.deepEqual(JSON.parse(gone.body), { sandboxId: sb.id, message: 'The sandbox was not found', code: 502 })
  })

  test('bad network settings are a 400 that says what is wrong', async () => {
    for (const network of [{ allowPublicTraffic: 'no' }, { maskRequestHost: 'a b' }, { maskRequestHost: 'host:port:1' }, 'public']) {
      const r = await api('POST', '/api/v1/sandboxes', { network })
      assert.equal(r.status, 400, JSON.stringify(network))
      // Sandlot's own wording names the field; for a mask, E2B's text ("mask request host is not valid").
      assert.match(r.json.message, /network|mask request host/)
    }
  })
})

/**
 * Stands in for a sandbox's agent on the daemon's side of its socket (as root in the sandbox might
 * after taking the agent's place). `tunnel` answers the tunnel request; when it is a 101, `app` (if
 * given) answers the request forwarded through the tunnel. Records what arrived.
 */
async function fakeAgent(socket: string, tunnel: string | undefined, app?: string): Promise<{ seen: string[]; close: () => Promise<void> }> {
  fs.rmSync(socket, { force: true })
  const seen: string[] = []
  const conns = new Set<net.Socket>()
  const server = net.createServer((c) => {
    conns.add(c)
    c.on('error', () => {})
    let raw = ''
    let stage: 'tunnel' | 'app' = 'tunnel'
    c.on('data', (d) => {
      raw += d.toString('latin1')
      if (!raw.includes('\r\n\r\n')) return
      seen.push(raw)
      raw = ''
      if (stage === 'app') return void c.end(app, 'latin1')
      if (tunnel === undefined) return // silent
      if (tunnel.startsWith('HTTP/1.1 101') && app !== undefined) {
        stage = 'app'
        c.write(tunnel, 'latin1')
      } else c.end(tunnel, 'latin1')
    })
  })
  await new Promise<void>((resolve) => server.listen(socket, resolve))
  return {
    seen,
    close: () =>
      new Promise((resolve) => {
        for (const c of conns) c.destroy()
        server.close(() => resolve())
      }),
  }
}

describe('hostile tunnel answers', () => {
  const OK_101 = 'HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: sandlot-tunnel\r\n\r\n'
  const cases: [string, string | undefined, string | undefined, number][] = [
    ['no status line at all', 'garbage\r\n\r\n', undefined, 502],
    ['a connection closed at once', '', undefined, 502],
    ['an upgrade to another protocol', 'HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: evil\r\n\r\n', undefined, 502],
    ['a tunnel answer past 16 KiB of headers', `HTTP/1.1 101 Switching Protocols\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`, undefined, 502],
    ['a refusal with a 1 MiB body (a closed port, retried)', `HTTP/1.1 502 Bad Gateway\r\ncontent-length: 1048576\r\n\r\n${'x'.repeat(1 << 20)}`, undefined, 502],
    ['a 401', 'HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\n\r\n{}', undefined, 502],
    ['garbage after the 101', OK_101, 'garbage\r\n\r\n', 502],
    ['a control character in the app\'s header', OK_101, 'HTTP/1.1 200 OK\r\nx-bad: a\x01b\r\ncontent-length: 0\r\n\r\n', 502],
    ['status 999 from the app', OK_101, 'HTTP/1.1 999 Nope\r\ncontent-length: 0\r\n\r\n', 502],
    ['an unasked-for 101 from the app', OK_101, 'HTTP/1.1 101 Switching Protocols\r\nupgrade: evil\r\nconnection: upgrade\r\n\r\n', 502],
    ['a valid answer', OK_101, 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok', 200],
  ]

  test('each is an answer for its request alone; the daemon stays up; nothing of the client’s credentials goes in', async () => {
    const sb = await createSandbox({ metadata: { suite: 'preview-hostile' } })
    const agentSocket = path.join(home, 'sandboxes', sb.id, 'agent.sock')
    const token = (await api('GET', `/api/v1/sandboxes/${sb.id}`)).json.envdAccessToken as string
    try {
      for (const [what, tunnel, app, expected] of cases) {
        const agent = await fakeAgent(agentSocket, tunnel, app)
        try {
          const r = await request({ host: hostOf(sb.id, 8000), headers: { 'x-api-key': apiKey(), authorization: `Bearer ${apiKey()}` } })
          assert.equal(r.status, expected, `${what}: ${r.status} ${r.body}`)
          if (expected !== 200) assert.equal(JSON.parse(r.body).code, expected, what)
          assert.ok(!r.body.includes('\x01'))
          // The tunnel request carries the sandbox's token and nothing of the client's; what goes
          // through the tunnel carries no Sandlot credential either.
          assert.match(agent.seen[0]!, /^GET \/sandlot\/tunnel\?port=8000 HTTP\/1.1\r\n/)
          assert.ok(agent.seen[0]!.includes(`x-access-token: ${token}`))
          for (const raw of agent.seen) assert.ok(!raw.includes(apiKey()), `${what}: the API key reached the agent:\n${raw}`)
          if (app !== undefined) assert.match(agent.seen[1] ?? '', /^GET \/ HTTP\/1.1\r\n/, what)
          assert.equal((await fetch(`${apiUrl}/health`)).status, 200, `the daemon went down on ${what}`)
        } finally {
          await agent.close()
        }
      }
      // WebSocket handshakes meet the same answers as a raw JSON reply.
      const agent = await fakeAgent(agentSocket, 'garbage\r\n\r\n')
      const ws = new WebSocket(`ws://${hostOf(sb.id, 8000)}/`)
      assert.equal(await new Promise<number>((resolve) => ws.once('unexpected-response', (_req, res) => resolve(res.statusCode!))), 502)
      await agent.close()
      // An agent that never answers: 504 once the dial's time is up, and the daemon is still up.
      const silent = await fakeAgent(agentSocket, undefined)
      const r = await request({ host: hostOf(sb.id, 8000) })
      assert.equal(r.status, 504, r.body)
      await silent.close()
      assert.equal((await fetch(`${apiUrl}/health`)).status, 200)
    } finally {
      await killSandbox(sb.id)
    }
  })
})

/** The daemon's pid: the process listening on the test server's port. */
function daemonPid(): number {
  const out = execFileSync('ss', ['-Hltnp', `sport = :${port}`], { encoding: 'utf8' })
  return Number(/pid=(\d+)/.exec(out)![1])
}

const rssOf = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024
