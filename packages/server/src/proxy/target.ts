// Which sandbox and port a data-plane request is for (E2B's routing, e2b-protocol.md §2.1 and
// e2b-protocol-next.md §1.4): the E2b-Sandbox-Id / E2b-Sandbox-Port headers, or a Host of the form
// <port>-<id>[-<clientId>].<domain>.
import type http from 'node:http'

export const ENVD_PORT = 49983

export interface SandboxTarget {
  sandboxId: string
  /** 1–65535; ENVD_PORT is the agent (envd), any other a port preview. */
  port: number
  /** How the request named it: by headers, or by its Host. */
  by: 'header' | 'host'
}

const validPort = (n: number) => Number.isInteger(n) && n >= 1 && n <= 65535

/**
 * The target of a request, undefined for the control plane, or `{ error }` for a request that is
 * meant for a sandbox but names no usable port.
 */
export function targetOf(req: http.IncomingMessage): SandboxTarget | { error: string } | undefined {
  const header = req.headers['e2b-sandbox-id']
  if (typeof header === 'string' && header) {
    const raw = req.headers['e2b-sandbox-port']
    if (raw === undefined) return { sandboxId: header.split('-')[0]!, port: ENVD_PORT, by: 'header' }
    const port = typeof raw === 'string' && /^\d{1,5}$/.test(raw.trim()) ? Number(raw) : NaN
    if (!validPort(port)) return { error: `E2b-Sandbox-Port must be a port number from 1 to 65535, got ${JSON.stringify(raw)}` }
    return { sandboxId: header.split('-')[0]!, port, by: 'header' }
  }
  const host = req.headers.host ?? ''
  const m = /^(\d{1,5})-([a-z0-9]+)(?:-[a-z0-9]+)?\./.exec(host)
  if (!m) return undefined
  const port = Number(m[1])
  if (!validPort(port)) return { error: `${m[1]} in the host ${host} is not a port number from 1 to 65535` }
  return { sandboxId: m[2]!, port, by: 'host' }
}
