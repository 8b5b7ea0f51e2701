// The official @e2b/code-interpreter SDK, unchanged, against Sandlot's code-interpreter-v1 template
// and its execution server on port 49999 (E2B's protocol: docs/e2b-compatibility.md).
import { NotFoundError, Sandbox, TimeoutError } from '@e2b/code-interpreter'
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { RUN, sleep } from './e2b-env.js'
import { CHARTS, IN_ORDER, RECOVERY_MS, STREAMING, streamingRun, templateReady } from './code-interpreter-env.js'
import { apiUrl } from './helpers.js'

const sandboxes: Sandbox[] = []
async function create(opts: Parameters<typeof Sandbox.create>[0] = {}): Promise<Sandbox> {
  const s = await Sandbox.create({ ...opts, metadata: { suite: 'e2b-code-interpreter', run: RUN } })
  sandboxes.push(s)
  return s
}

let sbx: Sandbox
before(async () => {
  await templateReady()
  sbx = await create()
})
after(async () => {
  await Promise.all(sandboxes.map((s) => s.kill().catch(() => false)))
})

describe('execution', () => {
  test('basic: the last expression is the main result', async () => {
    const e = await sbx.runCode('x = 1; x')
    assert.equal(e.text, '1')
    assert.equal(e.error, undefined)
  })

  test('stdout and stderr stream to the callbacks and the logs', async () => {
    const out: string[] = []
    const err: string[] = []
    const e = await sbx.runCode('import sys\nprint("Hello World!")\nprint("oops", file=sys.stderr)', {
      onStdout: (m) => void out.push(m.line),
      onStderr: (m) => void err.push(m.line),
    })
    assert.deepEqual(e.logs.stdout, ['Hello World!\n'])
    assert.deepEqual(e.logs.stderr, ['oops\n'])
    assert.deepEqual(out, ['Hello World!\n'])
    assert.deepEqual(err, ['oops\n'])
  })

  test('stdout, stderr, a result and the error reach the callbacks in order, while the run goes', async () => {
    const events: string[] = []
    let ended = false
    let duringRun: boolean | undefined
    const e = await sbx
      .runCode(IN_ORDER.code, {
        onStdout: (m) => {
          duringRun ??= !ended
          events.push(`stdout ${m.line}`)
        },
        onStderr: (m) => void events.push(`stderr ${m.line}`),
        onResult: (r) => void events.push(`result ${r.markdown}`),
        onError: (err) => void events.push(`error ${err.name} ${err.value}`),
      })
      .finally(() => (ended = true))
    assert.deepEqual(events, IN_ORDER.events)
    assert.equal(duringRun, true, 'the first line came before the run ended')
    assert.equal(e.error?.name, 'ValueError')
  })

  test('state is kept between runs, and the execution count grows (silent runs do not count)', async () => {
    const ctx = await sbx.createCodeContext()
    await sbx.runCode('y = 21', { context: ctx, envs: { SOME: 'x' } })
    const e = await sbx.runCode('y * 2', { context: ctx })
    assert.equal(e.text, '42')
    assert.equal(e.executionCount, 2)
  })

  test('an error has its name, value and traceback; a string result loses its quotes', async () => {
    const e = await sbx.runCode('1 / 0')
    assert.equal(e.error?.name, 'ZeroDivisionError')
    assert.equal(e.error?.value, 'division by zero')
    assert.match(e.error!.traceback, /ZeroDivisionError/)
    const errors: string[] = []
    await sbx.runCode('raise ValueError("bad")', { onError: (err) => void errors.push(err.name) })
    assert.deepEqual(errors, ['ValueError'])
    assert.equal((await sbx.runCode('"abc"')).text, 'abc')
  })

  test('a run cut short by the client is interrupted; the context goes on', async () => {
    await assert.rejects(sbx.runCode('import time; time.sleep(300)', { timeoutMs: 3000 }), TimeoutError)
    const e = await sbx.runCode('1 + 1')
    assert.equal(e.text, '2')
  })
})

describe('contexts', () => {
  test('python and javascript exist from the start; new ones are listed last, with their cwd', async () => {
    const ctx = await sbx.createCodeContext({ language: 'python', cwd: '/tmp' })
    assert.equal(ctx.language, 'python')
    assert.equal(ctx.cwd, '/tmp')
    const list = await sbx.listCodeContexts()
    assert.ok(list.some((c) => c.language === 'python'))
    assert.ok(list.some((c) => c.language === 'javascript'))
    assert.deepEqual(list.at(-1), ctx)
    assert.equal((await sbx.runCode('import os; os.getcwd()', { context: ctx })).text, '/tmp')
    // The default context is a kernel of its own.
    assert.equal((await sbx.runCode('import os; os.getcwd()')).text, '/home/user')
  })

  test('restart clears the state; delete removes it', async () => {
    const ctx = await sbx.createCodeContext()
    await sbx.runCode('z = 3', { context: ctx })
    await sbx.restartCodeContext(ctx)
    const e = await sbx.runCode('z', { context: ctx })
    assert.equal(e.error?.name, 'NameError')
    // A restart during a run ends it with an error; the context goes on, in its cwd.
    await sbx.runCode('z = 4', { context: ctx })
    let started!: () => void
    const printing = new Promise<void>((r) => (started = r))
    const cut = sbx.runCode('import time\nprint("on", flush=True)\ntime.sleep(60)', { context: ctx, onStdout: () => started() })
    await printing
    await sbx.restartCodeContext(ctx)
    assert.equal((await cut).error?.name, 'ContextRestarting')
    assert.equal((await sbx.runCode('z', { context: ctx })).error?.name, 'NameError')
    await sbx.removeCodeContext(ctx.id)
    assert.ok(!(await sbx.listCodeContexts()).some((c) => c.id === ctx.id))
    await assert.rejects(sbx.runCode('1', { context: ctx }), NotFoundError)
  })

  test('javascript, typescript and bash', async () => {
    const js = await sbx.runCode('const a = 1; a + 1', { language: 'js' })
    assert.equal(js.text, '2')
    assert.deepEqual((await sbx.runCode('console.log("Hello World!")', { language: 'javascript' })).logs.stdout, ['Hello World!\n'])
    const ts = await sbx.runCode('const n: number = 40; console.log(n + 2)', { language: 'ts' })
    assert.deepEqual(ts.logs.stdout, ['42\n'])
    const sh = await sbx.runCode('cd /tmp && export GREETING=hi\necho "$GREETING from $(pwd)"', { language: 'bash' })
    assert.equal(sh.logs.stdout.join(''), 'hi from /tmp\n')
    assert.equal((await sbx.runCode('echo $GREETING', { language: 'bash' })).logs.stdout.join(''), 'hi\n')
    assert.equal((await sbx.runCode('exit 3', { language: 'bash' })).error?.value, '3')
    // Shell escapes from Python run where the kernel is.
    assert.equal((await sbx.runCode('!pwd')).logs.stdout.join('').trim(), '/home/user')
  })
})

describe('environment variables', () => {
  test("the sandbox's own in every language; a run's own for that run only", async () => {
    const s = await create({ envs: { SBX_VAR: 'sandbox' } })
    assert.equal((await s.runCode('import os; os.getenv("SBX_VAR")')).text, 'sandbox')
    assert.equal((await s.runCode('process.env.SBX_VAR', { language: 'js' })).text, 'sandbox')
    assert.equal((await s.runCode('echo $SBX_VAR', { language: 'bash' })).logs.stdout.join(''), 'sandbox\n')
    const during = await s.runCode('import os; (os.getenv("SBX_VAR"), os.getenv("RUN_VAR"))', { envs: { SBX_VAR: 'run', RUN_VAR: 'only now' } })
    assert.equal(during.text, "('run', 'only now')")
    const afterwards = await s.runCode('import os; (os.getenv("SBX_VAR"), os.getenv("RUN_VAR", "unset"))')
    assert.equal(afterwards.text, "('sandbox', 'unset')")
    // A value the code set itself is what comes back after a run that overrode it.
    await s.runCode('os.environ["SBX_VAR"] = "changed"')
    await s.runCode('1', { envs: { SBX_VAR: 'run' } })
    assert.equal((await s.runCode('os.environ["SBX_VAR"]')).text, 'changed')
    assert.equal((await s.runCode('process.env.RUN_VAR', { language: 'js', envs: { RUN_VAR: 'js run' } })).text, 'js run')
    assert.equal((await s.runCode('process.env.RUN_VAR === undefined', { language: 'js' })).text, 'true')
    assert.equal((await s.runCode('echo "$RUN_VAR"', { language: 'bash', envs: { RUN_VAR: "it's bash" } })).logs.stdout.join(''), "it's bash\n")
    assert.equal((await s.runCode('echo "${RUN_VAR-unset}"', { language: 'bash' })).logs.stdout.join(''), 'unset\n')
  })
})

describe('rich results', () => {
  test('a matplotlib line chart comes back as PNG and as chart data', async () => {
    const e = await sbx.runCode(`
import datetime
import numpy as np
import matplotlib.pyplot as plt
dates = [datetime.date(2023, 9, 1) + datetime.timedelta(seconds=i) for i in range(100)]
x = np.linspace(0, 2 * np.pi, 100)
plt.figure(figsize=(10, 6))
plt.plot(dates, np.sin(x), label='sin(x)')
plt.plot(dates, np.cos(x), label='cos(x)')
plt.xlabel("Time (s)")
plt.ylabel("Amplitude (Hz)")
plt.title('Plot of sin(x) and cos(x)')
plt.show()
`)
    assert.equal(e.error, undefined)
    const r = e.results[0]!
    assert.equal(r.isMainResult, false)
    assert.match(r.png ?? '', /^iVBORw0KGgo/)
    const chart = r.chart as any
    assert.equal(chart.type, 'line')
    assert.equal(chart.title, 'Plot of sin(x) and cos(x)')
    assert.equal(chart.x_label, 'Time (s)')
    assert.equal(chart.y_label, 'Amplitude (Hz)')
    assert.equal(chart.x_unit, 's')
    assert.equal(chart.y_unit, 'Hz')
    assert.equal(chart.x_scale, 'datetime')
    assert.equal(chart.y_scale, 'linear')
    assert.deepEqual(chart.elements.map((l: any) => l.label), ['sin(x)', 'cos(x)'])
    assert.equal(chart.elements[0].points.length, 100)
    assert.equal(new Date(chart.elements[0].points[0][0]).toISOString(), '2023-09-01T00:00:00.000Z')
    assert.equal(typeof chart.elements[0].points[0][1], 'number')
  })

  test('bar, pie and box-and-whisker charts', async () => {
    for (const { code, check } of Object.values(CHARTS)) check((await sbx.runCode(code)).results[0]!.chart)
  })

  test('a DataFrame comes back as HTML and as data; other display data by MIME type', async () => {
    const e = await sbx.runCode('import pandas as pd\npd.DataFrame({"a": [1, 2, 3], "b": ["x", None, "z"]})')
    const r = e.results[0]!
    assert.equal(r.isMainResult, true)
    assert.match(r.html ?? '', /<table/)
    assert.deepEqual(r.data, { a: [1, 2, 3], b: ['x', null, 'z'] })
    const shown = await sbx.runCode('from IPython.display import display, Markdown, SVG\ndisplay(Markdown("**hi**"))\ndisplay({"application/x-custom": {"k": 1}}, raw=True)')
    assert.equal(shown.results[0]!.markdown, '**hi**')
    assert.equal(shown.results[0]!.isMainResult, false)
    // Other MIME types come under `extra` (the JS SDK keeps the line as it came in `raw`).
    assert.deepEqual((shown.results[1] as any).raw.extra, { 'application/x-custom': { k: 1 } })
  })
})

describe('the protocol, raw', () => {
  const headers = (id: string) => ({ 'content-type': 'application/json', 'e2b-sandbox-id': id, 'e2b-sandbox-port': '49999' })

  test('NDJSON lines: number_of_executions, keepalive while idle, end_of_execution last; bad requests', async () => {
    const res = await fetch(`${apiUrl}/execute`, { method: 'POST', headers: headers(sbx.sandboxId), body: JSON.stringify({ code: 'import time; time.sleep(6); print("done")' }) })
    assert.equal(res.status, 200)
    const lines = (await res.text()).trim().split('\n').map((l) => JSON.parse(l))
    const types = lines.map((l) => l.type)
    assert.equal(types[0], 'number_of_executions')
    assert.ok(types.includes('keepalive'), types.join())
    assert.deepEqual(types.slice(-2), ['stdout', 'end_of_execution'])
    const both = await fetch(`${apiUrl}/execute`, { method: 'POST', headers: headers(sbx.sandboxId), body: JSON.stringify({ code: '1', language: 'python', context_id: 'x' }) })
    assert.equal(both.status, 400)
    const unknown = await fetch(`${apiUrl}/execute`, { method: 'POST', headers: headers(sbx.sandboxId), body: JSON.stringify({ code: '1', context_id: 'nope' }) })
    assert.equal(unknown.status, 404)
    assert.equal(await unknown.text(), 'Context nope not found')
    const health = await fetch(`${apiUrl}/health`, { headers: headers(sbx.sandboxId) })
    assert.equal(health.status, 200)
    assert.equal(await health.json(), 'OK')
  })
})

describe('kill while a run streams', () => {
  test('the run ends with an error, not a hang', async () => {
    const s = await create()
    const started = Date.now()
    const { outcome } = await streamingRun((onStdout) => s.runCode(STREAMING, { onStdout, timeoutMs: 120_000 }))
    await s.kill()
    const err = await outcome
    assert.ok(err instanceof Error, `the run ${String(err)} after its sandbox was killed`)
    assert.ok(Date.now() - started < 30_000, 'it ended soon after the kill')
  })
})

describe('supervision', () => {
  /** The pids of processes in `s` whose command line matches `pattern` (a regex that keeps pgrep's own shell out). */
  const pids = async (s: Sandbox, pattern: string) => (await s.commands.run(`pgrep -f '${pattern}' || true`)).stdout.split(/\s+/).filter(Boolean)
  /** The first answer of runCode('x') after a kill, and when it came. */
  async function answerAfter(s: Sandbox, killed: number): Promise<{ error?: string; ms: number }> {
    for (;;) {
      const e = await s.runCode('x', { timeoutMs: 10_000 }).catch(() => undefined)
      if (e) return { error: e.error?.name, ms: Date.now() - killed }
      if (Date.now() - killed > RECOVERY_MS) return { error: 'no answer', ms: Date.now() - killed }
      await sleep(250)
    }
  }

  test('the execution server killed: the run in progress ends with an error; a new one answers within 30 s', async () => {
    const s = await create()
    await s.runCode('x = 1')
    const [before] = await pids(s, 'code-interpreter[.]mjs serve')
    assert.ok(before, 'the execution server runs')
    const { outcome } = await streamingRun((onStdout) => s.runCode(STREAMING, { onStdout, timeoutMs: 120_000 }))
    await s.commands.run(`kill -9 ${before}`, { user: 'root' })
    const killed = Date.now()
    assert.ok((await outcome) instanceof Error, 'the run ended with an error')
    const answer = await answerAfter(s, killed)
    console.log(`[e2b code interpreter] runCode answered again ${answer.ms} ms after the execution server was killed`)
    assert.ok(answer.ms < RECOVERY_MS, `runCode answered ${answer.ms} ms after the kill`)
    assert.equal(answer.error, 'NameError', 'a new server, the old state gone')
    const [after] = await pids(s, 'code-interpreter[.]mjs serve')
    assert.ok(after && after !== before, `a new server (${before} → ${after})`)
  })

  test('jupyter killed: a new one, the old state gone, answers runCode within 30 s', async () => {
    const s = await create()
    await s.runCode('x = 1')
    const before = await pids(s, 'jupyter[-]server')
    assert.equal(before.length, 1, `one jupyter-server: ${before.join(' ')}`)
    await s.commands.run(`kill -9 ${before[0]}`, { user: 'root' })
    const answer = await answerAfter(s, Date.now())
    console.log(`[e2b code interpreter] runCode answered again ${answer.ms} ms after jupyter was killed`)
    assert.ok(answer.ms < RECOVERY_MS, `runCode answered ${answer.ms} ms after the kill`)
    assert.equal(answer.error, 'NameError', 'a new jupyter, the old state gone')
    const after = await pids(s, 'jupyter[-]server')
    assert.ok(after.length === 1 && after[0] !== before[0], `a new jupyter (${before.join(' ')} → ${after.join(' ')})`)
  })
})
