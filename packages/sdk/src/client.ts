// The SDK's lower layer: the REST control plane call by call, and a sandbox's data plane without a
// hold. A Sandbox handle holds its sandbox while it is open; a SandlotClient holds nothing, so what
// it creates lives by its keepAlive deadline alone (as with the CLI, which exits after each command).
import type { Readable } from 'node:stream'
import { resolveConfig, type ConnectionOptions } from './config.js'
import { SandboxConnection } from './connection.js'
import { InvalidArgumentError, SandlotError } from './errors.js'
import { getLogs, getMetrics, type LogsOptions, type LogsPage, type MetricsOptions, type SandboxMetric } from './history.js'
import { ApiClient, sandboxRoute, type SandboxJSON } from './http.js'
import { checkLifecycle, checkNetwork, checkPauseOptions, checkStringMap, infoOf, type LifecycleOptions, type NetworkOptions, type PauseOptions, type SandboxInfo, type SandboxOptions, type SnapshotInfo } from './sandbox.js'

/** Options of {@link SandlotClient.createSandbox}: the sandbox's settings as {@link Sandbox.create} takes them, and how long it lives. */
export interface CreateSandboxOptions extends Pick<SandboxOptions, 'template' | 'metadata' | 'envVars' | 'cpuCount' | 'memoryMB' | 'diskSizeMB' | 'network' | 'lifecycle'> {
  /** Milliseconds the sandbox lives from now (nothing holds it). Default: the server's keepAlive limit (1 h unless configured). */
  keepAlive?: number
}

/** A body sent as it is read ({@link ApiRequestOptions.stream}). */
export interface StreamBody {
  /** The bytes. */
  body: Readable
  /** Their `content-type`. */
  contentType: string
  /** Their length, when known (else the body goes chunked). */
  length?: number
}

/** Options of {@link SandlotClient.request}. */
export interface ApiRequestOptions {
  /** A JSON body. */
  body?: unknown
  /** A streamed body instead of JSON (never retried: a stream is read once). */
  stream?: StreamBody
  /** The call is safe to repeat: retried across a server restart for up to `retryTimeout` (reads, replacements). */
  retry?: boolean
  /** Aborts the call. */
  signal?: AbortSignal
}

/**
 * A client of a Sandlot server that holds nothing open: the REST API call by call, with retries
 * across a server restart for the calls that are safe to repeat. {@link Sandbox} is the handle most
 * programs want; this is the layer below it, for tools such as the CLI.
 *
 * ```ts
 * const client = new SandlotClient()
 * const info = await client.createSandbox({ keepAlive: 10 * 60_000 })
 * const sandbox = await client.connect(info.id)
 * const { exitCode } = await sandbox.exec(['ls', '-l'], { onStdout: (b) => process.stdout.write(b) })
 * ```
 */
export class SandlotClient {
  private readonly api: ApiClient

  constructor(opts: ConnectionOptions = {}) {
    this.api = new ApiClient(resolveConfig(opts))
  }

  /** The server's URL. */
  get apiUrl(): string {
    return this.api.config.apiUrl
  }

  /**
   * A call of Sandlot's REST API (docs/api.md) for what has no method here (e.g. templates): the
   * answer's JSON, or a typed error ({@link SandlotError} and subclasses).
   */
  request<T = unknown>(method: string, route: string, opts: ApiRequestOptions = {}): Promise<T> {
    return this.api.request<T>(method, route, opts)
  }

  /** Creates a sandbox without holding it: it lives `keepAlive` ms (or the server's limit). Never retried. */
  async createSandbox(opts: CreateSandboxOptions = {}): Promise<SandboxInfo> {
    checkStringMap('metadata', opts.metadata)
    checkStringMap('envVars', opts.envVars)
    if (opts.keepAlive !== undefined && !(Number.isInteger(opts.keepAlive) && opts.keepAlive >= 0)) throw new InvalidArgumentError('keepAlive is a whole number of milliseconds')
    const { keepAlive, ...rest } = opts
    const body = { ...rest, network: checkNetwork(opts.network, true), lifecycle: checkLifecycle(opts.lifecycle), keepAliveMs: keepAlive }
    return infoOf(await this.api.request<SandboxJSON>('POST', '/api/v1/sandboxes', { body }))
  }

  /** A sandbox as the server describes it. Throws {@link SandboxNotFoundError} if it is gone. */
  async getSandbox(id: string): Promise<SandboxInfo> {
    return infoOf(await this.api.request<SandboxJSON>('GET', sandboxRoute(id), { sandboxId: id, retry: true }))
  }

  /** The sandboxes, running and paused (those whose metadata has all of `metadata`'s pairs, if given). */
  async listSandboxes(opts: { metadata?: Record<string, string> } = {}): Promise<SandboxInfo[]> {
    checkStringMap('metadata', opts.metadata)
    const filter = opts.metadata && Object.keys(opts.metadata).length ? `?metadata=${encodeURIComponent(new URLSearchParams(opts.metadata).toString())}` : ''
    return (await this.api.request<SandboxJSON[]>('GET', `/api/v1/sandboxes${filter}`, { retry: true })).map(infoOf)
  }

  /** Keeps a sandbox alive `ms` from now (0 clears the deadline), and sets what the deadline does if given; resolves with its new state. */
  async keepAlive(id: string, ms: number, lifecycle?: LifecycleOptions): Promise<SandboxInfo> {
    const body = { ms, lifecycle: checkLifecycle(lifecycle) }
    return infoOf(await this.api.request<SandboxJSON>('POST', `${sandboxRoute(id)}/keep-alive`, { body, sandboxId: id, retry: true }))
  }

  /** Pauses a running sandbox (see {@link PauseOptions}); resolves with its new state. */
  async pauseSandbox(id: string, opts: PauseOptions = {}): Promise<SandboxInfo> {
    const body = checkPauseOptions(opts)
    return infoOf(await this.api.request<SandboxJSON>('POST', `${sandboxRoute(id)}/pause`, { body, sandboxId: id }))
  }

  /** Resumes a paused sandbox (a running one is left as it is); it then lives `keepAlive` ms (default: the server's limit). */
  async resumeSandbox(id: string, opts: { keepAlive?: number } = {}): Promise<SandboxInfo> {
    if (opts.keepAlive !== undefined && !(Number.isInteger(opts.keepAlive) && opts.keepAlive >= 0)) throw new InvalidArgumentError('keepAlive is a whole number of milliseconds')
    return infoOf(await this.api.request<SandboxJSON>('POST', `${sandboxRoute(id)}/resume`, { body: { keepAliveMs: opts.keepAlive }, sandboxId: id, retry: true }))
  }

  /** Replaces a sandbox's network rules (what `network` leaves out is cleared); resolves with its new state. */
  async updateNetwork(id: string, network: Omit<NetworkOptions, 'allowPublicTraffic' | 'maskRequestHost'>): Promise<SandboxInfo> {
    const body = checkNetwork(network, false) ?? {}
    return infoOf(await this.api.request<SandboxJSON>('PUT', `${sandboxRoute(id)}/network`, { body, sandboxId: id, retry: true }))
  }

  /** A snapshot of a sandbox's files as a template build (see {@link Sandbox.snapshot}). */
  async snapshotSandbox(id: string, opts: { name?: string } = {}): Promise<SnapshotInfo> {
    const s = await this.api.request<Omit<SnapshotInfo, 'createdAt'> & { createdAt: string }>('POST', `${sandboxRoute(id)}/snapshots`, { body: { name: opts.name }, sandboxId: id })
    return { ...s, createdAt: new Date(s.createdAt) }
  }

  /** Copies of a running sandbox (see {@link Sandbox.fork}), not held: each lives `keepAlive` ms (default: the server's limit). */
  async forkSandbox(id: string, opts: { count?: number; keepAlive?: number } = {}): Promise<(SandboxInfo | SandlotError)[]> {
    if (opts.keepAlive !== undefined && !(Number.isInteger(opts.keepAlive) && opts.keepAlive >= 0)) throw new InvalidArgumentError('keepAlive is a whole number of milliseconds')
    type Result = { sandbox?: SandboxJSON; error?: { status: number; error_code: string; message: string } }
    const results = await this.api.request<Result[]>('POST', `${sandboxRoute(id)}/fork`, { body: { count: opts.count, keepAliveMs: opts.keepAlive }, sandboxId: id })
    return results.map((r) => (r.sandbox ? infoOf(r.sandbox) : new SandlotError(r.error?.message ?? 'the fork failed', r.error?.error_code ?? 'fork_failed', r.error?.status)))
  }

  /** A sandbox's CPU, memory and disk samples (as {@link Sandbox.getMetrics}); also of one that ended, while kept. */
  getMetrics(id: string, opts: MetricsOptions = {}): Promise<SandboxMetric[]> {
    return getMetrics(this.api, id, opts)
  }

  /** A sandbox's log (as {@link Sandbox.getLogs}); also of one that ended, while kept. */
  getLogs(id: string, opts: LogsOptions = {}): Promise<LogsPage> {
    return getLogs(this.api, id, opts)
  }

  /** Destroys a sandbox now. Throws {@link SandboxNotFoundError} if it does not exist. */
  async killSandbox(id: string): Promise<void> {
    await this.api.request('DELETE', sandboxRoute(id), { sandboxId: id })
  }

  /** The data plane of a running sandbox (files, processes), without holding it. */
  async connect(id: string): Promise<SandboxConnection> {
    if (typeof id !== 'string' || !id) throw new InvalidArgumentError('connect needs the id of a sandbox')
    const json = await this.api.request<SandboxJSON>('GET', sandboxRoute(id), { sandboxId: id, retry: true })
    return new SandboxConnection(this.api.config.apiUrl, json)
  }
}
