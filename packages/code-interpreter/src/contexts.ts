// Contexts: Jupyter kernels reached through jupyter-server's REST and WebSocket API with
// @jupyterlab/services. A context runs one execution at a time (the rest wait their turn), can be
// interrupted, restarted and deleted; each language has a default context, made on first use
// (python and javascript at startup).
import { KernelManager, ServerConnection, type Kernel, type KernelMessage } from '@jupyterlab/services'
import WebSocket from 'ws'
import { chdirCode, iopubLine, KERNEL_OF, replyLine, restoreEnvCode, setEnvCode, type Language, type OutputLine } from './protocol.js'

export interface ContextInfo {
  id: string
  language: Language
  cwd: string
}

/** Why an execution ended without its kernel's reply (E2B's error names). */
class ExecutionLost extends Error {
  constructor(
    readonly errorName: 'ContextRestarting' | 'UnexpectedEndOfExecution',
    message: string,
  ) {
    super(message)
  }
}

export class Context {
  private queue: Promise<unknown> = Promise.resolve()
  /** Rejects the running execution's wait (a restart, a dead kernel). */
  private lose?: (err: ExecutionLost) => void
  private restarting = false
  /** The kernel was restarted by jupyter (it died): a new process, in jupyter's root, not our cwd. */
  private lostCwd = false

  constructor(
    private readonly kernel: Kernel.IKernelConnection,
    readonly language: Language,
    readonly cwd: string,
  ) {
    kernel.statusChanged.connect((_, status) => {
      if (status === 'autorestarting' || (status === 'restarting' && !this.restarting)) {
        this.lostCwd = true
        this.lose?.(new ExecutionLost('ContextRestarting', 'The kernel died and is being restarted: its state is gone.'))
      }
      if (status === 'dead') this.lose?.(new ExecutionLost('UnexpectedEndOfExecution', 'The kernel died during the execution.'))
    })
  }

  get id(): string {
    return this.kernel.id
  }

  info(): ContextInfo {
    return { id: this.id, language: this.language, cwd: this.cwd }
  }

  /** Runs `fn` once everything queued before it is done. */
  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn)
    this.queue = run.catch(() => {})
    return run
  }

  /** Code the client does not see: not counted, no output, no history. Throws on a kernel error. */
  async runSilent(code: string): Promise<void> {
    const future = this.kernel.requestExecute({ code, silent: true, store_history: false, allow_stdin: false, stop_on_error: false })
    const reply = (await future.done) as KernelMessage.IExecuteReplyMsg
    const failed = replyLine(reply.content)
    if (failed) throw new Error(`${failed.name}: ${failed.value}`)
  }

  /**
   * Runs the user's code (after those queued before it), streaming its lines to `emit`; `envVars`
   * are set for it and put back after. When `signal` aborts (the client went away) it is
   * interrupted, or skipped if it has not started.
   */
  execute(code: string, envVars: Record<string, string>, emit: (line: OutputLine) => void, signal: AbortSignal): Promise<void> {
    return this.enqueue(async () => {
      if (signal.aborted) return
      if (this.lostCwd) {
        // Before the run, so it runs where the context was made.
        await this.runSilent(chdirCode(this.language, this.cwd))
        this.lostCwd = false
      }
      const withEnv = Object.keys(envVars).length > 0
      if (withEnv) await this.runSilent(setEnvCode(this.language, envVars))
      try {
        await this.runVisible(code, emit, signal)
      } finally {
        if (withEnv && !this.restarting) await this.runSilent(restoreEnvCode(this.language)).catch(() => {})
      }
    })
  }

  private async runVisible(code: string, emit: (line: OutputLine) => void, signal: AbortSignal): Promise<void> {
    let errored = false
    const once = (line: OutputLine) => {
      if (line.type === 'error') {
        if (errored) return
        errored = true
      }
      emit(line)
    }
    // stop_on_error off: with it, ipykernel aborts what reaches it just after an error (the next run
    // in our queue), and one run at a time is the queue's to keep.
    const future = this.kernel.requestExecute({ code, silent: false, store_history: true, allow_stdin: false, stop_on_error: false })
    future.onIOPub = (msg) => {
      const line = iopubLine(msg as any)
      if (line) once(line)
    }
    future.onReply = (msg) => {
      // A kernel that reports its error only in the reply, or did not run the code (aborted).
      const failed = replyLine(msg.content)
      if (failed) once(failed)
    }
    const lost = new Promise<never>((_, reject) => (this.lose = reject))
    lost.catch(() => {})
    const interrupt = () => void this.kernel.interrupt().catch(() => {})
    signal.addEventListener('abort', interrupt, { once: true })
    try {
      await Promise.race([future.done, lost])
    } catch (err) {
      const e = err instanceof ExecutionLost ? err : this.restarting ? new ExecutionLost('ContextRestarting', 'The context was restarted during the execution.') : new ExecutionLost('UnexpectedEndOfExecution', `The connection to the kernel was lost: ${(err as Error).message}`)
      once({ type: 'error', name: e.errorName, value: e.message, traceback: '' })
    } finally {
      signal.removeEventListener('abort', interrupt)
      this.lose = undefined
      if (!future.isDisposed) future.dispose()
    }
  }

  /** Restarts the kernel (its state is gone); a running execution ends with ContextRestarting. */
  async restart(): Promise<void> {
    this.restarting = true
    try {
      this.lose?.(new ExecutionLost('ContextRestarting', 'The context was restarted during the execution.'))
      await this.kernel.restart()
      await this.runSilent(chdirCode(this.language, this.cwd))
    } finally {
      this.restarting = false
    }
  }

  async shutdown(): Promise<void> {
    this.lose?.(new ExecutionLost('UnexpectedEndOfExecution', 'The context was deleted during the execution.'))
    await this.kernel.shutdown()
  }
}

export class Contexts {
  private readonly kernels: KernelManager
  /** By id, in the order they were made (a client lists them so). */
  private readonly byId = new Map<string, Context>()
  private readonly defaults = new Map<Language, Promise<Context>>()

  constructor(
    jupyterUrl: string,
    readonly home: string,
  ) {
    const serverSettings = ServerConnection.makeSettings({
      baseUrl: jupyterUrl,
      wsUrl: jupyterUrl.replace(/^http/, 'ws'),
      token: '',
      appendToken: false,
      WebSocket: WebSocket as unknown as typeof globalThis.WebSocket,
      fetch,
      Headers,
      Request,
    })
    this.kernels = new KernelManager({ serverSettings })
  }

  /** A new context: a kernel of the language's spec, in `cwd`. */
  async create(language: Language, cwd: string = this.home): Promise<Context> {
    const kernel = await this.kernels.startNew({ name: KERNEL_OF[language] })
    const context = new Context(kernel, language, cwd)
    try {
      await context.runSilent(chdirCode(language, cwd))
    } catch (err) {
      await kernel.shutdown().catch(() => {})
      throw new Error(`cannot use ${cwd} as the working directory: ${(err as Error).message}`)
    }
    this.byId.set(context.id, context)
    return context
  }

  /** The language's default context, made on first use (and again if it was deleted). */
  defaultFor(language: Language): Promise<Context> {
    let made = this.defaults.get(language)
    if (!made) {
      made = this.create(language)
      this.defaults.set(language, made)
      made.catch(() => this.defaults.delete(language))
    }
    return made
  }

  get(id: string): Context | undefined {
    return this.byId.get(id)
  }

  list(): Context[] {
    return [...this.byId.values()]
  }

  async delete(id: string): Promise<boolean> {
    const context = this.byId.get(id)
    if (!context) return false
    this.byId.delete(id)
    for (const [language, made] of this.defaults) if ((await made.catch(() => undefined)) === context) this.defaults.delete(language)
    await context.shutdown().catch(() => {})
    return true
  }
}
