// The HTTP server: one port for the REST control plane (Fastify) and the envd data plane (proxy).
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify'
import http from 'node:http'
import type { Logger } from 'pino'
import type { Config } from '../config.js'
import { SandlotError } from '../errors.js'
import type { SandboxManager } from '../lifecycle/manager.js'
import { ENVD_PORT, EnvdProxy, envdTargetOf, sendJson } from '../proxy/envd.js'
import type { Store } from '../store/db.js'
import { apiKeyOf, isValidApiKey, signedFilesTarget, tokensEqual } from './auth.js'
import { e2bRoutes } from './e2b.js'
import { nativeRoutes } from './native.js'

export interface AppDeps {
  store: Store
  manager: SandboxManager
  proxy: EnvdProxy
  log: Logger
  config: Config
}

const UNAUTHORIZED = 'Missing or invalid API key: send it in the X-API-Key header (it is in $SANDLOT_HOME/api-key on the server).'

/** Data-plane requests: authenticated by the API key or the sandbox's own access token, then streamed to its agent. */
function handleEnvd(req: http.IncomingMessage, res: http.ServerResponse, deps: AppDeps, sandboxId: string): void {
  const sandbox = deps.manager.find(sandboxId)
  if (!sandbox) return sendJson(res, 502, { sandboxId, message: 'The sandbox was not found', code: 502 })
  const token = req.headers['x-access-token']
  const byToken = typeof token === 'string' && tokensEqual(token, sandbox.accessToken)
  const url = req.url ?? '/'
  // /health and signed /files URLs are checked by the agent itself, as envd does.
  const agentChecks = url === '/health' || url.startsWith('/files?') || url === '/files'
  const byKey = !byToken && isValidApiKey(deps.store, apiKeyOf(req))
  if (!byToken && !byKey && !agentChecks) return sendJson(res, 401, { code: 401, message: UNAUTHORIZED })
  // A client holding the API key may do anything in the sandbox: the agent gets the sandbox's token.
  deps.proxy.forward(req, res, sandboxId, byKey ? { 'x-access-token': sandbox.accessToken } : {})
}

export function buildApp(deps: AppDeps): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
    // On shutdown, long-lived streams (process output, watches) must not keep the daemon up: the
    // sandboxes keep running and clients reconnect to the next daemon.
    forceCloseConnections: true,
    // Wrong types are the client's error to hear about, not to be silently converted or dropped.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
    serverFactory: (handler, opts) => {
      const server = http.createServer((req, res) => {
        const target = envdTargetOf(req)
        if (target && target.port !== ENVD_PORT) {
          return sendJson(res, 502, { sandboxId: target.sandboxId, message: `Port ${target.port} is not reachable: Sandlot forwards only the agent's port (${ENVD_PORT}) so far`, code: 502 })
        }
        if (target) return handleEnvd(req, res, deps, target.sandboxId)
        if (req.url?.startsWith('/files?') && req.url.includes('signature=')) {
          const signedFor = signedFilesTarget(req, deps.manager.running())
          if (signedFor) return deps.proxy.forward(req, res, signedFor, {})
          return sendJson(res, 401, { code: 401, message: 'invalid signature: it was not made for this path, user and operation by a running sandbox' })
        }
        handler(req, res)
      })
      // Fastify's setting (72 s by default), which it applies only to servers it makes itself; Node's
      // own is 5 s. Clients pool connections and close idle ones themselves after about 5 s; a server
      // that closes first races them, and a client whose thread was busy then sends its next request
      // into a closed socket (ECONNRESET).
      server.keepAliveTimeout = opts.keepAliveTimeout as number
      return server
    },
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

  // Every control-plane request but /health carries a valid API key.
  app.addHook('onRequest', async (req, reply) => {
    if (req.url === '/health') return
    if (!isValidApiKey(deps.store, apiKeyOf(req.raw))) return reply.code(401).send({ code: 401, message: UNAUTHORIZED })
  })

  app.get('/health', async (_req, reply) => {
    const { ready, reason } = deps.manager.isReady()
    if (!ready) return reply.code(503).send({ code: 503, message: `not ready: ${reason}` })
    return { status: 'ok' }
  })

  nativeRoutes(app, deps.manager, deps.config)
  e2bRoutes(app, deps.manager, deps.config)
  return app
}
