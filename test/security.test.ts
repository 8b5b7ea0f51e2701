// The holes an outside review found on the daemon's side (docs/security.md, "threat model"): the
// agent's socket cannot be redirected from inside, hostile agent replies cannot take the daemon down,
// no client credential reaches a sandbox, bad envVars are refused, the data plane tells nothing to a
// client without credentials, and connection floods and the daemon's own stalls cost no one anything.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { api, apiKey, apiUrl, createSandbox, fakeAgent, home, hostSocketOf, killSandbox, run, spawnDaemon, waitFor, type Daemon } from './helpers.js'

const envd = (id: string, headers: Record<string, string> = {}, url = apiUrl, route = '/health') =>
  fetch(`${url}${route}`, { headers: { 'e2b-sandbox-id': id, ...headers } }).then(async (r) => ({ status: r.status, body: await r.text() }))

const serverUp = async (url = apiUrl) => (await fetch(`${url}/health`)).status === 200

describe("the agent's socket", () => {
  test('a sandbox cannot point the daemon at another socket by planting a link in /run/sandlot', async () => {
    const trap = path.join(home, `trap-${process.pid}.sock`)
    let trapped = 0
    fs.rmSync(trap, { force: true })
    const server = net.createServer((c) => {
      trapped++
      c.destroy()
    })
    await new Promise<void>((resolve) => server.listen(trap, resolve))
    const sb = await createSandbox()
    try {
      // As root inside: every name the daemon might use under /run/sandlot now leads to the trap.
      const plant = await run(sb.id, `rm -f /run/sandlot/agent.sock; ln -s ${trap} /run/sandlot/agent.sock; ln -sfn ${path.dirname(trap)} /run/sandlot/link; ls -l /run/sandlot`, { user: 'root' })
      assert.equal(plant.exitCode, 0, plant.stderr)
      for (let i = 0; i < 5; i++) {
        const r = await run(sb.id, 'echo still the agent')
        assert.equal(r.stdout, 'still the agent\n')
      }
      assert.equal(trapped, 0, 'the daemon connected to the planted socket')
      // Nor can the sandbox see or reach the daemon's end: it is outside every path it has.
      const look = await run(sb.id, 'cat /proc/self/mountinfo', { user: 'root' })
      assert.doesNotMatch(look.stdout, /agent\.sock/)
      assert.doesNotMatch(look.stdout, new RegExp(home.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    } finally {
      await killSandbox(sb.id)
      server.close()
      fs.rmSync(trap, { force: true })
    }
  })

  test("commands the agent starts do not hold the agent's listening socket", async () => {
    const sb = await createSandbox()
    try {
      // A process that kept it could accept the daemon's connections in the agent's place: no fd past
      // stdio may be a socket, in a plain command or in a terminal.
      const listFds = 'for f in /proc/$$/fd/*; do echo "${f##*/} $(readlink $f)"; done'
      const socketsPastStdio = (text: string) => text.split(/\r?\n/).filter((l) => /^(\d+) socket:/.exec(l) && Number(l.split(' ')[0]) > 2)
      const plain = await run(sb.id, listFds)
      assert.match(plain.stdout, /^0 /m)
      assert.deepEqual(socketsPastStdio(plain.stdout), [], plain.stdout)
      const res = await fetch(`${apiUrl}/process.Process/Start`, {
        method: 'POST',
        headers: { 'e2b-sandbox-id': sb.id, 'x-api-key': apiKey(), 'content-type': 'application/connect+json', 'connect-protocol-version': '1' },
        body: envelope({ process: { cmd: '/bin/bash', args: ['-c', `${listFds}; exit`] }, pty: { size: { cols: 200, rows: 24 } } }),
      })
      const out = Buffer.from(await res.arrayBuffer()).toString()
      const data = [...out.matchAll(/"pty":"([^"]*)"/g)].map((m) => Buffer.from(m[1]!, 'base64').toString()).join('')
      assert.match(data, /^0 \/dev\/pts/m, out)
      assert.deepEqual(socketsPastStdio(data), [], data)
    } finally {
      await killSandbox(sb.id)
    }
  })
})

/** One Connect streaming envelope (flags 0, JSON). */
function envelope(message: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(message))
  const head = Buffer.alloc(5)
  head.writeUInt32BE(body.length, 1)
  return Buffer.concat([head, body])
}

describe('hostile agent replies', () => {
  // The reason phrase is never passed on (Node's own is sent), so a reply that is otherwise valid
  // goes through; everything else is a 502.
  const passed: [string, string][] = [
    ['a control character in the reason phrase', 'HTTP/1.1 200 O\x01K\r\ncontent-length: 0\r\n\r\n'],
    ['a reason phrase of DEL and high bytes', 'HTTP/1.1 404 \x7f\xff\xfe\r\ncontent-length: 0\r\n\r\n'],
    ['an early hint before the answer', 'HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}'],
  ]
  const replies: [string, string][] = [
    ['a reason phrase with a newline trick', 'HTTP/1.1 200 OK\rX-Injected: 1\r\ncontent-length: 0\r\n\r\n'],
    ['status 999', 'HTTP/1.1 999 Nope\r\ncontent-length: 0\r\n\r\n'],
    ['status 000', 'HTTP/1.1 000 Zero\r\ncontent-length: 0\r\n\r\n'],
    ['status 42', 'HTTP/1.1 42 Short\r\ncontent-length: 0\r\n\r\n'],
    ['no status line at all', 'garbage\r\n\r\n'],
    ['an unasked-for upgrade', 'HTTP/1.1 101 Switching Protocols\r\nupgrade: evil\r\nconnection: upgrade\r\n\r\n'],
    ['a control character in a header value', 'HTTP/1.1 200 OK\r\nx-bad: a\x01b\r\ncontent-length: 0\r\n\r\n'],
    ['a header block past 16 KiB', `HTTP/1.1 200 OK\r\nx-big: ${'a'.repeat(20_000)}\r\ncontent-length: 0\r\n\r\n`],
    ['a connection closed at once', ''],
    ['two content-lengths', 'HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 5\r\n\r\nhello'],
  ]

  test('each is a 502 for its request, and the daemon stays up', async () => {
    const sb = await createSandbox()
    try {
      for (const [what, reply, expected] of [...replies.map(([w, r]) => [w, r, 502] as const), ...passed.map(([w, r]) => [w, r, Number(/ (\d{3}) [^\n]*\r\n[^]*$/.exec(r.replace(/^HTTP\/1.1 103[^]*?\r\n\r\n/, ''))![1])] as const)]) {
        const agent = await fakeAgent(hostSocketOf(sb.id), reply)
        try {
          const r = await envd(sb.id, { 'x-api-key': apiKey() }, apiUrl, '/envs')
          assert.equal(r.status, expected, `${what}: ${r.status} ${r.body}`)
          assert.doesNotMatch(r.body, /\x01|\x7f/)
          assert.ok(await serverUp(), `the daemon went down on ${what}`)
        } finally {
          await agent.close()
        }
      }
      // A body shorter than announced: the client's answer is cut, nothing else.
      const agent = await fakeAgent(hostSocketOf(sb.id), 'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort')
      await assert.rejects(fetch(`${apiUrl}/envs`, { headers: { 'e2b-sandbox-id': sb.id, 'x-api-key': apiKey() } }).then((r) => r.text()))
      await agent.close()
      assert.ok(await serverUp())
      // What the daemon met is in the sandbox's own log, as its agent's errors.
      const logged = (await api('GET', `/api/v1/sandboxes/${sb.id}/logs?level=error`)).json.logs as { message: string; fields: Record<string, string> }[]
      assert.ok(logged.some((e) => e.fields.logger === 'agent' && e.message === "GET /envs: The sandbox's agent sent an invalid status (999)"), JSON.stringify(logged))
      assert.ok(logged.some((e) => e.fields.logger === 'agent' && e.message === "GET /envs: The sandbox's agent sent an unexpected upgrade"), JSON.stringify(logged))
    } finally {
      await killSandbox(sb.id)
    }
    // Other sandboxes never noticed.
    const other = await createSandbox()
    assert.equal((await run(other.id, 'echo fine')).stdout, 'fine\n')
    await killSandbox(other.id)
  })
})

describe('credentials', () => {
  test("no client credential reaches the sandbox: only its own token and envd's headers", async () => {
    const sb = await createSandbox()
    const token = (await api('GET', `/sandboxes/${sb.id}`)).json.envdAccessToken as string
    assert.match(token, /^[0-9a-f]{64}$/)
    const agent = await fakeAgent(hostSocketOf(sb.id), 'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}')
    try {
      const secrets = {
        'x-api-key': apiKey(),
        cookie: 'session=secret-cookie',
        'proxy-authorization': 'Basic c2VjcmV0OnNlY3JldA==',
        'x-supabase-token': 'secret-supabase',
        'x-forwarded-for': '203.0.113.9',
      }
      // Authenticated by the API key; Basic auth with a password; another header style of key.
      assert.equal((await envd(sb.id, { ...secrets, authorization: `Basic ${Buffer.from('root:hunter2').toString('base64')}` }, apiUrl, '/envs')).status, 200)
      assert.equal((await envd(sb.id, { 'x-access-token': token, authorization: `Bearer ${apiKey()}` }, apiUrl, '/envs')).status, 200)
      assert.equal(agent.seen.length, 2)
      for (const { raw, headers } of agent.seen) {
        assert.ok(!raw.includes(apiKey()), `the API key reached the agent:\n${raw}`)
        for (const secret of ['secret-cookie', 'hunter2', 'secret-supabase', 'c2VjcmV0OnNlY3JldA==', '203.0.113.9']) assert.ok(!raw.includes(secret), `${secret} reached the agent:\n${raw}`)
        assert.equal(headers['x-access-token'], token)
      }
      // The user name survives, the password does not.
      assert.equal(agent.seen[0]!.headers.authorization, `Basic ${Buffer.from('root:').toString('base64')}`)
      assert.equal(agent.seen[1]!.headers.authorization, undefined)
    } finally {
      await agent.close()
      await killSandbox(sb.id)
    }
  })
})

// Terminals capped per sandbox (its own devpts instance): test/proof/abuse.test.ts.

describe('create input', () => {
  const bad: [string, Record<string, string>][] = [
    ['a name with "="', { 'A=B': 'x' }],
    ['an empty name', { '': 'x' }],
    ['a NUL in a value', { A: 'x\u0000y' }],
    ['a NUL in a name', { 'A\u0000B': 'x' }],
  ]
  for (const [what, envVars] of bad) {
    test(`envVars with ${what} are refused by both APIs, naming the field`, async () => {
      const native = await api('POST', '/api/v1/sandboxes', { envVars })
      assert.equal(native.status, 400, JSON.stringify(native.json))
      assert.match(native.json.message, /envVars/)
      const e2b = await api('POST', '/sandboxes', { templateID: 'base', envVars })
      assert.equal(e2b.status, 400, JSON.stringify(e2b.json))
      assert.match(e2b.json.message, /envVars/)
    })
  }
})

describe('the data plane without credentials', () => {
  test('an unknown id and a running sandbox look the same (401); a gone sandbox is 502 only to who knew it', async () => {
    const sb = await createSandbox()
    const token = (await api('GET', `/sandboxes/${sb.id}`)).json.envdAccessToken as string
    const unknownId = 'i' + 'x'.repeat(20)
    for (const route of ['/health', '/envs', '/files?path=/etc/hostname']) {
      const running = await envd(sb.id, {}, apiUrl, route)
      const unknown = await envd(unknownId, {}, apiUrl, route)
      assert.equal(running.status, 401, `${route} on a running sandbox`)
      assert.equal(unknown.status, 401, `${route} on an unknown id`)
      assert.equal(running.body, unknown.body)
      // A wrong token is no better than none.
      assert.equal((await envd(sb.id, { 'x-access-token': 'f'.repeat(64) }, apiUrl, route)).status, 401)
    }
    assert.equal((await envd(sb.id, { 'x-access-token': token })).status, 204)
    // A browser's CORS preflight has no credentials: the same answer for both, as envd gives it.
    const preflight = (id: string) => fetch(`${apiUrl}/files`, { method: 'OPTIONS', headers: { 'e2b-sandbox-id': id, origin: 'http://example.test', 'access-control-request-method': 'POST' } })
    for (const id of [sb.id, unknownId]) {
      const r = await preflight(id)
      assert.equal(r.status, 204)
      assert.equal(r.headers.get('access-control-allow-origin'), '*')
    }
    await killSandbox(sb.id)
    // The e2b SDK tells a killed sandbox by its 502: it still hears it, with the token or the key.
    assert.equal((await envd(sb.id, { 'x-access-token': token })).status, 502)
    assert.equal((await envd(sb.id, { 'x-api-key': apiKey() })).status, 502)
    assert.equal((await envd(sb.id, {})).status, 401)
  })
})

describe('a server of its own', () => {
  const port = Number(process.env.SANDLOT_TEST_PORT ?? 3190) + 17
  const ownHome = path.resolve('.sandlot-test/security-home')
  let daemon: Daemon
  const key = () => fs.readFileSync(path.join(ownHome, 'api-key'), 'utf8').trim()
  const call = async (method: string, route: string, body?: unknown) => {
    const res = await fetch(`${daemon.url}${route}`, {
      method,
      headers: { 'x-api-key': key(), ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    })
    return { status: res.status, json: res.status === 204 ? undefined : await res.json() }
  }

  before(async () => {
    const log = fs.openSync(path.join(path.dirname(ownHome), 'security-server.log'), 'a')
    daemon = spawnDaemon(port, { SANDLOT_HOME: ownHome, SANDLOT_MAX_CONNECTIONS: '40', SANDLOT_AGENT_REPLY_TIMEOUT_MS: '2000' }, log)
    await waitFor(() => fetch(`${daemon.url}/health`).then((r) => r.ok, () => false), 120_000, 'the daemon to be ready')
    for (const s of (await call('GET', '/api/v1/sandboxes')).json) await call('DELETE', `/api/v1/sandboxes/${s.id}`)
  })
  after(async () => {
    for (const s of (await call('GET', '/api/v1/sandboxes').catch(() => ({ json: [] }))).json) await call('DELETE', `/api/v1/sandboxes/${s.id}`)
    await daemon.stop('SIGTERM')
  })

  test('a silent agent costs its request a 504 after the reply timeout, nothing more', async () => {
    const { json: sb } = await call('POST', '/api/v1/sandboxes', {})
    const agent = await fakeAgent(hostSocketOf(sb.id, ownHome), () => undefined)
    try {
      const t0 = Date.now()
      const r = await envd(sb.id, { 'x-api-key': key() }, daemon.url, '/envs')
      assert.equal(r.status, 504, r.body)
      assert.ok(Date.now() - t0 < 10_000)
      assert.ok(await serverUp(daemon.url))
    } finally {
      await agent.close()
      await call('DELETE', `/api/v1/sandboxes/${sb.id}`)
    }
  })

  test('a connection flood is capped, half-sent requests are dropped, and the server keeps answering', async () => {
    const open = (): Promise<net.Socket> =>
      new Promise((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => resolve(s))
        s.on('error', () => {})
      })
    const flood: net.Socket[] = []
    for (let i = 0; i < 60; i++) {
      const s = await open()
      // Half of them never finish their head, the other half never send a byte.
      if (i % 2) s.write('GET /health HTTP/1.1\r\nHost: x\r\n')
      flood.push(s)
    }
    const closed = () => flood.filter((s) => s.destroyed || s.readyState !== 'open').length
    // Past the cap of 40, the rest are closed at once.
    await waitFor(async () => closed() >= 20, 5_000, 'connections past the cap to be refused')
    // The heads never complete: within the 10 s header timeout all are gone.
    await waitFor(async () => closed() === 60, 15_000, 'half-sent requests to be dropped')
    assert.ok(await serverUp(daemon.url))
    for (const s of flood) s.destroy()
  })

  test("the daemon's own stall does not lapse its clients' holds", async () => {
    const { json: sb } = await call('POST', '/api/v1/sandboxes', { hold: true })
    const renew = () => call('PUT', `/api/v1/sandboxes/${sb.id}/holds/${sb.hold.id}`)
    assert.equal((await renew()).status, 200)
    // Stopped for longer than a lease (15 s): the client's renewals wait unread in the socket.
    daemon.process.kill('SIGSTOP')
    const pending = new Promise<void>((resolve) => setTimeout(resolve, 17_000))
    const renewals = [5_000, 10_000, 15_000].map((ms) => new Promise((r) => setTimeout(r, ms)).then(renew))
    await pending
    daemon.process.kill('SIGCONT')
    for (const r of await Promise.all(renewals)) assert.equal(r.status, 200)
    await new Promise((r) => setTimeout(r, 3_000))
    assert.equal((await call('GET', `/api/v1/sandboxes/${sb.id}`)).status, 200, 'the held sandbox was destroyed after the stall')
    await call('DELETE', `/api/v1/sandboxes/${sb.id}`)
  })
})
