// The data plane: streams envd requests (Connect RPCs, /files, /health) to the sandbox's agent over
// its unix socket, both directions, with backpressure (stream.pipeline).
import http from 'node:http'
import { pipeline } from 'node:stream'

/**
 * Request headers an agent may see, by name or prefix: what envd's protocol uses (Connect, /files
 * ranges and metadata, keepalives) and nothing else. An allow-list, so no credential a client sends
 * (the API key, a bearer token, cookies, another sandbox's token) ever enters a sandbox: the agent
 * gets the sandbox's own token, set by the proxy, and Basic auth reduced to the user name.
 */
const FORWARDED = new Set([
  'accept', 'accept-encoding', 'content-type', 'content-length', 'content-encoding', 'range', 'if-range',
  'user-agent', 'keepalive-ping-interval',
])
const FORWARDED_PREFIXES = ['connect-', 'grpc-', 'x-metadata-']
const forwarded = (name: string) => FORWARDED.has(name) || FORWARDED_PREFIXES.some((p) => name.startsWith(p))

/** envd's Basic auth carries only a user name (`base64(user:)`); anything after the colon is dropped. */
function basicUserOnly(header: string | undefined): string | undefined {
  const m = header && /^Basic\s+([A-Za-z0-9+/=_-]*)\s*$/i.exec(header)
  if (!m) return undefined
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8')
  const user = decoded.includes(':') ? decoded.slice(0, decoded.indexOf(':')) : decoded
  return `Basic ${Buffer.from(`${user}:`).toString('base64')}`
}

// Response headers that belong to the hop between agent and proxy, never passed to the client.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer'])

const AGENT_CONNECT_TIMEOUT_MS = 10_000

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
  /** Told of each failure of a sandbox's agent a request met (a silent or malformed answer), for the sandbox's log. */
  onAgentError: (sandboxId: string, message: string) => void = () => {}

  constructor(
    private readonly socketOf: (sandboxId: string) => string,
    /** An agent that accepts but does not begin its answer within this time gets the request a 504. */
    private readonly replyTimeoutMs: number,
  ) {}

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

  /**
   * Streams one request to the sandbox's agent. `token` is the sandbox's own access token when the
   * caller proved a right to it (API key or the token itself), or undefined (a signed /files URL,
   * which the agent checks itself). Everything that comes back is untrusted: the agent runs inside
   * the sandbox, and root there may answer in its place. A reply that is not valid HTTP, or that
   * Node would refuse to send on, becomes a 502 for this request alone.
   */
  forward(req: http.IncomingMessage, res: http.ServerResponse, sandboxId: string, token: string | undefined): void {
    const headers: http.OutgoingHttpHeaders = {}
    for (const [k, v] of Object.entries(req.headersDistinct)) if (forwarded(k) && v) headers[k] = v
    const basic = basicUserOnly(req.headers.authorization)
    if (basic) headers.authorization = basic
    if (token) headers['x-access-token'] = token
    headers.host = 'sandbox'
    if (req.headers['transfer-encoding']) headers['transfer-encoding'] = req.headers['transfer-encoding']
    const upstream = http.request({
      socketPath: this.socketOf(sandboxId),
      agent: this.agentFor(sandboxId),
      method: req.method,
      path: req.url,
      headers,
      timeout: AGENT_CONNECT_TIMEOUT_MS,
    })
    let answered = false
    const fail = (status: number, message: string) => {
      upstream.destroy()
      // A gone sandbox is no error of its agent's.
      if (status === 504 || message.startsWith("The sandbox's agent")) this.onAgentError(sandboxId, `${req.method} ${req.url?.split('?')[0]}: ${message}`)
      if (res.writableEnded) return
      // The rest of the request is not read (as below): the client is told not to reuse the connection.
      if (!req.complete && !res.headersSent) res.setHeader('connection', 'close')
      if (!res.headersSent) sendJson(res, status, { sandboxId, message, code: status })
      else res.destroy()
    }
    // Until the answer's head is in, a silent agent must not hold the client (and a socket) for ever:
    // while the request goes in, the agent must keep reading it (an idle timeout); once it is all in,
    // the head must come within the timeout however the agent trickles it (which resets an idle one).
    const noAnswer = () => !answered && fail(504, `The sandbox's agent did not answer within ${this.replyTimeoutMs / 1000} s`)
    upstream.setTimeout(this.replyTimeoutMs, noAnswer)
    let deadline: NodeJS.Timeout | undefined
    upstream.on('finish', () => (deadline = setTimeout(noAnswer, this.replyTimeoutMs)))
    upstream.on('close', () => clearTimeout(deadline))
    upstream.on('response', (up) => {
      // Streams may then stay silent as long as they like (a quiet command, a watch).
      answered = true
      clearTimeout(deadline)
      upstream.setTimeout(0)
      const status = up.statusCode ?? 0
      if (!Number.isInteger(status) || status < 200 || status > 599) return fail(502, `The sandbox's agent sent an invalid status (${status})`)
      const out: http.OutgoingHttpHeaders = {}
      for (const [k, v] of Object.entries(up.headersDistinct)) {
        if (HOP_BY_HOP.has(k) || !v) continue
        try {
          http.validateHeaderName(k)
          for (const one of v) http.validateHeaderValue(k, one)
        } catch {
          return fail(502, `The sandbox's agent sent an invalid header`)
        }
        out[k] = v
      }
      // An answer before the request is all in (a refusal) leaves the rest unread, and the
      // connection is closed after it: the client is told, so it sends nothing more on it.
      if (!req.complete) out.connection = 'close'
      try {
        // The agent's reason phrase is never passed on: Node's own for the status is used.
        res.writeHead(status, out)
      } catch {
        return fail(502, `The sandbox's agent sent a reply that cannot be passed on`)
      }
      // Flush headers at once: server streams (process output, watches) must not wait for a body chunk.
      res.flushHeaders()
      pipeline(up, res, () => {})
    })
    // An upgrade the client never asked for: not something envd sends.
    upstream.on('upgrade', (_up, socket) => {
      socket.destroy()
      fail(502, `The sandbox's agent sent an unexpected upgrade`)
    })
    upstream.on('error', () => fail(502, 'The sandbox was not found'))
    // A client that goes away aborts the upstream request, which ends the RPC stream in the agent.
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy()
    })
    pipeline(req, upstream, () => {})
  }
}
