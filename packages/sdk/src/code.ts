// Running code on the code interpreter template (`code-interpreter-v1`): its execution server
// listens on port 49999 inside the sandbox and is reached, as every port is, through the server's
// port with the sandbox's id and the port in headers. E2B's protocol: POST /execute streams one JSON
// object a line until `end_of_execution`; /contexts makes independent kernels.
import { InvalidArgumentError, NotFoundError, SandlotError, TimeoutError } from './errors.js'
import { httpFetch } from './transport.js'

/** The code interpreter's port inside the sandbox. */
const PORT = '49999'
/** How long an execution may take by default (ms). */
const DEFAULT_TIMEOUT_MS = 60_000

/** A language of the code interpreter template: `python` (default), `javascript` (`js`), `typescript` (`ts`), `bash`. */
export type CodeLanguage = 'python' | 'javascript' | 'js' | 'typescript' | 'ts' | 'bash' | (string & {})

/** A kernel of its own: state (variables, imports, the working directory) is kept per context. */
export interface CodeContext {
  /** The context's id (its kernel's). */
  id: string
  /** Its language: `python`, `javascript`, `typescript` or `bash`. */
  language: string
  /** Its kernel's working directory. */
  cwd: string
}

/** One thing the code displayed or evaluated to, in every form its kernel gave (MIME bundle). */
export interface Result {
  /** Whether this is the value of the code's last expression (else it was displayed, e.g. a chart). */
  isMainResult: boolean
  /** Plain text (`text/plain`; a string's repr without its quotes). */
  text?: string
  /** HTML (`text/html`), e.g. a DataFrame's table. */
  html?: string
  /** Markdown (`text/markdown`). */
  markdown?: string
  /** An SVG image (`image/svg+xml`). */
  svg?: string
  /** A PNG image, base64 (`image/png`), e.g. a matplotlib figure. */
  png?: string
  /** A JPEG image, base64 (`image/jpeg`). */
  jpeg?: string
  /** A PDF, base64 (`application/pdf`). */
  pdf?: string
  /** LaTeX (`text/latex`). */
  latex?: string
  /** JSON data (`application/json`). */
  json?: unknown
  /** JavaScript (`application/javascript`). */
  javascript?: string
  /** A pandas DataFrame as `{ column: values[] }`. */
  data?: Record<string, unknown[]>
  /** A matplotlib figure as data: `{ type: 'line' | 'scatter' | 'bar' | 'pie' | 'box_and_whisker' | 'superchart' | 'unknown', title, elements, … }`. */
  chart?: {
    /** `line`, `scatter`, `bar`, `pie`, `box_and_whisker`, `superchart` (its elements are charts) or `unknown`. */
    type: string
    /** The axes' title (a superchart's: the figure's). */
    title: string
    /** Lines or point sets (`{ label, points }`), bars (`{ label, value, group }`), wedges (`{ label, angle, radius }`), boxes (`{ label, min, first_quartile, median, third_quartile, max, outliers }`). */
    elements: unknown[]
    [k: string]: unknown
  }
  /** Other MIME types, by type. */
  extra?: Record<string, unknown>
}

/** An error the code raised: its class, message and traceback (as the kernel formats it). */
export interface ExecutionError {
  /** The error's class, e.g. `ZeroDivisionError` (a bash cell's non-zero status: `Error`). */
  name: string
  /** Its message (a bash cell's: the exit status). */
  value: string
  /** The traceback, lines joined by newlines (with the kernel's terminal colours). */
  traceback: string
}

/** What running code produced. */
export interface Execution {
  /** What the code displayed and evaluated to, in order (the main result among them). */
  results: Result[]
  /** Its output, in the pieces the kernel sent. */
  logs: {
    /** Standard output. */
    stdout: string[]
    /** Standard error. */
    stderr: string[]
  }
  /** The error the code raised, if any (the first). */
  error?: ExecutionError
  /** The context's execution counter after this run. */
  executionCount?: number
  /** The text of the main result (the last expression's value), if any. */
  readonly text: string | undefined
}

/** Options of {@link SandboxConnection.runCode}. */
export interface RunCodeOptions {
  /** The language's default context (default `python`). Not with `context`. */
  language?: CodeLanguage
  /** A context from {@link SandboxConnection.createCodeContext}. Not with `language`. */
  context?: CodeContext
  /** Environment variables for this run only; the previous values are back afterwards. */
  envVars?: Record<string, string>
  /** Called with each piece of standard output as it comes. */
  onStdout?: (text: string) => void | Promise<void>
  /** Called with each piece of standard error as it comes. */
  onStderr?: (text: string) => void | Promise<void>
  /** Called with each result as it comes. */
  onResult?: (result: Result) => void | Promise<void>
  /** Called with the error the code raised. */
  onError?: (error: ExecutionError) => void | Promise<void>
  /** Milliseconds the run may take; then it is interrupted and a {@link TimeoutError} thrown. Default 60 000. */
  timeout?: number
}

/** E2B v0's `sandbox.notebook`: {@link SandboxConnection.runCode} under its old name. */
export interface Notebook {
  /** Runs code in the code interpreter: the same as {@link SandboxConnection.runCode}. */
  execCell(code: string, opts?: RunCodeOptions): Promise<Execution>
}

/** Options of {@link SandboxConnection.createCodeContext}. */
export interface CodeContextOptions {
  /** Default `python`. */
  language?: CodeLanguage
  /** The kernel's working directory. Default `/home/user`. */
  cwd?: string
}

const FIELDS = ['text', 'html', 'markdown', 'svg', 'png', 'jpeg', 'pdf', 'latex', 'json', 'javascript', 'data', 'chart', 'extra'] as const

function resultOf(line: Record<string, unknown>): Result {
  const r: Result = { isMainResult: line.is_main_result === true }
  for (const f of FIELDS) if (line[f] !== undefined && line[f] !== null) (r as unknown as Record<string, unknown>)[f] = line[f]
  return r
}

const INTERRUPTED = "The code interpreter's answer stopped before the run ended: the sandbox was killed, or its code interpreter restarted"

/** @internal The code interpreter of one sandbox. */
export class CodeInterpreter {
  constructor(
    private readonly apiUrl: string,
    private readonly sandboxId: string,
    private readonly trafficToken: string | undefined,
  ) {}

  private async request(method: string, path: string, body: unknown, signal?: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = { 'content-type': 'application/json', 'e2b-sandbox-id': this.sandboxId, 'e2b-sandbox-port': PORT }
    if (this.trafficToken) headers['e2b-traffic-access-token'] = this.trafficToken
    let res: Response
    try {
      res = await httpFetch(`${this.apiUrl}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal })
    } catch (err) {
      if (signal?.aborted) throw err
      throw new SandlotError(`Cannot reach the server at ${this.apiUrl}: ${(err as Error).message}`, 'connection_error', undefined, { cause: err })
    }
    if (res.ok) return res
    const text = (await res.text().catch(() => '')).trim()
    if (res.status === 404) throw new NotFoundError(text || `${method} ${path}: not found`, 'not_found', 404)
    if (res.status === 400) throw new InvalidArgumentError(text, 'invalid_argument', 400)
    if (res.status === 502) {
      throw new SandlotError(`The sandbox's code interpreter does not answer on port ${PORT} (${text}): was the sandbox created from the code-interpreter-v1 template?`, 'code_interpreter_unavailable', 502)
    }
    throw new SandlotError(`The code interpreter answered ${res.status}: ${text}`, 'code_interpreter_error', res.status)
  }

  async runCode(code: string, opts: RunCodeOptions = {}): Promise<Execution> {
    if (opts.context && opts.language) throw new InvalidArgumentError('runCode takes a context or a language, not both')
    const timeout = opts.timeout ?? DEFAULT_TIMEOUT_MS
    const controller = new AbortController()
    const timer = timeout > 0 ? setTimeout(() => controller.abort(), timeout) : undefined
    const execution: Execution = {
      results: [],
      logs: { stdout: [], stderr: [] },
      get text() {
        return this.results.find((r) => r.isMainResult)?.text
      },
    }
    try {
      const res = await this.request('POST', '/execute', { code, context_id: opts.context?.id, language: opts.language, env_vars: opts.envVars }, controller.signal)
      const decoder = new TextDecoder()
      let buffer = ''
      let ended = false
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true })
        let nl: number
        while ((nl = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, nl).trim()
          buffer = buffer.slice(nl + 1)
          if (!line) continue
          const parsed = JSON.parse(line) as Record<string, unknown>
          if (parsed.type === 'end_of_execution') ended = true
          await this.apply(execution, parsed, opts)
        }
      }
      // A stream that stops short never passes for a finished run.
      if (!ended) throw new SandlotError(INTERRUPTED, 'execution_interrupted')
      return execution
    } catch (err) {
      if (controller.signal.aborted) throw new TimeoutError(`The code ran longer than ${timeout} ms (the timeout option) and was interrupted`, { cause: err })
      if (err instanceof SandlotError) throw err
      // The connection broke mid-run (undici's "terminated"): the sandbox was killed, or its server died.
      throw new SandlotError(INTERRUPTED, 'execution_interrupted', undefined, { cause: err })
    } finally {
      clearTimeout(timer)
      controller.abort()
    }
  }

  private async apply(execution: Execution, line: Record<string, any>, opts: RunCodeOptions): Promise<void> {
    switch (line.type) {
      case 'stdout':
        execution.logs.stdout.push(line.text)
        await opts.onStdout?.(line.text)
        break
      case 'stderr':
        execution.logs.stderr.push(line.text)
        await opts.onStderr?.(line.text)
        break
      case 'result': {
        const result = resultOf(line)
        execution.results.push(result)
        await opts.onResult?.(result)
        break
      }
      case 'error':
        execution.error = { name: line.name, value: line.value, traceback: line.traceback }
        await opts.onError?.(execution.error)
        break
      case 'number_of_executions':
        execution.executionCount = line.execution_count
        break
    }
  }

  async createContext(opts: CodeContextOptions = {}): Promise<CodeContext> {
    return (await this.request('POST', '/contexts', { language: opts.language, cwd: opts.cwd })).json() as Promise<CodeContext>
  }

  async listContexts(): Promise<CodeContext[]> {
    return (await this.request('GET', '/contexts', undefined)).json() as Promise<CodeContext[]>
  }

  async restartContext(context: CodeContext | string): Promise<void> {
    await this.request('POST', `/contexts/${encodeURIComponent(typeof context === 'string' ? context : context.id)}/restart`, undefined)
  }

  async removeContext(context: CodeContext | string): Promise<void> {
    await this.request('DELETE', `/contexts/${encodeURIComponent(typeof context === 'string' ? context : context.id)}`, undefined)
  }
}
