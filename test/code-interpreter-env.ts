// The code-interpreter-v1 template for the code interpreter suites: Sandlot builds it on first use
// (minutes the first time, in the server's home; then from its layer cache), and a create waits for
// it only so long before a 503 that says it is building. This waits until a create succeeds, once
// per test file; the suites share the one build.
import assert from 'node:assert/strict'
import { api } from './helpers.js'

export const TEMPLATE = 'code-interpreter-v1'

/** Resolves once a sandbox of the template can be created (the first build can take minutes). */
export async function templateReady(timeoutMs = 15 * 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const r = await api('POST', '/api/v1/sandboxes', { template: TEMPLATE })
    if (r.status === 201) {
      await api('DELETE', `/api/v1/sandboxes/${r.json.id}`)
      return
    }
    if (r.status !== 503 || Date.now() > deadline) throw new Error(`cannot create a ${TEMPLATE} sandbox: ${r.status} ${JSON.stringify(r.json)}`)
    console.log(`[code interpreter] ${r.json?.message}`)
  }
}

/** Bar, pie and box-and-whisker charts from matplotlib, and the chart data each must come back as (both suites). */
export const CHARTS = {
  bar: {
    code: `
import matplotlib.pyplot as plt
plt.figure()
plt.bar(['Author A', 'Author B', 'Author C', 'Author D'], [100, 200, 300, 400])
plt.xlabel('Authors'); plt.ylabel('Number of Books Sold'); plt.title('Book Sales by Authors')
plt.show()
`,
    check(bar: any) {
      assert.equal(bar.type, 'bar')
      assert.equal(bar.title, 'Book Sales by Authors')
      assert.equal(bar.x_label, 'Authors')
      assert.equal(bar.x_unit, null)
      assert.deepEqual(bar.elements.map((b: any) => b.label), ['Author A', 'Author B', 'Author C', 'Author D'])
      assert.deepEqual(bar.elements.map((b: any) => b.value), [100, 200, 300, 400])
    },
  },
  pie: {
    code: `
import matplotlib.pyplot as plt
fig, ax = plt.subplots()
ax.pie([90, 10], labels=["No", "No, in blue"], startangle=90)
plt.title('Will I wake up early tomorrow?')
plt.show()
`,
    check(pie: any) {
      assert.equal(pie.type, 'pie')
      assert.equal(pie.title, 'Will I wake up early tomorrow?')
      assert.deepEqual(pie.elements.map((p: any) => [p.label, p.angle, p.radius]), [['No', 324, 1], ['No, in blue', 36, 1]])
    },
  },
  box: {
    code: `
import matplotlib.pyplot as plt
fig, ax = plt.subplots()
data = {'Class A': [85, 90, 78, 92, 88], 'Class B': [95, 89, 76, 91, 84, 87], 'Class C': [75, 82, 88, 79, 86]}
ax.set_title('Exam Scores Distribution'); ax.set_xlabel('Class'); ax.set_ylabel('Score')
ax.boxplot(data.values(), labels=data.keys(), patch_artist=True)
plt.show()
`,
    check(box: any) {
      assert.equal(box.type, 'box_and_whisker')
      assert.equal(box.title, 'Exam Scores Distribution')
      assert.deepEqual(box.elements.map((b: any) => b.label), ['Class A', 'Class B', 'Class C'])
      assert.deepEqual(box.elements.map((b: any) => b.outliers), [[], [76], []])
      assert.deepEqual(box.elements.map((b: any) => [b.min, b.first_quartile, b.median, b.third_quartile, b.max]), [
        [78, 85, 88, 90, 92],
        [84, 84.75, 88, 90.5, 95],
        [75, 79, 82, 86, 88],
      ])
    },
  },
}

/**
 * Code whose stdout, stderr, a displayed result and its error must reach the callbacks in this
 * order, the first while the run still goes (it sleeps a second before its last output).
 */
export const IN_ORDER = {
  code: [
    'import sys, time',
    'from IPython.display import display, Markdown',
    'print("one", flush=True)',
    'print("two", file=sys.stderr, flush=True)',
    'display(Markdown("**three**"))',
    'time.sleep(1)',
    'print("four", flush=True)',
    'raise ValueError("five")',
  ].join('\n'),
  events: ['stdout one\n', 'stderr two\n', 'result **three**', 'stdout four\n', 'error ValueError five'],
}

/** Code that prints a line every 100 ms for a minute (a run to cut short). */
export const STREAMING = 'import time\nfor i in range(600):\n    print(i, flush=True)\n    time.sleep(0.1)'

/**
 * How soon runCode must answer again after the execution server or jupyter was killed. It took
 * 5–12 s on this 2-CPU host under the load of a suite (the new kernels starting, mostly): the
 * bound leaves room for CI's load.
 */
export const RECOVERY_MS = 30_000

/**
 * Starts a run of STREAMING (`start` is given its onStdout) and resolves once its first line came
 * (or it ended first), with its outcome to await: its result, or the error it ended with.
 */
export async function streamingRun<T>(start: (onStdout: () => void) => Promise<T>): Promise<{ outcome: Promise<T | Error> }> {
  let firstLine!: () => void
  const printing = new Promise<void>((r) => (firstLine = r))
  const outcome = start(() => firstLine()).then((v) => v, (err: Error) => err)
  await Promise.race([printing, outcome])
  return { outcome }
}
