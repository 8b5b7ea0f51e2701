// A neighbour's view while another sandbox is abused (abuse.test.ts), from a process of its own so
// that the abuse's own client work never counts against the daemon: asks about the neighbour (REST)
// every ~5 ms and runs `true` in it every ~20 ms until its stdin closes; then goes on asking until it
// has MIN_API_SAMPLES answers (at most 10 s more), so that a short abuse still gives a p99 that is a
// percentile, not its one slowest call. Prints "started" after its first answer, and at the end the
// latencies (ms) as one JSON line.
// Usage: node --import tsx test/proof/neighbour-probe.ts SANDBOX_ID MIN_API_SAMPLES
import assert from 'node:assert/strict'
import { api, run } from '../helpers.js'

const id = process.argv[2]!
const MIN_API_SAMPLES = Number(process.argv[3])
const samples = { api: [] as number[], exec: [] as number[] }
let doneAt = 0
process.stdin.on('data', () => {})
process.stdin.on('end', () => (doneAt = Date.now()))
const loop = async (call: () => Promise<void>, into: number[], everyMs: number, more: () => boolean) => {
  const deadline = Date.now() + 1_800_000
  while ((!doneAt || more()) && Date.now() < deadline) {
    const t = performance.now()
    await call()
    into.push(performance.now() - t)
    if (samples.api.length === 1 && into === samples.api) process.stdout.write('started\n')
    await new Promise((r) => setTimeout(r, everyMs))
  }
}
await Promise.all([
  loop(async () => assert.equal((await api('GET', `/api/v1/sandboxes/${id}`)).status, 200), samples.api, 5, () => samples.api.length < MIN_API_SAMPLES && Date.now() - doneAt < 10_000),
  loop(async () => assert.equal((await run(id, 'true')).exitCode, 0), samples.exec, 20, () => false),
])
process.stdout.write(`${JSON.stringify(samples)}\n`)
