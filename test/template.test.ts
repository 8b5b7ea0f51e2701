// The base template build: a failed build says why and leaves no half-template behind.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, test } from 'node:test'
import { spawnDaemon, waitFor } from './helpers.js'

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
    // Nothing listens on port 9: every package download fails.
    const server = spawnDaemon(port, { SANDLOT_HOME: home, SANDLOT_DEBIAN_MIRROR: 'http://127.0.0.1:9/debian', SANDLOT_DEBIAN_SECURITY_MIRROR: 'http://127.0.0.1:9/debian-security' })
    try {
      const message = await waitFor(async () => {
        const res = await fetch(`${server.url}/health`).catch(() => undefined)
        const body = res && ((await res.json()) as { message?: string })
        return body?.message && !/preparing|starting/.test(body.message) ? body.message : undefined
      }, 120_000, 'the build to fail')
      assert.match(message, /mmdebstrap failed/)
      assert.match(message, /127\.0\.0\.1:9/, 'the reason names what could not be reached')
      assert.deepEqual(tree(path.join(home, 'templates')).filter((f) => /rootfs|build|\.tar/.test(f)), [])
      // The server stays up and says the same to clients that try to create.
      const key = fs.readFileSync(path.join(home, 'api-key'), 'utf8').trim()
      const res = await fetch(`${server.url}/api/v1/sandboxes`, { method: 'POST', headers: { 'x-api-key': key, 'content-type': 'application/json' }, body: '{}' })
      assert.equal(res.status, 503)
      assert.match(((await res.json()) as { message: string }).message, /mmdebstrap failed/)
    } finally {
      await server.stop()
    }
  })
})

describe('template builds on disk', () => {
  test('builds no sandbox uses and scratch of interrupted builds are removed at start', async () => {
    const templatesDir = path.resolve('.sandlot-test/templates')
    const templates = path.join(templatesDir, 'base')
    const oldHash = '00000000deadbeef'
    const current = fs.readdirSync(templates).find((d) => d !== oldHash && fs.existsSync(path.join(templates, d, 'rootfs/etc/os-release')))!
    // An older recipe's build, and what a build killed half-way left (its process is gone).
    const old = path.join(templates, oldHash)
    fs.mkdirSync(path.join(old, 'rootfs/etc'), { recursive: true })
    fs.writeFileSync(path.join(old, 'rootfs/etc/os-release'), 'old')
    const deadPid = spawnSync('true').pid
    const scratch = path.join(templates, current, `rootfs.build-${deadPid}-1`)
    fs.mkdirSync(path.join(scratch, 'usr'), { recursive: true })
    fs.writeFileSync(`${scratch}.tar`, 'partial')

    const home = path.resolve('.sandlot-test/template-prune')
    const server = spawnDaemon(port, { SANDLOT_HOME: home, SANDLOT_TEMPLATES_DIR: templatesDir })
    try {
      await waitFor(() => fetch(`${server.url}/health`).then((r) => r.ok, () => false), 60_000, 'the server')
      assert.ok(!fs.existsSync(old), 'the unused old build is gone')
      assert.ok(!fs.existsSync(scratch) && !fs.existsSync(`${scratch}.tar`), 'the interrupted build is gone')
      assert.ok(fs.existsSync(path.join(templates, current, 'rootfs/etc/os-release')), 'the current build stays')
    } finally {
      await server.stop()
    }
  })
})
