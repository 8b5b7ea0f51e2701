// The template build pipeline: a base (a template's layers and config), then steps with E2B's
// semantics, each run in a build sandbox of its own (the same runtime, limits and network rules as
// any sandbox) on the layers so far; what a step changed becomes a read-only layer, cached by the
// hash of its parent and the step (so a second identical build reuses every layer, and one changed
// step rebuilds only from there). Then the start and ready commands are tried once, as a sandbox
// would run them. Logs and status go to the store as E2B's builder reads them.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import type { Logger } from 'pino'
import { AgentClient } from '../runtime/agent-client.js'
import type { RuntimeDriver } from '../runtime/driver.js'
import type { IdRanges } from '../runtime/idmap.js'
import type { Limits } from '../config.js'
import type { BuildReason, LogEntry, TemplateConfig, TemplateStore } from '../store/templates.js'
import { ENSURE_USER, shellQuote, type ImageBase, type PulledBase } from './from-image.js'

/** E2B's five step types (the builder compiles everything to them). */
export type Step =
  | { type: 'RUN'; args: string[]; force?: boolean }
  | { type: 'COPY'; args: string[]; filesHash: string; force?: boolean }
  | { type: 'ENV'; args: string[]; force?: boolean }
  | { type: 'WORKDIR'; args: string[]; force?: boolean }
  | { type: 'USER'; args: string[]; force?: boolean }

export interface BuildSpec {
  /** The template it starts from (its layers and config)… */
  fromTemplate?: string
  /** …or an OCI image (from-image.ts); its password is never stored. */
  fromImage?: ImageBase
  steps: Step[]
  startCmd?: string
  readyCmd?: string
  /** Skip the cache for every step (E2B's `force` / skipCache). */
  force?: boolean
  cpuCount?: number
  memoryMB?: number
  /** A built-in template's definition (builtin.ts), kept with the build to tell when it changed. */
  definitionHash?: string
}

export interface BaseOfTemplate {
  layers: string[]
  config: TemplateConfig
  /** An image's Entrypoint+Cmd: the start command when the build gives none. */
  startCmd?: string
}

/** A time limit as people say it: "90 s", "30 min". */
const duration = (ms: number) => (ms < 120_000 ? `${+(ms / 1000).toFixed(1)} s` : `${+(ms / 60_000).toFixed(1)} min`)

export interface BuildDeps {
  store: TemplateStore
  driver: RuntimeDriver
  idRanges: IdRanges
  log: Logger
  /** Where layers are kept ($SANDLOT_HOME/layers). */
  layersDir: string
  /** The uploaded archive for a COPY step's files hash, or undefined. */
  archiveOf(filesHash: string): string | undefined
  /** The layers and config of a ready template, by name (throws a clear error if there is none). */
  resolve(name: string): BaseOfTemplate
  /** Pulls an image as a base (from-image.ts). */
  pullBase(image: ImageBase, signal: AbortSignal): Promise<PulledBase>
  /** A build sandbox's limits, and the most a build may ask for. */
  limits: Limits
  maxLimits: Limits
  /** The longest a whole build may take. */
  timeoutMs: number
  /** How long a start command's ready command may take to pass. */
  readyTimeoutMs: number
}

class StepFailed extends Error {
  constructor(
    message: string,
    readonly step: string,
  ) {
    super(message)
  }
}

const sha = (...parts: string[]) => crypto.createHash('sha256').update(parts.join('\0')).digest('hex')
const q = shellQuote

/** E2B's ENV: values are shell-evaluated against what is set so far (`${VAR}` and `$VAR`). */
export function expandEnv(value: string, env: Record<string, string>): string {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (_, a: string | undefined, b: string | undefined) => env[(a ?? b)!] ?? '')
}

/**
 * Variables in a WORKDIR or a COPY destination (`$HOME/app`, `${APP_DIR}`), as a shell would
 * expand them for the step's user: the template's ENV so far, and HOME as that user's home unless
 * ENV set it.
 */
const pathVars = (p: string, config: TemplateConfig) => expandEnv(p, { HOME: homeOf(config.user), ...config.env })

/** The directory a relative path is taken from: the workdir, else the user's home. */
const homeOf = (user: string) => (user === 'root' ? '/root' : `/home/${user}`)
const resolveFrom = (base: string, p: string) => path.posix.resolve(base, p)

/** COPY's source without its glob part (`folder/*` → `folder`), relative to the context. */
export function copySource(src: string): string {
  const parts = path.posix.normalize(src).split('/')
  const firstGlob = parts.findIndex((p) => /[*?[]/.test(p))
  const kept = (firstGlob < 0 ? parts : parts.slice(0, firstGlob)).join('/')
  return kept === '.' ? '' : kept.replace(/^\.\/|\/$/g, '')
}

export class BuildRunner {
  private running = new Map<string, AbortController>()
  /** The layers each running build stands on so far (the collection leaves them alone). */
  private standing = new Map<string, string[]>()

  constructor(private readonly d: BuildDeps) {}

  cancelAll(): void {
    for (const c of this.running.values()) c.abort()
  }

  /** Layers (and image rootfs directories) that running builds stand on now. */
  layersInUse(): string[] {
    return [...this.standing.values()].flat()
  }

  private logTo(buildId: string, level: LogEntry['level'], message: string, step?: string): void {
    this.d.store.appendLog(buildId, { at: Date.now(), level, message, ...(step !== undefined && { step }) })
  }

  /**
   * Runs a build to its end (ready or error); never throws. `onReady` runs just before the build
   * reads as ready (its tags move then, so a client that sees "ready" finds them in place).
   */
  async run(buildId: string, spec: BuildSpec, onReady: () => void = () => {}): Promise<void> {
    const controller = new AbortController()
    this.running.set(buildId, controller)
    const timer = setTimeout(() => controller.abort(new Error(`the build took longer than its time limit, ${duration(this.d.timeoutMs)} (SANDLOT_BUILD_TIMEOUT_MS)`)), this.d.timeoutMs)
    this.d.store.setBuildStatus(buildId, 'building')
    const started = Date.now()
    // The step under way: a time limit or a stop is that step's failure, whatever it was doing.
    const at = { step: 'base' }
    try {
      const { layers, config } = await this.steps(buildId, spec, controller.signal, at)
      this.d.store.finishBuild(buildId, { status: 'ready', layers, config }, Date.now(), onReady)
      this.logTo(buildId, 'info', `Build finished in ${((Date.now() - started) / 1000).toFixed(1)} s`)
    } catch (err) {
      const e = controller.signal.aborted ? new StepFailed((controller.signal.reason as Error | undefined)?.message ?? 'the build was stopped', at.step) : err
      const reason: BuildReason = e instanceof StepFailed ? { message: e.message, step: e.step } : { message: (e as Error).message }
      this.logTo(buildId, 'error', reason.message, reason.step)
      this.d.store.finishBuild(buildId, { status: 'error', reason }, Date.now())
      this.d.log.warn({ buildId, reason }, 'template build failed')
    } finally {
      clearTimeout(timer)
      this.running.delete(buildId)
      this.standing.delete(buildId)
    }
  }

  private async steps(buildId: string, spec: BuildSpec, signal: AbortSignal, at: { step: string }): Promise<{ layers: string[]; config: TemplateConfig }> {
    let base: BaseOfTemplate
    // The cache key chain starts at the base: a template's top layer, or an image's digest.
    let key: string
    const count = `${spec.steps.length} step${spec.steps.length === 1 ? '' : 's'}`
    if (spec.fromImage) {
      this.logTo(buildId, 'info', `Pulling the image ${spec.fromImage.ref} (${count} to follow)`, 'base')
      let pulled: PulledBase
      try {
        pulled = await this.d.pullBase(spec.fromImage, signal)
      } catch (err) {
        throw new StepFailed(`cannot use the image ${spec.fromImage.ref}: ${(err as Error).message}`, 'base')
      }
      this.logTo(buildId, 'info', `Image ${spec.fromImage.ref} is ${pulled.digest}`, 'base')
      for (const note of pulled.notes) this.logTo(buildId, 'info', `Note: ${note}`, 'base')
      base = { layers: [pulled.rootfs], config: pulled.config, ...(pulled.startCmd && { startCmd: pulled.startCmd }) }
      key = sha('image', pulled.digest)
    } else {
      const from = spec.fromTemplate ?? 'base'
      try {
        base = this.d.resolve(from)
      } catch (err) {
        throw new StepFailed((err as Error).message, 'base')
      }
      key = sha('base', base.layers[0]!)
      this.logTo(buildId, 'info', `Building from template "${from}" (${count})`, 'base')
    }
    let layers = [...base.layers]
    this.standing.set(buildId, layers)
    const config: TemplateConfig = { ...base.config, env: { ...base.config.env }, startCmd: null, readyCmd: null }
    let force = !!spec.force
    /**
     * The layer of `key` on top of the layers so far: reused when cached (unless forced), else made
     * by `fn` in a build sandbox (a directory of its own even when the key has one already, as for
     * a forced step: builds that stand on the old one keep it).
     */
    const layer = async (label: string, cachedLabel: string, step: string, fn: (agent: AgentClient) => Promise<void>) => {
      const cachedPath = force ? undefined : this.d.store.layerPath(key)
      if (cachedPath && fs.existsSync(cachedPath)) {
        // In use again: stood on (below) and touched, so the collection's hour starts anew.
        this.standing.set(buildId, [cachedPath, ...layers])
        const now = new Date()
        fs.utimesSync(cachedPath, now, now)
        this.logTo(buildId, 'info', cachedLabel, step)
      } else {
        this.logTo(buildId, 'info', label, step)
        const dest = path.join(this.d.layersDir, `${key.slice(0, 32)}-${buildId.slice(0, 8)}`)
        await this.inSandbox(buildId, layers, config, spec, signal, step, fn, dest)
        this.d.store.putLayer(key, dest, Date.now())
      }
      layers = [this.d.store.layerPath(key)!, ...layers]
      this.standing.set(buildId, layers)
    }
    if (spec.fromImage) {
      // E2B's user phase: steps run as `user`, which the image may lack.
      key = sha(key, 'ensure-user')
      await layer('Making the user account', 'CACHED the user account', 'base', async (agent) => {
        const r = await agent.run(ENSURE_USER, { user: 'root', signal, onLine: (line) => this.logTo(buildId, 'info', line, 'base') }).catch((err: Error) => {
          throw new StepFailed(`cannot make the user account in the image: ${err.message}`, 'base')
        })
        if (r.exitCode !== 0) throw new StepFailed(`cannot make the user account in the image: ${r.status}`, 'base')
      })
    }
    for (const [i, step] of spec.steps.entries()) {
      if (signal.aborted) throw signal.reason
      const n = String(i + 1)
      at.step = n
      force ||= !!step.force
      const label = `[${n}/${spec.steps.length}] ${step.type} ${step.args.join(' ')}`
      key = sha(key, step.type, JSON.stringify(step.args), step.type === 'COPY' ? step.filesHash : '', config.user, config.workdir ?? '', JSON.stringify(config.env))
      // Config first: ENV changes nothing on disk (its pairs were checked with the request).
      if (step.type === 'ENV') {
        for (let k = 0; k < step.args.length; k += 2) config.env[step.args[k]!] = expandEnv(step.args[k + 1]!, config.env)
        this.logTo(buildId, 'info', label, n)
        continue
      }
      await layer(label, `CACHED ${label}`, n, (agent) => this.exec(step, agent, config, buildId, n, signal))
      if (step.type === 'USER') config.user = step.args[0]!
      if (step.type === 'WORKDIR') config.workdir = resolveFrom(config.workdir ?? homeOf(config.user), pathVars(step.args[0]!, config))
    }
    at.step = 'finalize'
    // An image's Entrypoint+Cmd starts the sandbox when the build names no start command; with no
    // ready command then, a create answers once it has started (no 20 s wait for a command not chosen).
    config.startCmd = spec.startCmd || base.startCmd || null
    config.readyCmd = spec.readyCmd || (spec.startCmd ? 'sleep 20' : null)
    if (spec.cpuCount) config.cpuCount = spec.cpuCount
    if (spec.memoryMB) config.memoryMB = spec.memoryMB
    if (config.startCmd) {
      this.logTo(buildId, 'info', `Trying the start command: ${config.startCmd}`, 'finalize')
      await this.inSandbox(buildId, layers, config, spec, signal, 'finalize', (agent) => startAndWaitReady(agent, config, this.d.readyTimeoutMs, signal, (line) => this.logTo(buildId, 'info', line, 'finalize')))
    }
    return { layers, config }
  }

  /**
   * A build sandbox on `layers` for one step: `fn` runs against its agent; then its changes are
   * captured into `dest` (when given) and it is destroyed, whatever happened.
   */
  private async inSandbox(buildId: string, layers: string[], config: TemplateConfig, spec: BuildSpec, signal: AbortSignal, step: string, fn: (agent: AgentClient) => Promise<void>, dest?: string): Promise<void> {
    const id = `b${crypto.randomBytes(10).toString('hex').slice(0, 19)}`
    const ids = this.d.idRanges.claim(id)
    const token = crypto.randomBytes(32).toString('hex')
    const limits: Limits = {
      ...this.d.limits,
      ...(spec.cpuCount && { cpuCount: Math.min(spec.cpuCount, this.d.maxLimits.cpuCount) }),
      ...(spec.memoryMB && { memoryMB: Math.min(spec.memoryMB, this.d.maxLimits.memoryMB) }),
    }
    let captured = false
    try {
      try {
        await this.d.driver.create({ id, templateLayers: layers, limits, envVars: config.env, accessToken: token, ids })
      } catch (err) {
        throw new StepFailed(`cannot start the build sandbox: ${(err as Error).message}`, step)
      }
      await fn(new AgentClient(this.d.driver.agentSocket(id), token))
      if (signal.aborted) throw signal.reason
      if (dest) {
        await this.d.driver.captureLayer(id, ids, dest)
        captured = true
      }
    } finally {
      if (!captured) await this.d.driver.destroy(id).catch((err) => this.d.log.warn({ err, buildId }, 'cannot remove a build sandbox'))
      this.d.idRanges.release(id, ids)
    }
  }

  private async exec(step: Step, agent: AgentClient, config: TemplateConfig, buildId: string, n: string, signal: AbortSignal): Promise<void> {
    const onLine = (line: string, stream: 'stdout' | 'stderr') => this.logTo(buildId, stream === 'stderr' ? 'warn' : 'info', line, n)
    const cwd = config.workdir ?? undefined
    const run = async (cmd: string, user: string, shown = cmd) => {
      let r
      try {
        r = await agent.run(cmd, { user, cwd, env: config.env, onLine, signal })
      } catch (err) {
        throw new StepFailed(`failed to run command '${shown}': command failed: ${(err as Error).message.replace(/^\[(\w+)\] /, '$1: ')}`, n)
      }
      if (r.exitCode !== 0) throw new StepFailed(`failed to run command '${shown}': ${r.status}`, n)
    }
    switch (step.type) {
      case 'RUN':
        return run(step.args[0]!, step.args[1] || config.user)
      case 'USER': {
        const name = step.args[0]!
        if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(name)) throw new StepFailed(`USER: "${name}" is not a valid user name`, n)
        return run(`id -u ${q(name)} >/dev/null 2>&1 || useradd --create-home --shell /bin/bash ${q(name)}`, 'root', `USER ${name}`)
      }
      case 'WORKDIR': {
        const dir = resolveFrom(config.workdir ?? homeOf(config.user), pathVars(step.args[0]!, config))
        // New directories belong to the current user (E2B chowns what it makes).
        return run(`d=${q(dir)}; made=$(mkdir -pv "$d" | sed -n "s/^mkdir: created directory '\\(.*\\)'$/\\1/p"); [ -z "$made" ] || printf '%s\\n' "$made" | xargs -d '\\n' chown ${q(`${config.user}:${config.user}`)}`, 'root', `WORKDIR ${dir}`)
      }
      case 'COPY': {
        const [src = '', dest = '', owner = '', mode = ''] = step.args
        const archive = this.d.archiveOf(step.filesHash)
        if (!archive) throw new StepFailed(`COPY ${src} ${dest}: the files (hash ${step.filesHash}) were never uploaded`, n)
        const inside = `/tmp/.sandlot-copy-${step.filesHash.slice(0, 16)}.tar.gz`
        await agent.upload(archive, inside, 'root')
        const target = resolveFrom(config.workdir ?? homeOf(config.user), pathVars(dest, config))
        const into = dest.endsWith('/')
        const ownerSpec = owner || `${config.user}:${config.user}`
        if (mode && !/^[0-7]{3,4}$/.test(mode)) throw new StepFailed(`COPY ${src} ${dest}: mode "${mode}" is not octal`, n)
        if (!/^[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)?$/.test(ownerSpec)) throw new StepFailed(`COPY ${src} ${dest}: owner "${ownerSpec}" is not user[:group]`, n)
        const from = copySource(src)
        // Unpacked in a scratch directory, then: a directory merges into the target, a file goes to
        // the target (or into it with a trailing "/"); the copied paths get the owner and mode.
        const script = [
          'set -e',
          // 0755, not mktemp's 0700: copying the whole context (`COPY . dest`) gives dest this mode.
          `t=$(mktemp -d); chmod 755 "$t"; trap 'rm -rf "$t" ${q(inside)}' EXIT`,
          `tar -xzf ${q(inside)} -C "$t" --no-same-owner`,
          `s="$t"/${q(from)}`,
          `d=${q(target)}`,
          'if [ -d "$s" ]; then mkdir -p "$d"; cp -a "$s"/. "$d"/; paths=$(cd "$s" && find . -mindepth 1 | sed "s|^\\.|$d|")',
          `elif [ -e "$s" ] || [ -L "$s" ]; then ${into ? 'mkdir -p "$d"; cp -a "$s" "$d"/; paths="$d/$(basename "$s")"' : 'mkdir -p "$(dirname "$d")"; cp -a "$s" "$d"; paths="$d"'}`,
          `else echo "COPY: ${from || '.'} is not in the uploaded files" >&2; exit 1; fi`,
          `printf '%s\\n' "$paths" | xargs -r -d '\\n' chown -h ${q(ownerSpec)}`,
          ...(mode ? [`printf '%s\\n' "$paths" | while IFS= read -r p; do [ -L "$p" ] || chmod ${mode} "$p"; done`] : []),
        ].join('\n')
        return run(script, 'root', `COPY ${src} ${dest}`)
      }
    }
  }
}

/**
 * Starts the start command in the background (as the template's user, in its workdir, with its
 * env), then runs the ready command until it passes (every 50 ms at first, then every 2 s).
 */
export async function startAndWaitReady(
  agent: AgentClient,
  config: TemplateConfig,
  timeoutMs: number,
  signal: AbortSignal | undefined,
  onLine?: (line: string) => void,
  /** The start command's output, line by line, for as long as it runs (a sandbox's log). */
  onStartOutput?: (line: string, stream: 'stdout' | 'stderr') => void,
): Promise<void> {
  const o = { user: config.user, cwd: config.workdir ?? undefined, env: config.env }
  if (config.startCmd) await agent.startBackground(config.startCmd, { ...o, onLine: onStartOutput })
  if (!config.readyCmd) return
  const deadline = Date.now() + timeoutMs
  let last: string[] = []
  for (let attempt = 0; ; attempt++) {
    if (signal?.aborted) throw signal.reason
    const r = await agent.run(config.readyCmd, { ...o, timeoutMs: Math.max(1000, Math.min(30_000, deadline - Date.now())) }).catch((err: Error) => ({ exitCode: -1, status: err.message, tail: [] as string[] }))
    if (r.exitCode === 0) return
    last = [r.status, ...r.tail]
    if (Date.now() > deadline) {
      for (const line of last) onLine?.(line)
      throw new StepFailed(`the ready command '${config.readyCmd}' did not pass within ${Math.round(timeoutMs / 1000)} s (last: ${last.filter(Boolean).slice(-5).join(' | ')})`, 'finalize')
    }
    // Often a server is a moment from listening: every 50 ms for the first 2 s, then every 2 s as E2B.
    await new Promise((r) => setTimeout(r, attempt < 40 ? 50 : 2000))
  }
}
