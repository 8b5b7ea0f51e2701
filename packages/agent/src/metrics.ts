// envd's GET /metrics for this sandbox: its cgroup's memory and CPU (v1 or v2, as the cgroup
// namespace shows them at /sys/fs/cgroup), not the host's; the disk is the root filesystem's.
import { readFile, statfs } from 'node:fs/promises';
import { cpus, freemem, totalmem } from 'node:os';

const CG = process.env.SANDLOT_CGROUP_ROOT ?? '/sys/fs/cgroup';

async function read(...paths: string[]): Promise<string | undefined> {
  for (const p of paths) {
    const text = await readFile(`${CG}/${p}`, 'utf8').catch(() => undefined);
    if (text !== undefined) return text.trim();
  }
  return undefined;
}

const statField = (stat: string | undefined, ...names: string[]): number | undefined => {
  for (const name of names) {
    const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(stat ?? '');
    if (m) return Number(m[1]);
  }
  return undefined;
};

/** The CPUs the sandbox may use: its CFS quota (rounded up), else the host's count. */
async function cpuCount(): Promise<number> {
  const host = cpus().length;
  const v2 = await read('cpu.max'); // "max 100000" or "150000 100000"
  const [quota, period] = v2 ? v2.split(' ').map(Number) : [Number(await read('cpu/cpu.cfs_quota_us', 'cpu,cpuacct/cpu.cfs_quota_us')), Number(await read('cpu/cpu.cfs_period_us', 'cpu,cpuacct/cpu.cfs_period_us'))];
  if (!quota || quota <= 0 || !period || !Number.isFinite(quota)) return host;
  return Math.max(1, Math.min(host, Math.ceil(quota / period)));
}

/** CPU time the sandbox's processes used (ns). */
async function cpuUsageNs(): Promise<number | undefined> {
  const v2 = statField(await read('cpu.stat'), 'usage_usec');
  if (v2 !== undefined) return v2 * 1000;
  const v1 = await read('cpuacct/cpuacct.usage', 'cpu,cpuacct/cpuacct.usage');
  return v1 === undefined ? undefined : Number(v1);
}

async function memory(): Promise<{ total: number; used: number; cache: number }> {
  const host = totalmem();
  const usage = Number((await read('memory.current', 'memory/memory.usage_in_bytes')) ?? NaN);
  if (!Number.isFinite(usage)) return { total: host, used: host - freemem(), cache: 0 };
  const limit = Number(await read('memory.max', 'memory/memory.limit_in_bytes'));
  const cache = statField(await read('memory.stat', 'memory/memory.stat'), 'file', 'total_cache', 'cache') ?? 0;
  // "max" (v2) or a huge number (v1) means no limit: the host's memory is the bound.
  const total = Number.isFinite(limit) && limit > 0 && limit < host ? limit : host;
  return { total, used: Math.max(0, usage - cache), cache };
}

let last: { at: number; ns: number } | undefined;

/** CPU use since the previous call (over a 100 ms sample on the first one), in % of the sandbox's CPUs. */
async function cpuUsedPct(count: number): Promise<number> {
  let ns = await cpuUsageNs();
  if (ns === undefined) return 0;
  if (!last) {
    last = { at: performance.now(), ns };
    await new Promise((r) => setTimeout(r, 100));
    ns = (await cpuUsageNs()) ?? ns;
  }
  const now = performance.now();
  const pct = ((ns - last.ns) / 1e6 / Math.max(1, now - last.at) / count) * 100;
  last = { at: now, ns };
  return Math.round(Math.min(100, Math.max(0, pct)) * 100) / 100;
}

export async function sandboxMetrics(): Promise<Record<string, number>> {
  const [count, mem] = await Promise.all([cpuCount(), memory()]);
  let diskUsed = 0;
  let diskTotal = 0;
  try {
    const s = await statfs('/');
    diskTotal = s.blocks * s.bsize;
    diskUsed = (s.blocks - s.bfree) * s.bsize;
  } catch {
    /* no disk figures */
  }
  return {
    ts: Math.floor(Date.now() / 1000),
    cpu_count: count,
    cpu_used_pct: await cpuUsedPct(count),
    mem_total: mem.total,
    mem_used: mem.used,
    mem_cache: mem.cache,
    mem_total_mib: Math.floor(mem.total / 1048576),
    mem_used_mib: Math.floor(mem.used / 1048576),
    disk_used: diskUsed,
    disk_total: diskTotal,
  };
}
