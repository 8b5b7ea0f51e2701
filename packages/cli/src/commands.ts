// The CLI's sandbox commands: create, ls, keep-alive, network, url, exec, shell, kill.
import { Code, ConnectError } from '@connectrpc/connect'
import type { SandboxView } from '@sandlot/server'
import { CliError, clientConfig, request } from './api.js'
import { formatDuration } from './duration.js'
import { processClient } from './envd.js'

const whenEnds = (s: SandboxView) =>
  s.endAt ? `it is kept alive until ${s.endAt}; extend it with "sandlot keep-alive ${s.id} DURATION"` : 'it has no deadline'

/** Network settings as the API takes them (docs/api.md). */
export interface NetworkBody {
  allowInternetAccess?: boolean
  allowOut?: string[]
  denyOut?: string[]
}

/** One line per setting, for people. */
function describeNetwork(n: SandboxView['network']): string {
  const lines = [
    `internet: ${n.allowInternetAccess === false ? 'off (only allowed destinations are reachable)' : n.denyOut.length ? 'on, except denied destinations' : 'on'}`,
    `allowed out: ${n.allowOut.length ? n.allowOut.join(' ') : '-'}`,
    `denied out:  ${n.denyOut.length ? n.denyOut.join(' ') : '-'}`,
  ]
  return lines.map((l) => `  ${l}`).join('\n')
}

/**
 * The CLI exits right after creating, so nothing holds the sandbox: it lives for its keepAlive
 * (the server's limit unless --keep-alive says otherwise).
 */
export async function create(template: string | undefined, metadata: Record<string, string>, keepAliveMs: number | undefined, network?: NetworkBody): Promise<void> {
  const c = clientConfig()
  const s = await request<SandboxView>(c, 'POST', '/api/v1/sandboxes', { template, metadata, keepAliveMs, network })
  const kept = s.endAt ? Math.round((Date.parse(s.endAt) - Date.parse(s.startedAt)) / 1000) * 1000 : 0
  const span = kept > 0 ? ` for ${formatDuration(kept)}` : ''
  console.error(`Created sandbox from template "${s.template}"${span}: ${whenEnds(s)}.`)
  if (network) console.error(`Network:\n${describeNetwork(s.network)}`)
  console.log(s.id)
}

/** Replaces a sandbox's network settings (undefined: only shows them). */
export async function network(id: string, body: NetworkBody | undefined): Promise<void> {
  const route = `/api/v1/sandboxes/${encodeURIComponent(id)}`
  const s = body ? await request<SandboxView>(clientConfig(), 'PUT', `${route}/network`, body) : await request<SandboxView>(clientConfig(), 'GET', route)
  console.log(`Sandbox ${id}${body ? ' now' : ''}:\n${describeNetwork(s.network)}`)
}

export async function keepAlive(id: string, ms: number): Promise<void> {
  const s = await request<SandboxView>(clientConfig(), 'POST', `/api/v1/sandboxes/${encodeURIComponent(id)}/keep-alive`, { ms })
  console.error(`Sandbox ${id}: ${whenEnds(s)}.`)
}

export async function ls(json: boolean): Promise<void> {
  const list = await request<SandboxView[]>(clientConfig(), 'GET', '/api/v1/sandboxes')
  if (json) return console.log(JSON.stringify(list, null, 2))
  // ENDS: when the sandbox is destroyed if no client holds it then.
  const rows = [['ID', 'TEMPLATE', 'STARTED', 'HOLDS', 'ENDS', 'METADATA']]
  for (const s of list) {
    const meta = Object.entries(s.metadata).map(([k, v]) => `${k}=${v}`).join(',')
    rows.push([s.id, s.template, s.startedAt, String(s.holds), s.endAt ?? (s.holds ? 'when released' : '-'), meta])
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  for (const r of rows) console.log(r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd())
}

/**
 * The URL of a port preview: `<scheme>://<port>-<id>.<domain>`. The scheme is the one the CLI
 * reaches the server with (SANDLOT_API_URL), unless --https asks for https (Sandlot serves both on
 * its port; https needs its CA trusted, see the README).
 */
export async function url(id: string, portText: string | undefined, https: boolean): Promise<void> {
  const port = Number(portText)
  if (!portText || !/^\d+$/.test(portText) || port < 1 || port > 65535) throw new CliError('Usage: sandlot url <sandbox-id> <port> (a port number from 1 to 65535)', 2)
  const c = clientConfig()
  const s = await request<SandboxView>(c, 'GET', `/api/v1/sandboxes/${encodeURIComponent(id)}`)
  if (!s.domain) throw new CliError('The server does not say under which domain its sandboxes are reached: it predates port previews.')
  const scheme = https || c.apiUrl.startsWith('https:') ? 'https' : 'http'
  if (s.trafficAccessToken) console.error(`Sandbox ${id} is private: send the header "e2b-traffic-access-token: ${s.trafficAccessToken}" with each request.`)
  console.log(`${scheme}://${port}-${s.id}.${s.domain}`)
}

export async function kill(id: string): Promise<void> {
  await request(clientConfig(), 'DELETE', `/api/v1/sandboxes/${encodeURIComponent(id)}`)
  console.error(`Killed sandbox ${id}.`)
}

function envdError(err: unknown, id: string): never {
  if (err instanceof ConnectError) {
    if (err.code === Code.Unavailable || err.code === Code.Unimplemented) throw new CliError(`Sandbox ${id} is not running (or does not exist).`)
    if (err.code === Code.Unauthenticated) throw new CliError('The server refused the API key: check SANDLOT_API_KEY.')
    throw new CliError(`${err.rawMessage} (${Code[err.code]})`)
  }
  if (err instanceof CliError) throw err
  throw new CliError(`Cannot reach the Sandlot server: ${(err as Error).message}`)
}

/** Exit code of a finished process, shell-style: 128 + signal for a signalled one. */
function exitCodeOf(end: { exitCode: number; status: string }): number {
  if (end.exitCode >= 0) return end.exitCode
  return /killed/.test(end.status) ? 137 : /terminated/.test(end.status) ? 143 : 1
}

export async function exec(id: string, argv: string[], user: string): Promise<number> {
  if (argv.length === 0) throw new CliError('Usage: sandlot exec <id> -- <command> [args…]')
  const c = clientConfig()
  const client = processClient(c, id)
  const stream = client.start(
    { process: { cmd: argv[0]!, args: argv.slice(1), envs: {} }, stdin: false },
    { headers: { authorization: `Basic ${Buffer.from(`${user}:`).toString('base64')}` } },
  )
  try {
    for await (const { event } of stream) {
      const e = event?.event
      if (e?.case === 'data') {
        const d = e.value.output
        if (d.case === 'stdout') process.stdout.write(d.value)
        else if (d.case === 'stderr') process.stderr.write(d.value)
      } else if (e?.case === 'end') {
        // envd's error repeats the status for a plain non-zero exit; only other errors are news.
        if (e.value.error && e.value.error !== e.value.status) process.stderr.write(`${e.value.error}\n`)
        return exitCodeOf(e.value)
      }
    }
  } catch (err) {
    envdError(err, id)
  }
  throw new CliError('The command stream ended without an exit status.')
}

export async function shell(id: string, user: string): Promise<number> {
  const c = clientConfig()
  const client = processClient(c, id)
  const size = () => ({ cols: process.stdout.columns || 80, rows: process.stdout.rows || 24 })
  const stream = client.start(
    { process: { cmd: '/bin/bash', args: ['-i', '-l'], envs: { TERM: process.env.TERM || 'xterm-256color', LANG: 'C.UTF-8' } }, pty: { size: size() } },
    { headers: { authorization: `Basic ${Buffer.from(`${user}:`).toString('base64')}` } },
  )
  let pid = 0
  const stdin = process.stdin
  const onInput = (chunk: Buffer) => {
    if (pid) client.sendInput({ process: { selector: { case: 'pid', value: pid } }, input: { input: { case: 'pty', value: chunk } } }).catch(() => {})
  }
  const onResize = () => {
    if (pid) client.update({ process: { selector: { case: 'pid', value: pid } }, pty: { size: size() } }).catch(() => {})
  }
  try {
    for await (const { event } of stream) {
      const e = event?.event
      if (e?.case === 'start') {
        pid = e.value.pid
        if (stdin.isTTY) stdin.setRawMode(true)
        stdin.on('data', onInput)
        stdin.resume()
        process.stdout.on('resize', onResize)
      } else if (e?.case === 'data' && e.value.output.case === 'pty') {
        process.stdout.write(e.value.output.value)
      } else if (e?.case === 'end') {
        return exitCodeOf(e.value)
      }
    }
  } catch (err) {
    envdError(err, id)
  } finally {
    stdin.off('data', onInput)
    process.stdout.off('resize', onResize)
    if (stdin.isTTY) stdin.setRawMode(false)
    stdin.pause()
  }
  throw new CliError('The terminal ended without an exit status.')
}


