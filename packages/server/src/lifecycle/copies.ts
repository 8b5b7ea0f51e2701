// Copies of a sandbox, from its files: snapshots and forks. Both capture what the sandbox changed
// (its own layer) while it is frozen for that moment (driver.snapshotLayer), then run on as it was.
// - A snapshot is a template build: the capture on top of the layers its sandbox stands on, with
//   its template's config and the sandbox's env vars; `Sandbox.create(snapshotId)` boots it, every
//   copy independent (each has a layer of its own above the shared, read-only ones).
// - A fork is N new sandboxes on that capture, with the original's env vars, metadata, network rules,
//   ingress, lifecycle and limits; the original keeps running and its deadline.
// Memory is not copied (no checkpoint of processes: docs/e2b-compatibility.md says why): a copy boots
// from the files, and its template's start command runs again.
import crypto from 'node:crypto'
import path from 'node:path'
import type { Logger } from 'pino'
import { SandlotError, badRequest } from '../errors.js'
import type { RuntimeDriver } from '../runtime/driver.js'
import type { HoldRow, SandboxRow } from '../store/db.js'
import type { TemplateConfig } from '../store/templates.js'
import { TEMPLATE_NAME, newTemplateId, type TemplateBuilds } from '../templates/builds.js'
import { BASE_CONFIG, parseTemplateRef, type ResolvedTemplate, type TemplateRegistry } from '../templates/registry.js'
import type { CreateRequest, SandboxManager, SandboxState } from './manager.js'

/** Most forks one request may ask for (E2B's limit). */
export const MAX_FORKS = 100

export interface SnapshotMade {
  templateId: string
  buildId: string
  /** The template's name: the one asked for, else its id. */
  name: string
  tag: string
  /** Whether it was given a name. */
  named: boolean
}

export type ForkResult = { sandbox: SandboxState; hold?: HoldRow } | { error: SandlotError }

export class SandboxCopies {
  constructor(
    private readonly manager: SandboxManager,
    private readonly driver: RuntimeDriver,
    private readonly templates: TemplateRegistry,
    private readonly builds: TemplateBuilds,
    /** Where captures go: the template layers' directory (collected when nothing stands on them). */
    private readonly layersDir: string,
    private readonly log: Logger,
  ) {}

  /** The config of the template build a sandbox stands on (the base's for the base). */
  private configOf(s: SandboxRow): TemplateConfig {
    const build = s.templateBuild ? this.templates.builds.getBuild(s.templateBuild) : undefined
    return build?.config ?? BASE_CONFIG
  }

  /** Captures the sandbox's files now: it must run, or be paused with its memory (then it is frozen already). */
  private async capture(s: SandboxState, what: string): Promise<string> {
    const frozen = s.state === 'paused' && !!s.pause?.memory && !s.pause.memoryLost
    if (s.state !== 'running' && !frozen) throw new SandlotError(409, 'sandbox_paused', `${what} of sandbox '${s.id}' needs it running (or paused with its memory): resume it first`)
    if (!s.ids) throw new SandlotError(409, 'conflict', `Sandbox '${s.id}' was made by an older Sandlot and cannot be copied`)
    const dest = path.join(this.layersDir, `copy-${s.id}-${Date.now().toString(36)}-${crypto.randomBytes(4).toString('hex')}`)
    await this.driver.snapshotLayer(s.id, s.ids, dest)
    return dest
  }

  /**
   * A snapshot of a sandbox as a template build: named `name` (a new build of that template when it
   * exists, as E2B does), else a template of its own named by its id.
   */
  snapshot(id: string, name?: string): Promise<SnapshotMade> {
    let alias: string | undefined
    let tag = 'default'
    if (name !== undefined) {
      if (typeof name !== 'string' || !name) throw badRequest('name must be a non-empty string')
      ;({ alias, tag } = parseTemplateRef(name))
      if (!TEMPLATE_NAME.test(alias)) throw badRequest(`Invalid snapshot name "${name}": lowercase letters, digits, "-" and "_", at most 128`)
    }
    return this.manager.serially(id, async () => {
      const s = this.manager.get(id)
      const started = Date.now()
      const layer = await this.capture(s, 'A snapshot')
      const config = this.configOf(s)
      const made = this.builds.create(alias ? `${alias}:${tag}` : newTemplateId())
      const store = this.templates.builds
      const now = Date.now()
      store.setBuildSpec(made.buildId, { tags: made.tags, started: true, snapshotOf: s.id, named: alias !== undefined })
      store.finishBuild(made.buildId, { status: 'ready', layers: [layer, ...s.templateLayers], config: { ...config, env: { ...config.env, ...s.envVars } } }, now, () => {
        for (const t of made.tags) store.setTag(made.templateId, t, made.buildId, now)
        store.insertSnapshot({ buildId: made.buildId, templateId: made.templateId, sandboxId: s.id, createdAt: now })
      })
      this.log.info({ sandboxId: s.id, template: made.name, ms: now - started }, 'snapshot taken')
      this.manager.logs?.append(s.id, 'info', `snapshot taken as template "${made.name}"`, { template: made.name, buildId: made.buildId })
      return { templateId: made.templateId, buildId: made.buildId, name: made.name, tag: made.tags[0]!, named: alias !== undefined }
    })
  }

  /** Snapshots, newest first: each template made by snapshots with its latest (from `sandboxId`, by `name`, when given). */
  list(filter: { sandboxId?: string; name?: string } = {}): (SnapshotMade & { sandboxId: string; createdAt: number })[] {
    const store = this.templates.builds
    const t = filter.name === undefined ? undefined : store.templateByName(parseTemplateRef(filter.name).alias)
    if (filter.name !== undefined && !t) return []
    return store.snapshotTemplates({ sandboxId: filter.sandboxId, templateId: t?.id }).flatMap((r) => {
      const template = store.templateById(r.templateId)
      const build = store.getBuild(r.buildId)
      if (!template || !build) return []
      const tag = store.tags(template.id).find((x) => x.buildId === build.id)?.tag ?? 'default'
      return [{ templateId: template.id, buildId: build.id, name: template.name, tag, named: !!(build.spec as { named?: boolean }).named, sandboxId: r.sandboxId, createdAt: r.createdAt }]
    })
  }

  /**
   * `count` new sandboxes from a running sandbox's files as they are now, each started as a create
   * with the original's settings; `deadlineOf` sets each one's deadline once it runs (`hold`: each
   * also held from the moment it runs). Each result is its sandbox or why it could not be made.
   */
  async fork(id: string, count: number, deadlineOf: (s: SandboxState) => number | null, hold = false): Promise<ForkResult[]> {
    if (!Number.isInteger(count) || count < 1 || count > MAX_FORKS) throw badRequest(`count must be a whole number from 1 to ${MAX_FORKS}`)
    const started = Date.now()
    const { s, layer } = await this.manager.serially(id, async () => {
      const s = this.manager.get(id)
      if (s.state !== 'running') throw new SandlotError(409, 'sandbox_paused', `Sandbox '${id}' is paused: resume it first`)
      return { s, layer: await this.capture(s, 'A fork') }
    })
    const captureMs = Date.now() - started
    const t: ResolvedTemplate = { name: s.template, layers: [layer, ...s.templateLayers], config: this.configOf(s), buildId: s.templateBuild ?? undefined }
    const req: CreateRequest = {
      metadata: s.metadata,
      envVars: s.envVars,
      cpuCount: s.cpuCount,
      memoryMB: s.memoryMB,
      pids: s.pids,
      diskSizeMB: s.diskSizeMB,
      network: { config: s.network, allowInternetAccess: s.allowInternetAccess },
      ingress: s.ingress ?? undefined,
      lifecycle: s.lifecycle ?? undefined,
      endAt: null,
      hold,
    }
    const one = async (): Promise<ForkResult> => {
      try {
        const made = await this.manager.createFrom(t, req, { pool: false })
        return { sandbox: this.manager.setDeadline(made.sandbox.id, deadlineOf), ...(made.hold && { hold: made.hold }) }
      } catch (err) {
        return { error: err instanceof SandlotError ? err : new SandlotError(500, 'fork_failed', (err as Error).message) }
      }
    }
    const results = await Promise.all(Array.from({ length: count }, one))
    const made = results.flatMap((r) => ('sandbox' in r ? [r.sandbox.id] : []))
    this.log.info({ sandboxId: id, count, made: made.length, captureMs, ms: Date.now() - started }, 'sandbox forked')
    this.manager.logs?.append(id, 'info', `forked into ${made.length} of ${count}: ${made.join(' ')}`, { count, made: made.length })
    for (const f of made) this.manager.logs?.append(f, 'info', `forked from ${id}`, { from: id })
    return results
  }
}
