// A client's hold on a sandbox: a lease the server drops 15 s after its last renewal. The keeper
// renews it on an unref'd timer, so a script that forgets close() still exits (and the server
// then releases the sandbox within 20 s); it never depends on a goodbye. A lifeline worker renews
// it when the main thread is blocked.
import { ConnectionError, SandboxNotFoundError, SandlotError } from './errors.js'
import { sandboxRoute, type ApiClient, type HoldJSON } from './http.js'
import { Lifeline } from './lifeline.js'

export class HoldKeeper {
  private hold: HoldJSON
  private timer: NodeJS.Timeout | undefined
  private inFlight: Promise<void> | undefined
  private stopped = false
  private readonly lifeline = new Lifeline()

  constructor(
    private readonly api: ApiClient,
    private readonly sandboxId: string,
    hold: HoldJSON,
    /** Called once when a renewal learns the sandbox is gone, or was paused (which ends every hold). */
    private readonly onGone: (err: SandlotError) => void,
  ) {
    this.hold = hold
    this.watch()
    this.schedule()
  }

  /** Opens a new hold on a running sandbox (a reconnect). */
  static open(api: ApiClient, sandboxId: string, signal?: AbortSignal): Promise<HoldJSON> {
    // Retried: a second hold from a retry whose first attempt did reach the server lapses in 15 s.
    return api.request<HoldJSON>('POST', `${sandboxRoute(sandboxId)}/holds`, { sandboxId, signal, retry: true })
  }

  get holdId(): string {
    return this.hold.id
  }

  private get route(): string {
    return `${sandboxRoute(this.sandboxId)}/holds/${encodeURIComponent(this.hold.id)}`
  }

  /** Tells the lifeline the hold was just renewed (or replaced). */
  private watch(): void {
    const { apiUrl, apiKey } = this.api.config
    this.lifeline.watch(`${apiUrl}${this.route}`, apiKey, this.hold.renewEveryMs, this.hold.ttlMs)
  }

  private schedule(): void {
    if (this.stopped) return
    this.timer = setTimeout(() => {
      this.inFlight = this.renew().finally(() => {
        this.inFlight = undefined
        this.schedule()
      })
    }, this.hold.renewEveryMs)
    this.timer.unref()
  }

  private async renew(): Promise<void> {
    // A renewal that hangs longer than the lease is worthless; give up on it and try again.
    const signal = AbortSignal.timeout(this.hold.ttlMs)
    try {
      this.hold = await this.api.request<HoldJSON>('PUT', this.route, { sandboxId: this.sandboxId, signal })
      if (!this.stopped) this.watch()
    } catch (err) {
      if (this.stopped) return
      if (err instanceof SandboxNotFoundError) return this.gone(err)
      if (err instanceof SandlotError && err.code === 'sandbox_paused') {
        return this.gone(new SandlotError(`Sandbox ${this.sandboxId} was paused (by another client, or at its deadline); Sandbox.reconnect("${this.sandboxId}") resumes it`, 'sandbox_paused', err.status))
      }
      // The hold lapsed (e.g. the process slept, or the server was down) but the sandbox runs: take a new one.
      if (err instanceof SandlotError && err.code === 'hold_not_found') {
        try {
          this.hold = await HoldKeeper.open(this.api, this.sandboxId, signal)
          if (!this.stopped) this.watch()
        } catch (e) {
          if (e instanceof SandboxNotFoundError && !this.stopped) this.gone(e)
        }
        return
      }
      // Anything else (network errors, timeouts, a restarting server): try again quietly at the next tick.
    }
  }

  private gone(err: SandlotError): void {
    this.stop()
    this.onGone(err)
  }

  private stop(): void {
    this.stopped = true
    if (this.timer) clearTimeout(this.timer)
    this.lifeline.end()
  }

  /**
   * Stops renewing and closes the hold on the server. The sandbox is destroyed then if this was its
   * last hold and no keepAlive deadline is ahead. A sandbox already gone is not an error here.
   */
  async release(): Promise<void> {
    this.stop()
    await this.inFlight?.catch(() => {})
    try {
      await this.api.request('DELETE', this.route, { sandboxId: this.sandboxId })
    } catch (err) {
      if (err instanceof SandboxNotFoundError) return
      if (err instanceof ConnectionError) {
        throw new ConnectionError(`${err.message} The hold on sandbox ${this.sandboxId} was not released; the server drops it within 20 s.`, { cause: err })
      }
      throw err
    }
  }

  /** Stops renewing without telling the server (the sandbox was killed). */
  abandon(): void {
    this.stop()
  }
}
