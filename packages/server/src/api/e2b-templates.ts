// E2B's template builder on the wire (../shared/reference/e2b-protocol-next.md §2.2), so the e2b
// SDK's Template.build(), Template.exists(), tags and `e2b template create` work unchanged: the
// same pipeline as Sandlot's own REST (templates/). File uploads go to a signed URL on this server.
import type { FastifyInstance, FastifyRequest } from 'fastify'
import crypto from 'node:crypto'
import { SandlotError, badRequest } from '../errors.js'
import type { Limits } from '../config.js'
import type { BuildRow, CustomTemplate } from '../store/templates.js'
import type { BuildSpec } from '../templates/build.js'
import { TEMPLATE_TAG, checkSteps, type TemplateBuilds } from '../templates/builds.js'
import { parseTemplateRef, type TemplateRegistry } from '../templates/registry.js'
import { ENVD_VERSION } from './serialize.js'
import { logEntryView, rawBodyRoutes, uploadArchive } from './templates.js'

/** `limit` (1–100, default 100) and `nextToken` (an offset this server handed out) of a paged list. */
function pageOf(q: { limit?: string; nextToken?: string }): { limit: number; start: number } {
  const limit = q.limit === undefined ? 100 : Number(q.limit)
  const start = q.nextToken === undefined ? 0 : Number(q.nextToken)
  if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw badRequest('limit must be an integer from 1 to 100')
  if (!Number.isInteger(start) || start < 0) throw badRequest('nextToken is not one this server handed out')
  return { limit, start }
}

/** Where a COPY step's files are uploaded: outside the API key (the SDK sends none), signed instead. */
export const UPLOAD_PREFIX = '/e2b-template-files/'
const UPLOAD_TTL_MS = 60 * 60_000
/** Signs upload links; per process, as links are asked for per build. */
const secret = crypto.randomBytes(32)
const sign = (hash: string, expires: number) => crypto.createHmac('sha256', secret).update(`${hash}:${expires}`).digest('hex')

/** E2B's default base image (fromBaseImage) is Sandlot's base template. */
const E2B_BASE_IMAGE = /^(docker\.io\/)?e2bdev\/base(:[\w.-]+)?$/

const notFound = (what: string) => new SandlotError(404, 'not_found', what)

function baseUrlOf(req: FastifyRequest): string {
  const host = req.headers.host ?? 'localhost'
  return `${req.protocol}://${host}`
}

const iso = (ms: number | null | undefined) => (ms ? new Date(ms).toISOString() : null)

/** A build as E2B's TemplateBuild shows it; resources as the build asked (else the server's defaults). */
function buildView(b: BuildRow, defaults: Limits) {
  const spec = b.spec as { cpuCount?: number; memoryMB?: number }
  return {
    buildID: b.id,
    status: b.status,
    createdAt: iso(b.createdAt),
    updatedAt: iso(b.finishedAt ?? b.createdAt),
    ...(b.finishedAt && { finishedAt: iso(b.finishedAt) }),
    cpuCount: b.config?.cpuCount ?? spec.cpuCount ?? defaults.cpuCount,
    memoryMB: b.config?.memoryMB ?? spec.memoryMB ?? defaults.memoryMB,
    diskSizeMB: defaults.diskSizeMB,
    envdVersion: ENVD_VERSION,
  }
}

export function e2bTemplateRoutes(app: FastifyInstance, builds: TemplateBuilds, templates: TemplateRegistry, defaults: Limits): void {
  const store = templates.builds
  const byId = (tid: string) => {
    // A snapshot's id carries a tag and maybe a team ("<id>:default", "<team>/<name>:<tag>"): ignored here.
    const { alias } = parseTemplateRef(tid)
    const t = store.templateById(tid) ?? store.templateByName(tid) ?? store.templateById(alias) ?? store.templateByName(alias)
    if (!t) throw notFound(`Template '${tid}' not found`)
    return t
  }

  /**
   * One template as E2B's list shows it (Template), with its builds newest first (TemplateWithBuilds'):
   * the base, which Sandlot builds from its recipe, as one ready build; a built one with its default
   * tag's build (else its latest) as the current one.
   */
  const viewOf = (name: string, o: { id: string; isPublic: boolean; createdAt: number; builds: ReturnType<typeof buildView>[]; current?: ReturnType<typeof buildView> }) => {
    const spawns = store.spawns(name)
    return {
      templateID: o.id,
      buildID: o.current?.buildID ?? null,
      cpuCount: o.current?.cpuCount ?? defaults.cpuCount,
      memoryMB: o.current?.memoryMB ?? defaults.memoryMB,
      diskSizeMB: defaults.diskSizeMB,
      public: o.isPublic,
      aliases: [name],
      names: [name],
      createdAt: iso(o.createdAt),
      updatedAt: o.builds.length ? o.builds.map((b) => b.updatedAt!).sort().at(-1)! : iso(o.createdAt),
      createdBy: null,
      lastSpawnedAt: iso(spawns.lastAt),
      spawnCount: spawns.count,
      buildCount: o.builds.length,
      buildStatus: o.current?.status ?? 'waiting',
      envdVersion: ENVD_VERSION,
      builds: o.builds,
    }
  }
  const baseView = () => {
    const base = templates.base()
    if (!base) return undefined
    const at = iso(base.builtAt)
    const build = { buildID: base.recipeHash, status: 'ready' as const, createdAt: at, updatedAt: at, finishedAt: at, cpuCount: defaults.cpuCount, memoryMB: defaults.memoryMB, diskSizeMB: defaults.diskSizeMB, envdVersion: ENVD_VERSION }
    return viewOf('base', { id: 'base', isPublic: true, createdAt: base.builtAt, builds: [build], current: build })
  }
  const builtView = (t: CustomTemplate) => {
    const builds = store.buildsOf(t.id).reverse().map((b) => buildView(b, defaults))
    const tagged = store.buildOfTag(t.id, 'default')
    return viewOf(t.name, { id: t.id, isPublic: false, createdAt: t.createdAt, builds, current: builds.find((b) => b.buildID === tagged) ?? builds[0] })
  }
  const listing = () => [baseView(), ...store.listTemplates().map(builtView)].filter((t) => t !== undefined)
  const summary = ({ builds: _, ...t }: NonNullable<ReturnType<typeof baseView>>) => t

  app.get('/templates', async () => listing().map(summary))
  // The paged list: `limit` (default 100) and the `x-next-token` header, as /v2/sandboxes.
  app.get<{ Querystring: { limit?: string; nextToken?: string } }>('/v2/templates', async (req, reply) => {
    const { limit, start } = pageOf(req.query)
    const all = listing()
    const page = all.slice(start, start + limit)
    if (start + limit < all.length) reply.header('x-next-token', String(start + limit))
    return page.map(summary)
  })
  app.get<{ Params: { tid: string }; Querystring: { limit?: string; nextToken?: string } }>('/templates/:tid', async (req, reply) => {
    const { alias } = parseTemplateRef(req.params.tid)
    const custom = store.templateById(req.params.tid) ?? store.templateByName(alias)
    const t = custom ? builtView(custom) : alias === 'base' ? baseView() : undefined
    if (!t) throw notFound(`Template '${req.params.tid}' not found`)
    const { limit, start } = pageOf(req.query)
    if (start + limit < t.builds.length) reply.header('x-next-token', String(start + limit))
    const { templateID, public: isPublic, aliases, names, createdAt, updatedAt, lastSpawnedAt, spawnCount } = t
    return { templateID, public: isPublic, aliases, names, createdAt, updatedAt, lastSpawnedAt, spawnCount, builds: t.builds.slice(start, start + limit) }
  })

  app.post<{ Body: { name?: string; alias?: string; tags?: string[]; cpuCount?: number; memoryMB?: number } }>('/v3/templates', async (req, reply) => {
    const body = req.body ?? {}
    const name = body.name ?? body.alias
    if (typeof name !== 'string' || !name) throw badRequest('name is required')
    if (body.tags !== undefined && (!Array.isArray(body.tags) || body.tags.some((t) => typeof t !== 'string'))) throw badRequest('tags must be an array of strings')
    for (const k of ['cpuCount', 'memoryMB'] as const) {
      if (body[k] !== undefined && (!Number.isInteger(body[k]) || body[k]! < 1)) throw badRequest(`${k} must be a positive integer`)
    }
    const made = builds.create(name, body.tags ?? [], { cpuCount: body.cpuCount, memoryMB: body.memoryMB })
    return reply.code(202).send({ templateID: made.templateId, buildID: made.buildId, names: [made.name], aliases: [made.name], tags: made.tags, public: false })
  })

  app.get<{ Params: { tid: string; hash: string } }>('/templates/:tid/files/:hash', async (req, reply) => {
    const { hash } = req.params
    if (!/^[0-9a-f]{64}$/.test(hash)) throw badRequest(`Invalid files hash "${hash.slice(0, 80)}": 64 lowercase hex characters`)
    byId(req.params.tid)
    if (builds.archivePath(hash)) return reply.code(201).send({ present: true })
    const expires = Date.now() + UPLOAD_TTL_MS
    return reply.code(201).send({ present: false, url: `${baseUrlOf(req)}${UPLOAD_PREFIX}${hash}?expires=${expires}&signature=${sign(hash, expires)}` })
  })

  rawBodyRoutes(app, (scope) => {
    scope.put<{ Params: { hash: string }; Querystring: { expires?: string; signature?: string } }>(`${UPLOAD_PREFIX}:hash`, async (req, reply) => {
      const { hash } = req.params
      const expires = Number(req.query.expires)
      const given = Buffer.from(String(req.query.signature ?? ''), 'hex')
      const wanted = Buffer.from(sign(hash, expires), 'hex')
      if (!Number.isFinite(expires) || expires < Date.now() || given.length !== wanted.length || !crypto.timingSafeEqual(given, wanted)) {
        throw new SandlotError(403, 'forbidden', 'This upload link is invalid or has expired; ask for a new one')
      }
      await uploadArchive(builds, hash, req)
      return reply.code(200).send()
    })
  })

  app.post<{ Params: { tid: string; bid: string }; Body: Record<string, unknown> }>('/v2/templates/:tid/builds/:bid', async (req, reply) => {
    const b = req.body ?? {}
    const t = byId(req.params.tid)
    const { fromImage, fromTemplate } = b as { fromImage?: unknown; fromTemplate?: unknown }
    if ((fromImage && fromTemplate) || (!fromImage && !fromTemplate)) throw badRequest('Exactly one of fromImage or fromTemplate must be given and non-empty')
    let from: Pick<BuildSpec, 'fromTemplate' | 'fromImage'>
    if (typeof fromTemplate === 'string') from = { fromTemplate }
    else if (typeof fromImage === 'string' && E2B_BASE_IMAGE.test(fromImage)) from = { fromTemplate: 'base' }
    else if (typeof fromImage === 'string') {
      const registry = b.fromImageRegistry as { type?: string; username?: unknown; password?: unknown } | undefined
      if (registry !== undefined && registry !== null && (typeof registry !== 'object' || !['registry', 'aws', 'gcp'].includes(registry.type as string))) throw badRequest('fromImageRegistry.type is one of "registry", "aws" and "gcp"')
      if (registry && registry.type !== 'registry') throw new SandlotError(501, 'not_implemented', `Registry credentials of type "${registry.type}" (AWS, GCP) are not supported by Sandlot yet: give a username and password (type "registry")`)
      if (registry && (typeof registry.username !== 'string' || typeof registry.password !== 'string')) throw badRequest('fromImageRegistry needs username and password')
      from = { fromImage: { ref: fromImage, ...(registry && { username: registry.username as string, password: registry.password as string }) } }
    } else throw badRequest('fromImage and fromTemplate are strings')
    if (from.fromTemplate) templates.resolve(from.fromTemplate)
    const spec: BuildSpec = {
      ...from,
      steps: checkSteps(b.steps),
      ...(typeof b.startCmd === 'string' && b.startCmd && { startCmd: b.startCmd }),
      ...(typeof b.readyCmd === 'string' && b.readyCmd && { readyCmd: b.readyCmd }),
      ...(b.force === true && { force: true }),
    }
    void builds.start(t.id, req.params.bid, spec)
    return reply.code(202).send()
  })

  app.get<{ Params: { tid: string; bid: string }; Querystring: { logsOffset?: string; limit?: string } }>('/templates/:tid/builds/:bid/status', async (req) => {
    const b = builds.build(req.params.tid, req.params.bid)
    const offset = Number(req.query.logsOffset ?? 0)
    const limit = Number(req.query.limit ?? 100)
    const entries = builds.logs(b.id, Number.isInteger(offset) ? offset : 0, Number.isInteger(limit) ? limit : 100)
    return {
      templateID: b.templateId,
      buildID: b.id,
      // Waiting for a free slot reads "building", as on E2B once the build was started.
      status: b.status,
      logEntries: entries.map(logEntryView),
      logs: [],
      ...(b.reason && { reason: { message: b.reason.message, ...(b.reason.step && { step: b.reason.step }), logEntries: [] } }),
    }
  })

  app.get<{ Params: { alias: string } }>('/templates/aliases/:alias', async (req) => {
    const { alias } = parseTemplateRef(req.params.alias)
    if (alias === 'base') return { templateID: 'base', public: true }
    const t = store.templateByName(alias)
    if (!t) throw notFound(`Template alias '${alias}' not found`)
    return { templateID: t.id, public: false }
  })

  app.post<{ Body: { target?: string; tags?: string[] } }>('/templates/tags', async (req, reply) => {
    const { target, tags } = req.body ?? {}
    if (typeof target !== 'string' || !/^[^:]+:[^:]+$/.test(target)) throw badRequest('target must be "name:tag"')
    if (!Array.isArray(tags) || !tags.length || tags.some((t) => typeof t !== 'string' || !TEMPLATE_TAG.test(t.toLowerCase()))) throw badRequest('tags must be a non-empty array of tags')
    const { alias, tag } = parseTemplateRef(target)
    const t = store.templateByName(alias)
    const buildId = t && store.buildOfTag(t.id, tag)
    if (!t || !buildId) throw notFound(`Template '${target}' not found`)
    const lowered = [...new Set(tags.map((x) => x.toLowerCase()))]
    for (const x of lowered) store.setTag(t.id, x, buildId, Date.now())
    return reply.code(201).send({ buildID: buildId, tags: lowered })
  })

  app.delete<{ Body: { name?: string; tags?: string[] } }>('/templates/tags', async (req, reply) => {
    const { name, tags } = req.body ?? {}
    if (typeof name !== 'string' || !Array.isArray(tags)) throw badRequest('the body is { name, tags }')
    const t = store.templateByName(parseTemplateRef(name).alias)
    if (!t) throw notFound(`Template '${name}' not found`)
    if (tags.includes('default')) throw badRequest('The "default" tag cannot be removed')
    for (const x of tags) store.removeTag(t.id, String(x).toLowerCase())
    return reply.code(204).send()
  })

  app.get<{ Params: { tid: string } }>('/templates/:tid/tags', async (req) =>
    store.tags(byId(req.params.tid).id).map((x) => ({ tag: x.tag, buildID: x.buildId, createdAt: new Date(x.createdAt).toISOString() })),
  )

  app.delete<{ Params: { tid: string } }>('/templates/:tid', async (req, reply) => {
    builds.delete(byId(req.params.tid).name)
    return reply.code(204).send()
  })
}
