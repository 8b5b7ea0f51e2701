// npm run bench: sets up like npm start, runs a benchmark server on its own home and port, then the
// benchmark files (bench/*.bench.ts) against it.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import { startHarnessServer } from './harness.mjs'
import { root, setup } from './setup.mjs'

setup()
// A /16 of its own (the suites' servers have /24s): the density measure goes up to 1000 sandboxes.
process.env.SANDLOT_SUBNET ??= process.env.SANDLOT_BENCH_SUBNET ?? '10.213.0.0/16'
const server = await startHarnessServer({ name: 'bench-home', port: Number(process.env.SANDLOT_BENCH_PORT ?? 3193) })
const files = process.argv.slice(2)
const suite = files.length ? files : fs.readdirSync(`${root}/bench`).filter((f) => f.endsWith('.bench.ts')).map((f) => `bench/${f}`)
let code = 0
for (const file of suite) {
  const child = spawn(process.execPath, ['--import', 'tsx', file], { cwd: root, env: server.env, stdio: 'inherit' })
  code ||= await new Promise((resolve) => child.on('exit', (c, s) => resolve(c ?? (s ? 1 : 0))))
}
await server.close()
process.exit(code)
