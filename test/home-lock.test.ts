// One server per SANDLOT_HOME: a second one on the suite server's home refuses to start, names the
// first, and leaves it and its sandboxes alone. A start on a port in use writes nothing.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import { api, apiUrl, createSandbox, home, killSandbox, run } from './helpers.js'

const port = Number(process.env.SANDLOT_TEST_PORT ?? 3190) + 9

/** A server started with `env`, until it exits on its own (20 s at most): its exit code and output. */
async function startAndWait(env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  const child = spawn(process.execPath, ['packages/server/dist/main.js'], {
    env: { ...process.env, SANDLOT_BRIDGE: `sandlot${port}`, SANDLOT_SUBNET: `10.${(port >> 8) & 255}.${port & 255}.0/24`, ...env },
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
  return { code, out }
}

describe('the home lock', () => {
  test('a second server on the same SANDLOT_HOME stops at once with a clear message; the first goes on', async () => {
    const s = await createSandbox()
    try {
      const { code, out } = await startAndWait({ SANDLOT_HOME: home, SANDLOT_LISTEN: `127.0.0.1:${port}` })
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

  test('a start on a port in use says so, and writes no home and no key', async () => {
    const fresh = path.join(os.tmpdir(), `sandlot-unused-home-${process.pid}`)
    const { code, out } = await startAndWait({ SANDLOT_HOME: fresh, SANDLOT_LISTEN: new URL(apiUrl).host })
    assert.equal(code, 1)
    assert.match(out, /127\.0\.0\.1:\d+ is already in use \(another sandlotd, or another server\); stop it or listen elsewhere with SANDLOT_LISTEN=host:port/)
    assert.equal(fs.existsSync(fresh), false, 'no home was made')
  })
})
