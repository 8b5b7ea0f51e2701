// The warm pool: per template, a few sandboxes made ahead (running, network attached, the template's
// start command up and ready), so a create hands one out instead of starting one. A pooled sandbox
// is a fresh sandbox in every way (its own id, hostname, token and network; never used, never
// reused); what is the requester's (env vars, egress rules, metadata, lifetime, holds) is applied at
// hand-out by the manager. Pooled sandboxes are in the store as `pooled`: no list, lookup or kill
// sees them, and a restart removes them (the pool is made anew). The pool refills in the background,
// one sandbox at a time per template, and only once no create has been served for a moment
// (`quietMs`): a refill is a few hundred ms of both CPUs (mounts, nft, runc, a Node starting), and
// started at a hand-out it took them from the handed-out sandbox's first commands, which come right
// after. An empty pool refills at once (but never while a create is in flight): the next create
// would otherwise be a cold one. One whose template moved to another build is replaced.
import type { Logger } from 'pino'
import type { Limits } from '../config.js'
import type { ResolvedTemplate } from '../templates/registry.js'

/** What the pool needs of the manager and the runtime. */
export interface PoolHost {
  resolve(template: string): ResolvedTemplate
  /** Whether Sandlot builds `template` itself (templates/builtin.ts): a pool of it may be set before its first build. */
  buildsItself(template: string): boolean
  /** The limits a create of `t` gets without any of its own. */
  defaultLimits(t: ResolvedTemplate): Limits
  startPooled(t: ResolvedTemplate, limits: Limits): Promise<string>
  destroyPooled(id: string): Promise<void>
  alive(id: string): boolean
  /** Whether a create is being served now. */
  readonly busy: boolean
  /** When the last create began or ended (epoch ms). */
  readonly lastCreateAt: number
}

interface Entry {
  id: string
  /** The build it stands on (its layers): a template rebuilt since makes it stale. */
  layers: string
  limits: Limits
}

export interface PoolStatus {
  template: string
  size: number
  ready: number
  starting: number
}

/** How often the pool is checked (dead or stale sandboxes replaced, a failed start tried again). */
const CHECK_EVERY_MS = 30_000
/**
 * How long after the last create the refill waits before it starts a sandbox: past the first
 * commands a client sends to the sandbox it was just handed (tens of ms, even on a busy host).
 */
export const QUIET_MS = 150
/** After a failed start, the next try of that template waits this long (then doubles, up to a minute). */
const RETRY_MS = 2000

/** The most one template's pool may hold (SANDLOT_POOL and PUT /api/v1/pools alike). */
export const MAX_POOL_SIZE = 64

const sameLimits = (a: Limits, b: Limits) => a.cpuCount === b.cpuCount && a.memoryMB === b.memoryMB && a.pids === b.pids && a.diskSizeMB === b.diskSizeMB

/** SANDLOT_POOL: "base=2,my-template=1", template names (their default tag); 0 or empty: no pool. */
export function parsePoolSizes(raw: string | undefined, fallback: string): Map<string, number> {
  const sizes = new Map<string, number>()
  const text = (raw ?? fallback).trim()
  if (text === '' || text === '0') return sizes
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const m = /^([a-z0-9][a-z0-9_-]*)=(\d{1,3})$/.exec(part)
    if (!m) throw new Error(`SANDLOT_POOL: "${part}" is not template=size (e.g. base=2)`)
    sizes.set(m[1]!, Number(m[2]))
  }
  return sizes
}

export class SandboxPool {
  private readonly ready = new Map<string, Entry[]>()
  private readonly starting = new Map<string, number>()
  /** Each template's refill in progress (one at a time). */
  private readonly filling = new Map<string, Promise<void>>()
  private readonly retryAfter = new Map<string, { at: number; ms: number }>()
  private closed = false
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly host: PoolHost,
    private readonly sizes: Map<string, number>,
    private readonly log: Logger,
    /** How long no create must have been served before a refill starts (tests shorten it). */
    private readonly quietMs = QUIET_MS,
  ) {
    for (const [template, size] of sizes) if (size > MAX_POOL_SIZE) throw new Error(`SANDLOT_POOL: ${template}=${size}: a pool holds at most ${MAX_POOL_SIZE}`)
  }

  /** Starts filling every configured pool, and checks them every 30 s (dead or stale ones replaced). */
  start(): void {
    for (const template of this.sizes.keys()) this.fill(template)
    this.timer = setInterval(() => {
      for (const template of this.sizes.keys()) this.fill(template)
    }, CHECK_EVERY_MS)
    this.timer.unref()
  }

  /**
   * A ready sandbox of build `t` with exactly `limits`, taken out of the pool (never handed out
   * twice), or undefined. The pool refills behind it.
   */
  take(t: ResolvedTemplate, limits: Limits): string | undefined {
    const entries = this.ready.get(t.name)
    if (!entries?.length) return undefined
    const layers = JSON.stringify(t.layers)
    const at = entries.findIndex((e) => e.layers === layers && sameLimits(e.limits, limits) && this.host.alive(e.id))
    const taken = at < 0 ? undefined : entries.splice(at, 1)[0]
    this.fill(t.name)
    return taken?.id
  }

  status(): PoolStatus[] {
    const names = new Set([...this.sizes.keys(), ...this.ready.keys()])
    return [...names].sort().map((template) => ({ template, size: this.sizes.get(template) ?? 0, ready: this.ready.get(template)?.length ?? 0, starting: this.starting.get(template) ?? 0 }))
  }

  /** Sets how many ready sandboxes `template` keeps: grows in the background, shrinks at once. */
  async setSize(template: string, size: number): Promise<void> {
    if (!Number.isInteger(size) || size < 0 || size > MAX_POOL_SIZE) throw new Error(`a pool holds 0 to ${MAX_POOL_SIZE} sandboxes`)
    // A pool of a template that exists (one deleted since may still be emptied), or of one Sandlot
    // builds itself, whose build resolve starts (index.ts).
    if (size > 0) {
      try {
        this.host.resolve(template)
      } catch (err) {
        if (!this.host.buildsItself(template)) throw err
      }
    }
    if (size === 0) this.sizes.delete(template)
    else this.sizes.set(template, size)
    // A sandbox being made now is dropped when it is ready (fillNow); the ready ones beyond the size go at once.
    const entries = this.ready.get(template) ?? []
    await Promise.all(entries.splice(size).map((e) => this.discard(e, 'the pool shrank')))
    if (size < (this.starting.get(template) ?? 0) + entries.length) await this.filling.get(template)
    this.fill(template)
  }

  /** Ends every pooled sandbox (at shutdown: the next server makes its own pool). */
  async drain(): Promise<void> {
    this.closed = true
    clearInterval(this.timer)
    const all = [...this.ready.values()].flat()
    this.ready.clear()
    await Promise.all(all.map((e) => this.discard(e, 'the server is stopping')))
    // A sandbox being made now is discarded when it is ready (fillNow sees `closed`): waited for, so
    // nothing of the pool outlives the server's store.
    await Promise.all(this.filling.values())
  }

  private async discard(e: Entry, why: string): Promise<void> {
    this.log.debug({ sandboxId: e.id }, `removing a pooled sandbox: ${why}`)
    await this.host.destroyPooled(e.id).catch((err) => this.log.warn({ err, sandboxId: e.id }, 'removing a pooled sandbox failed'))
  }

  /** Brings `template`'s pool to its size, one start at a time, each once no create was served for `quietMs`. */
  private fill(template: string): void {
    if (this.closed || this.filling.has(template)) return
    const done = this.fillNow(template).finally(() => this.filling.delete(template))
    this.filling.set(template, done)
  }

  private async fillNow(template: string): Promise<void> {
    for (;;) {
      if (this.closed) return
      let t: ResolvedTemplate
      try {
        t = this.host.resolve(template)
      } catch {
        // Deleted (or not built yet): what it held goes; a later check fills it once it exists.
        await this.replaceWhere(template, () => true, 'its template is gone')
        return
      }
      const layers = JSON.stringify(t.layers)
      const limits = this.host.defaultLimits(t)
      await this.replaceWhere(template, (e) => e.layers !== layers || !sameLimits(e.limits, limits) || !this.host.alive(e.id), 'its template was rebuilt, or it died')
      const entries = this.ready.get(template) ?? []
      this.ready.set(template, entries)
      if (entries.length >= (this.sizes.get(template) ?? 0)) return
      const retry = this.retryAfter.get(template)
      if (retry && Date.now() < retry.at) return
      // An empty pool does not wait for quiet: the next create would be a cold one, which costs more
      // than a refill beside the last one's first commands. Never while a create is in flight.
      const wait = this.host.busy ? this.quietMs : entries.length === 0 ? 0 : this.host.lastCreateAt + this.quietMs - Date.now()
      if (wait > 0) {
        await new Promise((r) => setTimeout(r, wait).unref())
        continue
      }
      this.starting.set(template, (this.starting.get(template) ?? 0) + 1)
      try {
        const id = await this.host.startPooled(t, limits)
        // Stopped, or shrunk, while it was being made: it is not wanted any more.
        if (this.closed || entries.length >= (this.sizes.get(template) ?? 0)) {
          await this.discard({ id, layers, limits }, this.closed ? 'the server is stopping' : 'the pool shrank')
          return
        }
        entries.push({ id, layers, limits })
        this.retryAfter.delete(template)
      } catch (err) {
        const ms = Math.min(60_000, (retry?.ms ?? RETRY_MS / 2) * 2)
        this.retryAfter.set(template, { at: Date.now() + ms, ms })
        this.log.warn({ err, template }, `the pool of "${template}" could not start a sandbox; trying again in ${ms / 1000} s`)
        return
      } finally {
        this.starting.set(template, (this.starting.get(template) ?? 1) - 1)
      }
    }
  }

  private async replaceWhere(template: string, stale: (e: Entry) => boolean, why: string): Promise<void> {
    const entries = this.ready.get(template) ?? []
    const gone = entries.filter(stale)
    if (!gone.length) return
    this.ready.set(template, entries.filter((e) => !gone.includes(e)))
    await Promise.all(gone.map((e) => this.discard(e, why)))
  }
}
