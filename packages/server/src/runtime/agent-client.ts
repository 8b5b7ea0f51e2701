// The daemon's own client of a sandbox's agent, over the agent's socket (for template builds and
// start/ready commands): envd's Process service through Connect, and /files uploads. The agent is
// untrusted like every other: its answers only ever reach the build's log and status.
import { createClient } from '@connectrpc/connect'
import { createConnectTransport } from '@connectrpc/connect-node'
import { Filesystem, Process } from '@sandlot/envd-proto'
import fs from 'node:fs'
import http from 'node:http'

export interface RunOptions {
  user: string
  cwd?: string
  env?: Record<string, string>
  /** Each line of output as it comes (stdout and stderr alike). */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void
  timeoutMs?: number
  signal?: AbortSignal
}

export interface RunResult {
  exitCode: number
  /** envd's status text, e.g. "exit status 1". */
  status: string
  /** The last lines of output (for an error message). */
  tail: string[]
}

const TAIL_LINES = 30

export class AgentClient {
  private readonly process

  constructor(
    private readonly socketPath: string,
    private readonly token: string,
  ) {
    this.process = createClient(Process, this.transport(true))
  }

  private transport(binary: boolean) {
    return createConnectTransport({ baseUrl: 'http://sandbox', httpVersion: '1.1', useBinaryFormat: binary, nodeOptions: { socketPath: this.socketPath } })
  }

  /**
   * Sends the agent one request of each kind its clients send first, so that none of theirs is the
   * agent's first (which costs it tens of ms: its handlers' code compiled, bash and the login
   * profile paged in): a command in Connect's binary form (the Sandlot SDK's) and in its JSON form
   * (the e2b SDK's), and a stat in each. For the pool, ahead of a hand-out. Rejects as `run` does,
   * or when the command fails.
   */
  async warm(user: string): Promise<void> {
    const binary = await this.run('true', { user, timeoutMs: 10_000 })
    if (binary.exitCode !== 0) throw new Error(binary.status)
    const json = createClient(Process, this.transport(false))
    for await (const { event } of json.start({ process: { cmd: '/bin/bash', args: ['-l', '-c', 'true'], envs: {} }, stdin: false }, { headers: this.headers(user), timeoutMs: 10_000 })) {
      if (event?.event.case === 'end' && event.event.value.exitCode !== 0) throw new Error(event.event.value.status)
    }
    for (const fs of [createClient(Filesystem, this.transport(true)), createClient(Filesystem, this.transport(false))]) {
      await fs.stat({ path: '/' }, { headers: this.headers(user), timeoutMs: 10_000 })
    }
  }

  private headers(user: string, extra: Record<string, string> = {}): Record<string, string> {
    return { 'x-access-token': this.token, authorization: `Basic ${Buffer.from(`${user}:`).toString('base64')}`, ...extra }
  }

  /** Runs `/bin/bash -l -c cmd` (E2B's way) and waits for its end. Rejects with the agent's error (e.g. an unknown user). */
  async run(cmd: string, o: RunOptions): Promise<RunResult> {
    const tail: string[] = []
    const lines = lineSplitter((line, stream) => {
      tail.push(line)
      if (tail.length > TAIL_LINES) tail.shift()
      o.onLine?.(line, stream)
    })
    const headers = this.headers(o.user, o.timeoutMs ? { 'connect-timeout-ms': String(o.timeoutMs) } : {})
    let exitCode = -1
    let status = 'no exit status'
    const stream = this.process.start(
      { process: { cmd: '/bin/bash', args: ['-l', '-c', cmd], envs: o.env ?? {}, cwd: o.cwd }, stdin: false },
      { headers, signal: o.signal, timeoutMs: o.timeoutMs },
    )
    for await (const { event } of stream) {
      const e = event?.event
      if (e?.case === 'data') {
        const d = e.value.output
        if (d.case === 'stdout' || d.case === 'stderr') lines.push(Buffer.from(d.value).toString(), d.case)
      } else if (e?.case === 'end') {
        exitCode = e.value.exitCode
        status = e.value.status
      }
    }
    lines.flush()
    return { exitCode, status, tail }
  }

  /**
   * Starts a command in the background (the start command): returns once it runs. With `onLine`,
   * its output goes on being read, line by line, until it ends (or the sandbox does); else nothing
   * listens and envd keeps the process running alone.
   */
  async startBackground(cmd: string, o: Omit<RunOptions, 'timeoutMs'>): Promise<void> {
    const controller = new AbortController()
    const stream = this.process.start(
      { process: { cmd: '/bin/bash', args: ['-l', '-c', cmd], envs: o.env ?? {}, cwd: o.cwd }, stdin: false },
      { headers: this.headers(o.user), signal: controller.signal },
    )
    const events = stream[Symbol.asyncIterator]()
    let started = false
    try {
      for (;;) {
        const { value, done } = await events.next()
        if (done) break
        if (value.event?.event.case === 'start') {
          started = true
          break
        }
      }
    } finally {
      // The process goes on without a listener (envd keeps processes when their stream ends).
      if (!started || !o.onLine) controller.abort()
    }
    if (started && o.onLine) void this.follow(events, o.onLine)
  }

  /** Reads a started command's events to their end, its output as lines; any failure just ends it. */
  private async follow(events: AsyncIterator<{ event?: { event: { case: string | undefined; value?: unknown } } }>, onLine: (line: string, stream: 'stdout' | 'stderr') => void): Promise<void> {
    const lines = lineSplitter(onLine)
    try {
      for (;;) {
        const { value, done } = await events.next()
        if (done) break
        const e = value.event?.event
        if (e?.case === 'data') {
          const d = (e.value as { output: { case: string; value: Uint8Array } }).output
          if (d.case === 'stdout' || d.case === 'stderr') lines.push(Buffer.from(d.value).toString(), d.case)
        } else if (e?.case === 'end') {
          const end = e.value as { exitCode: number; status: string }
          lines.flush()
          onLine(`(the start command ended: ${end.status || `exit code ${end.exitCode}`})`, end.exitCode === 0 ? 'stdout' : 'stderr')
        }
      }
    } catch {
      // The sandbox ended (or its agent went): there is no more output to read.
    }
  }

  /** envd's POST /init: merges env vars (and the like) into the agent's config, for every later process. */
  init(config: { envVars?: Record<string, string> }): Promise<void> {
    const body = JSON.stringify(config)
    return new Promise((resolve, reject) => {
      const req = http.request(
        { socketPath: this.socketPath, method: 'POST', path: '/init', headers: { 'x-access-token': this.token, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, timeout: 10_000 },
        (res) => {
          let text = ''
          res.on('data', (d: Buffer) => (text = (text + d.toString()).slice(0, 2000)))
          res.on('end', () => (res.statusCode === 204 ? resolve() : reject(new Error(`the agent refused its config (${res.statusCode}): ${text}`))))
          res.on('error', reject)
        },
      )
      req.on('timeout', () => req.destroy(new Error('the agent did not answer POST /init within 10 s')))
      req.on('error', reject)
      req.end(body)
    })
  }

  /** Writes a host file into the sandbox at `path` (as `user`), streamed. */
  upload(file: string, path: string, user: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const size = fs.statSync(file).size
      const req = http.request(
        {
          socketPath: this.socketPath,
          method: 'POST',
          path: `/files?path=${encodeURIComponent(path)}&username=${encodeURIComponent(user)}`,
          headers: { ...this.headers(user), 'content-type': 'application/octet-stream', 'content-length': size },
        },
        (res) => {
          let body = ''
          res.on('data', (d: Buffer) => (body = (body + d.toString()).slice(0, 2000)))
          res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`upload of ${path} failed (${res.statusCode}): ${body}`))))
          res.on('error', reject)
        },
      )
      req.on('error', reject)
      fs.createReadStream(file).on('error', reject).pipe(req)
    })
  }
}

/**
 * Output chunks of stdout and stderr into whole lines, each stream apart; a line without an end past
 * 8 KiB is cut there, so a flood without newlines cannot grow without bound. flush() ends both.
 */
function lineSplitter(onLine: (line: string, stream: 'stdout' | 'stderr') => void) {
  const partial = { stdout: '', stderr: '' }
  const push = (text: string, stream: 'stdout' | 'stderr') => {
    const lines = (partial[stream] + text).split('\n')
    partial[stream] = lines.pop() ?? ''
    if (partial[stream].length > 8192) lines.push(partial[stream]), (partial[stream] = '')
    for (const line of lines) onLine(line, stream)
  }
  return { push, flush: () => (['stdout', 'stderr'] as const).forEach((s) => partial[s] && push('\n', s)) }
}
