// runCode('1 + 1') in a warm context, A/B in one code interpreter sandbox: jupyter-server with the
// template's configuration (kernel WebSockets without Nagle's algorithm), then without it, then
// with it again (jupyter restarted each time by its supervisor). Not part of `npm run bench`; run
// it on a suite's server: `node scripts/test.mjs bench/run-code-ab.ts` (it builds the template).
import { Sandbox } from 'sandlot'
import { templateReady, TEMPLATE } from '../test/code-interpreter-env.js'
import { run } from '../test/helpers.js'
import { summary, timed } from './stats.js'

const RUNS = Number(process.env.RUNS ?? 100)
const CONFIG = '/opt/code-interpreter/jupyter_server_config.py'

await templateReady()
const s = await Sandbox.create(TEMPLATE, { metadata: { bench: 'run-code-ab' } })
const root = (cmd: string) => run(s.id, cmd, { user: 'root' })

/** jupyter killed; resolves once runCode answers from the new one, warmed. */
async function restartJupyter(): Promise<void> {
  await root("kill -9 $(pgrep -f 'jupyter[-]server')")
  for (;;) {
    await new Promise((r) => setTimeout(r, 500))
    const e = await s.runCode('1 + 1', { timeout: 10_000 }).catch(() => undefined)
    if (e?.text === '2') break
  }
}

async function measure(label: string): Promise<void> {
  for (let i = 0; i < 10; i++) await s.runCode('1 + 1')
  const ms = await timed(RUNS, async () => {
    if ((await s.runCode('1 + 1')).text !== '2') throw new Error('unexpected result')
  })
  console.log(`run_code ${label} (${RUNS} runs): ${summary(ms)} ms`)
}

try {
  await measure('A, with the configuration (no Nagle)')
  // An empty configuration in its place (the supervisor passes --config with the path it found at start).
  await root(`mv ${CONFIG} ${CONFIG}.off && touch ${CONFIG}`)
  await restartJupyter()
  await measure('B, without it (Nagle on)')
  await root(`mv ${CONFIG}.off ${CONFIG}`)
  await restartJupyter()
  await measure('A again, with it')
} finally {
  await s.kill()
}
