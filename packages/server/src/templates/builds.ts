// Templates and their builds, for both APIs: naming (E2B's alias and tag rules), the uploaded files
// of COPY steps (content-addressed, kept per server), starting builds (a bounded number at once, the
// rest wait their turn) and reading their status and logs. The work itself is build.ts's.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { pipeline } from 'node:stream/promises'
import type { Readable } from 'node:stream'
import type { Logger } from 'pino'
import { SandlotError, badRequest } from '../errors.js'
import type { BuildRow, LogEntry } from '../store/templates.js'
import type { BuildRunner, BuildSpec, Step } from './build.js'
import { parseTemplateRef, processAlive, type TemplateRegistry } from './registry.js'

/** A template's name (E2B's alias) and a tag of it. */
export const TEMPLATE_NAME = /^[a-z0-9][a-z0-9_-]{0,127}$/
export const TEMPLATE_TAG = /^[a-z0-9][a-z0-9_.-]{0,127}$/
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const HASH = /^[0-9a-f]{64}$/
const STEP_TYPES = ['RUN', 'COPY', 'ENV', 'WORKDIR', 'USER']
const MAX_STEPS = 256
const MAX_ARG = 64 * 1024
/** A layer nothing uses is kept this long (a failed build's, for the retry's cache). */
const LAYER_GRACE_MS = 60 * 60_000

/**
 * Reads the rest of a refused upload and drops it. Answered before its body is read, a request
 * leaves its connection unusable: the client's next request on it waits out the keep-alive and is
 * reset, and a request destroyed mid-body is reset at once.
 */
const readAndDrop = (body: Readable) =>
  new Promise<void>((resolve) => {
    if (body.readableEnded || body.destroyed) return resolve()
    body.once('end', resolve).once('close', resolve).once('error', () => resolve())
    body.resume()
  })

export const newTemplateId = () => Array.from(crypto.randomBytes(20), (b) => 'abcdefghijklmnopqrstuvwxyz0123456789'[b % 36]).join('')

export interface NewBuild {
  templateId: string
  buildId: string
  name: string
  tags: string[]
}

/** Tags as given: lower-cased, deduplicated, each checked (E2B's rules: not a UUID); a 400 naming a bad one. */
export function checkedTags(tags: string[]): string[] {
  const out = [...new Set(tags.map((t) => String(t).toLowerCase()))]
  for (const t of out) if (!TEMPLATE_TAG.test(t) || UUID.test(t)) throw badRequest(`Invalid tag "${t}": lowercase letters, digits, ".", "-" and "_", not a UUID`)
  return out
}

/** Checks a build request's steps (types, argument counts and sizes); a 400 naming the step otherwise. */
export function checkSteps(raw: unknown): Step[] {
  if (raw === undefined || raw === null) return []
  if (!Array.isArray(raw)) throw badRequest('steps must be an array')
  if (raw.length > MAX_STEPS) throw badRequest(`a build has at most ${MAX_STEPS} steps, this one ${raw.length}`)
  return raw.map((s: unknown, i) => {
    const at = `steps[${i}]`
    if (typeof s !== 'object' || s === null) throw badRequest(`${at} must be an object { type, args }`)
    const { type, args, force, filesHash } = s as Record<string, unknown>
    if (typeof type !== 'string' || !STEP_TYPES.includes(type)) throw badRequest(`${at}.type must be one of ${STEP_TYPES.join(', ')}, got ${JSON.stringify(type)}`)
    if (!Array.isArray(args) || args.some((a) => typeof a !== 'string' || a.length > MAX_ARG || a.includes('\0'))) throw badRequest(`${at}.args must be an array of strings (no NUL, at most 64 KiB each)`)
    const want = { RUN: [1, 2], COPY: [2, 4], ENV: [2, 512], WORKDIR: [1, 1], USER: [1, 1] }[type]!
    if (args.length < want[0]! || args.length > want[1]!) throw badRequest(`${at}: ${type} takes ${want[0] === want[1] ? want[0] : `${want[0]} to ${want[1]}`} arguments, got ${args.length}`)
    if (type === 'COPY' && (typeof filesHash !== 'string' || !HASH.test(filesHash))) throw badRequest(`${at}: COPY needs filesHash, 64 lowercase hex characters`)
    if (type === 'ENV') {
      if (args.length % 2) throw badRequest(`${at}: ENV takes pairs of name and value`)
      for (let k = 0; k < args.length; k += 2) if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(args[k] as string)) throw badRequest(`${at}: ${JSON.stringify(String(args[k]).slice(0, 100))} is not an environment variable name`)
    }
    return { type, args, ...(force === true && { force: true }), ...(type === 'COPY' && { filesHash }) } as Step
  })
}

export class TemplateBuilds {
  private queue: (() => void)[] = []
  private active = 0

  constructor(
    private readonly registry: TemplateRegistry,
    private readonly runner: BuildRunner,
    /** The uploaded archives of COPY steps, by files hash. */
    readonly filesDir: string,
    private readonly log: Logger,
    private readonly maxConcurrent: number,
    /** Names of templates sandboxes stand on now. */
    private readonly inUse: () => Set<string>,
    private readonly maxUploadBytes: number,
  ) {
    fs.mkdirSync(filesDir, { recursive: true, mode: 0o700 })
    // Builds that were running when the server stopped ended with it.
    for (const b of registry.builds.unfinishedBuilds()) {
      registry.builds.finishBuild(b.id, { status: 'error', reason: { message: 'the server stopped during the build; start it again', step: 'finalize' } }, Date.now())
    }
  }

  // --- files of COPY steps ---
  archivePath(hash: string): string | undefined {
    if (!HASH.test(hash)) return undefined
    const file = path.join(this.filesDir, `${hash}.tar.gz`)
    return fs.existsSync(file) ? file : undefined
  }

  /** Stores an uploaded gzip tar under its hash (streamed; nothing is kept if it fails or is too big). */
  async putArchive(hash: string, body: Readable, declaredLength?: number): Promise<void> {
    if (!HASH.test(hash)) throw badRequest('the files hash must be 64 lowercase hex characters')
    if (declaredLength !== undefined && declaredLength > this.maxUploadBytes) {
      await readAndDrop(body)
      throw new SandlotError(413, 'payload_too_large', `the upload is ${declaredLength} bytes: at most ${this.maxUploadBytes} (SANDLOT_MAX_TEMPLATE_UPLOAD_MB)`)
    }
    const file = path.join(this.filesDir, `${hash}.tar.gz`)
    const scratch = `${file}.${process.pid}-${crypto.randomBytes(4).toString('hex')}`
    let size = 0
    let head: Buffer | undefined
    const limit = this.maxUploadBytes
    // Read without destroying the request when the limit is passed: its rest is read and dropped
    // before the 413, so the client gets the answer, not a reset.
    const source = body.iterator({ destroyOnReturn: false })
    try {
      await pipeline(async function* () {
        for await (const chunk of source as AsyncIterable<Buffer>) {
          head ??= chunk.subarray(0, 2)
          size += chunk.length
          if (size > limit) throw new SandlotError(413, 'payload_too_large', `the upload is over ${limit} bytes (SANDLOT_MAX_TEMPLATE_UPLOAD_MB)`)
          yield chunk
        }
      }, fs.createWriteStream(scratch, { mode: 0o600 }))
      if (!head || head[0] !== 0x1f || head[1] !== 0x8b) throw badRequest('the upload must be a gzip-compressed tar archive')
      fs.renameSync(scratch, file)
    } catch (err) {
      fs.rmSync(scratch, { force: true })
      if (size > limit) await readAndDrop(body)
      throw err
    }
  }

  // --- templates and builds ---
  /**
   * A new build of template `name` ("alias[:tag]"): an existing alias keeps its id. Tags: the one in
   * the name and `tags`, lower-cased, deduplicated; "default" when none.
   */
  create(name: string, extraTags: string[] = [], o: { builtin?: boolean } & Pick<BuildSpec, 'cpuCount' | 'memoryMB'> = {}): NewBuild {
    if (typeof name !== 'string' || !name) throw badRequest('name is required')
    const { alias } = parseTemplateRef(name)
    const inName = name.split('/').pop()!.split(':')[1]
    if (!TEMPLATE_NAME.test(alias)) throw badRequest(`Invalid template name "${alias}": lowercase letters, digits, "-" and "_" only`)
    if ((alias === 'base' || this.registry.builtins.includes(alias)) && !o.builtin) throw badRequest(`"${alias}" is built by Sandlot itself; give your template another name (build it from ${alias} with fromTemplate)`)
    const tags = checkedTags([...(inName ? [inName] : []), ...extraTags])
    const now = Date.now()
    let t = this.registry.builds.templateByName(alias)
    if (!t) {
      t = { id: newTemplateId(), name: alias, createdAt: now }
      this.registry.builds.insertTemplate(t)
    }
    const buildId = crypto.randomUUID()
    // E2B names a template's resources when it is created (POST /v3/templates), before its build starts.
    this.registry.builds.insertBuild({ id: buildId, templateId: t.id, spec: { tags: tags.length ? tags : ['default'], ...(o.cpuCount && { cpuCount: o.cpuCount }), ...(o.memoryMB && { memoryMB: o.memoryMB }) }, createdAt: now })
    return { templateId: t.id, buildId, name: alias, tags: tags.length ? tags : ['default'] }
  }

  /**
   * Starts a waiting build; it runs in the background (or waits for a free slot). The promise
   * resolves when it has ended, ready or not (its row says which).
   */
  start(templateId: string, buildId: string, spec: BuildSpec): Promise<void> {
    const b = this.registry.builds.getBuild(buildId)
    if (!b || b.templateId !== templateId) throw badRequest(`Build '${buildId}' not found`)
    if (b.status !== 'waiting' || (b.spec as { started?: boolean }).started) throw badRequest('build is not in waiting state')
    const made = b.spec as { tags?: string[]; cpuCount?: number; memoryMB?: number }
    const tags = made.tags ?? ['default']
    spec = { ...spec, cpuCount: spec.cpuCount ?? made.cpuCount, memoryMB: spec.memoryMB ?? made.memoryMB }
    // Stored without a registry password.
    const stored = spec.fromImage ? { ...spec, fromImage: { ref: spec.fromImage.ref, username: spec.fromImage.username } } : spec
    this.registry.builds.setBuildSpec(buildId, { ...stored, tags, started: true })
    const go = async () => {
      this.active++
      this.registry.builds.setBuildStatus(buildId, 'building')
      try {
        await this.runner.run(buildId, spec, () => {
          for (const tag of tags) this.registry.builds.setTag(templateId, tag, buildId, Date.now())
        })
      } catch (err) {
        this.log.error({ err, buildId }, 'template build crashed')
      } finally {
        this.active--
        this.queue.shift()?.()
      }
    }
    // Status reads "building" at once, as E2B's does, even while it waits for a slot.
    this.registry.builds.setBuildStatus(buildId, 'building')
    if (this.active < this.maxConcurrent) return go()
    return new Promise((resolve) => this.queue.push(() => void go().then(resolve)))
  }

  build(templateId: string, buildId: string): BuildRow {
    const b = this.registry.builds.getBuild(buildId)
    if (!b || (templateId && b.templateId !== templateId)) throw badRequest(`Build '${buildId}' not found`)
    return b
  }

  logs(buildId: string, offset: number, limit: number): LogEntry[] {
    return this.registry.builds.logs(buildId, Math.max(0, offset), Math.min(100, Math.max(0, limit)))
  }

  /**
   * Removes layers and unpacked images nothing stands on: no ready build lists them, no sandbox uses
   * them, and they are older than an hour (a failed build's stay that long, so retrying it hits the
   * cache; a running build's are younger, and an image a build reuses is touched). Also what an
   * interrupted capture or pull left. Each removal is a child process (a layer may hold many files).
   */
  async collectLayers(dirs: { layers: string; images: string }, sandboxLayers: () => string[], removeTree: (dir: string) => Promise<void>): Promise<void> {
    const store = this.registry.builds
    const used = new Set(sandboxLayers())
    for (const t of store.listTemplates()) for (const b of store.buildsOf(t.id)) for (const l of b.layers ?? []) used.add(l)
    const cutoff = Date.now() - LAYER_GRACE_MS
    const cached = new Map(store.listLayers().map((l) => [l.path, l.id]))
    // A layer is its directory; an image is <digest>/rootfs.
    const kinds = [
      { dir: dirs.layers, scratch: /\.capture-(\d+)-/, stands: (d: string) => d },
      { dir: dirs.images, scratch: /^pull-(\d+)-/, stands: (d: string) => path.join(d, 'rootfs') },
    ]
    for (const kind of kinds) {
      for (const name of fs.existsSync(kind.dir) ? fs.readdirSync(kind.dir) : []) {
        const dir = path.join(kind.dir, name)
        const interrupted = kind.scratch.exec(name)
        if (interrupted ? !processAlive(Number(interrupted[1])) : !used.has(kind.stands(dir)) && fs.statSync(dir).mtimeMs < cutoff) {
          const id = cached.get(dir)
          if (id) store.deleteLayer(id)
          await removeTree(dir).catch((err) => this.log.warn({ err, dir }, 'cannot remove a template layer or image'))
        }
      }
    }
  }

  /** Deletes a template and its builds; refused while a sandbox stands on it. Its layers go at the next collection. */
  delete(ref: string): void {
    const { alias } = parseTemplateRef(ref)
    const t = this.registry.builds.templateByName(alias) ?? this.registry.builds.templateById(alias)
    if (!t) throw new SandlotError(404, 'template_not_found', `Unknown template "${ref}"`)
    if (this.inUse().has(t.name)) throw badRequest(`Template "${t.name}" is in use by running sandboxes: kill them first`)
    if (this.registry.builds.buildsOf(t.id).some((b) => b.status === 'building' || (b.status === 'waiting' && (b.spec as { started?: boolean }).started))) {
      throw new SandlotError(409, 'conflict', `Template "${t.name}" is being built; wait for the build to end`)
    }
    this.registry.builds.deleteTemplate(t.id)
  }
}
