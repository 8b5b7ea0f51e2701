// Runs a sandlotd child process on its own home and port (shared template cache) for the test and
// benchmark suites, and waits until it can create sandboxes.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { root } from './setup.mjs'

export const scratch = path.join(root, '.sandlot-test')

/**
 * A bridge and subnet of the server's own, from its port, so that servers side by side (suites,
 * helpers) never share one; settings the caller already has are kept.
 */
export function networkEnv(port, env = process.env) {
  return {
    SANDLOT_BRIDGE: env.SANDLOT_BRIDGE ?? `sandlot${port}`,
    // A /24 named by the port's two bytes: no two ports share one.
    SANDLOT_SUBNET: env.SANDLOT_SUBNET ?? `10.${(port >> 8) & 255}.${port & 255}.0/24`,
  }
}

export async function startHarnessServer({ name, port }) {
  const home = path.join(scratch, name)
  const url = `http://127.0.0.1:${port}`
  const env = {
    ...process.env,
    SANDLOT_HOME: home,
    SANDLOT_TEMPLATES_DIR: path.join(scratch, 'templates'),
    SANDLOT_LISTEN: `127.0.0.1:${port}`,
    SANDLOT_API_URL: url,
    ...networkEnv(port),
  }
  delete env.SANDLOT_API_KEY
  fs.mkdirSync(scratch, { recursive: true })
  const logFile = path.join(scratch, `${name}-server.log`)
  const log = fs.openSync(logFile, 'w')
  const server = spawn(process.execPath, ['packages/server/dist/main.js'], { cwd: root, env, stdio: ['ignore', log, log] })
  const stop = () => server.exitCode === null && server.kill('SIGTERM')
  process.on('exit', stop)

  console.log(`[harness] waiting for the server at ${url} (the first run builds the base template)`)
  const deadline = Date.now() + 10 * 60_000
  for (;;) {
    if (server.exitCode !== null) {
      console.error(fs.readFileSync(logFile, 'utf8').slice(-4000))
      throw new Error(`the ${name} server exited; its log is above`)
    }
    const health = await fetch(`${url}/health`).then(async (r) => ({ ok: r.ok, body: await r.json() }), () => undefined)
    if (health?.ok) break
    // A 503 that is not about starting up is final: the server says why it cannot create sandboxes.
    if (health && !/starting|preparing|checking/.test(health.body?.message ?? '')) {
      throw new Error(`the ${name} server cannot create sandboxes: ${health.body?.message}`)
    }
    if (Date.now() > deadline) throw new Error('the server did not become ready within 10 minutes')
    await new Promise((r) => setTimeout(r, 500))
  }

  const key = fs.readFileSync(path.join(home, 'api-key'), 'utf8').trim()
  return {
    env,
    url,
    /** Destroys every sandbox left on the server, then stops it. */
    async close() {
      const list = await fetch(`${url}/api/v1/sandboxes`, { headers: { 'x-api-key': key } }).then((r) => r.json(), () => [])
      for (const s of Array.isArray(list) ? list : []) {
        await fetch(`${url}/api/v1/sandboxes/${s.id}`, { method: 'DELETE', headers: { 'x-api-key': key } }).catch(() => {})
      }
      stop()
    },
  }
}
