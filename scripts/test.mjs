// npm test: sets up like npm start, runs a test server on its own home and port, then the whole
// suite against it (real runc sandboxes, real HTTP, real SQLite).
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { root, setup } from './setup.mjs'

setup()

const testDir = path.join(root, '.sandlot-test')
const home = path.join(testDir, 'home')
const env = {
  ...process.env,
  SANDLOT_HOME: home,
  SANDLOT_TEMPLATES_DIR: path.join(testDir, 'templates'),
  SANDLOT_LISTEN: `127.0.0.1:${process.env.SANDLOT_TEST_PORT ?? 3190}`,
  SANDLOT_API_URL: `http://127.0.0.1:${process.env.SANDLOT_TEST_PORT ?? 3190}`,
}
delete env.SANDLOT_API_KEY
fs.mkdirSync(testDir, { recursive: true })

const serverLog = fs.openSync(path.join(testDir, 'server.log'), 'w')
const server = spawn(process.execPath, ['packages/server/dist/main.js'], { cwd: root, env, stdio: ['ignore', serverLog, serverLog] })
const stopServer = () => server.exitCode === null && server.kill('SIGTERM')
process.on('exit', stopServer)

console.log(`[test] waiting for the test server at ${env.SANDLOT_API_URL} (the first run builds the base template)`)
const deadline = Date.now() + 10 * 60_000
for (;;) {
  if (server.exitCode !== null) {
    console.error(fs.readFileSync(path.join(testDir, 'server.log'), 'utf8').slice(-4000))
    throw new Error('the test server exited; its log is above')
  }
  const ok = await fetch(`${env.SANDLOT_API_URL}/health`).then((r) => r.ok, () => false)
  if (ok) break
  if (Date.now() > deadline) throw new Error('the test server did not become ready within 10 minutes')
  await new Promise((r) => setTimeout(r, 500))
}

const files = process.argv.slice(2)
const suite = files.length
  ? files
  : [
      ...fs.readdirSync(path.join(root, 'test')).filter((f) => f.endsWith('.test.ts')).map((f) => `test/${f}`),
      ...fs.readdirSync(path.join(root, 'packages/agent/test')).filter((f) => f.endsWith('.test.ts')).map((f) => `packages/agent/test/${f}`),
    ]
const tests = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', ...suite], { cwd: root, env, stdio: 'inherit' })
const code = await new Promise((resolve) => tests.on('exit', (c, s) => resolve(c ?? (s ? 1 : 0))))

// Leave nothing behind: every sandbox the suite created is destroyed.
const key = fs.readFileSync(path.join(home, 'api-key'), 'utf8').trim()
const list = await fetch(`${env.SANDLOT_API_URL}/api/v1/sandboxes`, { headers: { 'x-api-key': key } }).then((r) => r.json(), () => [])
for (const s of Array.isArray(list) ? list : []) {
  await fetch(`${env.SANDLOT_API_URL}/api/v1/sandboxes/${s.id}`, { method: 'DELETE', headers: { 'x-api-key': key } }).catch(() => {})
}
stopServer()
process.exit(code)
