// Inside a sandbox: Debian, the right users, limits that hold, and nothing of the host visible.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import { after, before, describe, test } from 'node:test'
import { api, apiKey, apiUrl, createSandbox, home, killSandbox, readFile, run } from './helpers.js'

describe('a sandbox', () => {
  let id = ''
  before(async () => {
    id = (await createSandbox({ metadata: { suite: 'sandbox' } })).id
  })
  after(() => killSandbox(id))

  test('runs Debian 12 with user 1000 by default and root through sudo', async () => {
    const os = await run(id, 'cat /etc/os-release')
    assert.match(os.stdout, /Debian GNU\/Linux 12/)
    assert.equal((await run(id, 'id -u')).stdout, '1000\n')
    const sudo = await run(id, 'sudo id -u')
    assert.equal(sudo.stdout, '0\n', sudo.stderr)
    assert.equal(sudo.stderr, '', 'sudo prints no warning (the hostname resolves)')
    assert.equal((await run(id, 'id -u', { user: 'root' })).stdout, '0\n')
    assert.equal((await run(id, 'hostname')).stdout, `${id}\n`)
    assert.equal((await run(id, 'python --version && pip --version >/dev/null && git --version >/dev/null && curl --version >/dev/null && echo tools')).stdout.split('\n')[1], 'tools')
  })

  test('reports the exit code of a failing command', async () => {
    const r = await run(id, 'echo out; echo err >&2; exit 3')
    assert.deepEqual([r.stdout, r.stderr, r.exitCode], ['out\n', 'err\n', 3])
  })

  test("cannot see the host's processes, files or $SANDLOT_HOME", async () => {
    const ps = await run(id, 'ps -e -o pid=,comm=', { user: 'root' })
    const comms = ps.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/)[1])
    assert.ok(!comms.includes('runc') && !comms.some((c) => c?.startsWith('sandlotd')), ps.stdout)
    assert.ok(comms.length < 10, `only the sandbox's own processes: ${ps.stdout}`)
    assert.equal(ps.stdout.trim().split('\n')[0]!.trim().split(/\s+/)[0], '1')
    // A file that exists on the host, by a path the sandbox could guess.
    const marker = `${home}/host-marker-${process.pid}`
    fs.writeFileSync(marker, 'host secret')
    try {
      const r = await run(id, `cat ${marker}; ls ${home}`, { user: 'root' })
      assert.notEqual(r.exitCode, 0)
      assert.doesNotMatch(r.stdout, /host secret|api-key/)
    } finally {
      fs.rmSync(marker)
    }
    const mounts = await run(id, 'cat /proc/mounts', { user: 'root' })
    assert.doesNotMatch(mounts.stdout, new RegExp(home.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').slice(0, 40)), 'the host path of the sandbox is not shown')
  })

  test("root in the sandbox is not root on the host", async () => {
    const r = await run(id, 'cat /proc/self/uid_map', { user: 'root' })
    const [inside, outside] = r.stdout.trim().split(/\s+/).map(Number)
    assert.equal(inside, 0)
    assert.ok(outside! >= 1000, `sandbox root maps to host uid ${outside}`)
    const probe = await run(id, 'mount -t tmpfs none /mnt 2>&1; unshare -U true 2>&1; echo done', { user: 'root' })
    assert.match(probe.stdout, /done/)
    assert.doesNotMatch((await run(id, 'grep " /mnt " /proc/mounts || true', { user: 'root' })).stdout, /tmpfs/)
  })

  test('masks /proc and /sys paths that reveal the host', async () => {
    // (/proc/kcore is masked too where the kernel has one; this one has none.)
    const r = await run(id, 'wc -c < /proc/keys; wc -c < /proc/timer_list; ls /sys/firmware | wc -l; echo x > /proc/sys/kernel/hostname 2>/dev/null || echo ro', { user: 'root' })
    assert.deepEqual(r.stdout.trim().split('\n'), ['0', '0', '0', 'ro'])
  })

  test('a symlink to /etc/shadow read through the files API returns the sandbox\'s own file', async () => {
    await run(id, 'ln -sf /etc/shadow /home/user/shadow-link', { user: 'root' })
    const inside = (await run(id, 'cat /etc/shadow', { user: 'root' })).stdout
    const got = await readFile(id, '/home/user/shadow-link', 'root')
    assert.equal(got.status, 200)
    assert.equal(got.body.toString(), inside)
    assert.notEqual(got.body.toString(), fs.readFileSync('/etc/shadow', 'utf8'))
    assert.match(got.body.toString(), /^user:/m, "the sandbox's shadow has its own user")
  })
})

describe('limits', () => {
  test('allocating past the memory limit kills only the offending process', async () => {
    const { id } = await createSandbox({ memoryMB: 128 })
    try {
      await run(id, 'sleep 600 >/dev/null 2>&1 &')
      const hog = await run(id, 'python3 -c "b = bytearray(400 * 1024 * 1024); print(len(b))"')
      assert.notEqual(hog.exitCode, 0, 'the allocation did not succeed')
      assert.doesNotMatch(hog.stdout, /419430400/)
      // The sandbox, its agent and its other processes are still there.
      assert.equal((await run(id, 'echo alive')).stdout, 'alive\n')
      assert.match((await run(id, 'pgrep -x sleep')).stdout, /^\d+\n$/)
    } finally {
      await killSandbox(id)
    }
  })

  test('CPU, memory and pids limits follow the request, within the defaults otherwise', async () => {
    const cgroup = (c: string, id: string, file: string) => fs.readFileSync(`/sys/fs/cgroup/${c}/sandlot/${id}/${file}`, 'utf8').trim()
    const [small, big] = await Promise.all([createSandbox(), createSandbox({ cpuCount: 2, memoryMB: 1024, pids: 256 })])
    try {
      assert.deepEqual([cgroup('cpu', small.id, 'cpu.cfs_quota_us'), cgroup('memory', small.id, 'memory.limit_in_bytes'), cgroup('pids', small.id, 'pids.max')], ['100000', String(512 * 2 ** 20), '512'])
      assert.deepEqual([cgroup('cpu', big.id, 'cpu.cfs_quota_us'), cgroup('memory', big.id, 'memory.limit_in_bytes'), cgroup('pids', big.id, 'pids.max')], ['200000', String(1024 * 2 ** 20), '256'])
      assert.equal(cgroup('memory', big.id, 'memory.memsw.limit_in_bytes'), String(1024 * 2 ** 20), 'no swap beyond the limit')
    } finally {
      await Promise.all([killSandbox(small.id), killSandbox(big.id)])
    }
  })

  test("envd's /metrics reports the sandbox's own CPUs, memory and CPU use, not the host's", async () => {
    const s = await createSandbox({ cpuCount: 1, memoryMB: 256 })
    const metrics = async () => {
      const res = await fetch(`${apiUrl}/metrics`, { headers: { 'e2b-sandbox-id': s.id, 'x-api-key': apiKey() } })
      assert.equal(res.status, 200)
      return (await res.json()) as Record<string, number>
    }
    try {
      const idle = await metrics()
      assert.equal(idle.cpu_count, 1)
      assert.equal(idle.mem_total, 256 * 2 ** 20)
      assert.equal(idle.mem_total_mib, 256)
      assert.ok(idle.mem_used > 0 && idle.mem_used < 100 * 2 ** 20, `idle mem_used ${idle.mem_used}`)
      assert.ok(idle.cpu_used_pct < 50, `idle cpu ${idle.cpu_used_pct}`)
      // 120 MiB held by one process, and one CPU kept busy.
      await run(s.id, `nohup python3 -c "import time; b = bytearray(120 << 20); time.sleep(30)" >/dev/null 2>&1 & nohup timeout 5 sh -c 'while :; do :; done' >/dev/null 2>&1 &`)
      await new Promise((r) => setTimeout(r, 1000))
      await metrics()
      await new Promise((r) => setTimeout(r, 1000))
      const busy = await metrics()
      assert.ok(busy.cpu_used_pct > 60, `busy cpu ${busy.cpu_used_pct}`)
      assert.ok(busy.mem_used > 120 * 2 ** 20, `busy mem_used ${busy.mem_used}`)
    } finally {
      await killSandbox(s.id)
    }
  })

  test('many small processes past the memory limit lose one of their own, never the agent', async () => {
    const { id } = await createSandbox({ memoryMB: 128 })
    try {
      // Each holds 24 MiB: smaller than the agent, so without a preference the agent would be chosen.
      const hold = `python3 -c "import time; b = b'x' * (24 << 20); time.sleep(600)"`
      await run(id, Array(6).fill(`${hold} >/dev/null 2>&1 &`).join(' ') + ' sleep 3')
      assert.equal((await run(id, 'echo alive')).stdout, 'alive\n')
      const left = Number((await run(id, 'pgrep -c -f time.sleep || true')).stdout)
      assert.ok(left < 6, `the OOM killer took at least one holder (${left} left)`)
      // The mark is set before the command execs (choom), so the shell and what it forks at once have it.
      assert.equal((await run(id, 'cat /proc/$$/oom_score_adj /proc/self/oom_score_adj')).stdout, '500\n500\n')
    } finally {
      await killSandbox(id)
    }
  })

  test('a fork bomb stops at the pids limit while the host stays responsive', async () => {
    const { id } = await createSandbox({ pids: 128 })
    const cgroup = `/sys/fs/cgroup/pids/sandlot/${id}`
    try {
      // The bomb's own lifetime is bounded by Connect-Timeout-Ms; its stream may end any way it likes.
      const bomb = run(id, 'bomb() { bomb | bomb & }; bomb; sleep 5', { timeoutMs: 8_000 }).catch(() => undefined)
      const latencies: number[] = []
      let peak = 0
      for (let i = 0; i < 15; i++) {
        const t = Date.now()
        assert.equal((await fetch(`${apiUrl}/health`)).status, 200)
        latencies.push(Date.now() - t)
        peak = Math.max(peak, Number(fs.readFileSync(`${cgroup}/pids.current`, 'utf8')))
        await new Promise((r) => setTimeout(r, 200))
      }
      assert.equal(fs.readFileSync(`${cgroup}/pids.max`, 'utf8').trim(), '128')
      assert.ok(peak <= 128, `peak ${peak} pids`)
      assert.match(fs.readFileSync(`${cgroup}/pids.events`, 'utf8'), /^max [1-9]\d*$/m, 'forks were refused at the limit')
      assert.ok(Math.max(...latencies) < 1000, `health latencies ${latencies}`)
      await bomb
    } finally {
      await killSandbox(id)
    }
    assert.ok(!fs.existsSync(cgroup), 'the cgroup is gone with the sandbox')
    assert.equal((await api('GET', '/health')).status, 200)
  })
})

describe('two sandboxes', () => {
  test("do not see each other's files or processes", async () => {
    const [a, b] = await Promise.all([createSandbox(), createSandbox()])
    try {
      await run(a.id, 'echo only-in-a > /home/user/a.txt; sleep 600 >/dev/null 2>&1 & echo started')
      assert.equal((await run(b.id, 'test -e /home/user/a.txt')).exitCode, 1)
      const seen = await run(b.id, 'cat /home/user/a.txt; ps -e -o args=', { user: 'root' })
      assert.doesNotMatch(seen.stdout, /only-in-a|sleep 600/)
      assert.match((await run(a.id, 'ps -e -o args=')).stdout, /sleep 600/)
      assert.equal((await run(a.id, 'cat /home/user/a.txt')).stdout, 'only-in-a\n')
    } finally {
      await Promise.all([killSandbox(a.id), killSandbox(b.id)])
    }
  })
})
