// The manager's side of network settings, with a real SQLite store and stand-ins for the runtime and
// the enforcement (no sandboxes, no root): what create hands the runtime, updateNetwork's order
// (apply, then store), its failure and conflict cases, and the settings' life in the store
// (restart, and a database from before them).
import Database from 'better-sqlite3'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import { pino } from 'pino'
import type { Config } from '../packages/server/src/config.js'
import { SandlotError } from '../packages/server/src/errors.js'
import { SandboxManager, type NetworkEnforcer } from '../packages/server/src/lifecycle/manager.js'
import type { EgressPolicy } from '../packages/server/src/network/config.js'
import type { RuntimeDriver, SandboxSpec } from '../packages/server/src/runtime/driver.js'
import type { IdRanges } from '../packages/server/src/runtime/idmap.js'
import { Store } from '../packages/server/src/store/db.js'
import type { TemplateRegistry } from '../packages/server/src/templates/registry.js'
import { TemplateStore } from '../packages/server/src/store/templates.js'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sandlot-netmgr-'))
after(() => fs.rmSync(dir, { recursive: true, force: true }))

const limits = { cpuCount: 1, memoryMB: 256, pids: 256, diskSizeMB: 256 }
const config = { defaultLimits: limits, maxLimits: limits } as unknown as Config

class FakeDriver implements RuntimeDriver {
  readonly name = 'fake'
  specs: SandboxSpec[] = []
  running = new Set<string>()
  /** When set, create waits for it (a sandbox caught "starting"). */
  gate: Promise<void> | undefined
  async check(): Promise<void> {}
  async create(spec: SandboxSpec): Promise<void> {
    this.specs.push(spec)
    await this.gate
    this.running.add(spec.id)
  }
  async destroy(id: string): Promise<void> {
    this.running.delete(id)
  }
  async state(id: string) {
    return this.running.has(id) ? ('running' as const) : ('missing' as const)
  }
  alive(id: string): boolean {
    return this.running.has(id)
  }
  async list(): Promise<string[]> {
    return [...this.running]
  }
  async shutdown(): Promise<void> {}
  agentSocket(id: string): string {
    return `/nonexistent/${id}`
  }
}

class FakeEnforcer implements NetworkEnforcer {
  applied: { id: string; policy: EgressPolicy }[] = []
  /** Fails the next this many applies. */
  failing = 0
  /** When set, apply waits for it. */
  gate: Promise<void> | undefined
  async apply(id: string, policy: EgressPolicy): Promise<void> {
    await this.gate
    if (this.failing > 0) {
      this.failing--
      throw new Error('nft said no')
    }
    this.applied.push({ id, policy })
  }
}

const templates = {
  ensure: async () => '/rootfs',
  rootfsOf: () => '/rootfs',
  resolve: () => ({ name: 'base', layers: ['/rootfs'], config: { env: {}, workdir: null, user: 'user', startCmd: null, readyCmd: null } }),
  prune: () => {},
} as unknown as TemplateRegistry
const idRanges = {
  claim: () => ({ start: 100000, size: 65536, owner: 100000 }),
  release: () => {},
  adopt: () => true,
  sweep: () => {},
} as unknown as IdRanges

async function setUp(name: string, enforcer?: NetworkEnforcer) {
  const store = new Store(path.join(dir, `${name}.db`))
  const driver = new FakeDriver()
  // The registry's store of builds is the real one, on this test's database (create counts spawns there).
  const registry = Object.assign(Object.create(templates) as TemplateRegistry, { builds: new TemplateStore(store.db) })
  const manager = new SandboxManager(store, driver, registry, config, pino({ level: 'silent' }), 'seed', idRanges, enforcer)
  await manager.prepare()
  return { store, driver, manager }
}

const endAt = () => Date.now() + 3_600_000

describe('manager: network settings', () => {
  test('create stores the settings and hands the runtime their policy (open when none are given)', async (t) => {
    const { manager, driver, store } = await setUp('create')
    t.after(() => {
      manager.shutdown()
      store.close()
    })
    const plain = (await manager.create({ endAt: endAt() })).sandbox
    assert.deepEqual(plain.network, { allowOut: [], denyOut: [] })
    assert.equal(plain.allowInternetAccess, null)
    assert.deepEqual(driver.specs[0]!.egress, { allowOut: [], denyOut: [] })

    const network = { config: { allowOut: ['10.1.2.3/8', 'pypi.org'], denyOut: ['8.8.8.8/32'] }, allowInternetAccess: false }
    const ruled = (await manager.create({ endAt: endAt(), network })).sandbox
    assert.deepEqual(ruled.network, network.config)
    assert.equal(ruled.allowInternetAccess, false)
    assert.deepEqual(driver.specs[1]!.egress, { allowOut: ['10.0.0.0/8', 'pypi.org'], denyOut: ['0.0.0.0/0'] })
    assert.deepEqual(manager.get(ruled.id).network, network.config)
  })

  test('updateNetwork applies the policy, then stores the settings (a full replace)', async (t) => {
    const enforcer = new FakeEnforcer()
    const { manager, store } = await setUp('update', enforcer)
    t.after(() => {
      manager.shutdown()
      store.close()
    })
    const { sandbox } = await manager.create({ endAt: endAt(), network: { config: { allowOut: ['1.1.1.1/32'], denyOut: [] }, allowInternetAccess: false } })
    const updated = await manager.updateNetwork(sandbox.id, { config: { allowOut: [], denyOut: ['192.0.2.7/24'] }, allowInternetAccess: null })
    assert.deepEqual(enforcer.applied, [{ id: sandbox.id, policy: { allowOut: [], denyOut: ['192.0.2.0/24'] } }])
    assert.deepEqual(updated.network, { allowOut: [], denyOut: ['192.0.2.7/24'] })
    assert.equal(updated.allowInternetAccess, null)
    assert.deepEqual(store.getSandbox(sandbox.id)!.network, { allowOut: [], denyOut: ['192.0.2.7/24'] })
  })

  test('a failed apply: a 500 that says so, the previous policy put back, nothing stored', async (t) => {
    const enforcer = new FakeEnforcer()
    const { manager, store } = await setUp('failed', enforcer)
    t.after(() => {
      manager.shutdown()
      store.close()
    })
    const before = { config: { allowOut: ['1.1.1.1/32'], denyOut: ['0.0.0.0/0'] }, allowInternetAccess: true }
    const { sandbox } = await manager.create({ endAt: endAt(), network: before })
    enforcer.failing = 1
    await assert.rejects(manager.updateNetwork(sandbox.id, { config: { allowOut: [], denyOut: [] }, allowInternetAccess: false }), (e: SandlotError) => {
      assert.equal(e.status, 500)
      assert.equal(e.message, `Applying the new network configuration to sandbox "${sandbox.id}" failed (nft said no); its configuration is unchanged`)
      return true
    })
    assert.deepEqual(enforcer.applied, [{ id: sandbox.id, policy: { allowOut: ['1.1.1.1/32'], denyOut: ['0.0.0.0/0'] } }])
    assert.deepEqual(manager.get(sandbox.id).network, before.config)
    assert.equal(manager.get(sandbox.id).allowInternetAccess, true)

    // Putting it back fails too: still nothing stored, and the message says that as well.
    enforcer.failing = 2
    await assert.rejects(manager.updateNetwork(sandbox.id, { config: { allowOut: [], denyOut: [] }, allowInternetAccess: null }), /putting its previous rules back failed too/)
    assert.deepEqual(manager.get(sandbox.id).network, before.config)
  })

  test('updates of one sandbox run in order: the last one asked for is the one in force and stored', async (t) => {
    const enforcer = new FakeEnforcer()
    const { manager, store } = await setUp('order', enforcer)
    t.after(() => {
      manager.shutdown()
      store.close()
    })
    const { sandbox } = await manager.create({ endAt: endAt() })
    let open!: () => void
    enforcer.gate = new Promise((r) => (open = r))
    const updates = ['10.0.0.1/32', '10.0.0.2/32', '10.0.0.3/32'].map((cidr) => manager.updateNetwork(sandbox.id, { config: { allowOut: [cidr], denyOut: [] }, allowInternetAccess: null }))
    open()
    await Promise.all(updates)
    assert.deepEqual(enforcer.applied.map((a) => a.policy.allowOut[0]), ['10.0.0.1/32', '10.0.0.2/32', '10.0.0.3/32'])
    assert.deepEqual(manager.get(sandbox.id).network.allowOut, ['10.0.0.3/32'])
  })

  test('unknown: 404; starting or being killed: 409; killed while applying: 404, nothing stored', async (t) => {
    const enforcer = new FakeEnforcer()
    const { manager, store, driver } = await setUp('states', enforcer)
    t.after(() => {
      manager.shutdown()
      store.close()
    })
    const open = { config: { allowOut: [], denyOut: [] }, allowInternetAccess: null }
    await assert.rejects(manager.updateNetwork('i' + '0'.repeat(20), open), (e: SandlotError) => e.status === 404 && e.errorCode === 'sandbox_not_found')

    let started!: () => void
    driver.gate = new Promise((r) => (started = r))
    const creating = manager.create({ endAt: endAt() })
    await new Promise((r) => setImmediate(r))
    const startingId = driver.specs.at(-1)!.id
    await assert.rejects(manager.updateNetwork(startingId, open), (e: SandlotError) => e.status === 409 && /is starting/.test(e.message))
    started()
    driver.gate = undefined
    await creating

    const { sandbox } = await manager.create({ endAt: endAt() })
    let applied!: () => void
    enforcer.gate = new Promise((r) => (applied = r))
    const update = manager.updateNetwork(sandbox.id, { config: { allowOut: ['1.1.1.1/32'], denyOut: [] }, allowInternetAccess: null })
    await new Promise((r) => setImmediate(r)) // the update is applying
    const killing = manager.kill(sandbox.id)
    const next = manager.updateNetwork(sandbox.id, open)
    applied()
    await killing
    await assert.rejects(update, (e: SandlotError) => e.status === 404)
    await assert.rejects(next, (e: SandlotError) => e.status === 409 || e.status === 404)
    assert.equal(store.getSandbox(sandbox.id), undefined)
  })

  test('without an enforcer the settings are stored all the same', async (t) => {
    const { manager, store } = await setUp('no-enforcer')
    t.after(() => {
      manager.shutdown()
      store.close()
    })
    const { sandbox } = await manager.create({ endAt: endAt() })
    const updated = await manager.updateNetwork(sandbox.id, { config: { allowOut: ['example.com'], denyOut: ['0.0.0.0/0'] }, allowInternetAccess: true })
    assert.deepEqual(updated.network, { allowOut: ['example.com'], denyOut: ['0.0.0.0/0'] })
    assert.equal(updated.allowInternetAccess, true)
  })
})

describe('store: network settings', () => {
  test('survive closing and reopening the database', () => {
    const file = path.join(dir, 'reopen.db')
    const row = {
      id: 'iabc',
      template: 'base',
      templateRootfs: '/rootfs',
      state: 'running' as const,
      metadata: {},
      envVars: {},
      ...limits,
      startedAt: 1,
      endAt: null,
      accessToken: 't',
      ids: null,
      network: { allowOut: ['pypi.org'], denyOut: [], rules: { 'pypi.org': [{}] } },
      allowInternetAccess: false,
      ingress: { allowPublicTraffic: false, maskRequestHost: null },
      templateLayers: ['/rootfs'],
      pause: null,
      lifecycle: null,
      templateBuild: null,
    }
    let store = new Store(file)
    store.insertSandbox(row)
    store.close()
    store = new Store(file)
    assert.deepEqual(store.getSandbox('iabc'), row)
    store.setSandboxNetwork('iabc', { allowOut: [], denyOut: ['10.0.0.0/8'] }, true)
    store.close()
    store = new Store(file)
    const back = store.getSandbox('iabc')!
    assert.deepEqual(back.network, { allowOut: [], denyOut: ['10.0.0.0/8'] })
    assert.equal(back.allowInternetAccess, true)
    store.setSandboxNetwork('iabc', { allowOut: [], denyOut: [] }, null)
    assert.equal(store.getSandbox('iabc')!.allowInternetAccess, null)
    store.close()
  })

  test('a database from before network settings: its sandboxes have none (no rules, flag not given)', () => {
    const file = path.join(dir, 'old.db')
    // The schema as it was before sandbox networks and network settings (user_version 5).
    const old = new Database(file)
    old.exec(`CREATE TABLE sandboxes (id TEXT PRIMARY KEY, template TEXT NOT NULL, state TEXT NOT NULL, metadata TEXT NOT NULL,
      env_vars TEXT NOT NULL, cpu_count INTEGER NOT NULL, memory_mb INTEGER NOT NULL, pids INTEGER NOT NULL, started_at INTEGER NOT NULL,
      end_at INTEGER, access_token TEXT NOT NULL, template_rootfs TEXT NOT NULL DEFAULT '', id_range TEXT, disk_size_mb INTEGER NOT NULL DEFAULT 0);
      CREATE TABLE templates (name TEXT PRIMARY KEY, recipe_hash TEXT NOT NULL, rootfs TEXT NOT NULL, built_at INTEGER NOT NULL);
      CREATE TABLE api_keys (hash TEXT PRIMARY KEY, created_at INTEGER NOT NULL);
      CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE holds (id TEXT PRIMARY KEY, sandbox_id TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);
      INSERT INTO sandboxes (id, template, state, metadata, env_vars, cpu_count, memory_mb, pids, started_at, end_at, access_token)
        VALUES ('iold', 'base', 'running', '{}', '{}', 1, 256, 256, 1, 2, 't');
      PRAGMA user_version = 5;`)
    old.close()
    const store = new Store(file)
    const s = store.getSandbox('iold')!
    assert.deepEqual(s.network, { allowOut: [], denyOut: [] })
    assert.equal(s.allowInternetAccess, null)
    store.close()
  })
})
