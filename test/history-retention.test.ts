// Metrics and log retention against the real store (SQLite with the server's own migrations): the
// sampler's prune drops samples and log entries past the retention, of running and ended sandboxes
// alike, keeps the rest, and runs at most every 10 minutes; a sandbox's log keeps its newest lines.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import { pino } from 'pino'
import { SandboxLogs } from '../packages/server/src/lifecycle/logs.js'
import { MetricsSampler } from '../packages/server/src/lifecycle/metrics.js'
import type { SandboxRow } from '../packages/server/src/store/db.js'
import { Store } from '../packages/server/src/store/db.js'
import { HistoryStore, type MetricRow } from '../packages/server/src/store/history.js'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sandlot-history-'))
const stores: Store[] = []
after(() => {
  for (const s of stores) s.close()
  fs.rmSync(dir, { recursive: true, force: true })
})

function open(name: string): HistoryStore {
  const store = new Store(path.join(dir, `${name}.db`))
  stores.push(store)
  return new HistoryStore(store.db)
}

const H = 3_600_000
const sample = (sandboxId: string, at: number): MetricRow => ({ sandboxId, at, cpuCount: 1, cpuUsedPct: 1, memUsed: 1, memTotal: 2, memCache: 0, diskUsed: 1, diskTotal: 2 })

describe('history retention (the real store)', () => {
  test("past the retention, samples and log entries go at the sampler's prune, at most every 10 minutes; newer ones stay", async () => {
    const history = open('prune')
    const logs = new SandboxLogs(history, 10_000)
    const now = Date.now()
    const live = { id: 'live', cpuCount: 1, memoryMB: 512 } as SandboxRow
    const usage = { cpuUsec: 0, memUsed: 1, memTotal: 2, memCache: 0, diskUsed: 1, diskTotal: 2 }
    const sampler = new MetricsSampler({ store: history, driver: { usage: async () => usage }, running: () => [live], log: pino({ level: 'silent' }), intervalMs: 5000, retentionMs: 24 * H })
    const oldLog = (id: string, at: number) => history.insertLog({ sandboxId: id, seq: history.lastLogSeq(id) + 1, at, level: 'info', message: `at ${at}`, fields: {} })
    history.insertMetrics([sample('ended', now - 25 * H), sample('ended', now - 23 * H), sample('live', now - 25 * H), sample('live', now - 1000), sample('gone', now - 30 * H)])
    for (const [id, at] of [['ended', now - 25 * H], ['ended', now - 23 * H], ['live', now - 25 * H], ['gone', now - 30 * H]] as const) oldLog(id, at)
    logs.append('live', 'info', 'sandbox created')

    await sampler.sample(now)
    const ats = (id: string) => history.metrics(id, 0, now + H).map((m) => m.at)
    const messages = (id: string) => history.logs(id, { limit: 100 }).map((e) => e.message)
    assert.deepEqual(ats('ended'), [now - 23 * H], 'an ended sandbox keeps what is within the retention')
    assert.deepEqual(ats('live'), [now - 1000], "a running one's old samples go too (its first reading is only a baseline)")
    assert.deepEqual(messages('ended'), [`at ${now - 23 * H}`])
    assert.deepEqual(messages('live'), ['sandbox created'])
    assert.equal(history.hasHistory('gone'), false, 'a sandbox whose history is all past the retention is forgotten')
    assert.equal(history.hasHistory('ended'), true)

    // What ages past the retention meanwhile waits for the next prune, 10 minutes after the last.
    history.insertMetrics([sample('ended', now - 25 * H)])
    oldLog('ended', now - 25 * H)
    await sampler.sample(now + 5000)
    assert.deepEqual(ats('ended'), [now - 25 * H, now - 23 * H], 'no prune before 10 minutes have passed')
    assert.equal(messages('ended').length, 2)
    await sampler.sample(now + 10 * 60_000)
    assert.deepEqual(ats('ended'), [now - 23 * H])
    assert.deepEqual(messages('ended'), [`at ${now - 23 * H}`])
    assert.equal(ats('live').length, 3, 'the running sandbox was sampled at each round after its first')
  })

  test("a sandbox's log keeps its newest lines: past the cap, the oldest go (trimmed every 100 entries)", () => {
    const history = open('cap')
    const logs = new SandboxLogs(history, 200)
    for (let i = 1; i <= 350; i++) logs.append('capped', 'info', `line ${i}`)
    const kept = history.logs('capped', { limit: 1000 })
    assert.equal(kept.length, 250, 'trimmed to the cap at entry 300, then 50 more')
    assert.equal(kept[0]!.message, 'line 101')
    assert.equal(kept.at(-1)!.message, 'line 350')
    assert.equal(history.lastLogSeq('capped'), 350, 'numbering goes on')
  })
})
