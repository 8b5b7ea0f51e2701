// `sandlot exec` and `sandlot shell`: a command with the CLI's stdin, stdout and stderr as raw
// bytes (the SDK's SandboxConnection.exec), and an interactive terminal.
import { once } from 'node:events'
import type { Writable } from 'node:stream'
import { parsePairs } from './args.js'
import { CliError, client } from './client.js'

export interface ExecFlags {
  user: string
  env: string[]
  cwd?: string
  interactive?: boolean
}

/** Writes with backpressure: resolves once the stream takes more. */
const writeTo = (out: Writable) => (chunk: Uint8Array) => {
  if (!out.write(chunk)) return once(out, 'drain').then(() => {})
}

export async function exec(id: string, argv: string[], flags: ExecFlags): Promise<number> {
  if (argv.length === 0) throw new CliError('Usage: sandlot exec [options] <id> -- <command> [args…]', 2)
  const envs = parsePairs(flags.env, '--env', { fromEnv: true, variableNames: true })
  const sandbox = await client().connect(id)
  // Stdin is passed on when it is a pipe or a file (echo hi | sandlot exec ID -- cat), and from a
  // terminal with -i; otherwise the command's stdin is empty.
  const forward = flags.interactive || !process.stdin.isTTY
  const end = await sandbox.exec(argv, {
    user: flags.user,
    envs,
    cwd: flags.cwd,
    ...(forward && { stdin: process.stdin }),
    onStdout: writeTo(process.stdout),
    onStderr: writeTo(process.stderr),
  })
  if (end.error) process.stderr.write(`${end.error}\n`)
  return end.exitCode
}

export async function shell(id: string, flags: { user: string }): Promise<number> {
  const sandbox = await client().connect(id)
  const size = () => ({ cols: process.stdout.columns || 80, rows: process.stdout.rows || 24 })
  const stdin = process.stdin
  let onResize: (() => void) | undefined
  try {
    if (stdin.isTTY) stdin.setRawMode(true)
    const end = await sandbox.exec(['/bin/bash', '-i', '-l'], {
      user: flags.user,
      envs: { TERM: process.env.TERM || 'xterm-256color', LANG: 'C.UTF-8' },
      pty: size(),
      stdin,
      onStdout: writeTo(process.stdout),
      onStart: (proc) => {
        onResize = () => void proc.resize(size()).catch(() => {})
        process.stdout.on('resize', onResize)
      },
    })
    return end.exitCode
  } finally {
    if (onResize) process.stdout.off('resize', onResize)
    if (stdin.isTTY) stdin.setRawMode(false)
  }
}
