// LXCFS (Debian's lxcfs): files of /proc and /sys computed for the process that reads them, from its
// own cgroup's limits, so `free`, `top`, `uptime`, /proc/cpuinfo and what programs size themselves
// by (Python's os.cpu_count(), Node's os.cpus(), the JVM) show the sandbox's memory and CPUs, not the
// host's. One FUSE filesystem for all sandboxes: the system's own (/var/lib/lxcfs, where its service
// runs), else one Sandlot starts under its home, detached so it outlives the daemon (sandboxes keep
// their binds across a daemon restart). Without lxcfs sandboxes see the host's figures; nothing breaks.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import type { Logger } from 'pino'

/** The files a sandbox sees through lxcfs (bound over its own /proc and /sys ones). */
export const LXCFS_FILES = [
  '/proc/cpuinfo', '/proc/diskstats', '/proc/meminfo', '/proc/stat', '/proc/swaps', '/proc/uptime',
  '/sys/devices/system/cpu/online',
]

const SYSTEM_MOUNT = '/var/lib/lxcfs'
const START_TIMEOUT_MS = 5000

/** Whether `dir` is a live lxcfs mount (a dead one's files fail with ENOTCONN). */
function live(dir: string): boolean {
  try {
    fs.readFileSync(path.join(dir, 'proc/meminfo'))
    return isLxcfsMount(dir)
  } catch {
    return false
  }
}

function isLxcfsMount(dir: string): boolean {
  return fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => {
    const [, where, type] = l.split(' ')
    return where === dir && type === 'fuse.lxcfs'
  })
}

/**
 * The directory of a running lxcfs, started when needed; undefined (with a warning saying why) when
 * it cannot run here or SANDLOT_LXCFS=0.
 */
export async function ensureLxcfs(home: string, log: Logger, env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  if (env.SANDLOT_LXCFS === '0' || env.SANDLOT_LXCFS === 'false') return undefined
  if (live(SYSTEM_MOUNT)) return SYSTEM_MOUNT
  const dir = path.join(home, 'lxcfs')
  if (live(dir)) return dir
  // A dead one (its process gone) leaves a mount that fails every read: away with it first.
  if (fs.existsSync(dir) && isLxcfsMount(dir)) await new Promise((r) => spawn('umount', ['-l', dir]).once('close', r))
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 })
  const out = fs.openSync(path.join(home, 'lxcfs.log'), 'a')
  // --enable-cfs: CPUs from the cgroup's quota (cpu.cfs_quota_us), which is how sandboxes are limited.
  const child = spawn('lxcfs', ['--enable-cfs', '--enable-pidfd', '-p', path.join(home, 'lxcfs.pid'), dir], { detached: true, stdio: ['ignore', out, out] })
  fs.closeSync(out)
  const failed = new Promise<string>((resolve) => {
    child.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ENOENT' ? 'lxcfs is not installed (apt-get install lxcfs)' : err.message))
    child.once('exit', (code, signal) => resolve(`lxcfs exited (${signal ?? `code ${code}`}); see ${path.join(home, 'lxcfs.log')}`))
  })
  child.unref()
  const deadline = Date.now() + START_TIMEOUT_MS
  let why: string | undefined
  void failed.then((w) => (why = w))
  while (!why && Date.now() < deadline) {
    if (live(dir)) return dir
    await new Promise((r) => setTimeout(r, 50))
  }
  log.warn(`sandboxes see the host's memory and CPUs in free, top and /proc: ${why ?? 'lxcfs did not answer in time'}`)
  if (!why) child.kill()
  return undefined
}
