// Issue 17, auth: every route (Sandlot's from the server's OpenAPI document, E2B's from the e2b SDK's,
// envd's REST and RPCs, port previews) refuses a request without credentials, with wrong ones and
// with another sandbox's token; signed /files URLs expire and a tampered one fails; the API key is
// stored hashed (the raw key is nowhere in SANDLOT_HOME but the api-key file); the traffic token
// guards a private sandbox's ports. Each table is printed (docs/security.md has them).
import { filesSignature } from '@sandlot/envd-proto/signature'
import Database from 'better-sqlite3'
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { api, apiKey, apiUrl, home, killSandbox, startBackground, waitFor } from '../helpers.js'
import { E2B_EXTRA_ROUTES, ENVD_REST, ENVD_RPCS, e2bSdkRoutes, sandlotRoutes, type Route } from './routes.js'

interface Sb {
  id: string
  token: string
  traffic: string
}

let a: Sb // the sandbox every request names
let b: Sb // the other sandbox, whose tokens are tried on a
const WRONG_KEY = `e2b_${'0'.repeat(40)}`
const port = new URL(apiUrl).port

async function privateSandbox(): Promise<Sb> {
  const made = await api('POST', '/api/v1/sandboxes', { network: { allowPublicTraffic: false }, keepAliveMs: 600_000, metadata: { suite: 'auth' } })
  assert.equal(made.status, 201, JSON.stringify(made.json))
  const token = (await api('GET', `/sandboxes/${made.json.id}`)).json.envdAccessToken as string
  assert.match(token, /^[0-9a-f]{64}$/)
  assert.match(made.json.trafficAccessToken, /^[0-9a-f]{64}$/)
  return { id: made.json.id, token, traffic: made.json.trafficAccessToken }
}

before(async () => {
  ;[a, b] = await Promise.all([privateSandbox(), privateSandbox()])
})
after(async () => {
  for (const s of [a, b]) if (s) await killSandbox(s.id)
})

/** One request through node:http (fetch drops a Host header, which routes previews and envd). */
const call = (method: string, route: string, headers: Record<string, string>, body?: string) =>
  new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: route, headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers } }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (text += d))
      res.on('end', () => resolve({ status: res.statusCode!, text }))
    })
    req.on('error', reject)
    req.end(body)
  })

/** Prints a table of route group × credentials → statuses seen, for docs/security.md. */
function table(title: string, rows: Map<string, Map<string, Set<number>>>) {
  const columns = [...new Set([...rows.values()].flatMap((r) => [...r.keys()]))]
  console.log(`\n${title}\n| routes | ${columns.join(' | ')} |\n|---|${columns.map(() => '---').join('|')}|`)
  for (const [group, cells] of rows) console.log(`| ${group} | ${columns.map((c) => [...(cells.get(c) ?? [])].sort().join(', ') || '—').join(' | ')} |`)
}
const note = (rows: Map<string, Map<string, Set<number>>>, group: string, column: string, status: number) => {
  const cells = rows.get(group) ?? new Map<string, Set<number>>()
  rows.set(group, cells)
  cells.set(column, (cells.get(column) ?? new Set()).add(status))
}

describe('the control plane', () => {
  test('every route answers 401 without a key, with a wrong one and with a sandbox token (its own or another\'s)', async () => {
    const { routes: ours } = await sandlotRoutes()
    // E2B's envd REST (/envs, /files, …) is the data plane's, tested below; /health is public.
    const routes: (Route & { group: string })[] = [
      ...ours.filter((r) => !r.open).map((r) => ({ ...r, group: `Sandlot ${r.path.split('/').slice(0, 4).join('/')}` })),
      ...[...e2bSdkRoutes(), ...E2B_EXTRA_ROUTES].filter((r) => !['/health', '/envs', '/metrics', '/files', '/files/compose'].includes(r.path)).map((r) => ({ ...r, group: `E2B /${r.path.split('/').filter((p) => p && !/^v\d$/.test(p))[0]}` })),
    ]
    assert.ok(routes.length >= 70, `${routes.length} routes`)
    const fill = (p: string) =>
      p.replace(/\{([^}]+)\}/g, (_, name: string) => (/^(id|sandboxID)$/.test(name) ? a.id : /hash/.test(name) ? 'a'.repeat(64) : /template|name|alias/i.test(name) ? 'base' : 'x1'))
    const credentials: [string, Record<string, string>][] = [
      ['no key', {}],
      ['wrong key', { 'x-api-key': WRONG_KEY }],
      ['wrong bearer', { authorization: `Bearer ${WRONG_KEY}` }],
      ["other sandbox's token", { 'x-access-token': b.token }],
      ["other sandbox's token as the key", { 'x-api-key': b.token, authorization: `Bearer ${b.token}` }],
      ["the sandbox's own token", { 'x-access-token': a.token }],
    ]
    const rows = new Map<string, Map<string, Set<number>>>()
    const wrong: string[] = []
    for (const route of routes) {
      for (const [what, headers] of credentials) {
        const r = await call(route.method, fill(route.path), headers, ['GET', 'DELETE'].includes(route.method) ? undefined : '{}')
        note(rows, route.group, what, r.status)
        if (r.status !== 401 || JSON.parse(r.text).code !== 401) wrong.push(`${route.method} ${route.path} with ${what}: ${r.status} ${r.text.slice(0, 200)}`)
      }
    }
    table(`control plane (${routes.length} routes)`, rows)
    assert.deepEqual(wrong, [])
    // Nothing was done meanwhile: both sandboxes run.
    for (const s of [a, b]) assert.equal((await api('GET', `/api/v1/sandboxes/${s.id}`)).status, 200)
  })

  test("E2B's upload links need their signature: without, tampered or expired, 403 (E2B's answer)", async () => {
    const made = await api('POST', '/v3/templates', { name: `auth-${process.pid}` })
    assert.equal(made.status, 202)
    try {
      const hash = crypto.createHash('sha256').update('auth').digest('hex')
      const link = new URL((await api('GET', `/templates/${made.json.templateID}/files/${hash}`)).json.url)
      const tampered = new URL(link)
      tampered.searchParams.set('signature', link.searchParams.get('signature')!.replace(/^./, (c) => (c === '0' ? '1' : '0')))
      const expired = new URL(link)
      expired.searchParams.set('expires', String(Date.now() - 1))
      const unsigned = new URL(link)
      unsigned.searchParams.delete('signature')
      const otherHash = new URL(link.href.replace(hash, 'b'.repeat(64)))
      for (const [what, url] of [['tampered', tampered], ['expired', expired], ['unsigned', unsigned], ['for another hash', otherHash]] as const) {
        const r = await fetch(`${apiUrl}${url.pathname}${url.search}`, { method: 'PUT', body: Buffer.from([0x1f, 0x8b, 0]), headers: { 'x-api-key': apiKey() } })
        assert.equal(r.status, 403, what)
      }
    } finally {
      await api('DELETE', `/templates/${made.json.templateID}`)
    }
  })
})

describe('the data plane (envd)', () => {
  test("every envd route and RPC answers 401 without credentials, with wrong ones and with another sandbox's token", async () => {
    const routes = [...ENVD_REST, ...ENVD_RPCS.map((m) => ({ method: 'POST', path: `/${m.service}/${m.name}` }))]
    const credentials: [string, Record<string, string>][] = [
      ['nothing', {}],
      ['wrong token', { 'x-access-token': 'f'.repeat(64) }],
      ['wrong key', { 'x-api-key': WRONG_KEY }],
      ["other sandbox's token", { 'x-access-token': b.token }],
      ["other sandbox's token as the key", { 'x-api-key': b.token }],
      ["other sandbox's traffic token", { 'e2b-traffic-access-token': b.traffic }],
    ]
    const routings: [string, Record<string, string>][] = [
      ['E2b-Sandbox-Id', { 'e2b-sandbox-id': a.id }],
      ['Host', { host: `49983-${a.id}.sandlot.localhost:${port}` }],
    ]
    const rows = new Map<string, Map<string, Set<number>>>()
    const wrong: string[] = []
    for (const route of routes) {
      const group = route.path.startsWith('/filesystem.') ? 'envd filesystem RPCs' : route.path.startsWith('/process.') ? 'envd process RPCs' : `envd ${route.path.split('?')[0]}`
      for (const [how, routing] of routings) {
        for (const [what, headers] of credentials) {
          const r = await call(route.method, route.path, { ...routing, ...headers, 'connect-protocol-version': '1' }, route.method === 'POST' ? '{}' : undefined)
          note(rows, group, what, r.status)
          if (r.status !== 401) wrong.push(`${route.method} ${route.path} by ${how} with ${what}: ${r.status} ${r.text.slice(0, 200)}`)
        }
      }
    }
    table(`data plane (${routes.length} routes, by E2b-Sandbox-Id and by Host)`, rows)
    assert.deepEqual(wrong, [])
    // With its own token the same routes are served.
    assert.equal((await call('GET', '/envs', { 'e2b-sandbox-id': a.id, 'x-access-token': a.token })).status, 200)
    assert.equal((await call('POST', '/filesystem.Filesystem/Stat', { 'e2b-sandbox-id': a.id, 'x-access-token': a.token }, '{"path":"/tmp"}')).status, 200)
  })

  test('signed /files URLs: bound to sandbox, path, operation and user; expired and tampered ones fail', async () => {
    const file = '/tmp/signed.txt'
    const up = await fetch(`${apiUrl}/files?path=${file}&username=user`, { method: 'POST', headers: { 'e2b-sandbox-id': a.id, 'x-access-token': a.token, 'content-type': 'application/octet-stream' }, body: 'signed' })
    assert.equal(up.status, 200, await up.text())
    const url = (o: { path?: string; op?: 'read' | 'write'; user?: string; token?: string; exp?: string; sig?: string } = {}) => {
      const p = o.path ?? file
      const exp = o.exp ?? String(Math.floor(Date.now() / 1000) + 60)
      const sig = o.sig ?? filesSignature(p, o.op ?? 'read', o.user ?? 'user', o.token ?? a.token, exp)
      return `${apiUrl}/files?path=${encodeURIComponent(p)}&username=${o.user ?? 'user'}&signature=${encodeURIComponent(sig)}&signature_expiration=${exp}`
    }
    // Without routing headers (the e2b SDK's downloadUrl): the signature picks the sandbox.
    const ok = await fetch(url())
    assert.equal(ok.status, 200)
    assert.equal(await ok.text(), 'signed')
    const expired = String(Math.floor(Date.now() / 1000) - 1)
    const good = new URL(url())
    const tampered = url({ sig: good.searchParams.get('signature')!.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A')) })
    const cases: [string, string, RequestInit?][] = [
      ['expired', url({ exp: expired })],
      ['tampered', tampered],
      ['its expiry moved later', url().replace(/signature_expiration=\d+/, `signature_expiration=${Math.floor(Date.now() / 1000) + 3600}`)],
      ['another path', url().replace(encodeURIComponent(file), encodeURIComponent('/etc/shadow'))],
      ['another user', url().replace('username=user', 'username=root')],
      ['a read signature used to write', url(), { method: 'POST', body: 'x', headers: { 'content-type': 'application/octet-stream' } }],
    ]
    // Signed with b's token it is b's URL (it goes to b without headers): named for a, it fails.
    assert.equal((await fetch(url({ token: b.token }), { headers: { 'e2b-sandbox-id': a.id } })).status, 401)
    for (const [what, u, init] of cases) {
      // As it comes, and with a's routing header (so the agent itself checks it).
      for (const headers of [{}, { 'e2b-sandbox-id': a.id }]) {
        const r = await fetch(u, { ...init, headers: { ...(init?.headers as object), ...headers } })
        assert.equal(r.status, 401, `${what} ${JSON.stringify(headers)}: ${r.status} ${await r.text()}`)
      }
    }
    // The expiry message the e2b SDK shows.
    assert.match(await (await fetch(url({ exp: expired }), { headers: { 'e2b-sandbox-id': a.id } })).text(), /signature is already expired/)
  })
})

describe('port previews', () => {
  test('a private sandbox\'s ports need its traffic token: not the API key, not its envd token, not another\'s', async () => {
    await startBackground(a.id, 'cd /tmp && exec python3 -m http.server 8000')
    const preview = (headers: Record<string, string>, by: 'header' | 'host') =>
      call('GET', '/', by === 'header' ? { 'e2b-sandbox-id': a.id, 'e2b-sandbox-port': '8000', ...headers } : { host: `8000-${a.id}.sandlot.localhost:${port}`, ...headers })
    await waitFor(async () => (await preview({ 'e2b-traffic-access-token': a.traffic }, 'header')).status === 200, 20_000, 'the app in the sandbox')
    const credentials: [string, Record<string, string>, number][] = [
      ['nothing', {}, 403],
      ['a wrong traffic token', { 'e2b-traffic-access-token': 'f'.repeat(64) }, 403],
      ["another sandbox's traffic token", { 'e2b-traffic-access-token': b.traffic }, 403],
      ['the API key', { 'x-api-key': apiKey(), authorization: `Bearer ${apiKey()}` }, 403],
      ["the sandbox's envd token", { 'x-access-token': a.token, 'e2b-traffic-access-token': a.token }, 403],
      ['its traffic token', { 'e2b-traffic-access-token': a.traffic }, 200],
    ]
    const rows = new Map<string, Map<string, Set<number>>>()
    for (const by of ['header', 'host'] as const) {
      for (const [what, headers, expected] of credentials) {
        const r = await preview(headers, by)
        note(rows, `preview of a private sandbox (by ${by})`, what, r.status)
        assert.equal(r.status, expected, `${what} by ${by}: ${r.text.slice(0, 200)}`)
      }
    }
    // A WebSocket handshake is gated the same way.
    const upgrade = (headers: Record<string, string>) =>
      new Promise<number>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, path: '/', headers: { host: `8000-${a.id}.sandlot.localhost:${port}`, connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': crypto.randomBytes(16).toString('base64'), ...headers } })
        req.on('response', (res) => (res.resume(), resolve(res.statusCode!)))
        req.on('upgrade', (res, socket) => (socket.destroy(), resolve(res.statusCode!)))
        req.on('error', reject)
        req.end()
      })
    for (const [what, headers] of credentials.slice(0, 5)) {
      const status = await upgrade(headers)
      note(rows, 'WebSocket handshake to a private sandbox', what, status)
      assert.equal(status, 403, what)
    }
    table('port previews', rows)
  })
})

describe('API keys at rest', () => {
  test('the raw key is nowhere in SANDLOT_HOME but the api-key file; the store holds its SHA-256', async () => {
    const key = apiKey()
    const needles = [Buffer.from(key), Buffer.from(key.slice(4))]
    const found: string[] = []
    let files = 0
    // Not into mounts (a sandbox's rootfs, its template, its own disk: never the daemon's writing);
    // what vanishes meanwhile (a sandbox ending) is skipped.
    const mounts = new Set(fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => (l.split(' ')[1] ?? '').replace(/\\040/g, ' ')))
    const walk = (dir: string) => {
      for (const name of (() => { try { return fs.readdirSync(dir) } catch { return [] } })()) {
        const p = path.join(dir, name)
        if (mounts.has(p)) continue
        try {
          const st = fs.lstatSync(p)
          if (st.isDirectory()) walk(p)
          else if (st.isFile() && p !== path.join(home, 'api-key') && st.size < 64 * 1024 * 1024) {
            files++
            if (needles.some((n) => fs.readFileSync(p).includes(n))) found.push(p)
          }
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
        }
      }
    }
    walk(home)
    // The server's log beside its home (the harness's) too.
    for (const log of [`${home}-server.log`]) if (fs.existsSync(log) && needles.some((n) => fs.readFileSync(log).includes(n))) found.push(log)
    assert.ok(files > 5, `${files} files read`)
    assert.deepEqual(found, [], 'the raw API key was found there')
    const db = new Database(path.join(home, 'sandlot.db'), { readonly: true, fileMustExist: true })
    try {
      const hashes = (db.prepare('SELECT hash FROM api_keys').all() as { hash: string }[]).map((r) => r.hash)
      assert.ok(hashes.includes(crypto.createHash('sha256').update(key).digest('hex')), JSON.stringify(hashes))
    } finally {
      db.close()
    }
    const mode = fs.statSync(path.join(home, 'api-key')).mode & 0o777
    assert.equal(mode, 0o600)
  })
})
