// Server settings: every one comes from the environment and has a working default.
import fs from 'node:fs'
import path from 'node:path'
import { parsePoolSizes, QUIET_MS } from './lifecycle/pool.js'
import { fileURLToPath } from 'node:url'
import { systemResolvers } from './network/dns.js'
import type { NetworkSettings } from './network/networks.js'
import { parseSubnet } from './network/subnet.js'

export type RuntimeName = 'runc' | 'crun' | 'runsc'

export interface Limits {
  memoryMB: number
  cpuCount: number
  pids: number
  /** Size of the sandbox's own filesystem (its writable layer), in MiB; inodes follow from it. */
  diskSizeMB: number
}

export interface Config {
  home: string
  /** Built template rootfs trees; several servers (tests) may share one. */
  templatesDir: string
  listenHost: string
  listenPort: number
  runtime: RuntimeName
  /** Where the agent bundle (agent.mjs) lives on the host; mounted read-only into every sandbox. */
  agentDir: string
  /** The code interpreter's bundle (packages/code-interpreter), mounted read-only at /opt/sandlot/code-interpreter. */
  codeInterpreterDir: string
  /**
   * The agent's native modules on the host, by name, each mounted read-only at
   * /opt/sandlot/node_modules/<name>: node-pty (terminals), fs-xattr (file metadata).
   */
  nativeModules: Record<string, string>
  nodeBinary: string
  /** sandlot-idmap (native/sandlot-idmap.c, built by npm run build): user namespaces and idmapped mounts. */
  idmapHelper: string
  defaultLimits: Limits
  maxLimits: Limits
  /** Set no_new_privileges on every sandbox. Off by default: it would disable sudo inside the sandbox. */
  noNewPrivileges: boolean
  /** The longest keepAlive a client may ask for (ms). */
  keepAliveLimitMs: number
  /** E2B-timeout sandboxes: the longest lifetime from start (ms), as E2B's tier limit. */
  maxLifetimeMs: number
  /** E2B sandboxes created without a timeout live this long (E2B's documented 5 minutes). */
  e2bDefaultTimeoutMs: number
  /** A paused sandbox is kept this long after its pause (ms), then destroyed unless resumed. */
  pausedRetentionMs: number
  /** How long an agent may take to begin its answer to a proxied request (ms); then 504. */
  agentReplyTimeoutMs: number
  /** Open client connections the server accepts at once (SANDLOT_MAX_CONNECTIONS); more are refused. */
  maxConnections: number
  /** Sandboxes' network: the bridge, its IPv4 subnet and the resolvers the sandboxes' resolver asks. */
  network: NetworkSettings
  /** Template builds: how many at once, how long one may take, how big an upload of files may be, how often unused layers are collected. */
  builds: { maxConcurrent: number; timeoutMs: number; maxUploadBytes: number; collectIntervalMs: number }
  /** How long a template's ready command may take to pass at create (ms). */
  readyTimeoutMs: number
  /** Templates Sandlot builds itself (templates/builtin.ts): how long a create waits for one being built, and which to build at start. */
  builtinTemplates: { waitMs: number; prebuild: string[] }
  /**
   * The domain sandboxes are reached under, `<port>-<id>.<domain>` (E2B's sandbox domain, returned to
   * clients): SANDLOT_DOMAIN, else `sandlot.localhost:<port>`, a name every *.localhost of which
   * resolves to loopback (browsers, curl; Node through libnss-myhostname) and that has enough labels
   * for a wildcard certificate (`*.sandlot.localhost`; clients refuse `*.localhost`).
   */
  domain: string
  /** Whether SANDLOT_DOMAIN gave the domain; if not, it follows the port actually listened on. */
  domainFromEnv: boolean
  /** A certificate and key (PEM files) for https:// on Sandlot's port; unset: a local CA's (tls/certs.ts). */
  tlsCertFile?: string
  tlsKeyFile?: string
  logLevel: string
  /** One log line per request (SANDLOT_ACCESS_LOG=1): api/access-log.ts. */
  accessLog: boolean
  /** Node's flags for the agent in each sandbox (SANDLOT_AGENT_NODE_FLAGS; runtime/spec.ts has the default). */
  agentNodeFlags?: string[]
  /** Ready sandboxes kept per template (SANDLOT_POOL, default base=2): lifecycle/pool.ts. */
  poolSizes: Map<string, number>
  /** How long no create must have been served before the pool refills (SANDLOT_POOL_QUIET_MS, default 150): lifecycle/pool.ts. */
  poolQuietMs: number
  /**
   * Sandboxes' metrics and logs (lifecycle/metrics.ts, lifecycle/logs.ts): how often CPU, memory and
   * disk are sampled, how long samples and log entries are kept (also after the sandbox ends), and
   * the most log entries kept per sandbox (the oldest go first).
   */
  history: { metricsIntervalMs: number; retentionMs: number; logLinesPerSandbox: number }
}

const here = path.dirname(fileURLToPath(import.meta.url))
/** The repository root when running from packages/server/dist. */
export const repoRoot = path.resolve(here, '../../..')

function intFrom(name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got "${raw}"`)
  return n
}

export function parseListen(value: string): { host: string; port: number } {
  const idx = value.lastIndexOf(':')
  const host = idx > 0 ? value.slice(0, idx).replace(/^\[|\]$/g, '') : '127.0.0.1'
  const port = Number(idx >= 0 ? value.slice(idx + 1) : value)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`SANDLOT_LISTEN must look like HOST:PORT, got "${value}"`)
  return { host, port }
}

/** The default sandbox domain for a server listening on `port`. */
export const defaultDomain = (port: number) => `sandlot.localhost:${port}`

export function loadConfig(env = process.env): Config {
  const listen = parseListen(env.SANDLOT_LISTEN ?? '127.0.0.1:3000')
  const runtime = (env.SANDLOT_RUNTIME ?? 'runc') as RuntimeName
  if (!['runc', 'crun', 'runsc'].includes(runtime)) throw new Error(`SANDLOT_RUNTIME must be runc, crun or runsc, got "${runtime}"`)
  const home = path.resolve(env.SANDLOT_HOME ?? '/var/lib/sandlot')
  return {
    home,
    templatesDir: path.resolve(env.SANDLOT_TEMPLATES_DIR ?? path.join(home, 'templates')),
    listenHost: listen.host,
    listenPort: listen.port,
    runtime,
    agentDir: path.resolve(env.SANDLOT_AGENT_DIR ?? path.join(repoRoot, 'packages/agent/dist')),
    codeInterpreterDir: path.resolve(env.SANDLOT_CODE_INTERPRETER_DIR ?? path.join(repoRoot, 'packages/code-interpreter/dist')),
    nativeModules: {
      'node-pty': path.resolve(env.SANDLOT_NODE_PTY_DIR ?? path.join(repoRoot, 'node_modules/node-pty')),
      'fs-xattr': path.resolve(env.SANDLOT_FS_XATTR_DIR ?? path.join(repoRoot, 'node_modules/fs-xattr')),
    },
    nodeBinary: process.execPath,
    idmapHelper: path.resolve(env.SANDLOT_IDMAP_HELPER ?? path.join(repoRoot, 'packages/server/dist/sandlot-idmap')),
    defaultLimits: {
      memoryMB: intFrom('SANDLOT_DEFAULT_MEMORY_MB', 512),
      cpuCount: intFrom('SANDLOT_DEFAULT_CPU_COUNT', 1),
      pids: intFrom('SANDLOT_DEFAULT_PIDS', 512),
      diskSizeMB: intFrom('SANDLOT_DEFAULT_DISK_MB', 2048),
    },
    maxLimits: {
      memoryMB: intFrom('SANDLOT_MAX_MEMORY_MB', 8192),
      cpuCount: intFrom('SANDLOT_MAX_CPU_COUNT', 2),
      pids: intFrom('SANDLOT_MAX_PIDS', 8192),
      diskSizeMB: intFrom('SANDLOT_MAX_DISK_MB', 20480),
    },
    keepAliveLimitMs: intFrom('SANDLOT_KEEP_ALIVE_LIMIT_MS', 3_600_000),
    maxLifetimeMs: intFrom('SANDLOT_MAX_LIFETIME_MS', 3_600_000),
    e2bDefaultTimeoutMs: intFrom('SANDLOT_E2B_DEFAULT_TIMEOUT_MS', 300_000),
    // 30 days: long enough for a workspace left over a holiday; its disk is what it costs.
    pausedRetentionMs: intFrom('SANDLOT_PAUSED_RETENTION_MS', 30 * 24 * 3_600_000),
    noNewPrivileges: env.SANDLOT_NO_NEW_PRIVILEGES === '1' || env.SANDLOT_NO_NEW_PRIVILEGES === 'true',
    agentReplyTimeoutMs: intFrom('SANDLOT_AGENT_REPLY_TIMEOUT_MS', 120_000),
    maxConnections: intFrom('SANDLOT_MAX_CONNECTIONS', defaultMaxConnections()),
    network: networkSettings(env),
    builds: {
      maxConcurrent: intFrom('SANDLOT_MAX_CONCURRENT_BUILDS', 2),
      timeoutMs: intFrom('SANDLOT_BUILD_TIMEOUT_MS', 30 * 60_000),
      maxUploadBytes: intFrom('SANDLOT_MAX_TEMPLATE_UPLOAD_MB', 1024) * 1024 * 1024,
      collectIntervalMs: intFrom('SANDLOT_LAYER_COLLECT_INTERVAL_MS', 60 * 60_000),
    },
    readyTimeoutMs: intFrom('SANDLOT_READY_TIMEOUT_MS', 10 * 60_000),
    builtinTemplates: {
      waitMs: intFrom('SANDLOT_BUILTIN_TEMPLATE_WAIT_MS', 45_000),
      prebuild: (env.SANDLOT_PREBUILD_TEMPLATES ?? '').split(',').map((s) => s.trim()).filter(Boolean),
    },
    domain: env.SANDLOT_DOMAIN || defaultDomain(listen.port),
    domainFromEnv: !!env.SANDLOT_DOMAIN,
    tlsCertFile: env.SANDLOT_TLS_CERT ? path.resolve(env.SANDLOT_TLS_CERT) : undefined,
    tlsKeyFile: env.SANDLOT_TLS_KEY ? path.resolve(env.SANDLOT_TLS_KEY) : undefined,
    logLevel: env.SANDLOT_LOG_LEVEL ?? 'info',
    accessLog: env.SANDLOT_ACCESS_LOG === '1' || env.SANDLOT_ACCESS_LOG === 'true',
    poolSizes: parsePoolSizes(env.SANDLOT_POOL, 'base=2'),
    poolQuietMs: intFrom('SANDLOT_POOL_QUIET_MS', QUIET_MS),
    agentNodeFlags: agentNodeFlagsFrom(env.SANDLOT_AGENT_NODE_FLAGS),
    history: {
      metricsIntervalMs: intFrom('SANDLOT_METRICS_INTERVAL_MS', 5000),
      retentionMs: intFrom('SANDLOT_HISTORY_RETENTION_HOURS', 7 * 24) * 3_600_000,
      logLinesPerSandbox: intFrom('SANDLOT_SANDBOX_LOG_LINES', 10_000),
    },
  }
}

function networkSettings(env: NodeJS.ProcessEnv): NetworkSettings {
  const bridge = env.SANDLOT_BRIDGE ?? 'sandlot0'
  if (!/^[A-Za-z][A-Za-z0-9_-]{0,14}$/.test(bridge)) throw new Error(`SANDLOT_BRIDGE must be an interface name of at most 15 letters, digits, "-" or "_", got "${bridge}"`)
  const dnsServers = env.SANDLOT_DNS_SERVERS ? env.SANDLOT_DNS_SERVERS.split(',').map((s) => s.trim()).filter(Boolean) : systemResolvers()
  return { bridge, subnet: parseSubnet(env.SANDLOT_SUBNET ?? '10.11.0.0/16'), dnsServers }
}

/**
 * The hard RLIMIT_NOFILE of this process, which the runtime and so the sandbox inherit (Node
 * raises its soft limit to it); undefined when /proc does not say.
 */
export function hostOpenFilesLimit(): number | undefined {
  try {
    const line = fs.readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'))
    const hard = Number(line?.trim().split(/\s+/)[4])
    if (Number.isInteger(hard) && hard > 0) return hard
  } catch {
    // not Linux /proc: fall through
  }
  return undefined
}

/**
 * A quarter of the daemon's descriptors (a proxied request holds two, and sandboxes, logs and SQLite
 * need theirs), at most 16,384.
 */
function defaultMaxConnections(): number {
  return Math.max(64, Math.min(16_384, Math.floor((hostOpenFilesLimit() ?? 1024) / 4)))
}

/** SANDLOT_AGENT_NODE_FLAGS: Node options (each "--name" or "--name=value"), space-separated; "" for none. */
function agentNodeFlagsFrom(raw: string | undefined): string[] | undefined {
  if (raw === undefined) return undefined
  const flags = raw.split(/\s+/).filter(Boolean)
  const bad = flags.find((f) => !/^--[a-z0-9-]+(=[\w.,:-]+)?$/.test(f))
  if (bad) throw new Error(`SANDLOT_AGENT_NODE_FLAGS: "${bad}" is not a Node option (--name or --name=value)`)
  return flags
}
