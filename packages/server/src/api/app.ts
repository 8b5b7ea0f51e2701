// The HTTP server: one port, http:// and https:// (tls/), for the REST control plane (Fastify), the
// envd data plane and port previews (proxy/).
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify'
import http from 'node:http'
import https from 'node:https'
import type net from 'node:net'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import type { Config } from '../config.js'
import { SandlotError } from '../errors.js'
import type { SandboxManager } from '../lifecycle/manager.js'
import { EnvdProxy, sendJson } from '../proxy/envd.js'
import { type PreviewProxy, type PreviewReply, type PreviewSandbox, sendRawJson, trafficRefusal } from '../proxy/preview.js'
import { ENVD_PORT, targetOf } from '../proxy/target.js'
import type { Store } from '../store/db.js'
import type { TlsMaterial } from '../tls/certs.js'
import { serveTlsOnSamePort } from '../tls/sniff.js'
import { apiKeyOf, isValidApiKey, signedFilesTarget, tokensEqual } from './auth.js'
import { e2bRoutes } from './e2b.js'
import { e2bCopyRoutes } from './e2b-copies.js'
import { copyRoutes } from './copies.js'
import { nativeRoutes } from './native.js'
import { templateRoutes } from './templates.js'
import { UPLOAD_PREFIX, e2bTemplateRoutes } from './e2b-templates.js'
import { logAccess, logUpgradeAccess, noteRoute } from './access-log.js'
import type { SandboxCopies } from '../lifecycle/copies.js'
import { errorSchema, openApiRoute, registerOpenApi } from './openapi.js'
import { poolRoutes } from './pools.js'
import { e2bMetricsRoutes } from './e2b-metrics.js'
import { sandboxHistoryRoutes } from './sandbox-history.js'
import type { SandboxLogs } from '../lifecycle/logs.js'
import type { HistoryStore } from '../store/history.js'
import type { SandboxPool } from '../lifecycle/pool.js'
import type { TemplateBuilds } from '../templates/builds.js'
import type { TemplateRegistry } from '../templates/registry.js'

export interface AppDeps {
  store: Store
  /** Snapshots and forks (lifecycle/copies.ts). */
  copies: SandboxCopies
  /** Template builds and names (templates/). */
  builds: TemplateBuilds
  templates: TemplateRegistry
  manager: SandboxManager
  proxy: EnvdProxy
  preview: PreviewProxy
  log: Logger
  config: Config
  pool: SandboxPool
  /** Sandboxes' metrics samples and logs (store/history.ts, lifecycle/logs.ts). */
  history: HistoryStore
  logs: SandboxLogs
  /** Serve https:// on the same port with this certificate (tls/); absent: http:// only. */
  tls?: TlsMaterial
}

const HEADERS_TIMEOUT_MS = 10_000

/** envd's CORS answer (packages/agent/src/server.ts): open to any origin, method and header. */
const ENVD_CORS_HEADERS = {
  'access-control-allow-origin': '*',
  'access-control-allow-methods': '*',
  'access-control-allow-headers': '*',
  'access-control-expose-headers': '*',
  'access-control-max-age': '7200',
}

const UNAUTHORIZED = 'Missing or invalid API key: send it in the X-API-Key header (it is in $SANDLOT_HOME/api-key on the server).'
const UNAUTHORIZED_ENVD = "Missing or invalid credentials: send the sandbox's access token in X-Access-Token (or the API key in X-API-Key)"

/**
 * Data-plane requests: authenticated here by the API key, the sandbox's own access token or a
 * signature made with it, then streamed to its agent. A client with none of these learns nothing,
 * not even whether the sandbox exists: 401 for a running sandbox and an unknown id alike.
 */
function handleEnvd(req: http.IncomingMessage, res: http.ServerResponse, deps: AppDeps, sandboxId: string): void {
  // A browser's CORS preflight carries no credentials: answered here, as envd answers it, the
  // same for every id, so it neither reaches an agent nor tells which sandboxes exist.
  if (req.method === 'OPTIONS') {
    res.writeHead(204, ENVD_CORS_HEADERS)
    return void res.end()
  }
  const token = req.headers['x-access-token']
  const tokenIs = (expected: string) => typeof token === 'string' && tokensEqual(token, expected)
  // The key's hash and its lookup only when the token does not already answer (the SDKs' hot path).
  const byKey = () => isValidApiKey(deps.store, apiKeyOf(req))
  const sandbox = deps.manager.find(sandboxId)
  if (!sandbox) {
    // Tokens are derived from the id, so a client that knew this sandbox's token still hears it is gone.
    if (!tokenIs(deps.manager.accessTokenOf(sandboxId)) && !byKey()) return sendJson(res, 401, { code: 401, message: UNAUTHORIZED_ENVD })
    // Paused with autoResume: this request, authenticated, wakes it, then goes on.
    if (deps.manager.wakesOnRequest(sandboxId)) return wakeThen(deps, sandboxId, () => handleEnvd(req, res, deps, sandboxId), (status, body) => sendJson(res, status, body))
    return sendJson(res, 502, { sandboxId, message: 'The sandbox was not found', code: 502 })
  }
  if (tokenIs(sandbox.accessToken) || byKey()) {
    return deps.proxy.forward(req, res, sandboxId, sandbox.accessToken)
  }
  // A signed /files URL: the agent checks the signature and its expiry again, without a token.
  if (signedFilesTarget(req, [sandbox]) === sandboxId) return deps.proxy.forward(req, res, sandboxId, undefined)
  return sendJson(res, 401, { code: 401, message: UNAUTHORIZED_ENVD })
}

/**
 * A port preview's gate (E2B's proxy): a gone sandbox is E2B's 502, a private one wants its traffic
 * token. No API key is needed or looked at: previews are public by default, as on E2B.
 */
function admitPreview(req: http.IncomingMessage, deps: AppDeps, sandboxId: string): { sandbox: PreviewSandbox } | PreviewReply | { wake: true } {
  const sandbox = deps.manager.find(sandboxId)
  const refusal = (s: PreviewSandbox) => trafficRefusal(req, s, () => deps.manager.trafficTokenOf(sandboxId), tokensEqual)
  if (!sandbox) {
    // Paused with autoResume: traffic that may reach it (a private one's token first) wakes it.
    if (deps.manager.wakesOnRequest(sandboxId)) return refusal(deps.manager.get(sandboxId)) ?? { wake: true }
    return { status: 502, body: { sandboxId, message: 'The sandbox was not found', code: 502 } }
  }
  return refusal(sandbox) ?? { sandbox }
}

/** Resumes a paused sandbox a request woke (E2B's autoResume), then serves the request; E2B's 502 if it cannot be. */
function wakeThen(deps: AppDeps, sandboxId: string, next: () => void, fail: (status: number, body: object) => void): void {
  deps.manager.wake(sandboxId).then(next, (err: Error) => {
    deps.log.warn({ err, sandboxId }, 'a request could not resume a paused sandbox')
    fail(502, { sandboxId, message: `The sandbox is paused and could not be resumed: ${err.message}`, code: 502 })
  })
}

/** Upgrade requests (WebSocket and others): only port previews take them; Sandlot's own routes do not. */
function handleUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer, deps: AppDeps): void {
  socket.on('error', () => socket.destroy())
  // The head is in; a WebSocket may then stay quiet as long as its two ends like.
  ;(socket as net.Socket).setTimeout?.(0)
  const target = targetOf(req)
  if (target && 'error' in target) return sendRawJson(socket, 400, { code: 400, message: target.error })
  if (!target || target.port === ENVD_PORT) {
    return sendRawJson(socket, 400, {
      code: 400,
      message: `Upgrade (${req.headers.upgrade}) is accepted only by port previews (Host <port>-<id>.${deps.config.domain}, or E2b-Sandbox-Id with E2b-Sandbox-Port other than ${ENVD_PORT})`,
    })
  }
  const admitted = admitPreview(req, deps, target.sandboxId)
  if ('status' in admitted) return sendRawJson(socket, admitted.status, admitted.body)
  if ('wake' in admitted) return wakeThen(deps, target.sandboxId, () => handleUpgrade(req, socket, head, deps), (status, body) => sendRawJson(socket, status, body))
  deps.preview.upgrade(req, socket, head, admitted.sandbox, target.port)
}

export function buildApp(deps: AppDeps): FastifyInstance {
  let tlsServer: https.Server | undefined
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
    // A path parameter of any length a request head can carry reaches its route, which judges it (a
    // 400 naming it): find-my-way's default of 100 sent longer ones past the route, to E2B's 501 catch-alls.
    // (In routerOptions: the top-level option is deprecated, and its warning broke the log's first lines.)
    routerOptions: { maxParamLength: 16 * 1024 },
    // On shutdown, long-lived streams (process output, watches) must not keep the daemon up: the
    // sandboxes keep running and clients reconnect to the next daemon.
    forceCloseConnections: true,
    // Wrong types are the client's error to hear about, not to be silently converted or dropped.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
    serverFactory: (handler, opts) => {
      const route = (req: http.IncomingMessage, res: http.ServerResponse) => {
        const target = targetOf(req)
        if (target && 'error' in target) return sendJson(res, 400, { code: 400, message: target.error })
        if (target && target.port !== ENVD_PORT) {
          const admitted = admitPreview(req, deps, target.sandboxId)
          if ('status' in admitted) return sendJson(res, admitted.status, admitted.body)
          if ('wake' in admitted) return wakeThen(deps, target.sandboxId, () => route(req, res), (status, body) => sendJson(res, status, body))
          return deps.preview.forward(req, res, admitted.sandbox, target.port)
        }
        if (target) return handleEnvd(req, res, deps, target.sandboxId)
        if (req.url?.startsWith('/files?') && req.url.includes('signature=')) {
          const signedFor = signedFilesTarget(req, deps.manager.running())
          if (signedFor) return deps.proxy.forward(req, res, signedFor, undefined)
          return sendJson(res, 401, { code: 401, message: 'invalid signature: it was not made for this path, user and operation by a running sandbox' })
        }
        handler(req, res)
      }
      const serverOptions = {
        // A client must send its request head within 10 s (checked every second): half-sent
        // requests must not pin descriptors. Bodies may take as long as they take (big uploads).
        headersTimeout: HEADERS_TIMEOUT_MS,
        requestTimeout: 0,
        connectionsCheckingInterval: 1000,
      }
      const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
        // The head is in: from here the request may take as long as it needs (see 'connection').
        req.socket.setTimeout(0)
        if (deps.config.accessLog) logAccess(req, res, deps.log)
        // No single request may take the daemon down: whatever slips past the handlers is that
        // request's 500, logged.
        try {
          route(req, res)
        } catch (err) {
          deps.log.error({ err, url: req.url }, 'request failed')
          sendJson(res, 500, { code: 500, message: `Internal error: ${(err as Error).message}` })
        }
      }
      const onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
        if (deps.config.accessLog) logUpgradeAccess(req, socket, deps.log)
        try {
          handleUpgrade(req, socket, head, deps)
        } catch (err) {
          deps.log.error({ err, url: req.url }, 'upgrade failed')
          sendRawJson(socket, 500, { code: 500, message: `Internal error: ${(err as Error).message}` })
        }
      }
      const server = http.createServer(serverOptions, onRequest)
      server.on('upgrade', onUpgrade)
      if (deps.tls) {
        // https:// on the same port (tls/sniff.ts): the TLS server shares the handlers and never
        // listens; the first byte of each connection picks it or plain HTTP.
        tlsServer = https.createServer({ ...serverOptions, key: deps.tls.key, cert: deps.tls.cert, handshakeTimeout: HEADERS_TIMEOUT_MS }, onRequest)
        tlsServer.on('upgrade', onUpgrade)
        tlsServer.on('secureConnection', (socket: net.Socket) => socket.setTimeout(HEADERS_TIMEOUT_MS))
        // A failed handshake is the client's problem: the TLS server closes it; nothing to log per connection.
        tlsServer.on('tlsClientError', () => {})
        tlsServer.keepAliveTimeout = opts.keepAliveTimeout as number
        serveTlsOnSamePort(server, tlsServer, { firstByteTimeoutMs: HEADERS_TIMEOUT_MS })
      }
      // headersTimeout covers a head that has begun; a connection that sends nothing at all gets
      // the same time to start, then is closed (Node's handler for a socket timeout destroys it).
      server.on('connection', (socket: net.Socket) => socket.setTimeout(HEADERS_TIMEOUT_MS))
      // Past this many open connections new ones are refused at once, so a flood cannot take the
      // descriptors that running sandboxes and their clients need.
      server.maxConnections = deps.config.maxConnections
      // Fastify's setting (72 s by default), which it applies only to servers it makes itself; Node's
      // own is 5 s. Clients pool connections and close idle ones themselves after about 5 s; a server
      // that closes first races them, and a client whose thread was busy then sends its next request
      // into a closed socket (ECONNRESET).
      server.keepAliveTimeout = opts.keepAliveTimeout as number
      return server
    },
  })

  // Connections the HTTP server does not track (TLS ones, upgraded previews) would keep its close
  // waiting: closed first. Sandboxes keep running; clients reconnect to the next daemon.
  app.addHook('preClose', async () => {
    tlsServer?.closeAllConnections()
    deps.preview.close()
  })

  app.setErrorHandler((err: FastifyError | SandlotError, req, reply) => {
    if (err instanceof SandlotError) {
      return reply.code(err.status).send({ code: err.status, message: err.message, error_code: err.errorCode })
    }
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500
    if (status === 500) req.log.error({ err }, 'request failed')
    const message = status === 500 ? `Internal error: ${err.message}` : err.validation ? `Invalid request: ${err.message}` : err.message
    return reply.code(status).send({ code: status, message })
  })

  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({ code: 404, message: `Route ${req.method} ${req.url.split('?')[0]} does not exist on this Sandlot server` }),
  )

  // First of all (a 401 too): the access log names the route that took the request.
  if (deps.config.accessLog) app.addHook('onRequest', async (req) => noteRoute(req.raw, req.is404 ? undefined : req.routeOptions.url))

  // Every control-plane request but /health carries a valid API key.
  app.addHook('onRequest', async (req, reply) => {
    if (req.url === '/health') return
    // E2B's upload links carry a signature instead of the key (the SDK sends none); the route checks it.
    if (req.method === 'PUT' && req.url.startsWith(UPLOAD_PREFIX)) return
    if (!isValidApiKey(deps.store, apiKeyOf(req.raw))) return reply.code(401).send({ code: 401, message: UNAUTHORIZED })
  })

  registerOpenApi(app)
  // In a plugin of their own, registered after the OpenAPI generator, which sees each of them.
  app.register(async (api) => {
    api.get('/health', { schema: { summary: 'Whether the server can create sandboxes', tags: ['server'], security: [], response: { 200: { type: 'object', properties: { status: { type: 'string', enum: ['ok'] } } }, 503: errorSchema } } }, async (_req, reply) => {
      const { ready, reason } = deps.manager.isReady()
      if (!ready) return reply.code(503).send({ code: 503, message: `not ready: ${reason}` })
      return { status: 'ok' }
    })
    openApiRoute(api)
    nativeRoutes(api, deps.manager, deps.config)
    sandboxHistoryRoutes(api, deps)
    templateRoutes(api, deps.builds, deps.templates)
    poolRoutes(api, deps.pool)
    e2bTemplateRoutes(api, deps.builds, deps.templates, deps.config.defaultLimits)
    copyRoutes(api, deps.manager, deps.copies, deps.config)
    e2bCopyRoutes(api, deps.manager, deps.copies, deps.config)
    e2bRoutes(api, deps.manager, deps.config)
    e2bMetricsRoutes(api, deps)
  })
  return app
}
