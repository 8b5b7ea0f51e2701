// Sandlot's own REST control plane (/api/v1), used by the CLI and the Sandlot SDK.
import type { FastifyInstance } from 'fastify'
import { badRequest } from '../errors.js'
import type { CreateRequest, SandboxManager } from '../lifecycle/manager.js'
import { sandboxView } from './serialize.js'

const stringMap = { type: 'object', additionalProperties: { type: 'string' }, maxProperties: 256 } as const

const createSchema = {
  body: {
    type: 'object',
    additionalProperties: false,
    properties: {
      template: { type: 'string', minLength: 1, maxLength: 128 },
      metadata: stringMap,
      envVars: stringMap,
      cpuCount: { type: 'integer', minimum: 1 },
      memoryMB: { type: 'integer', minimum: 64 },
      pids: { type: 'integer', minimum: 32 },
      timeoutMs: { type: 'integer', minimum: 1 },
    },
  },
} as const

/** Parses a metadata filter given as one query-string value ("k=v&k2=v2", each part URL-encoded). */
export function parseMetadataFilter(raw: unknown): Record<string, string> {
  if (raw === undefined || raw === '') return {}
  if (typeof raw !== 'string') throw badRequest('metadata must be given once, as "key=value&key2=value2"')
  const out: Record<string, string> = {}
  for (const [k, v] of new URLSearchParams(raw)) {
    if (!k) throw badRequest(`invalid metadata filter "${raw}"`)
    out[k] = v
  }
  return out
}

export const matchesMetadata = (metadata: Record<string, string>, filter: Record<string, string>) =>
  Object.entries(filter).every(([k, v]) => metadata[k] === v)

export function nativeRoutes(app: FastifyInstance, manager: SandboxManager): void {
  app.post<{ Body: CreateRequest }>('/api/v1/sandboxes', { schema: createSchema }, async (req, reply) => {
    const s = await manager.create(req.body ?? {})
    return reply.code(201).send(sandboxView(s))
  })

  app.get<{ Querystring: { metadata?: string; template?: string } }>('/api/v1/sandboxes', async (req) => {
    const filter = parseMetadataFilter(req.query.metadata)
    return manager
      .list()
      .filter((s) => matchesMetadata(s.metadata, filter) && (!req.query.template || s.template === req.query.template))
      .map(sandboxView)
  })

  app.get<{ Params: { id: string } }>('/api/v1/sandboxes/:id', async (req) => sandboxView(manager.get(req.params.id)))

  app.delete<{ Params: { id: string } }>('/api/v1/sandboxes/:id', async (req, reply) => {
    await manager.kill(req.params.id)
    return reply.code(204).send()
  })
}
