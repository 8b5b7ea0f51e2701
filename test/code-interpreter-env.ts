// The code-interpreter-v1 template for the code interpreter suites: Sandlot builds it on first use
// (minutes the first time, in the server's home; then from its layer cache), and a create waits for
// it only so long before a 503 that says it is building. This waits until a create succeeds, once
// per test file; the suites share the one build.
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

/** Code that prints a line every 100 ms for a minute (a run to cut short). */
export const STREAMING = 'import time\nfor i in range(600):\n    print(i, flush=True)\n    time.sleep(0.1)'

/**
 * How soon runCode must answer again after the execution server or jupyter was killed. It took
 * 5–12 s on this 2-CPU host under the load of a suite (the new kernels starting, mostly): the
 * bound leaves room for CI's load.
 */
export const RECOVERY_MS = 30_000
