// The lower layer of processes: a program and its arguments as given (no shell), its output as raw
// bytes as they come, stdin fed from any stream of bytes, optionally in a pseudo-terminal. What the
// CLI's exec, shell and cp are made of; sandbox.process and sandbox.terminal give lines and text.
import type { ProcessEvent_EndEvent } from '@sandlot/envd-proto'
import { KEEPALIVE_SECONDS, userHeader, type SandboxContext, type SandboxUser } from './envd.js'
import { InvalidArgumentError, SandlotError } from './errors.js'
import { exitCodeOf } from './process.js'
import type { TerminalSize } from './terminal.js'

/** Options of {@link SandboxConnection.exec}. */
export interface ExecOptions {
  /** Working directory. Default: the user's home. `~` is `/home/user`. */
  cwd?: string
  /** Environment variables, over the sandbox's. */
  envs?: Record<string, string>
  /** The Linux user it runs as: `user` (default), `root`, or another account of the template. */
  user?: SandboxUser
  /**
   * Bytes for its stdin (a Node `Readable` such as `process.stdin`, or any async iterable), sent as
   * they are read, each chunk after the last was accepted; stdin is closed at their end. Without
   * it, stdin is empty.
   */
  stdin?: AsyncIterable<Uint8Array>
  /** Called with each chunk of stdout (of the terminal's output, with `pty`) as it comes; a promise it returns is awaited before more is read. */
  onStdout?: (chunk: Uint8Array) => void | Promise<void>
  /** Called with each chunk of stderr as it comes; a promise it returns is awaited before more is read. */
  onStderr?: (chunk: Uint8Array) => void | Promise<void>
  /** Runs it in a pseudo-terminal of this size (stdout and stderr are one stream then). */
  pty?: TerminalSize
  /** Called once it runs, with what can be done to it while it runs. */
  onStart?: (proc: RunningExec) => void
  /** Aborts: the output stream ends (the process goes on). */
  signal?: AbortSignal
}

/** A process started by {@link SandboxConnection.exec}, while it runs. */
export interface RunningExec {
  /** Its pid in the sandbox. */
  pid: number
  /** Changes the size of its terminal (with `pty`). */
  resize(size: TerminalSize): Promise<void>
}

/** How a process of {@link SandboxConnection.exec} ended. */
export interface ExecResult {
  /** Its exit code; for a process ended by a signal, 128 + the signal's number (137 for SIGKILL). */
  exitCode: number
  /** envd's status, e.g. `exit status 1`, `signal: killed`. */
  status: string
  /** What went wrong beyond the exit code, if the agent said more. */
  error?: string
}

/** @internal */
export async function execRaw(ctx: SandboxContext, argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  if (!Array.isArray(argv) || argv.length === 0 || argv.some((a) => typeof a !== 'string')) throw new InvalidArgumentError('exec takes a program and its arguments: ["ls", "-l"]')
  ctx.assertUsable()
  const cwd = opts.cwd === undefined ? undefined : ctx.resolve(opts.cwd)
  const signal = opts.signal ? AbortSignal.any([opts.signal, ctx.closedSignal]) : ctx.closedSignal
  const call = { headers: userHeader(opts.user), signal }
  const stream = ctx.envd.process.start(
    {
      process: { cmd: argv[0]!, args: argv.slice(1), envs: { ...ctx.envVars, ...opts.envs }, cwd },
      stdin: !!opts.stdin && !opts.pty,
      ...(opts.pty && { pty: { size: { cols: opts.pty.cols, rows: opts.pty.rows } } }),
    },
    { headers: { ...call.headers, 'keepalive-ping-interval': KEEPALIVE_SECONDS }, signal },
  )
  let end: ProcessEvent_EndEvent | undefined
  let pid = 0
  const selector = () => ({ selector: { case: 'pid' as const, value: pid } })
  // Feeds stdin in order, one chunk at a time; ends quietly once the process is gone.
  const feed = async (input: AsyncIterable<Uint8Array>) => {
    try {
      for await (const chunk of input) {
        if (end) return
        const value = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
        await ctx.envd.process.sendInput({ process: selector(), input: { input: opts.pty ? { case: 'pty', value } : { case: 'stdin', value } } }, call)
      }
      if (!opts.pty && !end) await ctx.envd.process.closeStdin({ process: selector() }, call)
    } catch {
      // The process ended (or the stream broke; the output stream reports that).
    }
  }
  try {
    for await (const { event } of stream) {
      const e = event?.event
      if (e?.case === 'start') {
        pid = e.value.pid
        if (opts.stdin) void feed(opts.stdin)
        opts.onStart?.({
          pid,
          resize: async (size) => {
            await ctx.envd.process.update({ process: selector(), pty: { size } }, call).catch((err: unknown) => {
              throw ctx.error(err)
            })
          },
        })
      } else if (e?.case === 'data') {
        const out = e.value.output
        if (out.case === 'stdout' || out.case === 'pty') await opts.onStdout?.(out.value)
        else if (out.case === 'stderr') await opts.onStderr?.(out.value)
      } else if (e?.case === 'end') {
        end = e.value
      }
    }
  } catch (err) {
    throw ctx.error(err, cwd)
  }
  if (!end) throw new SandlotError(`The output stream of "${argv[0]}" ended without its exit status`, 'stream_ended')
  const exitCode = exitCodeOf(end)
  // envd's error repeats the status for a plain non-zero exit; only other errors are news.
  return { exitCode, status: end.status, ...(end.error && end.error !== end.status && { error: end.error }) }
}
