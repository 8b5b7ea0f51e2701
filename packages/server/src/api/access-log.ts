// The access log (SANDLOT_ACCESS_LOG=1): one line per request once its reply ends, whatever served it
// (the control plane, envd, a port preview, a refusal such as a 401), and per upgrade (WebSocket
// and others) once its connection closes: method, path (never the query, which may carry
// signatures), the route's template when a route of the API served it, status, time, and the
// sandbox it was for.
import type http from 'node:http'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import { ENVD_PORT, targetOf } from '../proxy/target.js'

const SANDBOX_IN_PATH = /^\/(?:api\/v1\/|v2\/)?sandboxes\/([a-z0-9]{6,64})(?:\/|$)/

/** The route template (`/api/v1/sandboxes/:id`) of each request an API route took, noted by the app's first hook. */
const routes = new WeakMap<http.IncomingMessage, string>()

export function noteRoute(req: http.IncomingMessage, route: string | undefined): void {
  if (route) routes.set(req, route)
}

/** What the line says of a request, read when it arrives; `line(status)` writes it. */
function accessOf(req: http.IncomingMessage, log: Logger, extra: Record<string, unknown> = {}) {
  const started = process.hrtime.bigint()
  const target = targetOf(req)
  // Bounded: both come from the client.
  const path = (req.url ?? '/').split('?')[0]!.slice(0, 512)
  const sandboxId = (target && !('error' in target) ? target.sandboxId : SANDBOX_IN_PATH.exec(path)?.[1])?.slice(0, 64)
  // The port of a preview; envd's is implied.
  const port = target && !('error' in target) && target.port !== ENVD_PORT ? target.port : undefined
  return (status: number) => {
    const ms = Number(process.hrtime.bigint() - started) / 1e6
    const route = routes.get(req)
    log.info(
      { access: true, method: req.method, path, ...(route && { route }), status, ms: Math.round(ms * 10) / 10, ...(sandboxId && { sandboxId }), ...(port && { port }), ...extra },
      `${req.method} ${route ?? path} ${status} ${ms.toFixed(1)} ms${sandboxId ? ` (${sandboxId}${port ? `:${port}` : ''})` : ''}`,
    )
  }
}

export function logAccess(req: http.IncomingMessage, res: http.ServerResponse, log: Logger): void {
  const line = accessOf(req, log)
  // A reply cut off before it ended (the client went away) shows as status 499, as nginx writes it.
  res.once('close', () => line(res.writableFinished ? res.statusCode : 499))
}

/**
 * An upgrade's line, once its connection closes: the status of the answer written on it (101 when
 * the upgrade was made; 499 when the client left before any answer) and the time it was open.
 */
export function logUpgradeAccess(req: http.IncomingMessage, socket: Duplex, log: Logger): void {
  const line = accessOf(req, log, { upgrade: String(req.headers.upgrade ?? '').slice(0, 64) })
  let status = 499
  // Every answer on an upgrade's socket begins with its status line: read from the first write or
  // end (a refusal is one end).
  const { write, end } = socket
  const sniff = (chunk: unknown) => {
    socket.write = write
    socket.end = end
    const head = typeof chunk === 'string' ? chunk.slice(0, 16) : Buffer.isBuffer(chunk) ? chunk.subarray(0, 16).toString('latin1') : ''
    status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? status)
  }
  socket.write = function (this: Duplex, chunk: unknown, ...rest: unknown[]) {
    sniff(chunk)
    return (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest)
  } as typeof socket.write
  socket.end = function (this: Duplex, chunk?: unknown, ...rest: unknown[]) {
    sniff(chunk)
    return (end as (...args: unknown[]) => Duplex).call(this, chunk, ...rest)
  } as typeof socket.end
  // The HTTP server and a preview tunnel's pipes fill the default limit of close listeners: one more, counted.
  socket.setMaxListeners(socket.getMaxListeners() + 1)
  socket.once('close', () => line(status))
}
