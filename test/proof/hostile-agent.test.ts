// Issue 17, bad input from the other side: a sandbox whose agent is replaced (root inside kills it
// and answers on its side of the agent socket, here stood in for on the daemon's side) with silence,
// a trickle, a flood of garbage or nothing at all can neither crash nor stall the daemon: each of
// its requests gets a 502 or 504 within the reply timeout, and another sandbox's calls keep their
// latency meanwhile. (test/security.test.ts, "hostile agent replies", has one malformed reply each.)
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import fs from 'node:fs'
import { after, before, describe, test } from 'node:test'
import { Agent as UndiciAgent, request } from 'undici'
import { hostSocketOf, impostorAgent } from '../helpers.js'
import { ProofDaemon } from './proof-daemon.js'

const REPLY_TIMEOUT_MS = 2000
// Its own daemon (offset 10: 1-9 and 11-12 are other suites'), with a short reply timeout.
const proof = new ProofDaemon('hostile-agent', 10)
const key = () => proof.key

const newSandbox = async () => {
  const r = await proof.call('POST', '/api/v1/sandboxes', {})
  assert.equal(r.status, 201, JSON.stringify(r.json))
  return r.json.id as string
}

const START = Buffer.from('{"process":{"cmd":"/bin/echo","args":[]}}')

/** One envd request; its status (0: no answer) and how long it took. */
async function envd(id: string, kind: number): Promise<{ status: number; ms: number }> {
  const headers: Record<string, string> = { 'e2b-sandbox-id': id, 'x-api-key': key() }
  const requests: [string, RequestInit][] = [
    ['/envs', {}],
    ['/filesystem.Filesystem/Stat', { method: 'POST', headers: { 'content-type': 'application/json', 'connect-protocol-version': '1' }, body: '{"path":"/tmp"}' }],
    ['/process.Process/Start', { method: 'POST', headers: { 'content-type': 'application/connect+json' }, body: Buffer.concat([Buffer.from([0, 0, 0, 0, START.length]), START]) }],
    ['/files?path=/etc/hostname', {}],
    ['/files?path=/tmp/up', { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: crypto.randomBytes(200_000) }],
  ]
  const [route, init] = requests[kind % requests.length]!
  const t0 = Date.now()
  const status = await fetch(`${proof.url}${route}`, { ...init, headers: { ...headers, ...(init.headers as object) }, signal: AbortSignal.timeout(30_000) }).then(
    async (r) => (await r.arrayBuffer(), r.status),
    () => 0,
  )
  return { status, ms: Date.now() - t0 }
}

const p99 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.ceil(xs.length * 0.99) - 1]!
const rssKb = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${proof.daemon!.process.pid}/status`, 'utf8'))![1])

before(async () => {
  proof.clean()
  await proof.start({ SANDLOT_POOL: '0', SANDLOT_AGENT_REPLY_TIMEOUT_MS: String(REPLY_TIMEOUT_MS) })
})
after(async () => {
  if (!proof.running) return
  for (const s of (await proof.call('GET', '/api/v1/sandboxes')).json) await proof.call('DELETE', `/api/v1/sandboxes/${s.id}`)
  await proof.stop()
})

describe('a hostile agent', () => {
  test("silent: 100 requests at once each get a 504 in the reply timeout, and another sandbox's calls keep their latency", { timeout: 120_000 }, async () => {
    const [victim, neighbour] = await Promise.all([newSandbox(), newSandbox()])
    const baseline: number[] = []
    for (let i = 0; i < 30; i++) baseline.push((await envd(neighbour, i)).ms)
    const impostor = await impostorAgent(hostSocketOf(victim, proof.home), (c) => c.resume()) // accepts, reads, never answers
    try {
      const hostile = Array.from({ length: 100 }, (_, i) => envd(victim, i))
      const during: number[] = []
      const deadline = Date.now() + REPLY_TIMEOUT_MS + 500
      for (let i = 0; Date.now() < deadline; i++) {
        const r = await envd(neighbour, i)
        assert.ok([200, 204].includes(r.status), `the neighbour's call answered ${r.status}`)
        during.push(r.ms)
      }
      const results = await Promise.all(hostile)
      const statuses = Object.fromEntries([...new Set(results.map((r) => r.status))].map((s) => [s, results.filter((r) => r.status === s).length]))
      console.log(`silent agent: ${JSON.stringify(statuses)}, slowest ${Math.max(...results.map((r) => r.ms))} ms; neighbour p99 ${p99(baseline)} ms before, ${p99(during)} ms during (${during.length} calls)`)
      assert.deepEqual(statuses, { 504: 100 })
      for (const r of results) assert.ok(r.ms < REPLY_TIMEOUT_MS + 3000, `a 504 after ${r.ms} ms`)
      assert.ok(p99(during) < Math.max(250, 3 * p99(baseline)), `the neighbour's p99 went from ${p99(baseline)} to ${p99(during)} ms`)
    } finally {
      await impostor.close()
    }
    assert.equal((await fetch(`${proof.url}/health`)).status, 200)
  })

  test('trickling its answer a byte at a time: a 504 in the reply timeout, not a request held for ever', { timeout: 60_000 }, async () => {
    const victim = await newSandbox()
    const ticks = new Set<NodeJS.Timeout>()
    const impostor = await impostorAgent(hostSocketOf(victim, proof.home), (c) => {
      c.resume()
      c.write('HTTP/1.1 200 OK\r\nx-slow: ')
      const tick = setInterval(() => c.writable && c.write('a'), 200)
      ticks.add(tick)
      c.on('close', () => clearInterval(tick))
    })
    try {
      const results = await Promise.all([0, 1, 3].map((k) => envd(victim, k)))
      for (const r of results) {
        assert.equal(r.status, 504, JSON.stringify(results))
        assert.ok(r.ms < REPLY_TIMEOUT_MS + 3000, `answered after ${r.ms} ms`)
      }
    } finally {
      for (const t of ticks) clearInterval(t)
      await impostor.close()
    }
  })

  test('flooding garbage: a 502 at once, and the daemon does not keep it', { timeout: 60_000 }, async () => {
    const victim = await newSandbox()
    const junk = crypto.randomBytes(64 * 1024)
    const impostor = await impostorAgent(hostSocketOf(victim, proof.home), (c) => {
      c.resume()
      const flood = () => {
        while (c.writable && c.write(junk));
      }
      c.on('drain', flood)
      flood()
    })
    const before = rssKb()
    try {
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => envd(victim, i)))
      for (const r of results) assert.equal(r.status, 502, JSON.stringify(results))
      // A header block in flood is refused at 16 KiB: nothing piles up in the daemon.
      assert.ok(rssKb() - before < 100 * 1024, `the daemon grew by ${rssKb() - before} KiB`)
    } finally {
      await impostor.close()
    }
    assert.equal((await fetch(`${proof.url}/health`)).status, 200)
  })

  test("closing the connection while the request is still coming: a 502, and the client's connection is not left broken", async () => {
    const victim = await newSandbox()
    const impostor = await impostorAgent(hostSocketOf(victim, proof.home), (c) => c.once('data', () => c.destroy()))
    const one = new UndiciAgent({ connections: 1 })
    try {
      for (let i = 0; i < 3; i++) {
        const r = await request(`${proof.url}/files?path=/tmp/up`, { method: 'POST', headers: { 'e2b-sandbox-id': victim, 'x-api-key': key(), 'content-type': 'application/octet-stream' }, body: crypto.randomBytes(4_000_000), dispatcher: one })
        await r.body.text()
        assert.equal(r.statusCode, 502)
        // The next request on the same connection (if the daemon kept it) is answered.
        const next = await request(`${proof.url}/api/v1/sandboxes/${victim}`, { headers: { 'x-api-key': key() }, dispatcher: one })
        await next.body.text()
        assert.equal(next.statusCode, 200)
      }
    } finally {
      await one.close()
      await impostor.close()
    }
  })

  test('gone (nothing on its socket): a 502 at once', async () => {
    const victim = await newSandbox()
    const impostor = await impostorAgent(hostSocketOf(victim, proof.home), (c) => c.destroy())
    await impostor.close()
    for (let i = 0; i < 5; i++) {
      const r = await envd(victim, i)
      assert.equal(r.status, 502)
      assert.ok(r.ms < 2000)
    }
    assert.equal((await fetch(`${proof.url}/health`)).status, 200)
  })
})
