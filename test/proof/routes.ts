// Every route the server answers, for the fuzz and auth suites, taken where new routes appear by
// themselves: Sandlot's from the server's OpenAPI document, E2B's from the OpenAPI types the e2b SDK
// ships, envd's RPCs from the proto services; the few E2B routes of Sandlot's the SDK lacks by hand.
import { Filesystem, Process } from '@sandlot/envd-proto'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import { api } from '../helpers.js'

export interface Route {
  method: string
  path: string
  /** The JSON schema of its body (Sandlot's routes). */
  schema?: object
  /** Public by design: no key needed. */
  open?: boolean
}

type OpenApi = {
  paths: Record<string, Record<string, { security?: unknown[]; requestBody?: { content?: Record<string, { schema?: object }> } }>>
  components?: { schemas?: Record<string, object> }
}

/** Sandlot's REST (/api/v1 and /health), from GET /api/v1/openapi.json; `defs` for its `$ref`s. */
export async function sandlotRoutes(): Promise<{ routes: Route[]; defs: Record<string, object> }> {
  const doc = (await api<OpenApi>('GET', '/api/v1/openapi.json')).json
  const routes: Route[] = []
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      routes.push({ method: method.toUpperCase(), path, schema: op.requestBody?.content?.['application/json']?.schema, open: Array.isArray(op.security) && op.security.length === 0 })
    }
  }
  return { routes, defs: doc.components?.schemas ?? {} }
}

/** E2B's routes (its control plane's and envd's REST), from the e2b SDK's `paths` types: each method not `?: never`. */
export function e2bSdkRoutes(): Route[] {
  const require = createRequire(import.meta.url)
  const dts = fs.readFileSync(require.resolve('e2b').replace(/index\.js$/, 'index.d.ts'), 'utf8')
  const routes: Route[] = []
  for (const m of dts.matchAll(/^( +)"(\/[^"]*)": \{\n([^]*?)\n\1\};/gm)) {
    const indent = ' '.repeat(m[1]!.length + 2)
    for (const method of ['get', 'put', 'post', 'delete', 'patch']) {
      if (m[3]!.includes(`\n${indent}${method}: `) || m[3]!.startsWith(`${indent}${method}: `)) routes.push({ method: method.toUpperCase(), path: m[2]! })
    }
  }
  return routes
}

/** Sandlot's E2B routes that the SDK's types lack (E2B's older template build API). */
export const E2B_EXTRA_ROUTES: Route[] = [
  { method: 'POST', path: '/templates' },
  { method: 'POST', path: '/v2/templates' },
]

/** envd's RPCs: Connect over POST /<service>/<method>. */
export const ENVD_RPCS = [Filesystem, Process].flatMap((s) => s.methods.map((m) => ({ service: s.typeName, name: m.name, input: m.input, stream: m.methodKind !== 'unary' })))

/** envd's REST on the data plane (plus the agent's /init). */
export const ENVD_REST: Route[] = [
  { method: 'GET', path: '/health' },
  { method: 'GET', path: '/envs' },
  { method: 'GET', path: '/metrics' },
  { method: 'POST', path: '/init' },
  { method: 'GET', path: '/files?path=/etc/hostname' },
  { method: 'POST', path: '/files?path=/tmp/auth-probe' },
  { method: 'POST', path: '/files/compose' },
]
