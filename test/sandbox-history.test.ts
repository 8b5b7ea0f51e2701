// A sandbox's metrics and log through Sandlot's own REST, SDK (getMetrics, getLogs) and CLI
// (`sandlot metrics`, `sandlot logs [-f]`): samples at the server's default 5 s, lifecycle events,
// the template's start command output, a sandbox that died, and bad input.
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import { InvalidArgumentError, Sandbox, SandboxNotFoundError, SandlotClient, type LogEntry } from 'sandlot'
import { api, home } from './helpers.js'
import { Cleanup, sleep } from './sdk-env.js'

const UNKNOWN = 'i' + '0'.repeat(20)
const cleanup = new Cleanup()
after(() => cleanup.run())

const cli = (args: string[]) => {
  const r = spawnSync(process.execPath, ['packages/cli/dist/main.js', ...args], { encoding: 'utf8', env: { ...process.env, COLUMNS: '100' } })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, ms: number): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await fn()
    if (v) return v
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(250)
  }
}

const messages = (logs: LogEntry[]) => logs.map((e) => e.message)

describe('metrics and logs: SDK and REST', { concurrency: true }, () => {
  test('getMetrics: samples within 30 s, a range, nothing before the sandbox; after kill still readable', async () => {
    const sandbox = await Sandbox.create({ metadata: { suite: 'sandbox-history' } })
    cleanup.add(sandbox.id)
    const first = await until('a sample', async () => (await sandbox.getMetrics()).at(0), 30_000)
    assert.equal(first.cpuCount, (await sandbox.getInfo()).cpuCount)
    assert.ok(first.timestamp instanceof Date && first.memTotal > 0 && first.diskTotal > 0 && first.memUsed > 0)
    await until('a second sample', async () => (await sandbox.getMetrics()).length >= 2, 15_000)
    const since = Date.now() - 8_000
    for (const m of await sandbox.getMetrics({ start: since, end: new Date() })) assert.ok(m.timestamp.getTime() >= since, m.timestamp.toISOString())
    assert.deepEqual(await sandbox.getMetrics({ start: 0, end: 1000 }), [])
    await assert.rejects(sandbox.getMetrics({ start: 2000, end: 1000 }), InvalidArgumentError)
    await assert.rejects(sandbox.getMetrics({ start: -1 }), InvalidArgumentError)
    const count = (await sandbox.getMetrics()).length
    await sandbox.kill()
    const client = new SandlotClient()
    assert.ok((await client.getMetrics(sandbox.id)).length >= count)
    assert.ok(messages((await client.getLogs(sandbox.id)).logs).includes('sandbox destroyed'))
  })

  test('getLogs: created, then a follower woken by the kill; after, level and limit', async () => {
    const sandbox = await Sandbox.create({ metadata: { suite: 'sandbox-history' } })
    cleanup.add(sandbox.id)
    const page = await sandbox.getLogs()
    assert.equal(page.running, true)
    const created = page.logs.find((e) => e.message === 'sandbox created')
    assert.ok(created, JSON.stringify(page))
    assert.equal(created.level, 'info')
    assert.equal(created.fields.logger, 'lifecycle')
    assert.equal(created.fields.template, 'base')
    assert.equal(page.next, page.logs.at(-1)!.seq)
    // Nothing new: a read with `wait` waits, and the kill wakes it.
    const t0 = Date.now()
    const follow = new SandlotClient().getLogs(sandbox.id, { after: page.next, wait: 20_000 })
    await sleep(500)
    await new SandlotClient().killSandbox(sandbox.id)
    const woken = await follow
    assert.ok(Date.now() - t0 < 10_000, `woken after ${Date.now() - t0} ms`)
    assert.equal(woken.logs[0]!.message, 'killing the sandbox: killed by a client')
    const rest = await new SandlotClient().getLogs(sandbox.id, { after: woken.next })
    assert.equal(rest.running, false)
    assert.ok(messages([...woken.logs, ...rest.logs]).includes('sandbox destroyed'))
    // level and limit
    const all = (await new SandlotClient().getLogs(sandbox.id)).logs
    assert.equal((await new SandlotClient().getLogs(sandbox.id, { limit: 1 })).logs.length, 1)
    assert.deepEqual((await new SandlotClient().getLogs(sandbox.id, { level: 'warn' })).logs, all.filter((e) => e.level === 'warn' || e.level === 'error'))
  })

  test("the template's start command output is in the log (stdout as info, stderr as warn); a flood of it is cut to a rate", async () => {
    // 50,000 lines at once: past the burst they are dropped, and counted in a warning.
    const r = await api('POST', '/api/v1/templates', { name: `starter-${process.pid}`, steps: [], startCmd: 'echo hello-from-start; echo oops-from-start >&2; sleep 2; seq 1 50000; sleep 1000', readyCmd: 'true' })
    assert.equal(r.status, 202, JSON.stringify(r.json))
    await until('the build', async () => {
      const s = await api('GET', `/api/v1/templates/${r.json.templateId}/builds/${r.json.buildId}`)
      assert.notEqual(s.json.status, 'error', JSON.stringify(s.json))
      return s.json.status === 'ready'
    }, 120_000)
    const created = await api('POST', '/api/v1/sandboxes', { template: `starter-${process.pid}`, keepAliveMs: 60_000 })
    assert.equal(created.status, 201, JSON.stringify(created.json))
    const id = cleanup.add(created.json.id)
    const entries = await until('the start command output', async () => {
      const logs = (await api('GET', `/api/v1/sandboxes/${id}/logs`)).json.logs as { level: string; message: string; fields: Record<string, string> }[]
      return logs.some((e) => e.message === 'oops-from-start') && logs.some((e) => e.message === 'hello-from-start') && logs
    }, 10_000)
    const out = entries.find((e) => e.message === 'hello-from-start')!
    assert.deepEqual([out.level, out.fields.logger, out.fields.stream], ['info', 'start-cmd', 'stdout'])
    const err = entries.find((e) => e.message === 'oops-from-start')!
    assert.deepEqual([err.level, err.fields.logger, err.fields.stream], ['warn', 'start-cmd', 'stderr'])
    await sleep(4000)
    await api('DELETE', `/api/v1/sandboxes/${id}`)
    const all = (await api('GET', `/api/v1/sandboxes/${id}/logs`)).json.logs as { level: string; message: string; fields: Record<string, string> }[]
    const fromStart = all.filter((e) => e.fields.logger === 'start-cmd')
    assert.ok(fromStart.length >= 400 && fromStart.length <= 1500, `${fromStart.length} start command lines kept`)
    // Each entry that passes after drops first says how many went (a flood may let several through).
    const notes = all.filter((e) => /^\d+ log entries were dropped: more than 100 a second$/.test(e.message))
    assert.ok(notes.length >= 1 && notes.every((e) => e.level === 'warn'), JSON.stringify(all.slice(-5)))
    assert.equal(fromStart.length + notes.reduce((n, e) => n + Number(/^\d+/.exec(e.message)![0]), 0), 2 + 50000)
    assert.equal(all.at(-1)!.message, 'sandbox destroyed')
    await api('DELETE', `/api/v1/templates/starter-${process.pid}`)
  })

  test('a sandbox whose init is killed from the host: an error entry, then its end', async () => {
    const created = await api('POST', '/api/v1/sandboxes', { keepAliveMs: 60_000 })
    const id = cleanup.add(created.json.id)
    const pid = Number(fs.readFileSync(path.join(home, 'sandboxes', id, 'init.pid'), 'utf8'))
    process.kill(pid, 'SIGKILL')
    const logs = await until('the death in the log', async () => {
      const l = (await api('GET', `/api/v1/sandboxes/${id}/logs`)).json.logs as { level: string; message: string }[]
      return l.some((e) => e.message === 'sandbox destroyed') && l
    }, 20_000)
    assert.ok(logs.some((e) => e.level === 'error' && /died on its own/.test(e.message)), JSON.stringify(logs))
  })

  test('bad input: 400 with the reason; unknown sandboxes 404', async () => {
    const s = await api('POST', '/api/v1/sandboxes', { keepAliveMs: 60_000 })
    const id = cleanup.add(s.json.id)
    for (const q of ['start=abc', 'end=1.5', 'start=-1', 'start=2000&end=1000']) {
      const r = await api('GET', `/api/v1/sandboxes/${id}/metrics?${q}`)
      assert.equal(r.status, 400, q)
      assert.match(r.json.message, /start|end/)
    }
    for (const q of ['after=x', 'limit=0', 'limit=1001', 'level=loud', 'wait=60000']) assert.equal((await api('GET', `/api/v1/sandboxes/${id}/logs?${q}`)).status, 400, q)
    for (const route of ['metrics', 'logs']) {
      const r = await api('GET', `/api/v1/sandboxes/${UNKNOWN}/${route}`)
      assert.equal(r.status, 404)
      assert.match(r.json.message, new RegExp(UNKNOWN))
    }
    await assert.rejects(new SandlotClient().getMetrics(UNKNOWN), SandboxNotFoundError)
    await assert.rejects(new SandlotClient().getLogs(UNKNOWN), SandboxNotFoundError)
    await assert.rejects(new SandlotClient().getLogs(id, { limit: 1.5 }), InvalidArgumentError)
    await api('DELETE', `/api/v1/sandboxes/${id}`)
  })
})

describe('metrics and logs: CLI', () => {
  test('sandlot metrics (chart, --json, --since) and sandlot logs (-f ends with the sandbox)', async () => {
    const created = await api('POST', '/api/v1/sandboxes', { keepAliveMs: 120_000 })
    const id = cleanup.add(created.json.id)
    await until('two samples', async () => (await api('GET', `/api/v1/sandboxes/${id}/metrics`)).json.length >= 2, 30_000)
    const m = cli(['metrics', id])
    assert.equal(m.code, 0, m.stderr)
    assert.match(m.stdout, /now: CPU [\d.]+% of 1 CPU \| memory \d+ \/ 512 MiB \(cache \d+\) \| disk \d+ \/ \d+ MiB/)
    assert.match(m.stdout, /CPU \(%\)\n[\s\S]*100 %[\s\S]*memory \(MiB\)/)
    for (const line of m.stdout.split('\n')) assert.ok(line.length <= 100, `wider than COLUMNS: ${line}`)
    const json = cli(['metrics', id, '--json', '--since', '1h'])
    assert.equal(json.code, 0, json.stderr)
    assert.ok(JSON.parse(json.stdout).length >= 2)

    const logs = cli(['logs', id])
    assert.equal(logs.code, 0, logs.stderr)
    assert.match(logs.stdout, /^\S+Z INFO  \[lifecycle\] sandbox created  template=base/m)
    // -f: still running after a while, ends by itself once the sandbox is killed.
    const follow = spawn(process.execPath, ['packages/cli/dist/main.js', 'logs', '-f', '--json', id], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    follow.stdout.on('data', (d) => (out += d))
    const exited = new Promise<number | null>((resolve) => follow.on('exit', resolve))
    await sleep(1500)
    assert.equal(follow.exitCode, null, 'sandlot logs -f ended while the sandbox runs')
    await api('DELETE', `/api/v1/sandboxes/${id}`)
    assert.equal(await exited, 0)
    const printed = out.trim().split('\n').map((l) => JSON.parse(l).message)
    assert.ok(printed.includes('sandbox created') && printed.at(-1) === 'sandbox destroyed', printed.join(' | '))

    const unknown = cli(['logs', UNKNOWN])
    assert.equal(unknown.code, 1)
    assert.match(unknown.stderr, new RegExp(`Sandbox ${UNKNOWN} doesn't exist`))
    const badLevel = cli(['logs', '--level', 'loud', UNKNOWN])
    assert.equal(badLevel.code, 2)
    assert.match(badLevel.stderr, /--level must be one of debug, info, warn, error/)
  })
})
