// The warm pool's settings (lifecycle/pool.ts): how many ready sandboxes each template keeps, and
// how many are ready now. A size set here lasts until the server stops; SANDLOT_POOL is the start's.
import type { FastifyInstance } from 'fastify'
import { badRequest } from '../errors.js'
import { MAX_POOL_SIZE, type SandboxPool } from '../lifecycle/pool.js'
import { TEMPLATE_NAME } from '../templates/builds.js'
import { errors } from './openapi.js'

const poolStatus = {
  type: 'object',
  properties: {
    template: { type: 'string' },
    size: { type: 'integer', description: 'How many ready sandboxes it keeps' },
    ready: { type: 'integer', description: 'Ready now' },
    starting: { type: 'integer', description: 'Being made now' },
  },
} as const

export function poolRoutes(app: FastifyInstance, pool: SandboxPool): void {
  app.get('/api/v1/pools', { schema: { summary: 'The warm pools', description: 'Per template: its size and how many sandboxes are ready.', tags: ['pools'], response: { 200: { type: 'array', items: poolStatus }, ...errors } } }, async () => pool.status())

  app.put<{ Params: { template: string }; Body: { size: number } }>(
    '/api/v1/pools/:template',
    {
      schema: {
        summary: "Set a template's pool size",
        description: `A template name (its default tag). Larger: filled in the background; smaller: the extra ready sandboxes go at once; 0: no pool. Until the server stops (SANDLOT_POOL sets it at start). At most ${MAX_POOL_SIZE}.`,
        tags: ['pools'],
        params: { type: 'object', required: ['template'], properties: { template: { type: 'string' } } },
        body: { type: 'object', additionalProperties: false, required: ['size'], properties: { size: { type: 'integer', minimum: 0, maximum: MAX_POOL_SIZE } } },
        response: { 200: poolStatus, ...errors },
      },
    },
    async (req) => {
      const template = req.params.template
      if (!TEMPLATE_NAME.test(template)) throw badRequest(`"${template.slice(0, 80)}" is not a template name (a pool is per template, on its default tag)`)
      await pool.setSize(template, req.body.size)
      return pool.status().find((p) => p.template === template) ?? { template, size: 0, ready: 0, starting: 0 }
    },
  )
}
