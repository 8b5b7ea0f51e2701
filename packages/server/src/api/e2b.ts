// E2B's control plane (../shared/reference/e2b-protocol.md §1), on the same sandboxes as /api/v1:
// sandboxes created here live by timeout, as E2B defines it.
import type { FastifyInstance } from 'fastify'
import type { Config } from '../config.js'
import { SandlotError, badRequest, notImplemented } from '../errors.js'
import { e2bConnectDeadline, e2bRefreshDeadline, e2bTimeoutDeadline } from '../lifecycle/lifetime.js'
import type { SandboxManager, SandboxState } from '../lifecycle/manager.js'
import { checkIam, parseE2BCreateNetwork, parseE2BNetworkUpdate } from '../network/config.js'
import { parseTemplateRef } from '../templates/registry.js'
import { matchesMetadata, parseMetadataFilter } from './native.js'
import { ingressConfigOf } from '../lifecycle/ingress.js'
import type { Lifecycle } from '../lifecycle/pause.js'
import { ENVD_VERSION, ingressOf, trafficTokenView, type ViewContext } from './serialize.js'

/** Deprecated in E2B but required by its SDK's types; E2B's own infra always answers this. */
const CLIENT_ID = '6532622b'

const stringMap = { type: 'object', additionalProperties: { type: 'string' }, maxProperties: 256 } as const

interface NewSandbox {
  templateID: string
  timeout?: number
  autoPause?: boolean
  autoPauseMemory?: boolean
  autoResume?: { enabled: boolean }
  secure?: boolean
  allow_internet_access?: boolean
  /** Validated by network/config.ts, which names what is wrong. */
  network?: unknown
  metadata?: Record<string, string>
  envVars?: Record<string, string>
  mcp?: Record<string, unknown> | null
  iam?: unknown
  volumeMounts?: { name: string; path: string }[]
}

const newSandboxSchema = {
  body: {
    type: 'object',
    required: ['templateID'],
    properties: {
      templateID: { type: 'string', minLength: 1, maxLength: 256 },
      timeout: { type: 'integer' },
      autoPause: { type: 'boolean' },
      autoPauseMemory: { type: 'boolean' },
      autoResume: { type: 'object', properties: { enabled: { type: 'boolean' } } },
      secure: { type: 'boolean' },
      allow_internet_access: { type: 'boolean' },
      network: {},
      metadata: stringMap,
      envVars: stringMap,
      mcp: { type: ['object', 'null'] },
      iam: {},
      volumeMounts: { type: 'array' },
    },
  },
} as const

const timeoutBody = (required: boolean) =>
  ({ body: { type: 'object', ...(required && { required: ['timeout'] }), properties: { timeout: { type: 'integer' } } } }) as const

const pauseBody = { body: { type: ['object', 'null'], properties: { memory: { type: 'boolean' } } } } as const
const resumeBody = {
  body: { type: ['object', 'null'], properties: { timeout: { type: ['integer', 'null'], minimum: 0 }, memory: { type: ['boolean', 'null'] }, autoPause: { type: 'boolean' } } },
} as const

const refreshBody = { body: { type: ['object', 'null'], properties: { duration: { type: 'integer', minimum: 0, maximum: 3600 } } } } as const

/** The ingress part of E2B's network config as getInfo() reads it (no maskRequestHost when unset). */
function e2bIngressOf(s: SandboxState): { allowPublicTraffic: boolean; maskRequestHost?: string } {
  const { allowPublicTraffic, maskRequestHost } = ingressOf(s)
  return { allowPublicTraffic, ...(maskRequestHost !== null && { maskRequestHost }) }
}

/** Paths accept E2B's legacy "<sandboxID>-<clientID>". */
export function sandboxIdOf(raw: string): string {
  const parts = raw.split('-')
  if (parts.length > 2) throw badRequest(`Invalid sandbox ID "${raw}"`)
  return parts[0]!
}

/**
 * The template a sandbox is created from: E2B names may carry a team and a tag ("team/name:tag");
 * the registry resolves the tag (templates/registry.ts).
 */
function templateNameOf(templateID: string): string {
  return templateID.split('/').pop()!
}

/**
 * E2B's lifecycle fields (autoPause, autoPauseMemory, autoResume) as a sandbox's lifecycle, with
 * E2B's checks: a files-only auto-pause needs autoPause, and never auto-resumes.
 */
function lifecycleOf(body: NewSandbox, timeoutMs: number): Lifecycle | undefined {
  if (body.autoPauseMemory === false && !body.autoPause) throw badRequest('autoPauseMemory can only be set when autoPause is true')
  if (body.autoPauseMemory === false && body.autoResume?.enabled) throw badRequest('autoResume cannot be enabled when autoPauseMemory is false: a sandbox paused without its memory is never resumed by a request')
  if (!body.autoPause && !body.autoResume?.enabled) return undefined
  return { onTimeout: body.autoPause ? 'pause' : 'kill', keepMemory: body.autoPauseMemory ?? true, autoResume: !!body.autoResume?.enabled, timeoutMs }
}

/** Fails with a clear error when a request asks for a feature E2B has and Sandlot does not yet. */
function refuseUnsupported(body: NewSandbox): void {
  if (body.mcp) throw notImplemented('MCP gateways are not supported by Sandlot yet')
  if (body.volumeMounts?.length) throw notImplemented('volume mounts are not supported by Sandlot yet')
  checkIam(body.iam)
}

/** A sandbox as E2B's create, connect and fork answer it. */
export function e2bSandboxOf(s: SandboxState, ctx: ViewContext) {
  return {
    templateID: s.template,
    sandboxID: s.id,
    alias: s.template,
    clientID: CLIENT_ID,
    envdVersion: ENVD_VERSION,
    // Every Sandlot sandbox is secure: the token is always issued, and the SDK always sends it.
    envdAccessToken: s.accessToken,
    trafficAccessToken: trafficTokenView(s, ctx),
    domain: ctx.domain,
  }
}

export function e2bRoutes(app: FastifyInstance, manager: SandboxManager, config: Config): void {
  const viewContext = { get domain() { return config.domain }, trafficTokenOf: (id: string) => manager.trafficTokenOf(id) }

  /** When E2B's clients should expect the sandbox to end: its deadline, else its holds' lease; a paused one's is its pause time. */
  const endAtOf = (s: SandboxState) => new Date(s.pause ? s.pause.at : (s.endAt ?? s.holdsUntil ?? Date.now())).toISOString()
  /** E2B shows two states: pausing counts as paused, resuming too until it runs. */
  const stateOf = (s: SandboxState) => (s.state === 'running' ? 'running' : 'paused')

  const sandboxOf = (s: SandboxState) => e2bSandboxOf(s, viewContext)

  const listedOf = (s: SandboxState) => ({
    templateID: s.template,
    alias: s.template,
    sandboxID: s.id,
    clientID: CLIENT_ID,
    startedAt: new Date(s.startedAt).toISOString(),
    endAt: endAtOf(s),
    cpuCount: s.cpuCount,
    memoryMB: s.memoryMB,
    diskSizeMB: s.diskSizeMB,
    metadata: s.metadata,
    state: stateOf(s),
    envdVersion: ENVD_VERSION,
    volumeMounts: [],
  })

  const detailOf = (s: SandboxState) => ({
    ...listedOf(s),
    envdAccessToken: s.accessToken,
    domain: config.domain,
    // As set at create or by the last update; null when not given.
    allowInternetAccess: s.allowInternetAccess,
    // The egress settings as stored (getInfo().network; Sandlot has no egress proxy) and the port
    // previews' ingress settings.
    network: {
      allowOut: s.network.allowOut,
      denyOut: s.network.denyOut,
      ...(s.network.rules && { rules: s.network.rules }),
      egressProxy: null,
      ...e2bIngressOf(s),
    },
    lifecycle: { onTimeout: s.lifecycle?.onTimeout ?? 'kill', autoResume: s.lifecycle?.autoResume ?? false },
  })

  const create = async (body: NewSandbox) => {
    refuseUnsupported(body)
    const { network, ingress: ingressSettings } = parseE2BCreateNetwork(body.network, body.allow_internet_access)
    const ingress = ingressConfigOf(ingressSettings)
    // E2B's rule, though every Sandlot sandbox is secured: a client that says otherwise hears E2B's answer.
    if (!ingress.allowPublicTraffic && body.secure === false) {
      throw badRequest("You cannot create a sandbox without public access unless you enable secure envd access via 'secure' flag.")
    }
    const timeoutMs = body.timeout === undefined ? config.e2bDefaultTimeoutMs : body.timeout * 1000
    const now = Date.now()
    e2bTimeoutDeadline(timeoutMs, now, now, config) // validates before anything starts
    const { sandbox } = await manager.create({
      template: templateNameOf(body.templateID),
      metadata: body.metadata,
      envVars: body.envVars,
      network,
      endAt: null,
      ingress,
      lifecycle: lifecycleOf(body, timeoutMs),
    })
    // The timeout counts from when the sandbox is up, not from when it was asked for.
    return manager.setDeadline(sandbox.id, (s) => e2bTimeoutDeadline(timeoutMs, s.startedAt, Date.now(), config))
  }

  for (const route of ['/sandboxes', '/v2/sandboxes']) {
    app.post<{ Body: NewSandbox }>(route, { schema: newSandboxSchema }, async (req, reply) => reply.code(201).send(sandboxOf(await create(req.body))))
  }

  // v1 list: running sandboxes, optionally filtered by metadata (SDK ≤ 1.x, CLI).
  app.get<{ Querystring: { metadata?: string } }>('/sandboxes', async (req) => {
    const filter = parseMetadataFilter(req.query.metadata)
    return manager
      .list()
      .filter((s) => s.state === 'running' && matchesMetadata(s.metadata, filter))
      .map(listedOf)
  })

  app.get<{ Querystring: ListQuery }>('/v2/sandboxes', async (req, reply) => {
    const all = manager.list()
    const page = listPage(all, req.query)
    reply.header('x-total-running', String(all.filter((s) => s.state === 'running').length))
    if (page.nextToken) reply.header('x-next-token', page.nextToken)
    return page.items.map(listedOf)
  })

  type IdParams = { Params: { id: string } }
  const find = (raw: string) => manager.get(sandboxIdOf(raw))

  app.get<IdParams>('/sandboxes/:id', async (req) => detailOf(find(req.params.id)))

  app.delete<IdParams>('/sandboxes/:id', async (req, reply) => {
    await manager.kill(find(req.params.id).id)
    return reply.code(204).send()
  })

  app.post<IdParams & { Body: { timeout: number } }>('/sandboxes/:id/timeout', { schema: timeoutBody(true) }, async (req, reply) => {
    manager.setDeadline(find(req.params.id).id, (s) => e2bTimeoutDeadline(req.body.timeout * 1000, s.startedAt, Date.now(), config))
    return reply.code(204).send()
  })

  /** A paused sandbox resumed: it runs `timeout` from now (its start time is now). */
  const resumeFor = (id: string, timeoutS: number, memory: boolean | undefined) =>
    manager.resume(id, (s) => e2bTimeoutDeadline(timeoutS * 1000, s.startedAt, Date.now(), config), { memory })

  // connect: a running sandbox's deadline is only ever extended (200); a paused one is resumed
  // (201) and runs `timeout` from then. v2's timeout is optional: a running sandbox's deadline
  // stays, a resumed one gets 300 s.
  const connect = async (raw: string, timeout: number | undefined, memory: boolean | undefined) => {
    const s = find(raw)
    if (s.state !== 'running') {
      const { sandbox, resumed } = await resumeFor(s.id, timeout ?? 300, memory)
      if (resumed) return { status: 201, sandbox }
    }
    if (timeout === undefined) return { status: 200, sandbox: manager.getRunning(s.id) }
    return { status: 200, sandbox: manager.setDeadline(s.id, (cur) => e2bConnectDeadline(timeout * 1000, cur.endAt, cur.startedAt, Date.now(), config)) }
  }
  app.post<IdParams & { Body: { timeout: number } }>('/sandboxes/:id/connect', { schema: timeoutBody(true) }, async (req, reply) => {
    const { status, sandbox } = await connect(req.params.id, req.body.timeout, undefined)
    return reply.code(status).send(sandboxOf(sandbox))
  })
  app.post<IdParams & { Body?: { timeout?: number; memory?: boolean } | null }>('/v2/sandboxes/:id/connect', { schema: resumeBody }, async (req, reply) => {
    const { status, sandbox } = await connect(req.params.id, req.body?.timeout ?? undefined, req.body?.memory ?? undefined)
    return reply.code(status).send(sandboxOf(sandbox))
  })

  // pause: memory kept unless { memory: false } (files only). 409 when it is paused already.
  app.post<IdParams & { Body?: { memory?: boolean } | null }>('/sandboxes/:id/pause', { schema: pauseBody }, async (req, reply) => {
    await manager.pause(find(req.params.id).id, { keepMemory: req.body?.memory ?? true })
    return reply.code(204).send()
  })

  // The older SDKs' resume: 201 with the sandbox, 409 when it runs; timeout defaults to 15 s, and
  // autoPause sets what its next deadline does.
  app.post<IdParams & { Body?: { timeout?: number; autoPause?: boolean; memory?: boolean } | null }>('/sandboxes/:id/resume', { schema: resumeBody }, async (req, reply) => {
    const s = find(req.params.id)
    if (s.state === 'running') throw new SandlotError(409, 'conflict', `Sandbox "${s.id}" is already running`)
    if (req.body?.autoPause !== undefined) manager.setLifecycle(s.id, req.body.autoPause ? { ...(s.lifecycle ?? { keepMemory: true, autoResume: false }), onTimeout: 'pause' } : s.lifecycle && { ...s.lifecycle, onTimeout: 'kill' })
    const { sandbox } = await resumeFor(s.id, req.body?.timeout ?? 15, req.body?.memory ?? undefined)
    return reply.code(201).send(sandboxOf(sandbox))
  })

  // updateNetwork: a full replace of the egress settings (what the body leaves out is cleared), in
  // force before the 204. The body is checked first, as E2B does.
  app.put<IdParams & { Body: unknown }>('/sandboxes/:id/network', async (req, reply) => {
    const id = sandboxIdOf(req.params.id)
    await manager.updateNetwork(id, parseE2BNetworkUpdate(req.body))
    return reply.code(204).send()
  })

  // The v0.x SDK's keepAlive and its 5 s pings: extend-only, at least 15 s.
  app.post<IdParams & { Body: { duration?: number } | null }>('/sandboxes/:id/refreshes', { schema: refreshBody }, async (req, reply) => {
    const durationMs = (req.body?.duration ?? 0) * 1000
    manager.setDeadline(find(req.params.id).id, (s) => e2bRefreshDeadline(durationMs, s.endAt, s.startedAt, Date.now(), config))
    return reply.code(204).send()
  })

  // Features E2B has and Sandlot does not yet: a clear error, never a fake success.
  const notYet = (what: string) => async (req: { params: unknown }) => {
    const id = (req.params as { id?: string }).id
    if (id !== undefined) find(id)
    throw notImplemented(`${what} is not supported by this Sandlot server yet (see docs/e2b-compatibility.md)`)
  }
  // What of E2B's template API is not built yet (e2b-templates.ts has the rest; its routes win over these).
  // The legacy builds (POST /templates, /v2/templates) and the rest under these prefixes.
  const templatesNotYet = notYet('Building and managing templates through this route of the E2B API')
  for (const route of ['/templates', '/v2/templates']) app.post(route, templatesNotYet)
  for (const route of ['/templates/*', '/v2/templates/*', '/v3/templates/*']) app.all(route, templatesNotYet)
  // Without these a 404 would read as "volume/secret not found" in the SDK (VolumeNotFoundError, exists() → false).
  for (const route of ['/volumes', '/volumes/*', '/volumecontent/*']) app.all(route, notYet('Using volumes'))
  for (const route of ['/secrets', '/secrets/*']) app.all(route, notYet('Managing secrets'))
}

/**
 * The v2 list's metadata filter: the e2b SDK URL-encodes each key and value, joins them as a query
 * string and sends that as one parameter, so after parsing it every key and value is decoded again.
 */
export function parseV2MetadataFilter(raw: unknown): Record<string, string> {
  const decode = (s: string) => {
    try {
      return decodeURIComponent(s)
    } catch {
      throw badRequest(`Invalid metadata filter "${String(raw)}": keys and values must be URL-encoded`)
    }
  }
  return Object.fromEntries(Object.entries(parseMetadataFilter(raw)).map(([k, v]) => [decode(k), decode(v)]))
}

interface ListQuery {
  metadata?: string
  state?: string
  order?: string
  startedAfter?: string
  template?: string
  limit?: string | number
  nextToken?: string
}

/** Cursor paging over (startedAt, id): the token names the last sandbox of the previous page. */
export function listPage(all: SandboxState[], q: ListQuery): { items: SandboxState[]; nextToken?: string } {
  const filter = parseV2MetadataFilter(q.metadata)
  const states = q.state ? String(q.state).split(',') : ['running', 'paused']
  for (const s of states) if (s !== 'running' && s !== 'paused') throw badRequest(`Invalid state "${s}": use running or paused`)
  const order = q.order ?? 'desc'
  if (order !== 'asc' && order !== 'desc') throw badRequest(`Invalid order "${order}": use asc or desc`)
  const limit = q.limit === undefined ? 100 : Number(q.limit)
  if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw badRequest('limit must be a whole number from 1 to 100')
  const after = q.startedAfter === undefined ? undefined : Date.parse(q.startedAfter)
  if (after !== undefined && Number.isNaN(after)) throw badRequest(`Invalid startedAfter "${q.startedAfter}": use an RFC 3339 time`)

  const sign = order === 'asc' ? 1 : -1
  const cmp = (a: { startedAt: number; id: string }, b: { startedAt: number; id: string }) =>
    a.startedAt !== b.startedAt ? sign * (a.startedAt - b.startedAt) : a.id < b.id ? -1 : a.id > b.id ? 1 : 0
  const cursor = q.nextToken ? decodeToken(q.nextToken, order) : undefined
  const matching = all
    .filter((s) => states.includes(s.state === 'running' ? 'running' : 'paused'))
    .filter((s) => matchesMetadata(s.metadata, filter))
    .filter((s) => !q.template || s.template === parseTemplateRef(q.template).alias)
    // Inclusive, as on E2B: a sandbox started at that very time is listed.
    .filter((s) => after === undefined || s.startedAt >= after)
    .sort(cmp)
    .filter((s) => !cursor || cmp(s, cursor) > 0)
  const items = matching.slice(0, limit)
  const last = items[items.length - 1]
  // The last page carries no token, so the SDK's hasNext turns false.
  return { items, nextToken: matching.length > limit && last ? encodeToken(last, order) : undefined }
}

const encodeToken = (s: { startedAt: number; id: string }, order: string) => Buffer.from(`${s.startedAt}__${s.id}__${order}`).toString('base64url')

function decodeToken(token: string, order: string): { startedAt: number; id: string } {
  const [started, id, tokenOrder] = Buffer.from(token, 'base64url').toString().split('__')
  const startedAt = Number(started)
  if (!id || !Number.isInteger(startedAt) || tokenOrder !== order) throw badRequest('Invalid nextToken: pass the X-Next-Token of the previous page, with the same order')
  return { startedAt, id }
}
