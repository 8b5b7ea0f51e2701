// The one interface every runtime (runc, crun, runsc, later a VM runtime) implements.
import type { Limits } from '../config.js'
import type { EgressPolicy } from '../network/policy.js'
import type { SandboxIds } from './idmap.js'

export interface SandboxSpec {
  id: string
  /**
   * The template's read-only layers, top first (overlay lower dirs): a built template's step layers
   * above its base rootfs; the base template alone is one.
   */
  templateLayers: string[]
  limits: Limits
  /** Create-time environment variables given to every process in the sandbox. */
  envVars: Record<string, string>
  /** Token the agent demands in X-Access-Token (envd's access token). */
  accessToken: string
  /** Its own host id range (claimed by the manager, runtime/idmap.ts). */
  ids: SandboxIds
  /** The agent's default user and directory for processes (a template's USER and WORKDIR). */
  defaultUser?: string
  defaultWorkdir?: string
  /** Its egress rules (none: the internet, as on E2B). */
  egress?: EgressPolicy
  /**
   * Made for the pool: its cgroup's CPU weight is an eighth of a live sandbox's (POOLED_CPU_SHARES)
   * until `prioritize`, so its boot and warm-up yield the CPUs to sandboxes in use. Not kept for a restart.
   */
  pooled?: boolean
}

/** What a runtime needs of the network (network/networks.ts): a sandbox's network, made and removed. */
export interface NetworkAttacher {
  /** The resolver's address, written into each sandbox's /etc/resolv.conf. */
  readonly gateway: string
  /** Takes the sandbox's address and puts its rules in place ahead of its namespace (attach finishes it). */
  prepare?(id: string, policy?: EgressPolicy): void
  /** Gives the network namespace held by `netnsPid` its veth, address and rules; returns the address. */
  attach(id: string, netnsPid: number, policy?: EgressPolicy): Promise<string>
  /** Removes everything of the sandbox's network. Idempotent. */
  detach(id: string): Promise<void>
  /** Where the sandbox's network namespace is attached, for the runtime to join. */
  netnsPath(id: string): string
}

/** The smallest sandbox filesystem (MiB): room for its own files, the agent's socket and its log. */
export const MIN_DISK_MB = 64

/** paused: its processes frozen where they are (freeze()). */
export type RuntimeState = 'running' | 'paused' | 'stopped' | 'missing'

/** What a sandbox that starts again (restart) is given anew: never kept beside it on the host. */
export interface RestartSpec {
  accessToken: string
  /** Its egress rules now (they may have changed since it was made). */
  egress?: EgressPolicy
  /** Environment variables given after it was made (a pooled sandbox's), over those it was made with. */
  envVars: Record<string, string>
}

/** What a sandbox uses now (lifecycle/metrics.ts samples it). */
export interface SandboxUsage {
  /** CPU time used since it started (µs), all its processes together. */
  cpuUsec: number
  /** Memory in use (bytes), page cache not counted (as E2B's envd reports it). */
  memUsed: number
  /** Its memory limit (bytes). */
  memTotal: number
  /** Page cache (bytes). */
  memCache: number
  /** Its own filesystem (the writable layer): bytes used (total less what is available) and its size. */
  diskUsed: number
  diskTotal: number
}

export interface RuntimeDriver {
  readonly name: string
  /** Throws an error that tells the user what to do when this runtime cannot run sandboxes here. */
  check(probeRootfs: string, probeIds: SandboxIds): Promise<void>
  /** Starts the sandbox and resolves once its agent answers on its socket. */
  create(spec: SandboxSpec): Promise<void>
  /** Gives a pooled sandbox the CPU weight of every other (at its hand-out). */
  prioritize?(id: string): Promise<void>
  /** Stops every process of the sandbox where it is (the cgroup freezer): CPU freed, memory kept. */
  freeze(id: string): Promise<void>
  /** Lets a frozen sandbox's processes run on, as they were. */
  thaw(id: string): Promise<void>
  /**
   * Ends the sandbox's processes and frees what it held on the host (memory, CPUs, network, mounts)
   * but its files: its filesystem stays, for restart(). Idempotent.
   */
  stop(id: string): Promise<void>
  /** Boots a stopped sandbox again from its files (a new boot: fresh processes and boot id); resolves once its agent answers. */
  restart(id: string, spec: RestartSpec): Promise<void>
  /**
   * Stops and removes everything the sandbox had on the host: processes, mounts, cgroups, files.
   * Never blocks the event loop, however many files the sandbox made.
   */
  destroy(id: string): Promise<void>
  state(id: string): Promise<RuntimeState>
  /** Cheap liveness check of the sandbox's init (no process spawned): false once it has died. */
  alive(id: string): boolean
  /**
   * How many times the sandbox's init started its agent again (no process spawned), undefined when
   * it cannot be told.
   */
  agentRestarts?(id: string): number | undefined
  /** Ids of the sandboxes the runtime knows of (running or not), to find leftovers. */
  list(): Promise<string[]>
  /** The daemon is stopping: what the driver holds for itself goes; sandboxes keep running. */
  shutdown(): Promise<void>
  /** The unix socket of the sandbox's agent. */
  agentSocket(id: string): string
  /**
   * Ends the sandbox's processes and copies what it changed (its own layer: files, whiteouts, opaque
   * directories) to `dest`, owned by the templates' ids, for a template build; then destroys it.
   * The runtime's own files in the layer (the agent's config, /etc/hosts, hostname, resolv.conf)
   * are left out.
   */
  captureLayer(id: string, ids: SandboxIds, dest: string): Promise<void>
  /**
   * Copies what a running or frozen sandbox changed to `dest` as captureLayer does, frozen for the
   * copy (a snapshot or fork: it runs on after).
   */
  snapshotLayer(id: string, ids: SandboxIds, dest: string): Promise<void>
  /** What the running sandbox uses now (its cgroup, its filesystem); undefined when it is not running. */
  usage?(id: string): Promise<SandboxUsage | undefined>
}
