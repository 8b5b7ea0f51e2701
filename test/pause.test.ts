// Pause and resume through Sandlot's own SDK, CLI and REST: sandbox.pause() closes the handle and
// Sandbox.reconnect() resumes, with its processes; another client's handle learns of the pause;
// keepAlive(ms, { onTimeout: 'pause' }) pauses at the deadline; the CLI's pause, ls and resume; a
// files-only resume leaves the template's start command alone (a fork runs it); and a hostile sandbox
// that, before a files-only pause, points its runtime files (/etc/hosts, /run/sandlot) at the host's
// files gets them written inside, never on the host.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import { Sandbox, SandlotClient, SandlotError } from 'sandlot'
import { api, leftovers, run, waitFor } from './helpers.js'
import { Cleanup, sleep } from './sdk-env.js'

const cleanup = new Cleanup()
after(() => cleanup.run())

const cli = (args: string[]) => {
  const r = spawnSync(process.execPath, ['packages/cli/dist/main.js', ...args], { encoding: 'utf8' })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

describe('pause and resume: Sandlot SDK, CLI and REST', { concurrency: true }, () => {
  test('sandbox.pause() closes the handle; Sandbox.list shows it paused; reconnect resumes it with its processes', async () => {
    const sandbox = await Sandbox.create({ metadata: { suite: 'pause' } })
    cleanup.add(sandbox.id)
    const sleeper = await sandbox.process.start({ cmd: 'sleep 3600' })
    await sandbox.filesystem.write('/home/user/kept.txt', 'kept')
    await sandbox.pause()
    assert.equal(sandbox.isOpen, false)
    await assert.rejects(sandbox.filesystem.read('/home/user/kept.txt'), (e: SandlotError) => e.code === 'sandbox_paused')
    const listed = (await Sandbox.list({ metadata: { suite: 'pause' } })).find((s) => s.id === sandbox.id)
    assert.equal(listed?.state, 'paused')
    assert.equal(listed?.paused?.keepMemory, true)
    assert.equal(listed?.holds, 0, 'a paused sandbox has no holds')
    await assert.rejects(Sandbox.pause(sandbox.id), (e: SandlotError) => e.code === 'already_paused' && e.status === 409)

    const again = await Sandbox.reconnect(sandbox.id)
    const info = await again.getInfo()
    assert.equal(info.state, 'running')
    assert.equal(info.holds, 1)
    assert.equal(info.paused, null)
    const ps = await again.process.start({ cmd: `ps -o pid= -p ${sleeper.pid}` })
    assert.equal((await ps.wait()).stdout.trim(), String(sleeper.pid))
    assert.equal(await again.filesystem.read('/home/user/kept.txt'), 'kept')
    // Its log tells the story.
    const log = (await api('GET', `/api/v1/sandboxes/${sandbox.id}/logs`)).json.logs.map((e: { message: string }) => e.message)
    assert.ok(log.includes('sandbox paused: its processes frozen, its memory kept'), log.join('\n'))
    assert.ok(log.includes('sandbox resumed: its processes run on'), log.join('\n'))
    await again.kill()
  })

  test("another client's pause closes this handle (its next renewal hears sandbox_paused)", async () => {
    const sandbox = await Sandbox.create()
    cleanup.add(sandbox.id)
    await new SandlotClient().pauseSandbox(sandbox.id, { keepMemory: false })
    // The handle renews every 5 s.
    for (let i = 0; i < 80 && sandbox.isOpen; i++) await sleep(100)
    assert.equal(sandbox.isOpen, false)
    await assert.rejects(sandbox.process.start({ cmd: 'true' }), (e: SandlotError) => e.code === 'sandbox_paused' && /reconnect/.test(e.message))
    const resumed = await new SandlotClient().resumeSandbox(sandbox.id, { keepAlive: 60_000 })
    assert.equal(resumed.state, 'running')
    assert.ok(resumed.endAt && resumed.endAt.getTime() > Date.now() + 50_000)
    await Sandbox.kill(sandbox.id)
  })

  test("keepAlive(ms, { onTimeout: 'pause' }): the deadline pauses it instead of destroying it", async () => {
    const sandbox = await Sandbox.create()
    cleanup.add(sandbox.id)
    await sandbox.keepAlive(1500, { onTimeout: 'pause', keepMemory: false })
    await sandbox.close()
    const client = new SandlotClient()
    let info = await client.getSandbox(sandbox.id)
    assert.deepEqual(info.lifecycle, { onTimeout: 'pause', keepMemory: false, autoResume: false })
    for (let i = 0; i < 60 && info.state !== 'paused'; i++) {
      await sleep(100)
      info = await client.getSandbox(sandbox.id)
    }
    assert.equal(info.state, 'paused')
    assert.equal(info.paused?.keepMemory, false)
    await client.killSandbox(sandbox.id)
  })

  test('the CLI: pause, ls shows it paused, resume', async () => {
    const created = await api('POST', '/api/v1/sandboxes', { keepAliveMs: 60_000 })
    const id: string = cleanup.add(created.json.id)
    const paused = cli(['pause', id])
    assert.equal(paused.code, 0, paused.stderr)
    assert.match(paused.stderr, new RegExp(`Paused sandbox ${id}: its processes are stopped where they are`))
    const ls = cli(['ls'])
    assert.match(ls.stdout, new RegExp(`${id} +base +paused `))
    assert.equal(cli(['pause', id]).code, 1, 'pausing it again is an error')
    const resumed = cli(['resume', id, '--keep-alive', '2m'])
    assert.equal(resumed.code, 0, resumed.stderr)
    assert.match(resumed.stderr, /Resumed sandbox .*kept alive until/)
    assert.equal(cli(['keep-alive', id, '1m', '--files-only']).code, 2)
    const json = JSON.parse(cli(['keep-alive', id, '1m', '--then-pause', '--json']).stdout)
    assert.deepEqual(json.lifecycle, { onTimeout: 'pause', keepMemory: true, autoResume: false })
    assert.equal((await run(id, 'echo back')).stdout, 'back\n')
    cli(['kill', id])
  })

  test("a files-only resume does not run the template's start command again (E2B's reference §3.3); a fork, which boots afresh, does", async () => {
    // The reference contradicts itself: §2.3 says Sandlot must run it after an fs-only resume, §3.3
    // (what E2B does: the VM's files come back, not its processes) says it is not re-run.
    const name = `restarter-${process.pid}`
    const r = await api('POST', '/api/v1/templates', { name, steps: [], startCmd: 'echo started >> /home/user/starts; exec sleep 3601', readyCmd: 'true' })
    assert.equal(r.status, 202, JSON.stringify(r.json))
    await waitFor(async () => {
      const b = await api('GET', `/api/v1/templates/${r.json.templateId}/builds/${r.json.buildId}`)
      assert.notEqual(b.json.status, 'error', JSON.stringify(b.json))
      return b.json.status === 'ready'
    }, 120_000, 'the build')
    const created = await api('POST', '/api/v1/sandboxes', { template: name, keepAliveMs: 60_000 })
    assert.equal(created.status, 201, JSON.stringify(created.json))
    const id: string = cleanup.add(created.json.id)
    const starts = async (sid: string) => (await run(sid, 'wc -l < /home/user/starts; pgrep -fx "sleep 3601" >/dev/null && echo running || echo none')).stdout
    const before = await starts(id)
    assert.match(before, /^\d+\nrunning\n$/, 'the start command ran at the create')
    assert.equal((await api('POST', `/api/v1/sandboxes/${id}/pause`, { keepMemory: false })).status, 200)
    assert.equal((await api('POST', `/api/v1/sandboxes/${id}/resume`, {})).status, 200)
    assert.equal(await starts(id), before.replace('running', 'none'), 'not run again on the resume')
    const forked = await api('POST', `/api/v1/sandboxes/${id}/fork`, { count: 1, keepAliveMs: 60_000 })
    assert.equal(forked.status, 201, JSON.stringify(forked.json))
    const fork: string = cleanup.add(forked.json[0].sandbox.id)
    assert.equal(await starts(fork), `${Number(before.split('\n')[0]) + 1}\nrunning\n`, 'a fork runs it once more')
    for (const sid of [fork, id]) await api('DELETE', `/api/v1/sandboxes/${sid}`)
    assert.equal((await api('DELETE', `/api/v1/templates/${name}`)).status, 204)
  })

  test('pause, resume, snapshot and kill racing on one sandbox: each answers sensibly, and the kill leaves nothing', async () => {
    const id: string = cleanup.add((await api('POST', '/api/v1/sandboxes', { keepAliveMs: 60_000 })).json.id)
    const ops = Array.from({ length: 24 }, (_, i) =>
      i % 4 === 0
        ? api('POST', `/api/v1/sandboxes/${id}/pause`, { keepMemory: i % 8 === 0 })
        : i % 4 === 1
          ? api('POST', `/api/v1/sandboxes/${id}/resume`, {})
          : i % 4 === 2
            ? api('POST', `/api/v1/sandboxes/${id}/snapshots`, {})
            : api('GET', `/api/v1/sandboxes/${id}`),
    )
    const answers = await Promise.all(ops)
    for (const a of answers) assert.ok([200, 201, 409].includes(a.status), `${a.status} ${JSON.stringify(a.json)}`)
    const state = (await api('GET', `/api/v1/sandboxes/${id}`)).json.state
    assert.ok(state === 'running' || state === 'paused', state)
    if (state === 'paused') assert.equal((await api('POST', `/api/v1/sandboxes/${id}/resume`, {})).status, 200)
    assert.equal((await run(id, 'echo alive')).stdout, 'alive\n')
    const killing = api('DELETE', `/api/v1/sandboxes/${id}`)
    const late = await api('POST', `/api/v1/sandboxes/${id}/pause`, {})
    assert.ok([200, 404, 409].includes(late.status), String(late.status))
    assert.equal((await killing).status, 204)
    assert.deepEqual(await leftovers(id), [])
    for (const snap of answers.filter((a) => a.status === 201)) await api('DELETE', `/api/v1/templates/${snap.json.template}`)
  })

  test('a sandbox that points its runtime files at host paths before a files-only pause: on resume they are written inside it, the host files untouched', async () => {
    const victim = fs.mkdtempSync(path.join(os.tmpdir(), 'sandlot-victim-'))
    fs.chmodSync(victim, 0o755)
    fs.writeFileSync(path.join(victim, 'hosts'), 'host file\n')
    fs.chmodSync(path.join(victim, 'hosts'), 0o666)
    try {
      const created = await api('POST', '/api/v1/sandboxes', { keepAliveMs: 60_000 })
      const id: string = cleanup.add(created.json.id)
      const hostile = `ln -sf ${victim}/hosts /etc/hosts && rm -rf /run/sandlot && ln -s ${victim} /run/sandlot && mkdir -p /etc/hostname.d && ls -la /etc/hosts /run/sandlot`
      const r = await run(id, hostile, { user: 'root' })
      assert.equal(r.exitCode, 0, r.stderr)
      assert.equal((await api('POST', `/api/v1/sandboxes/${id}/pause`, { keepMemory: false })).status, 200)
      assert.equal((await api('POST', `/api/v1/sandboxes/${id}/resume`, {})).status, 200)
      assert.deepEqual(fs.readdirSync(victim), ['hosts'], 'nothing was written into the host directory')
      assert.equal(fs.readFileSync(path.join(victim, 'hosts'), 'utf8'), 'host file\n')
      const inside = await run(id, 'test -L /etc/hosts && echo link; grep -c localhost /etc/hosts; test -d /run/sandlot && ! test -L /run/sandlot && echo dir', { user: 'root' })
      assert.equal(inside.stdout, '2\ndir\n')
    } finally {
      fs.rmSync(victim, { recursive: true, force: true })
    }
  })
})
