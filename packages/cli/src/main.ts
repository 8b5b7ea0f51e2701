#!/usr/bin/env node
// sandlot: the command-line interface to a Sandlot server, on the Sandlot SDK. commander reads the
// arguments: help per command, --version, and usage errors that say what is wrong (exit code 2).
import { Command, CommanderError, Option } from 'commander'
import { createRequire } from 'node:module'
import { collect, parsePairs } from './args.js'
import { CliError, explain } from './client.js'
import * as cmd from './commands.js'
import { completion } from './completion.js'
import { cp } from './cp.js'
import { parseDuration } from './duration.js'
import { exec, shell } from './exec.js'
import { logs, metrics, parseLevel } from './observe.js'
import { run as runCode } from './run.js'
import * as template from './template.js'

const { version } = createRequire(import.meta.url)('../package.json') as { version: string }

const NETWORK_HELP = `
Network rules: --no-internet leaves the sandbox only what --allow-out names; --allow-out takes an
IPv4 address, a CIDR or a domain (example.com, *.example.com), always reachable; --deny-out an IPv4
address or CIDR (0.0.0.0/0: everything not allowed). Domains need --no-internet or --deny-out 0.0.0.0/0.`

const ENV_HELP = `
Environment: SANDLOT_API_URL (default http://127.0.0.1:3000), SANDLOT_API_KEY (default: read
$SANDLOT_HOME/api-key, SANDLOT_HOME defaulting to /var/lib/sandlot), SANDLOT_RETRY_TIMEOUT_MS (how
long reads retry while the server restarts; default 2000 here), HTTPS_PROXY/HTTP_PROXY/NO_PROXY,
NODE_EXTRA_CA_CERTS (e.g. $SANDLOT_HOME/tls/ca.crt for https://).
The server is another program: sandlotd (the server package's command; npm start in a checkout).`

interface NetworkFlags {
  internet?: boolean
  allowOut?: string[]
  denyOut?: string[]
}

/** The network options given on the command line, or undefined when none is. */
function networkOf(o: NetworkFlags): cmd.NetworkBody | undefined {
  const body: cmd.NetworkBody = {
    ...(o.internet === false && { allowInternetAccess: false }),
    ...(o.allowOut && { allowOut: o.allowOut }),
    ...(o.denyOut && { denyOut: o.denyOut }),
  }
  return Object.keys(body).length ? body : undefined
}

const withNetworkOptions = (c: Command) =>
  c
    .option('--no-internet', 'nothing outside is reachable but what --allow-out names')
    .option('--allow-out <dest>', 'always reachable: an IPv4 address, a CIDR or a domain (repeatable)', collect)
    .option('--deny-out <cidr>', 'not reachable: an IPv4 address or CIDR (repeatable)', collect)

const userOption = () => new Option('-u, --user <name>', 'the Linux user in the sandbox').default('user')

/** The exit code a command's promise resolves to; commands that print only return 0. */
let exitCode = 0

function program(): Command {
  const p = new Command('sandlot')
    .description('Create and use Sandlot sandboxes: isolated Linux machines on a Sandlot server.')
    .version(version, '-v, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .addHelpText('after', NETWORK_HELP + '\n' + ENV_HELP)
    .showHelpAfterError('(sandlot --help lists the commands; sandlot COMMAND --help tells more)')
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`sandlot: ${text.replace(/^error: /, '')}`) })

  p.command('server')
    .description('run the Sandlot server in the foreground (that is sandlotd, the server package)')
    .action(async () => {
      exitCode = await runServer()
    })

  withNetworkOptions(
    p
      .command('create')
      .description('create a sandbox; prints its id on the last line. Nothing holds it: it lives --keep-alive (default: the server\'s limit, 1h unless configured)')
      .option('-t, --template <name>', 'the template', undefined)
      .option('-m, --metadata <key=value>', 'a label (repeatable)', collect, [])
      .option('--keep-alive <duration>', 'how long it lives: 90s, 15m, 1h, 1h30m', parseDuration),
  )
    .option('--json', 'print the sandbox as JSON')
    .action(async (o: NetworkFlags & { template?: string; metadata: string[]; keepAlive?: number; json?: boolean }) => {
      await cmd.create({ template: o.template, metadata: parsePairs(o.metadata, '--metadata'), keepAliveMs: o.keepAlive, network: networkOf(o), json: o.json })
    })

  withNetworkOptions(
    p
      .command('network')
      .description("show a sandbox's network rules, or replace them (what is not given is cleared)")
      .argument('<id>', 'the sandbox')
      .option('--clear', 'lift every rule'),
  )
    .option('--json', 'print the rules as JSON')
    .action(async (id: string, o: NetworkFlags & { clear?: boolean; json?: boolean }) => {
      const network = networkOf(o)
      if (o.clear && network) throw new CliError('--clear lifts every rule: give it alone, or give the rules that replace the current ones', 2)
      await cmd.network(id, o.clear ? {} : network, !!o.json)
    })

  p.command('ls')
    .alias('list')
    .description('list sandboxes, running and paused')
    .option('--json', 'print them as JSON')
    .action(async (o: { json?: boolean }) => cmd.ls(!!o.json))

  p.command('keep-alive')
    .description('keep a sandbox alive DURATION from now (e.g. 90s, 15m, 1h; 0 clears the deadline)')
    .argument('<id>', 'the sandbox')
    .argument('<duration>', 'how long', parseDuration)
    .option('--then-pause', 'pause it at the deadline instead of destroying it')
    .option('--files-only', 'with --then-pause: keep its files alone (it boots again on resume)')
    .option('--json', 'print the sandbox as JSON')
    .action(async (id: string, ms: number, o: { json?: boolean; thenPause?: boolean; filesOnly?: boolean }) => {
      if (o.filesOnly && !o.thenPause) throw new CliError('--files-only goes with --then-pause', 2)
      await cmd.keepAlive(id, ms, !!o.json, o.thenPause ? { keepMemory: !o.filesOnly } : undefined)
    })

  p.command('pause')
    .description('pause a sandbox: its processes stopped where they are (CPU freed), resumed as they were by "sandlot resume"')
    .argument('<id>', 'the sandbox')
    .option('--files-only', 'end its processes and free its memory, keeping its files (it boots again on resume)')
    .option('--json', 'print the sandbox as JSON')
    .action(async (id: string, o: { filesOnly?: boolean; json?: boolean }) => cmd.pause(id, !o.filesOnly, !!o.json))

  p.command('resume')
    .description('resume a paused sandbox')
    .argument('<id>', 'the sandbox')
    .option('-k, --keep-alive <duration>', 'how long it then lives (default: the server\'s limit)', parseDuration)
    .option('--json', 'print the sandbox as JSON')
    .action(async (id: string, o: { keepAlive?: number; json?: boolean }) => cmd.resume(id, o.keepAlive, !!o.json))

  p.command('url')
    .description('print the URL of a server listening on PORT inside a sandbox (HTTP and WebSocket)')
    .argument('<id>', 'the sandbox')
    .argument('<port>', 'a port from 1 to 65535')
    .option('--https', 'an https:// URL (default: the scheme of SANDLOT_API_URL)')
    .option('--json', 'print { url, trafficAccessToken } as JSON')
    .action(async (id: string, port: string, o: { https?: boolean; json?: boolean }) => cmd.url(id, port, !!o.https, !!o.json))

  p.command('exec')
    .description('run a command in a sandbox (no shell: sandlot exec ID -- sh -c "…" for one); exits with its exit code. Piped stdin is passed on')
    .argument('<id>', 'the sandbox')
    .argument('<command...>', 'the program and its arguments (after --)')
    .addOption(userOption())
    .option('-e, --env <name=value>', 'an environment variable (repeatable; a bare NAME passes on this shell\'s)', collect, [])
    .option('-w, --cwd <dir>', 'the working directory (default: the user\'s home)')
    .option('-i, --interactive', 'pass on stdin from a terminal too')
    .passThroughOptions()
    .action(async (id: string, argv: string[], o: { user: string; env: string[]; cwd?: string; interactive?: boolean }) => {
      // Options after the id are the command's (passThroughOptions), and so is a "--" there.
      exitCode = await exec(id, argv[0] === '--' ? argv.slice(1) : argv, o)
    })

  p.command('shell')
    .description('open an interactive terminal in a sandbox')
    .argument('<id>', 'the sandbox')
    .addOption(userOption())
    .action(async (id: string, o: { user: string }) => {
      exitCode = await shell(id, o)
    })

  p.command('cp')
    .description('copy files or directories into a sandbox or out of one, as docker cp: sandlot cp ./src ID:/path, sandlot cp ID:/path ./dest')
    .argument('<src>', 'LOCAL or ID:PATH')
    .argument('<dest>', 'ID:PATH or LOCAL')
    .addOption(userOption())
    .option('--json', 'print { from, to, type, files, bytes } as JSON')
    .action(async (src: string, dest: string, o: { user: string; json?: boolean }) => cp(src, dest, { user: o.user, json: !!o.json }))

  p.command('run')
    .description('run code in a code interpreter sandbox (template code-interpreter-v1): Python unless --language; its output, then the value of the last expression; exits 1 if the code raised an error')
    .argument('<id>', 'the sandbox')
    .argument('[file]', 'a file of code, or - for stdin (the default when stdin is piped)')
    .option('-l, --language <language>', 'python (default), javascript, typescript or bash')
    .option('-t, --timeout <duration>', 'how long the code may run before it is interrupted (e.g. 30s, 5m; default 60s)')
    .option('--json', 'print { text, logs, results, error, executionCount } as JSON')
    .action(async (id: string, file: string | undefined, o: { language?: string; timeout?: string; json?: boolean }) => {
      const timeout = o.timeout === undefined ? undefined : parseDuration(o.timeout)
      exitCode = await runCode(id, file, { language: o.language, timeout, json: !!o.json })
    })

  p.command('snapshot')
    .description("take a snapshot of a sandbox's files (it runs on) as a template: prints its name, for sandlot create -t NAME")
    .argument('<id>', 'the sandbox')
    .option('-n, --name <name>', 'the template to add it to (default: a template of its own)')
    .option('--json', 'print the snapshot as JSON')
    .action(async (id: string, o: { name?: string; json?: boolean }) => cmd.snapshot(id, o.name, !!o.json))

  p.command('fork')
    .description("copy a running sandbox (its files, env vars, metadata and network rules) into new sandboxes; prints their ids")
    .argument('<id>', 'the sandbox')
    .option('-c, --count <n>', 'how many (1 to 100)', (v: string) => {
      const n = Number(v)
      if (!Number.isInteger(n) || n < 1 || n > 100) throw new CliError(`--count takes a whole number from 1 to 100, not "${v}"`, 2)
      return n
    }, 1)
    .option('-k, --keep-alive <duration>', "how long each lives (default: the server's limit)", parseDuration)
    .option('--json', 'print them as JSON')
    .action(async (id: string, o: { count: number; keepAlive?: number; json?: boolean }) => {
      exitCode = await cmd.fork(id, o.count, o.keepAlive, !!o.json)
    })

  p.command('metrics')
    .description("show a sandbox's CPU, memory and disk: the latest figures and a chart of the samples (also of a sandbox that ended, while kept)")
    .argument('<id>', 'the sandbox')
    .option('--since <duration>', 'only samples this recent: 90s, 15m, 1h', parseDuration)
    .option('--json', 'print the samples as JSON')
    .action(async (id: string, o: { since?: number; json?: boolean }) => metrics(id, { sinceMs: o.since, json: !!o.json }))

  p.command('logs')
    .description("print a sandbox's log: its lifecycle events, its template's start command output and errors of its agent")
    .argument('<id>', 'the sandbox')
    .option('-f, --follow', 'keep printing new entries until the sandbox has ended')
    .option('--level <level>', 'only this level and above: debug, info, warn, error')
    .option('--json', 'print one JSON entry per line')
    .action(async (id: string, o: { follow?: boolean; level?: string; json?: boolean }) => logs(id, { follow: !!o.follow, json: !!o.json, level: parseLevel(o.level) }))

  p.command('kill')
    .description('destroy a sandbox')
    .argument('<id>', 'the sandbox')
    .option('--json', 'print { id, killed } as JSON')
    .action(async (id: string, o: { json?: boolean }) => cmd.kill(id, !!o.json))

  templateCommands(p)

  p.command('completion')
    .description('print a bash completion script: eval "$(sandlot completion)" (or save it to /etc/bash_completion.d/sandlot)')
    .action(() => console.log(completion(p)))
  return p
}

function templateCommands(p: Command): void {
  const t = p.command('template').alias('templates').description('build templates from Dockerfiles and manage them')
  t.command('build')
    .description('build template NAME ("name", its tag "default", or "name:tag"; --tag adds more) from a Dockerfile (default CONTEXT/Dockerfile)')
    .argument('<name>', 'the template')
    .argument('[context]', 'the build context', '.')
    .option('-f, --file <dockerfile>', 'the Dockerfile')
    .option('-t, --tag <tag>', 'one more tag (repeatable)', collect, [])
    .option('--build-arg <name=value>', 'an ARG (repeatable)', collect, [])
    .option('--no-cache', 'rebuild every step')
    .option('--cpu <n>', 'CPUs', template.positiveInt('--cpu'))
    .option('--memory <mb>', 'memory in MiB', template.positiveInt('--memory'))
    .option('--start-cmd <cmd>', 'the start command (default: CMD/ENTRYPOINT)')
    .option('--ready-cmd <cmd>', 'the ready check (default "sleep 20")')
    .option('--registry-user <user>', 'for FROM an image in a private registry (password in SANDLOT_REGISTRY_PASSWORD)')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', template.DOCKERFILE_HELP)
    .action(async (name: string, context: string, o: { file?: string; tag: string[]; buildArg: string[]; cache: boolean; cpu?: number; memory?: number; startCmd?: string; readyCmd?: string; registryUser?: string; json?: boolean }) => {
      exitCode = await template.build({
        name,
        context,
        file: o.file,
        tags: o.tag,
        buildArgs: parsePairs(o.buildArg, '--build-arg', { fromEnv: true }),
        noCache: !o.cache,
        cpuCount: o.cpu,
        memoryMB: o.memory,
        startCmd: o.startCmd,
        readyCmd: o.readyCmd,
        registryUser: o.registryUser,
        json: !!o.json,
      })
    })
  t.command('ls')
    .alias('list')
    .description('list templates: name, tags, created')
    .option('--json', 'print them as JSON')
    .action(async (o: { json?: boolean }) => template.ls(!!o.json))
  t.command('rm')
    .alias('delete')
    .description('delete a template (refused while a sandbox uses it)')
    .argument('<name>', 'the template')
    .option('--json', 'print { name, removed } as JSON')
    .action(async (name: string, o: { json?: boolean }) => template.remove(name, !!o.json))
  t.command('tag')
    .description('give the build NAME:TAG (default: NAME\'s "default") more tags')
    .argument('<ref>', 'NAME or NAME:TAG')
    .argument('<tags...>', 'the new tags')
    .option('--json', 'print the result as JSON')
    .action(async (ref: string, tags: string[], o: { json?: boolean }) => template.tag(ref, tags, !!o.json))
}

/**
 * `sandlot server`: the server package's own entry (sandlotd), where it is installed beside the CLI
 * (the monorepo). The CLI does not depend on it: elsewhere this says how to start it.
 */
async function runServer(): Promise<number> {
  const entry = '@sandlot/server/main'
  try {
    await import(entry)
  } catch (err) {
    if ((err as { code?: string }).code !== 'ERR_MODULE_NOT_FOUND') throw err
    throw new CliError('The Sandlot server is not installed with this CLI. Run it with "sandlotd" (install the server package: npm install -g ./packages/server from a checkout), or "npm start" in a checkout.')
  }
  return new Promise<number>(() => {})
}

// Exit explicitly: a terminal left in raw mode or a pooled connection must not keep the CLI alive.
// (stdout and stderr are synchronous on Linux for files, pipes and TTYs, so nothing is lost.)
program()
  .parseAsync(process.argv)
  .then(
    () => process.exit(exitCode),
    (err: unknown) => {
      if (err instanceof CommanderError) {
        // Help and --version end with "errors" too; usage errors were printed already.
        process.exit(/^commander\.(help|helpDisplayed|version)$/.test(err.code) && err.exitCode === 0 ? 0 : 2)
      }
      const { message, exitCode: code } = explain(err)
      console.error(`sandlot: ${message}`)
      process.exit(code)
    },
  )
