// Shared test plumbing: the test server's URL and key, REST calls, and commands and files in a
// sandbox through the real data plane (Connect over the server's port).
import { createClient, type Interceptor } from '@connectrpc/connect'
import { createConnectTransport } from '@connectrpc/connect-node'
import { Process } from '@sandlot/envd-proto'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import type http from 'node:http'
import net from 'node:net'
import path from 'node:path'

// Ports: the suite's server is on SANDLOT_TEST_PORT (P, 3190 by default); files that need a server or
// listener of their own take an offset no other file takes, since any two files may run side by side:
// +1 restart, +2 runtime, +3 template, +4 idmap, +5 disk, +6 network, +7 templates (+8 its registry,
// +16 its password-protected one, +58 one that is down), +9 home-lock, +10 hostile-agent, +11
// sdk-network, +12 pool, +13 faults, +14 soak, +15 template-limits, +17 security, +22 server-log, +23
// cli-install, +24 readme, +25/+26 escape-network's listeners, +400 oci-image (+401, +402, +409).
export const apiUrl = process.env.SANDLOT_API_URL ?? 'http://127.0.0.1:3190'
export const home = process.env.SANDLOT_HOME ?? path.resolve('.sandlot-test/home')
export const apiKey = () => fs.readFileSync(path.join(home, 'api-key'), 'utf8').trim()

export interface ApiResult<T = any> {
  status: number
  json: T
  headers: Headers
}

/** The REST of the server at `url()` with the key `key()` (read at each call: a test's own daemon may restart). */
export function apiAt(url: () => string, key: () => string) {
  return async <T = any>(method: string, route: string, body?: unknown, headers: Record<string, string> = {}): Promise<ApiResult<T>> => {
    const res = await fetch(`${url()}${route}`, {
      method,
      headers: { 'x-api-key': key(), ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    })
    const text = await res.text()
    return { status: res.status, json: text ? JSON.parse(text) : undefined, headers: res.headers }
  }
}

/** The suite's server. */
export const api = apiAt(() => apiUrl, apiKey)

export interface Sandbox {
  id: string
  template: string
  metadata: Record<string, string>
}

export async function createSandbox(body: Record<string, unknown> = {}): Promise<Sandbox> {
  const r = await api<Sandbox>('POST', '/api/v1/sandboxes', body)
  if (r.status !== 201) throw new Error(`create failed: ${r.status} ${JSON.stringify(r.json)}`)
  return r.json
}

export async function killSandbox(id: string): Promise<void> {
  await api('DELETE', `/api/v1/sandboxes/${id}`)
}

/** Kills every sandbox a server of a test's own has: they would outlive it. */
export async function killAllOn(url: string, key: string): Promise<void> {
  const headers = { 'x-api-key': key }
  const list = (await (await fetch(`${url}/api/v1/sandboxes`, { headers })).json()) as { id: string }[]
  for (const s of list) await fetch(`${url}/api/v1/sandboxes/${s.id}`, { method: 'DELETE', headers })
}

function processClient(id: string, url = apiUrl, key = apiKey()) {
  const headers: Interceptor = (next) => (req) => {
    req.header.set('e2b-sandbox-id', id)
    req.header.set('x-api-key', key)
    return next(req)
  }
  return createClient(Process, createConnectTransport({ baseUrl: url, httpVersion: '1.1', interceptors: [headers] }))
}

export interface RunResult {
  stdout: string
  stderr: string
  exitCode: number
  status: string
}

/** Runs `bash -c cmd` in the sandbox and collects its output. */
export async function run(id: string, cmd: string, opts: { user?: string; timeoutMs?: number; url?: string; key?: string } = {}): Promise<RunResult> {
  const client = processClient(id, opts.url, opts.key)
  const out = { stdout: '', stderr: '', exitCode: NaN, status: '' }
  const headers: Record<string, string> = { authorization: `Basic ${Buffer.from(`${opts.user ?? 'user'}:`).toString('base64')}` }
  if (opts.timeoutMs) headers['connect-timeout-ms'] = String(opts.timeoutMs)
  for await (const { event } of client.start({ process: { cmd: '/bin/bash', args: ['-c', cmd], envs: {} }, stdin: false }, { headers })) {
    const e = event?.event
    if (e?.case === 'data') {
      const d = e.value.output
      if (d.case === 'stdout') out.stdout += Buffer.from(d.value).toString()
      if (d.case === 'stderr') out.stderr += Buffer.from(d.value).toString()
    } else if (e?.case === 'end') {
      out.exitCode = e.value.exitCode
      out.status = e.value.status
    }
  }
  return out
}

/** A terminal as E2B's SDK opens one (`/bin/bash -i -l`), fed `input`; what it printed and its exit code. */
export async function terminal(id: string, input: string, opts: { user?: string; url?: string; key?: string } = {}): Promise<{ output: string; exitCode: number }> {
  const c = processClient(id, opts.url, opts.key)
  const headers = { authorization: `Basic ${Buffer.from(`${opts.user ?? 'user'}:`).toString('base64')}` }
  let output = ''
  let exitCode = NaN
  const stream = c.start({ process: { cmd: '/bin/bash', args: ['-i', '-l'], envs: {} }, pty: { size: { cols: 200, rows: 40 } } }, { timeoutMs: 20_000, headers })
  for await (const { event } of stream) {
    const e = event?.event
    if (e?.case === 'start') await c.sendInput({ process: { selector: { case: 'pid', value: e.value.pid } }, input: { input: { case: 'pty', value: Buffer.from(input) } } }, { headers })
    if (e?.case === 'data' && e.value.output.case === 'pty') output += Buffer.from(e.value.output.value).toString()
    if (e?.case === 'end') exitCode = e.value.exitCode
  }
  return { output: output.replace(/\r/g, ''), exitCode }
}

/** Starts a command and returns once it is running, leaving it running after the stream is dropped. */
export async function startBackground(id: string, cmd: string, opts: { url?: string; key?: string } = {}): Promise<number> {
  const client = processClient(id, opts.url, opts.key)
  const abort = new AbortController()
  const stream = client.start({ process: { cmd: '/bin/bash', args: ['-c', cmd], envs: {} }, stdin: false }, { signal: abort.signal })
  for await (const { event } of stream) {
    if (event?.event.case === 'start') {
      const pid = event.event.value.pid
      abort.abort()
      return pid
    }
  }
  throw new Error('process did not start')
}

/** GET /files through the data plane. */
export async function readFile(id: string, filePath: string, user = 'user'): Promise<{ status: number; body: Buffer }> {
  const res = await fetch(`${apiUrl}/files?path=${encodeURIComponent(filePath)}&username=${user}`, {
    headers: { 'e2b-sandbox-id': id, 'x-api-key': apiKey() },
  })
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()) }
}

export async function waitFor<T>(fn: () => Promise<T | undefined | false>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/**
 * What a destroyed sandbox left on the host: mounts (its overlay, its own filesystem), the loop
 * device under that filesystem, cgroups, its directory (with the filesystem's image), runtime state.
 * A loop device may outlive the destroy while a mount namespace made during the sandbox's life (a
 * container starting, a template build: anything that unshares the host's mounts) still holds a copy
 * of the filesystem's mount; it goes with that namespace, so it is waited for, at most 60 s.
 */
export async function leftovers(id: string, sandlotHome = home): Promise<string[]> {
  const deadline = Date.now() + 60_000
  for (;;) {
    const found = leftoversNow(id, sandlotHome)
    if (!found.length || found.some((f) => !f.startsWith('loop device')) || Date.now() > deadline) return found
    await new Promise((r) => setTimeout(r, 200))
  }
}

function leftoversNow(id: string, sandlotHome: string): string[] {
  const found: string[] = []
  if (fs.readFileSync('/proc/mounts', 'utf8').includes(id)) found.push('mount')
  for (const dev of fs.readdirSync('/sys/block').filter((d) => d.startsWith('loop'))) {
    let backing = '' // an unattached device has none
    try {
      backing = fs.readFileSync(`/sys/block/${dev}/loop/backing_file`, 'utf8')
    } catch {}
    if (backing.includes(id)) found.push(`loop device ${dev}`)
  }
  for (const c of ['memory', 'pids', 'cpu']) if (fs.existsSync(`/sys/fs/cgroup/${c}/sandlot/${id}`)) found.push(`${c} cgroup`)
  if (fs.existsSync(path.join(sandlotHome, 'sandboxes', id))) found.push('directory')
  if (fs.existsSync(path.join(sandlotHome, 'runtime/runc', id))) found.push('runtime state')
  return found
}

export interface Daemon {
  process: ChildProcess
  url: string
  /** Sends the signal and waits until the daemon has exited. */
  stop(signal?: NodeJS.Signals): Promise<void>
}

/** Runs a sandlotd of its own on `port` (for tests that need a server with other settings). */
export function spawnDaemon(port: number, env: Record<string, string>, stdio: 'ignore' | number = 'ignore'): Daemon {
  const child = spawn(process.execPath, ['packages/server/dist/main.js'], {
    // Its own bridge and subnet, whatever the suite's server has.
    env: { ...process.env, SANDLOT_BRIDGE: `sandlot${port}`, SANDLOT_SUBNET: `10.${(port >> 8) & 255}.${port & 255}.0/24`, ...env, SANDLOT_LISTEN: env.SANDLOT_LISTEN ?? `127.0.0.1:${port}` },
    stdio: stdio === 'ignore' ? 'ignore' : ['ignore', stdio, stdio],
  })
  return {
    process: child,
    url: `http://127.0.0.1:${port}`,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = new Promise((r) => child.once('exit', r))
      child.kill(signal)
      await exited
    },
  }
}

/**
 * Removes a daemon's home once it has stopped: the mounts left under it first (its agent files
 * image stays mounted; a sandbox's mount namespace may hold one a little while after), then its files.
 */
export function removeHome(dir: string): void {
  const mounts = fs.readFileSync('/proc/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '')
  // (One may have gone meanwhile: its sandbox's end, or its parent's lazy unmount.)
  for (const m of mounts.filter((m) => m.startsWith(`${dir}/`)).sort().reverse()) spawnSync('umount', ['-l', m], { stdio: 'ignore' })
  fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 250 })
}

/** The daemon's end of a sandbox's agent socket, on the host. */
export const hostSocketOf = (id: string, sandlotHome = home) => path.join(sandlotHome, 'sandboxes', id, 'agent.sock')

/**
 * Takes the agent's place on the daemon's side of its socket (as root in the sandbox might after
 * killing the agent): each connection the daemon opens is handed to `onConnection`.
 */
export async function impostorAgent(socket: string, onConnection: (c: net.Socket) => void): Promise<{ close: () => Promise<void> }> {
  fs.rmSync(socket, { force: true })
  const sockets = new Set<net.Socket>()
  const server = net.createServer((c) => {
    sockets.add(c)
    c.on('error', () => {})
    c.on('close', () => sockets.delete(c))
    onConnection(c)
  })
  await new Promise<void>((resolve) => server.listen(socket, resolve))
  return {
    close: () =>
      new Promise((resolve) => {
        for (const c of sockets) c.destroy()
        server.close(() => resolve())
      }),
  }
}

interface Recorded {
  headers: http.IncomingHttpHeaders
  raw: string
}

/** An impostor that answers each request with `reply` (undefined: silence) and records what arrived. */
export async function fakeAgent(socket: string, reply: string | ((raw: string) => string | undefined)): Promise<{ seen: Recorded[]; close: () => Promise<void> }> {
  const seen: Recorded[] = []
  const impostor = await impostorAgent(socket, (c) => {
    let raw = ''
    c.on('data', (d) => {
      raw += d.toString('latin1')
      if (!raw.includes('\r\n\r\n')) return
      const [head] = raw.split('\r\n\r\n')
      const headers: http.IncomingHttpHeaders = {}
      for (const line of head!.split('\r\n').slice(1)) {
        const i = line.indexOf(':')
        headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim()
      }
      seen.push({ headers, raw })
      const answer = typeof reply === 'string' ? reply : reply(raw)
      raw = ''
      if (answer === undefined) return // silent
      c.write(answer, 'latin1', () => c.end())
    })
  })
  return { seen, close: impostor.close }
}
