// The SDK's one HTTP stack: every call (the REST control plane, envd's Connect services, /files
// transfers) goes through undici with one dispatcher per process, an EnvHttpProxyAgent. So
// HTTP_PROXY / HTTPS_PROXY / NO_PROXY apply to all of them alike, and TLS everywhere is Node's own
// (undici connects with node:tls and no `ca` of its own, so Node's roots plus NODE_EXTRA_CA_CERTS).
import { EnvHttpProxyAgent, fetch as undiciFetch, request as undiciRequest, type Dispatcher } from 'undici'

let shared: Dispatcher | undefined

/** The process's dispatcher, made at first use (the proxy variables are read then). */
export function dispatcher(): Dispatcher {
  shared ??= new EnvHttpProxyAgent()
  return shared
}

/** `fetch` on the shared dispatcher, for the Connect transport of the data plane. */
export const httpFetch = ((input: string | URL | Request, init?: RequestInit) =>
  undiciFetch(input as Parameters<typeof undiciFetch>[0], { ...(init as Parameters<typeof undiciFetch>[1]), dispatcher: dispatcher() })) as unknown as typeof globalThis.fetch

export type HttpResponse = Dispatcher.ResponseData

/** One request on the shared dispatcher; the body of the answer streams (with backpressure). */
export function httpRequest(url: string | URL, opts: { method: Dispatcher.HttpMethod; headers?: Record<string, string>; body?: Dispatcher.DispatchOptions['body']; signal?: AbortSignal }): Promise<HttpResponse> {
  return undiciRequest(url, { ...opts, dispatcher: dispatcher() })
}

/**
 * The system error code of a failed connection (ECONNREFUSED, ECONNRESET, …), looked for along
 * the error's causes (fetch and Connect wrap it), or undefined when it failed otherwise.
 */
export function networkErrorCode(err: unknown): string | undefined {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 6; e = e.cause as typeof e, depth++) {
    if (typeof e.code === 'string' && /^(E[A-Z_]+|UND_ERR_[A-Z_]+)$/.test(e.code)) return e.code
  }
  return undefined
}

/** Codes that mean the request never got an answer because the server was down or went away. */
export const isServerGone = (code: string | undefined) =>
  !!code && /^(ECONNREFUSED|ECONNRESET|EPIPE|ECONNABORTED|UND_ERR_SOCKET|UND_ERR_CLOSED)$/.test(code)
