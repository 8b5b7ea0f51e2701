// The Sandlot SDK: create (holding the sandbox) → first command output, a command in a running
// sandbox, a small file round trip, and reconnect (a new hold) → first command output.
import { Sandbox } from 'sandlot'
import { apiKey, apiUrl } from '../test/helpers.js'
import { summary, timed } from './stats.js'

const opts = { apiUrl, apiKey: apiKey() }
const N_CREATE = Number(process.env.BENCH_CREATE ?? 20)
const N_EXEC = Number(process.env.BENCH_EXEC ?? 200)

await (await Sandbox.create(opts)).kill() // warm-up

const created: Sandbox[] = []
const create = await timed(N_CREATE, async () => {
  const s = await Sandbox.create(opts)
  const r = await s.process.startAndWait('echo hi')
  if (r.stdout !== 'hi') throw new Error(`unexpected output ${JSON.stringify(r.stdout)}`)
  created.push(s)
})
for (const s of created) await s.kill()

const s = await Sandbox.create(opts)
const exec = await timed(N_EXEC, async () => {
  await s.process.startAndWait('true')
})
const files = await timed(N_EXEC, async (i) => {
  await s.filesystem.write(`/tmp/f${i}`, 'x'.repeat(1024))
  if ((await s.filesystem.read(`/tmp/f${i}`)).length !== 1024) throw new Error('short read')
})
const reconnect = await timed(N_CREATE, async () => {
  const again = await Sandbox.reconnect(s.id, opts)
  await again.process.startAndWait('true')
  await again.close()
})
await s.kill()

console.log('\n| measure (Sandlot SDK) | result |\n|---|---|')
console.log(`| \`Sandbox.create()\` → \`process.startAndWait('echo hi')\` done (ms, n=${N_CREATE}) | ${summary(create)} |`)
console.log(`| \`process.startAndWait('true')\` in a running sandbox (ms, n=${N_EXEC}) | ${summary(exec)} |`)
console.log(`| \`filesystem.write\` + \`read\` of 1 KiB (ms, n=${N_EXEC}) | ${summary(files)} |`)
console.log(`| \`Sandbox.reconnect(id)\` → a command done → \`close()\` (ms, n=${N_CREATE}) | ${summary(reconnect)} |`)
