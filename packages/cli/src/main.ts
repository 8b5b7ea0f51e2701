#!/usr/bin/env node
// sandlot: the command-line interface to a Sandlot server.
import { parseArgs } from 'node:util'
import { CliError } from './api.js'
import * as cmd from './commands.js'
import { parseDuration } from './duration.js'
import { templateMain } from './template.js'

const USAGE = `Usage: sandlot <command>

  server                                   run the Sandlot server in the foreground
  create [--template NAME] [--metadata k=v]… [--keep-alive DURATION]
         [--no-internet] [--allow-out DEST]… [--deny-out CIDR]…
                                           create a sandbox; prints its id on the last line. The CLI
                                           holds no connection, so the sandbox lives DURATION
                                           (default: the server's limit, 1h unless configured)
  network <id> [--no-internet] [--allow-out DEST]… [--deny-out CIDR]… | --clear
                                           replace a sandbox's network rules (what is not given is
                                           cleared; --clear lifts them all); without options, show them
  ls [--json]                              list running sandboxes
  keep-alive <id> DURATION                 keep a sandbox alive DURATION from now (e.g. 90s, 15m, 1h)
  url [--https] <id> <port>                print the URL of a server listening on <port> inside a
                                           sandbox (HTTP and WebSocket; http:// unless --https or
                                           SANDLOT_API_URL is https://)
  exec [--user NAME] <id> -- <cmd> [args…]  run a command; exits with its exit code
  shell [--user NAME] <id>                 open an interactive terminal in a sandbox
  kill <id>                                destroy a sandbox
  template build NAME [-f Dockerfile] [CONTEXT] | ls | rm NAME | tag NAME[:TAG] NEWTAG…
                                           build templates from Dockerfiles and manage them
                                           (sandlot template --help)

Network rules: --no-internet leaves the sandbox only what --allow-out names; --allow-out takes an
IPv4 address, a CIDR or a domain (example.com, *.example.com), always reachable; --deny-out an IPv4
address or CIDR (0.0.0.0/0: everything not allowed). Domains need --no-internet or --deny-out 0.0.0.0/0.

Environment: SANDLOT_API_URL (default http://127.0.0.1:3000), SANDLOT_API_KEY (default: read
$SANDLOT_HOME/api-key, SANDLOT_HOME defaulting to /var/lib/sandlot).`

function parseMetadata(pairs: string[] = []): Record<string, string> {
  const out: Record<string, string> = {}
  for (const p of pairs) {
    const i = p.indexOf('=')
    if (i <= 0) throw new CliError(`--metadata takes KEY=VALUE, got "${p}"`)
    out[p.slice(0, i)] = p.slice(i + 1)
  }
  return out
}

/** The network options given on the command line, or undefined when none is. */
function networkOf(values: { 'no-internet'?: boolean; 'allow-out'?: string[]; 'deny-out'?: string[] }): cmd.NetworkBody | undefined {
  const body: cmd.NetworkBody = {
    ...(values['no-internet'] && { allowInternetAccess: false }),
    ...(values['allow-out'] && { allowOut: values['allow-out'] }),
    ...(values['deny-out'] && { denyOut: values['deny-out'] }),
  }
  return Object.keys(body).length ? body : undefined
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  // Its own options and usage (template.ts).
  if (command === 'template' || command === 'templates') return templateMain(rest)
  const dashdash = rest.indexOf('--')
  const own = dashdash >= 0 ? rest.slice(0, dashdash) : rest
  const after = dashdash >= 0 ? rest.slice(dashdash + 1) : []
  const { values, positionals } = parseArgs({
    args: own,
    allowPositionals: true,
    options: {
      template: { type: 'string', short: 't' },
      metadata: { type: 'string', short: 'm', multiple: true },
      json: { type: 'boolean' },
      'keep-alive': { type: 'string' },
      'no-internet': { type: 'boolean' },
      'allow-out': { type: 'string', multiple: true },
      'deny-out': { type: 'string', multiple: true },
      clear: { type: 'boolean' },
      user: { type: 'string', short: 'u', default: 'user' },
      https: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  const id = () => {
    if (!positionals[0]) throw new CliError(`Usage: sandlot ${command} <sandbox-id>`)
    return positionals[0]
  }
  if (values.help || !command || command === 'help' || command === '--help' || command === '-h') {
    console.log(USAGE)
    return command ? 0 : 2
  }
  switch (command) {
    case 'server': {
      await import('@sandlot/server/main')
      return new Promise<number>(() => {})
    }
    case 'create':
      if (values.clear) throw new CliError('--clear is an option of "sandlot network"', 2)
      await cmd.create(values.template, parseMetadata(values.metadata), values['keep-alive'] === undefined ? undefined : parseDuration(values['keep-alive']), networkOf(values))
      return 0
    case 'network': {
      const network = networkOf(values)
      if (values.clear && network) throw new CliError('--clear lifts every rule: give it alone, or give the rules that replace the current ones', 2)
      await cmd.network(id(), values.clear ? {} : network)
      return 0
    }
    case 'keep-alive': {
      if (!positionals[1]) throw new CliError('Usage: sandlot keep-alive <sandbox-id> DURATION (e.g. 90s, 15m, 1h)', 2)
      await cmd.keepAlive(id(), parseDuration(positionals[1]))
      return 0
    }
    case 'ls':
    case 'list':
      await cmd.ls(!!values.json)
      return 0
    case 'url':
      await cmd.url(id(), positionals[1], !!values.https)
      return 0
    case 'exec':
      return cmd.exec(id(), after.length ? after : positionals.slice(1), values.user!)
    case 'shell':
      return cmd.shell(id(), values.user!)
    case 'kill':
      await cmd.kill(id())
      return 0
    default:
      throw new CliError(`Unknown command "${command}".\n\n${USAGE}`, 2)
  }
}

// Exit explicitly: a terminal left in raw mode or a pooled connection must not keep the CLI alive.
// (stdout and stderr are synchronous on Linux for files, pipes and TTYs, so nothing is lost.)
main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`sandlot: ${err instanceof CliError || err.name === 'TypeError' ? err.message : err.stack}`)
    process.exit(err instanceof CliError ? err.exitCode : 1)
  },
)
