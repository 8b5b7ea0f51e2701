// `sandlot run`: code in a code interpreter sandbox (the code-interpreter-v1 template), through the
// SDK's runCode: its output streamed as it comes, then the text of the last expression's value and
// the error, if any. Exits 1 when the code raised one.
import fs from 'node:fs'
import { text } from 'node:stream/consumers'
import type { CodeLanguage, Execution } from 'sandlot'
import { CliError, client } from './client.js'
import { printJson } from './format.js'

const LANGUAGES = ['python', 'javascript', 'typescript', 'bash', 'js', 'ts']

export async function run(id: string, file: string | undefined, o: { language?: string; timeout?: number; json?: boolean }): Promise<number> {
  if (o.language && !LANGUAGES.includes(o.language)) throw new CliError(`--language must be one of ${LANGUAGES.join(', ')}; got "${o.language}"`, 2)
  if (!file && process.stdin.isTTY) throw new CliError('Usage: sandlot run <sandbox-id> FILE, or code on stdin (sandlot run ID - < code.py)', 2)
  let code: string
  try {
    code = !file || file === '-' ? await text(process.stdin) : fs.readFileSync(file, 'utf8')
  } catch (err) {
    throw new CliError(`Cannot read ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`)
  }
  const sandbox = await client().connect(id)
  const execution: Execution = await sandbox.runCode(code, {
    language: o.language as CodeLanguage | undefined,
    timeout: o.timeout,
    ...(!o.json && { onStdout: (t: string) => void process.stdout.write(t), onStderr: (t: string) => void process.stderr.write(t) }),
  })
  if (o.json) {
    printJson({ text: execution.text ?? null, logs: execution.logs, results: execution.results, error: execution.error ?? null, executionCount: execution.executionCount ?? null })
  } else {
    if (execution.text !== undefined) console.log(execution.text)
    if (execution.error) process.stderr.write(`${execution.error.traceback || `${execution.error.name}: ${execution.error.value}`}\n`)
  }
  return execution.error ? 1 : 0
}
