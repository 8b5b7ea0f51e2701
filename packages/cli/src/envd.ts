// A Connect client for a sandbox's agent, reached through the server's port (E2b-Sandbox-Id header).
import { createClient, type Client, type Interceptor } from '@connectrpc/connect'
import { createConnectTransport } from '@connectrpc/connect-node'
import { Process } from '@sandlot/envd-proto'
import type { ClientConfig } from './api.js'

export function processClient(c: ClientConfig, sandboxId: string): Client<typeof Process> {
  const headers: Interceptor = (next) => (req) => {
    req.header.set('e2b-sandbox-id', sandboxId)
    req.header.set('e2b-sandbox-port', '49983')
    req.header.set('x-api-key', c.apiKey)
    return next(req)
  }
  const transport = createConnectTransport({ baseUrl: c.apiUrl, httpVersion: '1.1', interceptors: [headers] })
  return createClient(Process, transport)
}
