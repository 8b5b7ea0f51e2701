// sandbox.process: commands in the sandbox through envd's Process service, each run as
// `/bin/bash -l -c <cmd>` (like E2B), with output as lines (E2B v0's shape).
import { Signal, type ProcessEvent_EndEvent, type StartResponse } from '@sandlot/envd-proto'
import { randomUUID } from 'node:crypto'
import { KEEPALIVE_SECONDS, userHeader, type SandboxContext, type SandboxUser } from './envd.js'
import { InvalidArgumentError, NotFoundError, SandlotError, TimeoutError } from './errors.js'

/** One line of a process's output. */
export interface ProcessMessage {
  /** The line, without its newline. */
  line: string
  /** When the client received it, in milliseconds since the epoch. */
  timestamp: number
  /** `true` for stderr. */
  error: boolean
}

/** What a finished process printed, and how it ended. */
export interface ProcessOutput {
  /** Its stdout lines, joined by `\n`. */
  stdout: string
  /** Its stderr lines, joined by `\n`. */
  stderr: string
  /** Its exit code; for a process ended by a signal, 128 + the signal's number (137 for SIGKILL). */
  exitCode: number
  /** Why it did not succeed (e.g. `exit status 1`, `signal: killed`); absent for exit code 0. */
  error?: string
}

/** What a process printed so far ({@link Process.output}). */
export interface ProcessOutputSoFar {
  /** Its stdout lines so far, joined by `\n`. */
  stdout: string
  /** Its stderr lines so far, joined by `\n`. */
  stderr: string
  /** Its exit code once it ended, else `undefined`. */
  exitCode: number | undefined
}

/** Options of {@link ProcessManager.start}. */
export interface ProcessOptions {
  /** The command line, run by `/bin/bash -l -c`. */
  cmd: string
  /** Working directory. Default: the sandbox's `cwd`, else the user's home. `~` is `/home/user`. */
  cwd?: string
  /** Environment variables, over the sandbox's. */
  envVars?: Record<string, string>
  /** The Linux user it runs as: `user` (default) or `root`. */
  user?: SandboxUser
  /** Called with each stdout line as it comes. */
  onStdout?: (message: ProcessMessage) => void
  /** Called with each stderr line as it comes. */
  onStderr?: (message: ProcessMessage) => void
  /** Called with the exit code when the process ends. */
  onExit?: (exitCode: number) => void
  /**
   * Milliseconds the process may run: then it is killed and `wait()` throws a
   * {@link TimeoutError}. Default: no limit.
   */
  timeout?: number
  /** An id for the process (its envd tag). Default: a random UUID. */
  processID?: string
}

/** Exit codes shell-style for processes ended by a signal (envd reports Go's names). */
const SIGNAL_NUMBERS: Record<string, number> = { hangup: 1, interrupt: 2, quit: 3, aborted: 6, killed: 9, 'segmentation fault': 11, 'broken pipe': 13, terminated: 15 }

/** @internal */
export function exitCodeOf(end: ProcessEvent_EndEvent): number {
  if (end.exited || end.exitCode >= 0) return end.exitCode
  const signal = /^signal: (.*)$/.exec(end.status)?.[1]
  const n = signal ? SIGNAL_NUMBERS[signal] : undefined
  return n ? 128 + n : -1
}

/** Runs a user callback; its exception surfaces (as in an EventEmitter) without breaking the stream. */
export function callSafely<A extends unknown[]>(fn: ((...args: A) => void) | undefined, ...args: A): void {
  if (!fn) return
  try {
    fn(...args)
  } catch (err) {
    queueMicrotask(() => {
      throw err
    })
  }
}

/** Splits a byte stream into UTF-8 lines. */
class Lines {
  private readonly decoder = new TextDecoder()
  private rest = ''
  readonly lines: string[] = []

  constructor(private readonly onLine: (line: string) => void) {}

  push(bytes: Uint8Array): void {
    const parts = (this.rest + this.decoder.decode(bytes, { stream: true })).split('\n')
    this.rest = parts.pop()!
    for (const line of parts) this.add(line)
  }

  end(): void {
    const last = this.rest + this.decoder.decode()
    this.rest = ''
    if (last) this.add(last)
  }

  private add(line: string): void {
    this.lines.push(line)
    this.onLine(line)
  }
}

type Stream = AsyncIterator<StartResponse>

/** A process running in the sandbox. Made by {@link ProcessManager.start}. */
export class Process {
  /** Its id (its envd tag). */
  readonly processID: string
  /** Its pid in the sandbox. */
  readonly pid: number
  /** Resolves with its output when it ends; rejects with a {@link TimeoutError} if its timeout killed it. */
  readonly finished: Promise<ProcessOutput>
  private readonly stdout: Lines
  private readonly stderr: Lines
  private exitCode: number | undefined
  private killedByUs = false

  /** @internal */
  constructor(
    private readonly ctx: SandboxContext,
    processID: string,
    pid: number,
    stream: Stream,
    private readonly opts: ProcessOptions,
    startedAt: number,
  ) {
    this.processID = processID
    this.pid = pid
    const message = (error: boolean) => (line: string) =>
      callSafely(error ? opts.onStderr : opts.onStdout, { line, timestamp: Date.now(), error })
    this.stdout = new Lines(message(false))
    this.stderr = new Lines(message(true))
    this.finished = this.pump(stream, startedAt)
    this.finished.catch(() => {}) // a caller that never waits must not get an unhandled rejection
  }

  /** What it printed so far; `exitCode` is set once it ended. */
  get output(): ProcessOutputSoFar {
    return { stdout: this.stdout.lines.join('\n'), stderr: this.stderr.lines.join('\n'), exitCode: this.exitCode }
  }

  private async pump(stream: Stream, startedAt: number): Promise<ProcessOutput> {
    let end: ProcessEvent_EndEvent | undefined
    let failure: unknown
    try {
      for (;;) {
        const { value, done } = await stream.next()
        if (done) break
        const e = value.event?.event
        if (e?.case === 'data') {
          const out = e.value.output
          if (out.case === 'stdout') this.stdout.push(out.value)
          else if (out.case === 'stderr') this.stderr.push(out.value)
        } else if (e?.case === 'end') {
          end = e.value
        }
      }
    } catch (err) {
      failure = err
    } finally {
      this.stdout.end()
      this.stderr.end()
    }
    if (end) {
      this.exitCode = exitCodeOf(end)
      callSafely(this.opts.onExit, this.exitCode)
    }
    // At the timeout the agent kills the process and ends the stream; either may reach us first.
    const timeout = this.opts.timeout
    const killedByTimeout = !end || (end.status === 'signal: killed' && !this.killedByUs)
    if (timeout && killedByTimeout && Date.now() - startedAt >= timeout) {
      throw new TimeoutError(`The process "${this.opts.cmd}" did not finish within its timeout of ${timeout} ms and was killed; pass a longer timeout (or none).`)
    }
    if (failure !== undefined) throw this.ctx.error(failure)
    if (!end || this.exitCode === undefined) throw new SandlotError(`The output stream of process ${this.pid} ended without its exit status`, 'stream_ended')
    return { ...this.output, exitCode: this.exitCode, ...(this.exitCode !== 0 && { error: end.error ?? end.status }) }
  }

  /** Waits until it ends; resolves with its output (whatever its exit code), rejects with a {@link TimeoutError} if its timeout killed it. */
  wait(): Promise<ProcessOutput> {
    return this.finished
  }

  /** Kills it (and its process group) with SIGKILL. Killing a process that already ended does nothing. */
  async kill(): Promise<void> {
    this.killedByUs = true
    try {
      await this.ctx.envd.process.sendSignal({ process: this.selector(), signal: Signal.SIGKILL }, this.callOptions())
    } catch (err) {
      const e = this.ctx.error(err)
      if (!(e instanceof NotFoundError)) throw e
    }
  }

  /** Writes to its stdin (a string as UTF-8). */
  async sendStdin(data: string | Uint8Array): Promise<void> {
    const value = typeof data === 'string' ? new TextEncoder().encode(data) : data
    try {
      await this.ctx.envd.process.sendInput({ process: this.selector(), input: { input: { case: 'stdin', value } } }, this.callOptions())
    } catch (err) {
      throw this.ctx.error(err)
    }
  }

  /** Closes its stdin, so a program reading it sees end of file. */
  async closeStdin(): Promise<void> {
    try {
      await this.ctx.envd.process.closeStdin({ process: this.selector() }, this.callOptions())
    } catch (err) {
      throw this.ctx.error(err)
    }
  }

  private selector() {
    this.ctx.assertUsable()
    return { selector: { case: 'pid' as const, value: this.pid } }
  }

  private callOptions() {
    return { headers: userHeader(this.opts.user), signal: this.ctx.closedSignal }
  }
}

/** Starts processes in a sandbox: `sandbox.process`. */
export class ProcessManager {
  /** @internal */
  constructor(private readonly ctx: SandboxContext) {}

  /**
   * Starts a command with `/bin/bash -l -c`; resolves once it runs. Its stdin is open (see
   * {@link Process.sendStdin} and {@link Process.closeStdin}).
   *
   * ```ts
   * const proc = await sandbox.process.start({ cmd: 'python3 -u server.py', onStdout: (m) => console.log(m.line) })
   * // …
   * await proc.kill()
   * ```
   */
  async start(opts: ProcessOptions | string): Promise<Process> {
    const o = typeof opts === 'string' ? { cmd: opts } : opts
    if (typeof o.cmd !== 'string' || !o.cmd) throw new InvalidArgumentError('process.start needs a command: { cmd: "…" }')
    if (o.timeout !== undefined && (typeof o.timeout !== 'number' || !(o.timeout >= 0))) {
      throw new InvalidArgumentError('timeout is a number of milliseconds, 0 or more (0: no limit)')
    }
    this.ctx.assertUsable()
    const processID = o.processID ?? randomUUID()
    const cwd = o.cwd !== undefined ? this.ctx.resolve(o.cwd) : this.ctx.cwd
    const headers: Record<string, string> = { ...userHeader(o.user), 'keepalive-ping-interval': KEEPALIVE_SECONDS }
    // envd takes a process's lifetime from the request's Connect timeout and kills it then. It is
    // sent as a header rather than as a client deadline, so the output that came is kept.
    if (o.timeout) headers['connect-timeout-ms'] = String(Math.ceil(o.timeout))
    const startedAt = Date.now()
    const stream = this.ctx.envd.process
      .start(
        { process: { cmd: '/bin/bash', args: ['-l', '-c', o.cmd], envs: { ...this.ctx.envVars, ...o.envVars }, cwd }, tag: processID, stdin: true },
        { headers, signal: this.ctx.closedSignal },
      )
      [Symbol.asyncIterator]()
    let pid: number
    try {
      const first = await stream.next()
      const e = first.done ? undefined : first.value.event?.event
      if (e?.case !== 'start') throw new SandlotError('The sandbox did not report the process as started', 'start_failed')
      pid = e.value.pid
    } catch (err) {
      throw this.ctx.error(err, cwd)
    }
    return new Process(this.ctx, processID, pid, stream, o, startedAt)
  }

  /** Starts a command and waits for it to end: {@link start} then {@link Process.wait}. */
  async startAndWait(opts: ProcessOptions | string): Promise<ProcessOutput> {
    return (await this.start(opts)).wait()
  }
}
