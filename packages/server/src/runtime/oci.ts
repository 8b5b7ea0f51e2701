// The OCI driver: one bundle per sandbox under $SANDLOT_HOME/sandboxes/<id>, an overlay rootfs
// (template below through an idmapped mount, the sandbox's own layer above), in a user namespace of
// its own, started detached by runc, crun or runsc.
import { execFile, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import path from 'node:path'
import { promisify } from 'node:util'
import { hostOpenFilesLimit, type Config, type RuntimeName } from '../config.js'
import { unavailable } from '../errors.js'
import type { NetworkAttacher, RestartSpec, RuntimeDriver, RuntimeState, SandboxSpec, SandboxUsage } from './driver.js'
import { cgroupMounts, cgroupUsage } from './cgroup.js'
import type { IdRange, SandboxIds } from './idmap.js'
import { mountAgentFiles, unmountAgentFiles } from './agent-files.js'
import { BlankImages, checkLayerTools, mountLayer, mountsUnder, removeLayerImage, unmount } from './layer.js'
import { processStartTime } from '../lifecycle/home-lock.js'
import { CpuSets } from './cpusets.js'
import { MAX_OPEN_FILES, ociSpec } from './spec.js'

const exec = promisify(execFile)
/** A pooled sandbox's CPU weight until its hand-out: an eighth of the default 1024 (SandboxSpec.pooled). */
export const POOLED_CPU_SHARES = 128

const INSTALL_HINT: Record<RuntimeName, string> = {
  runc: 'apt-get install runc',
  crun: 'apt-get install crun (crun needs a cgroup v2 host)',
  // Debian 12's main archive has it (0.0~20221219); docs/e2b-compatibility.md says what it can do here.
  runsc: 'apt-get install runsc',
}

interface Paths {
  dir: string
  bundle: string
  rootfs: string
  /** Where the template is mounted, idmapped onto the sandbox's ids. */
  lower: string
  /** The sandbox's own filesystem: a sparse ext4 image (layer.ts), mounted at `layer`. */
  image: string
  layer: string
  upper: string
  work: string
  log: string
  /** The agent's listening socket on the host: made by the daemon, handed to the agent as an fd. */
  socket: string
  /** The init's host pid (written by the runtime) and its start time, against pid reuse. */
  pidFile: string
  startFile: string
  /** What it was made with (KeptSpec), to start it again from its files after a stop. */
  kept: string
}

/** The part of a sandbox's spec kept beside it (root's alone): its token and egress rules are given anew at each start. */
type KeptSpec = Omit<SandboxSpec, 'id' | 'accessToken' | 'egress'>

export class OciDriver implements RuntimeDriver {
  readonly name: RuntimeName
  private readonly stateRoot: string
  private readonly sandboxesDir: string
  /** Where mountAgentFiles put the files bound at /opt/sandlot. */
  private agentFilesDir: string | undefined
  /**
   * The sandbox inherits the runtime's limits (Node raised its soft RLIMIT_NOFILE to the hard one);
   * above 1 Mi open files, util-linux's prlimit lowers them for the runtime first.
   */
  private readonly runPrefix = (hostOpenFilesLimit() ?? 0) > MAX_OPEN_FILES ? ['prlimit', `--nofile=${MAX_OPEN_FILES}:${MAX_OPEN_FILES}`, '--'] : []
  private readonly blankImages: BlankImages

  /** A running lxcfs (lxcfs.ts) for sandboxes' /proc figures, once the daemon has one. */
  lxcfs?: string
  /** Sandboxes' CPUs (cpusets.ts); those of sandboxes already running are read at the first create. */
  private cpuSets?: CpuSets

  constructor(
    private readonly config: Config,
    /** The host ids that own the templates' files. */
    private readonly templateIds: IdRange,
    /** Sandboxes' networks; without it (or for the runtime's probe) a sandbox has loopback only. */
    private readonly network?: NetworkAttacher,
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
      lower: path.join(dir, 'lower'),
      image: path.join(dir, 'disk.img'),
      layer: path.join(dir, 'layer'),
      upper: path.join(dir, 'layer', 'upper'),
      work: path.join(dir, 'layer', 'work'),
      // On the sandbox's own filesystem (outside what it sees): what it writes to its init's
      // stdout or stderr counts against its own disk, never the host's.
      log: path.join(dir, 'layer', 'sandbox.log'),
      socket: path.join(dir, 'agent.sock'),
      pidFile: path.join(dir, 'init.pid'),
      startFile: path.join(dir, 'init.start'),
      kept: path.join(dir, 'sandbox.json'),
    }
  }

  private cpusOf(): CpuSets {
    if (this.cpuSets) return this.cpuSets
    this.cpuSets = new CpuSets()
    for (const id of fs.readdirSync(this.sandboxesDir)) {
      try {
        const spec = JSON.parse(fs.readFileSync(path.join(this.paths(id).bundle, 'config.json'), 'utf8')) as { linux?: { resources?: { cpu?: { cpus?: string } } } }
        const cpus = spec.linux?.resources?.cpu?.cpus
        if (cpus) this.cpuSets.adopt(id, cpus)
      } catch {
        // Not a sandbox's bundle (yet, or any more).
      }
    }
    return this.cpuSets
  }

  private agentFiles(): string {
    if (!this.agentFilesDir) throw new Error('the agent files are not mounted yet (check() first)')
    return this.agentFilesDir
  }

  /** The daemon is stopping: sandboxes keep running, only its own mounts go. */
  async shutdown(): Promise<void> {
    if (this.agentFilesDir) await unmountAgentFiles(this.agentFilesDir)
  }

  agentSocket(id: string): string {
    return this.paths(id).socket
  }

  private runtimeArgs(...args: string[]): string[] {
    return ['--root', this.stateRoot, ...args]
  }

  async check(probeRootfs: string, probeIds: SandboxIds): Promise<void> {
    try {
      await exec(this.name, ['--version'])
    } catch {
      throw new Error(`The runtime "${this.name}" (SANDLOT_RUNTIME) is not installed: ${INSTALL_HINT[this.name]}`)
    }
    await checkLayerTools()
    await this.blankImages.init()
    const needed = [this.config.nodeBinary, this.config.idmapHelper, path.join(this.config.agentDir, 'agent.mjs'), path.join(this.config.agentDir, 'sandlot-exec'), path.join(this.config.codeInterpreterDir, 'code-interpreter.mjs'), ...Object.values(this.config.nativeModules)]
    for (const file of needed) {
      if (!fs.existsSync(file)) throw new Error(`${file} is missing: run "npm run build" first`)
    }
    this.agentFilesDir = await mountAgentFiles(this.config.home, this.config)
    // A real container proves the runtime works on this host (cgroup layout, user namespaces, seccomp).
    const id = `probe-${process.pid}`
    await this.destroy(id)
    try {
      await this.start({ id, templateLayers: [probeRootfs], limits: this.config.defaultLimits, envVars: {}, accessToken: '', ids: probeIds }, ['/bin/true'])
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

  // Pausing is the kernel's cgroup freezer on the sandbox's cgroup (cgroupsPath /sandlot/<id>), the
  // very file runc's pause and resume write, so runc's state says "paused" all the same: written
  // here it takes microseconds where a runc process takes 5 to 10 ms (memory resume aims at 10 ms in
  // all). Where the file is not there (another cgroup layout), the runtime's own pause and resume.
  async prioritize(id: string): Promise<void> {
    // The kernel's defaults: v1 cpu.shares 1024, v2 cpu.weight 100.
    const v1 = `/sys/fs/cgroup/cpu/sandlot/${id}/cpu.shares`
    const v2 = `/sys/fs/cgroup/sandlot/${id}/cpu.weight`
    if (fs.existsSync(v1)) await fs.promises.writeFile(v1, '1024')
    else if (fs.existsSync(v2)) await fs.promises.writeFile(v2, '100')
  }

  async freeze(id: string): Promise<void> {
    if (!(await setFreezer(id, true))) await exec(this.name, this.runtimeArgs('pause', id))
  }

  async thaw(id: string): Promise<void> {
    if (!(await setFreezer(id, false))) await exec(this.name, this.runtimeArgs('resume', id))
  }

  async stop(id: string): Promise<void> {
    await this.teardown(id)
  }

  async restart(id: string, again: RestartSpec): Promise<void> {
    const p = this.paths(id)
    const kept = JSON.parse(fs.readFileSync(p.kept, 'utf8')) as KeptSpec
    const spec: SandboxSpec = { ...kept, id, accessToken: again.accessToken, egress: again.egress, envVars: { ...kept.envVars, ...again.envVars } }
    try {
      await this.start(spec, undefined, true)
      await this.waitForAgent(id, 15_000)
    } catch (err) {
      // Its files stay: a failed start is stopped again, never destroyed.
      await this.teardown(id).catch(() => {})
      throw err
    }
  }

  /**
   * Starts the sandbox: its directory, filesystem and runtime files made (or, `again`, its kept
   * filesystem mounted once more), then the runtime run.
   */
  private async start(spec: SandboxSpec, args?: string[], again = false): Promise<void> {
    const p = this.paths(spec.id)
    const owner = spec.ids.hostId
    const withNetwork = !!this.network && !args
    // Its address and rules meanwhile (an nft transaction is tens of ms): in force before its veth
    // exists, and nothing of the sandbox runs before runc does.
    if (withNetwork) this.network!.prepare?.(spec.id, spec.egress)
    if (!again) {
      // Root's and the sandbox's root's alone (runc's init reaches the rootfs as the latter): no other
      // host user can list it or reach a file the sandbox made.
      fs.mkdirSync(p.dir, { mode: 0o710 })
      fs.chownSync(p.dir, 0, owner)
      const kept: KeptSpec = { templateLayers: spec.templateLayers, limits: spec.limits, envVars: spec.envVars, ids: spec.ids, defaultUser: spec.defaultUser, defaultWorkdir: spec.defaultWorkdir }
      fs.writeFileSync(p.kept, JSON.stringify(kept), { mode: 0o600 })
      await this.blankImages.take(p.image, spec.limits.diskSizeMB)
    }
    await mountLayer(p.image, p.layer)
    fs.chownSync(p.layer, 0, owner)
    fs.chmodSync(p.layer, 0o710)
    fs.mkdirSync(p.rootfs, { recursive: true })
    for (const d of [p.upper, p.work]) fs.mkdirSync(d, { recursive: true, mode: 0o700 })
    // The sandbox's own layer belongs to its root; only its top directory, /etc/hosts and
    // /etc/hostname (the sandbox's id, never the template builder's) and the agent's config in
    // /run/sandlot (root's alone) are made here, before anything runs in it. The config lives in the
    // layer rather than a bind of a host directory, so no host path shows in the sandbox's mountinfo.
    fs.chownSync(p.upper, owner, owner)
    fs.chmodSync(p.upper, 0o755)
    const files: [string, string, number][] = [
      ['etc/hosts', `127.0.0.1\tlocalhost\n127.0.1.1\t${spec.id}\n::1\tlocalhost ip6-localhost ip6-loopback\n`, 0o644],
      ['etc/hostname', `${spec.id}\n`, 0o644],
      // Sandlot's resolver on the bridge (network/dns.ts); without a network, none.
      ['etc/resolv.conf', this.network && !args ? `nameserver ${this.network.gateway}\noptions edns0 trust-ad\n` : '', 0o644],
      ['run/sandlot/agent.json', JSON.stringify({ envVars: spec.envVars, defaultUser: spec.defaultUser ?? 'user', defaultWorkdir: spec.defaultWorkdir, accessToken: spec.accessToken || undefined }), 0o600],
      // This boot's id, bound over /proc/sys/kernel/random/boot_id once it runs (sandlot-idmap).
      ['run/sandlot/boot_id', `${randomUUID()}\n`, 0o444],
    ]
    for (const [name, content, mode] of files) {
      const parts = name.split('/')
      // A sandbox that starts again made these paths itself: whatever is not a real directory
      // (a symlink that would lead these root-owned writes out to the host, a file, a whiteout) is
      // removed first. Nothing runs in the sandbox meanwhile.
      for (let i = 1; i < parts.length; i++) {
        const dir = path.join(p.upper, ...parts.slice(0, i))
        const st = fs.lstatSync(dir, { throwIfNoEntry: false })
        if (st?.isDirectory()) continue
        if (st) fs.rmSync(dir, { force: true })
        fs.mkdirSync(dir, { mode: dir.endsWith('/run/sandlot') ? 0o700 : 0o755 })
        fs.chownSync(dir, owner, owner)
      }
      const file = path.join(p.upper, name)
      // Made anew at each start (the sandbox may have changed or replaced its own copy, or put a
      // directory there).
      const there = fs.lstatSync(file, { throwIfNoEntry: false })
      if (there?.isDirectory()) await exec('rm', ['-rf', '--one-file-system', '--', file])
      else if (there) fs.rmSync(file)
      fs.writeFileSync(file, content, { mode })
      fs.chownSync(file, owner, owner)
    }
    // The template's files are owned on the host by ids no sandbox has; an idmapped mount of it at
    // lower/ (read-only, nosuid, nodev) shows them as the sandbox's own, so it is shared unchanged.
    for (let i = 0; i < spec.templateLayers.length; i++) fs.mkdirSync(path.join(p.lower, String(i)), { recursive: true })
    // Relative layer paths (from the sandbox's directory): the sandbox's /proc/mounts shows the
    // options as given, and must not reveal host paths.
    const lowerdir = spec.templateLayers.map((_, i) => `lower/${i}`).join(':')
    const userns = this.layersAndUserNamespace(spec, p, `lowerdir=${lowerdir},upperdir=layer/upper,workdir=layer/work`, withNetwork)
    let init: number | undefined
    try {
      const { pid, netnsPid } = await userns.pids
      if (withNetwork) await this.network!.attach(spec.id, netnsPid!, spec.egress)
      init = await this.run(spec, p, pid, args, withNetwork ? this.network!.netnsPath(spec.id) : undefined)
    } finally {
      // A sandbox (not the runtime's probe) gets its own boot id as the helper lets the namespace go.
      const done = userns.release(args ? undefined : init)
      if (init !== undefined && !args) await done
    }
  }

  /** Runs the runtime; resolves with the init's host pid. */
  private async run(spec: SandboxSpec, p: Paths, usernsPid: number, args?: string[], networkNamespace?: string): Promise<number> {
    fs.writeFileSync(
      path.join(p.bundle, 'config.json'),
      JSON.stringify(
        ociSpec({
          id: spec.id,
          rootfs: p.rootfs,
          ids: spec.ids,
          userNamespace: `/proc/${usernsPid}/ns/user`,
          limits: spec.limits,
          agentFiles: this.agentFiles(),
          noNewPrivileges: this.config.noNewPrivileges,
          networkNamespace,
          args,
          lxcfs: this.lxcfs,
          agentNodeFlags: this.config.agentNodeFlags,
          cpus: this.cpusOf().take(spec.id, spec.limits.cpuCount),
          cpuShares: spec.pooled ? POOLED_CPU_SHARES : undefined,
        }),
      ),
    )
    const log = fs.openSync(p.log, 'a')
    const listener = await listenUnix(p.socket)
    try {
      await new Promise<void>((resolve, reject) => {
        // Detached into its own session: the sandbox outlives the daemon (kill -9, restart, upgrade).
        // The agent's listening socket goes in as fd 3 (--preserve-fds 1): the daemon reaches the
        // agent through a path only it can see, never through a directory the sandbox can write.
        const runArgs = this.runtimeArgs('run', '--detach', '--preserve-fds', '1', '--pid-file', p.pidFile, '--bundle', p.bundle, spec.id)
        const [cmd, ...cmdArgs] = [...this.runPrefix, this.name, ...runArgs]
        const child = spawn(cmd!, cmdArgs, {
          stdio: ['ignore', log, log, listener.fd],
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
      await listener.close()
    }
    const pid = fs.readFileSync(p.pidFile, 'utf8').trim()
    fs.writeFileSync(p.startFile, processStartTime(pid) ?? '')
    return Number(pid)
  }

  /**
   * One run of sandlot-idmap, in place of a `mount` (each spawn blocks the event loop): the
   * template's idmapped mount at `lower`, the overlay on it, then a user namespace with the
   * sandbox's maps whose owner is the sandbox's own owner uid, so the kernel's per-user counts of
   * everything in it (inotify instances, message-queue bytes, …) are charged to that uid: each
   * sandbox has its own budget, apart from host root's and the others'. The helper creates it as
   * that uid and writes its maps as root; the pid of a process in it resolves once all is ready, and
   * release() lets that process go once runc has joined. With `netns`, also a network namespace
   * owned by that user namespace, held by a second process (netnsPid) until the same release.
   * release(init) also has the helper bind the sandbox's boot id in the init's mount namespace, and
   * resolves once it has (rejects saying why it could not).
   */
  private layersAndUserNamespace(spec: SandboxSpec, p: Paths, overlayOptions: string, netns: boolean): { pids: Promise<{ pid: number; netnsPid?: number }>; release(init?: number): Promise<void> } {
    const ids = spec.ids
    // Each template layer idmapped at lower/<i> (top first, as overlay lists them).
    const layers = spec.templateLayers.flatMap((layer, i) => ['idmapped', layer, path.join(p.lower, String(i)), `${this.templateIds.hostId} ${ids.hostId} ${ids.size}`])
    const args = [
      ...layers,
      'overlay', p.dir, path.relative(p.dir, p.rootfs), overlayOptions,
      'userns', String(ids.owner), `0 ${ids.hostId} ${ids.size}`, ...(netns ? ['netns'] : []),
    ]
    const child = spawn(this.config.idmapHelper, args, { stdio: ['pipe', 'pipe', 'pipe'] })
    child.stdin.on('error', () => {})
    let err = ''
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve))
    const pids = new Promise<{ pid: number; netnsPid?: number }>((resolve, reject) => {
      let out = ''
      const timer = setTimeout(() => {
        child.kill('SIGKILL')
        reject(new Error('sandlot-idmap did not make the user namespace within 10 s'))
      }, 10_000)
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString()
        const m = /^(\d+)(?: (\d+))?\n/.exec(out)
        if (!m) return
        clearTimeout(timer)
        resolve({ pid: Number(m[1]), netnsPid: m[2] ? Number(m[2]) : undefined })
      })
      child.stderr.on('data', (d: Buffer) => (err += d.toString()))
      child.on('error', reject)
      child.on('close', (code) => {
        clearTimeout(timer)
        reject(new Error(`cannot mount the sandbox's layers or make its user namespace (sandlot-idmap exited with ${code}): ${err.trim()}`))
      })
    })
    pids.catch(() => {}) // awaited later; a failure meanwhile must not be an unhandled rejection
    return {
      pids,
      release: async (init) => {
        child.stdin.end(init === undefined ? undefined : `bootid ${init}\n`)
        const code = await exited
        if (init !== undefined && code !== 0) throw new Error(`cannot give the sandbox its boot id (sandlot-idmap exited with ${code}): ${err.trim()}`)
      },
    }
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

  agentRestarts(id: string): number | undefined {
    // sandlot-init names itself "sl-init.N" (its comm, which nothing in the sandbox can change).
    try {
      const init = fs.readFileSync(this.paths(id).pidFile, 'utf8').trim()
      const m = /^sl-init\.(\d+)$/.exec(fs.readFileSync(`/proc/${init}/comm`, 'utf8').trim())
      return m ? Number(m[1]) : undefined
    } catch {
      return undefined // ended meanwhile, or no such files here
    }
  }

  async usage(id: string): Promise<SandboxUsage | undefined> {
    if (!this.alive(id)) return undefined
    const p = this.paths(id)
    const pid = Number(fs.readFileSync(p.pidFile, 'utf8').trim())
    try {
      // The init's cgroup is the container's (runc puts every process of it there).
      const [cg, disk] = await Promise.all([cgroupUsage(pid, await cgroupMounts()), fs.promises.statfs(p.layer)])
      const memTotal = cg.memLimit ?? 0
      return {
        cpuUsec: cg.cpuUsec,
        memUsed: Math.max(0, cg.memUsage - cg.memCache),
        memTotal,
        memCache: cg.memCache,
        // As `df` and E2B (statfs of /): used = size less what is available to the sandbox.
        diskUsed: (disk.blocks - disk.bavail) * disk.bsize,
        diskTotal: disk.blocks * disk.bsize,
      }
    } catch (err) {
      // Ended between the check and the reads: not running, nothing to report.
      if (!this.alive(id)) return undefined
      throw err
    }
  }

  private async waitForAgent(id: string, timeoutMs: number): Promise<void> {
    const socket = this.agentSocket(id)
    const started = Date.now()
    let lastStateCheck = started
    for (;;) {
      // The socket listens from the start (the daemon made it): only an answer shows the agent is up.
      if (await answersHealth(socket)) return
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
      if (status === 'paused') return 'paused'
      return status === 'running' || status === 'created' ? 'running' : 'stopped'
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

  async captureLayer(id: string, ids: SandboxIds, dest: string): Promise<void> {
    // Nothing may write to the layer while it is copied: the container and all its processes go.
    await exec(this.name, this.runtimeArgs('delete', '--force', id)).catch(() => {})
    this.cpuSets?.release(id)
    try {
      await this.copyLayer(id, ids, dest)
    } finally {
      await this.destroy(id)
    }
  }

  async snapshotLayer(id: string, ids: SandboxIds, dest: string): Promise<void> {
    // Frozen while its layer is copied (unless it is already), so the copy is of one moment.
    const frozen = await isFrozen(id, () => this.state(id))
    if (!frozen) await this.freeze(id)
    try {
      await this.copyLayer(id, ids, dest)
    } finally {
      if (!frozen) await this.thaw(id)
    }
  }

  /** Copies what the sandbox changed (its overlay's upper dir) to `dest`, owned by the templates' ids. */
  private async copyLayer(id: string, ids: SandboxIds, dest: string): Promise<void> {
    const p = this.paths(id)
    const view = path.join(p.dir, 'capture')
    const scratch = `${dest}.capture-${process.pid}-${Date.now()}`
    // What an interrupted capture of this sandbox left (its mount goes with destroy) is reused.
    if ((await mountsUnder(view)).includes(view)) await unmount(view)
    fs.mkdirSync(view, { recursive: true })
    try {
      // The sandbox's files are owned by its own ids; seen through an idmapped mount onto the
      // templates' ids, a copy by root keeps every owner, mode, whiteout and xattr (opaque dirs).
      await exec(this.config.idmapHelper, ['idmapped', p.upper, view, `${ids.hostId} ${this.templateIds.hostId} ${ids.size}`])
      fs.mkdirSync(path.dirname(dest), { recursive: true })
      await exec('cp', ['-a', '--one-file-system', `${view}/.`, scratch])
      // The runtime's own files, never part of a template (the agent's config holds a token).
      for (const own of ['run/sandlot', 'etc/hosts', 'etc/hostname', 'etc/resolv.conf']) fs.rmSync(path.join(scratch, own), { recursive: true, force: true })
      fs.renameSync(scratch, dest)
    } catch (err) {
      await exec('rm', ['-rf', '--one-file-system', '--', scratch]).catch(() => {})
      throw err
    } finally {
      if ((await mountsUnder(view)).includes(view)) await unmount(view)
      fs.rmSync(view, { recursive: true, force: true })
    }
  }

  /** Everything of the sandbox on the host but its files: processes, cgroups, CPUs, mounts, network. */
  private async teardown(id: string): Promise<void> {
    const p = this.paths(id)
    // delete --force kills every process (SIGKILL; a frozen sandbox's too) and removes the container's cgroups.
    await exec(this.name, this.runtimeArgs('delete', '--force', id)).catch(() => {})
    this.cpuSets?.release(id)
    // The overlay, the template's idmapped mounts below it, then the sandbox's own filesystem.
    const mounted = await mountsUnder(p.dir)
    const others = mounted.filter((m) => m !== p.rootfs && m !== p.lower && m !== p.layer).sort().reverse()
    for (const target of [p.rootfs, ...others, p.lower, p.layer]) if (mounted.includes(target)) await unmount(target)
    // Its veth, address, rules and connection-tracking entries (the namespace is empty now).
    await this.network?.detach(id)
  }

  async destroy(id: string): Promise<void> {
    const p = this.paths(id)
    await this.teardown(id)
    // Its files go with its filesystem's image, in one step.
    await removeLayerImage(p.image)
    // What is left is a handful of small files (or, for a sandbox made before disk quotas, its layer
    // on the host's disk): rm walks it in a child process, and never into a mount.
    const rm = await exec('rm', ['-rf', '--one-file-system', '--', p.dir]).catch((err: Error) => err)
    if (rm instanceof Error) throw new Error(`cannot remove ${p.dir}: ${rm.message}`)
  }
}

/**
 * Freezes or thaws the sandbox's cgroup (v1: freezer.state, v2: cgroup.freeze), waiting until the
 * kernel says every task is frozen (it freezes them one by one); false when the sandbox has no such
 * cgroup here. A freeze not done within 5 s is undone and reported.
 */
async function setFreezer(id: string, frozen: boolean): Promise<boolean> {
  const f = freezerOf(id)
  if (!f) return false
  await fs.promises.writeFile(f.file, frozen ? f.frozen : f.thawed)
  if (frozen) await waitUntil(f.isFrozen, () => fs.promises.writeFile(f.file, f.thawed))
  return true
}

/** The sandbox cgroup's freezer (cgroupsPath /sandlot/<id>), v1 or v2, if this host has it there. */
function freezerOf(id: string): { file: string; frozen: string; thawed: string; isFrozen: () => Promise<boolean> } | undefined {
  const v1 = `/sys/fs/cgroup/freezer/sandlot/${id}/freezer.state`
  if (fs.existsSync(v1)) return { file: v1, frozen: 'FROZEN', thawed: 'THAWED', isFrozen: async () => (await fs.promises.readFile(v1, 'utf8')).trim() === 'FROZEN' }
  const v2 = `/sys/fs/cgroup/sandlot/${id}`
  if (fs.existsSync(`${v2}/cgroup.freeze`)) return { file: `${v2}/cgroup.freeze`, frozen: '1', thawed: '0', isFrozen: async () => /^frozen 1$/m.test(await fs.promises.readFile(`${v2}/cgroup.events`, 'utf8')) }
  return undefined
}

/** Whether the sandbox is frozen (or freezing): its freezer's state, else what the runtime says. */
async function isFrozen(id: string, runtimeState: () => Promise<RuntimeState>): Promise<boolean> {
  const f = freezerOf(id)
  if (!f) return (await runtimeState()) === 'paused'
  return (await fs.promises.readFile(f.file, 'utf8')).trim() !== f.thawed
}

async function waitUntil(done: () => Promise<boolean>, undo: () => Promise<void>): Promise<void> {
  for (let i = 0; !(await done()); i++) {
    if (i >= 1000) {
      await undo()
      throw new Error('the sandbox did not freeze within 5 s')
    }
    await sleep(5)
  }
}

/** Whether the agent answers GET /health on its socket within a second. */
function answersHealth(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ socketPath: socket, path: '/health', agent: false, timeout: 1000 }, (res) => {
      res.resume()
      resolve(res.statusCode === 204 || res.statusCode === 200)
    })
    req.on('timeout', () => req.destroy())
    req.on('error', () => resolve(false))
  })
}

/**
 * A listening unix socket at `file` (mode 0600: the daemon alone connects), whose fd is handed to
 * the agent. Node's server also unlinks its path on close, so it binds a temporary name and links
 * the socket to `file`; close() then leaves `file` and the listening socket (held by the agent).
 */
async function listenUnix(file: string): Promise<{ fd: number; close: () => Promise<void> }> {
  const tmp = `${file}.${process.pid}.tmp`
  fs.rmSync(tmp, { force: true })
  fs.rmSync(file, { force: true })
  // Nothing is accepted here: the daemon connects to it only once the agent runs.
  const server = net.createServer((c) => c.destroy())
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ path: tmp, backlog: 512 }, resolve)
  })
  fs.chmodSync(tmp, 0o600)
  fs.linkSync(tmp, file)
  const fd = (server as unknown as { _handle: { fd: number } })._handle.fd
  return { fd, close: () => new Promise((resolve) => server.close(() => resolve())) }
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
