// `sandlot template build | ls | rm | tag`: templates from a Dockerfile through Sandlot's REST
// (docs/api.md, "Templates"). build reads the Dockerfile (dockerfile.ts), packs and uploads the
// files of its COPY steps (build-context.ts), starts the build and follows its logs: a line per
// step, CACHED marked, each step's output indented, the failing step and its output on error.
import fs from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { CliError, clientConfig, request, type ClientConfig } from './api.js'
import { BuildContext, ContextError } from './build-context.js'
import { DockerfileError, parseDockerfile, type PlannedStep } from './dockerfile.js'

export const TEMPLATE_USAGE = `Usage: sandlot template <command>

  build NAME [-f Dockerfile] [CONTEXT] [--tag T]… [--build-arg K=V]… [--no-cache]
        [--cpu N] [--memory MB] [--start-cmd CMD] [--ready-cmd CMD] [--json]
                         build template NAME ("name", its tag "default", or "name:tag"; --tag adds
                         more) from a Dockerfile (default
                         CONTEXT/Dockerfile; CONTEXT defaults to "."). FROM names a template (base,
                         or one of yours) or else an image in a registry (credentials: --registry-user
                         and SANDLOT_REGISTRY_PASSWORD). CMD/ENTRYPOINT become the start command, run
                         at each create; the create answers once the ready command passes
                         (--ready-cmd; default "sleep 20", as E2B's). Progress goes to stderr; the
                         result to stdout (JSON with --json). Exit code 1 if the build fails.
  ls [--json]            list templates: name, tags, created
  rm NAME                delete a template (refused while a sandbox uses it)
  tag NAME[:TAG] NEWTAG… give the build NAME:TAG (default: NAME's "default") more tags

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

export async function templateMain(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv
  if (!sub || sub === 'help' || sub === '--help' || sub === '-h') {
    console.log(TEMPLATE_USAGE)
    return sub ? 0 : 2
  }
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      file: { type: 'string', short: 'f' },
      tag: { type: 'string', short: 't', multiple: true },
      'build-arg': { type: 'string', multiple: true },
      'no-cache': { type: 'boolean' },
      cpu: { type: 'string' },
      memory: { type: 'string' },
      'start-cmd': { type: 'string' },
      'ready-cmd': { type: 'string' },
      'registry-user': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    console.log(TEMPLATE_USAGE)
    return 0
  }
  switch (sub) {
    case 'build': {
      if (!positionals[0] || positionals.length > 2) throw new CliError('Usage: sandlot template build NAME [-f Dockerfile] [CONTEXT] (see sandlot template --help)', 2)
      const int = (v: string | undefined, what: string) => {
        if (v === undefined) return undefined
        if (!/^\d+$/.test(v) || Number(v) < 1) throw new CliError(`${what} takes a positive whole number, got "${v}"`, 2)
        return Number(v)
      }
      return build({
        name: positionals[0],
        context: positionals[1] ?? '.',
        file: values.file,
        tags: values.tag ?? [],
        buildArgs: parsePairs(values['build-arg'] ?? [], '--build-arg'),
        noCache: !!values['no-cache'],
        cpuCount: int(values.cpu, '--cpu'),
        memoryMB: int(values.memory, '--memory'),
        startCmd: values['start-cmd'],
        readyCmd: values['ready-cmd'],
        registryUser: values['registry-user'],
        json: !!values.json,
      })
    }
    case 'ls':
    case 'list':
      await ls(!!values.json)
      return 0
    case 'rm':
    case 'delete': {
      if (positionals.length !== 1) throw new CliError('Usage: sandlot template rm NAME', 2)
      await request(clientConfig(), 'DELETE', `/api/v1/templates/${encodeURIComponent(positionals[0]!)}`)
      console.error(`Removed template ${positionals[0]}.`)
      return 0
    }
    case 'tag': {
      if (positionals.length < 2) throw new CliError('Usage: sandlot template tag NAME[:TAG] NEWTAG…', 2)
      const [ref, ...tags] = positionals as [string, ...string[]]
      const [name, target] = ref.split(':')
      const r = await request<{ name: string; buildId: string; tags: string[] }>(clientConfig(), 'POST', `/api/v1/templates/${encodeURIComponent(name!)}/tags`, { ...(target && { target }), tags })
      console.log(`${r.name}: build ${r.buildId} is tagged ${r.tags.join(', ')}`)
      return 0
    }
    default:
      throw new CliError(`Unknown template command "${sub}".\n\n${TEMPLATE_USAGE}`, 2)
  }
}

function parsePairs(pairs: string[], flag: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const p of pairs) {
    const i = p.indexOf('=')
    // Docker's `--build-arg NAME` takes the value from the environment.
    if (i < 0 && /^[A-Za-z_][A-Za-z0-9_]*$/.test(p) && process.env[p] !== undefined) out[p] = process.env[p]!
    else if (i <= 0) throw new CliError(`${flag} takes NAME=VALUE, got "${p}"`, 2)
    else out[p.slice(0, i)] = p.slice(i + 1)
  }
  return out
}

async function ls(json: boolean): Promise<void> {
  const list = await request<TemplateView[]>(clientConfig(), 'GET', '/api/v1/templates')
  if (json) return console.log(JSON.stringify(list, null, 2))
  const rows = [['NAME', 'TAGS', 'CREATED'], ...list.map((t) => [t.name, t.tags.join(',') || '-', t.createdAt ?? '-'])]
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  for (const r of rows) console.log(r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd())
}

interface BuildOptions {
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
async function baseOf(c: ClientConfig, from: string, registryUser: string | undefined): Promise<{ fromTemplate: string } | { fromImage: { ref: string; username?: string; password?: string } }> {
  const [repo, tag] = from.split(':')
  if ((repo === 'base' || repo === 'e2bdev/base') && (!tag || tag === 'latest')) return { fromTemplate: 'base' }
  if (!from.includes('/')) {
    const list = await request<TemplateView[]>(c, 'GET', '/api/v1/templates')
    if (list.some((t) => t.name === repo)) return { fromTemplate: from }
  }
  const password = process.env.SANDLOT_REGISTRY_PASSWORD
  if (registryUser && !password) throw new CliError('--registry-user needs the password in SANDLOT_REGISTRY_PASSWORD (never on the command line)', 2)
  return { fromImage: { ref: from, ...(registryUser && { username: registryUser, password }) } }
}

/** PUTs an archive unless the server has it already (by hash). */
async function upload(c: ClientConfig, hash: string, file: string, size: number): Promise<boolean> {
  const have = await request<{ present: boolean }>(c, 'GET', `/api/v1/templates/files/${hash}`)
  if (have.present) return false
  let res: Response
  try {
    res = await fetch(`${c.apiUrl}/api/v1/templates/files/${hash}`, {
      method: 'PUT',
      headers: { 'x-api-key': c.apiKey, 'content-type': 'application/gzip', 'content-length': String(size) },
      body: fs.createReadStream(file) as unknown as BodyInit,
      duplex: 'half',
    } as RequestInit)
  } catch (err) {
    throw new CliError(`Cannot upload the build context to ${c.apiUrl}: ${(err as Error).message}`)
  }
  const text = await res.text()
  if (!res.ok) throw new CliError(`Error ${res.status} uploading the build context: ${(JSON.parse(text || '{}') as { message?: string }).message ?? text}`)
  return true
}

const kb = (n: number) => (n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 / 1024).toFixed(1)} MiB`)

async function build(o: BuildOptions): Promise<number> {
  const c = clientConfig()
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
        if (await upload(c, a.hash, a.file, a.size)) {
          uploaded++
          bytes += a.size
        }
      }
      steps.push({ type: 'COPY', args: [s.src, s.dest, s.owner, s.mode], filesHash: a.hash })
    }
    if (copies.length) console.error(`Context ${context!.dir}: ${sent.size} archive${sent.size === 1 ? '' : 's'} for ${copies.length} COPY step${copies.length === 1 ? '' : 's'}${uploaded ? `, ${uploaded} uploaded (${kb(bytes)})` : ', all on the server already'}`)
    const startCmd = o.startCmd ?? plan.startCmd
    if (o.readyCmd && !startCmd) throw new CliError('--ready-cmd needs a start command: CMD or ENTRYPOINT in the Dockerfile, or --start-cmd', 2)
    const base = await baseOf(c, plan.from, o.registryUser)
    const started = Date.now()
    const made = await request<{ templateId: string; buildId: string; name: string; tags: string[] }>(c, 'POST', '/api/v1/templates', {
      name: o.name,
      // NAME alone is NAME's "default" tag, --tag or not (the REST gives "default" only without tags).
      ...(o.tags.length && { tags: o.name.includes(':') ? o.tags : ['default', ...o.tags] }),
      ...base,
      steps,
      ...(startCmd && { startCmd, readyCmd: o.readyCmd ?? 'sleep 20' }),
      ...(o.noCache && { force: true }),
      ...(o.cpuCount && { cpuCount: o.cpuCount }),
      ...(o.memoryMB && { memoryMB: o.memoryMB }),
    })
    const baseName = 'fromTemplate' in base ? `template ${base.fromTemplate}` : `image ${base.fromImage.ref}`
    console.error(`Building ${made.name} (build ${made.buildId}) from ${baseName}: ${plan.steps.length} steps`)
    return await follow(c, made, plan.steps, o, started)
  } catch (err) {
    if (err instanceof DockerfileError) throw new CliError(`${shown}: ${err.message.replace(/^Dockerfile /, '')}`)
    if (err instanceof ContextError) throw new CliError(err.message)
    throw err
  } finally {
    context?.cleanup()
  }
}

/** Follows a build's logs to its end, printing progress; 0 when it is ready, 1 when it failed. */
async function follow(c: ClientConfig, made: { templateId: string; buildId: string; name: string; tags: string[] }, planned: PlannedStep[], o: BuildOptions, started: number): Promise<number> {
  const view = new Progress(planned, process.stderr)
  const route = `/api/v1/templates/${made.templateId}/builds/${made.buildId}`
  let offset = 0
  let s: BuildStatus
  for (;;) {
    s = await request<BuildStatus>(c, 'GET', `${route}?logsOffset=${offset}`)
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
