// The REST control plane (/api/v1, docs/api.md): JSON in and out, failures as typed errors.
import type { ResolvedConfig } from './config.js'
import { ConnectionError, fromHttp, SandlotError, TimeoutError, type ServerErrorBody } from './errors.js'

/** A sandbox as the server describes it. */
export interface SandboxJSON {
  id: string
  template: string
  state: string
  metadata: Record<string, string>
  cpuCount: number
  memoryMB: number
  pids: number
  diskSizeMB: number
  startedAt: string
  endAt: string | null
  holds: number
  envdAccessToken: string
  envdVersion: string
  /** Absent from servers older than network settings. */
  network?: NetworkJSON
  /** Ports are reached at `<port>-<id>.<domain>` (absent from servers before port previews). */
  domain?: string
  /** Present when the sandbox's previews are not public. */
  trafficAccessToken?: string | null
  hold?: HoldJSON
}

/** A sandbox's network settings as the server describes them. */
export interface NetworkJSON {
  allowInternetAccess: boolean | null
  allowOut: string[]
  denyOut: string[]
  /** Absent from servers before port previews. */
  allowPublicTraffic?: boolean
  maskRequestHost?: string | null
}

/** A client's lease on a sandbox. */
export interface HoldJSON {
  id: string
  sandboxId: string
  expiresAt: string
  ttlMs: number
  renewEveryMs: number
}

export interface RequestOptions {
  body?: unknown
  /** Aborts the request (e.g. a create's `timeout`). */
  signal?: AbortSignal
  /** The sandbox the call is about, for SandboxNotFoundError. */
  sandboxId?: string
}

export class ApiClient {
  constructor(readonly config: ResolvedConfig) {}

  async request<T>(method: string, route: string, opts: RequestOptions = {}): Promise<T> {
    const { apiUrl, apiKey } = this.config
    let res: Response
    try {
      res = await fetch(`${apiUrl}${route}`, {
        method,
        headers: { 'x-api-key': apiKey, ...(opts.body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        signal: opts.signal,
      })
    } catch (err) {
      if (opts.signal?.aborted) throw abortError(opts.signal, `${method} ${route}`)
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message
      throw new ConnectionError(`Cannot reach the Sandlot server at ${apiUrl} (${cause}). Is it running? Start it with "npm start" or "sandlot server", or set SANDLOT_API_URL.`, { cause: err })
    }
    const text = await res.text().catch(() => '')
    let json: unknown
    try {
      json = text ? JSON.parse(text) : undefined
    } catch {
      json = undefined
    }
    if (!res.ok) throw fromHttp(res.status, json as ServerErrorBody | undefined, text, { sandboxId: opts.sandboxId, apiUrl })
    return json as T
  }
}

/** The error for an aborted call: a TimeoutError when a timeout aborted it. */
export function abortError(signal: AbortSignal, what: string): Error {
  const reason = signal.reason as unknown
  if (reason instanceof SandlotError) return reason
  if (reason instanceof Error && reason.name === 'TimeoutError') return new TimeoutError(`${what} did not finish in time (the timeout option)`)
  if (reason instanceof Error) return reason
  return new TimeoutError(`${what} was aborted`)
}

export const sandboxRoute = (id: string) => `/api/v1/sandboxes/${encodeURIComponent(id)}`
