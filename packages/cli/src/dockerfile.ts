// A Dockerfile read with a real parser (dockerfile-ast) and turned into a Sandlot build: its base
// and E2B's five step types (RUN, COPY, ENV, WORKDIR, USER), mapped as E2B's `fromDockerfile` does
// (USER root and WORKDIR / first, as Docker starts; USER user and WORKDIR /home/user last unless
// the Dockerfile set them; CMD/ENTRYPOINT the start command). What a template cannot be is refused
// by name with its line: a second stage, COPY --from, ADD of a URL or an archive, SHELL, ONBUILD,
// RUN's and COPY's BuildKit flags, heredoc files. No file is read here: COPY sources are resolved
// against the context by build-context.ts.
import { DockerfileParser, type Instruction, type ModifiableInstruction } from 'dockerfile-ast'

export class DockerfileError extends Error {
  constructor(
    message: string,
    readonly line?: number,
  ) {
    super(line === undefined ? message : `Dockerfile line ${line}: ${message}`)
  }
}

/** One step of the build, with where it came from (for progress and errors). */
export type PlannedStep =
  | { type: 'RUN'; args: [string]; line: number; label: string }
  | { type: 'COPY'; src: string; dest: string; owner: string; mode: string; add: boolean; line: number; label: string }
  | { type: 'ENV'; args: string[]; line: number; label: string }
  | { type: 'WORKDIR'; args: [string]; line: number; label: string }
  | { type: 'USER'; args: [string]; line: number; label: string }

export interface DockerfilePlan {
  /** FROM's image reference, variables expanded. */
  from: string
  fromLine: number
  steps: PlannedStep[]
  /** From CMD/ENTRYPOINT, as Docker combines them; undefined when neither is there. */
  startCmd?: string
  /** Instructions that are read but change nothing in a template (EXPOSE, LABEL, …). */
  notes: string[]
  /** --build-arg names that no ARG declares (Docker warns about them too). */
  unusedBuildArgs: string[]
}

/** A shell word: single-quoted unless it needs no quoting (as E2B's shellQuote). */
export const shellQuote = (s: string) => (s === '' ? "''" : /[^\w@%+=:,./-]/.test(s) ? `'${s.replaceAll("'", `'"'"'`)}'` : s)

/**
 * Docker's variable substitution: $NAME, ${NAME}, ${NAME:-word}, ${NAME:+word} (and without the
 * colon), `\$` for a literal dollar. A name `lookup` does not know is kept as written when
 * `keepUnknown` (the server expands ENV values against the base's env, which only it knows), else
 * empty, as Docker does.
 */
export function expandVars(text: string, lookup: (name: string) => string | undefined, keepUnknown = false): string {
  return text.replace(/\\\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (all, braced?: string, op?: string, word?: string, bare?: string) => {
    if (all === '\\$') return keepUnknown ? all : '$'
    const name = (braced ?? bare)!
    const value = lookup(name)
    if (op) {
      const unset = op.startsWith(':') ? !value : value === undefined
      if (value === undefined && keepUnknown) return all
      return op.endsWith('-') ? (unset ? word! : value!) : unset ? '' : word!
    }
    if (value === undefined) return keepUnknown ? all : ''
    return value
  })
}

const IGNORED: Record<string, string> = {
  EXPOSE: 'every port of a sandbox is reachable through its preview URL',
  VOLUME: 'a sandbox has one filesystem of its own',
  LABEL: 'templates carry no labels',
  MAINTAINER: 'templates carry no labels',
  HEALTHCHECK: 'nothing watches a running sandbox; a start command has --ready-cmd instead',
  STOPSIGNAL: 'sandboxes are killed, not stopped',
}

const REFUSED: Record<string, string> = {
  SHELL: 'steps run with bash -l -c, as E2B runs them; put the shell in the RUN command instead',
  ONBUILD: 'templates built from this one would not run its triggers',
}

const ARCHIVE_EXT = /\.(tar|tar\.gz|tgz|tar\.bz2|tbz2?|tar\.xz|txz|tar\.zst|tzst)$/i

function lineOf(i: Instruction): number {
  return i.getRange().start.line + 1
}

/** The JSON array of an exec form (`["a", "b"]`), or undefined for a shell form (Docker's rule). */
function execForm(content: string): string[] | undefined {
  if (!content.trimStart().startsWith('[')) return undefined
  try {
    const v = JSON.parse(content) as unknown
    return Array.isArray(v) && v.every((x) => typeof x === 'string') ? v : undefined
  } catch {
    return undefined
  }
}

/**
 * A RUN's shell command. A heredoc that is the whole command (`RUN <<EOT` … `EOT`) is the script
 * itself, as BuildKit runs it; any other heredoc (`RUN python3 <<EOF`) is bash's own syntax.
 */
function runCommand(content: string): string {
  const m = /^<<(-?)(["']?)([A-Za-z_][A-Za-z0-9_]*)\2[ \t]*\n([\s\S]*)$/.exec(content)
  if (!m) return content
  const [, dash, , name, rest] = m
  const lines = rest!.split('\n')
  const end = lines.findIndex((l) => (dash ? l.replace(/^\t+/, '') : l) === name)
  if (end !== lines.length - 1) return content // more after the heredoc: bash reads it as written
  const script = lines
    .slice(0, end)
    .map((l) => (dash ? l.replace(/^\t+/, '') : l))
    .join('\n')
  return script.startsWith('#!') ? runWithShebang(script) : script
}

/**
 * A heredoc script with a shebang (`#!/usr/bin/env python3`) is run by that interpreter, as
 * BuildKit does: written to a file, made executable, run, removed. The delimiter is one the script
 * does not contain.
 */
function runWithShebang(script: string): string {
  let delimiter = 'SANDLOT_SCRIPT'
  while (script.split('\n').includes(delimiter)) delimiter += '_'
  return [
    'f=$(mktemp)',
    `cat > "$f" <<'${delimiter}'`,
    script,
    delimiter,
    'chmod +x "$f"; "$f"; s=$?; rm -f "$f"; exit $s',
  ].join('\n')
}

export interface ParseOptions {
  /** --build-arg values; they override ARG defaults. */
  buildArgs?: Record<string, string>
}

export function parseDockerfile(text: string, opts: ParseOptions = {}): DockerfilePlan {
  const buildArgs = opts.buildArgs ?? {}
  const df = DockerfileParser.parse(text)
  const instructions = df.getInstructions()
  const froms = instructions.filter((i) => i.getKeyword() === 'FROM')
  if (froms.length === 0) throw new DockerfileError('the Dockerfile has no FROM: start it with "FROM base" (or another template, or an image)')
  if (froms.length > 1) {
    throw new DockerfileError(`multi-stage builds are not supported: a second FROM (stage ${froms.length > 2 ? `2 of ${froms.length}` : '2'}). A template is one stage; build the other stage's files elsewhere and COPY them in`, lineOf(froms[1]!))
  }
  // ARGs before FROM are for FROM only; after it, for the steps (Docker's scopes).
  const args = new Map<string, string | undefined>()
  // ARGs declared before FROM: a bare `ARG NAME` after FROM takes their value (Docker's rule).
  let globalArgs = new Map<string, string | undefined>()
  const envs = new Map<string, string>()
  const usedBuildArgs = new Set<string>()
  const declareArg = (i: Instruction) => {
    for (const p of (i as unknown as { getProperties(): { getName(): string; getValue(): string | null }[] }).getProperties()) {
      const name = p.getName()
      usedBuildArgs.add(name)
      const dflt = p.getValue()
      args.set(name, name in buildArgs ? buildArgs[name] : dflt === null ? (fromLine ? globalArgs.get(name) : undefined) : expandVars(dflt, known))
    }
  }
  // What a variable is at this point: an ENV wins over an ARG of the same name.
  const known = (name: string) => envs.get(name) ?? args.get(name)
  const argsOnly = (name: string) => (envs.has(name) ? undefined : args.get(name))

  const steps: PlannedStep[] = [
    { type: 'USER', args: ['root'], line: 0, label: 'USER root (Docker starts as root)' },
    { type: 'WORKDIR', args: ['/'], line: 0, label: 'WORKDIR / (Docker starts in /)' },
  ]
  const notes: string[] = []
  let from = ''
  let fromLine = 0
  let userSet = false
  let workdirSet = false
  let entrypoint: { exec?: string[]; shell?: string } | undefined
  let cmd: { exec?: string[]; shell?: string } | undefined

  for (const i of instructions) {
    const keyword = i.getKeyword()
    const line = lineOf(i)
    const content = i.getArgumentsContent() ?? ''
    const flags = 'getFlags' in i ? (i as ModifiableInstruction).getFlags() : []
    const label = [keyword, ...flags.map((f) => f.toString()), content.replace(/[ \t]+/g, ' ')].join(' ').trim()
    const refuseFlags = (allowed: string[]) => {
      for (const f of flags) if (!allowed.includes(f.getName())) throw new DockerfileError(`${keyword} --${f.getName()} is not supported`, line)
    }
    if (keyword !== 'FROM' && keyword !== 'ARG' && !fromLine) throw new DockerfileError(`${keyword} before FROM: only ARG may come before FROM`, line)
    switch (keyword) {
      case 'ARG':
        declareArg(i)
        break
      case 'FROM': {
        if (flags.length) throw new DockerfileError(`FROM --${flags[0]!.getName()} is not supported: templates are built for this server's platform`, line)
        const words = i.getArguments().map((a) => a.getValue())
        if (words.length !== 1 && !(words.length === 3 && words[1]!.toUpperCase() === 'AS')) throw new DockerfileError('FROM takes an image or template name (and AS NAME)', line)
        from = expandVars(words[0]!, (n) => args.get(n))
        if (!from) throw new DockerfileError(`FROM ${words[0]} names nothing (is a --build-arg missing?)`, line)
        if (from === 'scratch') throw new DockerfileError('FROM scratch is not supported: a template needs a root filesystem (start from base or an image)', line)
        fromLine = line
        // Only what is declared again after FROM is in scope for the steps.
        globalArgs = new Map(args)
        args.clear()
        break
      }
      case 'RUN': {
        refuseFlags([])
        const exec = execForm(content)
        let command = exec ? exec.map(shellQuote).join(' ') : runCommand(content)
        if (!command.trim()) throw new DockerfileError('RUN has no command', line)
        // ARGs are the RUN's environment, as in Docker (and a changed value misses the cache from
        // there); ENV of the same name wins.
        const inScope = [...args].filter(([n, v]) => v !== undefined && !envs.has(n))
        if (inScope.length) command = `${inScope.map(([n, v]) => `export ${n}=${shellQuote(v!)}`).join('; ')}\n${command}`
        steps.push({ type: 'RUN', args: [command], line, label })
        break
      }
      case 'COPY':
      case 'ADD': {
        const add = keyword === 'ADD'
        const from = flags.find((f) => f.getName() === 'from')
        if (from) throw new DockerfileError(`COPY --from=${from.getValue() ?? ''} is not supported: it copies from another stage or image, and a template is one stage`, line)
        refuseFlags(['chown', 'chmod'])
        if ('getHeredocs' in i && (i as unknown as { getHeredocs(): unknown[] }).getHeredocs().length) throw new DockerfileError(`${keyword} <<EOF (a heredoc file) is not supported: write the file with RUN instead`, line)
        const flag = (name: string) => {
          const f = flags.find((x) => x.getName() === name)
          return f ? expandVars(f.getValue() ?? '', known) : ''
        }
        const owner = flag('chown')
        const mode = flag('chmod')
        if (mode && !/^[0-7]{3,4}$/.test(mode)) throw new DockerfileError(`${keyword} --chmod=${mode}: give an octal mode such as 755`, line)
        const words = execForm(content) ?? i.getArguments().map((a) => a.getValue())
        if (words.length < 2) throw new DockerfileError(`${keyword} takes at least one source and a destination`, line)
        // Sources are the context's, so every variable is known here; the destination may name the
        // base's ($HOME/app), which the server expands for the step's user.
        const sources = words.slice(0, -1).map((w) => expandVars(w, known))
        const dest = expandVars(words.at(-1)!, known, true)
        if (sources.length > 1 && !dest.endsWith('/')) throw new DockerfileError(`${keyword} with several sources needs a destination ending in "/"`, line)
        for (const src of sources) {
          if (/^[a-z][a-z0-9+.-]*:\/\//i.test(src) || src.startsWith('git@')) {
            throw new DockerfileError(`${keyword} ${src}: ${add ? 'ADD of a URL' : 'a URL source'} is not supported (the build fetches nothing for you): download it with RUN curl or wget instead`, line)
          }
          if (add && ARCHIVE_EXT.test(src)) {
            throw new DockerfileError(`ADD ${src}: ADD of a local archive (which Docker unpacks) is not supported: COPY it and unpack it with RUN tar -x`, line)
          }
          steps.push({ type: 'COPY', src, dest, owner, mode, add, line, label: sources.length > 1 ? [keyword, ...flags.map((f) => f.toString()), src, dest].join(' ') : label })
        }
        break
      }
      case 'ENV': {
        const props = (i as unknown as { getProperties(): { getName(): string; getValue(): string | null }[] }).getProperties()
        if (!props.length) throw new DockerfileError('ENV takes NAME=VALUE (or NAME VALUE)', line)
        const pairs: string[] = []
        for (const p of props) {
          // ARGs are substituted here; other variables are left for the server, which knows the
          // base's environment (PATH, HOME, …).
          const value = expandVars(p.getValue() ?? '', argsOnly, true)
          pairs.push(p.getName(), value)
          envs.set(p.getName(), expandVars(value, known, true))
        }
        steps.push({ type: 'ENV', args: pairs, line, label })
        break
      }
      case 'WORKDIR': {
        // Variables of the base ($HOME) are left for the server, which expands them for the step's user.
        const dir = expandVars(content.trim(), known, true)
        if (!dir) throw new DockerfileError('WORKDIR takes a path', line)
        steps.push({ type: 'WORKDIR', args: [dir], line, label })
        workdirSet = true
        break
      }
      case 'USER': {
        const user = expandVars(content.trim(), known)
        if (user.includes(':')) throw new DockerfileError(`USER ${user}: a group is not supported; give the user alone`, line)
        if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(user)) throw new DockerfileError(`USER ${user}: give a user name (lowercase letters, digits, "-" and "_"); ids are not supported`, line)
        steps.push({ type: 'USER', args: [user], line, label })
        userSet = true
        break
      }
      case 'CMD':
      case 'ENTRYPOINT': {
        const exec = execForm(content)
        const value = exec ? { exec } : { shell: content }
        if (keyword === 'CMD') cmd = value
        else entrypoint = value
        break
      }
      default:
        if (keyword in IGNORED) {
          notes.push(`line ${line}: ${keyword} ignored (${IGNORED[keyword]})`)
          break
        }
        if (keyword in REFUSED) throw new DockerfileError(`${keyword} is not supported: ${REFUSED[keyword]}`, line)
        throw new DockerfileError(`unknown instruction ${keyword}`, line)
    }
  }
  if (!userSet) steps.push({ type: 'USER', args: ['user'], line: 0, label: "USER user (E2B's default user)" })
  if (!workdirSet) steps.push({ type: 'WORKDIR', args: ['/home/user'], line: 0, label: "WORKDIR /home/user (E2B's default workdir)" })
  return { from, fromLine, steps, startCmd: startCommand(entrypoint, cmd), notes, unusedBuildArgs: Object.keys(buildArgs).filter((k) => !usedBuildArgs.has(k)) }
}

/**
 * Docker's ENTRYPOINT and CMD combined: an exec-form ENTRYPOINT takes CMD's words as arguments; a
 * shell-form one ignores CMD; CMD alone is the command.
 */
function startCommand(entrypoint: { exec?: string[]; shell?: string } | undefined, cmd: { exec?: string[]; shell?: string } | undefined): string | undefined {
  const words = (c: { exec?: string[]; shell?: string }) => (c.exec ? c.exec.map(shellQuote).join(' ') : c.shell!)
  if (entrypoint?.shell !== undefined) return entrypoint.shell || undefined
  if (entrypoint?.exec) return [words(entrypoint), ...(cmd ? [cmd.exec ? words(cmd) : `/bin/sh -c ${shellQuote(cmd.shell!)}`] : [])].join(' ').trim() || undefined
  return cmd ? words(cmd).trim() || undefined : undefined
}
