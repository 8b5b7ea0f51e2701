// Inside a sandbox, free, top, nproc, /proc and the CPU count programs read show the sandbox's own
// limits (LXCFS, runtime/lxcfs.ts; its own CPUs, runtime/cpusets.ts), not the host's, and its uptime
// starts at its creation.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import { pino } from 'pino'
import { CpuSets, parseCpuList } from '../packages/server/src/runtime/cpusets.js'
import { ensureLxcfs } from '../packages/server/src/runtime/lxcfs.js'
import { createSandbox, killSandbox, run } from './helpers.js'

describe("a sandbox's view of its machine", () => {
  test('memory: /proc/meminfo, free and top show its memory limit', async () => {
    const s = await createSandbox({ memoryMB: 384 })
    try {
      const r = await run(s.id, "grep MemTotal /proc/meminfo; free -m | awk '/^Mem:/ {print $2}'; top -bn1 | grep -i 'mem'")
      const [meminfo, free] = r.stdout.split('\n')
      assert.equal(meminfo, `MemTotal:         ${384 * 1024} kB`)
      assert.equal(free, '384')
      assert.match(r.stdout, /MiB Mem :\s+384\.0 total/)
      assert.ok(os.totalmem() > 1024 * 2 ** 20, 'the host has far more')
      // Root inside can neither take the view away nor write through it.
      const hostile = await run(s.id, 'umount /proc/meminfo; umount -l /proc/meminfo; echo x > /proc/meminfo; grep MemTotal /proc/meminfo', { user: 'root' })
      assert.match(hostile.stdout, new RegExp(`^MemTotal: +${384 * 1024} kB$`, 'm'))
      assert.match(hostile.stderr, /umount: .*(permission denied|must be superuser|not permitted)/i)
      assert.match(hostile.stderr, /Read-only file system|Permission denied/)
    } finally {
      await killSandbox(s.id)
    }
  })

  test('nproc counts its CPUs: one-CPU sandboxes get CPUs of their own, the least used; one with all the host has is not pinned', async () => {
    const host = os.cpus().length
    const a = await createSandbox({ cpuCount: 1 })
    const b = await createSandbox({ cpuCount: 1 })
    const all = await createSandbox({ cpuCount: host })
    try {
      const allowed = async (id: string) => (await run(id, "nproc; grep Cpus_allowed_list /proc/self/status | awk '{print $2}'")).stdout.trim().split('\n')
      const [[na, ca], [nb, cb], [nall, call]] = await Promise.all([allowed(a.id), allowed(b.id), allowed(all.id)])
      assert.deepEqual([na, nb, nall], ['1', '1', String(host)])
      assert.match(`${ca} ${cb}`, /^\d+ \d+$/, 'each on one CPU')
      assert.equal(call, `0-${host - 1}`)
    } finally {
      await Promise.all([a, b, all].map((s) => killSandbox(s.id)))
    }
  })

  test('the CPUs given are the least used ones, and come back when a sandbox ends or is re-adopted', () => {
    const sets = new CpuSets([0, 1, 2, 3])
    assert.deepEqual(['a', 'b', 'c'].map((id) => sets.take(id, 1)), ['0', '1', '2'])
    assert.equal(sets.take('d', 2), '0,3')
    assert.equal(sets.take('all', 4), undefined, 'as many as the host has: not pinned')
    sets.release('b')
    assert.equal(sets.take('e', 1), '1')
    sets.adopt('f', '2-3')
    assert.equal(sets.take('g', 2), '0,1')
    assert.deepEqual(parseCpuList('0-2,5,7-8'), [0, 1, 2, 5, 7, 8])
  })

  test('an lxcfs that died (its mount left failing every call with ENOTCONN) is unmounted and started again', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sandlot-lxcfs-'))
    const mount = path.join(dir, 'mnt')
    const warnings: string[] = []
    const log = pino({ level: 'warn' }, { write: (s: string) => void warnings.push(JSON.parse(s).msg) })
    const pid = () => Number(fs.readFileSync(`${mount}.pid`, 'utf8'))
    try {
      assert.equal(await ensureLxcfs(log, {}, mount), mount)
      const first = pid()
      process.kill(first, 'SIGKILL')
      for (let i = 0; i < 100 && fs.existsSync(`/proc/${first}`); i++) await new Promise((r) => setTimeout(r, 20))
      assert.throws(() => fs.statSync(mount), /ENOTCONN/, 'the dead mount is left behind')
      assert.equal(await ensureLxcfs(log, {}, mount), mount)
      assert.notEqual(pid(), first)
      assert.match(fs.readFileSync(path.join(mount, 'proc/meminfo'), 'utf8'), /^MemTotal:/)
      assert.deepEqual(warnings, [])
    } finally {
      try { process.kill(pid(), 'SIGKILL') } catch {}
      for (let i = 0; i < 5 && fs.readFileSync('/proc/self/mounts', 'utf8').includes(` ${mount} `); i++) {
        await new Promise((r) => setTimeout(r, 50))
        spawnSync('umount', ['-l', mount])
      }
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  test('CPUs: /proc/cpuinfo, the online CPUs and what Python and Node count follow its CPU limit; uptime is its own', async () => {
    assert.ok(os.cpus().length >= 2, 'the host has at least 2 CPUs')
    const s = await createSandbox({ cpuCount: 1 })
    try {
      const r = await run(s.id, "grep -c ^processor /proc/cpuinfo; cat /sys/devices/system/cpu/online; python3 -c 'import os; print(os.cpu_count())'; node -e 'console.log(require(\"os\").cpus().length)'; cut -d. -f1 /proc/uptime")
      const [cpuinfo, online, python, node, uptime] = r.stdout.trim().split('\n')
      assert.deepEqual([cpuinfo, online, python, node], ['1', '0', '1', '1'], r.stdout + r.stderr)
      assert.ok(Number(uptime) < 60, `uptime ${uptime} s: since the sandbox started`)
    } finally {
      await killSandbox(s.id)
    }
  })
})
