// E2B's snapshots and fork (../shared/reference/e2b-protocol-next.md §3.1), on lifecycle/copies.ts:
// POST /sandboxes/{id}/snapshots, GET /snapshots, POST /sandboxes/{id}/fork. A snapshot is deleted
// as the template it is (DELETE /templates/{snapshotID}, e2b-templates.ts).
import type { FastifyInstance } from 'fastify'
import type { Config } from '../config.js'
import { badRequest } from '../errors.js'
import { MAX_FORKS, type SandboxCopies, type SnapshotMade } from '../lifecycle/copies.js'
import { e2bTimeoutDeadline } from '../lifecycle/lifetime.js'
import type { SandboxManager } from '../lifecycle/manager.js'
import { COPIED } from './copies.js'
import { e2bSandboxOf, sandboxIdOf } from './e2b.js'

/** The team a named snapshot's name carries (E2B's "<team-slug>/<name>"): a Sandlot server is one team. */
export const TEAM_SLUG = 'sandlot'

/** E2B's snapshot: "<team>/<name>:<tag>" and its name when it was given one, else "<templateID>:<tag>" and no name. */
const snapshotView = (s: Pick<SnapshotMade, 'templateId' | 'name' | 'tag' | 'named'>) =>
  s.named ? { snapshotID: `${TEAM_SLUG}/${s.name}:${s.tag}`, names: [`${TEAM_SLUG}/${s.name}`] } : { snapshotID: `${s.templateId}:${s.tag}`, names: [] }

const forkBody = {
  body: { type: ['object', 'null'], properties: { count: { type: ['integer', 'null'] }, timeout: { type: ['integer', 'null'] } } },
} as const
const snapshotBody = { body: { type: ['object', 'null'], properties: { name: { type: ['string', 'null'], maxLength: 256 } } } } as const

interface ListQuery {
  sandboxID?: string
  name?: string
  limit?: string
  nextToken?: string
}

type IdParams = { Params: { id: string } }

export function e2bCopyRoutes(app: FastifyInstance, manager: SandboxManager, copies: SandboxCopies, config: Config): void {
  const viewContext = { get domain() { return config.domain }, trafficTokenOf: (id: string) => manager.trafficTokenOf(id) }

  app.post<IdParams & { Body: { name?: string | null } | null }>('/sandboxes/:id/snapshots', { schema: snapshotBody }, async (req, reply) => {
    const id = manager.get(sandboxIdOf(req.params.id)).id
    const made = await copies.snapshot(id, req.body?.name ?? undefined)
    // E2B's reply has no place for it: a header says a copy boots from its files, without its memory.
    return reply.code(201).header('x-sandlot-copied', COPIED).send(snapshotView(made))
  })

  // Templates made by snapshots, newest first, each with its latest build's tag; paged by offset.
  app.get<{ Querystring: ListQuery }>('/snapshots', async (req, reply) => {
    const q = req.query
    const limit = q.limit === undefined ? 100 : Number(q.limit)
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw badRequest('limit must be a whole number from 1 to 100')
    const offset = q.nextToken === undefined ? 0 : Number(Buffer.from(q.nextToken, 'base64url').toString())
    if (!Number.isInteger(offset) || offset < 0) throw badRequest('Invalid nextToken: pass the X-Next-Token of the previous page')
    const all = copies.list({ sandboxId: q.sandboxID, name: q.name })
    if (offset + limit < all.length) reply.header('x-next-token', Buffer.from(String(offset + limit)).toString('base64url'))
    return all.slice(offset, offset + limit).map(snapshotView)
  })

  // 201 with one entry a fork: its sandbox, or why it could not be made (E2B's per-fork error).
  app.post<IdParams & { Body: { count?: number | null; timeout?: number | null } | null }>('/sandboxes/:id/fork', { schema: forkBody }, async (req, reply) => {
    const count = req.body?.count ?? 1
    if (!Number.isInteger(count) || count < 1 || count > MAX_FORKS) throw badRequest(`count must be between 1 and ${MAX_FORKS}`)
    const timeoutMs = (req.body?.timeout ?? 15) * 1000
    const id = manager.get(sandboxIdOf(req.params.id)).id
    e2bTimeoutDeadline(timeoutMs, Date.now(), Date.now(), config) // checked before anything is copied
    const results = await copies.fork(id, count, (s) => e2bTimeoutDeadline(timeoutMs, s.startedAt, Date.now(), config))
    return reply.code(201).header('x-sandlot-copied', COPIED).send(results.map((r) => ('sandbox' in r ? { sandbox: e2bSandboxOf(r.sandbox, viewContext) } : { error: { code: r.error.status, message: r.error.message } })))
  })
}
