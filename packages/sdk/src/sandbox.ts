// The Sandbox handle: create, reconnect, list and kill sandboxes; a handle holds its sandbox open
// (a renewed lease) until close(), and gives access to its files, processes and terminals.
import { posix } from 'node:path'
import { resolveConfig, type ConnectionOptions } from './config.js'
import { SandboxConnection } from './connection.js'
import { expandHome, HOME } from './envd.js'
import { InvalidArgumentError, SandboxNotFoundError, SandlotError, TimeoutError } from './errors.js'
import { HoldKeeper } from './hold.js'
import { getLogs, getMetrics, type LogsOptions, type LogsPage, type MetricsOptions, type SandboxMetric } from './history.js'
import { abortError, ApiClient, sandboxRoute, type HoldJSON, type LifecycleJSON, type NetworkJSON, type SandboxJSON } from './http.js'

/** How long creating or reconnecting may take by default (ms). */
const DEFAULT_OPEN_TIMEOUT_MS = 60_000

/** Options of {@link Sandbox.reconnect}: how this handle behaves (the sandbox's own settings were fixed at create). */
export interface OpenOptions extends ConnectionOptions {
  /**
   * Default working directory for processes and terminals, and the base of relative paths. `~` and
   * relative paths are under `/home/user`. Created (as `user`) when the handle opens. Default:
   * `/home/user` (`/root` for processes run as root).
   */
  cwd?: string
  /** Environment variables for every process this handle starts (under each process's own). */
  envVars?: Record<string, string>
  /** Milliseconds that creating or reconnecting may take before it throws a {@link TimeoutError}. Default 60 000. */
  timeout?: number
}

/**
 * What a sandbox may reach on the network, at {@link Sandbox.create} and with
 * {@link Sandbox.updateNetwork}. E2B's rules: an address in `allowOut` is reachable whatever
 * `denyOut` says; anything in neither is reachable unless internet access is off.
 *
 * ```ts
 * // Only PyPI and one address, nothing else:
 * await Sandbox.create({ network: { allowInternetAccess: false, allowOut: ['pypi.org', '*.pythonhosted.org', '1.1.1.1'] } })
 * // Everything but one network:
 * await Sandbox.create({ network: { denyOut: ['203.0.113.0/24'] } })
 * ```
 */
export interface NetworkOptions {
  /** `false`: nothing outside is reachable but what `allowOut` names (E2B's `allowInternetAccess`). Default: the internet is reachable. */
  allowInternetAccess?: boolean
  /**
   * Destinations that are always reachable: IPv4 addresses (`1.1.1.1`), CIDRs (`10.0.0.0/8`) and
   * domains (`example.com`, `*.example.com` for its subdomains, `*` for every name). Domains work for
   * HTTP and HTTPS, and need everything else denied: `denyOut: ['0.0.0.0/0']` or
   * `allowInternetAccess: false`.
   */
  allowOut?: string[]
  /** IPv4 addresses and CIDRs that are not reachable (`0.0.0.0/0`: all but `allowOut`). */
  denyOut?: string[]
  /**
   * Who may reach the sandbox's ports through {@link Sandbox.getHostname}. `true` (default): anyone
   * who reaches the server, without a key (as on E2B). `false`: each request needs the header
   * `e2b-traffic-access-token` with {@link Sandbox.trafficAccessToken}. Set at create only.
   */
  allowPublicTraffic?: boolean
  /** The Host header the sandbox's servers see (`${PORT}` is replaced by the port); the client's goes in X-Forwarded-Host. Default: the client's Host. Set at create only. */
  maskRequestHost?: string
}

/** A sandbox's network settings, as {@link Sandbox.getInfo} and {@link Sandbox.list} describe them. */
export interface NetworkInfo {
  /** As set at create or by the last update; `null` when not given (the internet is reachable unless `denyOut` says otherwise). */
  allowInternetAccess: boolean | null
  /** Always reachable, as given but normalised: an address becomes a `/32` CIDR, a domain lower-case. */
  allowOut: string[]
  /** Not reachable (unless in `allowOut`): IPv4 CIDRs, normalised the same way. */
  denyOut: string[]
  /** Whether its port previews are public (see {@link NetworkOptions.allowPublicTraffic}). */
  allowPublicTraffic: boolean
  /** The Host its port previews are forwarded with, or `null` for the client's. */
  maskRequestHost: string | null
}

/**
 * What a sandbox's deadline does when no handle holds it (and what its last hold lapsing does):
 * `kill` (the default) or `pause`, keeping its memory unless `keepMemory` is false. With
 * `autoResume`, a request to it while paused with its memory (a command, a file, a port preview)
 * resumes it first.
 */
export interface LifecycleOptions {
  /** At its deadline: destroyed (`kill`, the default) or paused (`pause`). */
  onTimeout: 'kill' | 'pause'
  /** A pause at the deadline keeps its memory: processes resume as they were. Default `true`; `false` keeps its files alone. */
  keepMemory?: boolean
  /** A request to the paused sandbox resumes it first (only a pause that kept its memory). Default `false`. */
  autoResume?: boolean
}

/** Options of {@link Sandbox.pause}. */
export interface PauseOptions {
  /**
   * `true` (default): every process is stopped where it is and resumes as it was (same PIDs, open
   * files, servers). `false`: processes end and only its files are kept; a resume boots it again.
   */
  keepMemory?: boolean
}

/** How a paused sandbox is paused ({@link SandboxInfo.paused}). */
export interface PausedInfo {
  /** When it was paused. */
  at: Date
  /** Its memory was kept (see {@link PauseOptions.keepMemory}). */
  keepMemory: boolean
  /** Paused with its memory, which was lost before it resumed (its container was gone, as after a host restart): it resumes from its files. */
  memoryLost: boolean
}

/** A snapshot ({@link Sandbox.snapshot}): a template build made from a sandbox's files. */
export interface SnapshotInfo {
  /** The template to create copies from: `Sandbox.create(snapshot.template)`. */
  template: string
  /** Its tag (`default` unless the name gave one). */
  tag: string
  /** The template build it is. */
  buildId: string
  /** The sandbox it was taken from. */
  sandboxId: string
  /** When it was taken. */
  createdAt: Date
  /** What it holds of the sandbox: its files (not its memory: a copy's processes start afresh). */
  copied: 'files'
}

/** Options of {@link Sandbox.fork}. */
export interface ForkOptions extends OpenOptions {
  /** How many copies (1 to 100). Default 1. */
  count?: number
}

/** Options of {@link Sandbox.create}. */
export interface SandboxOptions extends OpenOptions {
  /** The template to start from. Default `base`. */
  template?: string
  /** Your key-value labels, returned by {@link Sandbox.list} and usable as its filter. */
  metadata?: Record<string, string>
  /** Environment variables of the sandbox itself: every process in it gets them, whichever client starts it. */
  envVars?: Record<string, string>
  /** CPUs (default: the server's setting). */
  cpuCount?: number
  /** Memory limit in MiB (default: the server's setting). */
  memoryMB?: number
  /** Size of the sandbox's own disk in MiB, which bounds what it can write (default: the server's setting). */
  diskSizeMB?: number
  /** What it may reach on the network (default: the internet, no rules; change it later with {@link Sandbox.updateNetwork}) and who may reach its port previews. */
  network?: NetworkOptions
  /** What its deadline does: kill (default) or pause (see {@link LifecycleOptions}); {@link Sandbox.keepAlive} can change it. */
  lifecycle?: LifecycleOptions
}

/** Options of {@link Sandbox.list}. */
export interface ListOptions extends ConnectionOptions {
  /** Only sandboxes whose metadata has all these key-value pairs (matched by the server). */
  metadata?: Record<string, string>
}

/** A sandbox, as {@link Sandbox.list} and {@link Sandbox.getInfo} describe it. */
export interface SandboxInfo {
  /** Its id. */
  id: string
  /** `running`, or `paused` (see {@link Sandbox.pause}). */
  state: 'running' | 'paused'
  /** How it is paused; `null` while it runs. */
  paused: PausedInfo | null
  /** What its deadline does. */
  lifecycle: Required<LifecycleOptions>
  /** The same id, under E2B v0's name. */
  sandboxID: string
  /** The template it started from. */
  template: string
  /** The metadata it was created with. */
  metadata: Record<string, string>
  /** When it started. */
  startedAt: Date
  /** When it will be destroyed if no client holds it then (its keepAlive deadline); `null`: as soon as its last hold closes. */
  endAt: Date | null
  /** How many client handles hold it open. */
  holds: number
  /** CPUs. */
  cpuCount: number
  /** Memory limit in MiB. */
  memoryMB: number
  /** Size of its own disk in MiB. */
  diskSizeMB: number
  /** What it may reach on the network. */
  network: NetworkInfo
}

const networkOf = (n: NetworkJSON | undefined): NetworkInfo => ({
  allowInternetAccess: n?.allowInternetAccess ?? null,
  allowOut: [...(n?.allowOut ?? [])],
  denyOut: [...(n?.denyOut ?? [])],
  allowPublicTraffic: n?.allowPublicTraffic ?? true,
  maskRequestHost: n?.maskRequestHost ?? null,
})

const lifecycleOf = (l: LifecycleJSON | undefined): Required<LifecycleOptions> => ({
  onTimeout: l?.onTimeout ?? 'kill',
  keepMemory: l?.keepMemory ?? true,
  autoResume: l?.autoResume ?? false,
})

export const infoOf = (s: SandboxJSON): SandboxInfo => ({
  id: s.id,
  state: s.state === 'paused' ? 'paused' : 'running',
  paused: s.paused ? { at: new Date(s.paused.at), keepMemory: s.paused.keepMemory, memoryLost: s.paused.memoryLost } : null,
  lifecycle: lifecycleOf(s.lifecycle),
  sandboxID: s.id,
  template: s.template,
  metadata: s.metadata,
  startedAt: new Date(s.startedAt),
  endAt: s.endAt ? new Date(s.endAt) : null,
  holds: s.holds,
  cpuCount: s.cpuCount,
  memoryMB: s.memoryMB,
  diskSizeMB: s.diskSizeMB,
  network: networkOf(s.network),
})

/** The checks the SDK can make itself; the server checks each entry and names the one it refuses. */
export function checkNetwork(network: unknown, atCreate: boolean): NetworkOptions | undefined {
  if (network === undefined) return undefined
  const keys = ['allowInternetAccess', 'allowOut', 'denyOut', ...(atCreate ? ['allowPublicTraffic', 'maskRequestHost'] : [])]
  if (typeof network !== 'object' || network === null || Array.isArray(network)) throw new InvalidArgumentError(`network is an object: { ${keys.map((k) => `${k}?`).join(', ')} }`)
  const n = network as Record<string, unknown>
  for (const key of Object.keys(n)) {
    if (!keys.includes(key)) throw new InvalidArgumentError(`network.${key} is not a network option${atCreate ? '' : ' that can be changed'}: use ${keys.join(', ')}`)
  }
  for (const key of ['allowInternetAccess', 'allowPublicTraffic'] as const) {
    if (n[key] !== undefined && typeof n[key] !== 'boolean') throw new InvalidArgumentError(`network.${key} is true or false`)
  }
  if (n.maskRequestHost !== undefined && typeof n.maskRequestHost !== 'string') throw new InvalidArgumentError('network.maskRequestHost is a string ("host[:port]", ${PORT} allowed)')
  for (const key of ['allowOut', 'denyOut'] as const) {
    const list = n[key]
    if (list !== undefined && (!Array.isArray(list) || list.some((e) => typeof e !== 'string'))) throw new InvalidArgumentError(`network.${key} is an array of strings`)
  }
  return {
    allowInternetAccess: n.allowInternetAccess as boolean | undefined,
    allowOut: n.allowOut as string[] | undefined,
    denyOut: n.denyOut as string[] | undefined,
    ...(atCreate && { allowPublicTraffic: n.allowPublicTraffic as boolean | undefined, maskRequestHost: n.maskRequestHost as string | undefined }),
  }
}

/** The SDK's checks of a lifecycle; the server checks it again. */
export function checkLifecycle(lifecycle: unknown): LifecycleOptions | undefined {
  if (lifecycle === undefined) return undefined
  const l = lifecycle as Record<string, unknown>
  if (typeof l !== 'object' || l === null || (l.onTimeout !== 'kill' && l.onTimeout !== 'pause')) throw new InvalidArgumentError("lifecycle is { onTimeout: 'kill' | 'pause', keepMemory?, autoResume? }")
  for (const key of ['keepMemory', 'autoResume'] as const) if (l[key] !== undefined && typeof l[key] !== 'boolean') throw new InvalidArgumentError(`lifecycle.${key} is true or false`)
  if (l.autoResume && l.keepMemory === false) throw new InvalidArgumentError('lifecycle.autoResume needs keepMemory: a sandbox paused without its memory is resumed only by reconnect')
  return { onTimeout: l.onTimeout, keepMemory: l.keepMemory as boolean | undefined, autoResume: l.autoResume as boolean | undefined }
}

export function checkPauseOptions(opts: unknown): PauseOptions {
  const o = (opts ?? {}) as Record<string, unknown>
  if (typeof o !== 'object' || (o.keepMemory !== undefined && typeof o.keepMemory !== 'boolean')) throw new InvalidArgumentError('pause takes { keepMemory?: boolean }')
  return { keepMemory: o.keepMemory as boolean | undefined }
}

/** Runs `fn` with a signal that aborts after `ms`, turning that abort into a {@link TimeoutError} that says what timed out. */
async function withTimeout<T>(ms: number | undefined, what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const limit = ms ?? DEFAULT_OPEN_TIMEOUT_MS
  if (typeof limit !== 'number' || !(limit > 0)) throw new InvalidArgumentError('timeout is a number of milliseconds greater than 0')
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(new TimeoutError(`${what} took longer than its timeout of ${limit} ms; pass a longer { timeout }`)), limit)
  try {
    return await fn(controller.signal)
  } catch (err) {
    if (controller.signal.aborted) throw abortError(controller.signal, what)
    throw err
  } finally {
    clearTimeout(timer)
  }
}

export function checkStringMap(name: string, map: unknown): void {
  if (map === undefined) return
  if (typeof map !== 'object' || map === null || Object.values(map).some((v) => typeof v !== 'string')) {
    throw new InvalidArgumentError(`${name} is an object of string values`)
  }
}

/**
 * A handle on a sandbox. While it is open it holds the sandbox (renewing a lease in the
 * background), so the sandbox lives at least as long as the handle. {@link close} releases it:
 * the sandbox is destroyed when its last handle closes, unless {@link keepAlive} asked for it to
 * stay. A process that exits without closing releases it too, within 20 s.
 *
 * ```ts
 * import { Sandbox } from 'sandlot'
 *
 * const sandbox = await Sandbox.create({ template: 'base' })
 * await sandbox.filesystem.write('hello.txt', 'Hello World!')
 * await sandbox.keepAlive(2 * 60 * 1000) // lives 2 min after the last handle closes
 * await sandbox.close()
 *
 * const again = await Sandbox.reconnect(sandbox.id) // from any process
 * console.log(await again.filesystem.read('hello.txt'))
 * await again.close()
 * ```
 */
export class Sandbox extends SandboxConnection {
  private readonly keeper: HoldKeeper
  private readonly metadata: Record<string, string>
  private closing: Promise<void> | undefined

  private constructor(
    private readonly api: ApiClient,
    info: SandboxJSON,
    hold: HoldJSON,
    opts: OpenOptions,
  ) {
    super(api.config.apiUrl, info, opts.cwd === undefined ? undefined : posix.resolve(HOME, expandHome(opts.cwd)), opts.envVars)
    this.metadata = { ...info.metadata }
    this.keeper = new HoldKeeper(api, info.id, hold, (err) => this.ctx.shutDown(err))
  }

  /** Whether this handle is open: not closed, and its sandbox not found gone. */
  get isOpen(): boolean {
    try {
      this.ctx.assertUsable()
      return true
    } catch {
      return false
    }
  }

  /** Makes the handle's working directory, or releases the hold if that fails. */
  private async ready(signal: AbortSignal): Promise<this> {
    const cwd = this.ctx.cwd
    if (cwd) {
      try {
        signal.throwIfAborted()
        await this.filesystem.makeDir(cwd)
        signal.throwIfAborted()
      } catch (err) {
        await this.close().catch(() => {})
        throw err
      }
    }
    return this
  }

  /**
   * Creates a sandbox and opens a handle on it (a hold, taken in the same request, so the sandbox
   * is never unheld in between). The template is `opts.template`, or the first argument as E2B
   * takes it: `Sandbox.create('my-template', { ... })`; `base` when neither says.
   */
  static async create(opts?: SandboxOptions): Promise<Sandbox>
  static async create(template: string, opts?: Omit<SandboxOptions, 'template'>): Promise<Sandbox>
  static async create(first: string | SandboxOptions = {}, second: Omit<SandboxOptions, 'template'> = {}): Promise<Sandbox> {
    if (typeof first === 'string' && !first) throw new InvalidArgumentError('the template name is empty')
    const opts: SandboxOptions = typeof first === 'string' ? { ...second, template: first } : first
    if (typeof first !== 'string' && (typeof first !== 'object' || first === null)) throw new InvalidArgumentError('Sandbox.create takes a template name or an options object')
    checkStringMap('metadata', opts.metadata)
    checkStringMap('envVars', opts.envVars)
    const network = checkNetwork(opts.network, true)
    const lifecycle = checkLifecycle(opts.lifecycle)
    const api = new ApiClient(resolveConfig(opts))
    return withTimeout(opts.timeout, 'Creating a sandbox', async (signal) => {
      const body = { template: opts.template, metadata: opts.metadata, envVars: opts.envVars, cpuCount: opts.cpuCount, memoryMB: opts.memoryMB, diskSizeMB: opts.diskSizeMB, network, lifecycle, hold: true }
      const info = await api.request<SandboxJSON>('POST', '/api/v1/sandboxes', { body, signal })
      if (!info.hold) throw new SandlotError('The server did not open a hold on the new sandbox: it does not speak this SDK\'s API version', 'unsupported_server')
      // The envVars went to the sandbox itself; the handle need not add them to each process.
      return new Sandbox(api, info, info.hold, { ...opts, envVars: undefined }).ready(signal)
    })
  }

  /**
   * Opens a handle on a sandbox, from any process or machine that reaches the server; a paused
   * sandbox is resumed first. The new handle holds the sandbox like the one that created it.
   * Throws {@link SandboxNotFoundError} if the sandbox is gone.
   */
  static async reconnect(sandboxId: string, opts: OpenOptions = {}): Promise<Sandbox> {
    if (typeof sandboxId !== 'string' || !sandboxId) throw new InvalidArgumentError('reconnect needs the id of a sandbox (sandbox.id)')
    checkStringMap('envVars', opts.envVars)
    const api = new ApiClient(resolveConfig(opts))
    return withTimeout(opts.timeout, `Reconnecting to sandbox ${sandboxId}`, async (signal) => {
      // Hold first, so the sandbox cannot go away between the two calls.
      const hold = await HoldKeeper.open(api, sandboxId, signal)
      let info: SandboxJSON
      try {
        info = await api.request<SandboxJSON>('GET', sandboxRoute(sandboxId), { sandboxId, signal, retry: true })
      } catch (err) {
        await api.request('DELETE', `${sandboxRoute(sandboxId)}/holds/${encodeURIComponent(hold.id)}`, { sandboxId }).catch(() => {})
        throw err
      }
      return new Sandbox(api, info, hold, opts).ready(signal)
    })
  }

  /** Lists the sandboxes, running and paused (all, or those whose metadata matches). */
  static async list(opts: ListOptions = {}): Promise<SandboxInfo[]> {
    checkStringMap('metadata', opts.metadata)
    const api = new ApiClient(resolveConfig(opts))
    const filter = opts.metadata && Object.keys(opts.metadata).length ? `?metadata=${encodeURIComponent(new URLSearchParams(opts.metadata).toString())}` : ''
    const list = await api.request<SandboxJSON[]>('GET', `/api/v1/sandboxes${filter}`, { retry: true })
    return list.map(infoOf)
  }

  /** Destroys a sandbox now, whoever holds it. Throws {@link SandboxNotFoundError} if it does not exist. */
  static async kill(sandboxId: string, opts: ConnectionOptions = {}): Promise<void> {
    if (typeof sandboxId !== 'string' || !sandboxId) throw new InvalidArgumentError('kill needs the id of a sandbox')
    const api = new ApiClient(resolveConfig(opts))
    await api.request('DELETE', sandboxRoute(sandboxId), { sandboxId })
  }

  /**
   * Pauses a sandbox, whoever holds it (their handles close: a paused sandbox has no holds). It is
   * kept until {@link reconnect} resumes it, it is killed, or the server's retention (30 days by
   * default) ends. Throws a {@link SandlotError} with code `already_paused` if it is paused.
   */
  static async pause(sandboxId: string, opts: PauseOptions & ConnectionOptions = {}): Promise<void> {
    if (typeof sandboxId !== 'string' || !sandboxId) throw new InvalidArgumentError('pause needs the id of a sandbox')
    const { keepMemory } = checkPauseOptions(opts)
    const api = new ApiClient(resolveConfig(opts))
    await api.request('POST', `${sandboxRoute(sandboxId)}/pause`, { body: { keepMemory }, sandboxId })
  }

  /**
   * Pauses this sandbox (see {@link PauseOptions}) and closes this handle; `Sandbox.reconnect(id)`
   * resumes it, from any process.
   */
  async pause(opts: PauseOptions = {}): Promise<void> {
    const { keepMemory } = checkPauseOptions(opts)
    this.ctx.assertUsable()
    // The server ends every hold of a paused sandbox: this one stops renewing first.
    this.keeper.abandon()
    this.ctx.shutDown(new SandlotError(`Sandbox ${this.id} was paused by this handle; Sandbox.reconnect("${this.id}") resumes it`, 'sandbox_paused'))
    this.closing ??= Promise.resolve()
    await this.api.request('POST', `${sandboxRoute(this.id)}/pause`, { body: { keepMemory }, sandboxId: this.id })
  }

  /**
   * Takes a snapshot of the sandbox's files as they are now (it is frozen for the copy, then runs
   * on): a template build, named `name` (a new build of that template when it exists) or of a
   * template of its own. `Sandbox.create(snapshot.template)` boots copies of it, each independent.
   * Memory is not captured: a copy's processes start afresh (its template's start command runs).
   */
  async snapshot(opts: { name?: string } = {}): Promise<SnapshotInfo> {
    if (opts.name !== undefined && (typeof opts.name !== 'string' || !opts.name)) throw new InvalidArgumentError('snapshot name is a non-empty string')
    this.ctx.assertUsable()
    const s = await this.api.request<Omit<SnapshotInfo, 'createdAt'> & { createdAt: string }>('POST', `${sandboxRoute(this.id)}/snapshots`, { body: { name: opts.name }, sandboxId: this.id })
    return { ...s, createdAt: new Date(s.createdAt) }
  }

  /**
   * New sandboxes from this one's files as they are now, with its env vars, metadata, network rules
   * and limits; this one runs on. Each copy is returned as an open handle (held, like one from
   * {@link create}), or as the error that kept it from being made.
   */
  async fork(opts: ForkOptions = {}): Promise<(Sandbox | SandlotError)[]> {
    const count = opts.count ?? 1
    if (!Number.isInteger(count) || count < 1 || count > 100) throw new InvalidArgumentError('fork count is a whole number from 1 to 100')
    checkStringMap('envVars', opts.envVars)
    this.ctx.assertUsable()
    const api = new ApiClient(resolveConfig({ ...this.api.config, ...opts }))
    type Result = { sandbox?: SandboxJSON; hold?: HoldJSON; error?: { status: number; error_code: string; message: string } }
    return withTimeout(opts.timeout, `Forking sandbox ${this.id}`, async (signal) => {
      const results = await api.request<Result[]>('POST', `${sandboxRoute(this.id)}/fork`, { body: { count, hold: true }, sandboxId: this.id, signal })
      return Promise.all(
        results.map((r) =>
          r.sandbox && r.hold
            ? new Sandbox(api, r.sandbox, r.hold, opts).ready(signal)
            : new SandlotError(r.error?.message ?? 'the fork failed', r.error?.error_code ?? 'fork_failed', r.error?.status),
        ),
      )
    })
  }

  /** The metadata the sandbox was created with. */
  getMetadata(): Record<string, string> {
    return { ...this.metadata }
  }

  /** The sandbox as the server sees it now (its deadline, how many handles hold it, …). */
  async getInfo(): Promise<SandboxInfo> {
    this.ctx.assertUsable()
    return infoOf(await this.api.request<SandboxJSON>('GET', sandboxRoute(this.id), { sandboxId: this.id, retry: true }))
  }

  /**
   * Replaces the sandbox's network settings, in force when this resolves. Whatever `network` leaves
   * out is cleared: `updateNetwork({})` lifts every rule. Throws an {@link InvalidArgumentError}
   * that names the entry the server refused (e.g. `invalid allowed address …`).
   */
  async updateNetwork(network: Omit<NetworkOptions, 'allowPublicTraffic' | 'maskRequestHost'>): Promise<void> {
    const body = checkNetwork(network, false) ?? {}
    this.ctx.assertUsable()
    await this.api.request('PUT', `${sandboxRoute(this.id)}/network`, { body, sandboxId: this.id, retry: true })
  }

  /**
   * The sandbox's CPU, memory and disk over time: samples the server takes every 5 s (its
   * `SANDLOT_METRICS_INTERVAL_MS`), between `start` and `end` (default: all kept), oldest first.
   * Long ranges come in buckets, as E2B's.
   */
  async getMetrics(opts: MetricsOptions = {}): Promise<SandboxMetric[]> {
    return getMetrics(this.api, this.id, opts)
  }

  /**
   * The sandbox's log: its lifecycle events, its template's start command output and errors of
   * its agent, oldest first, from the entry after `opts.after`. Read on with `after: page.next`;
   * `wait` makes a read with nothing new wait for an entry (to follow it).
   */
  async getLogs(opts: LogsOptions = {}): Promise<LogsPage> {
    return getLogs(this.api, this.id, opts)
  }

  /**
   * Keeps the sandbox alive `ms` milliseconds from now even when no handle holds it (after
   * {@link close}, or if this process dies), so that it can be reconnected to later. A new call
   * replaces the deadline; `0` clears it. The server limits `ms` (1 hour by default) and
   * refuses more with an {@link InvalidArgumentError} that names its limit. With `{ onTimeout:
   * 'pause' }` the deadline pauses the sandbox instead of destroying it ({@link LifecycleOptions}).
   */
  async keepAlive(ms: number, lifecycle?: LifecycleOptions): Promise<void> {
    if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < 0) {
      throw new InvalidArgumentError(`keepAlive takes a whole number of milliseconds, 0 or more; got ${String(ms)}`)
    }
    const checked = checkLifecycle(lifecycle)
    this.ctx.assertUsable()
    await this.api.request('POST', `${sandboxRoute(this.id)}/keep-alive`, { body: { ms, lifecycle: checked }, sandboxId: this.id, retry: true })
  }

  /**
   * Closes the handle: stops holding the sandbox and ends this handle's open streams (process
   * output, watchers, terminals; the processes themselves go on). The sandbox is destroyed now if
   * this was its last handle and no {@link keepAlive} deadline is ahead. Calling it again does
   * nothing.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.ctx.shutDown(new SandlotError(`This handle on sandbox ${this.id} is closed; open a new one with Sandbox.reconnect("${this.id}")`, 'handle_closed'))
      await this.keeper.release()
    })()
    return this.closing
  }

  /** `await using sandbox = await Sandbox.create()` closes the handle when the block ends, as {@link close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  /** Destroys the sandbox now, whoever else holds it; this handle is closed. */
  async kill(): Promise<void> {
    this.keeper.abandon()
    this.ctx.shutDown(new SandboxNotFoundError(this.id, `Sandbox ${this.id} was killed by this handle.`))
    this.closing ??= Promise.resolve()
    try {
      await Sandbox.kill(this.id, this.api.config)
    } catch (err) {
      if (!(err instanceof SandboxNotFoundError)) throw err
    }
  }
}
