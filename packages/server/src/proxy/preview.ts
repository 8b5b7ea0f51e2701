// Port previews: requests for a port other than envd's (Host <port>-<id>.<domain>, or the
// E2b-Sandbox-Id / E2b-Sandbox-Port headers) go to the server listening on that port inside the
// sandbox, as E2B's proxy does (e2b-protocol-next.md §1.4): HTTP with every method, bodies streamed
// both ways with backpressure (stream.pipeline), keep-alive; WebSocket and any other Upgrade as raw
// bytes after the 101. Connections are dials of dialer.ts (today a tunnel through the agent).
//
// What comes back is the sandbox's, so untrusted: Node's parser reads it, invalid heads become a
// 502 for that request alone. What goes in never carries Sandlot's credentials.
import http from 'node:http'
import type net from 'node:net'
import type { Duplex } from 'node:stream'
import { pipeline } from 'node:stream'
import { maskedHost, type IngressConfig, PUBLIC_INGRESS } from '../lifecycle/ingress.js'
import { PortAgent, type PortDialer } from './dialer.js'
import { sendJson } from './envd.js'
import { TunnelError } from './tunnel.js'

export const TRAFFIC_TOKEN_HEADER = 'e2b-traffic-access-token'

/** The sandbox a preview is for, as the router found it running. */
export interface PreviewSandbox {
  id: string
  ingress: IngressConfig | null
}

export interface PreviewReply {
  status: number
  body: Record<string, unknown>
}

/**
 * E2B's gate for previews: a sandbox created with allowPublicTraffic false answers only requests
 * that carry its traffic token; E2B's exact 403 bodies otherwise (missing and wrong told apart).
 */
export function trafficRefusal(req: http.IncomingMessage, sandbox: PreviewSandbox, expected: () => string, equal: (a: string, b: string) => boolean): PreviewReply | undefined {
  if ((sandbox.ingress ?? PUBLIC_INGRESS).allowPublicTraffic) return undefined
  const got = req.headers[TRAFFIC_TOKEN_HEADER]
  const sandboxId = sandbox.id
  if (typeof got !== 'string' || got === '') {
    return { status: 403, body: { sandboxId, message: `Sandbox is secured with traffic access token. Token header '${TRAFFIC_TOKEN_HEADER}' is missing`, code: 403 } }
  }
  if (!equal(got, expected())) {
    return { status: 403, body: { sandboxId, message: `Sandbox is secured with traffic access token. Provided token in header '${TRAFFIC_TOKEN_HEADER}' is invalid`, code: 403 } }
  }
  return undefined
}

// Hop-by-hop headers (RFC 9110 §7.6.1) belong to one connection, never forwarded either way.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings', 'expect'])
/**
 * Sandlot's credentials and routing, dropped before a request enters a sandbox: the API key, the
 * sandbox's envd token, the traffic token. (Authorization is the app's own business unless it
 * carries a Sandlot API key; see withoutCredentials.)
 */
const SANDLOT_ONLY = new Set(['x-api-key', 'x-access-token', TRAFFIC_TOKEN_HEADER, 'e2b-sandbox-id', 'e2b-sandbox-port'])

const API_KEY_LIKE = /e2b_[0-9a-f]{40}/g

/** Whether a header value (or its Basic-decoded form) carries one of this server's API keys. */
function carriesApiKey(value: string, isApiKey: (key: string) => boolean): boolean {
  const basic = /^Basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(value)
  const texts = [value, basic ? Buffer.from(basic[1]!, 'base64').toString('latin1') : '']
  return texts.some((t) => [...t.matchAll(API_KEY_LIKE)].some((m) => isApiKey(m[0])))
}

/** Names the Connection header lists are hop-by-hop for this request too. */
function connectionListed(req: http.IncomingMessage): Set<string> {
  const raw = req.headers.connection
  return new Set((raw ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean))
}

export interface HeaderContext {
  port: number
  ingress: IngressConfig
  isApiKey: (key: string) => boolean
  /** Whether the client reached Sandlot over TLS (X-Forwarded-Proto). */
  encrypted: boolean
  /** Keep Connection/Upgrade (a WebSocket handshake). */
  upgrade: boolean
}

/** The headers a preview request is forwarded with. */
export function upstreamHeaders(req: http.IncomingMessage, ctx: HeaderContext): http.OutgoingHttpHeaders {
  const listed = connectionListed(req)
  const out: http.OutgoingHttpHeaders = {}
  for (const [name, values] of Object.entries(req.headersDistinct)) {
    if (!values || HOP_BY_HOP.has(name) || listed.has(name) || SANDLOT_ONLY.has(name)) continue
    if (name === 'authorization' && values.some((v) => carriesApiKey(v, ctx.isApiKey))) continue
    if (name === 'host' || name.startsWith('x-forwarded-')) continue
    out[name] = values.length === 1 ? values[0] : values
  }
  // Node decoded the client's chunks; the body goes on chunked again (a GET's too, if it has one).
  if (req.headers['transfer-encoding']) out['transfer-encoding'] = 'chunked'
  if (ctx.upgrade) {
    out.connection = 'Upgrade'
    out.upgrade = req.headers.upgrade
  }
  // E2B keeps the client's Host; with maskRequestHost the mask, and the client's in X-Forwarded-Host.
  const host = req.headers.host ?? ''
  if (ctx.ingress.maskRequestHost) {
    out.host = maskedHost(ctx.ingress.maskRequestHost, ctx.port)
    out['x-forwarded-host'] = host
  } else {
    out.host = host
  }
  const prior = req.headers['x-forwarded-for']
  const client = req.socket.remoteAddress ?? ''
  out['x-forwarded-for'] = prior ? `${prior}, ${client}` : client
  out['x-forwarded-proto'] = ctx.encrypted ? 'https' : 'http'
  return out
}

/** The app's response headers as they may go to the client, or undefined if any is invalid. */
function downstreamHeaders(up: http.IncomingMessage): http.OutgoingHttpHeaders | undefined {
  const out: http.OutgoingHttpHeaders = {}
  const listed = connectionListed(up)
  for (const [name, values] of Object.entries(up.headersDistinct)) {
    if (!values || HOP_BY_HOP.has(name) || listed.has(name)) continue
    try {
      http.validateHeaderName(name)
      for (const v of values) http.validateHeaderValue(name, v)
    } catch {
      return undefined
    }
    out[name] = values.length === 1 ? values[0] : values
  }
  return out
}

/** A reply written straight onto a socket (the upgrade path has no ServerResponse). */
export function sendRawJson(socket: Duplex, status: number, body: unknown): void {
  if (socket.destroyed) return
  const text = JSON.stringify(body)
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`,
  )
}

/** Idempotent requests without a body may be sent again when a pooled connection turns out closed. */
const RETRYABLE = new Set(['GET', 'HEAD', 'OPTIONS'])

export interface PreviewProxyOptions {
  dialer: PortDialer
  isApiKey: (key: string) => boolean
  /** Whether the sandbox still runs (a failed dial then says "not found" rather than "port not open"). */
  isRunning: (sandboxId: string) => boolean
}

export class PreviewProxy {
  /** Keep-alive pools per sandbox and port. */
  private agents = new Map<string, Map<number, PortAgent>>()
  /** Upgraded (WebSocket) connections, closed when the daemon stops. */
  private tunnels = new Set<Duplex>()

  constructor(private readonly opts: PreviewProxyOptions) {}

  private agentFor(sandboxId: string, port: number): PortAgent {
    let ports = this.agents.get(sandboxId)
    if (!ports) this.agents.set(sandboxId, (ports = new Map()))
    let agent = ports.get(port)
    if (!agent) {
      // Idle connections close after 4 s: dev servers' own keep-alive is often 5 s (Node's), and the
      // side that closes first must be this one, so a request is rarely sent into a closing socket.
      agent = new PortAgent(this.opts.dialer, sandboxId, port, { keepAlive: true, maxFreeSockets: 8, timeout: 4000 })
      ports.set(port, agent)
    }
    return agent
  }

  /** Drops a gone sandbox's pools. */
  forget(sandboxId: string): void {
    for (const agent of this.agents.get(sandboxId)?.values() ?? []) agent.destroy()
    this.agents.delete(sandboxId)
  }

  /** Closes every pooled and upgraded connection (daemon shutdown). */
  close(): void {
    for (const id of [...this.agents.keys()]) this.forget(id)
    for (const s of this.tunnels) s.destroy()
    this.tunnels.clear()
  }

  /** The 502/504 for a request whose connection to the port failed before any answer. */
  private failure(sandboxId: string, port: number, err: Error): PreviewReply {
    if (!this.opts.isRunning(sandboxId)) return { status: 502, body: { sandboxId, message: 'The sandbox was not found', code: 502 } }
    if (err instanceof TunnelError) {
      if (err.kind === 'closed') return { status: 502, body: { sandboxId, message: 'The sandbox is running but port is not open', port, code: 502 } }
      if (err.kind === 'timeout') return { status: 504, body: { sandboxId, message: err.message, port, code: 504 } }
      return { status: 502, body: { sandboxId, message: err.message, port, code: 502 } }
    }
    return { status: 502, body: { sandboxId, message: `The server on port ${port} closed the connection or sent an invalid reply (${err.message})`, port, code: 502 } }
  }

  /** Streams one HTTP request to the port and its answer back. */
  forward(req: http.IncomingMessage, res: http.ServerResponse, sandbox: PreviewSandbox, port: number): void {
    const ingress = sandbox.ingress ?? PUBLIC_INGRESS
    const headers = upstreamHeaders(req, { port, ingress, isApiKey: this.opts.isApiKey, encrypted: isEncrypted(req), upgrade: false })
    const hasBody = req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0' : req.headers['transfer-encoding'] !== undefined
    const mayRetry = RETRYABLE.has(req.method ?? '') && !hasBody
    const send = (retried: boolean) => {
      const upstream = http.request({ agent: this.agentFor(sandbox.id, port), method: req.method, path: req.url, headers })
      // The pool's 4 s is for idle connections only: a request in progress may be silent for as long
      // as its server likes (a stream with a keepalive every 5 s, a long poll). The agent puts its
      // timeout back when the connection returns to the pool.
      upstream.setTimeout(0)
      let answered = false
      upstream.on('response', (up) => {
        answered = true
        const status = up.statusCode ?? 0
        const out = downstreamHeaders(up)
        if (!out || status < 200 || status > 599) {
          up.destroy()
          return sendJson(res, 502, { sandboxId: sandbox.id, message: `The server on port ${port} sent a reply that cannot be passed on`, port, code: 502 })
        }
        try {
          res.writeHead(status, out)
        } catch {
          up.destroy()
          return sendJson(res, 502, { sandboxId: sandbox.id, message: `The server on port ${port} sent a reply that cannot be passed on`, port, code: 502 })
        }
        // Streamed responses (server-sent events) must not wait for the first body chunk.
        res.flushHeaders()
        pipeline(up, res, () => {})
      })
      // 101 to a request that asked for no upgrade: nothing a client could use.
      upstream.on('upgrade', (_up, socket) => {
        answered = true
        socket.destroy()
        sendJson(res, 502, { sandboxId: sandbox.id, message: `The server on port ${port} switched protocols unasked`, port, code: 502 })
      })
      upstream.on('error', (err) => {
        if (answered) return void res.destroy()
        // A pooled connection the app had closed meanwhile: once more, on a fresh one.
        if (mayRetry && !retried && upstream.reusedSocket && !(err instanceof TunnelError) && !res.destroyed) return send(true)
        const f = this.failure(sandbox.id, port, err)
        sendJson(res, f.status, f.body)
      })
      // A client that goes away aborts the upstream request (the pooled connection is not reused).
      res.on('close', () => {
        if (!res.writableFinished) upstream.destroy()
      })
      // The body flows once a connection is there: a dial that fails (closed port) leaves it unread,
      // so the client hears the 502 and Node discards the rest, instead of a reset connection.
      if (mayRetry) upstream.end()
      else upstream.once('socket', () => pipeline(req, upstream, () => {}))
    }
    send(false)
  }

  /** An Upgrade request (WebSocket or other): the handshake is forwarded, then bytes both ways. */
  upgrade(req: http.IncomingMessage, client: Duplex, head: Buffer, sandbox: PreviewSandbox, port: number): void {
    client.on('error', () => client.destroy())
    const ingress = sandbox.ingress ?? PUBLIC_INGRESS
    const headers = upstreamHeaders(req, { port, ingress, isApiKey: this.opts.isApiKey, encrypted: isEncrypted(req), upgrade: true })
    this.opts.dialer.dial(sandbox.id, port, () => !client.destroyed).then(
      (socket) => {
        if (client.destroyed) return void socket.destroy()
        this.handshake(req, client, head, socket, headers, sandbox.id, port)
      },
      (err: Error) => {
        const f = this.failure(sandbox.id, port, err)
        sendRawJson(client, f.status, f.body)
      },
    )
  }

  private handshake(req: http.IncomingMessage, client: Duplex, head: Buffer, socket: net.Socket, headers: http.OutgoingHttpHeaders, sandboxId: string, port: number): void {
    const fail = (message: string) => {
      socket.destroy()
      sendRawJson(client, 502, { sandboxId, message, port, code: 502 })
    }
    const upstream = http.request({ createConnection: () => socket, method: req.method, path: req.url, headers })
    upstream.on('upgrade', (up, upSocket, upHead) => {
      const out = downstreamHeaders(up)
      const protocol = up.headers.upgrade ?? ''
      if (!out || !validValue('upgrade', protocol)) return fail(`The server on port ${port} sent an invalid header`)
      let text = 'HTTP/1.1 101 Switching Protocols\r\n'
      for (const [name, value] of Object.entries(out)) for (const v of [value].flat()) text += `${name}: ${v}\r\n`
      client.write(`${text}connection: Upgrade\r\nupgrade: ${protocol}\r\n\r\n`)
      if (upHead.length) client.write(upHead)
      if (head.length) upSocket.write(head)
      this.tunnels.add(client)
      const done = () => {
        this.tunnels.delete(client)
        client.destroy()
        upSocket.destroy()
      }
      pipeline(client, upSocket, (err) => err && done())
      pipeline(upSocket, client, (err) => err && done())
      client.on('close', done)
      upSocket.on('close', () => client.end())
    })
    // The app declined the upgrade: its answer, then the connection closes (it cannot be reused
    // for requests, since the client expected to leave HTTP on it).
    upstream.on('response', (up) => {
      const out = downstreamHeaders(up)
      const status = up.statusCode ?? 0
      if (!out || status < 200 || status > 599) return fail(`The server on port ${port} sent a reply that cannot be passed on`)
      let text = `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\n`
      for (const [name, value] of Object.entries(out)) for (const v of [value].flat()) text += `${name}: ${v}\r\n`
      text += 'connection: close\r\n\r\n'
      client.write(text)
      pipeline(up, client, () => socket.destroy())
    })
    upstream.on('error', (err) => {
      if (!client.destroyed && client.writable) fail(`The server on port ${port} closed the connection or sent an invalid reply (${err.message})`)
    })
    client.on('close', () => upstream.destroy())
    upstream.end()
  }
}

function validValue(name: string, value: string): boolean {
  try {
    http.validateHeaderValue(name, value)
    return true
  } catch {
    return false
  }
}

const isEncrypted = (req: http.IncomingMessage) => (req.socket as { encrypted?: boolean }).encrypted === true
