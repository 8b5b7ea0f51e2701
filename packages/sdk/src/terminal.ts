// sandbox.terminal: interactive terminals (a PTY) through envd's Process service.
import { Signal, type ProcessEvent_EndEvent, type StartResponse } from '@sandlot/envd-proto'
import { randomUUID } from 'node:crypto'
import { KEEPALIVE_SECONDS, userHeader, type SandboxContext, type SandboxUser } from './envd.js'
import { InvalidArgumentError, NotFoundError, SandlotError } from './errors.js'
import { callSafely, exitCodeOf } from './process.js'

/** A terminal's size in character cells. */
export interface TerminalSize {
  /** Columns (1 to 10 000). */
  cols: number
  /** Rows (1 to 10 000). */
  rows: number
}

/** Options of {@link TerminalManager.start}. */
export interface TerminalOptions {
  /** The initial size. */
  size: TerminalSize
  /** Called with the terminal's output as it comes (UTF-8 text, escape sequences included). */
  onData: (data: string) => void
  /** Called with the exit code when the terminal's process ends. */
  onExit?: (exitCode: number) => void
  /** A command to run in the terminal (by `/bin/bash -l -c`) instead of an interactive login shell. */
  cmd?: string
  /** Working directory. Default: the sandbox's `cwd`, else the user's home. */
  cwd?: string
  /** Environment variables, over the sandbox's (`TERM` defaults to `xterm-256color`). */
  envVars?: Record<string, string>
  /** The Linux user: `user` (default) or `root`. */
  user?: SandboxUser
  /** An id for the terminal (its envd tag). Default: a random UUID. */
  terminalID?: string
}

/** How a terminal ended, and everything it printed. */
export interface TerminalOutput {
  /** Everything the terminal printed. */
  data: string
  /** The exit code of its process (128 + signal number if a signal ended it). */
  exitCode: number
}

/** An interactive terminal in the sandbox. Made by {@link TerminalManager.start}. */
export class Terminal {
  /** Its id (its envd tag). */
  readonly terminalID: string
  /** The pid of its process in the sandbox. */
  readonly pid: number
  /** Resolves when the terminal's process ends. */
  readonly finished: Promise<TerminalOutput>
  private readonly decoder = new TextDecoder()
  private chunks: string[] = []

  /** @internal */
  constructor(
    private readonly ctx: SandboxContext,
    terminalID: string,
    pid: number,
    stream: AsyncIterator<StartResponse>,
    private readonly opts: TerminalOptions,
  ) {
    this.terminalID = terminalID
    this.pid = pid
    this.finished = this.pump(stream)
    this.finished.catch(() => {}) // a caller that never waits must not get an unhandled rejection
  }

  /** Everything the terminal printed so far. */
  get data(): string {
    return this.chunks.join('')
  }

  private async pump(stream: AsyncIterator<StartResponse>): Promise<TerminalOutput> {
    let end: ProcessEvent_EndEvent | undefined
    const out = (text: string) => {
      if (!text) return
      this.chunks.push(text)
      callSafely(this.opts.onData, text)
    }
    try {
      for (;;) {
        const { value, done } = await stream.next()
        if (done) break
        const e = value.event?.event
        if (e?.case === 'data' && e.value.output.case === 'pty') out(this.decoder.decode(e.value.output.value, { stream: true }))
        else if (e?.case === 'end') end = e.value
      }
    } catch (err) {
      throw this.ctx.error(err)
    } finally {
      out(this.decoder.decode())
    }
    if (!end) throw new SandlotError(`The terminal ${this.pid} ended without an exit status`, 'stream_ended')
    const exitCode = exitCodeOf(end)
    callSafely(this.opts.onExit, exitCode)
    return { data: this.data, exitCode }
  }

  /** Types into the terminal (a string as UTF-8), e.g. `'ls\n'` or `'\x03'` for Ctrl-C. */
  async sendData(data: string | Uint8Array): Promise<void> {
    const value = typeof data === 'string' ? new TextEncoder().encode(data) : data
    await this.call(() => this.ctx.envd.process.sendInput({ process: this.selector(), input: { input: { case: 'pty', value } } }, this.callOptions()))
  }

  /** Changes the terminal's size (the process gets SIGWINCH). */
  async resize(size: TerminalSize): Promise<void> {
    checkSize(size)
    await this.call(() => this.ctx.envd.process.update({ process: this.selector(), pty: { size } }, this.callOptions()))
  }

  /** Kills the terminal's process (SIGKILL). Killing one that already ended does nothing. */
  async kill(): Promise<void> {
    try {
      await this.call(() => this.ctx.envd.process.sendSignal({ process: this.selector(), signal: Signal.SIGKILL }, this.callOptions()))
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err
    }
  }

  /** Waits until the terminal's process ends. */
  wait(): Promise<TerminalOutput> {
    return this.finished
  }

  private selector() {
    return { selector: { case: 'pid' as const, value: this.pid } }
  }

  private callOptions() {
    return { headers: userHeader(this.opts.user), signal: this.ctx.closedSignal }
  }

  private async call(fn: () => Promise<unknown>): Promise<void> {
    this.ctx.assertUsable()
    try {
      await fn()
    } catch (err) {
      throw this.ctx.error(err)
    }
  }
}

function checkSize(size: TerminalSize | undefined): asserts size is TerminalSize {
  const ok = (n: unknown) => typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 10_000
  if (!size || !ok(size.cols) || !ok(size.rows)) throw new InvalidArgumentError('a terminal size is { cols, rows }, whole numbers from 1 to 10000')
}

/** Starts terminals in a sandbox: `sandbox.terminal`. */
export class TerminalManager {
  /** @internal */
  constructor(private readonly ctx: SandboxContext) {}

  /**
   * Starts a terminal (a login shell, or `cmd`) in a pseudo-terminal; resolves once it runs.
   *
   * ```ts
   * const term = await sandbox.terminal.start({ size: { cols: 80, rows: 24 }, onData: (d) => process.stdout.write(d) })
   * await term.sendData('echo hi\n')
   * ```
   */
  async start(opts: TerminalOptions): Promise<Terminal> {
    checkSize(opts?.size)
    if (typeof opts.onData !== 'function') throw new InvalidArgumentError('terminal.start needs onData, a function that receives the output')
    this.ctx.assertUsable()
    const terminalID = opts.terminalID ?? randomUUID()
    const cwd = opts.cwd !== undefined ? this.ctx.resolve(opts.cwd) : this.ctx.cwd
    const args = opts.cmd ? ['-l', '-c', opts.cmd] : ['-i', '-l']
    const envs = { TERM: 'xterm-256color', LANG: 'C.UTF-8', ...this.ctx.envVars, ...opts.envVars }
    const stream = this.ctx.envd.process
      .start(
        { process: { cmd: '/bin/bash', args, envs, cwd }, pty: { size: { cols: opts.size.cols, rows: opts.size.rows } }, tag: terminalID },
        { headers: { ...userHeader(opts.user), 'keepalive-ping-interval': KEEPALIVE_SECONDS }, signal: this.ctx.closedSignal },
      )
      [Symbol.asyncIterator]()
    let pid: number
    try {
      const first = await stream.next()
      const e = first.done ? undefined : first.value.event?.event
      if (e?.case !== 'start') throw new SandlotError('The sandbox did not report the terminal as started', 'start_failed')
      pid = e.value.pid
    } catch (err) {
      throw this.ctx.error(err)
    }
    return new Terminal(this.ctx, terminalID, pid, stream, opts)
  }
}
