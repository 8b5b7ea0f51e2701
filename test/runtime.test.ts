// The runtime is a setting: a missing or unusable one gives a clear error, never a half-working server.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, test } from 'node:test'
import { spawnDaemon, waitFor } from './helpers.js'

const port = Number(process.env.SANDLOT_TEST_PORT ?? 3190) + 2
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0

/** Starts a server with the given runtime and returns what /health says once it has decided. */
async function healthWith(runtime: string): Promise<{ status: number; message: string }> {
  const home = path.resolve(`.sandlot-test/runtime-${runtime}`)
  fs.rmSync(home, { recursive: true, force: true })
  const server = spawnDaemon(port, { SANDLOT_HOME: home, SANDLOT_RUNTIME: runtime })
  try {
    return await waitFor(async () => {
      const res = await fetch(`${server.url}/health`).catch(() => undefined)
      if (!res) return undefined
      const body = (await res.json()) as { message?: string }
      // 503 "checking…"/"preparing…" means not decided yet.
      if (res.status === 503 && /checking|preparing|starting/.test(body.message ?? '')) return undefined
      return { status: res.status, message: body.message ?? '' }
    }, 60_000, `the ${runtime} server to decide`)
  } finally {
    await server.stop()
  }
}

describe('runtime selection', () => {
  test('an unknown runtime name stops the server with a message', () => {
    const r = spawnSync(process.execPath, ['packages/server/dist/main.js'], {
      env: { ...process.env, SANDLOT_RUNTIME: 'docker', SANDLOT_HOME: path.resolve('.sandlot-test/runtime-bad') },
      encoding: 'utf8',
    })
    assert.equal(r.status, 1)
    assert.match(r.stderr, /SANDLOT_RUNTIME must be runc, crun or runsc, got "docker"/)
  })

  test('a runtime that is not installed is named, with how to install it', { skip: has('runsc') && 'runsc is installed here' }, async () => {
    const h = await healthWith('runsc')
    assert.equal(h.status, 503)
    assert.match(h.message, /"runsc".*not installed.*apt-get install/)
  })

  test('crun either runs sandboxes or says why it cannot on this host', { skip: !has('crun') && 'crun is not installed' }, async () => {
    const h = await healthWith('crun')
    if (h.status === 200) return
    assert.equal(h.status, 503)
    assert.match(h.message, /The runtime "crun" cannot run sandboxes on this host: .+/)
  })
})
