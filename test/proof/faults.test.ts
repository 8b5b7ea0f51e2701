// Faults (issue 17): the daemon killed with SIGKILL at random points while creates, kills, pauses,
// resumes, file writes, keep-alives, holds and template builds are under way, round after round
// (50 here, 200 with SANDLOT_LONG_TESTS; a fixed seed, SANDLOT_FAULT_SEED to vary it). After each
// restart the client's view must hold: every sandbox it was told exists is there and works, every
// kill it was told of is done and left nothing, every file it was told was written reads back whole,
// every deadline and pause it was answered is kept, its holds renew; nothing is leaked on the host
// (directories, runtime state, cgroups, mounts, loop devices, veths, nftables addresses) and the
// store passes SQLite's integrity check with no sandbox or build left half-way.
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import Database from 'better-sqlite3'
import { ProofDaemon } from './proof-daemon.js'
import { api, createSandbox, killSandbox, leftovers, run, startBackground, waitFor } from '../helpers.js'

const LONG = !!process.env.SANDLOT_LONG_TESTS
const ROUNDS = Number(process.env.SANDLOT_FAULT_ROUNDS ?? (LONG ? 200 : 50))
const SEED = Number(process.env.SANDLOT_FAULT_SEED ?? 17)
const proof = new ProofDaemon('faults', 13)
const { home, bridge, call } = proof
const opts = () => proof.opts()

/** mulberry32: a small seeded PRNG, so a failing round can be replayed with its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
const random = prng(SEED)
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!

// A pool of one: pooled sandboxes in the making are among what a kill interrupts.
const start = () => proof.start({ SANDLOT_POOL: 'base=1' })

/** What the client was answered, per sandbox; `undefined` where a call was cut by the kill. */
interface Known {
  paused: boolean | undefined
  files: Map<string, string>
  endAt: string | null | undefined
  hold?: string
  /** What the client did and saw, round by round: printed when a check on it fails. */
  history: string[]
}
const known = new Map<string, Known>()
const historyOf = (k: Known) => `; its history: ${k.history.join(' → ')}`

interface Listed {
  id: string
  state: string
  endAt: string | null
  metadata: Record<string, string>
}
const listed = async (): Promise<Listed[]> => {
  const r = await call<Listed[]>('GET', '/api/v1/sandboxes?metadata=' + encodeURIComponent('suite=faults'))
  assert.equal(r.status, 200)
  return r.json
}

const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex')

async function writeFile(id: string, file: string, body: Buffer): Promise<number> {
  const res = await fetch(`${proof.url}/files?path=${encodeURIComponent(file)}&username=user`, {
    method: 'POST',
    headers: { 'e2b-sandbox-id': id, 'x-api-key': proof.key, 'content-type': 'application/octet-stream' },
    body: new Uint8Array(body),
    signal: AbortSignal.timeout(60_000),
  })
  await res.arrayBuffer()
  return res.status
}

async function readBack(id: string, file: string): Promise<string | number> {
  const res = await fetch(`${proof.url}/files?path=${encodeURIComponent(file)}&username=user`, { headers: { 'e2b-sandbox-id': id, 'x-api-key': proof.key } })
  const body = Buffer.from(await res.arrayBuffer())
  return res.status === 200 ? sha(body) : res.status
}

type Op = { what: string; run: () => Promise<void> }

describe('faults: the daemon killed with SIGKILL at random points', { timeout: LONG ? 3_600_000 : 900_000 }, () => {
  before(async () => {
    proof.clean()
    await start()
  })
  after(async () => {
    if (proof.running) {
      for (const s of await listed().catch(() => [])) await call('DELETE', `/api/v1/sandboxes/${s.id}`)
      await proof.stop('SIGTERM')
    }
  })

  test(`${ROUNDS} rounds, seed ${SEED}: nothing lost, leaked or half-written`, async () => {
    const counts = { rounds: 0, ops: 0, answered: 0, cut: 0, adopted: 0, builds: 0 }
    // Calls the kill cut, by kind (create, kill, pause, resume, write, keep-alive, template).
    const cutBy: Record<string, number> = {}
    for (let round = 1; round <= ROUNDS; round++) {
      // One call per sandbox a round: two on one (a write into one being killed) would race each other.
      const busy = new Set<string>()
      const free = (paused: boolean | 'any') => [...known].filter(([id, k]) => !busy.has(id) && (paused === 'any' || k.paused === paused)).map(([id]) => id)
      const claim = (paused: boolean | 'any') => {
        const ids = free(paused)
        if (!ids.length) return
        const id = pick(ids)
        busy.add(id)
        return id
      }
      // Creates cut by the kill: their ids are learnt from the list after the restart.
      const cutCreates = new Set<string>()
      const ops: Op[] = []
      const create = (): Op => {
        const n = String(ops.length)
        const hold = random() < 0.3
        return {
          what: `create${hold ? ' with a hold' : ''}`,
          run: async () => {
            cutCreates.add(`${round}/${n}`)
            const r = await call<{ id: string; endAt: string | null; hold?: { id: string } }>('POST', '/api/v1/sandboxes', { metadata: { suite: 'faults', round: String(round), n }, ...(hold ? { hold: true } : { keepAliveMs: 3_600_000 }) })
            assert.equal(r.status, 201, JSON.stringify(r.json))
            cutCreates.delete(`${round}/${n}`)
            known.set(r.json.id, { paused: false, files: new Map(), endAt: r.json.endAt, hold: r.json.hold?.id, history: [`r${round} created, endAt ${r.json.endAt}`] })
          },
        }
      }
      // Fewer than three sandboxes: make them first, answered, so each round has something to act on.
      while (known.size < 3) await create().run()
      const choices: (() => Op | undefined)[] = [
        create,
        () => {
          const id = claim('any')
          if (!id) return
          return {
            what: `kill ${id}`,
            run: async () => {
              known.get(id)!.paused = undefined // either way until answered
              const r = await call('DELETE', `/api/v1/sandboxes/${id}`)
              assert.equal(r.status, 204)
              known.delete(id)
              assert.deepEqual(await leftovers(id, home), [], `${id} was killed and left nothing`)
            },
          }
        },
        () => {
          const id = claim(false)
          if (!id) return
          const keepMemory = random() < 0.6
          return {
            what: `pause ${id}${keepMemory ? '' : ' (files)'}`,
            run: async () => {
              const k = known.get(id)!
              k.paused = undefined
              const r = await call('POST', `/api/v1/sandboxes/${id}/pause`, { keepMemory })
              assert.equal(r.status, 200, JSON.stringify(r.json))
              k.paused = true
              k.hold = undefined // a paused sandbox has no holds
              k.endAt = undefined
              k.history.push(`r${round} paused${keepMemory ? '' : ' (files)'}`)
            },
          }
        },
        () => {
          const id = claim(true)
          if (!id) return
          return {
            what: `resume ${id}`,
            run: async () => {
              const k = known.get(id)!
              k.paused = undefined
              k.endAt = undefined // a resume cut by the kill may have set a new deadline
              const r = await call<{ endAt: string | null }>('POST', `/api/v1/sandboxes/${id}/resume`, { keepAliveMs: 3_600_000 })
              assert.equal(r.status, 200, JSON.stringify(r.json))
              k.paused = false
              k.endAt = r.json.endAt
              k.history.push(`r${round} resumed, endAt ${r.json.endAt}`)
            },
          }
        },
        () => {
          const id = claim(false)
          if (!id) return
          const body = crypto.randomBytes(Math.floor(64 * 1024 + random() * 8 * 1024 * 1024))
          const file = `/home/user/f-${round}-${ops.length}`
          return {
            what: `write ${body.length} bytes to ${id}`,
            run: async () => {
              assert.equal(await writeFile(id, file, body), 200)
              known.get(id)?.files.set(file, sha(body))
            },
          }
        },
        () => {
          const id = claim(false)
          if (!id) return
          return {
            what: `keep-alive ${id}`,
            run: async () => {
              const k = known.get(id)!
              k.endAt = undefined
              const r = await call<{ endAt: string | null }>('POST', `/api/v1/sandboxes/${id}/keep-alive`, { ms: Math.floor(1_800_000 + random() * 1_800_000) })
              assert.equal(r.status, 200, JSON.stringify(r.json))
              k.endAt = r.json.endAt
              k.history.push(`r${round} kept alive, endAt ${r.json.endAt}`)
            },
          }
        },
        () => {
          if (round % 5 !== 0) return
          counts.builds++
          return {
            what: 'template build',
            run: async () => {
              const r = await call('POST', '/api/v1/templates', { name: `faults-${round}`, steps: [{ type: 'RUN', args: [`sleep 0.${Math.floor(random() * 9)}; echo ${round} > /home/user/built`] }] })
              assert.equal(r.status, 202, JSON.stringify(r.json))
            },
          }
        },
      ]
      const n = 2 + Math.floor(random() * 3)
      for (let tries = 0; ops.length < n && tries < 50; tries++) {
        const op = pick(choices)()
        if (op) ops.push(op)
      }
      const results = ops.map((op) => op.run().then(() => undefined, (err: Error) => err))
      // The kill: at once, mid-way, or after some calls were answered.
      await new Promise((r) => setTimeout(r, Math.floor(random() < 0.7 ? random() * 300 : random() * 1500)))
      await proof.stop('SIGKILL')
      const outcomes = await Promise.all(results)
      proof.noteSeen() // what the crash interrupted (runc runs on without the daemon for a moment)
      counts.ops += ops.length
      counts.answered += outcomes.filter((o) => o === undefined).length
      counts.cut += outcomes.filter((o) => o !== undefined).length
      for (const [i, o] of outcomes.entries()) {
        const kind = ops[i]!.what.split(' ')[0]!
        for (const [id, k] of known) if (ops[i]!.what.includes(id)) k.history.push(`r${round} ${ops[i]!.what.replace(` ${id}`, '')} ${o ? 'cut by the kill' : 'answered'}`)
        cutBy[kind] = (cutBy[kind] ?? 0) + (o ? 1 : 0)
        // A call cut by the kill fails as a connection error; one answered otherwise is a bug.
        if (o && !/fetch failed|ECONNRESET|ECONNREFUSED|socket|terminated|other side closed/i.test(`${o.message} ${(o.cause as Error | undefined)?.message}`)) {
          assert.fail(`round ${round} (seed ${SEED}): ${ops[i]!.what} failed: ${o.message}`)
        }
      }

      await start()
      // Whatever the previous server left half-way settles: no sandbox starting, stopping, pausing.
      const settled = await waitFor(async () => {
        const l = await listed()
        return l.every((s) => s.state === 'running' || s.state === 'paused') && l
      }, 60_000, 'every sandbox to settle')
      const byId = new Map(settled.map((s) => [s.id, s]))
      for (const [id, k] of known) {
        const s = byId.get(id)
        if (!s) {
          // Only a kill cut by the crash may have taken it.
          assert.equal(k.paused, undefined, `round ${round} (seed ${SEED}): ${id} was lost`)
          assert.deepEqual(await leftovers(id, home), [], `${id} went and left nothing`)
          known.delete(id)
          continue
        }
        if (k.paused !== undefined) assert.equal(s.state, k.paused ? 'paused' : 'running', `round ${round}: ${id} is ${s.state}${historyOf(k)}`)
        k.paused = s.state === 'paused'
        if (k.paused) k.hold = undefined // a pause (answered or not) closes its holds
        if (!k.paused && k.endAt !== undefined) assert.equal(s.endAt, k.endAt, `round ${round}: ${id}'s deadline${historyOf(k)}`)
        k.endAt = s.endAt
        k.history.push(`r${round} after the restart: ${s.state}, endAt ${s.endAt}`)
        if (k.hold) assert.equal((await call('PUT', `/api/v1/sandboxes/${id}/holds/${k.hold}`)).status, 200, `round ${round}: ${id}'s hold renews${historyOf(k)}`)
      }
      for (const s of settled) {
        if (known.has(s.id)) continue
        // A create cut by the crash that got through: a whole sandbox, adopted as any other.
        assert.ok(cutCreates.has(`${s.metadata.round}/${s.metadata.n}`), `round ${round}: ${s.id} (${JSON.stringify(s.metadata)}) was never asked for`)
        counts.adopted++
        known.set(s.id, { paused: s.state === 'paused', files: new Map(), endAt: s.endAt, history: [`r${round} adopted (a create cut by the kill), ${s.state}, endAt ${s.endAt}`] })
      }
      for (const [id, k] of known) {
        if (k.paused) continue
        assert.equal((await run(id, 'true', opts())).exitCode, 0, `round ${round}: ${id} runs commands`)
        for (const [file, hash] of k.files) assert.equal(await readBack(id, file), hash, `round ${round}: ${file} in ${id} reads back whole`)
        // A sandbox whose hold was never answered lives on its deadline: give it one.
        if (k.endAt === null && !k.hold) {
          const r = await call<{ endAt: string }>('POST', `/api/v1/sandboxes/${id}/keep-alive`, { ms: 3_600_000 })
          k.endAt = r.json.endAt
          k.history.push(`r${round} given a deadline, endAt ${r.json.endAt}`)
        }
      }
      // Builds cut by the crash end as failed (never left building), and their sandboxes go.
      await waitFor(async () => proof.leaked().length === 0 || undefined, 30_000, 'nothing leaked').catch(() => {
        assert.deepEqual(proof.leaked(), [], `round ${round} (seed ${SEED}): leaked`)
      })
      counts.rounds++
    }
    // At the end: everything killed leaves nothing at all.
    for (const id of known.keys()) assert.equal((await call('DELETE', `/api/v1/sandboxes/${id}`)).status, 204)
    for (const id of known.keys()) assert.deepEqual(await leftovers(id, home), [], `${id} left nothing`)
    known.clear()
    console.log(`faults: ${JSON.stringify(counts)}, cut by kind ${JSON.stringify(cutBy)}, seed ${SEED}`)
  })

  test('all runtime state gone at once, as after a host restart: running sandboxes kept paused from their files (memory lost), paused ones too; each resumes with its files; nothing leaked', async () => {
    const create = async (body: object) => (await call<{ id: string }>('POST', '/api/v1/sandboxes', { metadata: { suite: 'faults' }, ...body })).json.id
    const [running, held, memory, files] = [await create({ keepAliveMs: 600_000 }), await create({ hold: true }), await create({ keepAliveMs: 600_000 }), await create({ keepAliveMs: 600_000 })]
    for (const id of [running, held, memory, files]) await run(id, `echo kept-${id} > /home/user/kept`, opts())
    assert.equal((await call('POST', `/api/v1/sandboxes/${memory}/pause`, {})).status, 200)
    assert.equal((await call('POST', `/api/v1/sandboxes/${files}/pause`, { keepMemory: false })).status, 200)
    await proof.stop('SIGKILL')

    // What a reboot takes: every process, mount, loop device, cgroup, network device and rule; and
    // the host's boot id changes. The files on disk stay.
    for (const id of fs.readdirSync(path.join(home, 'sandboxes'))) {
      const freezer = `/sys/fs/cgroup/freezer/sandlot/${id}/freezer.state`
      if (fs.existsSync(freezer)) fs.writeFileSync(freezer, 'THAWED')
      const init = Number(fs.readFileSync(path.join(home, 'sandboxes', id, 'init.pid'), 'utf8').trim() || NaN)
      if (init) {
        try {
          process.kill(init, 'SIGKILL')
        } catch {}
        await waitFor(async () => !fs.existsSync(`/proc/${init}`), 10_000, `the init of ${id} to end`)
      }
    }
    const mounts = fs.readFileSync('/proc/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '')
    for (const m of mounts.filter((m) => m.startsWith(`${home}/`)).sort().reverse()) execFileSync('umount', ['-l', m])
    for (const dev of fs.readdirSync('/sys/block').filter((d) => d.startsWith('loop'))) {
      let backing = ''
      try {
        backing = fs.readFileSync(`/sys/block/${dev}/loop/backing_file`, 'utf8')
      } catch {}
      if (backing.startsWith(`${home}/`)) execFileSync('losetup', ['-d', `/dev/${dev}`])
    }
    for (const id of [...proof.ids(), ...fs.readdirSync(path.join(home, 'sandboxes'))]) {
      for (const c of ['memory', 'pids', 'cpu', 'freezer', 'cpuset', 'cpuacct', 'blkio', 'devices', 'net_cls', 'perf_event', 'hugetlb', 'rdma', 'misc']) {
        if (fs.existsSync(`/sys/fs/cgroup/${c}/sandlot/${id}`)) fs.rmdirSync(`/sys/fs/cgroup/${c}/sandlot/${id}`)
      }
    }
    for (const link of fs.readdirSync('/sys/class/net').filter((l) => l.startsWith(proof.vethPrefix()) || l === bridge)) execFileSync('ip', ['link', 'del', link])
    for (const family of ['inet', 'bridge']) execFileSync('sh', ['-c', `nft delete table ${family} sandlot_${bridge} 2>/dev/null || true`])
    const db = new Database(path.join(home, 'sandlot.db'))
    db.prepare("UPDATE settings SET value = 'a-boot-before-this-one' WHERE key = 'host_boot_id'").run()
    db.close()

    await start()
    const after = new Map((await listed()).map((s) => [s.id, s as Listed & { paused?: { memoryLost: boolean; keepMemory: boolean } }]))
    for (const id of [running, held, memory]) {
      assert.equal(after.get(id)?.state, 'paused', `${id} is kept paused`)
      assert.equal(after.get(id)?.paused?.memoryLost, true, `${id} says its memory was lost`)
    }
    assert.equal(after.get(files)?.state, 'paused')
    assert.equal(after.get(files)?.paused?.memoryLost, false, 'a files pause lost nothing')
    for (const id of [running, held, memory, files]) {
      assert.equal((await call('POST', `/api/v1/sandboxes/${id}/resume`, { keepAliveMs: 60_000 })).status, 200)
      assert.equal((await run(id, 'cat /home/user/kept', opts())).stdout, `kept-${id}\n`)
    }
    await waitFor(async () => proof.leaked().length === 0 || undefined, 30_000, 'nothing leaked').catch(() => assert.deepEqual(proof.leaked(), []))
    for (const id of [running, held, memory, files]) {
      assert.equal((await call('DELETE', `/api/v1/sandboxes/${id}`)).status, 204)
      assert.deepEqual(await leftovers(id, home), [])
    }
  })
})

describe('a resume cut by the kill once the sandbox runs again', () => {
  after(async () => {
    if (proof.running) await proof.stop('SIGTERM')
  })

  test('the next server keeps it running with the deadline the resume asked for, not the one from before its pause, and its files', async () => {
    await start()
    const made = await call<{ id: string }>('POST', '/api/v1/sandboxes', { metadata: { suite: 'faults' }, keepAliveMs: 600_000 })
    const id = made.json.id
    try {
      await run(id, 'echo resumed > /home/user/kept', opts())
      assert.equal((await call('POST', `/api/v1/sandboxes/${id}/pause`, {})).status, 200)
      await proof.stop('SIGKILL')
      // Where the kill fell: the container thawed, the store still saying resuming with the
      // deadline the resume gave (an hour on), the one from before the pause already passed.
      const v1 = `/sys/fs/cgroup/freezer/sandlot/${id}/freezer.state`
      if (fs.existsSync(v1)) fs.writeFileSync(v1, 'THAWED')
      else fs.writeFileSync(`/sys/fs/cgroup/sandlot/${id}/cgroup.freeze`, '0')
      const asked = Date.now() + 3_600_000
      const db = new Database(path.join(home, 'sandlot.db'))
      const pause = JSON.parse(db.prepare('SELECT pause FROM sandboxes WHERE id = ?').pluck().get(id) as string)
      db.prepare("UPDATE sandboxes SET state = 'resuming', pause = ?, end_at = ? WHERE id = ?").run(JSON.stringify({ ...pause, resumeEndAt: asked }), Date.now() - 60_000, id)
      db.close()

      await start()
      const s = (await call<Listed>('GET', `/api/v1/sandboxes/${id}`)).json
      assert.equal(s.state, 'running')
      assert.ok(s.endAt && Math.abs(Date.parse(s.endAt) - asked) < 1000, `its deadline is the resume's (${new Date(asked).toISOString()}), not ${s.endAt}`)
      // Past the moment the old deadline would have destroyed it, it still answers with its files.
      await new Promise((r) => setTimeout(r, 1500))
      assert.equal((await run(id, 'cat /home/user/kept', opts())).stdout, 'resumed\n')
    } finally {
      await call('DELETE', `/api/v1/sandboxes/${id}`)
    }
    assert.deepEqual(await leftovers(id, home), [])
  })
})

describe('the agent killed inside a sandbox', () => {
  test('root in the sandbox kills its agent, again and again, then everything (kill -9 -1): it is started again, the sandbox keeps its files, processes and env vars, and its log says so', async () => {
    // From the pool when there is one: its env vars came through the agent's POST /init.
    const { id } = await createSandbox({ envVars: { KEPT: 'yes' } })
    try {
      await run(id, 'echo before > /home/user/kept')
      const sleeper = await startBackground(id, 'sleep 3600')
      const back = (after: string) => waitFor(() => run(id, `echo $KEPT; cat /home/user/kept; ps -o pid= -p ${sleeper} || echo gone`).catch(() => undefined), 15_000, `the agent to be back after ${after}`)
      for (let i = 1; i <= 3; i++) {
        // The command that kills it dies with it: its stream ends one way or another.
        await run(id, "pkill -9 -f '^/opt/sandlot/lib/ld\\.so .*agent\\.mjs$'", { user: 'root' }).catch(() => {})
        const r = await back(`kill ${i}`)
        assert.deepEqual(r.stdout.split('\n').map((l) => l.trim()), ['yes', 'before', String(sleeper), ''], `after kill ${i}`)
      }
      // Everything root may kill: every process but the init (and so the sleeper too).
      await run(id, 'kill -9 -1', { user: 'root' }).catch(() => {})
      assert.deepEqual((await back('kill -9 -1')).stdout.split('\n').map((l) => l.trim()), ['yes', 'before', 'gone', ''])
      assert.equal((await api('GET', `/api/v1/sandboxes/${id}`)).json.state, 'running')
      const logged = await waitFor(async () => {
        const l = await api<{ logs: { message: string; level: string }[] }>('GET', `/api/v1/sandboxes/${id}/logs`)
        return l.json.logs.some((e) => e.level === 'warn' && /agent ended .* started again/.test(e.message)) && l
      }, 10_000, 'the restart in the sandbox log')
      assert.ok(logged)
    } finally {
      await killSandbox(id)
    }
    assert.deepEqual(await leftovers(id), [])
  })
})
