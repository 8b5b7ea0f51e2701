// Running skopeo and umoci: a child process with a bounded wait, its output logged line by line and
// its last lines kept for the error; skopeo's complaints read into an ImagePullError that says what to do.
import { spawn } from 'node:child_process'
import type { Logger } from 'pino'
import { ImagePullError } from './errors.js'

/** Debian packages that provide each tool, for the message when one is missing. */
const PACKAGE: Record<string, string> = { skopeo: 'skopeo', umoci: 'umoci', unshare: 'util-linux' }
/** The most stdout kept (a manifest or config; containers/image refuses manifests over 4 MiB itself). */
const MAX_STDOUT = 8 * 2 ** 20

export class ToolFailure extends Error {
  constructor(
    readonly tool: string,
    /** The tool's last stderr lines. */
    readonly detail: string,
    readonly cancelled: boolean,
    readonly timedOut: boolean,
  ) {
    super(`${tool} failed: ${detail}`)
  }
}

export interface RunOptions {
  env: NodeJS.ProcessEnv
  log: Logger
  step: string
  timeoutMs: number
  signal?: AbortSignal
  /** Log stdout lines too (skopeo copy's progress), rather than keep it. */
  logStdout?: boolean
}

export function runTool(cmd: string, args: string[], o: RunOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    if (o.signal?.aborted) return reject(new ToolFailure(cmd, 'cancelled', true, false))
    const child = spawn(cmd, args, { env: o.env, stdio: ['ignore', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    let outBytes = 0
    const tail: string[] = []
    let timedOut = false
    let cancelled = false
    const logLines = (chunk: Buffer, keep: boolean) => {
      for (const raw of chunk.toString().split('\n')) {
        const line = raw.trim()
        if (!line) continue
        if (keep) {
          tail.push(line)
          if (tail.length > 12) tail.shift()
        }
        o.log.info({ step: o.step }, line)
      }
    }
    child.stdout.on('data', (chunk: Buffer) => {
      if (o.logStdout) return logLines(chunk, false)
      outBytes += chunk.length
      if (outBytes <= MAX_STDOUT) out.push(chunk)
      else child.kill('SIGKILL')
    })
    child.stderr.on('data', (chunk: Buffer) => logLines(chunk, true))
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, o.timeoutMs)
    const onAbort = () => {
      cancelled = true
      child.kill('SIGKILL')
    }
    o.signal?.addEventListener('abort', onAbort, { once: true })
    const done = () => {
      clearTimeout(timer)
      o.signal?.removeEventListener('abort', onAbort)
    }
    child.on('error', (err: NodeJS.ErrnoException) => {
      done()
      const hint = err.code === 'ENOENT' ? `: it is not installed (apt-get install ${PACKAGE[cmd] ?? cmd})` : `: ${err.message}`
      reject(new ImagePullError('failed', `cannot run ${cmd}${hint}`))
    })
    child.on('close', (code, signal) => {
      done()
      if (code === 0 && outBytes <= MAX_STDOUT) return resolve(Buffer.concat(out))
      const why = cancelled ? 'cancelled' : timedOut ? `no answer within ${Math.round(o.timeoutMs / 1000)} s` : outBytes > MAX_STDOUT ? 'output too large' : signal ?? `exit ${code}`
      reject(new ToolFailure(cmd, tail.length ? tail.join('\n') : why, cancelled, timedOut))
    })
  })
}

/** skopeo logs `level=fatal msg="…"`; the quoted message is what it means. */
export function skopeoMessage(stderr: string): string {
  const m = /msg="((?:[^"\\]|\\.)*)"/.exec(stderr.split('\n').reverse().find((l) => l.includes('msg="')) ?? '')
  const msg = m ? m[1].replace(/\\(.)/g, '$1') : stderr.trim()
  // "Error parsing image name \"docker://…\": " repeats the reference the caller already names.
  return msg.replace(/^Error parsing image name "[^"]*": /, '')
}

export interface RegistryContext {
  ref: string
  registry: string
  withCredentials: boolean
}

/** What skopeo's failure means for the user, with what to do about it. */
export function classifySkopeoFailure(err: unknown, c: RegistryContext): Error {
  if (!(err instanceof ToolFailure)) return err as Error
  if (err.cancelled) return new ImagePullError('failed', `pulling ${c.ref} was cancelled`)
  if (err.timedOut) return new ImagePullError('unreachable', `the registry ${c.registry} did not answer in time for ${c.ref} (${err.detail})`)
  const msg = skopeoMessage(err.detail)
  const m = msg.toLowerCase()
  if (/gave http response to https client|x509:|certificate|tls: |tls handshake/.test(m)) {
    return new ImagePullError('tls', `cannot make a verified TLS connection to the registry ${c.registry} (${msg}); if it is a registry of yours without a trusted certificate, list it in SANDLOT_INSECURE_REGISTRIES`)
  }
  if (/connection refused|no such host|i\/o timeout|network is unreachable|no route to host|connection reset|dial tcp|temporary failure in name resolution|server misbehaving|context deadline exceeded/.test(m)) {
    return new ImagePullError('unreachable', `cannot reach the registry ${c.registry} for ${c.ref} (${msg})`)
  }
  if (/manifest unknown|name unknown|not found|repository name not known|requested access to the resource is denied|insufficient_scope/.test(m)) {
    const privately = c.withCredentials ? '' : ' (or it is private: give a username and password)'
    return new ImagePullError('not_found', `the registry ${c.registry} has no image ${c.ref}${privately}: ${msg}`)
  }
  if (/unauthorized|authentication required|invalid username|incorrect username|password|denied|status 401|403/.test(m)) {
    return c.withCredentials
      ? new ImagePullError('unauthorized', `the registry ${c.registry} refused the username and password given for ${c.ref}: ${msg}`)
      : new ImagePullError('unauthorized', `the registry ${c.registry} wants a username and password for ${c.ref}: ${msg}`)
  }
  return new ImagePullError('failed', `pulling ${c.ref} failed: ${msg}`)
}
