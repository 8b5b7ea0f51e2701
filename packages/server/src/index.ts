// sandlotd: wires the store, templates, runtime, lifecycle, proxy and API together.
import { execFile } from 'node:child_process'
import crypto from 'node:crypto'
import { promisify } from 'node:util'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import type { Logger } from 'pino'
import { buildApp } from './api/app.js'
import { ensureApiKey, isValidApiKey } from './api/auth.js'
import { defaultDomain, loadConfig, type Config } from './config.js'
import { lockHome } from './lifecycle/home-lock.js'
import { createLogger } from './log.js'
import { SandboxLogs } from './lifecycle/logs.js'
import { SandboxManager } from './lifecycle/manager.js'
import { MetricsSampler } from './lifecycle/metrics.js'
import { SandboxPool } from './lifecycle/pool.js'
import { SandboxNetworks } from './network/networks.js'
import { PortDialer, agentTunnelWay, directWay } from './proxy/dialer.js'
import { EnvdProxy } from './proxy/envd.js'
import { PreviewProxy } from './proxy/preview.js'
import { IdRanges, ensureIdLayout } from './runtime/idmap.js'
import { ensureLxcfs } from './runtime/lxcfs.js'
import { OciDriver } from './runtime/oci.js'
import { Store } from './store/db.js'
import { HistoryStore } from './store/history.js'
import { BuildRunner } from './templates/build.js'
import { pullBase } from './templates/from-image.js'
import { imagePullSettings } from './templates/image/index.js'
import { TemplateBuilds } from './templates/builds.js'
import { SandboxCopies } from './lifecycle/copies.js'
import { BuiltinTemplates } from './templates/builtin.js'
import { codeInterpreterTemplate } from './templates/code-interpreter.js'
import { TemplateRegistry, parseTemplateRef } from './templates/registry.js'
import { ensureTls, type TlsMaterial } from './tls/certs.js'

export { loadConfig, type Config } from './config.js'
export { SandlotError } from './errors.js'
export type { SandboxView } from './api/serialize.js'

/** How long a sandbox's agent may take to open a tunnel to one of its ports (it answers at once when healthy). */
const PREVIEW_DIAL_TIMEOUT_MS = 10_000
/** A sandbox's address answers at once (refused or accepted) unless it is gone. */
const DIRECT_DIAL_TIMEOUT_MS = 1000

export interface RunningServer {
  url: string
  config: Config
  /** The local CA's certificate (to trust for https://), absent with a user-supplied certificate or without TLS. */
  caFile?: string
  manager: SandboxManager
  /** Resolves once the server can create sandboxes (template built, runtime checked). */
  ready: Promise<void>
  close(): Promise<void>
}

/** Fails with what to do when the port is taken (a probe: the real listen comes once the server is built). */
async function checkPortFree(host: string, port: number): Promise<void> {
  if (port === 0) return
  const probe = net.createServer()
  await new Promise<void>((resolve, reject) => {
    probe.once('error', (err: NodeJS.ErrnoException) => {
      const where = `${host.includes(':') ? `[${host}]` : host}:${port}`
      if (err.code === 'EADDRINUSE') reject(new Error(`${where} is already in use (another sandlotd, or another server); stop it or listen elsewhere with SANDLOT_LISTEN=host:port`))
      else if (err.code === 'EADDRNOTAVAIL') reject(new Error(`cannot listen on ${where}: ${host} is not an address of this machine (SANDLOT_LISTEN)`))
      else reject(new Error(`cannot listen on ${where}: ${err.message}`))
    })
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve()))
  })
}

export async function startServer(config: Config = loadConfig(), log: Logger = createLogger(config.logLevel)): Promise<RunningServer> {
  if (process.getuid?.() !== 0) throw new Error('sandlotd runs as root: it creates mounts, cgroups and namespaces for sandboxes')
  // Before anything is written: a start that cannot listen leaves no new home or key behind.
  await checkPortFree(config.listenHost, config.listenPort)
  // Traversable (sandbox roots must reach their bundles inside it), not listable, by other users.
  fs.mkdirSync(config.home, { recursive: true, mode: 0o711 })
  fs.chmodSync(config.home, 0o711)
  // Before anything else in it is touched: one server per home.
  const lock = lockHome(config.home)
  const store = new Store(path.join(config.home, 'sandlot.db'))
  const keyFile = ensureApiKey(store, config.home)
  let seed = store.getSetting('token_seed')
  if (!seed) {
    seed = crypto.randomBytes(32).toString('hex')
    store.setSetting('token_seed', seed)
  }
  const layout = ensureIdLayout()
  const idRanges = new IdRanges(layout, path.join(config.home, 'sandboxes'))
  const networks = new SandboxNetworks(config.network, store, log)
  const driver = new OciDriver(config, layout.template, networks)
  const templates = new TemplateRegistry(store, config.templatesDir, layout.template, log)
  // The networks apply a running sandbox's new egress rules (updateNetwork); create hands them over through the runtime.
  const manager = new SandboxManager(store, driver, templates, config, log, seed, idRanges, networks)
  // Ready sandboxes per template, handed out by create (lifecycle/pool.ts); filled once prepared.
  const pool = new SandboxPool(
    {
      resolve: (name) => {
        try {
          return templates.resolve(name)
        } catch (err) {
          // A pool of a template Sandlot builds itself (code-interpreter-v1) starts its build; the
          // pool's next check fills it once it is ready.
          if (builtins.has(name)) builtins.ensure(name).catch((e: Error) => log.error({ err: e }, `cannot build template "${name}": ${e.message}`))
          throw err
        }
      },
      buildsItself: (name) => builtins.has(name),
      defaultLimits: (t) => manager.defaultLimitsOf(t),
      startPooled: (t, limits) => manager.startPooled(t, limits),
      destroyPooled: (id) => manager.destroyPooled(id),
      alive: (id) => driver.alive(id),
      get busy() {
        return manager.busy
      },
      get lastCreateAt() {
        return manager.lastCreateAt
      },
    },
    config.poolSizes,
    log,
    config.poolQuietMs,
  )
  manager.pool = pool
  // Each sandbox's metrics and log (lifecycle/metrics.ts, lifecycle/logs.ts), kept past its end until pruned.
  const history = new HistoryStore(store.db)
  const logs = new SandboxLogs(history, config.history.logLinesPerSandbox, (err) => log.warn({ err }, 'cannot write to a sandbox\'s log'))
  manager.logs = logs
  const sampler = new MetricsSampler({ store: history, driver, running: () => manager.running(), log, intervalMs: config.history.metricsIntervalMs, retentionMs: config.history.retentionMs })
  // Template builds: layers under $SANDLOT_HOME/layers (root's alone, like the templates), the
  // uploaded files of COPY steps under template-files.
  const layersDir = path.join(config.home, 'layers')
  const imagePulls = imagePullSettings()
  const imagesDir = path.join(config.home, 'images')
  fs.mkdirSync(layersDir, { recursive: true, mode: 0o700 })
  const runner: BuildRunner = new BuildRunner({
    store: templates.builds,
    driver,
    idRanges,
    log,
    layersDir,
    archiveOf: (hash: string): string | undefined => builds.archivePath(hash),
    resolve: (name) => templates.resolve(name),
    pullBase: (image, signal) => pullBase(image, { imagesDir, idRange: layout.template, log, ...imagePulls, signal }),
    // A build sandbox: 2 CPUs, 2 GiB and an 8 GiB disk (sparse) unless the build asks for other
    // CPU and memory, never past the server's maxima.
    limits: {
      cpuCount: Math.min(2, config.maxLimits.cpuCount),
      memoryMB: Math.min(2048, config.maxLimits.memoryMB),
      pids: Math.max(config.defaultLimits.pids, Math.min(4096, config.maxLimits.pids)),
      diskSizeMB: Math.min(8192, config.maxLimits.diskSizeMB),
    },
    maxLimits: config.maxLimits,
    timeoutMs: config.builds.timeoutMs,
    readyTimeoutMs: config.readyTimeoutMs,
  })
  const builds: TemplateBuilds = new TemplateBuilds(templates, runner, path.join(config.home, 'template-files'), log, config.builds.maxConcurrent, () => new Set(store.listSandboxes().filter((s) => s.state !== 'pooled').map((s) => s.template)), config.builds.maxUploadBytes)
  // Templates Sandlot builds itself through the same pipeline, on first use (or at start when listed).
  const builtins = new BuiltinTemplates(templates, builds, log, [codeInterpreterTemplate])
  templates.builtins = builtins.names()
  manager.prepareTemplate = async (ref) => {
    const { alias, tag } = parseTemplateRef(ref)
    if (tag === 'default' && builtins.has(alias)) await builtins.whenReady(alias, config.builtinTemplates.waitMs)
  }
  const prebuild = () => {
    for (const name of config.builtinTemplates.prebuild) {
      if (!builtins.has(name)) log.warn(`SANDLOT_PREBUILD_TEMPLATES: "${name}" is not a template Sandlot builds (those are ${builtins.names().join(', ')})`)
      else builtins.ensure(name).catch((err: Error) => log.error({ err }, `cannot build template "${name}": ${err.message}`))
    }
  }
  // Layers nothing stands on (no sandbox, no running build) go at start and every hour.
  const removeTree = (dir: string) => promisify(execFile)('rm', ['-rf', '--one-file-system', '--', dir]).then(() => {})
  const collect = () => void builds.collectLayers({ layers: layersDir, images: imagesDir }, () => [...store.listSandboxes().flatMap((s) => s.templateLayers), ...runner.layersInUse()], removeTree).catch((err) => log.warn({ err }, 'layer collection failed'))
  const collector = setInterval(collect, config.builds.collectIntervalMs)
  collector.unref()
  const proxy = new EnvdProxy((id) => driver.agentSocket(id), config.agentReplyTimeoutMs)
  // Port previews reach a sandbox's ports through its agent (proxy/dialer.ts, proxy/tunnel.ts).
  // Straight to the sandbox's address first (no agent in the path); then through its agent, which
  // also reaches servers bound to the sandbox's loopback.
  const dialer = new PortDialer([
    directWay((id) => networks.addressOf(id), DIRECT_DIAL_TIMEOUT_MS),
    agentTunnelWay((id) => driver.agentSocket(id), (id) => manager.find(id)?.accessToken, PREVIEW_DIAL_TIMEOUT_MS),
  ])
  const preview = new PreviewProxy({ dialer, isApiKey: (key) => isValidApiKey(store, key), isRunning: (id) => manager.find(id) !== undefined })
  manager.onDestroyed = (id) => {
    proxy.forget(id)
    preview.forget(id)
  }
  proxy.onAgentError = (id, message) => logs.append(id, 'error', message, { logger: 'agent' })

  // The default domain names the port: with port 0 (tests) it is known only once listening, and
  // the certificate needs only its host part, which does not change.
  let tls: TlsMaterial | undefined
  try {
    tls = await ensureTls(config, { info: (msg) => log.info(msg), warn: (msg) => log.warn(msg) })
  } catch (err) {
    // The user's own certificate must work; without it, start would serve something else than asked.
    if (config.tlsCertFile || config.tlsKeyFile) throw err
    log.error({ err }, `https:// is off: cannot make the local CA (${(err as Error).message}); is openssl installed?`)
  }
  const copies = new SandboxCopies(manager, driver, templates, builds, layersDir, log)
  const app = buildApp({ store, manager, proxy, preview, log, config, tls, builds, templates, pool, copies, history, logs })
  // Listen first, so /health reports progress while the base template is built.
  await app.listen({ host: config.listenHost, port: config.listenPort })
  const address = app.server.address()
  const port = typeof address === 'object' && address ? address.port : config.listenPort
  if (!config.domainFromEnv) config.domain = defaultDomain(port)
  const url = `http://${config.listenHost.includes(':') ? `[${config.listenHost}]` : config.listenHost}:${port}`
  log.info({ url, keyFile, runtime: driver.name, domain: config.domain, caFile: tls?.caFile }, `sandlotd listening on ${url}; API key in ${keyFile}`)
  if (tls?.caFile) log.info(`https:// on the same port, with a certificate from the local CA ${tls.caFile} (trust it: NODE_EXTRA_CA_CERTS=${tls.caFile})`)

  // The network first (bridge, resolver, rules of the sandboxes it had), so re-adopted sandboxes
  // keep theirs; then the networks of sandboxes that ended meanwhile go.

  const ready = networks
    .init()
    .then(async () => {
      driver.lxcfs = await ensureLxcfs(log)
    })
    .then(() => manager.prepare())
    .then(() => networks.sweep((id) => store.getSandbox(id) !== undefined))
    .then(collect)
    .then(prebuild)
    .then(() => pool.start())
    .then(() => sampler.start())
    .then(
    () => log.info('ready: sandboxes can be created'),
    (err: Error) => {
      manager.setNotReady(err.message)
      log.error({ err }, `cannot create sandboxes: ${err.message}`)
      throw err
    },
  )
  ready.catch(() => {})

  return {
    url,
    config,
    caFile: tls?.caFile,
    manager,
    ready,
    async close() {
      clearInterval(collector)
      runner.cancelAll()
      manager.shutdown()
      await sampler.stop()
      await app.close()
      await pool.drain()
      await driver.shutdown()
      await networks.close()
      store.close()
      idRanges.close()
      lock.release()
    },
  }
}
