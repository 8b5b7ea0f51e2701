// One server per SANDLOT_HOME: a second one on the suite server's home refuses to start, names the
// first, and leaves it and its sandboxes alone.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { describe, test } from 'node:test'
import { api, apiUrl, createSandbox, home, killSandbox, run } from './helpers.js'

const port = Number(process.env.SANDLOT_TEST_PORT ?? 3190) + 9

describe('the home lock', () => {
  test('a second server on the same SANDLOT_HOME stops at once with a clear message; the first goes on', async () => {
    const s = await createSandbox()
    try {
      const child = spawn(process.execPath, ['packages/server/dist/main.js'], {
        env: { ...process.env, SANDLOT_HOME: home, SANDLOT_LISTEN: `127.0.0.1:${port}`, SANDLOT_BRIDGE: `sandlot${port}`, SANDLOT_SUBNET: `10.${(port >> 8) & 255}.${port & 255}.0/24` },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let out = ''
      child.stdout.on('data', (d: Buffer) => (out += d.toString()))
      child.stderr.on('data', (d: Buffer) => (out += d.toString()))
      const code = await new Promise<number | null>((resolve) => {
        const timer = setTimeout(() => {
          child.kill('SIGKILL')
          resolve(null)
        }, 20_000)
        child.on('exit', (c) => {
          clearTimeout(timer)
          resolve(c)
        })
      })
      assert.notEqual(code, 0, 'the second server must not start')
      assert.notEqual(code, null, 'the second server must stop on its own')
      assert.match(out, /Another Sandlot server \(pid \d+\) is using SANDLOT_HOME=/)
      // The first server and its sandbox are untouched.
      assert.equal((await fetch(`${apiUrl}/health`)).status, 200)
      assert.equal((await api('GET', `/api/v1/sandboxes/${s.id}`)).status, 200)
      assert.equal((await run(s.id, 'echo still here')).stdout, 'still here\n')
    } finally {
      await killSandbox(s.id)
    }
  })
})
