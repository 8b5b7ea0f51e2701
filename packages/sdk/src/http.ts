// The REST control plane (/api/v1, docs/api.md): JSON in and out, failures as typed errors.
import type { ResolvedConfig } from './config.js'
import type { Dispatcher } from 'undici'
import type { StreamBody } from './client.js'
import { ConnectionError, fromHttp, SandlotError, TimeoutError, type ServerErrorBody } from './errors.js'
import { httpRequest, isServerGone, networkErrorCode } from './transport.js'

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
  /** How it is paused, while it is (absent from servers before pause). */
  paused?: { at: string; keepMemory: boolean; memoryLost: boolean } | null
  /** What its deadline does (absent from servers before pause). */
  lifecycle?: LifecycleJSON
}

/** What a sandbox's deadline does, and whether a request wakes it from a pause. */
export interface LifecycleJSON {
  onTimeout: 'kill' | 'pause'
  keepMemory: boolean
  autoResume: boolean
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
  /**
   * The call is safe to repeat: while the server cannot be reached or answers 502/503, it is
   * retried with backoff for up to the config's `retryTimeout`. Never set for create or exec.
   */
  retry?: boolean
  /** A streamed body instead of JSON (never retried: a stream is read once). */
  stream?: StreamBody
}

/** A failure worth another try of a call that is safe to repeat (the server restarting). */
class Retriable extends Error {
  constructor(readonly failure: SandlotError) {
    super(failure.message)
  }
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms)
    signal?.addEventListener('abort', () => (clearTimeout(timer), reject(signal.reason)), { once: true })
  })

/** The server's JSON, or undefined when the body is not JSON. */
function parseJson(text: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: text ? JSON.parse(text) : undefined }
  } catch {
    return { ok: false }
  }
}

const snippet = (text: string) => JSON.stringify(text.replace(/\s+/g, ' ').trim().slice(0, 80))

function contentHeaders(opts: RequestOptions): Record<string, string> {
  if (opts.stream) return { 'content-type': opts.stream.contentType, ...(opts.stream.length !== undefined && { 'content-length': String(opts.stream.length) }) }
  return opts.body === undefined ? {} : { 'content-type': 'application/json' }
}

export class ApiClient {
  constructor(readonly config: ResolvedConfig) {}

  /** A call of the REST API: JSON in and out, failures as typed errors; retried when `opts.retry` says it may be. */
  async request<T>(method: string, route: string, opts: RequestOptions = {}): Promise<T> {
    const deadline = Date.now() + (opts.retry && !opts.stream ? this.config.retryTimeout : 0)
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.once<T>(method, route, opts)
      } catch (err) {
        if (!(err instanceof Retriable)) throw err
        // Backoff: 100 ms doubling to 1 s, jittered; cut short at the deadline, where the last try
        // is made (giving up a whole backoff early left up to a second of retryTimeout unused).
        const left = deadline - Date.now()
        if (left <= 0) throw err.failure
        const wait = Math.min(left, Math.min(1000, 100 * 2 ** attempt) * (0.5 + Math.random() / 2))
        await sleep(wait, opts.signal).catch(() => {
          throw abortError(opts.signal!, `${method} ${route}`)
        })
      }
    }
  }

  private async once<T>(method: string, route: string, opts: RequestOptions): Promise<T> {
    const { apiUrl, apiKey } = this.config
    let status: number
    let text: string
    let type: string
    try {
      const res = await httpRequest(`${apiUrl}${route}`, {
        method: method as Dispatcher.HttpMethod,
        headers: { 'x-api-key': apiKey, ...contentHeaders(opts) },
        body: opts.stream ? opts.stream.body : opts.body === undefined ? undefined : JSON.stringify(opts.body),
        signal: opts.signal,
      })
      status = res.statusCode
      type = String(res.headers['content-type'] ?? '')
      text = await res.body.text()
    } catch (err) {
      if (opts.signal?.aborted) throw abortError(opts.signal, `${method} ${route}`)
      const code = networkErrorCode(err)
      const failure = new ConnectionError(
        `Cannot reach the Sandlot server at ${apiUrl} (${code ?? (err as Error).message}). Is it running? Start it with "sandlotd" (or "npm start" in a checkout), or set SANDLOT_API_URL.`,
        { cause: err },
      )
      throw opts.retry && isServerGone(code) ? new Retriable(failure) : failure
    }
    const json = parseJson(text)
    const body = json.ok ? (json.value as ServerErrorBody | undefined) : undefined
    const sandlotJson = json.ok && (status < 300 || (typeof body === 'object' && body !== null && 'message' in body))
    if (!sandlotJson) {
      // Not Sandlot's API: another HTTP server on that port, or a proxy in front saying the server is down.
      const down = status === 502 || status === 503 || status === 504
      const failure = new SandlotError(
        `The server at ${apiUrl} answered ${method} ${route} with HTTP ${status}${type ? ` (${type.split(';')[0]})` : ''} and ${text ? `a body that is not Sandlot's JSON: ${snippet(text)}` : 'no body'}. ` +
          (down ? 'The Sandlot server behind it may be down or restarting.' : 'Is SANDLOT_API_URL the address of a Sandlot server?'),
        'unexpected_response',
        status,
      )
      throw opts.retry && (status === 502 || status === 503) ? new Retriable(failure) : failure
    }
    if (status >= 300) {
      const failure = fromHttp(status, body, text, { sandboxId: opts.sandboxId, apiUrl })
      throw opts.retry && status === 503 ? new Retriable(failure) : failure
    }
    return json.value as T
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
