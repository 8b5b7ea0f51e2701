// The official e2b SDK and port previews (E2B's host.test and network.test token cases): getHost()
// as returned, with https:// in front, reaches python's http.server in the sandbox; a killed
// sandbox answers E2B's 502; allowPublicTraffic false gives a trafficAccessToken that previews need.
// And the SDK set up with only E2B_API_URL and E2B_DOMAIN (no E2B_SANDBOX_URL) reaches envd over
// https://49983-<id>.<domain> with the local CA in NODE_EXTRA_CA_CERTS.
import { Sandbox } from 'e2b'
import { apiKey, apiUrl, create } from './e2b-env.js'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, test } from 'node:test'
import { Agent, fetch as undiciFetch } from 'undici'
import { home } from './helpers.js'

const caFile = path.join(home, 'tls', 'ca.crt')
/** fetch that trusts Sandlot's local CA, as a user who installed it would. */
const trusted = new Agent({ connect: { ca: fs.readFileSync(caFile) } })
const get = (url: string, headers: Record<string, string> = {}) =>
  undiciFetch(url, { headers, dispatcher: trusted }).then(async (r) => ({ status: r.status, body: await r.text() }))

/** Starts `python3 -m http.server <port>` in the sandbox and waits until it listens. */
async function httpServer(s: Sandbox, port: number): Promise<void> {
  await s.commands.run(`mkdir -p /tmp/www && echo "served from ${s.sandboxId}" > /tmp/www/index.txt`)
  await s.commands.run(`python3 -m http.server ${port} --directory /tmp/www`, { background: true })
  await s.commands.run(`for i in $(seq 100); do ss -Hltn 'sport = :${port}' | grep -q ${port} && exit 0; sleep 0.1; done; exit 1`)
}

describe('e2b SDK: port previews', { concurrency: true }, () => {
  test('getHost(8000) with https:// in front reaches the server; after kill, E2B\'s 502', async () => {
    const s = await create()
    await httpServer(s, 8000)
    const host = s.getHost(8000)
    assert.equal(host, `8000-${s.sandboxId}.sandlot.localhost:${new URL(apiUrl).port}`)
    const r = await get(`https://${host}/index.txt`)
    assert.equal(r.status, 200)
    assert.equal(r.body, `served from ${s.sandboxId}\n`)
    // http:// works on the same port too.
    assert.equal((await fetch(`http://${host}/index.txt`)).status, 200)
    await s.kill()
    const gone = await get(`https://${host}/index.txt`)
    assert.equal(gone.status, 502)
    assert.deepEqual(JSON.parse(gone.body), { sandboxId: s.sandboxId, message: 'The sandbox was not found', code: 502 })
  })

  test('allowPublicTraffic false: 403 without the token, 200 with it; public: 200 without', async () => {
    const [secured, open] = await Promise.all([create({ network: { allowPublicTraffic: false } }), create()])
    assert.match(secured.trafficAccessToken ?? '', /^[0-9a-f]{64}$/)
    assert.equal(open.trafficAccessToken, undefined)
    assert.equal((await secured.getInfo()).network?.allowPublicTraffic, false)
    await Promise.all([httpServer(secured, 8080), httpServer(open, 8080)])
    const url = `https://${secured.getHost(8080)}/index.txt`
    const without = await get(url)
    assert.equal(without.status, 403)
    assert.match(JSON.parse(without.body).message, /Token header 'e2b-traffic-access-token' is missing/)
    assert.equal((await get(url, { 'e2b-traffic-access-token': 'nope' })).status, 403)
    assert.equal((await get(url, { 'e2b-traffic-access-token': secured.trafficAccessToken! })).status, 200)
    assert.equal((await get(`https://${open.getHost(8080)}/index.txt`)).status, 200)
    // Connecting again hands out the same token.
    const again = await Sandbox.connect(secured.sandboxId)
    assert.equal(again.trafficAccessToken, secured.trafficAccessToken)
    await Promise.all([secured.kill(), open.kill()])
  })

  test('maskRequestHost: the app sees the mask as Host and the original in X-Forwarded-Host', async () => {
    const s = await create({ network: { maskRequestHost: 'localhost:${PORT}' } })
    await s.files.write(
      '/tmp/headers.py',
      `import http.server, json
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200); self.send_header('content-length', str(len(body))); self.end_headers(); self.wfile.write(body)
http.server.HTTPServer(('0.0.0.0', 8081), H).serve_forever()
`,
    )
    await s.commands.run('python3 /tmp/headers.py', { background: true })
    await s.commands.run(`for i in $(seq 100); do ss -Hltn 'sport = :8081' | grep -q 8081 && exit 0; sleep 0.1; done; exit 1`)
    const seen = JSON.parse((await get(`https://${s.getHost(8081)}/`)).body)
    assert.equal(seen.host, 'localhost:8081')
    assert.equal(seen['x-forwarded-host'], s.getHost(8081))
    assert.equal((await s.getInfo()).network?.maskRequestHost, 'localhost:${PORT}')
    await s.kill()
  })

  test('with only E2B_API_URL and E2B_DOMAIN, and the CA in NODE_EXTRA_CA_CERTS, the SDK reaches envd over https', async () => {
    // A separate process, configured as a user on this machine would be: no E2B_SANDBOX_URL, so the
    // SDK builds https://49983-<id>.<domain> for envd and https://<port>-<id>.<domain> for getHost.
    const script = `
      import { Sandbox } from 'e2b'
      const s = await Sandbox.create({ timeoutMs: 120_000 })
      try {
        const echoed = (await s.commands.run('echo hi over https')).stdout
        await s.files.write('/tmp/x.txt', 'written over https')
        const read = await s.files.read('/tmp/x.txt')
        await s.commands.run('python3 -m http.server 8000 --directory /tmp', { background: true })
        await s.commands.run("for i in $(seq 100); do ss -Hltn 'sport = :8000' | grep -q 8000 && exit 0; sleep 0.1; done; exit 1")
        const preview = await (await fetch('https://' + s.getHost(8000) + '/x.txt')).text()
        console.log(JSON.stringify({ echoed, read, preview, envd: s.envdApiUrl ?? null }))
      } finally {
        await s.kill()
      }
    `
    const env: NodeJS.ProcessEnv = { ...process.env, E2B_API_URL: apiUrl, E2B_API_KEY: apiKey(), E2B_DOMAIN: `sandlot.localhost:${new URL(apiUrl).port}`, NODE_EXTRA_CA_CERTS: caFile }
    delete env.E2B_SANDBOX_URL
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    const code = await new Promise((resolve) => child.on('exit', resolve))
    assert.equal(code, 0, err)
    const r = JSON.parse(out.trim().split('\n').pop()!)
    assert.equal(r.echoed, 'hi over https\n')
    assert.equal(r.read, 'written over https')
    assert.equal(r.preview, 'written over https')
  })
})
