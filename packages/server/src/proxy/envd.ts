// The data plane: streams envd requests (Connect RPCs, /files, /health) to the sandbox's agent over
// its unix socket, both directions, with backpressure (stream.pipeline).
import http from 'node:http'
import { pipeline } from 'node:stream'

export const ENVD_PORT = 49983

export interface EnvdTarget {
  sandboxId: string
  port: number
}

/** Finds the sandbox a request is for: E2b-Sandbox-Id header, or a Host of the form <port>-<id>.<domain>. */
export function envdTargetOf(req: http.IncomingMessage): EnvdTarget | undefined {
  const header = req.headers['e2b-sandbox-id']
  if (typeof header === 'string' && header) {
    const port = Number(req.headers['e2b-sandbox-port'] ?? ENVD_PORT)
    return { sandboxId: header.split('-')[0]!, port: Number.isInteger(port) ? port : ENVD_PORT }
  }
  const host = req.headers.host ?? ''
  const m = /^(\d+)-([a-z0-9]+)(?:-[a-z0-9]+)?\./.exec(host)
  if (m) return { sandboxId: m[2]!, port: Number(m[1]) }
  return undefined
}

// Hop-by-hop headers are the proxy's own business, never forwarded.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'host'])

export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

export class EnvdProxy {
  /** One keep-alive connection pool per sandbox: a command in a running sandbox should cost one round trip. */
  private agents = new Map<string, http.Agent>()

  constructor(private readonly socketOf: (sandboxId: string) => string) {}

  private agentFor(sandboxId: string): http.Agent {
    let agent = this.agents.get(sandboxId)
    if (!agent) {
      // Idle sockets are closed here after 30 s, before the agent's own 65 s, so this side always
      // closes first and a request never goes into a socket the agent is closing. (The timeout only
      // closes free sockets; on a busy one Node merely emits 'timeout', which nothing here acts on.)
      agent = new http.Agent({ keepAlive: true, maxFreeSockets: 8, timeout: 30_000 })
      this.agents.set(sandboxId, agent)
    }
    return agent
  }

  /** Closes pooled connections of a sandbox that is gone. */
  forget(sandboxId: string): void {
    this.agents.get(sandboxId)?.destroy()
    this.agents.delete(sandboxId)
  }

  forward(req: http.IncomingMessage, res: http.ServerResponse, sandboxId: string, extraHeaders: Record<string, string>): void {
    const headers: http.OutgoingHttpHeaders = {}
    for (const [k, v] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) headers[k] = v
    Object.assign(headers, extraHeaders)
    headers.host = 'sandbox'
    if (req.headers['transfer-encoding']) headers['transfer-encoding'] = req.headers['transfer-encoding']
    const upstream = http.request({
      socketPath: this.socketOf(sandboxId),
      agent: this.agentFor(sandboxId),
      method: req.method,
      path: req.url,
      headers,
    })
    upstream.on('response', (up) => {
      const out: http.OutgoingHttpHeaders = {}
      for (const [k, v] of Object.entries(up.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) out[k] = v
      res.writeHead(up.statusCode ?? 502, up.statusMessage, out)
      // Flush headers at once: server streams (process output, watches) must not wait for a body chunk.
      res.flushHeaders()
      pipeline(up, res, () => {})
    })
    upstream.on('error', () => {
      if (!res.headersSent) sendJson(res, 502, { sandboxId, message: 'The sandbox was not found', code: 502 })
      else res.destroy()
    })
    // A client that goes away aborts the upstream request, which ends the RPC stream in the agent.
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy()
    })
    pipeline(req, upstream, () => {})
  }
}
