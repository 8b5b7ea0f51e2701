// A neighbour's view while another sandbox is abused (abuse.test.ts), from a process of its own so
// that the abuse's own client work never counts against the daemon: asks about the neighbour (REST)
// and runs `true` in it, each every ~20 ms, until its stdin closes; prints "started" after its first
// answer, and at the end the latencies (ms) as one JSON line. Usage: node --import tsx test/proof/neighbour-probe.ts SANDBOX_ID
import assert from 'node:assert/strict'
import { api, run } from '../helpers.js'

const id = process.argv[2]!
const samples = { api: [] as number[], exec: [] as number[] }
let done = false
process.stdin.on('data', () => {})
process.stdin.on('end', () => (done = true))
const loop = async (call: () => Promise<void>, into: number[]) => {
  const deadline = Date.now() + 1_800_000
  while (!done && Date.now() < deadline) {
    const t = performance.now()
    await call()
    into.push(performance.now() - t)
    if (samples.api.length === 1 && into === samples.api) process.stdout.write('started\n')
    await new Promise((r) => setTimeout(r, 20))
  }
}
await Promise.all([
  loop(async () => assert.equal((await api('GET', `/api/v1/sandboxes/${id}`)).status, 200), samples.api),
  loop(async () => assert.equal((await run(id, 'true')).exitCode, 0), samples.exec),
])
process.stdout.write(`${JSON.stringify(samples)}\n`)
