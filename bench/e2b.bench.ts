// The official e2b SDK against Sandlot, configured only by E2B_API_URL, E2B_SANDBOX_URL and
// E2B_API_KEY: create → first command output, a command, and a small file round trip.
import { Sandbox } from 'e2b'
import { apiKey, apiUrl } from '../test/helpers.js'
import { summary, timed } from './stats.js'

process.env.E2B_API_URL = apiUrl
process.env.E2B_SANDBOX_URL = apiUrl
process.env.E2B_API_KEY = apiKey()

const N_CREATE = Number(process.env.BENCH_CREATE ?? 20)
const N_EXEC = Number(process.env.BENCH_EXEC ?? 200)

await (await Sandbox.create()).kill() // warm-up

const created: Sandbox[] = []
const create = await timed(N_CREATE, async () => {
  const s = await Sandbox.create()
  const r = await s.commands.run('echo hi')
  if (r.stdout !== 'hi\n') throw new Error(`unexpected output ${JSON.stringify(r.stdout)}`)
  created.push(s)
})
for (const s of created) await s.kill()

const s = await Sandbox.create()
const exec = await timed(N_EXEC, async () => {
  await s.commands.run('true')
})
const files = await timed(N_EXEC, async (i) => {
  await s.files.write(`/tmp/f${i}`, 'x'.repeat(1024))
  if ((await s.files.read(`/tmp/f${i}`)).length !== 1024) throw new Error('short read')
})
await s.kill()

console.log('\n| measure (e2b 2.51.0 SDK) | result |\n|---|---|')
console.log(`| \`Sandbox.create()\` → \`commands.run('echo hi')\` done (ms, n=${N_CREATE}) | ${summary(create)} |`)
console.log(`| \`commands.run('true')\` in a running sandbox (ms, n=${N_EXEC}) | ${summary(exec)} |`)
console.log(`| \`files.write\` + \`files.read\` of 1 KiB (ms, n=${N_EXEC}) | ${summary(files)} |`)
