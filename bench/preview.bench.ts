// Port previews: the latency a request gains by going through Sandlot's port, against the same
// request made inside the sandbox. One curl process on each side makes N requests to the same app
// (test/fixtures/preview_app.py, an empty answer), each request's time_total written by curl
// itself, so both sides pay the same client. Keep-alive (one connection for all, as curl reuses it)
// and a new connection per request. The app listens on all addresses (port 8001: the daemon dials
// the sandbox's address) and again on 127.0.0.1 only (port 8002: through the agent's tunnel).
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { apiKey, apiUrl, createSandbox, home, killSandbox, run, startBackground, waitFor } from '../test/helpers.js'
import { fmt, stats, summary } from './stats.js'

const N = Number(process.env.BENCH_PREVIEW ?? 300)
const port = Number(new URL(apiUrl).port)
const sh = promisify(execFile)

const sb = await createSandbox({ metadata: { suite: 'bench-preview' } })
try {
  const app = fs.readFileSync(path.join(import.meta.dirname, '../test/fixtures/preview_app.py'))
  const up = await fetch(`${apiUrl}/files?path=/tmp/preview_app.py&username=user`, {
    method: 'POST',
    headers: { 'e2b-sandbox-id': sb.id, 'x-api-key': apiKey(), 'content-type': 'application/octet-stream' },
    body: app,
  })
  if (up.status !== 200) throw new Error(`upload failed: ${up.status}`)
  await startBackground(sb.id, 'python3 /tmp/preview_app.py 0.0.0.0 8001 > /dev/null 2>&1')
  await startBackground(sb.id, 'python3 /tmp/preview_app.py 127.0.0.1 8002 > /dev/null 2>&1')
  for (const p of ['8001', '8002']) await waitFor(async () => (await run(sb.id, `ss -Hltn 'sport = :${p}'`)).stdout.includes(p), 20_000, 'the app')

  const host = `8001-${sb.id}.sandlot.localhost:${port}`
  const loopbackHost = `8002-${sb.id}.sandlot.localhost:${port}`
  // curl's URL globbing: N requests in one process, on one connection unless told to close it.
  const curlArgs = (url: string, close: boolean) => ['-s', '-w', '%{time_total}\n', ...(close ? ['-H', 'Connection: close'] : []), `${url}/bytes/0?[1-${N}]`]
  const times = (out: string) => out.trim().split('\n').map((s) => Number(s) * 1000)
  const inside = async (close: boolean) => times((await run(sb.id, `curl ${curlArgs('http://127.0.0.1:8001', close).map((a) => `'${a}'`).join(' ')}`)).stdout)
  const through = async (scheme: 'http' | 'https', close: boolean, to = host) =>
    times((await sh('curl', [...(scheme === 'https' ? ['--cacert', path.join(home, 'tls/ca.crt')] : []), ...curlArgs(`${scheme}://${to}`, close)], { maxBuffer: 1 << 24 })).stdout)

  // Warm-up: the daemon's pools, python's threads, curl's caches.
  await inside(false)
  await through('http', false)
  await through('http', false, loopbackHost)
  const rows: [string, number[]][] = [
    ['inside the sandbox, keep-alive', await inside(false)],
    ['through Sandlot (http, Host), keep-alive', await through('http', false)],
    ['through Sandlot (https, Host), keep-alive', await through('https', false)],
    ['inside the sandbox, a new connection each', await inside(true)],
    ['through Sandlot (http), a new connection each', await through('http', true)],
    ['through Sandlot (https), a new connection each', await through('https', true)],
    ['through Sandlot (http), server on 127.0.0.1 only (agent tunnel), keep-alive', await through('http', false, loopbackHost)],
    ['through Sandlot (http), server on 127.0.0.1 only (agent tunnel), a new connection each', await through('http', true, loopbackHost)],
  ]
  console.log(`\n| preview request, \`GET /bytes/0\` by curl (ms, n=${N}, load average ${os.loadavg()[0]!.toFixed(1)}) | result |\n|---|---|`)
  for (const [what, ms] of rows) console.log(`| ${what} | ${summary(ms)} |`)
  const p50 = (ms: number[]) => stats(ms).p50
  console.log(`| added by Sandlot, keep-alive (p50 through − p50 inside): http / https | ${fmt(p50(rows[1]![1]) - p50(rows[0]![1]))} / ${fmt(p50(rows[2]![1]) - p50(rows[0]![1]))} |`)
  console.log(`| added by Sandlot, new connections (p50): http / https | ${fmt(p50(rows[4]![1]) - p50(rows[3]![1]))} / ${fmt(p50(rows[5]![1]) - p50(rows[3]![1]))} |`)
} finally {
  await killSandbox(sb.id)
}
