// The pure parts of metrics (pure): E2B's buckets, cgroup files and mounts as the kernel writes
// them (v1 hybrid and v2), and the CLI's chart fitting.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { fitSeries } from '../packages/cli/src/observe.js'
import { bucketSeconds, bucketize } from '../packages/server/src/lifecycle/metrics.js'
import { parseFlatKeyed, parseMountinfo, parseProcCgroup } from '../packages/server/src/runtime/cgroup.js'
import type { MetricRow } from '../packages/server/src/store/history.js'

const row = (at: number, cpu: number, mem: number): MetricRow => ({ sandboxId: 's', at, cpuCount: 1, cpuUsedPct: cpu, memUsed: mem, memTotal: 100, memCache: 1, diskUsed: 5, diskTotal: 10 })

describe('metrics buckets (E2B: 5 s, 30 s, 1 min, 2 min, 5 min, 15 min)', () => {
  test('the step for each range length', () => {
    const h = 3600
    assert.deepEqual([0, h - 1, h, 6 * h - 1, 6 * h, 12 * h, 24 * h, 7 * 24 * h - 1, 7 * 24 * h].map(bucketSeconds), [5, 5, 30, 30, 60, 120, 300, 300, 900])
  })
  test('samples folded: CPU averaged, memory at its highest, stamped with the last sample', () => {
    const rows = [row(0, 10, 5), row(5000, 30, 9), row(29_000, 20, 7), row(30_000, 50, 1)]
    assert.deepEqual(bucketize(rows, 5), rows)
    const b = bucketize(rows, 30)
    assert.equal(b.length, 2)
    assert.deepEqual([b[0]!.at, b[0]!.cpuUsedPct, b[0]!.memUsed], [29_000, 20, 9])
    assert.deepEqual([b[1]!.at, b[1]!.cpuUsedPct, b[1]!.memUsed], [30_000, 50, 1])
    assert.deepEqual(bucketize([], 900), [])
  })
})

describe('cgroup files', () => {
  test('a v1 hybrid host: controllers by mount, the unified hierarchy apart', () => {
    const m = parseMountinfo(
      [
        '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
        '33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct',
        '35 31 0:32 /nested /sys/fs/cgroup/mem\\040ory rw,relatime - cgroup cgroup rw,memory',
        '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
      ].join('\n'),
    )
    assert.deepEqual(m.v1.get('cpuacct'), { root: '/', mountpoint: '/sys/fs/cgroup/cpu,cpuacct' })
    assert.deepEqual(m.v1.get('memory'), { root: '/nested', mountpoint: '/sys/fs/cgroup/mem ory' })
    assert.deepEqual(m.v2, { root: '/', mountpoint: '/sys/fs/cgroup/unified' })
    const cg = parseProcCgroup('4:memory:/sandlot/x\n2:cpu,cpuacct:/sandlot/x\n0::/sandlot/x\n')
    assert.equal(cg.v1.get('cpuacct'), '/sandlot/x')
    assert.equal(cg.v1.get('memory'), '/sandlot/x')
    assert.equal(cg.v2, '/sandlot/x')
  })
  test('flat keyed files (cpu.stat, memory.stat)', () => {
    const f = parseFlatKeyed('usage_usec 123\nuser_usec 100\nfile 4096\nbad x\n')
    assert.deepEqual([f.get('usage_usec'), f.get('file'), f.get('bad')], [123, 4096, undefined])
  })
})

describe('the CLI chart', () => {
  test('a series fitted to a width by means of neighbours', () => {
    assert.deepEqual(fitSeries([1, 2, 3], 5), [1, 2, 3])
    assert.deepEqual(fitSeries([1, 3, 5, 7], 2), [2, 6])
    assert.equal(fitSeries(Array.from({ length: 1000 }, (_, i) => i), 80).length, 80)
  })
})
