// The data plane: envd's Connect services (Filesystem, Process) and /files, reached through the
// server's own port (over transport.ts) with the sandbox's id and access token in headers.
import { createClient, type Client, type Interceptor, type Transport } from '@connectrpc/connect'
import { createConnectTransport } from '@connectrpc/connect-web'
import { Filesystem, Process } from '@sandlot/envd-proto'
import path from 'node:path'
import { fromConnect, SandlotError, type ErrorContext } from './errors.js'
import { httpFetch } from './transport.js'

/** The port envd listens on inside a sandbox; the server routes by it. */
const ENVD_PORT = '49983'
/** Asks the agent for a keepalive message this often (seconds) on long streams, so idle streams are not cut. */
export const KEEPALIVE_SECONDS = '30'
/** The home of the default user: what `~` means in paths and `cwd`. */
export const HOME = '/home/user'

/** The Linux user a process or file operation runs as in the sandbox. `user` by default; `root` may do anything. */
export type SandboxUser = 'user' | 'root' | (string & {})

/** @internal */
export class EnvdConnection {
  readonly filesystem: Client<typeof Filesystem>
  readonly process: Client<typeof Process>
  readonly transport: Transport

  constructor(
    readonly apiUrl: string,
    readonly sandboxId: string,
    readonly accessToken: string,
  ) {
    const headers: Interceptor = (next) => (req) => {
      for (const [k, v] of Object.entries(this.routingHeaders())) req.header.set(k, v)
      return next(req)
    }
    // Connect over the SDK's one HTTP stack (transport.ts): its proxy settings and TLS apply here too.
    this.transport = createConnectTransport({ baseUrl: apiUrl, useBinaryFormat: true, interceptors: [headers], fetch: httpFetch })
    this.filesystem = createClient(Filesystem, this.transport)
    this.process = createClient(Process, this.transport)
  }

  /** The headers that send a request to this sandbox's agent and authenticate it. */
  routingHeaders(): Record<string, string> {
    return { 'e2b-sandbox-id': this.sandboxId, 'e2b-sandbox-port': ENVD_PORT, 'x-access-token': this.accessToken }
  }
}

/** envd selects the Linux user by the user name in a Basic authorization header (no password). */
export const userHeader = (user: SandboxUser = 'user'): Record<string, string> => ({
  authorization: `Basic ${Buffer.from(`${user}:`).toString('base64')}`,
})

/** Expands `~` to the default user's home. */
export function expandHome(p: string): string {
  if (p === '~') return HOME
  if (p.startsWith('~/')) return path.posix.join(HOME, p.slice(2))
  return p
}

/**
 * What the filesystem, process and terminal parts of a Sandbox share: the connection, the
 * handle's state and its defaults.
 * @internal
 */
export class SandboxContext {
  private readonly closing = new AbortController()
  private failure: SandlotError | undefined

  constructor(
    readonly envd: EnvdConnection,
    /** Default working directory for processes and relative paths (absolute, `~` expanded), if set. */
    readonly cwd: string | undefined,
    /** Environment variables every process gets, under its own. */
    readonly envVars: Record<string, string>,
  ) {}

  get sandboxId(): string {
    return this.envd.sandboxId
  }

  /** Aborted when the handle closes: open streams (process output, watchers, terminals) end then. */
  get closedSignal(): AbortSignal {
    return this.closing.signal
  }

  /** Marks the handle unusable; later calls throw `err`. */
  shutDown(err: SandlotError): void {
    this.failure ??= err
    this.closing.abort(err)
  }

  /** Throws if the handle was closed or its sandbox is gone. */
  assertUsable(): void {
    if (this.failure) throw this.failure
  }

  /** A path as the agent should see it: `~` expanded, relative paths under `cwd` when one is set. */
  resolve(p: string): string {
    const expanded = expandHome(p)
    if (this.cwd && !path.posix.isAbsolute(expanded)) return path.posix.join(this.cwd, expanded)
    return expanded
  }

  errorContext(extra: Partial<ErrorContext> = {}): ErrorContext {
    return { sandboxId: this.sandboxId, apiUrl: this.envd.apiUrl, ...extra }
  }

  /** Maps any failure of a data-plane call to a typed error (the handle's own failure first). */
  error(err: unknown, filePath?: string): SandlotError {
    if (this.failure) return this.failure
    return fromConnect(err, this.errorContext({ path: filePath }))
  }
}
