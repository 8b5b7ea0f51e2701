// Sandlot's own REST control plane (/api/v1, docs/api.md), used by the Sandlot SDK and the CLI.
import type { FastifyInstance } from 'fastify'
import type { Config } from '../config.js'
import { badRequest } from '../errors.js'
import { keepAliveDeadline } from '../lifecycle/lifetime.js'
import { ingressConfigOf } from '../lifecycle/ingress.js'
import type { CreateRequest, SandboxManager, SandboxState } from '../lifecycle/manager.js'
import { parseNativeIngress, parseNativeNetwork, parseNativeNetworkUpdate } from '../network/config.js'
import { MIN_DISK_MB } from '../runtime/driver.js'
import { holdView, sandboxView } from './serialize.js'

const stringMap = { type: 'object', additionalProperties: { type: 'string' }, maxProperties: 256 } as const

type CreateBody = Omit<CreateRequest, 'endAt' | 'network' | 'ingress'> & { keepAliveMs?: number; network?: unknown }

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
      diskSizeMB: { type: 'integer', minimum: MIN_DISK_MB },
      hold: { type: 'boolean' },
      keepAliveMs: { type: 'integer', minimum: 0 },
      // { allowInternetAccess?, allowOut?, denyOut?, allowPublicTraffic?, maskRequestHost? }, checked
      // by network/config.ts (which names what is wrong).
      network: {},
    },
  },
} as const

const keepAliveSchema = {
  body: { type: 'object', additionalProperties: false, required: ['ms'], properties: { ms: { type: 'integer', minimum: 0 } } },
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

type IdParams = { Params: { id: string } }
type HoldParams = { Params: { id: string; holdId: string } }

export function nativeRoutes(app: FastifyInstance, manager: SandboxManager, config: Config): void {
  // config.domain is read per call: with the default domain it names the port, known once listening.
  const view = (s: SandboxState) => sandboxView(s, { domain: config.domain, trafficTokenOf: (id) => manager.trafficTokenOf(id) })
  app.post<{ Body: CreateBody }>('/api/v1/sandboxes', { schema: createSchema }, async (req, reply) => {
    const { hold, keepAliveMs, network: rawNetwork, ...rest } = req.body ?? {}
    const network = parseNativeNetwork(rawNetwork)
    const ingress = ingressConfigOf(parseNativeIngress(rawNetwork))
    // Nobody holds a sandbox created without a hold: it gets the longest keepAlive unless told.
    const ms = keepAliveMs ?? (hold ? undefined : config.keepAliveLimitMs)
    if (ms === 0 && !hold) throw badRequest('keepAliveMs 0 without a hold would destroy the sandbox as soon as it is made: give a keepAlive, or hold it')
    const endAt = ms === undefined ? null : keepAliveDeadline(ms, Date.now(), config)
    const created = await manager.create({ ...rest, endAt, hold, network, ingress })
    return reply.code(201).send({ ...view(created.sandbox), ...(created.hold && { hold: holdView(created.hold) }) })
  })

  app.get<{ Querystring: { metadata?: string; template?: string } }>('/api/v1/sandboxes', async (req) => {
    const filter = parseMetadataFilter(req.query.metadata)
    return manager
      .list()
      .filter((s) => matchesMetadata(s.metadata, filter) && (!req.query.template || s.template === req.query.template))
      .map(view)
  })

  app.get<IdParams>('/api/v1/sandboxes/:id', async (req) => view(manager.get(req.params.id)))

  app.delete<IdParams>('/api/v1/sandboxes/:id', async (req, reply) => {
    await manager.kill(req.params.id)
    return reply.code(204).send()
  })

  app.post<IdParams & { Body: { ms: number } }>('/api/v1/sandboxes/:id/keep-alive', { schema: keepAliveSchema }, async (req) => {
    const endAt = keepAliveDeadline(req.body.ms, Date.now(), config)
    return view(manager.setDeadline(req.params.id, () => endAt))
  })

  // A full replace: what the body leaves out is cleared ({} lifts every rule). In force once it answers.
  app.put<IdParams & { Body: unknown }>('/api/v1/sandboxes/:id/network', async (req) =>
    view(await manager.updateNetwork(req.params.id, parseNativeNetworkUpdate(req.body))),
  )

  app.post<IdParams>('/api/v1/sandboxes/:id/holds', async (req, reply) => reply.code(201).send(holdView(manager.openHold(req.params.id))))

  app.put<HoldParams>('/api/v1/sandboxes/:id/holds/:holdId', async (req) => holdView(manager.renewHold(req.params.id, req.params.holdId)))

  app.delete<HoldParams>('/api/v1/sandboxes/:id/holds/:holdId', async (req, reply) => {
    manager.releaseHold(req.params.id, req.params.holdId)
    return reply.code(204).send()
  })
}
