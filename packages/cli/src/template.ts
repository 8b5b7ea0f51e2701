// `sandlot template build | ls | rm | tag`: templates from a Dockerfile through Sandlot's REST
// (docs/api.md, "Templates"). build reads the Dockerfile (dockerfile.ts), packs and uploads the
// files of its COPY steps (build-context.ts), starts the build and follows its logs: a line per
// step, CACHED marked, each step's output indented, the failing step and its output on error.
import fs from 'node:fs'
import path from 'node:path'
import { CliError, client } from './client.js'
import { BuildContext, ContextError } from './build-context.js'
import { DockerfileError, parseDockerfile, type PlannedStep } from './dockerfile.js'
import { printJson, printTable, relativeTime } from './format.js'

/** More than each command's own help says: what a Dockerfile may hold. */
export const DOCKERFILE_HELP = `
FROM names a template (base, or one of yours) or else an image in a registry (credentials:
--registry-user and SANDLOT_REGISTRY_PASSWORD). CMD/ENTRYPOINT become the start command, run at
each create; the create answers once the ready command passes (--ready-cmd; default "sleep 20", as
E2B's). Progress goes to stderr; the result to stdout (JSON with --json). Exit code 1 if the build
fails.

Dockerfile support: one stage; RUN (shell, exec and heredoc forms), COPY/ADD of local files
(--chown, --chmod; .dockerignore applies), ENV, ARG, WORKDIR, USER, CMD, ENTRYPOINT. EXPOSE,
VOLUME, LABEL, HEALTHCHECK and STOPSIGNAL are ignored with a note; multi-stage builds, COPY --from,
ADD of URLs or archives, SHELL, ONBUILD and RUN --mount are refused with their line.`

interface BuildStatus {
  status: 'waiting' | 'building' | 'ready' | 'error'
  logEntries: { timestamp: string; level: string; message: string; step?: string }[]
  reason?: { message: string; step?: string }
}

interface TemplateView {
  name: string
  id: string
  tags: string[]
  createdAt?: string
}

/** The REST's steps (docs/api.md). */
type RestStep = { type: string; args: string[]; filesHash?: string }

/** `--cpu`, `--memory`: a positive whole number. */
export function positiveInt(what: string) {
  return (v: string): number => {
    if (!/^\d+$/.test(v) || Number(v) < 1) throw new CliError(`${what} takes a positive whole number, got "${v}"`, 2)
    return Number(v)
  }
}

export async function remove(name: string, json: boolean): Promise<void> {
  await client().request('DELETE', `/api/v1/templates/${encodeURIComponent(name)}`)
  if (json) return printJson({ name, removed: true })
  console.error(`Removed template ${name}.`)
}

export async function tag(ref: string, tags: string[], json: boolean): Promise<void> {
  const [name, target] = ref.split(':')
  const r = await client().request<{ name: string; buildId: string; tags: string[] }>('POST', `/api/v1/templates/${encodeURIComponent(name!)}/tags`, { body: { ...(target && { target }), tags } })
  if (json) return printJson(r)
  console.log(`${r.name}: build ${r.buildId} is tagged ${r.tags.join(', ')}`)
}

export async function ls(json: boolean): Promise<void> {
  const list = await client().request<TemplateView[]>('GET', '/api/v1/templates', { retry: true })
  if (json) return printJson(list)
  printTable([['NAME', 'TAGS', 'CREATED'], ...list.map((t) => [t.name, t.tags.join(',') || '-', t.createdAt ? relativeTime(t.createdAt) : '-'])])
}

export interface BuildOptions {
  name: string
  context: string
  file?: string
  tags: string[]
  buildArgs: Record<string, string>
  noCache: boolean
  cpuCount?: number
  memoryMB?: number
  startCmd?: string
  readyCmd?: string
  registryUser?: string
  json: boolean
}

/** `FROM base`, E2B's `e2bdev/base`, a template of this server, or else an image. */
async function baseOf(from: string, registryUser: string | undefined): Promise<{ fromTemplate: string } | { fromImage: { ref: string; username?: string; password?: string } }> {
  const [repo, tag] = from.split(':')
  if ((repo === 'base' || repo === 'e2bdev/base') && (!tag || tag === 'latest')) return { fromTemplate: 'base' }
  if (!from.includes('/')) {
    const list = await client().request<TemplateView[]>('GET', '/api/v1/templates', { retry: true })
    if (list.some((t) => t.name === repo)) return { fromTemplate: from }
  }
  const password = process.env.SANDLOT_REGISTRY_PASSWORD
  if (registryUser && !password) throw new CliError('--registry-user needs the password in SANDLOT_REGISTRY_PASSWORD (never on the command line)', 2)
  return { fromImage: { ref: from, ...(registryUser && { username: registryUser, password }) } }
}

/** PUTs an archive unless the server has it already (by hash), streamed from its file. */
async function upload(hash: string, file: string, size: number): Promise<boolean> {
  const route = `/api/v1/templates/files/${hash}`
  const have = await client().request<{ present: boolean }>('GET', route, { retry: true })
  if (have.present) return false
  await client().request('PUT', route, { stream: { body: fs.createReadStream(file), contentType: 'application/gzip', length: size } })
  return true
}

const kb = (n: number) => (n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 / 1024).toFixed(1)} MiB`)

export async function build(o: BuildOptions): Promise<number> {
  const dockerfilePath = path.resolve(o.file ?? path.join(o.context, 'Dockerfile'))
  let text: string
  try {
    text = fs.readFileSync(dockerfilePath, 'utf8')
  } catch {
    throw new CliError(`Cannot read the Dockerfile ${dockerfilePath}${o.file ? '' : ' (give another with -f)'}`)
  }
  const shown = path.relative(process.cwd(), dockerfilePath) || dockerfilePath
  let plan
  let context: BuildContext | undefined
  try {
    plan = parseDockerfile(text, { buildArgs: o.buildArgs })
    for (const note of plan.notes) console.error(`Note: ${shown} ${note}`)
    if (plan.unusedBuildArgs.length) console.error(`Note: --build-arg ${plan.unusedBuildArgs.join(', ')}: no ARG in ${shown} declares ${plan.unusedBuildArgs.length > 1 ? 'them' : 'it'}`)
    const copies = plan.steps.filter((s) => s.type === 'COPY')
    const steps: RestStep[] = []
    if (copies.length) context = new BuildContext(o.context)
    const sent = new Set<string>()
    let uploaded = 0
    let bytes = 0
    for (const s of plan.steps) {
      if (s.type !== 'COPY') {
        steps.push({ type: s.type, args: s.args })
        continue
      }
      let a
      try {
        a = await context!.archive(s.src)
      } catch (err) {
        if (err instanceof ContextError) throw new DockerfileError(err.message, s.line)
        throw err
      }
      if (!sent.has(a.hash)) {
        sent.add(a.hash)
        if (await upload(a.hash, a.file, a.size)) {
          uploaded++
          bytes += a.size
        }
      }
      steps.push({ type: 'COPY', args: [s.src, s.dest, s.owner, s.mode], filesHash: a.hash })
    }
    if (copies.length) console.error(`Context ${context!.dir}: ${sent.size} archive${sent.size === 1 ? '' : 's'} for ${copies.length} COPY step${copies.length === 1 ? '' : 's'}${uploaded ? `, ${uploaded} uploaded (${kb(bytes)})` : ', all on the server already'}`)
    const startCmd = o.startCmd ?? plan.startCmd
    if (o.readyCmd && !startCmd) throw new CliError('--ready-cmd needs a start command: CMD or ENTRYPOINT in the Dockerfile, or --start-cmd', 2)
    const base = await baseOf(plan.from, o.registryUser)
    const started = Date.now()
    const made = await client().request<{ templateId: string; buildId: string; name: string; tags: string[] }>('POST', '/api/v1/templates', { body: {
      name: o.name,
      // NAME alone is NAME's "default" tag, --tag or not (the REST gives "default" only without tags).
      ...(o.tags.length && { tags: o.name.includes(':') ? o.tags : ['default', ...o.tags] }),
      ...base,
      steps,
      ...(startCmd && { startCmd, readyCmd: o.readyCmd ?? 'sleep 20' }),
      ...(o.noCache && { force: true }),
      ...(o.cpuCount && { cpuCount: o.cpuCount }),
      ...(o.memoryMB && { memoryMB: o.memoryMB }),
    } })
    const baseName = 'fromTemplate' in base ? `template ${base.fromTemplate}` : `image ${base.fromImage.ref}`
    console.error(`Building ${made.name} (build ${made.buildId}) from ${baseName}: ${plan.steps.length} steps`)
    return await follow(made, plan.steps, o, started)
  } catch (err) {
    if (err instanceof DockerfileError) throw new CliError(`${shown}: ${err.message.replace(/^Dockerfile /, '')}`)
    if (err instanceof ContextError) throw new CliError(err.message)
    throw err
  } finally {
    context?.cleanup()
  }
}

/** Follows a build's logs to its end, printing progress; 0 when it is ready, 1 when it failed. */
async function follow(made: { templateId: string; buildId: string; name: string; tags: string[] }, planned: PlannedStep[], o: BuildOptions, started: number): Promise<number> {
  const view = new Progress(planned, process.stderr)
  const route = `/api/v1/templates/${made.templateId}/builds/${made.buildId}`
  let offset = 0
  let s: BuildStatus
  for (;;) {
    s = await client().request<BuildStatus>('GET', `${route}?logsOffset=${offset}`, { retry: true })
    for (const e of s.logEntries) view.entry(e)
    offset += s.logEntries.length
    if ((s.status === 'ready' || s.status === 'error') && s.logEntries.length === 0) break
    if (s.logEntries.length === 0) await new Promise((r) => setTimeout(r, 200))
  }
  view.end()
  const seconds = ((Date.now() - started) / 1000).toFixed(1)
  const counted = planned.length
  if (s.status === 'ready') {
    const summary = { status: 'ready', name: made.name, tags: made.tags, templateId: made.templateId, buildId: made.buildId, steps: counted, cached: view.cached.size, seconds: Number(seconds) }
    if (o.json) console.log(JSON.stringify(summary, null, 2))
    else console.log(`Built ${made.name} (tags: ${made.tags.join(', ')}) in ${seconds} s: ${counted} steps, ${view.cached.size} cached. Use it with: sandlot create --template ${made.name}`)
    return 0
  }
  const step = s.reason?.step
  const n = step && /^\d+$/.test(step) ? Number(step) : undefined
  const p = n ? planned[n - 1] : undefined
  const where = p ? `step ${n}/${counted}, ${p.line ? `line ${p.line}: ` : ''}${short(p.label, 200)}` : step === 'base' ? 'the base' : step === 'finalize' ? 'the start command' : 'the build'
  const output = step ? view.outputOf(step) : []
  if (o.json) {
    console.log(JSON.stringify({ status: 'error', name: made.name, templateId: made.templateId, buildId: made.buildId, step: step ?? null, line: p?.line ?? null, message: s.reason?.message ?? 'the build failed', output }, null, 2))
  }
  const tail = output.slice(-30)
  process.stderr.write(
    `Error: the build of ${made.name} failed at ${where}\n  ${s.reason?.message ?? 'no reason given'}\n` +
      (tail.length ? `Its output${output.length > tail.length ? ` (last ${tail.length} lines)` : ''}:\n${tail.map((l) => `    ${l}`).join('\n')}\n` : '') +
      'No tag was moved: sandboxes from this template get its last good build.\n',
  )
  return 1
}

const short = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s)

/**
 * Prints build logs as progress: "Step N/M: INSTRUCTION" as each step starts (CACHED when reused),
 * its output indented. On a terminal, colours and a running clock on the step in progress.
 */
class Progress {
  readonly cached = new Set<string>()
  private output = new Map<string, string[]>()
  private current?: string
  private headerOpen = false
  private stepStarted = 0
  private header = ''
  private timer?: NodeJS.Timeout
  private readonly tty: boolean

  constructor(
    private readonly planned: PlannedStep[],
    private readonly out: NodeJS.WriteStream,
  ) {
    this.tty = !!out.isTTY && !process.env.NO_COLOR
  }

  private paint(code: string, s: string): string {
    return this.tty ? `\x1b[${code}m${s}\x1b[0m` : s
  }

  private closeHeader(): void {
    if (!this.headerOpen) return
    this.headerOpen = false
    if (this.tty) this.out.write(`\r\x1b[K${this.header}\n`)
    else this.out.write('\n')
  }

  private begin(step: string, text: string): void {
    this.closeHeader()
    this.current = step
    this.stepStarted = Date.now()
    this.header = text
    this.headerOpen = true
    this.out.write(text)
    if (this.tty) {
      clearInterval(this.timer)
      this.timer = setInterval(() => {
        if (this.headerOpen) this.out.write(`\r\x1b[K${this.header} ${this.paint('2', `${Math.round((Date.now() - this.stepStarted) / 1000)}s`)}`)
      }, 1000)
      this.timer.unref()
    }
  }

  private line(text: string, warn: boolean): void {
    this.closeHeader()
    this.out.write(`    ${this.paint(warn ? '33' : '2', text)}\n`)
  }

  entry(e: { level: string; message: string; step?: string }): void {
    const step = e.step
    if (!step) return // "Build finished in …": the summary says it
    if (e.level === 'error') return // the reason, printed once at the end
    if (step !== this.current) {
      if (step === 'base' || step === 'finalize') {
        this.begin(step, this.paint('1', e.message))
        return
      } else {
        const n = Number(step)
        const p = this.planned[n - 1]
        const cached = e.message.startsWith('CACHED ')
        if (cached) this.cached.add(step)
        const label = p ? `${short(p.label.replace(/\n/g, ' ⏎ '), 160)}${p.line ? this.paint('2', ` (line ${p.line})`) : ''}` : e.message
        this.begin(step, `${this.paint('1', `Step ${n}/${this.planned.length}:`)} ${label}${cached ? ` ${this.paint('32', 'CACHED')}` : ''}`)
      }
      // The server's own step label ("[n/N] RUN …") was just shown our way.
      if (/^(CACHED )?\[\d+\/\d+\] /.test(e.message)) return
    }
    const lines = this.output.get(step) ?? []
    lines.push(e.message)
    this.output.set(step, lines)
    this.line(e.message, e.level === 'warn')
  }

  outputOf(step: string): string[] {
    return this.output.get(step) ?? []
  }

  end(): void {
    clearInterval(this.timer)
    this.closeHeader()
  }
}
