// The lifetime rules (pure): keepAlive, E2B timeouts, connect and refresh, and v2 list paging.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { ENVD_VERSION as AGENT_ENVD_VERSION } from '../packages/agent/src/config.js'
import { listPage } from '../packages/server/src/api/e2b.js'
import { ENVD_VERSION } from '../packages/server/src/api/serialize.js'
import { e2bConnectDeadline, e2bRefreshDeadline, e2bTimeoutDeadline, isAlive, keepAliveDeadline } from '../packages/server/src/lifecycle/lifetime.js'
import type { SandboxState } from '../packages/server/src/lifecycle/manager.js'

const limits = { keepAliveLimitMs: 3_600_000, maxLifetimeMs: 3_600_000 }
const H = 3_600_000
const now = 1_000_000_000

describe('lifetime rules', () => {
  test('a sandbox lives while held or before its deadline', () => {
    assert.equal(isAlive(null, 1, now), true)
    assert.equal(isAlive(null, 0, now), false)
    assert.equal(isAlive(now + 1, 0, now), true)
    assert.equal(isAlive(now, 0, now), false)
  })

  test('keepAlive: 0 to the limit from now; beyond it the error names the limit', () => {
    assert.equal(keepAliveDeadline(0, now, limits), now)
    assert.equal(keepAliveDeadline(H, now, limits), now + H)
    assert.throws(() => keepAliveDeadline(H + 1, now, limits), /limit of 3600000 ms \(1 hour\)/)
    assert.throws(() => keepAliveDeadline(-1, now, limits), /0 or more/)
    assert.throws(() => keepAliveDeadline(1.5, now, limits), /whole number/)
    assert.throws(() => keepAliveDeadline(10, now, { ...limits, keepAliveLimitMs: 5 }), /limit of 5 ms/)
  })

  test('E2B timeout: may shorten, clamped to the maximum lifetime from start', () => {
    const started = now - 10_000
    assert.equal(e2bTimeoutDeadline(5_000, started, now, limits), now + 5_000)
    assert.equal(e2bTimeoutDeadline(H, started, now, limits), started + H, 'clamped to start + 1 h')
    assert.throws(() => e2bTimeoutDeadline(H + 1000, started, now, limits), /Timeout cannot be greater than 1 hour/)
    assert.throws(() => e2bTimeoutDeadline(0, started, now, limits), /positive/)
    assert.throws(() => e2bTimeoutDeadline(1000, now - H, now, limits), /Max instance length exceeded/)
  })

  test('E2B connect never shortens; refresh extends by at least 15 s', () => {
    assert.equal(e2bConnectDeadline(5_000, now + 60_000, now, now, limits), now + 60_000)
    assert.equal(e2bConnectDeadline(120_000, now + 60_000, now, now, limits), now + 120_000)
    assert.equal(e2bRefreshDeadline(0, now + 1000, now, now, limits), now + 15_000)
    assert.equal(e2bRefreshDeadline(60_000, now + 90_000, now, now, limits), now + 90_000)
    assert.equal(e2bRefreshDeadline(3_600_000, null, now - 1000, now, limits), now - 1000 + H)
  })

  test('the server reports the envd version its agent implements', () => {
    assert.equal(ENVD_VERSION, AGENT_ENVD_VERSION)
  })
})

describe('v2 list paging', () => {
  const sandbox = (id: string, startedAt: number, metadata: Record<string, string> = {}, state: SandboxState['state'] = 'running') => ({ id, startedAt, metadata, template: 'base', state }) as SandboxState
  const all = [sandbox('ia', 3), sandbox('ib', 2, { app: 'x' }), sandbox('ic', 2, { app: 'x' }), sandbox('id', 1)]
  const ids = (p: { items: SandboxState[] }) => p.items.map((s) => s.id)

  test('newest first by default, ties by id; a token only while more remain', () => {
    const p1 = listPage(all, { limit: '2' })
    assert.deepEqual(ids(p1), ['ia', 'ib'])
    assert.ok(p1.nextToken)
    const p2 = listPage(all, { limit: '2', nextToken: p1.nextToken })
    assert.deepEqual(ids(p2), ['ic', 'id'])
    assert.equal(p2.nextToken, undefined)
    assert.deepEqual(ids(listPage(all, {})), ['ia', 'ib', 'ic', 'id'])
  })

  test('asc order, filters, and bad input', () => {
    assert.deepEqual(ids(listPage(all, { order: 'asc' })), ['id', 'ib', 'ic', 'ia'])
    assert.deepEqual(ids(listPage(all, { metadata: 'app=x' })), ['ib', 'ic'])
    assert.deepEqual(ids(listPage(all, { state: 'paused' })), [])
    // Pausing counts as paused, as on E2B.
    const withPaused = [...all, sandbox('ie', 0, {}, 'paused'), sandbox('if', 0, {}, 'pausing')]
    assert.deepEqual(ids(listPage(withPaused, { state: 'paused' })), ['ie', 'if'])
    assert.deepEqual(ids(listPage(withPaused, { state: 'running' })), ['ia', 'ib', 'ic', 'id'])
    assert.deepEqual(ids(listPage(all, { state: 'running,paused', template: 'other' })), [])
    const asc = listPage(all, { order: 'asc', limit: 1 })
    assert.throws(() => listPage(all, { nextToken: asc.nextToken }), /same order/)
    assert.throws(() => listPage(all, { nextToken: 'garbage' }), /Invalid nextToken/)
    assert.throws(() => listPage(all, { limit: '0' }), /limit/)
    assert.throws(() => listPage(all, { limit: '101' }), /limit/)
    assert.throws(() => listPage(all, { order: 'sideways' }), /order/)
    assert.throws(() => listPage(all, { state: 'sleeping' }), /state/)
    assert.throws(() => listPage(all, { startedAfter: 'yesterday' }), /startedAfter/)
  })
})
