// The one owner of sandbox state: create, deadlines, kill, and re-adoption after a daemon restart.
import type { Logger } from 'pino'
import type { Config, Limits } from '../config.js'
import { badRequest, sandboxNotFound, unavailable } from '../errors.js'
import type { RuntimeDriver } from '../runtime/driver.js'
import type { SandboxRow, Store } from '../store/db.js'
import type { TemplateRegistry } from '../templates/registry.js'
import { accessTokenFor, newSandboxId } from './ids.js'

const WATCHDOG_INTERVAL_MS = 2000

export interface CreateRequest {
  template?: string
  metadata?: Record<string, string>
  envVars?: Record<string, string>
  cpuCount?: number
  memoryMB?: number
  pids?: number
  /** Destroy the sandbox this long after creation; absent = lives until killed. */
  timeoutMs?: number
}

export class SandboxManager {
  private deadlines = new Map<string, NodeJS.Timeout>()
  private watchdog: NodeJS.Timeout | undefined
  private killing = new Map<string, Promise<void>>()
  private ready = false
  private notReadyReason = 'the server is starting'
  /** Called when a sandbox is gone, so the proxy can drop its connections. */
  onDestroyed: (id: string) => void = () => {}

  constructor(
    private readonly store: Store,
    private readonly driver: RuntimeDriver,
    private readonly templates: TemplateRegistry,
    private readonly config: Config,
    private readonly log: Logger,
    private readonly tokenSeed: string,
  ) {}

  isReady(): { ready: boolean; reason: string } {
    return { ready: this.ready, reason: this.notReadyReason }
  }

  setNotReady(reason: string): void {
    this.ready = false
    this.notReadyReason = reason
  }

  /** Builds the base template if needed, proves the runtime works, and re-adopts surviving sandboxes. */
  async prepare(): Promise<void> {
    this.notReadyReason = 'preparing the base template'
    const base = await this.templates.ensure()
    this.notReadyReason = `checking the runtime ${this.driver.name}`
    await this.driver.check(base)
    await this.readopt()
    this.templates.prune(new Set(this.store.listSandboxes().map((s) => s.templateRootfs)))
    this.watchdog = setInterval(() => this.reapDead(), WATCHDOG_INTERVAL_MS)
    this.watchdog.unref()
    this.ready = true
  }

  /** A sandbox whose init died (agent crashed, killed from the host) is cleaned up, never left half-alive. */
  private reapDead(): void {
    for (const s of this.store.listSandboxes()) {
      if (s.state !== 'running' || this.killing.has(s.id) || this.driver.alive(s.id)) continue
      this.log.warn({ sandboxId: s.id }, 'sandbox died on its own; cleaning up')
      void this.kill(s.id).catch((err) => this.log.error({ err, sandboxId: s.id }, 'cleanup of a dead sandbox failed'))
    }
  }

  private async readopt(): Promise<void> {
    const known = new Set<string>()
    for (const s of this.store.listSandboxes()) {
      known.add(s.id)
      const state = s.state === 'running' ? await this.driver.state(s.id) : 'missing'
      if (state === 'running') {
        this.log.info({ sandboxId: s.id }, 're-adopted running sandbox')
        this.armDeadline(s)
      } else {
        this.log.warn({ sandboxId: s.id, state: s.state }, 'sandbox did not survive; cleaning up')
        await this.destroyNow(s.id)
      }
    }
    for (const id of await this.driver.list()) {
      if (known.has(id)) continue
      this.log.warn({ sandboxId: id }, 'removing leftover sandbox unknown to the store')
      await this.driver.destroy(id)
    }
  }

  private limitsFrom(req: CreateRequest): Limits {
    const pick = (name: keyof Limits, value: number | undefined): number => {
      if (value === undefined) return this.config.defaultLimits[name]
      if (!Number.isInteger(value) || value < 1) throw badRequest(`${name} must be a positive integer`)
      if (value > this.config.maxLimits[name]) throw badRequest(`${name} must be at most ${this.config.maxLimits[name]} on this server`)
      return value
    }
    const limits = { cpuCount: pick('cpuCount', req.cpuCount), memoryMB: pick('memoryMB', req.memoryMB), pids: pick('pids', req.pids) }
    if (limits.memoryMB < 64) throw badRequest('memoryMB must be at least 64')
    if (limits.pids < 32) throw badRequest('pids must be at least 32')
    return limits
  }

  async create(req: CreateRequest): Promise<SandboxRow> {
    const { ready, reason } = this.isReady()
    if (!ready) throw unavailable(`The server cannot create sandboxes yet: ${reason}. Try again shortly.`)
    const template = req.template ?? 'base'
    const rootfs = this.templates.rootfsOf(template)
    const limits = this.limitsFrom(req)
    if (req.timeoutMs !== undefined && (!Number.isFinite(req.timeoutMs) || req.timeoutMs <= 0)) throw badRequest('timeout must be a positive number')
    const id = newSandboxId()
    const now = Date.now()
    const row: SandboxRow = {
      id,
      template,
      templateRootfs: rootfs,
      state: 'starting',
      metadata: req.metadata ?? {},
      envVars: req.envVars ?? {},
      ...limits,
      startedAt: now,
      endAt: req.timeoutMs === undefined ? null : now + req.timeoutMs,
      accessToken: accessTokenFor(this.tokenSeed, id),
    }
    // Recorded before the runtime starts it, so a crash mid-create is cleaned up on restart.
    this.store.insertSandbox(row)
    try {
      await this.driver.create({ id, templateRootfs: rootfs, limits, envVars: row.envVars, accessToken: row.accessToken })
    } catch (err) {
      this.log.error({ sandboxId: id, err }, 'sandbox failed to start')
      await this.destroyNow(id)
      throw err
    }
    this.store.setSandboxState(id, 'running')
    row.state = 'running'
    this.armDeadline(row)
    this.log.info({ sandboxId: id, template, ms: Date.now() - now }, 'sandbox created')
    return row
  }

  /** A running sandbox, or SandboxNotFound. */
  get(id: string): SandboxRow {
    const s = this.store.getSandbox(id)
    if (!s || s.state !== 'running' || this.killing.has(id)) throw sandboxNotFound(id)
    return s
  }

  /** The sandbox if it is running, without throwing (for the data plane's hot path). */
  find(id: string): SandboxRow | undefined {
    const s = this.store.getSandbox(id)
    return s && s.state === 'running' && !this.killing.has(id) ? s : undefined
  }

  list(): SandboxRow[] {
    return this.store.listSandboxes().filter((s) => s.state === 'running' && !this.killing.has(s.id))
  }

  /** Sets when the sandbox is destroyed (null: never by itself). */
  setDeadline(id: string, endAt: number | null): SandboxRow {
    const s = this.get(id)
    this.store.setSandboxEndAt(id, endAt)
    s.endAt = endAt
    this.armDeadline(s)
    return s
  }

  private armDeadline(s: SandboxRow): void {
    clearTimeout(this.deadlines.get(s.id))
    this.deadlines.delete(s.id)
    if (s.endAt === null) return
    // setTimeout holds at most ~24.8 days; longer deadlines re-arm when the first timer fires.
    const delay = Math.min(Math.max(0, s.endAt - Date.now()), 2 ** 31 - 1)
    const timer = setTimeout(() => {
      const current = this.store.getSandbox(s.id)
      if (!current || current.endAt === null) return
      if (current.endAt > Date.now()) return this.armDeadline(current)
      this.log.info({ sandboxId: s.id }, 'sandbox reached its deadline')
      void this.kill(s.id).catch((err) => this.log.error({ err, sandboxId: s.id }, 'kill at deadline failed'))
    }, delay)
    timer.unref()
    this.deadlines.set(s.id, timer)
  }

  async kill(id: string): Promise<void> {
    const pending = this.killing.get(id)
    if (pending) return pending
    if (!this.store.getSandbox(id)) throw sandboxNotFound(id)
    const p = this.destroyNow(id).finally(() => this.killing.delete(id))
    this.killing.set(id, p)
    return p
  }

  private async destroyNow(id: string): Promise<void> {
    clearTimeout(this.deadlines.get(id))
    this.deadlines.delete(id)
    this.store.setSandboxState(id, 'stopping')
    this.onDestroyed(id)
    await this.driver.destroy(id)
    this.store.deleteSandbox(id)
    this.log.info({ sandboxId: id }, 'sandbox destroyed')
  }

  /** Stops deadline timers; sandboxes keep running (they outlive the daemon). */
  shutdown(): void {
    clearInterval(this.watchdog)
    for (const t of this.deadlines.values()) clearTimeout(t)
    this.deadlines.clear()
  }
}
