// Which templates exist and where their rootfs lives; builds the base template on first start.
import fs from 'node:fs'
import path from 'node:path'
import type { Logger } from 'pino'
import { badRequest } from '../errors.js'
import type { IdRange } from '../runtime/idmap.js'
import type { Store, TemplateRow } from '../store/db.js'
import { TemplateStore, type TemplateConfig } from '../store/templates.js'
import { BASE_RECIPE, buildTemplate, recipeHash, type TemplateRecipe } from './base.js'

/** What a sandbox stands on: the template's layers (top first) and the config its build recorded. */
export interface ResolvedTemplate {
  /** The name sandboxes report (alias, without team or tag). */
  name: string
  layers: string[]
  config: TemplateConfig
  buildId?: string
}

/** The base template's config: E2B's user phase (steps and commands as `user`, in its home). */
export const BASE_CONFIG: TemplateConfig = { env: {}, workdir: null, user: 'user', startCmd: null, readyCmd: null }

/** "team/alias:tag" → alias and tag ("default" when none; "latest" is the same). */
export function parseTemplateRef(ref: string): { alias: string; tag: string } {
  const last = ref.split('/').pop()!
  const [alias = '', tag] = last.split(':')
  return { alias, tag: !tag || tag === 'latest' ? 'default' : tag }
}

export class TemplateRegistry {
  private building = new Map<string, Promise<string>>()
  readonly builds: TemplateStore
  /** Names of the templates Sandlot builds itself through the pipeline (builtin.ts), listed even before their first build. */
  builtins: string[] = []

  constructor(
    private readonly store: Store,
    private readonly dir: string,
    /** The host ids that own the templates' files: a range no sandbox has (runtime/idmap.ts). */
    private readonly idRange: IdRange,
    private readonly log: Logger,
    private readonly mirror = process.env.SANDLOT_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian',
    private readonly securityMirror = process.env.SANDLOT_DEBIAN_SECURITY_MIRROR ?? 'http://deb.debian.org/debian-security',
  ) {
    this.builds = new TemplateStore(store.db)
  }

  /**
   * A template by name ("alias[:tag]", a team prefix ignored) or id: the base, or a built template's
   * tagged build. A 400 that lists what exists when there is none.
   */
  resolve(ref: string): ResolvedTemplate {
    const { alias, tag } = parseTemplateRef(ref)
    // Templates Sandlot builds from a recipe (base): one layer, E2B's user phase.
    if (tag === 'default' && this.store.getTemplate(alias)) return { name: alias, layers: [this.rootfsOf(alias)], config: BASE_CONFIG }
    const t = this.builds.templateByName(alias) ?? this.builds.templateById(alias)
    const buildId = t && this.builds.buildOfTag(t.id, tag)
    const build = buildId ? this.builds.getBuild(buildId) : undefined
    if (!t || !build || build.status !== 'ready' || !build.layers || !build.config) {
      const what = t && !buildId ? `Template "${alias}" has no tag "${tag}" (tags: ${this.builds.tags(t.id).map((x) => x.tag).join(', ') || 'none'})` : `Unknown template "${ref}"`
      throw badRequest(`${what}. Available templates: ${this.available().join(', ')}`)
    }
    for (const layer of build.layers) {
      if (!fs.existsSync(layer)) throw badRequest(`Template "${ref}" is damaged: a layer of its build ${build.id} is missing; build it again`)
    }
    return { name: t.name, layers: build.layers, config: build.config, buildId: build.id }
  }

  /** The base template's build (recipe hash, rootfs, when built), once built. */
  base(): TemplateRow | undefined {
    return this.store.getTemplate(BASE_RECIPE.name)
  }

  /** Every name a sandbox can be created from. */
  available(): string[] {
    return [...new Set([...this.names(), ...this.builtins, ...this.builds.listTemplates().map((t) => t.name)])].sort()
  }

  /** The rootfs of a built template, or a 400 naming the template. */
  rootfsOf(name: string): string {
    const t = this.store.getTemplate(name)
    if (!t || !fs.existsSync(t.rootfs)) throw badRequest(`Unknown template "${name}". Available templates: ${this.names().join(', ') || 'none'}`)
    return t.rootfs
  }

  names(): string[] {
    return (this.store.db.prepare('SELECT name FROM templates ORDER BY name').all() as { name: string }[]).map((r) => r.name)
  }

  /** Builds the template if its recipe changed or its rootfs is missing; returns the rootfs path. */
  ensure(recipe: TemplateRecipe = BASE_RECIPE): Promise<string> {
    const pending = this.building.get(recipe.name)
    if (pending) return pending
    const p = this.ensureNow(recipe).finally(() => this.building.delete(recipe.name))
    this.building.set(recipe.name, p)
    return p
  }

  /**
   * Removes builds no sandbox stands on any more (an older recipe's) and scratch left by a build that
   * was interrupted (its process gone), so nothing half-built stays behind.
   */
  prune(inUse: Set<string>): void {
    const current = new Set(this.names().map((n) => this.store.getTemplate(n)!.rootfs))
    for (const buildDir of subdirs(this.dir).flatMap(subdirs)) {
      for (const entry of fs.readdirSync(buildDir)) {
        const builder = /^rootfs\.build-(\d+)-/.exec(entry)?.[1]
        if (builder && !processAlive(Number(builder))) {
          this.log.warn({ path: path.join(buildDir, entry) }, 'removing what an interrupted template build left')
          fs.rmSync(path.join(buildDir, entry), { recursive: true, force: true })
        }
      }
      const rootfs = path.join(buildDir, 'rootfs')
      // '' marks a sandbox recorded before builds were tracked: keep every build while one exists.
      if (fs.existsSync(rootfs) && !current.has(rootfs) && !inUse.has(rootfs) && !inUse.has('')) {
        this.log.info({ rootfs }, 'removing a template build no sandbox uses any more')
        fs.rmSync(buildDir, { recursive: true, force: true })
      }
    }
  }

  private async ensureNow(recipe: TemplateRecipe): Promise<string> {
    const hash = recipeHash(recipe, this.mirror)
    const rootfs = path.join(this.dir, recipe.name, hash, 'rootfs')
    // A finished build is renamed into place whole, so an existing rootfs is a complete one; one owned
    // by other ids (root's subordinate ids changed) is built again.
    if (!fs.existsSync(path.join(rootfs, 'etc/os-release')) || fs.statSync(rootfs).uid !== this.idRange.hostId) {
      await buildTemplate({ recipe, rootfs, idRange: this.idRange, mirror: this.mirror, securityMirror: this.securityMirror, log: this.log })
    }
    // Root's alone: a host user who ran the template's setuid files (sudo, owned by the templates'
    // ids) could change every sandbox's template. Sandboxes reach it only through root's mounts.
    fs.chmodSync(path.dirname(rootfs), 0o700)
    const existing = this.store.getTemplate(recipe.name)
    if (existing?.rootfs !== rootfs) this.store.putTemplate({ name: recipe.name, recipeHash: hash, rootfs, builtAt: Date.now() })
    return rootfs
  }
}

/** Whether a process is alive (EPERM: it is, under another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function subdirs(dir: string): string[] {
  if (!fs.existsSync(dir)) return []
  return fs.readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => path.join(dir, d.name))
}
