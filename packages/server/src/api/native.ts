// Sandlot's own REST control plane (/api/v1, docs/api.md), used by the Sandlot SDK and the CLI.
import type { FastifyInstance } from 'fastify'
import type { Config } from '../config.js'
import { badRequest } from '../errors.js'
import { keepAliveDeadline, startDeadline } from '../lifecycle/lifetime.js'
import { ingressConfigOf } from '../lifecycle/ingress.js'
import type { CreateRequest, SandboxManager, SandboxState } from '../lifecycle/manager.js'
import { parseNativeIngress, parseNativeNetwork, parseNativeNetworkUpdate } from '../network/config.js'
import { MIN_DISK_MB } from '../runtime/driver.js'
import type { Lifecycle } from '../lifecycle/pause.js'
import { errorSchema, errors, holdSchema, idParams, lifecycleSchema, networkBodySchema, sandboxSchema } from './openapi.js'
import { holdView, sandboxView } from './serialize.js'
import type { HoldRow } from '../store/db.js'

const stringMap = { type: 'object', additionalProperties: { type: 'string' }, maxProperties: 256 } as const

type LifecycleBody = Partial<Lifecycle>
type CreateBody = Omit<CreateRequest, 'endAt' | 'network' | 'ingress' | 'lifecycle'> & { keepAliveMs?: number; network?: unknown; lifecycle?: LifecycleBody }

/** A lifecycle as the native API takes it (each part optional); absent, or all defaults: none. */
function lifecycleFrom(body: LifecycleBody | undefined): Lifecycle | undefined {
  if (!body) return undefined
  const lifecycle: Lifecycle = { onTimeout: body.onTimeout ?? 'kill', keepMemory: body.keepMemory ?? true, autoResume: body.autoResume ?? false }
  if (lifecycle.autoResume && !lifecycle.keepMemory) throw badRequest('lifecycle.autoResume needs keepMemory: a sandbox paused without its memory is never resumed by a request')
  return lifecycle.onTimeout === 'kill' && !lifecycle.autoResume ? undefined : lifecycle
}

const createSchema = {
  summary: 'Create a sandbox',
  description: 'Answers once the sandbox runs (and its template\'s ready command passed). Limits default to the server\'s (SANDLOT_DEFAULT_*) and are capped by SANDLOT_MAX_*. Without a hold it lives keepAliveMs (default: the longest allowed); with one, while the hold is renewed.',
  tags: ['sandboxes'],
  body: {
    type: 'object',
    additionalProperties: false,
    properties: {
      template: { type: 'string', minLength: 1, maxLength: 128, description: 'A template name ("name" or "name:tag"); default base' },
      metadata: { ...stringMap, description: 'Your labels, to find it by (list ?metadata=)' },
      envVars: { ...stringMap, description: "Environment of every process in it (over the template's)" },
      cpuCount: { type: 'integer', minimum: 1 },
      memoryMB: { type: 'integer', minimum: 64 },
      pids: { type: 'integer', minimum: 32, description: 'The most processes and threads at once' },
      diskSizeMB: { type: 'integer', minimum: MIN_DISK_MB, description: 'Its own filesystem' },
      hold: { type: 'boolean', description: 'Also open a hold (in the answer), renewed by the client' },
      keepAliveMs: { type: 'integer', minimum: 0, description: 'Destroyed this long from now unless held or extended' },
      // Checked by network/config.ts (which names what is wrong).
      network: networkBodySchema,
      lifecycle: lifecycleSchema,
    },
  },
  response: { 201: sandboxSchema, ...errors, 503: errorSchema },
} as const

const pauseSchema = {
  summary: 'Pause a sandbox',
  description:
    'keepMemory (default true): every process stopped where it is, CPU freed, resumed as it was. keepMemory false: its processes end and everything but its files is freed; a resume boots it again from its files. A paused sandbox has no deadline and no holds; it is kept until resumed, killed, or SANDLOT_PAUSED_RETENTION_MS (30 days) after its pause. 409 if it is paused already.',
  tags: ['sandboxes'],
  params: idParams,
  body: { type: ['object', 'null'], additionalProperties: false, properties: { keepMemory: { type: 'boolean' } } },
  response: { 200: sandboxSchema, ...errors },
} as const

const resumeSchema = {
  summary: 'Resume a paused sandbox',
  description: 'A running one is left as it is. It then lives keepAliveMs (default: the longest allowed), or while the hold asked for here is renewed.',
  tags: ['sandboxes'],
  params: idParams,
  body: {
    type: ['object', 'null'],
    additionalProperties: false,
    properties: { keepAliveMs: { type: 'integer', minimum: 0 }, hold: { type: 'boolean', description: 'Also open a hold (in the answer), from the moment it runs' } },
  },
  response: { 200: sandboxSchema, ...errors },
} as const

const keepAliveSchema = {
  summary: "Set a sandbox's deadline",
  description: 'It is destroyed `ms` from now unless a client holds it (at most SANDLOT_KEEP_ALIVE_LIMIT_MS).',
  tags: ['sandboxes'],
  params: idParams,
  body: {
    type: 'object',
    additionalProperties: false,
    required: ['ms'],
    properties: { ms: { type: 'integer', minimum: 0 }, lifecycle: { ...lifecycleSchema, description: 'What the deadline does (kill, or pause); replaces the one set before' } },
  },
  response: { 200: sandboxSchema, ...errors },
} as const

const listSchema = {
  summary: 'List running sandboxes',
  tags: ['sandboxes'],
  querystring: {
    type: 'object',
    properties: {
      metadata: { type: 'string', description: 'Only those with these labels: "key=value&key2=value2", each part URL-encoded' },
      template: { type: 'string', description: 'Only those from this template' },
    },
  },
  response: { 200: { type: 'array', items: sandboxSchema }, ...errors },
} as const

const byId = (summary: string, tags: string[], response: Record<number, unknown>, extra: Record<string, unknown> = {}) => ({ summary, tags, params: idParams, response: { ...response, ...errors }, ...extra })
const holdParams = { type: 'object', required: ['id', 'holdId'], properties: { id: { type: 'string' }, holdId: { type: 'string' } } } as const

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
  const initialDeadline = (keepAliveMs: number | undefined, hold: boolean | undefined) => startDeadline(keepAliveMs, hold, Date.now(), config)
  // config.domain is read per call: with the default domain it names the port, known once listening.
  const view = (s: SandboxState) => sandboxView(s, { domain: config.domain, trafficTokenOf: (id) => manager.trafficTokenOf(id) })
  app.post<{ Body: CreateBody }>('/api/v1/sandboxes', { schema: createSchema }, async (req, reply) => {
    const { hold, keepAliveMs, network: rawNetwork, lifecycle, ...rest } = req.body ?? {}
    const network = parseNativeNetwork(rawNetwork)
    const ingress = ingressConfigOf(parseNativeIngress(rawNetwork))
    const endAt = initialDeadline(keepAliveMs, hold)
    const created = await manager.create({ ...rest, endAt, hold, network, ingress, lifecycle: lifecycleFrom(lifecycle) })
    return reply.code(201).send({ ...view(created.sandbox), ...(created.hold && { hold: holdView(created.hold) }) })
  })

  app.get<{ Querystring: { metadata?: string; template?: string } }>('/api/v1/sandboxes', { schema: listSchema }, async (req) => {
    const filter = parseMetadataFilter(req.query.metadata)
    return manager
      .list()
      .filter((s) => matchesMetadata(s.metadata, filter) && (!req.query.template || s.template === req.query.template))
      .map(view)
  })

  app.get<IdParams>('/api/v1/sandboxes/:id', { schema: byId('Describe a sandbox', ['sandboxes'], { 200: sandboxSchema }) }, async (req) => view(manager.get(req.params.id)))

  app.delete<IdParams>('/api/v1/sandboxes/:id', { schema: byId('Kill a sandbox', ['sandboxes'], { 204: { type: 'null', description: 'Gone, with everything in it' } }) }, async (req, reply) => {
    await manager.kill(req.params.id)
    return reply.code(204).send()
  })

  app.post<IdParams & { Body: { ms: number; lifecycle?: LifecycleBody } }>('/api/v1/sandboxes/:id/keep-alive', { schema: keepAliveSchema }, async (req) => {
    const endAt = keepAliveDeadline(req.body.ms, Date.now(), config)
    if (req.body.lifecycle) manager.setLifecycle(manager.getRunning(req.params.id).id, lifecycleFrom(req.body.lifecycle) ?? null)
    return view(manager.setDeadline(req.params.id, () => endAt))
  })

  app.post<IdParams & { Body: { keepMemory?: boolean } | null }>('/api/v1/sandboxes/:id/pause', { schema: pauseSchema }, async (req) =>
    view(await manager.pause(req.params.id, { keepMemory: req.body?.keepMemory })),
  )

  app.post<IdParams & { Body: { keepAliveMs?: number; hold?: boolean } | null }>('/api/v1/sandboxes/:id/resume', { schema: resumeSchema }, async (req) => {
    const { keepAliveMs, hold } = req.body ?? {}
    const endAt = initialDeadline(keepAliveMs, hold)
    let opened: HoldRow | undefined
    const { sandbox } = await manager.resume(req.params.id, () => (endAt === null ? null : Math.max(endAt, Date.now())), {}, () => {
      if (hold) opened = manager.holdFor(req.params.id)
    })
    return { ...view(sandbox), ...(opened && { hold: holdView(opened) }) }
  })

  // A full replace: what the body leaves out is cleared ({} lifts every rule). In force once it answers.
  app.put<IdParams & { Body: unknown }>('/api/v1/sandboxes/:id/network', {
    schema: byId("Replace a sandbox's network settings", ['sandboxes'], { 200: sandboxSchema }, { description: 'A full replace: what the body leaves out is cleared ({} lifts every rule). In force once it answers.', body: networkBodySchema }),
  }, async (req) =>
    view(await manager.updateNetwork(req.params.id, parseNativeNetworkUpdate(req.body))),
  )

  app.post<IdParams>('/api/v1/sandboxes/:id/holds', { schema: byId('Open a hold', ['holds'], { 201: holdSchema }, { description: 'The sandbox lives while a hold is renewed (every renewEveryMs; it lapses after ttlMs), whatever its deadline.' }) }, async (req, reply) => reply.code(201).send(holdView(await manager.openHold(req.params.id))))

  app.put<HoldParams>('/api/v1/sandboxes/:id/holds/:holdId', { schema: { summary: 'Renew a hold', tags: ['holds'], params: holdParams, response: { 200: holdSchema, ...errors } } }, async (req) => holdView(manager.renewHold(req.params.id, req.params.holdId)))

  app.delete<HoldParams>('/api/v1/sandboxes/:id/holds/:holdId', { schema: { summary: 'Release a hold', tags: ['holds'], params: holdParams, response: { 204: { type: 'null' }, ...errors } } }, async (req, reply) => {
    manager.releaseHold(req.params.id, req.params.holdId)
    return reply.code(204).send()
  })
}
