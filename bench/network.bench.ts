// Sandbox networking: throughput between a sandbox and a host of the test internet (test/internet.ts,
// a network namespace on this machine), straight through NAT and through the egress proxy (a domain
// rule), each way, 100 MiB a run. On a daemon of its own whose resolver knows the test internet's names.
import { ALL_TRAFFIC, Sandbox } from 'e2b'
import fs from 'node:fs'
import path from 'node:path'
import { spawnDaemon, waitFor } from '../test/helpers.js'
import { DNS, HOST_A, startInternet } from '../test/internet.js'
import { fmt, stats } from './stats.js'

const RUNS = Number(process.env.BENCH_NET_RUNS ?? 5)
const SIZE = 100 * 1024 * 1024
const port = Number(process.env.SANDLOT_BENCH_PORT ?? 3193) + 10
const home = path.resolve(`.sandlot-test/bench-network-${port}`)

const internet = await startInternet()
fs.rmSync(home, { recursive: true, force: true })
const daemon = spawnDaemon(port, { SANDLOT_HOME: home, SANDLOT_DNS_SERVERS: DNS })
try {
  await waitFor(async () => (await fetch(`${daemon.url}/health`).catch(() => undefined))?.ok, 120_000, 'the network bench daemon')
  process.env.E2B_API_URL = daemon.url
  process.env.E2B_SANDBOX_URL = daemon.url
  process.env.E2B_API_KEY = fs.readFileSync(path.join(home, 'api-key'), 'utf8').trim()

  const nat = await Sandbox.create()
  const proxied = await Sandbox.create({ network: { allowOut: ['allowed.test'], denyOut: [ALL_TRAFFIC] } })
  const measure = async (s: Sandbox, cmd: string) => {
    const mbps: number[] = []
    for (let i = 0; i < RUNS; i++) {
      const r = await s.commands.run(cmd, { timeoutMs: 120_000 })
      mbps.push(Number(r.stdout.trim()) / 1e6)
    }
    return stats(mbps)
  }
  const down = (host: string) => `curl -sS -o /dev/null -w '%{speed_download}' http://${host}/bytes/${SIZE}`
  const up = (host: string) => `head -c ${SIZE} /dev/zero | curl -sS -o /dev/null -T - -w '%{speed_upload}' http://${host}/sink`
  const rows = [
    ['download, NAT (no rules)', await measure(nat, down(HOST_A))],
    ['upload, NAT (no rules)', await measure(nat, up(HOST_A))],
    ['download through the egress proxy (allowOut: allowed.test)', await measure(proxied, down('allowed.test'))],
    ['upload through the egress proxy (allowOut: allowed.test)', await measure(proxied, up('allowed.test'))],
  ] as const
  console.log(`\n| sandbox ↔ test-internet host over HTTP, 100 MiB (MB/s, n=${RUNS}) | p50 | min | max |\n|---|---|---|---|`)
  for (const [name, s] of rows) console.log(`| ${name} | ${fmt(s.p50)} | ${fmt(s.min)} | ${fmt(s.max)} |`)
  await nat.kill()
  await proxied.kill()
} finally {
  await daemon.stop()
  await internet.stop()
}
