// A sandbox's CPU and memory figures from its cgroup, found the way the kernel names it: the init's
// /proc/<pid>/cgroup, mapped onto the host's cgroup mounts (/proc/self/mountinfo). Both layouts:
// cgroup v1 controllers (this host kind runs runc on a v1 hybrid) and the v2 unified hierarchy.
import fs from 'node:fs/promises'
import path from 'node:path'

export interface CgroupUsage {
  /** CPU time used since the cgroup was made (µs). */
  cpuUsec: number
  /** Memory charged to it (bytes), page cache included. */
  memUsage: number
  /** Its memory limit (bytes), or null when it has none. */
  memLimit: number | null
  /** Page cache among memUsage (bytes). */
  memCache: number
}

interface Mount {
  /** The cgroup path this mount shows at its mount point (mountinfo's root field). */
  root: string
  mountpoint: string
}

export interface CgroupMounts {
  /** v1 hierarchies by controller (cpuacct, memory, …). */
  v1: Map<string, Mount>
  v2?: Mount
}

/** The cgroup mounts of /proc/self/mountinfo: `id parent dev root mountpoint opts … - fstype source superopts`. */
export function parseMountinfo(text: string): CgroupMounts {
  const out: CgroupMounts = { v1: new Map() }
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ')
    if (!left || !right) continue
    const f = left.split(' ')
    const [fstype, , superopts = ''] = right.split(' ')
    const mount = { root: unescapeMount(f[3] ?? '/'), mountpoint: unescapeMount(f[4] ?? '') }
    if (fstype === 'cgroup2') out.v2 ??= mount
    else if (fstype === 'cgroup') for (const c of superopts.split(',')) if (!out.v1.has(c)) out.v1.set(c, mount)
  }
  return out
}

/** mountinfo escapes spaces and the like as octal (\040). */
const unescapeMount = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))

export interface ProcCgroups {
  v1: Map<string, string>
  v2?: string
}

/** /proc/<pid>/cgroup: `hierarchy-id:controllers:path`, v2's line being `0::path`. */
export function parseProcCgroup(text: string): ProcCgroups {
  const out: ProcCgroups = { v1: new Map() }
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line)
    if (!m) continue
    if (m[1] === '0' && m[2] === '') out.v2 = m[3]
    else for (const c of m[2]!.split(',')) out.v1.set(c, m[3]!)
  }
  return out
}

/** Where a cgroup path shows on the host: under the mount point, less the part the mount's root already is. */
function dirOf(mount: Mount | undefined, cgroupPath: string | undefined): string | undefined {
  if (!mount || cgroupPath === undefined) return undefined
  const root = mount.root === '/' ? '' : mount.root
  if (root && cgroupPath !== root && !cgroupPath.startsWith(`${root}/`)) return undefined
  return path.join(mount.mountpoint, cgroupPath.slice(root.length))
}

/** `key value` lines (cpu.stat, memory.stat) into numbers. */
export function parseFlatKeyed(text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    const [k, v] = line.split(' ')
    if (k && v !== undefined && /^\d+$/.test(v)) out.set(k, Number(v))
  }
  return out
}

const readText = (file: string) => fs.readFile(file, 'utf8')
const readNumber = async (file: string) => {
  const v = (await readText(file)).trim()
  if (!/^\d+$/.test(v)) throw new Error(`${file}: not a number ("${v.slice(0, 40)}")`)
  return Number(v)
}

/** v1's "no limit" is a page-aligned maximum of the counter; anything past 2^60 is no limit. */
const v1Limit = (n: number) => (n >= 2 ** 60 ? null : n)

/**
 * The usage of the cgroup the process `pid` is in. v1 controllers are read where mounted (on a
 * hybrid host the v2 hierarchy has none of them), else the v2 unified files.
 */
export async function cgroupUsage(pid: number, mounts: CgroupMounts): Promise<CgroupUsage> {
  const cg = parseProcCgroup(await readText(`/proc/${pid}/cgroup`))
  const unified = dirOf(mounts.v2, cg.v2)
  const cpuacct = dirOf(mounts.v1.get('cpuacct'), cg.v1.get('cpuacct'))
  const memory = dirOf(mounts.v1.get('memory'), cg.v1.get('memory'))

  let cpuUsec: number
  if (cpuacct) cpuUsec = Math.floor((await readNumber(path.join(cpuacct, 'cpuacct.usage'))) / 1000)
  else if (unified) cpuUsec = parseFlatKeyed(await readText(path.join(unified, 'cpu.stat'))).get('usage_usec') ?? 0
  else throw new Error(`no cgroup of process ${pid} has CPU figures`)

  if (memory) {
    const stat = parseFlatKeyed(await readText(path.join(memory, 'memory.stat')))
    return {
      cpuUsec,
      memUsage: await readNumber(path.join(memory, 'memory.usage_in_bytes')),
      memLimit: v1Limit(await readNumber(path.join(memory, 'memory.limit_in_bytes'))),
      // total_*: this cgroup and those below it (the sandbox's processes may make sub-cgroups).
      memCache: stat.get('total_cache') ?? stat.get('cache') ?? 0,
    }
  }
  if (!unified) throw new Error(`no cgroup of process ${pid} has memory figures`)
  const max = (await readText(path.join(unified, 'memory.max'))).trim()
  const stat = parseFlatKeyed(await readText(path.join(unified, 'memory.stat')))
  return {
    cpuUsec,
    memUsage: await readNumber(path.join(unified, 'memory.current')),
    memLimit: /^\d+$/.test(max) ? Number(max) : null,
    memCache: stat.get('file') ?? 0,
  }
}

let mountsCache: CgroupMounts | undefined

/** The host's cgroup mounts (read once: they do not move while the daemon runs). */
export async function cgroupMounts(): Promise<CgroupMounts> {
  mountsCache ??= parseMountinfo(await readText('/proc/self/mountinfo'))
  return mountsCache
}
