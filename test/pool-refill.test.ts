// The pool's refill yields to creates (lifecycle/pool.ts, pure scheduling): while it still has a
// sandbox ready, it starts one only once no create has been served for its quiet time; an empty pool
// starts one at once; never while a create is in flight; one at a time; and it fills once the
// creates stop. The host is a stand-in that records when each start
// began (the starts themselves are the real pool's business: test/pool.test.ts). Every check is a
// lower bound on a wait (a timer never fires early), so a busy machine cannot break it.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { pino } from 'pino'
import type { Limits } from '../packages/server/src/config.js'
import { SandboxPool, type PoolHost } from '../packages/server/src/lifecycle/pool.js'
import type { ResolvedTemplate } from '../packages/server/src/templates/registry.js'
import { waitFor } from './helpers.js'

const QUIET = 120
const template = { name: 'base', layers: ['/base'], config: {} } as unknown as ResolvedTemplate
const limits = { cpuCount: 1, memoryMB: 512, pids: 1024, diskSizeMB: 2048 } as Limits
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** A host whose starts take `startMs` and are recorded, and whose creates the test marks. */
function fakeHost(startMs = 30) {
  let next = 0
  const host = {
    busy: false as boolean,
    lastCreateAt: 0,
    starts: [] as { at: number; sinceCreate: number; busy: boolean; concurrent: number }[],
    running: 0,
    resolve: () => template,
    buildsItself: () => false,
    defaultLimits: () => limits,
    alive: () => true,
    destroyPooled: async () => {},
    async startPooled() {
      host.starts.push({ at: Date.now(), sinceCreate: Date.now() - host.lastCreateAt, busy: host.busy, concurrent: ++host.running })
      await sleep(startMs)
      host.running--
      return `sb${++next}`
    },
  } satisfies PoolHost & Record<string, unknown>
  return host
}

const ready = (pool: SandboxPool) => pool.status().find((p) => p.template === 'base')?.ready ?? 0

/** A pool of `size` on a stand-in host, started and filled; `before`: the starts that filled it. */
async function filledPool(size: number) {
  const host = fakeHost()
  const pool = new SandboxPool(host, new Map([['base', size]]), pino({ level: 'silent' }), QUIET)
  pool.start()
  await waitFor(async () => ready(pool) === size, 10_000, 'the pool filled')
  return { host, pool, before: host.starts.length }
}

/** A create served from the pool, as the manager does it: its time noted, a sandbox taken. */
function handOut(host: ReturnType<typeof fakeHost>, pool: SandboxPool): number {
  host.lastCreateAt = Date.now()
  pool.take(template, limits)
  return host.lastCreateAt
}

describe('the pool refill yields to creates', () => {
  test('no start while hand-outs keep coming, none within the quiet time after the last, one at a time; then it fills', async () => {
    const { host, pool, before } = await filledPool(3)
    // Hand-outs every 40 ms while the pool still has one ready (as a client creating one sandbox
    // after another): two of its three.
    const handOuts: number[] = []
    for (let i = 0; i < 2; i++) {
      handOuts.push(handOut(host, pool))
      await sleep(40)
    }
    const lastHandOut = handOuts.at(-1)!
    await waitFor(async () => ready(pool) === 3, 10_000, 'the pool refilled')
    const refills = host.starts.slice(before)
    assert.equal(refills.length, 2, 'two taken, two made')
    for (const s of refills) {
      assert.ok(s.sinceCreate >= QUIET - 1, `a start began ${s.sinceCreate} ms after a create`)
      assert.ok(s.at >= lastHandOut + QUIET - 1, 'no start before the hand-outs stopped')
      assert.equal(s.concurrent, 1, 'one start at a time')
    }
    await pool.drain()
  })

  test('an empty pool refills at once, without waiting for quiet, but one at a time', async () => {
    const { host, pool, before } = await filledPool(2)
    handOut(host, pool)
    handOut(host, pool)
    const emptied = Date.now()
    await waitFor(async () => ready(pool) === 2, 10_000, 'the pool refilled')
    const [first, second] = host.starts.slice(before)
    assert.ok(first && second, 'two made')
    assert.ok(first.at - emptied < QUIET, `the first start of the empty pool came ${first.at - emptied} ms after, not a quiet time`)
    assert.equal(first.concurrent, 1)
    assert.equal(second.concurrent, 1, 'one start at a time')
    // With one ready again, the second waits for the quiet time.
    assert.ok(second.sinceCreate >= QUIET - 1, `the second started ${second.sinceCreate} ms after the last create`)
    await pool.drain()
  })

  test('never while a create is in flight, empty or not; with one ready, the quiet time counts from its end', async () => {
    // Empty, a create in flight: nothing starts until it ends.
    const host = fakeHost()
    const pool = new SandboxPool(host, new Map([['base', 2]]), pino({ level: 'silent' }), QUIET)
    host.busy = true
    host.lastCreateAt = Date.now()
    pool.start()
    await sleep(QUIET * 3)
    assert.equal(host.starts.length, 0, 'nothing started while a create was being served')
    host.busy = false
    await waitFor(async () => ready(pool) === 2, 10_000, 'the pool filled')
    assert.equal(host.starts[0]!.busy, false)
    // One of two taken by a create still in flight: nothing starts meanwhile, nor within the quiet time after it.
    handOut(host, pool)
    host.busy = true
    await sleep(QUIET * 3)
    assert.equal(host.starts.length, 2, 'nothing started while a create was being served')
    const ended = Date.now()
    host.lastCreateAt = ended
    host.busy = false
    await waitFor(async () => ready(pool) === 2, 10_000, 'the pool refilled')
    assert.equal(host.starts.length, 3)
    assert.ok(host.starts[2]!.at >= ended + QUIET - 1, `started ${host.starts[2]!.at - ended} ms after the create ended`)
    assert.equal(host.starts[2]!.busy, false)
    await pool.drain()
  })
})
