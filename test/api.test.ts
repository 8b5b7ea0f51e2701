// Bad input gets a clear JSON error and the server keeps serving.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { api, apiKey, apiUrl, createSandbox, home, killSandbox, run } from './helpers.js'

describe('the API', () => {
  test('unknown sandbox id → 404 with a JSON error', async () => {
    for (const method of ['GET', 'DELETE']) {
      const r = await api(method, '/api/v1/sandboxes/inosuchsandbox000000')
      assert.equal(r.status, 404)
      assert.equal(r.json.code, 404)
      assert.match(r.json.message, /inosuchsandbox000000/)
    }
  })

  test('unknown template → 400 naming it', async () => {
    const r = await api('POST', '/api/v1/sandboxes', { template: 'no-such-template' })
    assert.equal(r.status, 400)
    assert.equal(r.json.code, 400)
    assert.match(r.json.message, /"no-such-template"/)
  })

  test('missing or wrong key → 401', async () => {
    const missing = await fetch(`${apiUrl}/api/v1/sandboxes`)
    assert.equal(missing.status, 401)
    assert.equal(((await missing.json()) as { code: number }).code, 401)
    const wrong = await api('GET', '/api/v1/sandboxes', undefined, { 'x-api-key': `e2b_${'0'.repeat(40)}` })
    assert.equal(wrong.status, 401)
    const wrongData = await fetch(`${apiUrl}/process.Process/List`, {
      method: 'POST',
      headers: { 'e2b-sandbox-id': 'ianything', 'x-api-key': 'wrong', 'content-type': 'application/json' },
      body: '{}',
    })
    assert.ok([401, 502].includes(wrongData.status))
  })

  test("a sandbox's access token opens that sandbox only", async () => {
    const [a, b] = await Promise.all([api('POST', '/api/v1/sandboxes', {}), api('POST', '/api/v1/sandboxes', {})]).then((r) => r.map((x) => x.json))
    try {
      const hostname = (id: string, token: string) =>
        fetch(`${apiUrl}/files?path=/etc/hostname`, { headers: { 'e2b-sandbox-id': id, 'x-access-token': token } })
      const own = await hostname(a.id, a.envdAccessToken)
      assert.equal(own.status, 200)
      assert.equal((await own.text()).trim(), a.id)
      assert.equal((await hostname(b.id, a.envdAccessToken)).status, 401, "A's token does not open B")
      const rpc = await fetch(`${apiUrl}/process.Process/List`, {
        method: 'POST',
        headers: { 'e2b-sandbox-id': b.id, 'x-access-token': a.envdAccessToken, 'content-type': 'application/json' },
        body: '{}',
      })
      assert.equal(rpc.status, 401)
    } finally {
      await Promise.all([killSandbox(a.id), killSandbox(b.id)])
    }
  })

  test('malformed JSON and invalid fields → 400', async () => {
    const bad = await api('POST', '/api/v1/sandboxes', '{"template": ', {})
    assert.equal(bad.status, 400)
    assert.equal(bad.json.code, 400)
    const wrongType = await api('POST', '/api/v1/sandboxes', { metadata: { n: 1 } })
    assert.equal(wrongType.status, 400)
    const tooBig = await api('POST', '/api/v1/sandboxes', { memoryMB: 10 ** 9 })
    assert.equal(tooBig.status, 400)
    assert.match(tooBig.json.message, /memoryMB/)
  })

  test("the server's state is readable by root alone", () => {
    const mode = (f: string) => (fs.statSync(path.join(home, f)).mode & 0o777).toString(8)
    assert.deepEqual([mode('.'), mode('api-key'), mode('sandlot.db'), mode('sandboxes')], ['711', '600', '600', '711'])
    for (const f of ['sandlot.db-wal', 'sandlot.db-shm']) if (fs.existsSync(path.join(home, f))) assert.equal(mode(f), '600')
  })

  test('an idle pooled connection outlives the clients\' own idle timeout (5 s), so they close first', async () => {
    // A server that closed at 5 s raced Node's pooled clients and reset requests sent on the way.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    const get = () =>
      new Promise<{ status?: number; reused: boolean }>((resolve, reject) => {
        const req = http.get(`${apiUrl}/health`, { agent }, (res) => {
          res.resume()
          res.on('end', () => resolve({ status: res.statusCode, reused: req.reusedSocket }))
        })
        req.on('error', reject)
      })
    try {
      assert.deepEqual(await get(), { status: 200, reused: false })
      await new Promise((r) => setTimeout(r, 6_000))
      assert.deepEqual(await get(), { status: 200, reused: true })
    } finally {
      agent.destroy()
    }
  })

  test('unknown routes → 404 JSON naming the route', async () => {
    const r = await api('POST', '/v9/whatever')
    assert.equal(r.status, 404)
    assert.match(r.json.message, /\/v9\/whatever/)
  })

  test('data plane for an unknown sandbox → 502 JSON (to a client with credentials; 401 without)', async () => {
    const res = await fetch(`${apiUrl}/health`, { headers: { 'e2b-sandbox-id': 'inosuchsandbox000000', 'x-api-key': apiKey() } })
    assert.equal(res.status, 502)
    assert.deepEqual(await res.json(), { sandboxId: 'inosuchsandbox000000', message: 'The sandbox was not found', code: 502 })
    const anonymous = await fetch(`${apiUrl}/health`, { headers: { 'e2b-sandbox-id': 'inosuchsandbox000000' } })
    assert.equal(anonymous.status, 401)
  })

  test('creates in parallel without stepping on each other', async () => {
    const made = await Promise.all(Array.from({ length: 6 }, (_, i) => createSandbox({ metadata: { suite: 'parallel', i: String(i) } })))
    try {
      assert.equal(new Set(made.map((s) => s.id)).size, 6)
      const names = await Promise.all(made.map((s) => run(s.id, 'hostname')))
      assert.deepEqual(names.map((r) => r.stdout.trim()), made.map((s) => s.id))
    } finally {
      await Promise.all(made.map((s) => killSandbox(s.id)))
    }
  })

  test('data plane for another port of a sandbox where nothing listens → E2B\'s 502 JSON', async () => {
    const s = await createSandbox()
    try {
      const res = await fetch(`${apiUrl}/`, { headers: { 'e2b-sandbox-id': s.id, 'e2b-sandbox-port': '8080', 'x-api-key': apiKey() } })
      assert.equal(res.status, 502)
      assert.deepEqual(await res.json(), { sandboxId: s.id, message: 'The sandbox is running but port is not open', port: 8080, code: 502 })
    } finally {
      await killSandbox(s.id)
    }
  })

  test('data plane by Host <port>-<id>.<domain>, with the sandbox token', async () => {
    const s = (await api('POST', '/api/v1/sandboxes', {})).json
    const get = (host: string, token: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = http.get(`${apiUrl}/files?path=/etc/hostname`, { headers: { host, 'x-access-token': token } }, (res) => {
          let body = ''
          res.on('data', (c) => (body += c))
          res.on('end', () => resolve({ status: res.statusCode!, body }))
        })
        req.on('error', reject)
      })
    try {
      const ok = await get(`49983-${s.id}.sandlot.test`, s.envdAccessToken)
      assert.equal(ok.status, 200)
      assert.equal(ok.body.trim(), s.id)
      assert.equal((await get(`49983-${s.id}-6532622b.sandlot.test`, s.envdAccessToken)).status, 200, 'with the legacy client id')
      assert.equal((await get(`49983-${s.id}.sandlot.test`, 'wrong')).status, 401)
      // Another sandbox's token proves nothing about this id.
      assert.equal((await get(`49983-inosuchsandbox000000.sandlot.test`, s.envdAccessToken)).status, 401)
    } finally {
      await killSandbox(s.id)
    }
  })

  test('keeps serving throughout, and lists with metadata', async () => {
    const s = await createSandbox({ metadata: { suite: 'api', n: '1' } })
    try {
      const list = await api('GET', `/api/v1/sandboxes?metadata=${encodeURIComponent('suite=api&n=1')}`)
      assert.equal(list.status, 200)
      assert.deepEqual(list.json.map((x: { id: string }) => x.id), [s.id])
      const one = await api('GET', `/api/v1/sandboxes/${s.id}`)
      assert.equal(one.json.template, 'base')
      assert.deepEqual(one.json.metadata, { suite: 'api', n: '1' })
    } finally {
      await killSandbox(s.id)
    }
    assert.equal((await fetch(`${apiUrl}/health`)).status, 200)
  })
})
