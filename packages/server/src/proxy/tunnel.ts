// One raw connection to a port inside a sandbox, through its agent: `GET /sandlot/tunnel?port=P`
// with `Upgrade: sandlot-tunnel` on the agent's socket (packages/agent/src/tunnel.ts). After the
// 101 the socket carries the bytes of that port's server and nothing else.
//
// The agent is untrusted (root in the sandbox may replace it): its answer is parsed by Node's own
// HTTP parser (garbage is an error, not a crash), read with a size cap, and bounded in time.
import http from 'node:http'
import type net from 'node:net'

export const TUNNEL_PATH = '/sandlot/tunnel'
export const TUNNEL_PROTOCOL = 'sandlot-tunnel'

/** What went wrong, so the caller can tell a closed port (retry, then E2B's 502) from a broken agent. */
export type TunnelFailure = 'closed' | 'agent' | 'timeout'

export class TunnelError extends Error {
  constructor(
    readonly kind: TunnelFailure,
    message: string,
  ) {
    super(message)
  }
}

/** The most of a refusal's body that is read (for its message); the rest is dropped. */
const MAX_REFUSAL_BYTES = 4096

export interface TunnelRequest {
  socketPath: string
  port: number
  /** The sandbox's access token: the agent serves tunnels to its token holder only. */
  token: string
  /** The agent must answer (101 or a refusal) within this time. */
  timeoutMs: number
}

/** Opens a tunnel; resolves with the raw socket after the agent's 101, rejects with a TunnelError. */
export function openTunnel({ socketPath, port, token, timeoutMs }: TunnelRequest): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    let settled = false
    const settle = (err: TunnelError | undefined, socket?: net.Socket) => {
      if (settled) return void socket?.destroy()
      settled = true
      clearTimeout(timer)
      if (err) {
        req.destroy()
        reject(err)
      } else resolve(socket!)
    }
    const req = http.request({
      socketPath,
      // A tunnel is one connection for one upstream connection: never pooled here (the caller pools).
      agent: false,
      method: 'GET',
      path: `${TUNNEL_PATH}?port=${port}`,
      headers: { host: 'sandbox', connection: 'Upgrade', upgrade: TUNNEL_PROTOCOL, 'x-access-token': token },
    })
    // Covers the connect and the whole answer, however slowly the agent trickles it.
    const timer = setTimeout(() => settle(new TunnelError('timeout', `the sandbox's agent did not answer within ${timeoutMs / 1000} s`)), timeoutMs)
    req.on('upgrade', (res, socket, head) => {
      if (res.headers.upgrade?.toLowerCase() !== TUNNEL_PROTOCOL) {
        socket.destroy()
        return settle(new TunnelError('agent', `the sandbox's agent switched to an unexpected protocol`))
      }
      // Bytes the port's server sent right after the 101 (a server-first protocol) come first.
      if (head.length) socket.unshift(head)
      socket.setTimeout(0)
      settle(undefined, socket)
    })
    req.on('response', (res) => {
      // A refusal: 502 is "nothing listens there"; anything else is an agent that cannot serve tunnels.
      let body = ''
      res.on('data', (chunk: Buffer) => {
        if (body.length < MAX_REFUSAL_BYTES) body += chunk.toString('utf8', 0, MAX_REFUSAL_BYTES - body.length)
        else res.destroy()
      })
      const finish = () => {
        let message = `the sandbox's agent refused the tunnel (${res.statusCode})`
        try {
          const parsed = JSON.parse(body) as { message?: unknown }
          if (typeof parsed.message === 'string') message = `${message}: ${parsed.message.slice(0, 200)}`
        } catch {
          // not JSON: the status says enough
        }
        settle(new TunnelError(res.statusCode === 502 ? 'closed' : 'agent', message))
      }
      res.on('end', finish)
      res.on('close', finish)
      res.on('error', finish)
    })
    req.on('error', (err) => settle(new TunnelError('agent', `cannot reach the sandbox's agent: ${err.message}`)))
    req.end()
  })
}
