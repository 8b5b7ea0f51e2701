// Sandlot's REST for templates (docs/api.md, "Templates"): build one from a template and steps, the
// files its COPY steps need, a build's status and logs, the list, and delete.
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Readable } from 'node:stream'
import { SandlotError, badRequest } from '../errors.js'
import type { BuildSpec } from '../templates/build.js'
import { checkSteps, checkedTags, type TemplateBuilds } from '../templates/builds.js'
import { parseTemplateRef, type TemplateRegistry } from '../templates/registry.js'
import type { LogEntry } from '../store/templates.js'
import { errorSchema } from './openapi.js'

/** A build log entry as both APIs show it (E2B's BuildLogEntry). */
export const logEntryView = (e: LogEntry) => ({ timestamp: new Date(e.at).toISOString(), level: e.level, message: e.message, ...(e.step && { step: e.step }) })

/**
 * Routes whose body is the raw request stream whatever its content type (an archive of COPY files:
 * E2B's uploads send no Content-Type at all), in a scope of their own so other routes keep parsing.
 */
export function rawBodyRoutes(app: FastifyInstance, routes: (scope: FastifyInstance) => void): void {
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('*', (_req, payload, done) => done(null, payload))
    routes(scope)
  })
}

/** Stores a request's body as the COPY archive `hash` (streamed; its declared length checked first). */
export function uploadArchive(builds: TemplateBuilds, hash: string, req: FastifyRequest): Promise<void> {
  const length = req.headers['content-length'] === undefined ? undefined : Number(req.headers['content-length'])
  return builds.putArchive(hash, req.body as Readable, length)
}

interface BuildBody {
  name: string
  tags?: string[]
  fromTemplate?: string
  fromImage?: { ref: string; username?: string; password?: string }
  steps?: unknown
  startCmd?: string
  readyCmd?: string
  force?: boolean
  cpuCount?: number
  memoryMB?: number
}

const nameParams = { type: 'object', required: ['name'], properties: { name: { type: 'string', description: 'A template name, "name" or "name:tag"' } } } as const

const tagSchema = {
  summary: 'Tag a build',
  description: 'More tags for the build a tag points at (target, else the tag in the name, else "default"); a tag that exists moves.',
  tags: ['templates'],
  params: nameParams,
  body: {
    type: 'object',
    additionalProperties: false,
    required: ['tags'],
    properties: {
      target: { type: 'string', minLength: 1, maxLength: 128 },
      tags: { type: 'array', minItems: 1, maxItems: 32, items: { type: 'string', minLength: 1, maxLength: 128 } },
    },
  },
} as const

const buildSchema = {
  summary: 'Build a template',
  description: 'From a template (default base) or an OCI image, then steps (RUN, COPY, ENV, WORKDIR, USER: E2B\'s), each a cached layer; the start command runs at every create and the create answers once the ready command passes. Runs in the background: follow it with GET …/builds/{buildId}. COPY steps name an archive uploaded first (PUT /api/v1/templates/files/{hash}).',
  tags: ['templates'],
  body: {
    type: 'object',
    additionalProperties: false,
    required: ['name'],
    properties: {
      name: { type: 'string', minLength: 1, maxLength: 256 },
      tags: { type: 'array', items: { type: 'string', maxLength: 128 }, maxItems: 32 },
      fromTemplate: { type: 'string', minLength: 1, maxLength: 256 },
      fromImage: {
        type: 'object',
        additionalProperties: false,
        required: ['ref'],
        properties: { ref: { type: 'string', minLength: 1, maxLength: 1024 }, username: { type: 'string', maxLength: 1024 }, password: { type: 'string', maxLength: 8192 } },
      },
      steps: { type: 'array', maxItems: 256 },
      startCmd: { type: 'string', maxLength: 65536 },
      readyCmd: { type: 'string', maxLength: 65536 },
      force: { type: 'boolean' },
      cpuCount: { type: 'integer', minimum: 1 },
      memoryMB: { type: 'integer', minimum: 128 },
    },
  },
} as const

/** The spec a build runs, from a request checked by the schema and checkSteps. */
export function buildSpecOf(b: Omit<BuildBody, 'name' | 'tags'>): BuildSpec {
  if (b.fromImage && b.fromTemplate) throw badRequest('give fromTemplate or fromImage, not both')
  return {
    ...(b.fromImage ? { fromImage: b.fromImage } : { fromTemplate: b.fromTemplate ?? 'base' }),
    steps: checkSteps(b.steps),
    ...(b.startCmd && { startCmd: b.startCmd }),
    ...(b.readyCmd && { readyCmd: b.readyCmd }),
    ...(b.force && { force: true }),
    ...(b.cpuCount && { cpuCount: b.cpuCount }),
    ...(b.memoryMB && { memoryMB: b.memoryMB }),
  }
}

export function templateRoutes(app: FastifyInstance, builds: TemplateBuilds, templates: TemplateRegistry): void {
  app.get('/api/v1/templates', { schema: { summary: 'List templates', tags: ['templates'], response: { 200: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' }, id: { type: 'string' }, tags: { type: 'array', items: { type: 'string' } }, createdAt: { type: 'string', format: 'date-time' }, builtBy: { type: 'string' } } } } } } }, async () => [
    { name: 'base', id: 'base', tags: ['default'], builtBy: 'sandlot' },
    ...templates.builds.listTemplates().map((t) => ({
      name: t.name,
      id: t.id,
      tags: templates.builds.tags(t.id).map((x) => x.tag),
      createdAt: new Date(t.createdAt).toISOString(),
      ...(templates.builtins.includes(t.name) && { builtBy: 'sandlot' }),
    })),
  ])

  // One template with its builds, newest first: status, tags, when, and how often it was used.
  app.get<{ Params: { name: string } }>('/api/v1/templates/:name', { schema: { summary: 'Describe a template and its builds', tags: ['templates'], params: nameParams, response: { 404: errorSchema } } }, async (req) => {
    const { alias } = parseTemplateRef(req.params.name)
    const store = templates.builds
    const spawns = store.spawns(alias)
    const used = { spawnCount: spawns.count, lastSpawnedAt: spawns.lastAt && new Date(spawns.lastAt).toISOString() }
    const base = alias === 'base' ? templates.base() : undefined
    if (base) return { name: 'base', id: 'base', tags: ['default'], builtBy: 'sandlot', createdAt: new Date(base.builtAt).toISOString(), ...used, builds: [] }
    const t = store.templateByName(alias) ?? store.templateById(alias)
    if (!t) throw new SandlotError(404, 'template_not_found', `Unknown template "${alias}". Available templates: ${templates.available().join(', ')}`)
    const tags = store.tags(t.id)
    return {
      name: t.name,
      id: t.id,
      tags: tags.map((x) => x.tag),
      createdAt: new Date(t.createdAt).toISOString(),
      ...used,
      builds: store.buildsOf(t.id).reverse().map((b) => ({
        buildId: b.id,
        status: b.status,
        tags: tags.filter((x) => x.buildId === b.id).map((x) => x.tag),
        createdAt: new Date(b.createdAt).toISOString(),
        finishedAt: b.finishedAt && new Date(b.finishedAt).toISOString(),
        ...(b.config && { config: b.config }),
        ...(b.reason && { reason: b.reason }),
      })),
    }
  })

  app.post<{ Body: BuildBody }>('/api/v1/templates', { schema: buildSchema }, async (req, reply) => {
    const spec = buildSpecOf(req.body)
    // A base template must exist before anything is recorded (a 400 that lists what does); an
    // image is pulled by the build.
    if (spec.fromTemplate) templates.resolve(spec.fromTemplate)
    const made = builds.create(req.body.name, req.body.tags)
    void builds.start(made.templateId, made.buildId, spec)
    return reply.code(202).send(made)
  })

  app.get<{ Params: { templateId: string; buildId: string }; Querystring: { logsOffset?: string; limit?: string } }>(
    '/api/v1/templates/:templateId/builds/:buildId',
    {
      schema: {
        summary: "A build's status and logs",
        description: 'status: waiting, building, ready or error (with reason: message and the failing step, "base", "1"…"N" or "finalize"). Poll with logsOffset advancing by the entries received, until the status is final and a page is empty.',
        tags: ['templates'],
        querystring: { type: 'object', properties: { logsOffset: { type: 'string', description: 'integer ≥ 0' }, limit: { type: 'string', description: 'integer, at most 100' } } },
        response: { 400: errorSchema },
      },
    },
    async (req) => {
      const b = builds.build(req.params.templateId, req.params.buildId)
      const offset = Number(req.query.logsOffset ?? 0)
      const limit = Number(req.query.limit ?? 100)
      if (!Number.isInteger(offset) || offset < 0 || !Number.isInteger(limit) || limit < 0) throw badRequest('logsOffset and limit are non-negative integers')
      return {
        templateId: b.templateId,
        buildId: b.id,
        status: b.status,
        logEntries: builds.logs(b.id, offset, limit).map(logEntryView),
        ...(b.reason && { reason: b.reason }),
      }
    },
  )

  // More tags for the build a tag points at (the CLI's `template tag NAME:TAG NEWTAG…`); a tag that
  // exists moves. `target` is the tag to start from: the one in the name, else "default".
  app.post<{ Params: { name: string }; Body: { target?: string; tags: string[] } }>('/api/v1/templates/:name/tags', { schema: tagSchema }, async (req, reply) => {
    const { alias, tag: inName } = parseTemplateRef(req.params.name)
    const target = (req.body.target ?? inName).toLowerCase()
    const tags = checkedTags(req.body.tags)
    if (alias === 'base') throw badRequest('"base" is built by Sandlot itself and takes no tags')
    const t = templates.builds.templateByName(alias)
    if (!t) throw new SandlotError(404, 'template_not_found', `Unknown template "${alias}"`)
    const buildId = templates.builds.buildOfTag(t.id, target)
    if (!buildId) throw new SandlotError(404, 'tag_not_found', `Template "${alias}" has no tag "${target}" (tags: ${templates.builds.tags(t.id).map((x) => x.tag).join(', ') || 'none'})`)
    for (const x of tags) templates.builds.setTag(t.id, x, buildId, Date.now())
    return reply.code(201).send({ name: alias, buildId, tags: templates.builds.tags(t.id).filter((x) => x.buildId === buildId).map((x) => x.tag) })
  })

  app.delete<{ Params: { name: string } }>('/api/v1/templates/:name', { schema: { summary: 'Delete a template and its builds', description: 'Refused (400) while a sandbox stands on it, 409 while it is being built.', tags: ['templates'], params: nameParams, response: { 204: { type: 'null' }, 400: errorSchema, 404: errorSchema, 409: errorSchema } } }, async (req, reply) => {
    builds.delete(req.params.name)
    return reply.code(204).send()
  })

  // The files of COPY steps: a gzip tar named by its hash (E2B's files hash), streamed to disk.
  rawBodyRoutes(app, (scope) => {
    const hashParams = { type: 'object', required: ['hash'], properties: { hash: { type: 'string', description: 'sha256 of the archive (E2B\'s files hash), 64 lowercase hex' } } } as const
    scope.get<{ Params: { hash: string } }>('/api/v1/templates/files/:hash', { schema: { summary: 'Whether a COPY archive is here', tags: ['templates'], params: hashParams } }, async (req) => ({ present: builds.archivePath(req.params.hash) !== undefined }))
    scope.put<{ Params: { hash: string } }>('/api/v1/templates/files/:hash', { schema: { summary: 'Upload a COPY archive', description: 'A gzip-compressed tar, streamed (at most SANDLOT_MAX_TEMPLATE_UPLOAD_MB).', tags: ['templates'], params: hashParams, response: { 201: { type: 'object', properties: { present: { type: 'boolean' } } }, 400: errorSchema, 413: errorSchema } } }, async (req, reply) => {
      await uploadArchive(builds, req.params.hash, req)
      return reply.code(201).send({ present: true })
    })
  })
}
