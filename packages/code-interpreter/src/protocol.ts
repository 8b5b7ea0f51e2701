// E2B's code interpreter protocol, the pure parts: the lines POST /execute streams (NDJSON) made
// from Jupyter's messages, the languages and their kernels, and the code that sets and restores a
// request's environment variables in each kernel's language.

export type OutputLine =
  | { type: 'stdout' | 'stderr'; text: string; timestamp: string }
  | ({ type: 'result'; is_main_result: boolean } & Record<string, unknown>)
  | { type: 'error'; name: string; value: string; traceback: string }
  | { type: 'number_of_executions'; execution_count: number }
  | { type: 'keepalive' }
  | { type: 'end_of_execution' }

/** MIME type → the result's field; any other MIME type goes under `extra`. */
const FIELDS: [string, string][] = [
  ['text/plain', 'text'],
  ['text/html', 'html'],
  ['text/markdown', 'markdown'],
  ['image/svg+xml', 'svg'],
  ['image/png', 'png'],
  ['image/jpeg', 'jpeg'],
  ['application/pdf', 'pdf'],
  ['text/latex', 'latex'],
  ['application/json', 'json'],
  ['application/javascript', 'javascript'],
  ['e2b/data', 'data'],
  ['e2b/chart', 'chart'],
]

/** A display_data (not main) or execute_result (main) bundle as a result line; nulls left out. */
export function resultLine(data: Record<string, unknown>, isMainResult: boolean): OutputLine {
  const line: Record<string, unknown> = { type: 'result', is_main_result: isMainResult }
  const extra: Record<string, unknown> = { ...data }
  for (const [mime, field] of FIELDS) {
    let value = extra[mime]
    delete extra[mime]
    if (value === undefined || value === null) continue
    // A string's repr: one pair of wrapping quotes goes, as E2B's server does.
    if (field === 'text' && typeof value === 'string' && value.length >= 2 && value.startsWith("'") && value.endsWith("'")) value = value.slice(1, -1)
    line[field] = value
  }
  for (const [k, v] of Object.entries(extra)) if (v === undefined || v === null) delete extra[k]
  if (Object.keys(extra).length) line.extra = extra
  return line as OutputLine
}

export interface ErrorContent {
  ename: string
  evalue: string
  traceback: string[]
}

/** An error's line (a kernel that reports only a status, such as tslab, gets a generic name). */
export const errorLine = (e: Partial<ErrorContent>): Extract<OutputLine, { type: 'error' }> => ({ type: 'error', name: e.ename ?? 'Error', value: e.evalue ?? '', traceback: (e.traceback ?? []).join('\n') })

/**
 * The error line an execute_reply calls for, if any: an error a kernel reported only in its reply
 * (tslab), or a reply of `aborted`, the kernel not running the code at all (ipykernel does so with
 * stop_on_error, which contexts never ask for, or when told to abort), said as an error so that it
 * never passes for a run that gave nothing.
 */
export function replyLine(reply: { status: string } & Partial<ErrorContent>): Extract<OutputLine, { type: 'error' }> | undefined {
  if (reply.status === 'error') return errorLine(reply)
  if (reply.status === 'aborted') return { type: 'error', name: 'ExecutionAborted', value: 'The kernel aborted the execution without running it.', traceback: '' }
  return undefined
}

/** A kernel's IOPub message (the parts used) as a line, or undefined for what the protocol does not carry. */
export function iopubLine(msg: { header: { msg_type: string; date: string }; content: any }): OutputLine | undefined {
  const c = msg.content
  switch (msg.header.msg_type) {
    case 'stream':
      return { type: c.name === 'stderr' ? 'stderr' : 'stdout', text: String(c.text ?? ''), timestamp: msg.header.date }
    case 'execute_result':
      return resultLine(c.data ?? {}, true)
    case 'display_data':
      return resultLine(c.data ?? {}, false)
    case 'error':
      return errorLine(c)
    case 'execute_input':
      return { type: 'number_of_executions', execution_count: c.execution_count }
    default:
      return undefined
  }
}

// --- languages ---

export type Language = 'python' | 'javascript' | 'typescript' | 'bash'
export const LANGUAGES: Language[] = ['python', 'javascript', 'typescript', 'bash']

/** E2B's names: none is python, `js` javascript, `ts` typescript, `sh` bash; others lower-cased. */
export function normalizeLanguage(language: unknown): string {
  if (typeof language !== 'string' || !language.trim()) return 'python'
  const l = language.trim().toLowerCase()
  return { js: 'javascript', ts: 'typescript', sh: 'bash', python3: 'python' }[l] ?? l
}

export const isLanguage = (l: string): l is Language => (LANGUAGES as string[]).includes(l)

/** Each language's kernel spec in the template (/opt/code-interpreter/kernels/<name>; jupyter_client takes "python" for "python3"). */
export const KERNEL_OF: Record<Language, string> = { python: 'python3', javascript: 'javascript', typescript: 'typescript', bash: 'bash' }

// --- code run silently around executions ---

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

/** Environment variables from a request: an object of strings with names a shell accepts. */
export function checkEnvVars(raw: unknown): Record<string, string> {
  if (raw === undefined || raw === null) return {}
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new Error('env_vars must be an object of strings')
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    if (!ENV_NAME.test(k)) throw new Error(`env_vars: "${k}" is not an environment variable name`)
    if (typeof v !== 'string' || v.includes('\0')) throw new Error(`env_vars.${k} must be a string without NUL`)
    out[k] = v
  }
  return out
}

const shellWord = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`

/** Sets `vars` in the kernel, keeping what they were for restoreEnvCode. */
export function setEnvCode(language: Language, vars: Record<string, string>): string {
  const json = JSON.stringify(vars)
  switch (language) {
    case 'python':
      return [
        'import os as _sandlot_os',
        `globals()['_sandlot_saved_env'] = {_k: _sandlot_os.environ.get(_k) for _k in ${JSON.stringify(Object.keys(vars))}}`,
        `_sandlot_os.environ.update(${json})`,
        'del _sandlot_os',
      ].join('\n')
    case 'javascript':
    case 'typescript':
      return `(() => { const saved = new Map(); for (const [k, v] of Object.entries(${json})) { saved.set(k, process.env[k]); process.env[k] = v } Reflect.set(globalThis, '__sandlotSavedEnv', saved) })()`
    case 'bash':
      return [
        "__sandlot_env_restore=''",
        ...Object.entries(vars).map(
          ([k, v]) => `if [ -n "\${${k}+x}" ]; then __sandlot_env_restore+="export ${k}=$(printf %q "$${k}");"; else __sandlot_env_restore+="unset ${k};"; fi; export ${k}=${shellWord(v)}`,
        ),
      ].join('\n')
  }
}

/** Puts back what setEnvCode changed. */
export function restoreEnvCode(language: Language): string {
  switch (language) {
    case 'python':
      return [
        'import os as _sandlot_os',
        "for _sandlot_k, _sandlot_v in globals().pop('_sandlot_saved_env', {}).items():",
        '    if _sandlot_v is None: _sandlot_os.environ.pop(_sandlot_k, None)',
        '    else: _sandlot_os.environ[_sandlot_k] = _sandlot_v',
        "for _sandlot_n in ('_sandlot_k', '_sandlot_v', '_sandlot_os', '_sandlot_n'): globals().pop(_sandlot_n, None)",
      ].join('\n')
    case 'javascript':
    case 'typescript':
      return `(() => { const saved = Reflect.get(globalThis, '__sandlotSavedEnv'); if (!saved) return; for (const [k, v] of saved) { if (v === undefined) delete process.env[k]; else process.env[k] = v } Reflect.deleteProperty(globalThis, '__sandlotSavedEnv') })()`
    case 'bash':
      return 'eval "${__sandlot_env_restore:-}"; unset __sandlot_env_restore'
  }
}

/** Changes the kernel's working directory (a new context's cwd). */
export function chdirCode(language: Language, dir: string): string {
  switch (language) {
    case 'python':
      return `__import__('os').chdir(${JSON.stringify(dir)})`
    case 'javascript':
    case 'typescript':
      return `process.chdir(${JSON.stringify(dir)})`
    case 'bash':
      return `cd ${shellWord(dir)}`
  }
}
