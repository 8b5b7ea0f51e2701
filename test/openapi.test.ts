// The REST reference is generated from the routes' schemas: the server serves it, every /api/v1
// route is in it with a summary and a tag, and docs/openapi.json (what `npm run docs` writes) is
// the same document, so the committed reference is never stale.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import { test } from 'node:test'
import { api } from './helpers.js'

test('GET /api/v1/openapi.json: every route of Sandlot\'s REST, documented, and equal to docs/openapi.json', async () => {
  const r = await api<any>('GET', '/api/v1/openapi.json')
  assert.equal(r.status, 200)
  const spec = r.json
  assert.equal(spec.openapi, '3.0.3')
  const ops = Object.entries(spec.paths as Record<string, Record<string, any>>).flatMap(([p, methods]) => Object.entries(methods).map(([m, op]) => ({ route: `${m.toUpperCase()} ${p}`, op })))
  const routes = ops.map((o) => o.route)
  for (const want of ['POST /api/v1/sandboxes', 'GET /api/v1/sandboxes', 'GET /api/v1/sandboxes/{id}', 'DELETE /api/v1/sandboxes/{id}', 'POST /api/v1/sandboxes/{id}/keep-alive', 'PUT /api/v1/sandboxes/{id}/network', 'POST /api/v1/sandboxes/{id}/holds', 'PUT /api/v1/sandboxes/{id}/holds/{holdId}', 'POST /api/v1/templates', 'GET /api/v1/templates/{templateId}/builds/{buildId}', 'PUT /api/v1/templates/files/{hash}', 'GET /health']) {
    assert.ok(routes.includes(want), `${want} is in the reference`)
  }
  assert.ok(!routes.some((r) => / \/(v2\/|v3\/)?(sandboxes|templates)\b/.test(r) && !r.includes('/api/v1/')), "E2B's routes stay out")
  for (const { route, op } of ops) {
    assert.ok(op.summary, `${route} has a summary`)
    assert.ok(op.tags?.length, `${route} has a tag`)
  }
  const committed = JSON.parse(fs.readFileSync('docs/openapi.json', 'utf8'))
  assert.deepEqual(spec, committed, 'docs/openapi.json is current: run npm run docs')
})
