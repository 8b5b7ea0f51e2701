// Templates Sandlot builds itself through its own build pipeline (build.ts, builds.ts), such as
// code-interpreter-v1: a definition in code whose files are packed from the checkout. A build
// starts on first use (a create naming it, or SANDLOT_PREBUILD_TEMPLATES at start) and is kept
// with a hash of its definition (steps, files, the base it stands on); a changed definition is
// built again, its unchanged steps from the layer cache. Its builds show in the template APIs like
// any other's (status, logs).
import { execFile } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import type { Logger } from 'pino'
import { SandlotError } from '../errors.js'
import type { BuildSpec } from './build.js'
import type { TemplateBuilds } from './builds.js'
import type { TemplateRegistry } from './registry.js'

const exec = promisify(execFile)

/** Packs a file or directory (leaving out `exclude`d top-level names) for a COPY step; returns its files hash. */
export type Pack = (source: string, exclude?: string[]) => Promise<string>

export interface BuiltinTemplate {
  name: string
  spec(pack: Pack): Promise<BuildSpec>
}

/** Every file under `source` (one file, or a directory's, sorted), with its mode: what a pack holds. */
function entries(source: string, exclude: string[]): { rel: string; abs: string; mode: number }[] {
  const st = fs.statSync(source)
  if (st.isFile()) return [{ rel: path.basename(source), abs: source, mode: st.mode & 0o777 }]
  const out: { rel: string; abs: string; mode: number }[] = []
  const walk = (dir: string, rel: string) => {
    for (const name of fs.readdirSync(dir).sort()) {
      if ((!rel && exclude.includes(name)) || name === '__pycache__') continue
      const abs = path.join(dir, name)
      const s = fs.statSync(abs)
      if (s.isDirectory()) walk(abs, rel ? `${rel}/${name}` : name)
      else if (s.isFile()) out.push({ rel: rel ? `${rel}/${name}` : name, abs, mode: s.mode & 0o777 })
    }
  }
  walk(source, '')
  return out
}

export class BuiltinTemplates {
  private readonly defs: Map<string, BuiltinTemplate>
  /** The build each name waits for, by name. */
  private readonly pending = new Map<string, Promise<void>>()

  constructor(
    private readonly registry: TemplateRegistry,
    private readonly builds: TemplateBuilds,
    private readonly log: Logger,
    defs: BuiltinTemplate[],
  ) {
    this.defs = new Map(defs.map((d) => [d.name, d]))
  }

  names(): string[] {
    return [...this.defs.keys()]
  }

  has(name: string): boolean {
    return this.defs.has(name)
  }

  /** Stores `source`'s files as a COPY archive (once per content) and returns its hash. */
  private pack: Pack = async (source, exclude = []) => {
    const files = entries(source, exclude)
    const hash = crypto.createHash('sha256')
    for (const f of files) hash.update(`${f.rel}\0${f.mode.toString(8)}\0`).update(fs.readFileSync(f.abs)).update('\0')
    const filesHash = hash.digest('hex')
    if (!this.builds.archivePath(filesHash)) {
      const dir = fs.statSync(source).isFile() ? path.dirname(source) : source
      const scratch = path.join(this.builds.filesDir, `${filesHash}.tar.gz.${process.pid}`)
      await exec('tar', ['-czf', scratch, '--owner=0', '--group=0', '--numeric-owner', '-C', dir, '--', ...files.map((f) => f.rel)])
      fs.renameSync(scratch, path.join(this.builds.filesDir, `${filesHash}.tar.gz`))
    }
    return filesHash
  }

  /** The definition's build spec and its hash (with the base's top layer: a new base is a new definition). */
  private async current(def: BuiltinTemplate): Promise<{ spec: BuildSpec; hash: string }> {
    const spec = await def.spec(this.pack)
    const base = this.registry.resolve(spec.fromTemplate ?? 'base').layers[0]
    const hash = crypto.createHash('sha256').update(JSON.stringify({ spec, base })).digest('hex').slice(0, 32)
    return { spec: { ...spec, definitionHash: hash }, hash }
  }

  /** The build of this definition, if there is one (ready, or still running). */
  private buildOf(name: string, hash: string) {
    const t = this.registry.builds.templateByName(name)
    if (!t) return undefined
    const builds = this.registry.builds.buildsOf(t.id).filter((b) => (b.spec as BuildSpec).definitionHash === hash)
    return builds.find((b) => b.status === 'ready' && b.layers?.every((l) => fs.existsSync(l))) ?? builds.find((b) => b.status === 'building')
  }

  /** Builds the template unless its current definition is built; resolves when it is ready. */
  ensure(name: string): Promise<void> {
    const def = this.defs.get(name)
    if (!def) return Promise.reject(new Error(`"${name}" is not a built-in template`))
    let p = this.pending.get(name)
    if (!p) {
      p = this.build(def).finally(() => this.pending.delete(name))
      this.pending.set(name, p)
    }
    return p
  }

  private async build(def: BuiltinTemplate): Promise<void> {
    const { spec, hash } = await this.current(def)
    const existing = this.buildOf(def.name, hash)
    if (existing?.status === 'ready') {
      // The tag may point elsewhere (a build of an older definition ran later): this one is current.
      if (this.registry.builds.buildOfTag(existing.templateId, 'default') !== existing.id) this.registry.builds.setTag(existing.templateId, 'default', existing.id, Date.now())
      return
    }
    const b = this.builds.create(def.name, [], { builtin: true })
    this.log.info({ template: def.name, buildId: b.buildId }, `building template "${def.name}" (first use, or its definition changed; a few minutes the first time)`)
    await this.builds.start(b.templateId, b.buildId, spec)
    const done = this.registry.builds.getBuild(b.buildId)
    if (done?.status !== 'ready') throw new Error(`the build of template "${def.name}" failed: ${done?.reason?.message ?? 'unknown reason'} (its log: GET /templates/${b.templateId}/builds/${b.buildId}/status)`)
    this.log.info({ template: def.name }, `template "${def.name}" is ready`)
  }

  /**
   * For a create: starts the build if needed and waits for it up to `waitMs`; then a 503 that says
   * it is being built, how far it got, and where to follow it.
   */
  async whenReady(name: string, waitMs: number): Promise<void> {
    const ready = this.ensure(name)
    let timer: NodeJS.Timeout | undefined
    const waited = new Promise<'waiting'>((r) => (timer = setTimeout(() => r('waiting'), waitMs)))
    try {
      const r = await Promise.race([ready.then(() => 'ready' as const), waited])
      if (r === 'ready') return
    } catch (err) {
      throw new SandlotError(500, 'template_build_failed', (err as Error).message)
    } finally {
      clearTimeout(timer)
    }
    throw new SandlotError(503, 'template_building', this.progress(name))
  }

  private progress(name: string): string {
    const t = this.registry.builds.templateByName(name)
    const build = t && this.registry.builds.buildsOf(t.id).find((b) => b.status === 'building' || b.status === 'waiting')
    if (!t || !build) return `Template "${name}" is being prepared; try again shortly.`
    const logs = this.registry.builds.logs(build.id, 0, 100_000)
    const step = [...logs].reverse().find((l) => /^\[\d+\/\d+\]/.test(l.message))?.message.match(/^\[(\d+)\/(\d+)\]/)
    const seconds = Math.round((Date.now() - build.createdAt) / 1000)
    return (
      `Template "${name}" is being built by Sandlot (its first use, or its definition changed): ` +
      `${step ? `step ${step[1]} of ${step[2]}` : 'starting'}, ${seconds} s so far; the first build takes a few minutes. ` +
      `Try again shortly; follow it with GET /templates/${t.id}/builds/${build.id}/status.`
    )
  }
}
