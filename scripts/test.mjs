// npm test: sets up like npm start, runs a test server on its own home and port, then the whole
// suite against it (real runc sandboxes, real HTTP, real SQLite). Arguments select test files.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import { startHarnessServer } from './harness.mjs'
import { root, setup } from './setup.mjs'

setup({ forTests: true })
// SANDLOT_TEST_NAME and SANDLOT_TEST_PORT let several suites run side by side (own home and port).
const server = await startHarnessServer({ name: process.env.SANDLOT_TEST_NAME ?? 'home', port: Number(process.env.SANDLOT_TEST_PORT ?? 3190) })

const inDir = (dir) => (fs.existsSync(`${root}/${dir}`) ? fs.readdirSync(`${root}/${dir}`) : []).filter((f) => f.endsWith('.test.ts')).map((f) => `${dir}/${f}`)
const files = process.argv.slice(2)
const suite = files.length ? files : [...inDir('test'), ...inDir('test/proof'), ...inDir('packages/agent/test'), ...inDir('packages/code-interpreter/test')]
const tests = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', ...suite], { cwd: root, env: server.env, stdio: 'inherit' })
const code = await new Promise((resolve) => tests.on('exit', (c, s) => resolve(c ?? (s ? 1 : 0))))

await server.close()
process.exit(code)
