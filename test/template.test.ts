// The base template build: a failed build says why and leaves no half-template behind.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, test } from 'node:test'
import { waitFor } from './helpers.js'

const port = Number(process.env.SANDLOT_TEST_PORT ?? 3190) + 3

/** Every file and directory under dir, relative. */
function tree(dir: string): string[] {
  if (!fs.existsSync(dir)) return []
  return fs.readdirSync(dir, { recursive: true }).map(String).sort()
}

describe('the base template', () => {
  test('a failed build says why and leaves nothing behind', async () => {
    const home = path.resolve('.sandlot-test/template-fail')
    fs.rmSync(home, { recursive: true, force: true })
    const server = spawn(process.execPath, ['packages/server/dist/main.js'], {
      // Nothing listens on port 9: every package download fails.
      env: { ...process.env, SANDLOT_HOME: home, SANDLOT_LISTEN: `127.0.0.1:${port}`, SANDLOT_DEBIAN_MIRROR: 'http://127.0.0.1:9/debian', SANDLOT_DEBIAN_SECURITY_MIRROR: 'http://127.0.0.1:9/debian-security' },
      stdio: 'ignore',
    })
    try {
      const message = await waitFor(async () => {
        const res = await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined)
        const body = res && ((await res.json()) as { message?: string })
        return body?.message && !/preparing|starting/.test(body.message) ? body.message : undefined
      }, 120_000, 'the build to fail')
      assert.match(message, /mmdebstrap failed/)
      assert.match(message, /127\.0\.0\.1:9/, 'the reason names what could not be reached')
      assert.deepEqual(tree(path.join(home, 'templates')).filter((f) => /rootfs|build|\.tar/.test(f)), [])
      // The server stays up and says the same to clients that try to create.
      const key = fs.readFileSync(path.join(home, 'api-key'), 'utf8').trim()
      const res = await fetch(`http://127.0.0.1:${port}/api/v1/sandboxes`, { method: 'POST', headers: { 'x-api-key': key, 'content-type': 'application/json' }, body: '{}' })
      assert.equal(res.status, 503)
      assert.match(((await res.json()) as { message: string }).message, /mmdebstrap failed/)
    } finally {
      server.kill('SIGTERM')
      await new Promise((r) => server.once('exit', r))
    }
  })
})
