// The access log (SANDLOT_ACCESS_LOG=1): one line per request once its reply ends, whatever served it
// (the control plane, envd, a port preview, a refusal such as a 401): method, path (never the query,
// which may carry signatures), status, time, and the sandbox it was for.
import type http from 'node:http'
import type { Logger } from 'pino'
import { ENVD_PORT, targetOf } from '../proxy/target.js'

const SANDBOX_IN_PATH = /^\/(?:api\/v1\/|v2\/)?sandboxes\/([a-z0-9]{6,64})(?:\/|$)/

export function logAccess(req: http.IncomingMessage, res: http.ServerResponse, log: Logger): void {
  const started = process.hrtime.bigint()
  const target = targetOf(req)
  // Bounded: both come from the client.
  const path = (req.url ?? '/').split('?')[0]!.slice(0, 512)
  const sandboxId = (target && !('error' in target) ? target.sandboxId : SANDBOX_IN_PATH.exec(path)?.[1])?.slice(0, 64)
  // The port of a preview; envd's is implied.
  const port = target && !('error' in target) && target.port !== ENVD_PORT ? target.port : undefined
  res.once('close', () => {
    const ms = Number(process.hrtime.bigint() - started) / 1e6
    // A reply cut off before it ended (the client went away) shows as status 499, as nginx writes it.
    const status = res.writableFinished ? res.statusCode : 499
    log.info(
      { access: true, method: req.method, path, status, ms: Math.round(ms * 10) / 10, ...(sandboxId && { sandboxId }), ...(port && { port }) },
      `${req.method} ${path} ${status} ${ms.toFixed(1)} ms${sandboxId ? ` (${sandboxId}${port ? `:${port}` : ''})` : ''}`,
    )
  })
}
