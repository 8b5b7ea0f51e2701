// The OCI driver: one bundle per sandbox under $SANDLOT_HOME/sandboxes/<id>, an overlay rootfs
// (template below, the sandbox's own layer above), started detached by runc, crun or runsc.
import { execFile, spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { promisify } from 'node:util'
import type { Config, RuntimeName } from '../config.js'
import { unavailable } from '../errors.js'
import type { RuntimeDriver, RuntimeState, SandboxSpec } from './driver.js'
import type { IdRange } from './idmap.js'
import { BlankImages, checkLayerTools, mountLayer, mountsUnder, removeLayerImage, unmount } from './layer.js'
import { hostMaxOpenFiles, ociSpec } from './spec.js'

const exec = promisify(execFile)

const INSTALL_HINT: Record<RuntimeName, string> = {
  runc: 'apt-get install runc',
  crun: 'apt-get install crun (crun needs a cgroup v2 host)',
  runsc: 'apt-get install -t bookworm-backports runsc',
}

interface Paths {
  dir: string
  bundle: string
  rootfs: string
  /** The sandbox's own filesystem: a sparse ext4 image (layer.ts), mounted at `layer`. */
  image: string
  layer: string
  upper: string
  work: string
  run: string
  log: string
  /** The init's host pid (written by the runtime) and its start time, against pid reuse. */
  pidFile: string
  startFile: string
}

export class OciDriver implements RuntimeDriver {
  readonly name: RuntimeName
  private readonly stateRoot: string
  private readonly sandboxesDir: string
  private readonly maxOpenFiles = hostMaxOpenFiles()
  private readonly blankImages: BlankImages

  constructor(
    private readonly config: Config,
    private readonly idRange: IdRange,
  ) {
    this.name = config.runtime
    this.stateRoot = path.join(config.home, 'runtime', this.name)
    this.sandboxesDir = path.join(config.home, 'sandboxes')
    this.blankImages = new BlankImages(path.join(config.home, 'blank-disks'), config.defaultLimits.diskSizeMB)
    // Sandbox roots must reach their bundles through it; other host users must not list it.
    fs.mkdirSync(this.sandboxesDir, { recursive: true, mode: 0o711 })
    fs.chmodSync(this.sandboxesDir, 0o711)
  }

  private paths(id: string): Paths {
    const dir = path.join(this.sandboxesDir, id)
    return {
      dir,
      bundle: path.join(dir, 'bundle'),
      rootfs: path.join(dir, 'bundle', 'rootfs'),
      image: path.join(dir, 'disk.img'),
      layer: path.join(dir, 'layer'),
      upper: path.join(dir, 'layer', 'upper'),
      work: path.join(dir, 'layer', 'work'),
      run: path.join(dir, 'run'),
      // On the sandbox's own filesystem (outside what it sees): what it writes to its init's
      // stdout or stderr counts against its own disk, never the host's.
      log: path.join(dir, 'layer', 'sandbox.log'),
      pidFile: path.join(dir, 'init.pid'),
      startFile: path.join(dir, 'init.start'),
    }
  }

  agentSocket(id: string): string {
    return path.join(this.paths(id).run, 'agent.sock')
  }

  private runtimeArgs(...args: string[]): string[] {
    return ['--root', this.stateRoot, ...args]
  }

  async check(probeRootfs: string): Promise<void> {
    try {
      await exec(this.name, ['--version'])
    } catch {
      throw new Error(`The runtime "${this.name}" (SANDLOT_RUNTIME) is not installed: ${INSTALL_HINT[this.name]}`)
    }
    await checkLayerTools()
    await this.blankImages.init()
    for (const file of [this.config.nodeBinary, path.join(this.config.agentDir, 'agent.mjs'), ...Object.values(this.config.nativeModules)]) {
      if (!fs.existsSync(file)) throw new Error(`${file} is missing: run "npm run build" first`)
    }
    // A real container proves the runtime works on this host (cgroup layout, user namespaces, seccomp).
    const id = `probe-${process.pid}`
    await this.destroy(id)
    try {
      await this.start({ id, templateRootfs: probeRootfs, limits: this.config.defaultLimits, envVars: {}, accessToken: '' }, ['/bin/true'])
      await this.waitStopped(id, 10_000)
    } catch (err) {
      throw new Error(`The runtime "${this.name}" cannot run sandboxes on this host: ${(err as Error).message}`)
    } finally {
      await this.destroy(id)
    }
  }

  async create(spec: SandboxSpec): Promise<void> {
    try {
      await this.start(spec)
      await this.waitForAgent(spec.id, 15_000)
    } catch (err) {
      await this.destroy(spec.id).catch(() => {})
      throw err
    } finally {
      // Later, so that formatting does not compete with the sandbox's first commands.
      setTimeout(() => void this.blankImages.refill(), 1000).unref()
    }
  }

  private async start(spec: SandboxSpec, args?: string[]): Promise<void> {
    const p = this.paths(spec.id)
    const owner = this.idRange.hostId
    // Root's and the sandbox's root's alone (runc's init reaches the rootfs as the latter): no other
    // host user can list it or reach a file the sandbox made.
    fs.mkdirSync(p.dir, { mode: 0o710 })
    fs.chownSync(p.dir, 0, owner)
    await this.blankImages.take(p.image, spec.limits.diskSizeMB)
    await mountLayer(p.image, p.layer)
    fs.chownSync(p.layer, 0, owner)
    fs.chmodSync(p.layer, 0o710)
    fs.mkdirSync(p.rootfs, { recursive: true })
    for (const d of [p.upper, p.work]) fs.mkdirSync(d, { recursive: true, mode: 0o700 })
    // The sandbox's own layer belongs to its root; only its top directory, /etc/hosts and
    // /etc/hostname (the sandbox's id, never the template builder's) are made here.
    fs.chownSync(p.upper, owner, owner)
    fs.chmodSync(p.upper, 0o755)
    fs.mkdirSync(path.join(p.upper, 'etc'), { mode: 0o755 })
    fs.chownSync(path.join(p.upper, 'etc'), owner, owner)
    const etcFiles = {
      hosts: `127.0.0.1\tlocalhost\n127.0.1.1\t${spec.id}\n::1\tlocalhost ip6-localhost ip6-loopback\n`,
      hostname: `${spec.id}\n`,
    }
    for (const [name, content] of Object.entries(etcFiles)) {
      const file = path.join(p.upper, 'etc', name)
      fs.writeFileSync(file, content)
      fs.chownSync(file, owner, owner)
    }
    fs.mkdirSync(p.run, { mode: 0o700 })
    fs.chownSync(p.run, owner, owner)
    fs.writeFileSync(
      path.join(p.run, 'agent.json'),
      JSON.stringify({ envVars: spec.envVars, defaultUser: 'user', accessToken: spec.accessToken || undefined }),
      { mode: 0o644 },
    )
    // Relative layer paths (from the sandbox's directory, via a "lower" link to the template): the
    // sandbox's /proc/mounts shows the options as given, and must not reveal host paths.
    fs.symlinkSync(spec.templateRootfs, path.join(p.dir, 'lower'))
    await exec('mount', ['-t', 'overlay', 'overlay', '-o', 'lowerdir=lower,upperdir=layer/upper,workdir=layer/work', 'bundle/rootfs'], { cwd: p.dir })
    fs.writeFileSync(
      path.join(p.bundle, 'config.json'),
      JSON.stringify(
        ociSpec({
          id: spec.id,
          rootfs: p.rootfs,
          idRange: this.idRange,
          limits: spec.limits,
          nodeBinary: this.config.nodeBinary,
          agentDir: this.config.agentDir,
          nativeModules: this.config.nativeModules,
          runDir: p.run,
          noNewPrivileges: this.config.noNewPrivileges,
          maxOpenFiles: this.maxOpenFiles,
          args,
        }),
      ),
    )
    const log = fs.openSync(p.log, 'a')
    try {
      await new Promise<void>((resolve, reject) => {
        // Detached into its own session: the sandbox outlives the daemon (kill -9, restart, upgrade).
        const child = spawn(this.name, this.runtimeArgs('run', '--detach', '--pid-file', p.pidFile, '--bundle', p.bundle, spec.id), {
          stdio: ['ignore', log, log],
          detached: true,
        })
        child.on('error', reject)
        child.on('exit', (code) => {
          if (code === 0) return resolve()
          reject(new Error(`${this.name} run exited with ${code}: ${tailOf(p.log)}`))
        })
      })
    } finally {
      fs.closeSync(log)
    }
    const pid = fs.readFileSync(p.pidFile, 'utf8').trim()
    fs.writeFileSync(p.startFile, processStartTime(pid) ?? '')
  }

  alive(id: string): boolean {
    const p = this.paths(id)
    try {
      const pid = fs.readFileSync(p.pidFile, 'utf8').trim()
      const start = fs.readFileSync(p.startFile, 'utf8').trim()
      return start !== '' && processStartTime(pid) === start
    } catch {
      return false
    }
  }

  private async waitForAgent(id: string, timeoutMs: number): Promise<void> {
    const socket = this.agentSocket(id)
    const started = Date.now()
    let lastStateCheck = started
    for (;;) {
      if (await canConnect(socket)) return
      const now = Date.now()
      if (now - started > timeoutMs) throw unavailable(`The agent of sandbox ${id} did not start within ${timeoutMs} ms: ${tailOf(this.paths(id).log)}`)
      // Asking the runtime costs a process spawn: only now and then, to fail fast when the sandbox died.
      if (now - lastStateCheck > 250) {
        lastStateCheck = now
        if ((await this.state(id)) !== 'running') throw unavailable(`Sandbox ${id} stopped while starting: ${tailOf(this.paths(id).log)}`)
      }
      await sleep(2)
    }
  }

  private async waitStopped(id: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while ((await this.state(id)) === 'running') {
      if (Date.now() > deadline) throw new Error(`probe container ${id} did not exit`)
      await sleep(10)
    }
  }

  async state(id: string): Promise<RuntimeState> {
    try {
      const { stdout } = await exec(this.name, this.runtimeArgs('state', id))
      const status = (JSON.parse(stdout) as { status: string }).status
      return status === 'running' || status === 'created' || status === 'paused' ? 'running' : 'stopped'
    } catch {
      return 'missing'
    }
  }

  async list(): Promise<string[]> {
    const ids = new Set<string>()
    try {
      const { stdout } = await exec(this.name, this.runtimeArgs('list', '--format', 'json'))
      for (const c of (JSON.parse(stdout) as { id: string }[] | null) ?? []) ids.add(c.id)
    } catch {
      // no state root yet
    }
    if (fs.existsSync(this.sandboxesDir)) for (const d of fs.readdirSync(this.sandboxesDir)) ids.add(d)
    return [...ids]
  }

  async destroy(id: string): Promise<void> {
    const p = this.paths(id)
    // delete --force kills every process (SIGKILL) and removes the container's cgroups.
    await exec(this.name, this.runtimeArgs('delete', '--force', id)).catch(() => {})
    // The overlay, then the filesystem under it: the sandbox's files go with it in one step.
    const mounted = await mountsUnder(p.dir)
    const others = mounted.filter((m) => m !== p.rootfs && m !== p.layer).sort().reverse()
    for (const target of [p.rootfs, p.layer, ...others]) if (mounted.includes(target)) await unmount(target)
    await removeLayerImage(p.image)
    // What is left is a handful of small files (or, for a sandbox made before disk quotas, its layer
    // on the host's disk): rm walks it in a child process, and never into a mount.
    const rm = await exec('rm', ['-rf', '--one-file-system', '--', p.dir]).catch((err: Error) => err)
    if (rm instanceof Error) throw new Error(`cannot remove ${p.dir}: ${rm.message}`)
  }
}

/** Start time (clock ticks since boot) of a live, non-zombie process; undefined when there is none. */
function processStartTime(pid: string): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name, which is in parentheses and may contain spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (fields[0] === 'Z' || fields[0] === 'X') return undefined
    return fields[19]
  } catch {
    return undefined
  }
}

function canConnect(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(socket)
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })
}

/** The last lines of a log, from its last 4 KiB whatever its size. */
function tailOf(file: string): string {
  let fd: number | undefined
  try {
    fd = fs.openSync(file, 'r')
    const size = fs.fstatSync(fd).size
    const buf = Buffer.alloc(Math.min(size, 4096))
    fs.readSync(fd, buf, 0, buf.length, size - buf.length)
    return buf.toString('utf8').trim().split('\n').slice(-5).join('\n') || '(no output)'
  } catch {
    return '(no log)'
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
