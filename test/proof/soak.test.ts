// Soak (issue 17): mixed load from many concurrent clients against a daemon of its own, each going
// round create → command → file write and read back → keep-alive → reconnect (a hold opened and
// released) → a preview request to a server in the sandbox → pause and resume (memory or files) →
// kill. Zero errors; afterwards nothing left (directories, runtime state, cgroups, mounts, loop
// devices, veths, nftables rules, store rows) and the daemon's memory flat. 12 clients for 60 s here;
// 50 clients for 10 minutes with SANDLOT_LONG_TESTS (npm run proof).
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import Database from 'better-sqlite3'
import { ProofDaemon } from './proof-daemon.js'
import { leftovers, run, startBackground, waitFor } from '../helpers.js'

const LONG = !!process.env.SANDLOT_LONG_TESTS
const CLIENTS = Number(process.env.SANDLOT_SOAK_CLIENTS ?? (LONG ? 50 : 12))
const SECONDS = Number(process.env.SANDLOT_SOAK_SECONDS ?? (LONG ? 600 : 60))
const proof = new ProofDaemon('soak', 14)
const { home, port, call } = proof
const opts = () => proof.opts()

/** Preview requests that got no answer within 15 s (tried again): reported, not hidden. */
const hungPreviews: string[] = []

/** The daemon's resident memory (MiB). */
const rssMiB = () => Number(/^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${proof.daemon!.process.pid}/status`, 'utf8'))![1]) / 1024

async function expectStatus(what: string, p: Promise<{ status: number; json: unknown }>, status: number): Promise<any> {
  const r = await p
  if (r.status !== status) throw new Error(`${what}: ${r.status} ${JSON.stringify(r.json)}`)
  return r.json
}

/** One client's round with a sandbox of its own; throws at the first thing that is not as it should be. */
async function round(client: number, n: number): Promise<number> {
  let ops = 0
  const step = async <T>(p: Promise<T>) => {
    const v = await p
    ops++
    return v
  }
  const created = await step(expectStatus('create', call('POST', '/api/v1/sandboxes', { metadata: { suite: 'soak', client: String(client) }, keepAliveMs: 120_000 }), 201))
  const id: string = created.id
  try {
    const echo = await step(run(id, `echo $((${client} * 1000 + ${n}))`, opts()))
    if (echo.stdout !== `${client * 1000 + n}\n`) throw new Error(`command in ${id}: ${JSON.stringify(echo)}`)
    const body = crypto.randomBytes(64 * 1024)
    const url = (file: string) => `http://127.0.0.1:${port}/files?path=${encodeURIComponent(file)}&username=user`
    const headers = { 'e2b-sandbox-id': id, 'x-api-key': proof.key }
    const wrote = await step(fetch(url('/home/user/soak.bin'), { method: 'POST', headers: { ...headers, 'content-type': 'application/octet-stream' }, body: new Uint8Array(body) }))
    if (wrote.status !== 200) throw new Error(`write in ${id}: ${wrote.status} ${await wrote.text()}`)
    await wrote.arrayBuffer()
    const read = await step(fetch(url('/home/user/soak.bin'), { headers }))
    if (!Buffer.from(await read.arrayBuffer()).equals(body)) throw new Error(`read back in ${id}: not what was written (${read.status})`)
    await step(expectStatus('keep-alive', call('POST', `/api/v1/sandboxes/${id}/keep-alive`, { ms: 120_000 }), 200))
    // The SDK's reconnect: a hold opened on it, then released.
    const hold = await step(expectStatus('reconnect', call('POST', `/api/v1/sandboxes/${id}/holds`), 201))
    await step(expectStatus('release', call('DELETE', `/api/v1/sandboxes/${id}/holds/${hold.id}`), 204))
    if (n % 3 === 0) {
      await step(startBackground(id, 'exec python3 -m http.server 8000 --directory /etc', opts()))
      // Each attempt bounded: one that hangs is counted (and printed) and tried again; the round fails
      // only if the preview never answers within 60 s.
      const served = await step(
        waitFor(
          async () => {
            try {
              const r = await fetch(`http://127.0.0.1:${port}/hostname`, { headers: { 'e2b-sandbox-id': id, 'e2b-sandbox-port': '8000' }, signal: AbortSignal.timeout(15_000) })
              return r.status === 200 && (await r.text())
            } catch (err) {
              // (Its head or its body: each may be what never comes.)
              if ((err as Error).name !== 'TimeoutError') throw err
              hungPreviews.push(`${id} at ${new Date().toISOString()}`)
              return false
            }
          },
          60_000,
          `the preview of ${id}`,
        ),
      )
      if (served !== `${id}\n`) throw new Error(`preview of ${id}: ${served}`)
    }
    const keepMemory = n % 2 === 0
    await step(expectStatus('pause', call('POST', `/api/v1/sandboxes/${id}/pause`, { keepMemory }), 200))
    await step(expectStatus('resume', call('POST', `/api/v1/sandboxes/${id}/resume`, { keepAliveMs: 120_000 }), 200))
    const kept = await step(run(id, 'md5sum < /home/user/soak.bin', opts()))
    if (kept.stdout !== `${crypto.createHash('md5').update(body).digest('hex')}  -\n`) throw new Error(`after a ${keepMemory ? 'memory' : 'files'} pause, ${id}: ${JSON.stringify(kept)}`)
  } finally {
    await step(expectStatus('kill', call('DELETE', `/api/v1/sandboxes/${id}`), 204))
  }
  return ops
}

describe('soak', { timeout: (SECONDS + 300) * 1000 }, () => {
  before(async () => {
    proof.clean()
    // No pool: every create is a fresh one, all of whose parts must go again.
    await proof.start({ SANDLOT_POOL: '0' })
  })
  after(async () => {
    await proof.stop('SIGTERM')
  })

  test(`${CLIENTS} clients for ${SECONDS} s: zero errors, nothing leaked, the daemon's memory flat`, async () => {
    const deadline = Date.now() + SECONDS * 1000
    const errors: string[] = []
    const rss: number[] = []
    const sampling = setInterval(() => {
      rss.push(rssMiB())
      proof.noteSeen() // the sandboxes of the moment, to check afterwards that each left nothing
    }, 1000)
    let ops = 0
    let rounds = 0
    await Promise.all(
      Array.from({ length: CLIENTS }, async (_, client) => {
        for (let n = 0; Date.now() < deadline; n++) {
          try {
            const done = await round(client, n) // (not `ops += await …`: that reads ops before the wait)
            ops += done
            rounds++
          } catch (err) {
            errors.push(`client ${client}, round ${n}: ${(err as Error).message}`)
          }
        }
      }),
    )
    clearInterval(sampling)
    // Nothing of any sandbox left: the store's rows, and all it had on the host.
    for (const id of proof.ids()) assert.deepEqual(await leftovers(id, home), [], `${id} left nothing`)
    assert.deepEqual(proof.leaked(), [])
    const db = new Database(path.join(home, 'sandlot.db'), { readonly: true })
    try {
      for (const table of ['sandboxes', 'holds', 'sandbox_networks']) assert.equal((db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n, 0, `rows left in ${table}`)
    } finally {
      db.close()
    }
    assert.equal(fs.readdirSync(`/sys/class/net`).filter((l) => l.startsWith(proof.vethPrefix())).length, 0, 'no veth left')
    // Memory flat: the last quarter's median no more than a quarter (and 16 MiB) above the second's.
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
    const q = Math.floor(rss.length / 4)
    const [early, late] = [median(rss.slice(q, 2 * q)), median(rss.slice(3 * q))]
    console.log(`soak: ${CLIENTS} clients, ${SECONDS} s: ${rounds} rounds, ${ops} operations, ${errors.length} errors, ${hungPreviews.length} preview requests unanswered within 15 s and tried again${hungPreviews.length ? ` (${hungPreviews.join(', ')})` : ''}; ${proof.ids().length} sandboxes, none left; daemon RSS ${early.toFixed(0)} → ${late.toFixed(0)} MiB (max ${Math.max(...rss).toFixed(0)})`)
    assert.deepEqual(errors, [], `${errors.length} errors`)
    assert.ok(late <= early * 1.25 + 16, `the daemon's memory grew from ${early.toFixed(0)} to ${late.toFixed(0)} MiB`)
  })
})
