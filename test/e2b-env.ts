// Points the official e2b SDK at the test server the way a user would: three environment
// variables, set before any SDK call (the SDK reads them when it makes each request).
// Every e2b-*.test.ts imports this first and then drives Sandlot only through `import … from 'e2b'`.
import { Sandbox, type SandboxOpts } from 'e2b'
import { after } from 'node:test'
import { apiKey, apiUrl } from './helpers.js'

process.env.E2B_API_URL = apiUrl
process.env.E2B_SANDBOX_URL = apiUrl
process.env.E2B_API_KEY = apiKey()

export { apiKey, apiUrl }

/** Tags the sandboxes of one test run, so list filters see only ours on a shared server. */
export const RUN = `run-${process.pid}-${Date.now().toString(36)}`

const created = new Set<string>()
/** Kills every sandbox `create` made that a test did not kill itself, when the file ends. */
after(async () => {
  await Promise.all([...created].map((id) => Sandbox.kill(id).catch(() => false)))
})

/** Sandbox.create, remembered for the cleanup above. */
export async function create(opts: SandboxOpts = {}): Promise<Sandbox> {
  const s = await Sandbox.create({ ...opts, metadata: { suite: 'e2b', run: RUN, ...opts.metadata } })
  created.add(s.sandboxId)
  return s
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Polls `fn` every 100 ms until it returns a truthy value or `timeoutMs` passes. */
export async function until<T>(fn: () => Promise<T | undefined | false>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v) return v
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(100)
  }
}

export const text = (b: Uint8Array) => Buffer.from(b).toString()
export const bytes = (s: string) => new TextEncoder().encode(s)
