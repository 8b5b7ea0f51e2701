// The code interpreter's HTTP API on port 49999, as E2B's server answers it: POST /execute streams
// NDJSON lines until end_of_execution; /contexts makes, lists, restarts and deletes contexts;
// GET /health says "OK".
import http from 'node:http'
import type { Contexts, Context } from './contexts.js'
import { checkEnvVars, isLanguage, normalizeLanguage, type OutputLine } from './protocol.js'

/** A line every 5 s of silence, so proxies and clients see the execution is alive. */
const KEEPALIVE_MS = 5000
const MAX_BODY = 16 * 1024 * 1024

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message)
  }
}

function readJson(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size > MAX_BODY) reject(new HttpError(413, `the request body is over ${MAX_BODY} bytes`))
      else chunks.push(c)
    })
    req.on('error', reject)
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8')
      if (!text.trim()) return resolve({})
      try {
        const body = JSON.parse(text)
        if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new Error('not an object')
        resolve(body)
      } catch {
        reject(new HttpError(400, 'the request body must be a JSON object'))
      }
    })
  })
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = typeof body === 'string' && status >= 400 ? body : JSON.stringify(body)
  res.writeHead(status, { 'content-type': status >= 400 ? 'text/plain; charset=utf-8' : 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

const SUPPORTED = 'python, javascript (js), typescript (ts) and bash'

function languageOf(raw: unknown) {
  const language = normalizeLanguage(raw)
  if (!isLanguage(language)) throw new HttpError(400, `Language "${language}" is not supported by this template: it has ${SUPPORTED}`)
  return language
}

export function createServer(contexts: Contexts): http.Server {
  const notFound = (id: string) => new HttpError(404, `Context ${id} not found`)

  async function execute(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const body = await readJson(req)
    if (typeof body.code !== 'string') throw new HttpError(400, 'code must be a string')
    if (body.context_id && body.language) throw new HttpError(400, 'Only one of context_id or language can be provided')
    let envVars: Record<string, string>
    try {
      envVars = checkEnvVars(body.env_vars)
    } catch (err) {
      throw new HttpError(400, (err as Error).message)
    }
    let context: Context
    if (body.context_id) {
      const found = contexts.get(String(body.context_id))
      if (!found) throw notFound(String(body.context_id))
      context = found
    } else {
      context = await contexts.defaultFor(languageOf(body.language))
    }

    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' })
    res.flushHeaders()
    const gone = new AbortController()
    let keepalive: NodeJS.Timeout | undefined
    const write = (line: OutputLine) => {
      clearTimeout(keepalive)
      if (!res.destroyed) res.write(`${JSON.stringify(line)}\n`)
      if (line.type !== 'end_of_execution') keepalive = setTimeout(() => write({ type: 'keepalive' }), KEEPALIVE_MS)
    }
    keepalive = setTimeout(() => write({ type: 'keepalive' }), KEEPALIVE_MS)
    let finished = false
    res.on('close', () => !finished && gone.abort())
    try {
      await context.execute(body.code, envVars, write, gone.signal)
    } catch (err) {
      write({ type: 'error', name: 'UnexpectedEndOfExecution', value: (err as Error).message, traceback: '' })
    } finally {
      finished = true
      write({ type: 'end_of_execution' })
      res.end()
    }
  }

  async function route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const { pathname } = new URL(req.url ?? '/', 'http://localhost')
    const method = req.method ?? 'GET'
    if (pathname === '/health' && (method === 'GET' || method === 'HEAD')) return send(res, 200, 'OK')
    if (pathname === '/execute' && method === 'POST') return execute(req, res)
    if (pathname === '/contexts' && method === 'POST') {
      const body = await readJson(req)
      const cwd = body.cwd === undefined || body.cwd === null || body.cwd === '' ? contexts.home : body.cwd
      if (typeof cwd !== 'string' || !cwd.startsWith('/')) throw new HttpError(400, 'cwd must be an absolute path')
      const context = await contexts.create(languageOf(body.language), cwd)
      return send(res, 200, context.info())
    }
    if (pathname === '/contexts' && method === 'GET') return send(res, 200, contexts.list().map((c) => c.info()))
    const m = /^\/contexts\/([^/]+)(\/restart)?$/.exec(pathname)
    if (m) {
      const id = decodeURIComponent(m[1]!)
      if (m[2] && method === 'POST') {
        const context = contexts.get(id)
        if (!context) throw notFound(id)
        await context.restart()
        return send(res, 200, context.info())
      }
      if (!m[2] && method === 'DELETE') {
        if (!(await contexts.delete(id))) throw notFound(id)
        return send(res, 200, { id })
      }
    }
    throw new HttpError(404, `No route ${method} ${pathname}`)
  }

  const server = http.createServer((req, res) => {
    route(req, res).catch((err: Error) => {
      const status = err instanceof HttpError ? err.status : 500
      if (!res.headersSent) send(res, status, err.message)
      else res.end()
    })
  })
  // Long executions on kept connections, as E2B's server (uvicorn --timeout-keep-alive 640).
  server.keepAliveTimeout = 640_000
  server.requestTimeout = 0
  return server
}
