// Issue 17, bad input: a deterministic fuzzer for the REST APIs (Sandlot's routes from the server's
// own OpenAPI document, E2B's from the e2b SDK's), the envd data plane (Connect envelopes for the
// filesystem and process services, /files) in a real sandbox, and the template build API (E2B's
// /v3/templates, upload links, builds; broken tar uploads), plus raw malformed HTTP and slow clients.
// A failure prints the request that caused it and the seed: SANDLOT_FUZZ_SEED=<seed> reruns it.
// Checks: no 5xx for a client's mistake, every request answered within a bound, /health answering
// throughout and after, and a sandbox made before the run still working after it.
import { fromJson, toBinary, type JsonValue } from '@bufbuild/protobuf'
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { after, before, test } from 'node:test'
import { Agent, request } from 'undici'
import { api, apiKey, apiUrl, createSandbox, killSandbox, run, waitFor } from '../helpers.js'
import { E2B_EXTRA_ROUTES, ENVD_RPCS, e2bSdkRoutes, sandlotRoutes, type Route } from './routes.js'
import { STRINGS, deepJsonText, enc, exampleOf, mutate, pathParam, prng, queryValue, randomJson, type Rng } from './fuzz-input.js'

const LONG = !!process.env.SANDLOT_LONG_TESTS
const SEED = Number(process.env.SANDLOT_FUZZ_SEED ?? 1717)
const TOTAL = Number(process.env.SANDLOT_FUZZ_REQUESTS ?? (LONG ? 100_000 : 10_000))
const CONCURRENCY = 16
/** Every request's answer must begin within this (a log long-poll may wait 30 s by design). */
const ANSWER_BOUND_MS = 40_000
/** A streamed answer (a watch, a process) is read this long, then dropped. */
const STREAM_READ_MS = 800
/** Creates that may really start a sandbox (the rest name a template that does not exist). */
const REAL_CREATES = LONG ? 60 : 12
const NO_TEMPLATE = 'fuzz-no-such-template'
const RUN = `fuzz-${SEED}-${process.pid}`
const port = new URL(apiUrl).port

interface Req {
  kind: string
  method: string
  path: string
  headers: Record<string, string>
  body?: Buffer | string
  /** Raw bytes on a socket of its own instead of an HTTP client. */
  raw?: Buffer
}

interface Finding {
  what: string
  status?: number
  request: string
  answer?: string
}

const describeReq = (q: Req) => {
  const body = q.raw ?? q.body
  const shown = body === undefined ? '' : ` body(${Buffer.byteLength(body)}B)=${JSON.stringify(Buffer.from(body).subarray(0, 300).toString('latin1'))}`
  const headers = Object.fromEntries(Object.entries(q.headers).map(([k, v]) => [k, k === 'x-api-key' ? '<key>' : v.slice(0, 200)]))
  return `${q.kind}: ${q.method} ${q.path.slice(0, 300)}${q.path.length > 300 ? `…(${q.path.length})` : ''} headers=${JSON.stringify(headers)}${shown}`
}

// --- what the routes are --------------------------------------------------------------------

/** Valid bodies of E2B's routes (ours to mutate); what would start real work names nothing real. */
const E2B_BODIES: Record<string, () => unknown> = {
  'POST /sandboxes': () => ({ templateID: NO_TEMPLATE, timeout: 15, metadata: { fuzz: RUN }, envVars: { A: 'b' }, network: { allowOut: ['10.1.2.3/32'], denyOut: ['0.0.0.0/0'], allowPublicTraffic: false }, lifecycle: { onTimeout: 'kill', autoResume: false } }),
  'POST /v2/sandboxes': () => E2B_BODIES['POST /sandboxes']!(),
  'POST /sandboxes/{sandboxID}/timeout': () => ({ timeout: 30 }),
  'POST /sandboxes/{sandboxID}/connect': () => ({ timeout: 30 }),
  'POST /v2/sandboxes/{sandboxID}/connect': () => ({ timeout: 30, memory: true }),
  'POST /sandboxes/{sandboxID}/pause': () => ({ memory: true }),
  'POST /sandboxes/{sandboxID}/resume': () => ({ timeout: 30, autoPause: false }),
  'PUT /sandboxes/{sandboxID}/network': () => ({ allowOut: ['example.com'], denyOut: ['0.0.0.0/0'] }),
  'POST /sandboxes/{sandboxID}/refreshes': () => ({ duration: 10 }),
  'POST /sandboxes/{sandboxID}/snapshots': () => ({ name: 'fuzz' }),
  'POST /sandboxes/{sandboxID}/fork': () => ({ count: 1, timeout: 10 }),
  'POST /v3/templates': () => ({ name: `${RUN}-tpl`, tags: ['t1'], cpuCount: 1, memoryMB: 512 }),
  // The fuzzer names a build that is not the template's waiting one: every check runs, nothing builds or pulls.
  'POST /v2/templates/{templateID}/builds/{buildID}': () =>
    rng0.chance(0.5)
      ? { fromTemplate: 'base', steps: [{ type: 'RUN', args: ['true'], force: false }], startCmd: 'true', readyCmd: 'true' }
      : { fromImage: 'registry.invalid/fuzz:1', fromImageRegistry: { type: 'registry', username: 'u', password: 'p' }, steps: [{ type: 'COPY', args: ['a', '/b'], filesHash: 'a'.repeat(64) }] },
  'POST /templates/tags': () => ({ target: `${RUN}-tpl:t1`, tags: ['t2'] }),
  'DELETE /templates/tags': () => ({ name: `${RUN}-tpl`, tags: ['t2'] }),
}

// --- the run's state ----------------------------------------------------------------------------

let routes: (Route & { body?: () => unknown })[] = []
let fuzzed: { id: string } // the sandbox the fuzzer works in (its envd, GETs of its id)
let witness: { id: string } // untouched by the fuzzer: it must work afterwards
let template: { templateID: string; buildID: string }
let uploadLinks: string[] = []
let sandboxesBefore = new Set<string>()
let templatesBefore = new Set<string>()
let realCreates = 0
const unimplemented = new Set<string>()
/** Whether a route Sandlot implements (one that did not answer the probe with 501) matches. */
const implementedRoute = (method: string, path: string) =>
  routes.some((r) => r.method === method && !unimplemented.has(`${r.method} ${r.path}`) && new RegExp(`^${r.path.replace(/\{[^}]+\}/g, '[^/]+')}$`).test(new URL(path, 'http://x').pathname))
const findings: Finding[] = []
const counts = { requests: 0, byClass: {} as Record<string, number>, byKind: {} as Record<string, number>, noAnswer: 0, resets: 0, notSent: 0, allowed: { notImplemented: 0, sandboxNotFound: 0 } }

const listSandboxes = async () => new Set(((await api('GET', '/api/v1/sandboxes')).json as { id: string }[]).map((s) => s.id))
const listTemplates = async () => new Set(((await api('GET', '/templates')).json as { templateID: string }[]).map((t) => t.templateID))

before(async () => {
  sandboxesBefore = await listSandboxes()
  templatesBefore = await listTemplates()
  witness = await createSandbox({ metadata: { fuzz: RUN, role: 'witness' } })
  fuzzed = await createSandbox({ metadata: { fuzz: RUN, role: 'fuzzed' } })
  await run(fuzzed.id, 'mkdir -p /tmp/fuzz && echo hi > /tmp/fuzz/a')
  const { routes: ours, defs } = await sandlotRoutes()
  routes = ours.map((r) => ({ ...r, body: r.schema ? () => exampleOf(r.schema as never, rng0, defs as never) : undefined }))
  for (const r of [...e2bSdkRoutes(), ...E2B_EXTRA_ROUTES]) routes.push({ ...r, body: E2B_BODIES[`${r.method} ${r.path}`] ?? (r.path === '/templates' || r.path === '/v2/templates' ? E2B_BODIES['POST /v3/templates'] : undefined) })
  assert.ok(ours.length >= 25 && routes.length - ours.length >= 30, `routes: ${ours.length} of Sandlot's, ${routes.length - ours.length} of E2B's`)
  // The routes of E2B's API that Sandlot does not implement answer 501 (not_implemented) to any
  // request, well-formed or not: a server-side condition, told apart here once, before the run.
  for (const path of new Set(routes.map((r) => r.path))) {
    for (const method of ['GET', 'POST', 'PUT', 'DELETE', 'PATCH']) {
      const route = routes.find((r) => r.path === path && r.method === method)
      const res = await api(method, path.replace(/\{[^}]+\}/g, 'ifuzzprobe0000000000'), route?.body && tame(route, route.body())).catch(() => undefined)
      if (res?.status === 501) unimplemented.add(`${method} ${path}`)
    }
  }
  const made = await api('POST', '/v3/templates', { name: `${RUN}-tpl`, tags: ['t1'] })
  assert.equal(made.status, 202, JSON.stringify(made.json))
  template = made.json
  for (let i = 0; i < 4; i++) {
    const hash = crypto.createHash('sha256').update(`${RUN}-${i}`).digest('hex')
    const link = await api('GET', `/templates/${template.templateID}/files/${hash}`)
    assert.equal(link.status, 201, JSON.stringify(link.json))
    uploadLinks.push(link.json.url)
  }
  console.log(`fuzz: seed ${SEED} (SANDLOT_FUZZ_SEED=${SEED} reruns it), ${TOTAL} requests, ${routes.length} routes`)
})

after(async () => {
  // What the fuzzer made by chance goes: sandboxes (those of this run, and any new one), templates.
  for (const id of await listSandboxes()) if (!sandboxesBefore.has(id)) await killSandbox(id)
  for (const id of await listTemplates()) if (!templatesBefore.has(id)) await api('DELETE', `/templates/${id}`)
})

// An rng only for building schema examples (their content is then mutated by the run's own).
const rng0 = prng(SEED ^ 0x5eed)

// --- generators ---------------------------------------------------------------------------------

const authHeaders = (r: Rng): Record<string, string> => {
  const k = r.int(20)
  if (k === 0) return {}
  if (k === 1) return { 'x-api-key': 'e2b_' + '0'.repeat(40) }
  if (k === 2) return { authorization: `Bearer ${apiKey()}` }
  return { 'x-api-key': apiKey() }
}

function fillPath(path: string, method: string, r: Rng): string {
  return path.replace(/\{([^}]+)\}/g, (_, name: string) => {
    const real = method === 'GET' && r.chance(0.5)
    if (real && /^(id|sandboxID)$/.test(name)) return fuzzed.id
    if (real && /template/i.test(name)) return r.chance(0.5) ? template.templateID : 'base'
    if (real && /build/i.test(name)) return template.buildID
    if (r.chance(0.3)) return `i${crypto.createHash('md5').update(String(r.next())).digest('hex').slice(0, 20)}`
    return pathParam(r)
  })
}

/** Keeps a mutated create from starting real work past the budget: a create names no real template. */
function tame(route: Route, body: unknown): unknown {
  if (!body || typeof body !== 'object' || Array.isArray(body)) return body
  const b = body as Record<string, unknown>
  if (route.method === 'POST' && (['/api/v1/sandboxes', '/sandboxes', '/v2/sandboxes'].includes(route.path))) {
    const field = route.path === '/api/v1/sandboxes' ? 'template' : 'templateID'
    const real = b[field] === undefined || ['base', 'base:latest', 'base:default'].includes(b[field] as string)
    if (real && realCreates >= REAL_CREATES) b[field] = NO_TEMPLATE
    else if (real) {
      realCreates++
      if (field === 'templateID') b.timeout = 10
      else b.keepAliveMs = 10_000
    }
  }
  // A Sandlot build names no real template to build from, and no image (no pull from a registry).
  if (route.method === 'POST' && route.path === '/api/v1/templates') {
    b.fromTemplate = NO_TEMPLATE
    delete b.fromImage
  }
  return b
}

function restRequest(r: Rng): Req {
  const route = r.pick(routes)
  const method = r.chance(0.05) ? r.pick(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS']) : route.method
  let path = fillPath(route.path, method, r)
  if (r.chance(0.4)) path += '?' + Array.from({ length: 1 + r.int(3) }, () => `${r.pick(['limit', 'nextToken', 'metadata', 'state', 'start', 'end', 'after', 'level', 'wait', 'cursor', 'direction', 'search', 'sandbox_ids', 'logsOffset', 'name', 'sandboxId', queryValue(r)])}=${queryValue(r)}`).join('&')
  if (r.chance(0.02)) path += '/' + pathParam(r)
  const headers = authHeaders(r)
  let body: Buffer | string | undefined
  if (method !== 'GET' && method !== 'HEAD' && (route.body || r.chance(0.3))) {
    const k = r.int(10)
    const valid = route.body?.() ?? {}
    if (k < 6) body = JSON.stringify(tame(route, mutate(valid, r)))
    else if (k === 6) body = JSON.stringify(tame(route, valid))
    else if (k === 7) body = JSON.stringify(randomJson(r))
    else if (k === 8) body = JSON.stringify(valid).slice(0, r.int(40)) + r.pick(['', '{', '"', '\\u12', ',,', '\u0000'])
    else body = r.chance(0.5) ? r.bytes(r.int(2000)) : deepJsonText(r.pick([1000, 20_000, 100_000]))
    headers['content-type'] = r.chance(0.9) ? 'application/json' : r.pick(['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data', 'application/json; charset=latin1', '*/*', 'application/octet-stream'])
  }
  if (r.chance(0.01)) body = r.chance(0.5) ? Buffer.alloc(1024 * 1024 + 10, 'a') : JSON.stringify({ metadata: { a: 'x'.repeat(900_000) } })
  if (body !== undefined && !headers['content-type']) headers['content-type'] = 'application/json'
  return { kind: 'rest', method, path, headers, body }
}

// envd: one valid JSON request per RPC (every RPC of the proto services has one), encoded as
// Connect would, then broken.
const VALID_RPC: Record<string, () => JsonValue> = {
  Stat: () => ({ path: '/tmp/fuzz/a' }),
  MakeDir: () => ({ path: '/tmp/fuzz/d' }),
  Move: () => ({ source: '/tmp/fuzz/m1', destination: '/tmp/fuzz/m2' }),
  ListDir: () => ({ path: '/tmp', depth: 2 }),
  Remove: () => ({ path: '/tmp/fuzz/gone' }),
  WatchDir: () => ({ path: '/tmp/fuzz', recursive: true, includeEntry: true }),
  CreateWatcher: () => ({ path: '/tmp/fuzz', recursive: false }),
  GetWatcherEvents: () => ({ watcherId: 'w1' }),
  RemoveWatcher: () => ({ watcherId: 'w1' }),
  List: () => ({}),
  Connect: () => ({ process: { pid: 99999 } }),
  Start: () => ({ process: { cmd: '/bin/echo', args: ['fuzz'], envs: { A: 'b' }, cwd: '/tmp' }, stdin: false, tag: 'fuzz' }),
  Update: () => ({ process: { pid: 99999 }, pty: { size: { cols: 80, rows: 24 } } }),
  StreamInput: () => ({ start: { process: { pid: 99999 } } }),
  SendInput: () => ({ process: { tag: 'nope' }, input: { stdin: 'aGk=' } }),
  SendSignal: () => ({ process: { pid: 99999 }, signal: 'SIGNAL_SIGTERM' }),
  CloseStdin: () => ({ process: { pid: 99999 } }),
}
const RPCS = ENVD_RPCS.map((m) => ({ ...m, method: m.name, body: VALID_RPC[m.name]! }))
const missing = RPCS.filter((m) => !m.body).map((m) => m.name)
if (missing.length) throw new Error(`no valid request for the RPCs ${missing.join(', ')}: add them to VALID_RPC`)

const envelope = (flags: number, payload: Buffer, length = payload.length) => {
  const head = Buffer.alloc(5)
  head[0] = flags
  head.writeUInt32BE(length >>> 0, 1)
  return Buffer.concat([head, payload])
}

function envdHeaders(r: Rng): Record<string, string> {
  const h: Record<string, string> = { 'e2b-sandbox-id': r.chance(0.97) ? fuzzed.id : pathParam(r).slice(0, 100), ...authHeaders(r), authorization: `Basic ${Buffer.from('user:').toString('base64')}` }
  if (r.chance(0.9)) h['connect-protocol-version'] = '1'
  if (r.chance(0.1)) h['connect-timeout-ms'] = r.pick(['-1', 'abc', '0', '99999999999999', '1500'])
  return h
}

function rpcRequest(r: Rng): Req {
  const m = r.pick(RPCS)
  const json = r.chance(0.6) ? mutate(m.body(), r) : m.body()
  const proto = r.chance(0.4)
  let payload: Buffer
  try {
    payload = proto ? Buffer.from(toBinary(m.input, fromJson(m.input, json as JsonValue))) : Buffer.from(JSON.stringify(json))
  } catch {
    payload = proto ? r.bytes(r.int(200)) : Buffer.from(JSON.stringify(json))
  }
  const k = r.int(12)
  if (k === 0) payload = r.bytes(r.int(300))
  if (k === 1) payload = payload.subarray(0, r.int(payload.length + 1))
  if (k === 2 && !proto) payload = Buffer.from(JSON.stringify(json).replace(/"/, ''))
  const headers = envdHeaders(r)
  let body: Buffer
  if (m.stream || r.chance(0.05)) {
    headers['content-type'] = proto ? 'application/connect+proto' : 'application/connect+json'
    const e = r.int(10)
    if (e === 0) body = envelope(r.int(256), payload)
    else if (e === 1) body = envelope(0, payload, payload.length + 1 + r.int(1000))
    else if (e === 2) body = envelope(0, payload, Math.max(0, payload.length - 1 - r.int(5)))
    else if (e === 3) body = envelope(0, payload, 0xffffffff)
    else if (e === 4) body = envelope(0, payload).subarray(0, r.int(5))
    else if (e === 5) body = Buffer.concat([envelope(0, payload), r.bytes(r.int(20))])
    else if (e === 6) {
      body = envelope(1, r.bytes(r.int(50)))
      headers['connect-content-encoding'] = r.pick(['gzip', 'br', 'fuzz'])
    } else if (e === 7) body = Buffer.concat([envelope(0, payload), envelope(2, Buffer.from('{}')), envelope(0, payload)])
    else body = envelope(0, payload)
  } else {
    headers['content-type'] = proto ? 'application/proto' : 'application/json'
    body = payload
  }
  if (r.chance(0.05)) headers['content-type'] = r.pick(['text/plain', 'application/grpc', 'application/grpc-web+proto', 'application/connect+xml', ''])
  const path = r.chance(0.03) ? `/${m.service}/${r.pick(['Nope', '', '..', pathParam(r)])}` : `/${m.service}/${m.method}`
  const method = r.chance(0.05) ? r.pick(['GET', 'PUT', 'DELETE']) : 'POST'
  return { kind: 'envd', method, path: method === 'GET' ? `${path}?message=${queryValue(r)}&encoding=json` : path, headers, body: method === 'GET' ? undefined : body }
}

function filesRequest(r: Rng): Req {
  const filePath = r.pick([
    () => `/tmp/fuzz/${enc(r.pick(STRINGS).slice(0, 300))}`,
    () => '%ff%fe%fd',
    () => '/tmp/fuzz/%c3%28',
    () => '/tmp/fuzz/%ed%a0%80',
    () => `/tmp/fuzz/${'a'.repeat(r.pick([255, 256, 4096, 5000]))}`,
    () => `/tmp/${'d/'.repeat(r.pick([100, 2000]))}x`,
    () => `/${'x'.repeat(r.pick([12_000, 20_000, 70_000]))}`,
    () => '/tmp/fuzz/a%00b',
    () => '..%2f..%2f..%2fetc%2fpasswd',
    () => '',
    () => '/tmp/fuzz/a',
    () => '/proc/self/fd/0',
    () => '/dev/zero',
  ])()
  const query = [`path=${filePath}`, r.chance(0.9) ? `username=${r.chance(0.8) ? 'user' : queryValue(r)}` : '', r.chance(0.05) ? `signature=${queryValue(r)}&signature_expiration=${queryValue(r)}` : ''].filter(Boolean).join('&')
  const headers = r.chance(0.1) ? {} : { 'e2b-sandbox-id': fuzzed.id, ...authHeaders(r) }
  if (r.chance(0.5)) return { kind: 'files', method: r.chance(0.9) ? 'GET' : 'HEAD', path: `/files?${query}`, headers }
  const boundary = 'fuzzboundary'
  const k = r.int(5)
  let body: Buffer
  if (k === 0) {
    headers['content-type'] = `multipart/form-data; boundary=${boundary}`
    body = Buffer.from(`--${boundary}\r\ncontent-disposition: form-data; name="file"; filename="${r.pick(STRINGS).slice(0, 100)}"\r\n\r\nhello\r\n--${boundary}--\r\n`)
  } else if (k === 1) {
    headers['content-type'] = r.pick(['multipart/form-data', `multipart/form-data; boundary=${boundary}`, 'multipart/form-data; boundary='])
    body = Buffer.concat([Buffer.from(`--${boundary}\r\n`), r.bytes(r.int(500))])
  } else if (k === 2) {
    headers['content-type'] = 'application/octet-stream'
    body = r.bytes(r.int(4000))
  } else if (k === 3) {
    headers['content-type'] = 'application/octet-stream'
    headers['content-encoding'] = r.pick(['gzip', 'br', 'deflate', 'fuzz'])
    body = r.bytes(r.int(300))
  } else {
    headers['content-type'] = r.pick(['text/plain', 'application/json', 'multipart/mixed; boundary=x'])
    body = r.bytes(r.int(100))
  }
  return { kind: 'files', method: 'POST', path: `/files?${query}`, headers, body }
}

/** A gzip header over broken data, a truncated or corrupt tar, an empty body, random bytes. */
function brokenArchive(r: Rng): Buffer {
  const tarHeader = Buffer.alloc(512)
  tarHeader.write('../../etc/evil', 0)
  tarHeader.write('0000644\0', 100)
  tarHeader.write(r.pick(['77777777777\0', 'zzzzzzzzzzz\0', '00000000010\0']), 124)
  tarHeader.write('ustar\0', 257)
  return r.pick([
    () => Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0]), r.bytes(r.int(2000))]),
    () => Buffer.from([0x1f, 0x8b]),
    () => tarHeader,
    () => Buffer.alloc(0),
    () => r.bytes(r.int(5000)),
  ])()
}

function templateRequest(r: Rng): Req {
  const headers = authHeaders(r)
  const k = r.int(6)
  if (k <= 1) {
    const link = new URL(r.pick(uploadLinks))
    const p = r.int(5)
    if (p === 1) link.searchParams.set('signature', link.searchParams.get('signature')!.replace(/^./, (c) => (c === 'a' ? 'b' : 'a')))
    if (p === 2) link.searchParams.set('expires', String(Date.now() - 1000))
    if (p === 3) link.searchParams.set(r.pick(['expires', 'signature']), queryValue(r))
    if (p === 4) link.searchParams.delete('signature')
    return { kind: 'template', method: 'PUT', path: link.pathname + link.search, headers: { 'content-type': 'application/gzip' }, body: brokenArchive(r) }
  }
  if (k === 2) return { kind: 'template', method: 'PUT', path: `/api/v1/templates/files/${r.chance(0.5) ? crypto.createHash('sha256').update(`${RUN}-x${r.int(3)}`).digest('hex') : pathParam(r)}`, headers: { ...headers, 'content-type': 'application/gzip' }, body: brokenArchive(r) }
  if (k === 3) return { kind: 'template', method: 'GET', path: `/templates/${r.chance(0.7) ? template.templateID : pathParam(r)}/files/${r.chance(0.5) ? crypto.randomBytes(32).toString('hex') : pathParam(r)}`, headers }
  if (k === 4) {
    // A real template and a build id that is not its waiting build: every check runs, nothing builds.
    const body = r.chance(0.8) ? mutate(E2B_BODIES['POST /v2/templates/{templateID}/builds/{buildID}']!(), r) : randomJson(r)
    return { kind: 'template', method: 'POST', path: `/v2/templates/${r.chance(0.8) ? template.templateID : pathParam(r)}/builds/${r.chance(0.5) ? `b${template.buildID.slice(1)}x` : pathParam(r)}`, headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(body) }
  }
  return { kind: 'template', method: 'POST', path: '/v3/templates', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(mutate(E2B_BODIES['POST /v3/templates']!(), r)) }
}

/** Raw bytes no HTTP client would send. */
function rawRequest(r: Rng): Req {
  const id = fuzzed.id
  const key = apiKey()
  const cases = [
    () => r.bytes(1 + r.int(2000)),
    () => Buffer.from(`GET /${'a'.repeat(r.pick([20_000, 100_000]))} HTTP/1.1\r\nHost: x\r\n\r\n`),
    () => Buffer.from(`GET /health HTTP/1.1\r\nHost: x\r\nx-big: ${'b'.repeat(r.pick([17_000, 80_000]))}\r\n\r\n`),
    () => Buffer.from(`GET /health HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 3000 }, (_, i) => `h${i}: v`).join('\r\n')}\r\n\r\n`),
    () => Buffer.from(`${r.pick(['FUZZ', 'GET\0', 'G ET', 'TRACE', 'CONNECT', 'PROPFIND', ''])} /api/v1/sandboxes HTTP/1.1\r\nHost: x\r\nx-api-key: ${key}\r\n\r\n`),
    () => Buffer.from(`GET /api/v1/sandboxes HTTP/${r.pick(['9.9', '0.9', '1', 'x', '1.1 extra'])}\r\nHost: x\r\nx-api-key: ${key}\r\n\r\n`),
    () => Buffer.from('GET /health\r\n\r\n'),
    () => Buffer.from(`POST /api/v1/sandboxes HTTP/1.1\r\nHost: x\r\nx-api-key: ${key}\r\ncontent-type: application/json\r\ncontent-length: ${r.pick(['-1', '1e9', 'abc', '5, 6', '99999999999999999999'])}\r\n\r\n{}`),
    () => Buffer.from(`POST /api/v1/sandboxes HTTP/1.1\r\nHost: x\r\nx-api-key: ${key}\r\ncontent-type: application/json\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}`),
    () => Buffer.from(`POST /api/v1/sandboxes HTTP/1.1\r\nHost: x\r\nx-api-key: ${key}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n${r.pick(['zz\r\n{}\r\n0\r\n\r\n', 'fffffffffffffff\r\n{}', '2\r\n{}\r\n', '1;ext=\0\r\n{\r\n0\r\n\r\n'])}`),
    () => Buffer.from(`POST /api/v1/sandboxes HTTP/1.1\r\nHost: x\r\nx-api-key: ${key}\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n0\r\n\r\n`),
    () => Buffer.from(`GET /health HTTP/1.1\r\nHost: x\r\nbad header: v\r\nx-nul: a\0b\r\nno-colon\r\n\r\n`),
    () => Buffer.from(`GET /envs HTTP/1.1\r\nHost: x\r\ne2b-sandbox-id: ${r.pick([id, '', '-', 'i'.repeat(5000), id + '\x7f'])}\r\ne2b-sandbox-port: ${r.pick(['0', '65536', '-1', '49983 ', 'abc', '1e3', ''])}\r\nx-api-key: ${key}\r\n\r\n`),
    () => Buffer.from(`GET / HTTP/1.1\r\nHost: ${r.pick(['99999-abc.sandlot.localhost', `0-${id}.x`, `8080-${id}-.`, `49983-${id}.x`, '\u00ff\u00fe', `${'9'.repeat(5000)}-a.x`])}\r\n\r\n`),
    () => Buffer.from(`GET /api/v1/sandboxes HTTP/1.1\r\nHost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-key: ${r.pick(['x', ''])}\r\nx-api-key: ${key}\r\n\r\n`),
    () => Buffer.from(`GET /envs HTTP/1.1\r\nHost: x\r\ne2b-sandbox-id: ${id}\r\nupgrade: websocket\r\nconnection: upgrade\r\nx-api-key: ${key}\r\n\r\n`),
    () => Buffer.from(`POST /filesystem.Filesystem/Stat HTTP/1.1\r\nHost: x\r\ne2b-sandbox-id: ${id}\r\nx-api-key: ${key}\r\ncontent-type: application/json\r\nexpect: 100-continue\r\ncontent-length: 20\r\n\r\n{"path":"/tmp"}`),
    () => Buffer.from(`POST /files?path=/tmp/fuzz/raw HTTP/1.1\r\nHost: x\r\ne2b-sandbox-id: ${id}\r\nx-api-key: ${key}\r\ncontent-type: multipart/form-data; boundary=b\r\ntransfer-encoding: chunked\r\n\r\n${r.pick(['5\r\n--b\r\n\r\n0\r\n\r\n', 'x\r\n', '3\r\nabcdef\r\n'])}`),
    () => Buffer.from(`GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /api/v1/sandboxes HTTP/1.1\r\nHost: x\r\n\r\n${r.bytes(100).toString('latin1')}`),
    () => Buffer.from(`GET /health HTTP/1.1\r\nHost: x\r\n\r\n`.repeat(50)),
    () => Buffer.from(`GET /api/v1/sandboxes/${'%ff'.repeat(100)}%zz HTTP/1.1\r\nHost: x\r\nx-api-key: ${key}\r\n\r\n`),
    () => Buffer.from(`GET /api/v1/sandboxes HTTP/1.1\r\nHost: x\r\nx-api-key: ${'\u00ff'.repeat(r.int(100))}\r\nauthorization: Bearer \u00e9\r\n\r\n`, 'latin1'),
  ]
  const raw = r.pick(cases)()
  return { kind: 'raw', method: 'RAW', path: raw.subarray(0, 80).toString('latin1'), headers: {}, raw }
}

// --- sending ------------------------------------------------------------------------------------

const dispatcher = new Agent({ connections: CONCURRENCY * 2, headersTimeout: ANSWER_BOUND_MS, bodyTimeout: ANSWER_BOUND_MS, keepAliveTimeout: 3000, maxHeaderSize: 64 * 1024 })

function record(q: Req, status: number | undefined, answer: string, first = true) {
  if (first) {
    counts.requests++
    counts.byKind[q.kind] = (counts.byKind[q.kind] ?? 0) + 1
  }
  const cls = status === undefined ? 'none' : `${String(status)[0]}xx`
  counts.byClass[cls] = (counts.byClass[cls] ?? 0) + 1
  if (status === undefined || status < 500) return
  // Not a client's mistake: a part of E2B's API that Sandlot does not have (the same 501 to every
  // request); a 501 from a route Sandlot implements is a finding.
  if (status === 501 && (answer.includes('not_implemented') || q.method === 'HEAD') && !implementedRoute(q.method === 'HEAD' ? 'GET' : q.method, q.path)) return void counts.allowed.notImplemented++
  // E2B's answer for a sandbox that is not running, to a client with the API key (docs/security.md):
  // the e2b SDK tells a killed sandbox by it. Never for the sandbox the fuzzer works in.
  if (status === 502 && q.headers['e2b-sandbox-id'] !== fuzzed.id && answer.includes('"The sandbox was not found"')) return void counts.allowed.sandboxNotFound++
  findings.push({ what: '5xx', status, request: describeReq(q), answer: answer.slice(0, 500) })
}

async function sendHttp(q: Req): Promise<void> {
  const ac = new AbortController()
  const bound = setTimeout(() => ac.abort(new Error('no answer within the bound')), ANSWER_BOUND_MS)
  try {
    const res = await request(`${apiUrl}${q.path}`, { method: q.method as 'GET', headers: q.headers, body: q.body, dispatcher, signal: ac.signal })
    clearTimeout(bound)
    let answer = ''
    const stop = setTimeout(() => res.body.destroy(), STREAM_READ_MS)
    try {
      for await (const chunk of res.body) if (answer.length < 2000) answer += chunk.toString('latin1')
    } catch {}
    clearTimeout(stop)
    record(q, res.statusCode, answer)
  } catch (err) {
    clearTimeout(bound)
    const e = err as Error & { code?: string }
    if (ac.signal.aborted) {
      counts.noAnswer++
      findings.push({ what: 'no answer', request: describeReq(q), answer: e.message })
    } else if (e.code === 'UND_ERR_INVALID_ARG') {
      // A request the client itself refuses to send (raw cases cover those bytes): not counted.
      counts.notSent++
    } else {
      // The server closed the connection without an answer: acceptable only for what no server
      // can answer (a body larger than it takes, cut); anything else is a finding.
      counts.resets++
      record(q, undefined, '')
      if (!(q.body && Buffer.byteLength(q.body) > 1024 * 1024)) findings.push({ what: `closed without an answer (${e.code ?? e.message})`, request: describeReq(q) })
    }
  }
}

/** Raw bytes on a connection of their own; the statuses of whatever comes back. */
function sendRaw(q: Req, opts: { trickleMs?: number } = {}): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect(Number(port), '127.0.0.1')
    const t0 = Date.now()
    let answer = ''
    let finished = false
    const done = (what?: string) => {
      if (finished) return
      finished = true
      clearTimeout(bound)
      socket.destroy()
      const statuses = [...answer.matchAll(/HTTP\/1\.[01] (\d{3})/g)].map((m) => Number(m[1]))
      if (what) findings.push({ what: `${what} (after ${Date.now() - t0} ms)`, request: describeReq(q), answer: answer.slice(0, 300) })
      if (!statuses.length) record(q, undefined, answer)
      statuses.forEach((s, i) => record(q, s, answer, i === 0))
      resolve()
    }
    // The server must answer or close within its header timeout (10 s, checked every second) and a margin for a busy machine.
    const bound = setTimeout(() => done('neither answered nor closed within 20 s'), 20_000)
    socket.on('error', () => {})
    socket.on('data', (d) => (answer += d.toString('latin1')))
    socket.on('close', () => done())
    socket.on('connect', () => {
      if (!opts.trickleMs) return void socket.end(q.raw)
      let i = 0
      const tick = setInterval(() => {
        if (socket.destroyed) return clearInterval(tick)
        if (i >= q.raw!.length) return clearInterval(tick)
        socket.write(q.raw!.subarray(i, ++i))
      }, opts.trickleMs)
    })
  })
}

const send = (q: Req) => (q.raw ? sendRaw(q) : sendHttp(q))

// --- the run ------------------------------------------------------------------------------------

test(`fuzz: ${TOTAL} random and mutated requests (seed ${SEED}): no 5xx, no hang, no crash`, { timeout: LONG ? 3_600_000 : 600_000 }, async () => {
  const r = prng(SEED)
  const started = Date.now()
  // /health throughout: it must answer 200, and promptly, whatever the fuzzer does.
  let healthWorst = 0
  let healthFailures = 0
  let running = true
  // The fuzzer's own event loop, measured: a /health probe that misses its deadline while this
  // process stalled says nothing of the server.
  const ownLoop = monitorEventLoopDelay({ resolution: 10 })
  ownLoop.enable()
  const monitor = (async () => {
    while (running) {
      const t0 = Date.now()
      const ok = await fetch(`${apiUrl}/health`, { signal: AbortSignal.timeout(5000) }).then((res) => res.status === 200, () => false)
      healthWorst = Math.max(healthWorst, Date.now() - t0)
      if (!ok) healthFailures++
      await new Promise((res) => setTimeout(res, 250))
    }
  })()
  // Slow clients alongside: heads a byte at a time (dropped at the header timeout) and a slow body.
  const slow = Array.from({ length: 20 }, (_, i) =>
    sendRaw(
      i % 4
        ? { kind: 'slow', method: 'RAW', path: 'slow head', headers: {}, raw: Buffer.from(`GET /api/v1/sandboxes HTTP/1.1\r\nHost: x\r\nx-api-key: ${apiKey()}\r\nx-pad: ${'p'.repeat(100)}\r\n\r\n`) }
        : { kind: 'slow', method: 'RAW', path: 'slow body', headers: {}, raw: Buffer.from(`POST /api/v1/sandboxes/inope/keep-alive HTTP/1.1\r\nHost: x\r\nx-api-key: ${apiKey()}\r\ncontent-type: application/json\r\ncontent-length: 16\r\n\r\n{"keepAliveMs":1}`) },
      { trickleMs: i % 4 ? 200 : 20 },
    ),
  )
  const kinds: [number, (r: Rng) => Req][] = [
    [0.55, restRequest],
    [0.25, rpcRequest],
    [0.08, filesRequest],
    [0.07, templateRequest],
    [0.05, rawRequest],
  ]
  const next = (): Req => {
    let x = r.next()
    for (const [w, make] of kinds) if ((x -= w) < 0) return make(r)
    return restRequest(r)
  }
  // Requests are made in order from the seed (so a run is reproducible), sent CONCURRENCY at a time.
  let made = 0
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (counts.requests + counts.notSent < TOTAL && made < TOTAL * 1.1) {
        made++
        await send(next())
      }
    }),
  )
  await Promise.all(slow)
  running = false
  await monitor
  ownLoop.disable()
  const ownLoopMaxMs = Math.round(ownLoop.max / 1e6)
  const seconds = (Date.now() - started) / 1000

  // Afterwards: the server answers, the witness works, the fuzzed sandbox answers its envd.
  assert.equal((await fetch(`${apiUrl}/health`)).status, 200)
  assert.equal((await run(witness.id, 'echo still here')).stdout, 'still here\n')
  assert.equal((await api('GET', `/api/v1/sandboxes/${witness.id}`)).status, 200)
  await waitFor(async () => (await fetch(`${apiUrl}/health`, { headers: { 'e2b-sandbox-id': fuzzed.id, 'x-api-key': apiKey() } })).status === 204, 10_000, "the fuzzed sandbox's envd")

  const summary = { seed: SEED, requests: counts.requests, seconds: Math.round(seconds), byClass: counts.byClass, byKind: counts.byKind, closedWithoutAnswer: counts.resets, notSent: counts.notSent, allowed5xx: counts.allowed, unimplementedRoutes: unimplemented.size, noAnswer: counts.noAnswer, findings: findings.length, healthWorstMs: healthWorst, healthFailures, ownLoopMaxMs, realCreates }
  console.log(`fuzz summary: ${JSON.stringify(summary)}`)
  // Findings grouped by what and where (the first of each shown whole).
  const groups = new Map<string, Finding[]>()
  for (const f of findings) {
    const where = f.request.replace(/[?\s].*$/s, '').replace(/[a-z0-9]{21,}/g, '<id>')
    groups.set(`${f.what} ${f.status ?? ''} ${where}`, [...(groups.get(`${f.what} ${f.status ?? ''} ${where}`) ?? []), f])
  }
  for (const [key, fs] of groups) console.log(`fuzz finding ×${fs.length}: ${key}\n  e.g. ${fs[0]!.request.slice(0, 600)}\n  answer: ${fs[0]!.answer ?? ''}`)
  assert.ok(counts.requests >= TOTAL, `${counts.requests} requests`)
  assert.equal(healthFailures, 0, `/health failed ${healthFailures} times (the fuzzer's own loop stalled up to ${ownLoopMaxMs} ms)`)
  assert.deepEqual(findings.map((f) => `${f.what} ${f.status ?? ''}: ${f.request.slice(0, 300)}`), [], `seed ${SEED}: ${findings.length} findings`)
})

test('a broken tar in a template build fails that build, nothing else', { timeout: 300_000 }, async () => {
  const archive = Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]), crypto.randomBytes(3000)])
  const hash = crypto.createHash('sha256').update(archive).digest('hex')
  const made = await api('POST', '/v3/templates', { name: `${RUN}-broken` })
  assert.equal(made.status, 202)
  const link = await api('GET', `/templates/${made.json.templateID}/files/${hash}`)
  const up = await fetch(link.json.url, { method: 'PUT', body: archive })
  assert.equal(up.status, 200)
  const start = await api('POST', `/v2/templates/${made.json.templateID}/builds/${made.json.buildID}`, { fromTemplate: 'base', steps: [{ type: 'COPY', args: ['src', '/tmp/dst'], filesHash: hash }] })
  assert.equal(start.status, 202, JSON.stringify(start.json))
  const status = await waitFor(async () => {
    const s = await api('GET', `/templates/${made.json.templateID}/builds/${made.json.buildID}/status`)
    return ['ready', 'error'].includes(s.json.status) && s.json
  }, 240_000, 'the build to end')
  assert.equal(status.status, 'error', JSON.stringify(status))
  assert.equal((await fetch(`${apiUrl}/health`)).status, 200)
  assert.equal((await run(witness.id, 'echo fine')).stdout, 'fine\n')
})


test("found by the fuzzer: registry credentials of a type E2B has not are the client's mistake (400), AWS and GCP a 501", async () => {
  const start = (fromImageRegistry: unknown) => api('POST', `/v2/templates/${template.templateID}/builds/not-its-build`, { fromImage: 'registry.invalid/x:1', fromImageRegistry })
  for (const bad of [{ type: '../x' }, { type: 5 }, 'registry', [], {}]) assert.equal((await start(bad)).status, 400, JSON.stringify(bad))
  for (const type of ['aws', 'gcp']) assert.equal((await start({ type })).status, 501, type)
})

test('found by the fuzzer: after an agent refuses a request before reading it all, the client\'s next request on that connection is answered', async () => {
  // The daemon used to reset the client's keep-alive connection after passing on the refusal, so the
  // client's next request on it failed (ECONNRESET) though nothing had told it to reconnect.
  const one = new Agent({ connections: 1 })
  const headers = { 'e2b-sandbox-id': fuzzed.id, 'x-api-key': apiKey() }
  const refused: [string, Record<string, string>][] = [
    ['/files?path=/tmp/fuzz/x&username=user', { 'content-type': 'multipart/form-data' }],
    ['/filesystem.Filesystem/Stat', { 'content-type': 'text/plain' }],
    ['/filesystem.Filesystem/Nope', { 'content-type': 'application/json' }],
  ]
  for (const [route, h] of refused) {
    const r = await request(`${apiUrl}${route}`, { method: 'POST', headers: { ...headers, ...h }, body: crypto.randomBytes(4_000_000), dispatcher: one })
    await r.body.text()
    assert.ok(r.statusCode >= 400 && r.statusCode < 500, `${route}: ${r.statusCode}`)
    // Closed and said so (the usual case), or kept when the agent happened to read it all first.
    const next = await request(`${apiUrl}/api/v1/templates`, { headers: { 'x-api-key': apiKey() }, dispatcher: one })
    assert.equal(next.statusCode, 200)
    await next.body.text()
  }
  // A request read whole keeps its connection.
  const ok = await request(`${apiUrl}/filesystem.Filesystem/Stat`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json', 'connect-protocol-version': '1' }, body: '{"path":"/tmp"}', dispatcher: one })
  await ok.body.text()
  assert.equal(ok.headers.connection, 'keep-alive')
  await one.close()
})
