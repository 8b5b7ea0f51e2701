// The one owner of sandbox state: create, holds and deadlines, kill, and re-adoption after a
// daemon restart. A sandbox lives while a client holds it or its deadline is ahead (lifetime.ts).
import fs from 'node:fs'
import type { Logger } from 'pino'
import type { Config, Limits } from '../config.js'
import { SandlotError, badRequest, conflict, sandboxNotFound, unavailable } from '../errors.js'
import { egressPolicyOf, type EgressPolicy, type SandboxNetwork } from '../network/config.js'
import { isOpenPolicy } from '../network/policy.js'
import { MIN_DISK_MB, type RuntimeDriver } from '../runtime/driver.js'
import type { IdRanges } from '../runtime/idmap.js'
import type { HoldRow, SandboxRow, Store } from '../store/db.js'
import { AgentClient } from '../runtime/agent-client.js'
import { startAndWaitReady } from '../templates/build.js'
import type { ResolvedTemplate, TemplateRegistry } from '../templates/registry.js'
import { accessTokenFor, newHoldId, newSandboxId, trafficTokenFor } from './ids.js'
import type { IngressConfig } from './ingress.js'
import { HOLD_TTL_MS, isAlive } from './lifetime.js'
import { AUTO_RESUME_MIN_MS, PauseControl, wakesOnRequest, type Lifecycle, type ResumeOptions } from './pause.js'
import type { SandboxLogSink } from './logs.js'

const WATCHDOG_INTERVAL_MS = 2000
/** A watchdog tick this much later than due means the daemon was stalled, not that clients were. */
const STALL_GRACE_MS = 1000

export interface CreateRequest {
  template?: string
  metadata?: Record<string, string>
  envVars?: Record<string, string>
  cpuCount?: number
  memoryMB?: number
  pids?: number
  /** Size of the sandbox's own filesystem in MiB (its writable layer; inodes follow from it). */
  diskSizeMB?: number
  /** The deadline (epoch ms), computed by the API's lifetime rules; null = none. */
  endAt: number | null
  /** Open a hold for the caller in the same step, so the sandbox is never unheld in between. */
  hold?: boolean
  /** Its network settings, validated by the API (network/config.ts); absent: no rules, internet flag not given. */
  network?: SandboxNetwork
  /** Port previews: public or token-only, and the Host they see (ingress.ts); default public. */
  ingress?: IngressConfig
  /** What its deadline does (pause.ts); absent: it is killed. */
  lifecycle?: Lifecycle
}

/**
 * Applies a sandbox's egress policy to the running sandbox (the kernel side, network/). Optional:
 * without one the policy is only stored, and handed to the runtime at create.
 */
export interface NetworkEnforcer {
  /** Replaces the running sandbox's egress rules with `policy`; rejects if they could not be put in place. */
  apply(id: string, policy: EgressPolicy): Promise<void>
}

/** A sandbox with what the store does not keep in its row: its open holds. */
export interface SandboxState extends SandboxRow {
  holds: number
  /** The latest expiry among its holds (epoch ms), or null. */
  holdsUntil: number | null
}

const holdLapsed = (sandboxId: string) =>
  new SandlotError(404, 'hold_not_found', `This hold on sandbox "${sandboxId}" lapsed (it was not renewed for ${HOLD_TTL_MS / 1000} s); open a new one`)

/**
 * Environment variables as execve can carry them: a name is not empty and has no "=" or NUL, a value
 * has no NUL. Checked here, for both APIs, so a sandbox is never made with a config its agent would
 * refuse (the agent fails closed on a config it cannot use).
 */
function checkedEnvVars(envVars: Record<string, string>): Record<string, string> {
  for (const [name, value] of Object.entries(envVars)) {
    if (!name || name.includes('=') || name.includes('\0')) {
      throw badRequest(`envVars: ${JSON.stringify(name)} is not a valid environment variable name (it must be non-empty, without "=" or NUL)`)
    }
    if (typeof value !== 'string' || value.includes('\0')) throw badRequest(`envVars.${name}: the value must be a string without NUL characters`)
  }
  return envVars
}

export class SandboxManager {
  private deadlines = new Map<string, NodeJS.Timeout>()
  private watchdog: NodeJS.Timeout | undefined
  /** How many times each running sandbox's agent was started again, as last seen (driver.agentRestarts). */
  private readonly agents = new Map<string, number>()
  private killing = new Map<string, Promise<void>>()
  private ready = false
  /** Each sandbox's network updates run one after another (the last one asked for is the one in force and stored). */
  private networkUpdates = new Map<string, Promise<unknown>>()
  private notReadyReason = 'the server is starting'
  /** Fresh creates in flight (the pool's refill waits for none, and for a quiet moment after the last: pool.ts). */
  private creating = 0
  /** When the last create began or ended (a hand-out, or a fresh one), epoch ms. */
  lastCreateAt = 0
  /** Ready sandboxes to hand out (pool.ts); set once the server is prepared. */
  pool?: { take(t: ResolvedTemplate, limits: Limits): string | undefined }
  /** Called when a sandbox is gone, so the proxy can drop its connections. */
  onDestroyed: (id: string) => void = () => {}
  /** Called before a create resolves its template: waits for a template Sandlot builds itself. */
  prepareTemplate?: (ref: string) => Promise<void>
  /** Pauses and resumes (pause.ts); each sandbox's run one at a time, in `transitions`. */
  private readonly pauses: PauseControl
  private transitions = new Map<string, Promise<unknown>>()
  /** Each sandbox's own log (logs.ts): its lifecycle events and its start command's output. */
  logs?: SandboxLogSink

  constructor(
    private readonly store: Store,
    private readonly driver: RuntimeDriver,
    private readonly templates: TemplateRegistry,
    private readonly config: Config,
    private readonly log: Logger,
    private readonly tokenSeed: string,
    private readonly idRanges: IdRanges,
    private readonly enforcer?: NetworkEnforcer,
  ) {
    this.pauses = new PauseControl(store, driver, log, (s) => ({
      accessToken: s.accessToken,
      egress: egressPolicyOf(s.network, s.allowInternetAccess),
      envVars: s.envVars,
    }))
  }

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
    const probe = `probe-${process.pid}`
    const probeIds = this.idRanges.claim(probe)
    try {
      await this.driver.check(base, probeIds)
    } finally {
      this.idRanges.release(probe, probeIds)
    }
    await this.readopt()
    const kept = this.store.listSandboxes()
    this.idRanges.sweep(new Set(kept.map((s) => s.id)))
    this.templates.prune(new Set(kept.map((s) => s.templateRootfs)))
    let lastTick = Date.now()
    this.watchdog = setInterval(() => {
      const now = Date.now()
      const late = now - lastTick - WATCHDOG_INTERVAL_MS
      lastTick = now
      // The daemon itself was stalled (a blocked event loop, SIGSTOP, a suspended host): clients'
      // renewals are still queued unread, and its own stall must not count against their leases.
      // Every hold gets a fresh lease, as after a restart; those of clients that are gone lapse after it.
      if (late > STALL_GRACE_MS) {
        this.log.warn({ stalledMs: late }, 'the server was stalled; renewing every hold instead of letting them lapse')
        this.store.extendAllHolds(now + HOLD_TTL_MS)
      }
      this.expireHolds()
      this.reapDead()
      this.expirePaused(now)
    }, WATCHDOG_INTERVAL_MS)
    this.watchdog.unref()
    this.ready = true
  }

  /**
   * A sandbox whose init died (killed from the host, out of memory) is cleaned up, never left
   * half-alive. One whose agent was started again (its init does that when it dies) is told so in
   * its log.
   */
  private reapDead(): void {
    for (const s of this.running()) {
      if (this.driver.alive(s.id)) {
        const restarts = this.driver.agentRestarts?.(s.id)
        const before = this.agents.get(s.id) ?? 0
        if (restarts !== undefined) this.agents.set(s.id, restarts)
        if (restarts !== undefined && restarts > before) {
          this.log.warn({ sandboxId: s.id }, 'the sandbox’s agent ended and was started again')
          this.logs?.append(s.id, 'warn', 'the agent ended (killed or crashed) and was started again: commands it had started run on, but their output and input can no longer be reached')
        }
        continue
      }
      this.log.warn({ sandboxId: s.id }, 'sandbox died on its own; cleaning up')
      this.logs?.append(s.id, 'error', 'the sandbox died on its own (its init ended)')
      void this.kill(s.id, 'cleaning up after it died').catch((err) => this.log.error({ err, sandboxId: s.id }, 'cleanup of a dead sandbox failed'))
    }
  }

  private async readopt(): Promise<void> {
    // Clients could not renew while the daemon was down: every hold gets a fresh lease, and those
    // of clients that are gone lapse after it.
    this.store.extendAllHolds(Date.now() + HOLD_TTL_MS)
    // The host restarted since the last server (its boot id changed): every sandbox's processes went
    // with it, not their files. Those that were running are kept paused from their files (memory
    // lost) rather than destroyed; within one boot, a sandbox whose init is gone died, and goes.
    const bootId = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
    const lastBootId = this.store.getSetting('host_boot_id')
    const hostRestarted = lastBootId !== undefined && lastBootId !== bootId
    if (hostRestarted) this.log.warn('the host restarted since the last server: running sandboxes lost their memory and are kept paused from their files')
    const known = new Set<string>()
    for (const s of this.store.listSandboxes()) {
      known.add(s.id)
      if (s.state === 'pausing' || s.state === 'paused' || s.state === 'resuming') {
        const now = await this.pauses.recover(s).catch((err: Error) => err)
        if (now instanceof Error) {
          this.log.error({ err: now, sandboxId: s.id }, 'a paused sandbox could not be recovered; it stays paused from its files')
        } else if (now === 'running') {
          // The deadline its resume asked for (stored as it began); a row from before that was
          // stored keeps the one it had.
          const endAt = s.pause?.resumeEndAt !== undefined ? s.pause.resumeEndAt : s.endAt
          this.store.setSandboxResumed(s.id, Date.now(), endAt)
          this.armDeadline({ ...s, state: 'running', endAt })
        }
        if (s.ids && !this.idRanges.adopt(s.id, s.ids)) this.log.error({ sandboxId: s.id, ids: s.ids }, 'the id range of this paused sandbox is claimed by another sandbox')
        continue
      }
      let state = s.state === 'running' ? await this.driver.state(s.id) : 'missing'
      // Frozen while stored as running: a pause that had not reached the store; it runs on.
      if (state === 'paused') state = await this.driver.thaw(s.id).then(() => 'running' as const, () => 'missing' as const)
      if (state === 'running' && !this.wanted(s)) {
        this.log.info({ sandboxId: s.id }, 'sandbox reached its deadline while the server was down; destroying it')
        await this.destroyNow(s.id)
      } else if (state === 'running') {
        if (s.ids && !this.idRanges.adopt(s.id, s.ids)) {
          this.log.error({ sandboxId: s.id, ids: s.ids }, 'the id range of this re-adopted sandbox is claimed by another sandbox')
        }
        this.log.info({ sandboxId: s.id }, 're-adopted running sandbox')
        // Restarts of its agent before now were told by the previous server.
        const restarts = this.driver.agentRestarts?.(s.id)
        if (restarts !== undefined) this.agents.set(s.id, restarts)
        this.logs?.append(s.id, 'info', 'the server restarted; the sandbox kept running')
        this.armDeadline(s)
      } else if (hostRestarted && s.state === 'running' && this.wanted(s)) {
        // (What a reboot left of it is half-gone: a failure here must not keep the server from starting.)
        await this.driver.stop(s.id).catch((err: Error) => this.log.error({ err, sandboxId: s.id }, 'cannot free what is left of a sandbox the host restart stopped'))
        this.store.deleteHoldsOf(s.id)
        this.store.setSandboxPause(s.id, 'paused', { at: Date.now(), memory: true, memoryLost: true })
        if (s.ids && !this.idRanges.adopt(s.id, s.ids)) this.log.error({ sandboxId: s.id, ids: s.ids }, 'the id range of this sandbox is claimed by another sandbox')
        this.log.warn({ sandboxId: s.id }, 'the host restarted: sandbox kept paused from its files, its memory lost')
        this.logs?.append(s.id, 'warn', 'the host restarted while it ran: its processes and memory are lost; it is kept paused and resumes from its files')
      } else if (s.state === 'pooled') {
        // The pool is made anew by each server (pool.ts).
        this.log.info({ sandboxId: s.id }, 'removing a pooled sandbox of the previous server')
        await this.destroyNow(s.id)
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
    this.store.setSetting('host_boot_id', bootId)
  }

  private limitsFrom(req: CreateRequest): Limits {
    const pick = (name: keyof Limits, value: number | undefined): number => {
      if (value === undefined) return this.config.defaultLimits[name]
      if (!Number.isInteger(value) || value < 1) throw badRequest(`${name} must be a positive integer`)
      if (value > this.config.maxLimits[name]) throw badRequest(`${name} must be at most ${this.config.maxLimits[name]} on this server`)
      return value
    }
    const limits = {
      cpuCount: pick('cpuCount', req.cpuCount),
      memoryMB: pick('memoryMB', req.memoryMB),
      pids: pick('pids', req.pids),
      diskSizeMB: pick('diskSizeMB', req.diskSizeMB),
    }
    if (limits.memoryMB < 64) throw badRequest('memoryMB must be at least 64')
    if (limits.pids < 32) throw badRequest('pids must be at least 32')
    if (limits.diskSizeMB < MIN_DISK_MB) throw badRequest(`diskSizeMB must be at least ${MIN_DISK_MB}`)
    return limits
  }

  async create(req: CreateRequest): Promise<{ sandbox: SandboxState; hold?: HoldRow }> {
    const { ready, reason } = this.isReady()
    if (!ready) throw unavailable(`The server cannot create sandboxes yet: ${reason}. Try again shortly.`)
    const envVars = checkedEnvVars(req.envVars ?? {})
    // A template Sandlot builds itself may still be building (templates/builtin.ts).
    await this.prepareTemplate?.(req.template ?? 'base')
    return this.createFrom(this.templates.resolve(req.template ?? 'base'), { ...req, envVars })
  }

  /**
   * Creates a sandbox on layers already resolved: a template's, or a copy's (copies.ts: a fork
   * stands on a capture of its original's files, and is never one of the pool's).
   */
  async createFrom(t: ResolvedTemplate, req: CreateRequest, opts: { pool?: boolean } = {}): Promise<{ sandbox: SandboxState; hold?: HoldRow }> {
    const { ready, reason } = this.isReady()
    if (!ready) throw unavailable(`The server cannot create sandboxes yet: ${reason}. Try again shortly.`)
    this.lastCreateAt = Date.now()
    const envVars = checkedEnvVars(req.envVars ?? {})
    // The template's build may set default resources; the request's win.
    const limits = this.limitsFrom({ ...req, cpuCount: req.cpuCount ?? t.config.cpuCount, memoryMB: req.memoryMB ?? t.config.memoryMB })
    // A ready one from the pool (pool.ts), when it fits: same template build and limits, and no env
    // vars for a start command that already runs (it started without them, as on E2B).
    const pooled = opts.pool === false || (Object.keys(envVars).length && t.config.startCmd) ? undefined : this.pool?.take(t, limits)
    if (pooled) {
      try {
        return await this.handOut(pooled, { ...req, envVars }, t)
      } catch (err) {
        this.log.warn({ err, sandboxId: pooled }, 'a pooled sandbox could not be handed out; creating a fresh one')
        await this.destroyNow(pooled).catch(() => {})
      }
    }
    this.creating++
    try {
      return await this.createFresh({ ...req, envVars }, t, limits)
    } finally {
      this.creating--
      this.lastCreateAt = Date.now()
    }
  }

  /** The limits a create of `t` gets when it asks for none (the pool makes its sandboxes with them). */
  defaultLimitsOf(t: ResolvedTemplate): Limits {
    return this.limitsFrom({ cpuCount: t.config.cpuCount, memoryMB: t.config.memoryMB, endAt: null })
  }

  /** Creates that are being served now: the pool refills only when there are none. */
  get busy(): boolean {
    return this.creating > 0
  }

  /** A new sandbox's row, not yet stored. */
  private rowOf(t: ResolvedTemplate, limits: Limits, state: SandboxRow['state'], req: Partial<CreateRequest>): SandboxRow {
    const id = newSandboxId()
    return {
      id,
      template: t.name,
      templateRootfs: t.layers[t.layers.length - 1]!,
      templateLayers: t.layers,
      state,
      metadata: req.metadata ?? {},
      envVars: req.envVars ?? {},
      ...limits,
      startedAt: Date.now(),
      endAt: req.endAt ?? null,
      accessToken: this.accessTokenOf(id),
      ids: this.idRanges.claim(id),
      network: req.network?.config ?? { allowOut: [], denyOut: [] },
      allowInternetAccess: req.network?.allowInternetAccess ?? null,
      ingress: req.ingress ?? null,
      pause: null,
      lifecycle: req.lifecycle ?? null,
      templateBuild: t.buildId ?? null,
    }
  }

  /**
   * Records the sandbox (before the runtime starts it, so a crash mid-create is cleaned up on
   * restart), starts it, and runs its template's start command until its ready command passes
   * (Sandlot keeps no memory snapshot). Anything that fails leaves nothing behind.
   */
  private async launch(row: SandboxRow, t: ResolvedTemplate, pooled = false): Promise<void> {
    try {
      this.store.insertSandbox(row)
    } catch (err) {
      this.idRanges.release(row.id, row.ids!)
      throw err
    }
    try {
      await this.driver.create({
        id: row.id,
        templateLayers: t.layers,
        limits: { cpuCount: row.cpuCount, memoryMB: row.memoryMB, pids: row.pids, diskSizeMB: row.diskSizeMB },
        // The template's ENV under the request's own.
        envVars: { ...t.config.env, ...row.envVars },
        accessToken: row.accessToken,
        ids: row.ids!,
        egress: egressPolicyOf(row.network, row.allowInternetAccess),
        defaultUser: t.config.user,
        defaultWorkdir: t.config.workdir ?? undefined,
        pooled,
      })
      if (t.config.startCmd || t.config.readyCmd) {
        const agent = new AgentClient(this.driver.agentSocket(row.id), row.accessToken)
        await startAndWaitReady(agent, { ...t.config, env: { ...t.config.env, ...row.envVars } }, this.config.readyTimeoutMs, undefined, undefined, this.startCmdOutput(row.id)).catch((err: Error) => {
          throw new SandlotError(500, 'template_start_failed', `The start command of template "${t.name}" did not become ready: ${err.message}`)
        })
      }
    } catch (err) {
      this.log.error({ sandboxId: row.id, err }, 'sandbox failed to start')
      this.logs?.append(row.id, 'error', `the sandbox failed to start: ${(err as Error).message}`)
      await this.destroyNow(row.id)
      throw err
    }
  }

  private async createFresh(req: CreateRequest, t: ResolvedTemplate, limits: Limits): Promise<{ sandbox: SandboxState; hold?: HoldRow }> {
    const row = this.rowOf(t, limits, 'starting', req)
    await this.launch(row, t)
    this.store.setSandboxState(row.id, 'running')
    row.state = 'running'
    return this.begin(row, req, Date.now() - row.startedAt)
  }

  /** The start command's output lines into the sandbox's log (stderr as warnings). */
  private startCmdOutput(id: string): (line: string, stream: 'stdout' | 'stderr') => void {
    return (line, stream) => this.logs?.append(id, stream === 'stderr' ? 'warn' : 'info', line, { logger: 'start-cmd', stream })
  }

  /** A running sandbox starts its life: its deadline armed, counted, and held in the same tick if asked. */
  private begin(row: SandboxRow, req: CreateRequest, ms: number, pooled = false): { sandbox: SandboxState; hold?: HoldRow } {
    this.templates.builds.recordSpawn(row.template, Date.now())
    this.armDeadline(row)
    this.log.info({ sandboxId: row.id, template: row.template, ms, ...(pooled && { pooled }) }, 'sandbox created')
    this.logs?.append(row.id, 'info', 'sandbox created', { template: row.template, ms, ...(pooled && { pooled }) })
    // Taken in the same tick as the sandbox turns running, so it is never running unheld; the
    // lease starts once the sandbox is up, not when the request came in.
    const hold = req.hold ? this.insertHold(row.id) : undefined
    return { sandbox: this.withHolds(row), hold }
  }

  /** A sandbox for the pool: running, its start command ready, invisible until handed out. */
  async startPooled(t: ResolvedTemplate, limits: Limits): Promise<string> {
    const row = this.rowOf(t, limits, 'pooled', {})
    // At a lower CPU weight until its hand-out (SandboxSpec.pooled): its boot and warm-up yield to sandboxes in use.
    await this.launch(row, t, true)
    // The agent's first requests cost tens of ms more than its next: paid here, ahead (AgentClient.warm).
    const warm = await new AgentClient(this.driver.agentSocket(row.id), row.accessToken).warm(t.config.user).catch((err: Error) => err)
    if (warm instanceof Error) {
      await this.destroyNow(row.id)
      throw new Error(`a pooled sandbox's first requests failed: ${warm.message}`)
    }
    return row.id
  }

  /**
   * Makes a pooled sandbox the requester's: its env vars (the agent's POST /init), its egress rules
   * (only when it has any: a pooled sandbox has none), then its metadata, lifetime and start time,
   * all at once in the store. Its id, token and hostname were made for it alone and never used.
   */
  private async handOut(id: string, req: CreateRequest, t: ResolvedTemplate): Promise<{ sandbox: SandboxState; hold?: HoldRow }> {
    const started = Date.now()
    const row = this.store.getSandbox(id)
    if (!row || row.state !== 'pooled' || !this.driver.alive(id)) throw new Error('the pooled sandbox is gone')
    await this.driver.prioritize?.(id)
    const envVars = req.envVars ?? {}
    if (Object.keys(envVars).length) await new AgentClient(this.driver.agentSocket(id), row.accessToken).init({ envVars: { ...t.config.env, ...envVars } })
    const network = req.network?.config ?? { allowOut: [], denyOut: [] }
    const allowInternetAccess = req.network?.allowInternetAccess ?? null
    const policy = egressPolicyOf(network, allowInternetAccess)
    if (this.enforcer && !isOpenPolicy(policy)) await this.enforcer.apply(id, policy)
    const now = Date.now()
    Object.assign(row, { state: 'running', metadata: req.metadata ?? {}, envVars, network, allowInternetAccess, ingress: req.ingress ?? null, lifecycle: req.lifecycle ?? null, startedAt: now, endAt: req.endAt })
    this.store.handOutSandbox(row)
    this.lastCreateAt = now
    return this.begin(row, req, now - started, true)
  }

  private withHolds(s: SandboxRow, summary?: Map<string, { count: number; latestExpiry: number }>): SandboxState {
    const h = summary ? summary.get(s.id) : this.store.holdsOf(s.id)
    return { ...s, holds: h?.count ?? 0, holdsUntil: h?.latestExpiry ?? null }
  }

  /** Running, and not being destroyed. */
  private isLive(s: SandboxRow): boolean {
    return s.state === 'running' && !this.killing.has(s.id)
  }

  /** Running or paused (or between the two), and not being destroyed: what the APIs show. */
  private isVisible(s: SandboxRow): boolean {
    return (s.state === 'running' || s.state === 'pausing' || s.state === 'paused' || s.state === 'resuming') && !this.killing.has(s.id)
  }

  /** Whether a client holds it or its deadline is ahead (lifetime.ts). */
  private wanted(s: SandboxRow): boolean {
    return isAlive(s.endAt, this.store.holdsOf(s.id).count, Date.now())
  }

  /** The access token of sandbox `id` (derived from the id, so it is known for any id, live or gone). */
  accessTokenOf(id: string): string {
    return accessTokenFor(this.tokenSeed, id)
  }

  /** The token its port previews require when they are not public (E2B's trafficAccessToken). */
  trafficTokenOf(id: string): string {
    return trafficTokenFor(this.tokenSeed, id)
  }

  /** A running or paused sandbox, or SandboxNotFound. */
  get(id: string): SandboxState {
    const s = this.store.getSandbox(id)
    if (!s || !this.isVisible(s)) throw sandboxNotFound(id)
    return this.withHolds(s)
  }

  /** A running sandbox: SandboxNotFound, or a 409 that says it is paused and how to resume it. */
  getRunning(id: string): SandboxState {
    const s = this.get(id)
    if (s.state !== 'running') throw new SandlotError(409, 'sandbox_paused', `Sandbox "${id}" is paused: resume it first (E2B's connect, Sandlot's resume or Sandbox.reconnect)`)
    return s
  }

  /** The sandbox if it is running, without throwing (for the data plane's hot path). */
  find(id: string): SandboxRow | undefined {
    const s = this.store.getSandbox(id)
    return s && this.isLive(s) ? s : undefined
  }

  /** Running sandboxes as stored, newest first: for lookups that need no hold figures. */
  running(): SandboxRow[] {
    return this.store.listSandboxes().filter((s) => this.isLive(s))
  }

  /** Running and paused sandboxes with their holds, newest first. */
  list(): SandboxState[] {
    const summary = this.store.holdSummary()
    return this.store
      .listSandboxes()
      .filter((s) => this.isVisible(s))
      .map((s) => this.withHolds(s, summary))
  }

  /**
   * Sets the deadline, computed from the sandbox as it is now (the API's lifetime rules). A
   * deadline already past destroys a sandbox nobody holds.
   */
  setDeadline(id: string, deadlineOf: (s: SandboxState) => number | null): SandboxState {
    const s = this.getRunning(id)
    s.endAt = deadlineOf(s)
    this.store.setSandboxEndAt(id, s.endAt)
    this.armDeadline(s)
    this.destroyIfUnwanted(id)
    return s
  }

  // --- pause and resume (pause.ts) ---

  /** Runs `step` once the sandbox's pause, resume or copy under way (if any) is over: one at a time. */
  serially<T>(id: string, step: () => Promise<T>): Promise<T> {
    const run = (this.transitions.get(id) ?? Promise.resolve()).catch(() => {}).then(step)
    const settled = run.catch(() => {})
    this.transitions.set(id, settled)
    void settled.then(() => {
      if (this.transitions.get(id) === settled) this.transitions.delete(id)
    })
    return run
  }

  /**
   * Pauses a running sandbox: its memory kept (processes frozen) unless keepMemory is false (its
   * files alone). Its deadline and holds end: a paused sandbox is kept until resumed, killed or
   * SANDLOT_PAUSED_RETENTION_MS after its pause.
   */
  pause(id: string, opts: { keepMemory?: boolean } = {}): Promise<SandboxState> {
    return this.serially(id, async () => {
      const s = this.get(id)
      if (s.state === 'paused') throw new SandlotError(409, 'already_paused', `Error pausing sandbox - sandbox '${id}' is already paused`)
      if (s.state !== 'running') throw conflict(`Error pausing sandbox - sandbox '${id}' cannot be paused while in '${s.state}' state`)
      clearTimeout(this.deadlines.get(id))
      this.deadlines.delete(id)
      this.store.deleteHoldsOf(id)
      const keepMemory = opts.keepMemory ?? true
      // A memory pause keeps its connections through the proxy: they wait, frozen, and go on after
      // the resume (a command's output stream included), as on E2B; a files pause ends them all.
      if (!keepMemory) {
        this.onDestroyed(id)
        this.agents.delete(id) // booted again on resume, with an agent of its own
      }
      await this.pauses.pause(s, keepMemory)
      this.logs?.append(id, 'info', keepMemory ? 'sandbox paused: its processes frozen, its memory kept' : 'sandbox paused: its processes ended, its files kept', { keepMemory })
      return this.get(id)
    })
  }

  /**
   * Runs a paused sandbox again (a running one is left as it is: resumed false). `deadlineOf` gives
   * its deadline, computed from its new start time once it runs (and once before, so a deadline the
   * rules refuse refuses the resume); `onRunning` runs in the same tick it is stored as running.
   */
  resume(id: string, deadlineOf: (s: SandboxState) => number | null, opts: ResumeOptions = {}, onRunning?: () => void): Promise<{ sandbox: SandboxState; resumed: boolean }> {
    return this.serially(id, async () => {
      const s = this.get(id)
      if (s.state === 'running') return { sandbox: s, resumed: false }
      const started = Date.now()
      const how = await this.pauses.resume(s, deadlineOf({ ...s, startedAt: started, endAt: null }), opts)
      const now = Date.now()
      this.store.setSandboxResumed(id, now, deadlineOf({ ...s, state: 'running', startedAt: now, endAt: null }))
      onRunning?.()
      const row = this.store.getSandbox(id)!
      this.armDeadline(row)
      const lost = !!s.pause?.memory && !how.memory && opts.memory !== false
      this.log.info({ sandboxId: id, ms: now - started, memory: how.memory, ...(lost && { memoryLost: true }) }, 'sandbox resumed')
      if (lost) this.logs?.append(id, 'warn', 'sandbox resumed from its files: the memory it was paused with was lost (its container was gone, as after a host restart)')
      else this.logs?.append(id, 'info', how.memory ? 'sandbox resumed: its processes run on' : 'sandbox resumed: booted again from its files', { ms: now - started })
      return { sandbox: this.withHolds(row), resumed: true }
    })
  }

  /** Replaces what the sandbox's deadline does (E2B's resume with autoPause). */
  setLifecycle(id: string, lifecycle: Lifecycle | null): void {
    this.get(id)
    this.store.setSandboxLifecycle(id, lifecycle)
  }

  /** Whether a request to this sandbox should resume it first (paused with its memory, autoResume on). */
  wakesOnRequest(id: string): boolean {
    const s = this.store.getSandbox(id)
    return !!s && !this.killing.has(id) && wakesOnRequest(s)
  }

  /** Resumes a sandbox a request woke (E2B's autoResume): it then runs max(its create timeout, 300 s). */
  async wake(id: string): Promise<void> {
    await this.resume(id, (s) => Math.min(s.startedAt + Math.max(s.lifecycle?.timeoutMs ?? 0, AUTO_RESUME_MIN_MS), s.startedAt + this.config.maxLifetimeMs))
  }

  /** Paused sandboxes kept past SANDLOT_PAUSED_RETENTION_MS are destroyed. */
  private expirePaused(now: number): void {
    for (const s of this.store.listSandboxes()) {
      if (s.state !== 'paused' || !s.pause || s.pause.at + this.config.pausedRetentionMs > now || this.killing.has(s.id)) continue
      this.log.info({ sandboxId: s.id }, 'destroying a paused sandbox kept past SANDLOT_PAUSED_RETENTION_MS')
      void this.kill(s.id, 'paused longer than SANDLOT_PAUSED_RETENTION_MS').catch((err) => this.log.error({ err, sandboxId: s.id }, 'destroying an expired paused sandbox failed'))
    }
  }

  // --- network ---

  /**
   * Replaces a running sandbox's network settings (a full replace: what `update` leaves out is
   * cleared). The new policy is applied first and stored only once it is in force, so the stored
   * settings are always the ones enforced: if applying fails, the previous policy is put back and
   * nothing is stored (a 500 that says so). Updates of one sandbox run one at a time.
   */
  updateNetwork(id: string, update: SandboxNetwork): Promise<SandboxState> {
    const previous = this.networkUpdates.get(id) ?? Promise.resolve()
    const run = previous.then(() => this.replaceNetwork(id, update))
    const settled = run.catch(() => {})
    this.networkUpdates.set(id, settled)
    void settled.then(() => {
      if (this.networkUpdates.get(id) === settled) this.networkUpdates.delete(id)
    })
    return run
  }

  private async replaceNetwork(id: string, update: SandboxNetwork): Promise<SandboxState> {
    const row = this.store.getSandbox(id)
    if (!row) throw sandboxNotFound(id)
    if (!this.isLive(row)) {
      const doing = row.state === 'starting' ? 'starting' : row.state === 'stopping' || this.killing.has(id) ? 'being killed' : 'paused'
      throw conflict(`Sandbox "${id}" is ${doing}: its network can be changed while it runs`)
    }
    if (this.enforcer) {
      try {
        await this.enforcer.apply(id, egressPolicyOf(update.config, update.allowInternetAccess))
      } catch (err) {
        if (!this.find(id)) throw sandboxNotFound(id)
        const reason = (err as Error).message
        this.log.error({ err, sandboxId: id }, 'applying a network update failed; putting the previous policy back')
        const restored = await this.enforcer.apply(id, egressPolicyOf(row.network, row.allowInternetAccess)).then(
          () => true,
          (restoreErr: unknown) => {
            this.log.error({ err: restoreErr, sandboxId: id }, 'putting the previous network policy back failed too')
            return false
          },
        )
        throw new SandlotError(
          500,
          'network_update_failed',
          `Applying the new network configuration to sandbox "${id}" failed (${reason}); its configuration is unchanged` +
            (restored ? '' : ', but putting its previous rules back failed too (see the server log)'),
        )
      }
    }
    // Killed while the rules were applied: there is nothing left to record.
    if (!this.find(id)) throw sandboxNotFound(id)
    this.store.setSandboxNetwork(id, update.config, update.allowInternetAccess)
    return this.get(id)
  }

  // --- holds: client leases (docs/api.md) ---

  private insertHold(sandboxId: string): HoldRow {
    const now = Date.now()
    const hold = { id: newHoldId(), sandboxId, createdAt: now, expiresAt: now + HOLD_TTL_MS }
    this.store.insertHold(hold)
    return hold
  }

  /** A hold on a sandbox that runs (for a step that has just made it run). */
  holdFor(sandboxId: string): HoldRow {
    return this.insertHold(sandboxId)
  }

  /** A new hold on a sandbox (a reconnect), resumed first if it is paused. */
  async openHold(sandboxId: string): Promise<HoldRow> {
    if (this.get(sandboxId).state !== 'running') {
      // Held from the moment it runs again, in the same step: its deadline goes (the hold keeps it).
      let hold: HoldRow | undefined
      await this.resume(sandboxId, () => null, {}, () => (hold = this.insertHold(sandboxId)))
      if (hold) return hold
    }
    return this.insertHold(this.getRunning(sandboxId).id)
  }

  renewHold(sandboxId: string, holdId: string): HoldRow {
    this.getRunning(sandboxId)
    const hold = this.store.getHold(holdId)
    const expiresAt = Date.now() + HOLD_TTL_MS
    if (!hold || hold.sandboxId !== sandboxId || !this.store.renewHold(holdId, expiresAt)) throw holdLapsed(sandboxId)
    return { ...hold, expiresAt }
  }

  /** Closes a hold; the sandbox goes now if that was its last one and no deadline is ahead. */
  releaseHold(sandboxId: string, holdId: string): void {
    this.getRunning(sandboxId)
    const hold = this.store.getHold(holdId)
    if (!hold || hold.sandboxId !== sandboxId) return
    this.store.deleteHold(holdId)
    this.destroyIfUnwanted(sandboxId)
  }

  /** Lapsed holds are dropped, and the sandboxes they alone kept alive destroyed. */
  private expireHolds(): void {
    for (const sandboxId of new Set(this.store.takeExpiredHolds(Date.now()).map((h) => h.sandboxId))) {
      this.log.info({ sandboxId }, 'a client hold lapsed')
      this.destroyIfUnwanted(sandboxId)
    }
  }

  /** Ends a sandbox nobody wants any more: paused if its lifecycle says so, else destroyed. */
  private destroyIfUnwanted(id: string, reason = 'no client holds it and its deadline has passed'): void {
    const s = this.find(id)
    if (!s || this.wanted(s)) return
    if (s.lifecycle?.onTimeout === 'pause') {
      this.log.info({ sandboxId: id }, `pausing sandbox: ${reason}`)
      void this.pause(id, { keepMemory: s.lifecycle.keepMemory }).catch((err: SandlotError) => {
        // Killed meanwhile, or resumed and paused by a client first: nothing went wrong.
        if (err.status === 404 || err.status === 409) return
        this.log.error({ err, sandboxId: id }, 'pausing a sandbox at its deadline failed')
      })
      return
    }
    this.log.info({ sandboxId: id }, `destroying sandbox: ${reason}`)
    void this.kill(id, reason).catch((err) => this.log.error({ err, sandboxId: id }, 'destroying a released sandbox failed'))
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
      this.destroyIfUnwanted(s.id, 'it reached its deadline and no client holds it')
    }, delay)
    timer.unref()
    this.deadlines.set(s.id, timer)
  }

  async kill(id: string, reason = 'killed by a client'): Promise<void> {
    const pending = this.killing.get(id)
    if (pending) return pending
    const row = this.store.getSandbox(id)
    // A pooled sandbox is nobody's yet: only the pool ends it (destroyPooled).
    if (!row || row.state === 'pooled') throw sandboxNotFound(id)
    this.logs?.append(id, 'info', `killing the sandbox: ${reason}`)
    // A pause or resume under way finishes first (its runtime calls must not race the destroy).
    const p = (this.transitions.get(id) ?? Promise.resolve())
      .catch(() => {})
      .then(() => this.destroyNow(id))
      .finally(() => this.killing.delete(id))
    this.killing.set(id, p)
    return p
  }

  private async destroyNow(id: string): Promise<void> {
    clearTimeout(this.deadlines.get(id))
    this.deadlines.delete(id)
    const ids = this.store.getSandbox(id)?.ids
    const pooled = this.store.getSandbox(id)?.state === 'pooled'
    this.store.setSandboxState(id, 'stopping')
    this.onDestroyed(id)
    this.agents.delete(id)
    await this.driver.destroy(id)
    this.store.deleteSandbox(id)
    // Only once nothing of the sandbox is left on the host may another have its ids.
    if (ids) this.idRanges.release(id, ids)
    this.log.info({ sandboxId: id }, 'sandbox destroyed')
    // A pooled sandbox nobody had leaves no history; others' stays readable until pruned.
    if (pooled) this.logs?.discard(id)
    else this.logs?.append(id, 'info', 'sandbox destroyed')
  }

  /** Ends a pooled sandbox (a stale one, or the pool draining). */
  destroyPooled(id: string): Promise<void> {
    return this.destroyNow(id)
  }

  /** Stops deadline timers; sandboxes keep running (they outlive the daemon). */
  shutdown(): void {
    clearInterval(this.watchdog)
    for (const t of this.deadlines.values()) clearTimeout(t)
    this.deadlines.clear()
  }
}
