// The pure parts of the code interpreter's protocol: Jupyter messages to NDJSON lines, languages,
// and the code that sets and restores a run's environment variables.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { test } from 'node:test'
import { checkEnvVars, iopubLine, normalizeLanguage, replyLine, restoreEnvCode, resultLine, setEnvCode } from '../src/protocol.js'

const msg = (msg_type: string, content: unknown) => ({ header: { msg_type, date: '2026-01-01T00:00:00Z' }, content })

test('results: MIME types to fields, quotes of a string repr stripped once, the rest under extra', () => {
  assert.deepEqual(resultLine({ 'text/plain': "'a'", 'image/png': 'iVBO', 'e2b/chart': { type: 'line' }, 'application/x-y': 1 }, false), {
    type: 'result',
    is_main_result: false,
    text: 'a',
    png: 'iVBO',
    chart: { type: 'line' },
    extra: { 'application/x-y': 1 },
  })
  assert.deepEqual(resultLine({ 'text/plain': "\"it's\"" }, true), { type: 'result', is_main_result: true, text: "\"it's\"" })
})

test('IOPub messages: streams, results, errors and the execution count; others are not lines', () => {
  assert.deepEqual(iopubLine(msg('stream', { name: 'stderr', text: 'x\n' })), { type: 'stderr', text: 'x\n', timestamp: '2026-01-01T00:00:00Z' })
  assert.equal((iopubLine(msg('execute_result', { data: { 'text/plain': '1' } })) as any).is_main_result, true)
  assert.deepEqual(iopubLine(msg('error', { ename: 'E', evalue: 'v', traceback: ['a', 'b'] })), { type: 'error', name: 'E', value: 'v', traceback: 'a\nb' })
  assert.deepEqual(iopubLine(msg('execute_input', { execution_count: 3, code: '' })), { type: 'number_of_executions', execution_count: 3 })
  assert.equal(iopubLine(msg('status', { execution_state: 'idle' })), undefined)
})

test('execute replies: an error only in the reply, and an aborted run, are errors; ok is no line', () => {
  assert.deepEqual(replyLine({ status: 'error', ename: 'E', evalue: 'v', traceback: [] }), { type: 'error', name: 'E', value: 'v', traceback: '' })
  assert.equal(replyLine({ status: 'aborted' })?.name, 'ExecutionAborted')
  assert.equal(replyLine({ status: 'ok' }), undefined)
})

test('languages: E2B short names', () => {
  assert.equal(normalizeLanguage(undefined), 'python')
  assert.equal(normalizeLanguage(' JS '), 'javascript')
  assert.equal(normalizeLanguage('ts'), 'typescript')
  assert.equal(normalizeLanguage('R'), 'r')
})

test('environment variables: checked names; bash sets and restores them exactly, quotes included', () => {
  assert.throws(() => checkEnvVars({ 'A-B': 'x' }), /not an environment variable name/)
  assert.throws(() => checkEnvVars({ A: 1 }), /must be a string/)
  const vars = { KEPT: "it's $HOME `x`", NEW: 'n' }
  const script = `export KEPT='before'\n${setEnvCode('bash', vars)}\necho "$KEPT|$NEW"\n${restoreEnvCode('bash')}\necho "$KEPT|\${NEW-unset}"`
  assert.equal(execFileSync('bash', ['-c', script], { encoding: 'utf8' }), "it's $HOME `x`|n\nbefore|unset\n")
})

test('environment variables: JavaScript code sets and restores them', () => {
  const script = `process.env.KEPT = 'before'; ${setEnvCode('javascript', { KEPT: 'run', NEW: 'n' })}; const during = process.env.KEPT + process.env.NEW; ${restoreEnvCode('javascript')}; console.log(during, process.env.KEPT, process.env.NEW === undefined)`
  assert.equal(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }), 'runn before true\n')
})
