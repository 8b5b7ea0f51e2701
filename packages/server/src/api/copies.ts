// Sandlot's REST for copies of a sandbox (docs/api.md, "Snapshots and forks"), on lifecycle/copies.ts.
import type { FastifyInstance } from 'fastify'
import type { Config } from '../config.js'
import { MAX_FORKS, type SandboxCopies } from '../lifecycle/copies.js'
import { startDeadline } from '../lifecycle/lifetime.js'
import type { SandboxManager } from '../lifecycle/manager.js'
import { errors, holdSchema, idParams, sandboxSchema } from './openapi.js'
import { holdView, sandboxView } from './serialize.js'

const snapshotSchema = {
  type: 'object',
  properties: {
    template: { type: 'string', description: 'The template to create copies from (Sandbox.create(template))' },
    tag: { type: 'string' },
    buildId: { type: 'string' },
    sandboxId: { type: 'string', description: 'The sandbox it was taken from' },
    createdAt: { type: 'string', format: 'date-time' },
    copied: { type: 'string', enum: ['files'], description: 'What was copied: its files (its memory is not: a copy boots from them)' },
  },
} as const

const forkResultSchema = {
  type: 'object',
  description: 'One fork: its sandbox (and hold, when asked), or why it could not be made',
  properties: {
    sandbox: sandboxSchema,
    hold: holdSchema,
    copied: { type: 'string', enum: ['files'], description: 'What was copied: its files (its memory is not: a copy boots from them)' },
    error: { type: 'object', properties: { status: { type: 'integer' }, error_code: { type: 'string' }, message: { type: 'string' } } },
  },
} as const

type IdParams = { Params: { id: string } }

/** What a copy has of its original: its files, never its memory (no checkpoint of processes here: lifecycle/copies.ts). */
export const COPIED = 'files'

export function copyRoutes(app: FastifyInstance, manager: SandboxManager, copies: SandboxCopies, config: Config): void {
  const view = (s: Parameters<typeof sandboxView>[0]) => sandboxView(s, { domain: config.domain, trafficTokenOf: (id) => manager.trafficTokenOf(id) })

  app.post<IdParams & { Body: { name?: string } | null }>('/api/v1/sandboxes/:id/snapshots', {
    schema: {
      summary: 'Take a snapshot',
      description:
        "Its files as they are now (it is frozen for the copy, then runs on) as a build of template `name` (a new build when it exists), else of a template of its own; create sandboxes from it by `template`. Memory is not captured: a copy boots from the files and runs its template's start command.",
      tags: ['snapshots'],
      params: idParams,
      body: { type: ['object', 'null'], additionalProperties: false, properties: { name: { type: 'string', minLength: 1, maxLength: 128 } } },
      response: { 201: snapshotSchema, ...errors },
    },
  }, async (req, reply) => {
    const made = await copies.snapshot(manager.get(req.params.id).id, req.body?.name)
    return reply.code(201).send({ template: made.name, tag: made.tag, buildId: made.buildId, sandboxId: req.params.id, createdAt: new Date().toISOString(), copied: COPIED })
  })

  app.get<{ Querystring: { sandboxId?: string; name?: string } }>('/api/v1/snapshots', {
    schema: {
      summary: 'List snapshots',
      description: 'Templates made by snapshots, newest first, each with its latest snapshot; delete one as a template (DELETE /api/v1/templates/{name}).',
      tags: ['snapshots'],
      querystring: { type: 'object', properties: { sandboxId: { type: 'string' }, name: { type: 'string' } } },
      response: { 200: { type: 'array', items: snapshotSchema }, ...errors },
    },
  }, async (req) =>
    copies.list({ sandboxId: req.query.sandboxId, name: req.query.name }).map((m) => ({ template: m.name, tag: m.tag, buildId: m.buildId, sandboxId: m.sandboxId, createdAt: new Date(m.createdAt).toISOString(), copied: COPIED })),
  )

  app.post<IdParams & { Body: { count?: number; keepAliveMs?: number; hold?: boolean } | null }>('/api/v1/sandboxes/:id/fork', {
    schema: {
      summary: 'Fork a sandbox',
      description:
        "`count` new sandboxes from its files as they are now, with its env vars, metadata, network rules, lifecycle and limits; it runs on with its deadline. Each lives keepAliveMs (default the longest allowed), or while its hold is renewed when `hold` is asked. Memory is not copied: each boots from the files and runs its template's start command.",
      tags: ['snapshots'],
      params: idParams,
      body: {
        type: ['object', 'null'],
        additionalProperties: false,
        properties: { count: { type: 'integer', minimum: 1, maximum: MAX_FORKS }, keepAliveMs: { type: 'integer', minimum: 0 }, hold: { type: 'boolean' } },
      },
      response: { 201: { type: 'array', items: forkResultSchema }, ...errors },
    },
  }, async (req, reply) => {
    const { count = 1, keepAliveMs, hold } = req.body ?? {}
    const endAt = startDeadline(keepAliveMs, hold, Date.now(), config)
    const results = await copies.fork(manager.get(req.params.id).id, count, () => endAt, !!hold)
    return reply.code(201).send(
      results.map((r) =>
        'sandbox' in r
          ? { sandbox: view(r.sandbox), ...(r.hold && { hold: holdView(r.hold) }), copied: COPIED }
          : { error: { status: r.error.status, error_code: r.error.errorCode, message: r.error.message } },
      ),
    )
  })
}
