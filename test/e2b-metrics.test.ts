// The official e2b SDK's getMetrics and E2B's metrics and logs routes (the e2b CLI's `sandbox logs`
// and `sandbox metrics` among them) against Sandlot, with the server's default 5 s sampling.
import { Sandbox, SandboxError, SandboxNotFoundError } from 'e2b'
import { apiKey, apiUrl, create, sleep, until } from './e2b-env.js'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import path from 'node:path'
import { describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify, stripVTControlCharacters } from 'node:util'

const UNKNOWN = 'i' + '0'.repeat(20)
const MiB = 2 ** 20
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

/** E2B's REST with the API key, as plain fetch (what the SDK does not call, and exact statuses). */
async function e2b(route: string): Promise<{ status: number; json: any }> {
  const res = await fetch(`${apiUrl}${route}`, { headers: { 'x-api-key': apiKey() } })
  return { status: res.status, json: await res.json() }
}

/** The pinned e2b CLI (@e2b/cli), pointed at this server as the SDK is (E2B_API_URL, E2B_API_KEY). */
async function e2bCli(...args: string[]): Promise<string> {
  const bin = path.join(root, 'node_modules/@e2b/cli/dist/index.js')
  const { stdout } = await promisify(execFile)(process.execPath, [bin, ...args], {
    env: { ...process.env, E2B_API_URL: apiUrl, E2B_API_KEY: apiKey(), NO_COLOR: '1', FORCE_COLOR: '0' },
    timeout: 60_000,
  })
  // Its pretty format colours values whatever the terminal (util.inspect with colors).
  return stripVTControlCharacters(stdout)
}

describe('e2b SDK: metrics', { concurrency: true }, () => {
  test('getMetrics: a sample within 30 s with the sandbox\'s limits; every sample of a range inside it; an old range is []', async () => {
    const s = await create({ timeoutMs: 120_000 })
    const t0 = Date.now()
    const first = await until(async () => (await s.getMetrics()).at(0), 30_000, 'a first metrics sample')
    assert.ok(Date.now() - t0 <= 30_000)
    const info = await s.getInfo()
    assert.ok(first.timestamp instanceof Date && Math.abs(first.timestamp.getTime() - Date.now()) < 30_000, `timestamp ${first.timestamp.toISOString()}`)
    assert.equal(first.cpuCount, info.cpuCount)
    assert.equal(first.memTotal, info.memoryMB * MiB)
    assert.ok(first.memUsed > 0 && first.memUsed < first.memTotal, `memUsed ${first.memUsed}`)
    assert.ok(first.cpuUsedPct >= 0 && first.cpuUsedPct <= 100 && Number(first.cpuUsedPct.toFixed(2)) === first.cpuUsedPct, `cpuUsedPct ${first.cpuUsedPct}`)
    assert.ok(first.diskTotal > 1000 * MiB && first.diskUsed > 0 && first.diskUsed < first.diskTotal, `disk ${first.diskUsed}/${first.diskTotal}`)

    // A second sample, then a range: every point inside [start − 10 s, end + 10 s].
    await until(async () => (await s.getMetrics()).length >= 2, 15_000, 'a second sample')
    const start = new Date(Date.now() - 60_000)
    const end = new Date()
    const ranged = await s.getMetrics({ start, end })
    assert.ok(ranged.length >= 2, `${ranged.length} samples in the last minute`)
    for (const m of ranged) assert.ok(m.timestamp.getTime() >= start.getTime() - 10_000 && m.timestamp.getTime() <= end.getTime() + 10_000, m.timestamp.toISOString())
    // The static form, and an hour long before the sandbox existed.
    assert.ok((await Sandbox.getMetrics(s.sandboxId)).length >= 2)
    assert.deepEqual(await s.getMetrics({ start: new Date('2020-01-01T00:00:00Z'), end: new Date('2020-01-01T01:00:00Z') }), [])

    // The wire: seconds, both timestamps, and E2B's bulk route (latest of each it knows).
    const wire = await e2b(`/sandboxes/${s.sandboxId}/metrics?start=${Math.floor(start.getTime() / 1000)}`)
    assert.equal(wire.status, 200)
    assert.deepEqual(Object.keys(wire.json[0]).sort(), ['cpuCount', 'cpuUsedPct', 'diskTotal', 'diskUsed', 'memCache', 'memTotal', 'memUsed', 'timestamp', 'timestampUnix'])
    assert.equal(wire.json[0].timestampUnix, Math.floor(Date.parse(wire.json[0].timestamp) / 1000))
    const bulk = await e2b(`/sandboxes/metrics?sandbox_ids=${s.sandboxId},${UNKNOWN}`)
    assert.equal(bulk.status, 200)
    assert.deepEqual(Object.keys(bulk.json.sandboxes), [s.sandboxId])
    assert.ok(Date.parse(bulk.json.sandboxes[s.sandboxId].timestamp) >= Date.parse(wire.json.at(-1).timestamp))
  })

  test('a busy CPU, a big allocation and a big file show as cpuUsedPct, memUsed and diskUsed', async () => {
    const s = await create({ timeoutMs: 120_000 })
    const baseline = await until(async () => (await s.getMetrics()).at(-1), 30_000, 'a first sample')
    // All three at once, in the background, for up to a minute; each must show in some sample
    // (on a loaded host the three may not peak in the same one).
    const t0 = Date.now()
    await s.commands.run(`timeout 60 sh -c 'while :; do :; done'`, { background: true })
    await s.commands.run(`python3 -c "import time; b = bytearray(200 << 20); time.sleep(60)"`, { background: true })
    await s.commands.run('dd if=/dev/zero of=/home/user/big bs=1M count=300 conv=fsync status=none', { background: true })
    const seen = { cpu: false, mem: false, disk: false }
    const loaded = await until(
      async () => {
        const samples = (await s.getMetrics()).filter((m) => m.timestamp.getTime() > t0)
        seen.cpu ||= samples.some((m) => m.cpuUsedPct > 50)
        seen.mem ||= samples.some((m) => m.memUsed > baseline.memUsed + 150 * MiB)
        seen.disk ||= samples.some((m) => m.diskUsed > baseline.diskUsed + 250 * MiB)
        return seen.cpu && seen.mem && seen.disk && samples.at(-1)
      },
      50_000,
      'samples with the load',
    ).catch((err: Error) => assert.fail(`${err.message}: seen ${JSON.stringify(seen)}`))
    assert.ok(loaded.cpuUsedPct <= 100)
  })

  test('bad input: start after end and non-numeric times are 400, an unknown sandbox 404 (SandboxNotFoundError)', async () => {
    const s = await create({ timeoutMs: 60_000 })
    // The SDK makes a SandboxError of a 400 here, with the server's message.
    await assert.rejects(s.getMetrics({ start: new Date(), end: new Date(Date.now() - 60_000) }), (e: Error) => e instanceof SandboxError && /^400: start must not be after end/.test(e.message))
    for (const q of ['start=2000&end=1000', 'start=abc', 'end=1.5', 'start=-5', 'start=1&start=2']) {
      const r = await e2b(`/sandboxes/${s.sandboxId}/metrics?${q}`)
      assert.equal(r.status, 400, q)
      assert.equal(r.json.code, 400)
      assert.match(r.json.message, /start|end/)
    }
    await assert.rejects(Sandbox.getMetrics(UNKNOWN), SandboxNotFoundError)
    for (const route of [`/sandboxes/${UNKNOWN}/metrics`, `/sandboxes/${UNKNOWN}/logs`, `/v2/sandboxes/${UNKNOWN}/logs`]) assert.equal((await e2b(route)).status, 404, route)
    for (const q of ['', 'sandbox_ids=', `sandbox_ids=${Array.from({ length: 101 }, (_, i) => `i${i}`).join(',')}`]) assert.equal((await e2b(`/sandboxes/metrics?${q}`)).status, 400, q)
    for (const q of ['limit=1001', 'limit=x', 'direction=sideways', 'level=loud', 'cursor=yesterday']) assert.equal((await e2b(`/v2/sandboxes/${s.sandboxId}/logs?${q}`)).status, 400, q)
    for (const q of ['start=abc', 'limit=-1']) assert.equal((await e2b(`/sandboxes/${s.sandboxId}/logs?${q}`)).status, 400, q)
  })
})

describe('E2B logs: v1 and v2 routes, the e2b CLI', { concurrency: true }, () => {
  test('lifecycle events in both routes, v2 backward by default with level, search and cursor; kept after kill', async () => {
    const s = await create({ timeoutMs: 60_000 })
    const id = s.sandboxId
    const v1 = await e2b(`/sandboxes/${id}/logs`)
    assert.equal(v1.status, 200)
    assert.equal(v1.json.logs.length, v1.json.logEntries.length)
    const created = v1.json.logEntries.find((e: any) => e.message === 'sandbox created')
    assert.ok(created, JSON.stringify(v1.json))
    assert.equal(created.level, 'info')
    assert.equal(created.fields.logger, 'lifecycle')
    assert.equal(created.fields.template, 'base')
    // The CLI JSON.parses each line and needs level and logger.
    const line = JSON.parse(v1.json.logs[0].line)
    assert.equal(typeof line.level, 'string')
    assert.equal(typeof line.logger, 'string')
    assert.equal(line.message, v1.json.logEntries[0].message)
    // start (ms) past the last entry: nothing.
    assert.deepEqual((await e2b(`/sandboxes/${id}/logs?start=${Date.parse(v1.json.logs.at(-1).timestamp) + 1}`)).json, { logs: [], logEntries: [] })

    await s.kill()
    const after = await e2b(`/v2/sandboxes/${id}/logs`)
    assert.equal(after.status, 200)
    const messages = after.json.logs.map((e: any) => e.message)
    // Newest first by default: the end, then the create.
    assert.equal(messages[0], 'sandbox destroyed')
    assert.ok(messages.indexOf('killing the sandbox: killed by a client') < messages.indexOf('sandbox created'), messages.join(' | '))
    const forward = (await e2b(`/v2/sandboxes/${id}/logs?direction=forward&limit=1`)).json.logs
    assert.equal(forward.length, 1)
    assert.equal(forward[0].message, after.json.logs.at(-1).message)
    assert.deepEqual((await e2b(`/v2/sandboxes/${id}/logs?search=killing`)).json.logs.map((e: any) => e.message), ['killing the sandbox: killed by a client'])
    assert.deepEqual((await e2b(`/v2/sandboxes/${id}/logs?level=error`)).json.logs, [])
    assert.deepEqual((await e2b(`/v2/sandboxes/${id}/logs?cursor=${Date.parse(created.timestamp) - 1}&direction=backward`)).json.logs, [])
    // Metrics of a killed sandbox stay readable too.
    assert.equal((await e2b(`/sandboxes/${id}/metrics`)).status, 200)
  })

  test('the e2b CLI (pinned @e2b/cli) prints a sandbox\'s logs and metrics from this server', async () => {
    const s = await create({ timeoutMs: 120_000 })
    await until(async () => (await s.getMetrics()).length > 0, 30_000, 'a first sample')
    const logs = await e2bCli('sandbox', 'logs', s.sandboxId)
    assert.match(logs, new RegExp(`Logs for sandbox ${s.sandboxId}`))
    assert.match(logs, /INFO.*sandbox created/)
    assert.match(logs, /logger: 'lifecycle'/)
    const metrics = await e2bCli('sandbox', 'metrics', s.sandboxId)
    assert.match(metrics, new RegExp(`Metrics for sandbox ${s.sandboxId}`))
    assert.match(metrics, /CPU: +[\d.]+% \/ +1 Core.*Memory: +\d+ \/ \d+ +MiB.*Disk: +\d+ \/ \d+ +MiB/)
    // As JSON: the figures the SDK reads.
    const json = (await e2bCli('sandbox', 'logs', '--format', 'json', s.sandboxId)).split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l))
    assert.ok(json.some((l) => l.message === 'sandbox created'), JSON.stringify(json))
    // -f follows until the sandbox ends, then stops by itself.
    const follow = e2bCli('sandbox', 'logs', '-f', s.sandboxId)
    await sleep(2000)
    await s.kill()
    assert.match(await follow, /killing the sandbox[\s\S]*sandbox is closed/)
  })
})
