// LXCFS (Debian's lxcfs): files of /proc and /sys computed for the process that reads them, from its
// own cgroup's limits, so `free`, `top`, `uptime`, /proc/cpuinfo and what programs size themselves
// by (Python's os.cpu_count(), Node's os.cpus(), the JVM) show the sandbox's memory and CPUs, not the
// host's. One FUSE filesystem for all sandboxes: the system's own (/var/lib/lxcfs, where its service
// runs), else one Sandlot starts at /run/sandlot-lxcfs for every Sandlot server on the host, detached
// so it outlives them (sandboxes keep their binds across a restart). Without lxcfs sandboxes see the
// host's figures; nothing breaks.
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

/** Where Sandlot's own lxcfs serves, for every Sandlot server on the host (lxcfs is host-wide: each
 * read is answered for the reader's own cgroup). Under /run: it goes with the host's next boot, as
 * lxcfs itself does. */
export const SANDLOT_MOUNT = '/run/sandlot-lxcfs'

/**
 * The directory of a running lxcfs, started when needed; undefined (with a warning saying why) when
 * it cannot run here or SANDLOT_LXCFS=0.
 */
export async function ensureLxcfs(log: Logger, env: NodeJS.ProcessEnv = process.env, dir = SANDLOT_MOUNT): Promise<string | undefined> {
  if (env.SANDLOT_LXCFS === '0' || env.SANDLOT_LXCFS === 'false') return undefined
  // Host views are a nicety: whatever goes wrong here, sandboxes are still made (with the host's figures).
  return startLxcfs(log, dir).catch((err: Error) => warn(log, err.message))
}

async function startLxcfs(log: Logger, dir: string): Promise<string | undefined> {
  if (live(SYSTEM_MOUNT)) return SYSTEM_MOUNT
  if (live(dir)) return dir
  // Servers starting at once: one starts lxcfs (the one that makes the lock), the others wait for it.
  const lock = `${dir}.starting`
  let mine = false
  try {
    fs.writeFileSync(lock, String(process.pid), { flag: 'wx' })
    mine = true
  } catch {
    // Another server is starting it (or died doing so: its lock is stale after the timeout).
    const age = Date.now() - (fs.statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? 0)
    if (age > START_TIMEOUT_MS * 2) {
      fs.rmSync(lock, { force: true })
      return startLxcfs(log, dir)
    }
  }
  try {
    if (!mine) return (await waitLive(dir, () => undefined)) ? dir : warn(log, 'another Sandlot server was starting lxcfs and it did not answer in time')
    // A dead one (its process gone) leaves a mount that fails every call on it with ENOTCONN, even a
    // stat (so existsSync says it is not there): away with it first, by the mount table.
    for (let i = 0; i < 5 && isLxcfsMount(dir); i++) await new Promise((r) => spawn('umount', ['-l', dir]).once('close', r))
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 })
    const out = fs.openSync(`${dir}.log`, 'a')
    // --enable-cfs: CPUs from the cgroup's quota (cpu.cfs_quota_us), which is how sandboxes are limited.
    const child = spawn('lxcfs', ['--enable-cfs', '--enable-pidfd', '-p', `${dir}.pid`, dir], { detached: true, stdio: ['ignore', out, out] })
    fs.closeSync(out)
    let why: string | undefined
    child.once('error', (err: NodeJS.ErrnoException) => (why = err.code === 'ENOENT' ? 'lxcfs is not installed (apt-get install lxcfs)' : err.message))
    child.once('exit', (code, signal) => (why ??= `lxcfs exited (${signal ?? `code ${code}`}); see ${dir}.log`))
    child.unref()
    if (await waitLive(dir, () => why)) return dir
    if (!why) child.kill()
    return warn(log, why ?? 'lxcfs did not answer in time')
  } finally {
    if (mine) fs.rmSync(lock, { force: true })
  }
}

async function waitLive(dir: string, failed: () => string | undefined): Promise<boolean> {
  const deadline = Date.now() + START_TIMEOUT_MS
  while (!failed() && Date.now() < deadline) {
    if (live(dir)) return true
    await new Promise((r) => setTimeout(r, 50))
  }
  return false
}

function warn(log: Logger, why: string): undefined {
  log.warn(`sandboxes see the host's memory and CPUs in free, top and /proc: ${why}`)
  return undefined
}
