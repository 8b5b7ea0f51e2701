// Builds the OCI runtime spec (config.json) of a sandbox: namespaces, user mapping, mounts, limits,
// capabilities, seccomp and the masked /proc and /sys paths.
import path from 'node:path'
import type { Limits } from '../config.js'
import { AGENT_LOADER } from './agent-files.js'
import type { IdRange } from './idmap.js'
import { LXCFS_FILES } from './lxcfs.js'
import { defaultSeccompProfile } from './seccomp.js'

export interface SpecInput {
  id: string
  rootfs: string
  /** The sandbox's host ids, mapped to 0… inside. */
  ids: IdRange
  /**
   * Its user namespace, made beforehand with those maps and owned by a uid of its own
   * (/proc/PID/ns/user); runc joins it. runc 1.1 still wants the maps, to know the host root.
   */
  userNamespace: string
  limits: Limits
  /** The mounted agent files (agent-files.ts), bound read-only at /opt/sandlot. */
  agentFiles: string
  noNewPrivileges: boolean
  /** Its network namespace, made beforehand (network/); without one the runtime makes an empty one. */
  networkNamespace?: string
  /** Command run by the init; defaults to the agent. */
  args?: string[]
  /** A running lxcfs (lxcfs.ts), whose files replace /proc's and /sys's host-wide figures. */
  lxcfs?: string
  /** The host CPUs it may run on ("0,1"; cpusets.ts); all when absent. */
  cpus?: string
  /** Node's flags for the agent (AGENT_NODE_FLAGS unless the server is told otherwise). */
  agentNodeFlags?: readonly string[]
  /** Its cgroup's CPU weight (cgroup v1 cpu.shares; runc maps it to v2's cpu.weight); the kernel's default when absent. */
  cpuShares?: number
}

/** The fd of the agent's listening socket (made by the daemon, passed by the runtime's --preserve-fds). */
export const AGENT_LISTEN_FD = 3

// Docker's default set, less NET_RAW and MKNOD: root in a sandbox may manage files and users,
// never the kernel, devices or raw network.
const CAPABILITIES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_SETGID', 'CAP_SETUID', 'CAP_SETFCAP',
  'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
]

const MASKED_PATHS = [
  '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap',
]

const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger']

// Terminals one sandbox may hold at once (its own devpts instance's max): all sandboxes draw on the
// host's kernel.pty.max (4096, less 1024 kept for the host), so one must not take them all.
export const PTY_LIMIT = 128

const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

/**
 * The sandbox's init and agent, all from the agent's image (agent-files.ts), nothing from the
 * template: sandlot-init (sandlot-exec --init, static) is PID 1, reaps orphans, forwards signals to
 * the agent's process group and starts the agent again if it dies (root in the sandbox may kill it:
 * with tini as init, which ends with its child, the sandbox ended too and its files were lost),
 * saying so in the sandbox's host-side log; node runs on the host's loader and libraries
 * there, named on the loader's command line, so neither the template's /lib (nor its ld.so.cache:
 * --inhibit-cache) nor the environment of what the agent starts is involved.
 */
export function agentCommand(nodeFlags: readonly string[] = AGENT_NODE_FLAGS): string[] {
  return [
    '/opt/sandlot/bin/sandlot-init', '--init', '--',
    `/opt/sandlot/lib/${AGENT_LOADER}`, '--inhibit-cache', '--library-path', '/opt/sandlot/lib',
    '/opt/sandlot/bin/node', ...nodeFlags, '/opt/sandlot/agent/agent.mjs',
  ]
}

/**
 * Node's settings for the agent: none by default. Measured (BENCHMARKS.md, "What an idle agent
 * holds"): 1 MiB semi-spaces and one V8 worker thread changed nothing; --lite-mode saved ~1 MiB fresh
 * and ~4 MiB after use at a cost in speed not measured yet. SANDLOT_AGENT_NODE_FLAGS sets them
 * (space-separated), for an operator who trades speed for density.
 */
export const AGENT_NODE_FLAGS: readonly string[] = []

export function ociSpec(i: SpecInput): object {
  const bind = (source: string, destination: string, ro = true) => ({
    destination,
    type: 'bind',
    source,
    options: ['rbind', 'nosuid', 'nodev', ...(ro ? ['ro'] : [])],
  })
  const memory = i.limits.memoryMB * 1024 * 1024
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: i.args ?? agentCommand(i.agentNodeFlags),
      // SANDLOT_AGENT_ENSURE_USER: the agent makes E2B's `user` where the image lacks it (account.ts).
      env: [`PATH=${PATH}`, 'HOME=/root', `SANDLOT_AGENT_LISTEN_FD=${AGENT_LISTEN_FD}`, 'SANDLOT_AGENT_CONFIG=/run/sandlot/agent.json', 'SANDLOT_AGENT_ENSURE_USER=user'],
      cwd: '/',
      capabilities: { bounding: CAPABILITIES, effective: CAPABILITIES, permitted: CAPABILITIES },
      // No rlimits: runc would set them with prlimit from outside, which needs CAP_SYS_RESOURCE over
      // a user namespace root no longer owns. The sandbox inherits them from the runtime (oci.ts).
      noNewPrivileges: i.noNewPrivileges,
    },
    root: { path: i.rootfs, readonly: false },
    hostname: i.id,
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5', `max=${PTY_LIMIT}`] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
      bind(i.agentFiles, '/opt/sandlot'),
      // After /proc and /sys, over their files: the sandbox's own memory, CPUs and uptime.
      ...(i.lxcfs ? LXCFS_FILES.map((f) => ({ destination: f, type: 'bind', source: path.join(i.lxcfs!, f), options: ['bind', 'nosuid', 'nodev', 'noexec', 'ro'] })) : []),
    ],
    linux: {
      uidMappings: [{ containerID: 0, hostID: i.ids.hostId, size: i.ids.size }],
      gidMappings: [{ containerID: 0, hostID: i.ids.hostId, size: i.ids.size }],
      namespaces: [
        ...['pid', 'ipc', 'uts', 'mount', 'cgroup'].map((type) => ({ type })),
        i.networkNamespace ? { type: 'network', path: i.networkNamespace } : { type: 'network' },
        { type: 'user', path: i.userNamespace },
      ],
      cgroupsPath: `/sandlot/${i.id}`,
      resources: {
        devices: [{ allow: false, access: 'rwm' }],
        memory: { limit: memory, swap: memory },
        cpu: { period: 100000, quota: i.limits.cpuCount * 100000, ...(i.cpus && { cpus: i.cpus }), ...(i.cpuShares && { shares: i.cpuShares }) },
        pids: { limit: i.limits.pids },
      },
      seccomp: defaultSeccompProfile(),
      maskedPaths: MASKED_PATHS,
      readonlyPaths: READONLY_PATHS,
    },
  }
}

/** The most open files a sandbox is given: 1 Mi. */
export const MAX_OPEN_FILES = 1048576

